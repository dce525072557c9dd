"""Under a patient's page (/p/<token>/waitlist/): joining the waitlist."""

from django.urls import path

from waitlist import views

urlpatterns = [path("", views.patient_join, name="patient_waitlist")]
