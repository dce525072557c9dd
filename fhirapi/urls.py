from django.urls import path

from fhirapi import views

app_name = "fhir"

urlpatterns = [
    path("metadata", views.metadata, name="metadata"),
    path("<str:type_name>", views.search, name="search"),
    path("<str:type_name>/<str:resource_id>", views.read, name="read"),
]
