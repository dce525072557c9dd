from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = "Scheduling"

    def ready(self):
        from axes.signals import user_locked_out

        from scheduler import diary, statistics
        from scheduler.audit import record_lockout, record_visit_change
        from scheduler.booking import visit_saved
        from scheduler.external_calendars import ensure_schedule

        # Every booking change is in the audit trail, committed with the change.
        visit_saved.connect(record_visit_change, dispatch_uid="scheduler.audit.visit_change")
        # So are sign-in lockouts, from whichever page (config/signin_lock.py).
        user_locked_out.connect(record_lockout, dispatch_uid="scheduler.audit.lockout")
        # The 15-minute import of clinicians' own calendars exists wherever
        # the database does (created once, idempotently, after migrate).
        post_migrate.connect(
            ensure_schedule, sender=self, dispatch_uid="scheduler.external_calendars.schedule"
        )
        # The change log behind kept diaries is cut back every hour (scheduler.diary).
        post_migrate.connect(
            diary.ensure_schedule, sender=self, dispatch_uid="scheduler.diary.schedule"
        )
        # SQLite's planner statistics, refreshed daily (scheduler.statistics).
        post_migrate.connect(
            statistics.ensure_schedule, sender=self, dispatch_uid="scheduler.statistics.schedule"
        )
