from django.apps import AppConfig


class FhirApiConfig(AppConfig):
    name = "fhirapi"
    verbose_name = "FHIR API"

    def ready(self):
        # Each module registers the resource types it maps (fhirapi.resources).
        from fhirapi.resources import load_all

        load_all()
