"""A clinic with a dosing visit to cancel and patients waiting for one, for the waitlist's tests."""

import re
from datetime import date, timedelta

from scheduler import booking
from scheduler.models import Visit
from tests.conftest import MONDAY, at
from tests.reminder_helpers import ReminderClinic
from waitlist.models import WaitlistEntry

# The freed time: Monday 3 June 2030, 10:00 in New York. The clock stands on the
# Friday before, in the morning (outside quiet hours).
SLOT = at(MONDAY, "10:00")
FRIDAY = at(MONDAY - timedelta(days=3), "10:00")
LINK = re.compile(r"https://clinic\.example\.org/w/\S+/")


class WaitlistClinic(ReminderClinic):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.holder = self.texting_patient("Holder", "Example")

    def dosing_visit(self, patient=None, start=SLOT) -> Visit:
        return self.book(patient or self.holder, self.iv, start)

    def waiting(self, first: str, **entry) -> WaitlistEntry:
        """A patient who takes texts and email, waiting for a dosing visit in June (in turn)."""
        patient = self.texting_patient(first, "Waiting")
        options = {
            "visit_type": self.iv,
            "earliest": date(2030, 6, 1),
            "latest": date(2030, 6, 30),
        } | entry
        return WaitlistEntry.objects.create(patient=patient, **options)


def cancel(visit: Visit) -> Visit:
    return booking.cancel(visit, "Patient cancelled.")


def link_in(body: str) -> str:
    return LINK.search(body).group(0).removeprefix("https://clinic.example.org")
