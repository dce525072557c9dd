from django.urls import path

from fhirapi import booking, everything, schedule_views, tokens, views

app_name = "fhir"

urlpatterns = [
    path("metadata", views.metadata, name="metadata"),
    # Access (SMART Backend Services) before the generic <Type>/<id> patterns.
    path(".well-known/smart-configuration", tokens.smart_configuration, name="smart_configuration"),
    path("auth/token", tokens.token, name="token"),
    # Operations before the generic patterns, which would take "$everything" for an id.
    path(
        "Patient/<str:resource_id>/$everything",
        everything.patient_everything,
        name="patient_everything",
    ),
    # The types that are not one table, before the generic patterns.
    path("Appointment/$find", booking.find, name="appointment_find"),
    path("Appointment/$book", booking.book, name="appointment_book"),
    path("Schedule", schedule_views.schedule_search, name="schedule_search"),
    path("Schedule/<str:resource_id>", schedule_views.schedule_read, name="schedule_read"),
    path("Slot", schedule_views.slot_search, name="slot_search"),
    path("Slot/<str:resource_id>", schedule_views.slot_read, name="slot_read"),
    path("<str:type_name>", views.search, name="search"),
    path("<str:type_name>/<str:resource_id>", views.read, name="read"),
]
