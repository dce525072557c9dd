"""The worker's repeating tasks: each app declares its own, and migrate creates it once."""

from collections.abc import Callable

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS


def every(minutes: int, name: str, func: str) -> Callable[..., None]:
    """A post_migrate receiver making sure django-q runs ``func`` (a dotted path) every
    ``minutes``, under ``name``.

    Created once, whatever runs migrate; staff may change the interval in the
    admin, and a later migrate keeps their choice.
    """

    def ensure_schedule(sender=None, *, using: str = DEFAULT_DB_ALIAS, apps=None, **kwargs):
        try:
            schedule = (apps or global_apps).get_model("django_q", "Schedule")
        except LookupError:
            return  # django_q is not migrated yet in this run
        schedule.objects.using(using).update_or_create(
            name=name,
            defaults={"func": func},
            create_defaults={
                "func": func,
                "schedule_type": "I",  # django_q.models.Schedule.MINUTES
                "minutes": minutes,
                "repeats": -1,
            },
        )

    return ensure_schedule
