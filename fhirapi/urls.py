from django.urls import path

from fhirapi import tokens, views

app_name = "fhir"

urlpatterns = [
    path("metadata", views.metadata, name="metadata"),
    # Access (SMART Backend Services) before the generic <Type>/<id> patterns.
    path(".well-known/smart-configuration", tokens.smart_configuration, name="smart-configuration"),
    path("auth/token", tokens.token, name="token"),
    path("<str:type_name>", views.search, name="search"),
    path("<str:type_name>/<str:resource_id>", views.read, name="read"),
]
