"""django-q2 entry points: the every-minute dispatch pass and its schedule."""

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS

from notifications.dispatch import dispatch

SCHEDULE_NAME = "dispatch reminders"
SCHEDULE_FUNC = "notifications.tasks.dispatch_due"


def dispatch_due() -> dict[str, int]:
    """One dispatch pass; its counts are kept as the task's result."""
    return dispatch().as_dict()


def ensure_schedule(sender=None, *, using: str = DEFAULT_DB_ALIAS, apps=None, **kwargs) -> None:
    """post_migrate: the every-minute dispatch schedule exists, once, whatever runs migrate."""
    try:
        schedule = (apps or global_apps).get_model("django_q", "Schedule")
    except LookupError:
        return  # django_q is not migrated yet in this run
    schedule.objects.using(using).update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": SCHEDULE_FUNC},
        # Staff may change how often it runs; a later migrate keeps their choice.
        create_defaults={
            "func": SCHEDULE_FUNC,
            "schedule_type": "I",  # django_q.models.Schedule.MINUTES
            "minutes": 1,
            "repeats": -1,
        },
    )
