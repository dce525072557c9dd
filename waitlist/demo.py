"""The demo's waitlist: three screened patients who take texts wait for an IV infusion.

Cancelling the demo's IV dose (from the desk's visit page) then frees its time,
the worker offers it to the first of them that every rule allows, and the text
appears under var/sms/ once the next dispatch pass runs. Idempotent: a patient
already waiting for the type is left as they are.
"""

from datetime import timedelta

from django.utils import timezone

from scheduler.models import Clinic, Patient, VisitType
from waitlist.models import EntryStatus, Priority, WaitlistEntry

# (patient index in scheduler.demo's list, priority): screened (plans.demo), agreed to texts.
DEMO_WAITING = [(0, Priority.ROUTINE), (1, Priority.SOON), (3, Priority.ROUTINE)]
DEMO_WINDOW_DAYS = 30


def seed(clinic: Clinic, patients: list[Patient]) -> list[WaitlistEntry]:
    infusion = VisitType.objects.get(clinic=clinic, slug="iv-infusion")
    today = timezone.localdate(timezone=clinic.tz)
    entries = []
    for index, priority in DEMO_WAITING:
        entry, _ = WaitlistEntry.objects.get_or_create(
            patient=patients[index],
            visit_type=infusion,
            status=EntryStatus.WAITING,
            defaults={
                "earliest": today,
                "latest": today + timedelta(days=DEMO_WINDOW_DAYS),
                "priority": priority,
            },
        )
        entries.append(entry)
    return entries
