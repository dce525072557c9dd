from django.apps import AppConfig


class PlansConfig(AppConfig):
    name = "plans"
    verbose_name = "Care plans"

    def ready(self):
        from plans import gates, rems
        from scheduler.booking import booking_checks, completion_checks, visit_saved

        for check in (gates.screening_cleared, gates.dose_spacing, gates.rems_certified):
            if check not in booking_checks:
                booking_checks.append(check)
        if gates.session_recorded not in completion_checks:
            completion_checks.append(gates.session_recorded)
        visit_saved.connect(rems.open_monitoring_form_task, dispatch_uid="rems-monitoring-form")
