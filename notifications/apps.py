from django.apps import AppConfig
from django.db.models.signals import post_migrate


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Reminders and messages"

    def ready(self):
        from notifications.planning import on_visit_saved
        from notifications.tasks import ensure_schedule
        from scheduler.booking import visit_saved

        # Inside the booking transaction: the outbox commits or rolls back with the visit.
        visit_saved.connect(on_visit_saved, dispatch_uid="notifications.planning.on_visit_saved")
        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="notifications.schedule")
