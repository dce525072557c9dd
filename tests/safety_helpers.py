"""A clinic whose patient answers a PHQ-9 before a dose, for the tests of the safety path.

Answers go in as the patient's page sends them (``answering.save_answer`` one
at a time, then ``answering.submit``), so the alert is raised by the same
signal, in the same transaction, as in production.
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from questionnaires import answering, scoring
from questionnaires.models import Instrument, QuestionnaireRequest, SafetyPolicy
from scheduler import booking
from scheduler.models import Visit
from tests.conftest import SmallClinic, at

ITEM_9 = "44260-8"
# Not at all, several days, more than half the days, nearly every day.
NOT_AT_ALL, SEVERAL_DAYS = 0, 1
# Thursday 2030-01-03 10:00 in New York: the clinic (08:00-18:00 weekdays) is open.
OPEN_MORNING = datetime(2030, 1, 3, 15, 0, tzinfo=UTC)
DOSE_DAY = datetime(2030, 1, 7).date()  # the Monday after


class SafetyClinic(SmallClinic):
    """SmallClinic whose IV doses have a therapist on the team too, and staff who can be
    reached: mobiles and email addresses."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_to_team(self.iv, "therapist")
        self.prescriber.mobile = "+12125550181"
        self.therapist.mobile = "+12125550182"
        for clinician, email in (
            (self.prescriber, "alvarez@clinic.example.org"),
            (self.therapist, "rivers@clinic.example.org"),
        ):
            clinician.save(update_fields=["mobile"])
            clinician.user.email = email
            clinician.user.save(update_fields=["email"])
        self.lead = self.clinician("Dr. Lead", "prescriber")
        self.lead.mobile = "+12125550189"
        self.lead.save(update_fields=["mobile"])
        self.lead.user.email = "lead@clinic.example.org"
        self.lead.user.save(update_fields=["email"])
        self.policy = SafetyPolicy.objects.create(clinic=self.clinic, clinical_lead=self.lead)

    def dose(self, patient, start: datetime | None = None) -> Visit:
        """A booked IV dose with the prescriber leading and the therapist on the team."""
        return booking.book(
            patient=patient,
            visit_type=self.iv,
            clinician=self.prescriber,
            room=self.room1,
            start=start or at(DOSE_DAY, "10:00"),
            staff=[self.therapist],
        )


def phq9() -> Instrument:
    return Instrument.objects.current().get(code="phq-9")


def request_before(visit: Visit, now: datetime) -> QuestionnaireRequest:
    """A PHQ-9 asked before ``visit``, open from ``now`` until the visit ends."""
    return QuestionnaireRequest.objects.create(
        patient=visit.patient,
        visit=visit,
        instrument=phq9(),
        opens_at=now - timedelta(hours=1),
        closes_at=visit.end,
    )


def answer_phq9(request: QuestionnaireRequest, *, item_9: int, others: int = 0, now=None):
    """Answer every item (``others`` points each, item 9 ``item_9`` points) and submit."""
    instrument = request.instrument
    scored = set(instrument.scoring["total"]["items"])
    for item in scoring.items(instrument.questionnaire):
        wanted = item_9 if item.link_id == ITEM_9 else others
        option = (
            next(o for o in item.options if o.points == wanted)
            if item.link_id in scored
            else item.options[0]
        )
        answering.save_answer(request, item.link_id, option.code, now=now)
    return answering.submit(request, now=now)


@pytest.fixture
def safety_clinic(db, settings) -> SafetyClinic:
    settings.SITE_URL = "https://clinic.example.org"
    settings.SMS_SEND_RATE = 0
    settings.EMAIL_SEND_RATE = 0
    settings.SMS_CLINIC_NAME = "Northside Clinic"
    with time_machine.travel(OPEN_MORNING - timedelta(days=1), tick=False):
        return SafetyClinic()
