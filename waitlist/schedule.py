"""The worker's schedule for the waitlist: offers expire and the next ones go every few minutes."""

from scheduler.periodic import every
from waitlist.offers import TASK

SCHEDULE_NAME = "waitlist offers"


ensure_schedule = every(5, SCHEDULE_NAME, TASK)
