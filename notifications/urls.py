from django.urls import path

from notifications import views

# Included under /webhooks/twilio/ (config/urls.py): the two URLs to give Twilio.
urlpatterns = [
    path("status", views.status_callback, name="twilio-status"),
    path("inbound", views.inbound, name="twilio-inbound"),
]
