"""django-q2 entry points: the every-minute dispatch pass and its schedule."""

from notifications.dispatch import dispatch
from scheduler.periodic import every

SCHEDULE_NAME = "dispatch reminders"
SCHEDULE_FUNC = "notifications.tasks.dispatch_due"


def dispatch_due() -> dict[str, int]:
    """One dispatch pass; its counts are kept as the task's result."""
    return dispatch().as_dict()


# The every-minute dispatch schedule exists wherever the database does.
ensure_schedule = every(1, SCHEDULE_NAME, SCHEDULE_FUNC)
