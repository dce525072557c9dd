"""The worker's schedule for the waitlist: offers expire and the next ones go every few minutes."""

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS

from waitlist.offers import TASK

SCHEDULE_NAME = "waitlist offers"


def ensure_schedule(sender=None, *, using: str = DEFAULT_DB_ALIAS, apps=None, **kwargs) -> None:
    """post_migrate: the five-minute schedule exists, once (staff may change its interval)."""
    try:
        schedule = (apps or global_apps).get_model("django_q", "Schedule")
    except LookupError:
        return
    schedule.objects.using(using).update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": TASK},
        create_defaults={"func": TASK, "schedule_type": "I", "minutes": 5, "repeats": -1},
    )
