from django.apps import AppConfig


class FhirApiConfig(AppConfig):
    name = "fhirapi"
    verbose_name = "FHIR API"

    def ready(self):
        # Each module registers the resource types it maps (fhirapi.resources).
        from fhirapi import demo
        from fhirapi.resources import load_all
        from scheduler.demo import demo_seeded

        load_all()
        demo_seeded.connect(demo.seed, dispatch_uid="fhirapi-demo-client")
