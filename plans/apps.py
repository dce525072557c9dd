from django.apps import AppConfig


class PlansConfig(AppConfig):
    name = "plans"
    verbose_name = "Care plans"

    def ready(self):
        from plans import gates
        from scheduler.booking import booking_checks

        for check in (gates.screening_cleared, gates.dose_spacing):
            if check not in booking_checks:
                booking_checks.append(check)
