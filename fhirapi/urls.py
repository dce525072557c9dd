from django.urls import path

from fhirapi import everything, views

app_name = "fhir"

urlpatterns = [
    path("metadata", views.metadata, name="metadata"),
    # Operations before the generic patterns, which would take "$everything" for an id.
    path(
        "Patient/<str:resource_id>/$everything",
        everything.patient_everything,
        name="patient-everything",
    ),
    path("<str:type_name>", views.search, name="search"),
    path("<str:type_name>/<str:resource_id>", views.read, name="read"),
]
