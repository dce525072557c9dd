"""The desk's waitlist page and the offer links (the patient's form: patient_urls)."""

from django.urls import path

from waitlist import views

urlpatterns = [
    path("desk/waitlist/", views.desk_waitlist, name="desk_waitlist"),
    path("w/<str:token>/", views.offer_page, name="waitlist_offer"),
]
