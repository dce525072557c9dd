"""In the demo clinic, a patient answering PHQ-9 item 9 with "Several days" puts an alert at the
top of the desk, and the patient's prescriber and the dose's therapist each get a text and an email in one
dispatch pass; an unacknowledged alert has a clinical lead to go to."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from notifications.dispatch import dispatch
from notifications.models import Purpose
from questionnaires.models import SafetyPolicy
from scheduler.models import Clinician, ClinicianRole, Visit, VisitKind
from tests.page_helpers import front_desk
from tests.safety_helpers import SEVERAL_DAYS, answer_phq9, request_before


@pytest.fixture
def demo(db, now, settings):
    settings.SMS_SEND_RATE = settings.EMAIL_SEND_RATE = 0
    call_command("seed_demo", stdout=StringIO())


def test_a_demo_dose_s_team_hears_of_item_9_at_once(demo, twilio, smtp):
    policy = SafetyPolicy.objects.get()
    assert policy.clinical_lead is not None and policy.clinical_lead.mobile
    # The demo's doses are led by a nurse with a therapist on the team: the prescriber comes
    # from the patient's other visits (their screening).
    dose = (
        Visit.objects.filter(visit_type__kind=VisitKind.DOSING, start__gt=timezone.now())
        .order_by("start")
        .first()
    )
    answer_phq9(request_before(dose, timezone.now()), item_9=SEVERAL_DAYS)
    dispatch()
    # The demo's own alert (another patient, questionnaires.demo) is told to its own team.
    told = (
        Clinician.objects.filter(messages__purpose=Purpose.SAFETY_ALERT, messages__visit=dose)
        .distinct()
        .select_related("user")
    )
    therapist = dose.participants.get(role=ClinicianRole.THERAPIST).clinician
    assert therapist in told
    assert any(clinician.is_prescriber for clinician in told)
    assert len(told) == 2
    for clinician in told:
        assert len(twilio.sent_to(clinician.mobile)) == 1, clinician
        assert len(smtp.to(clinician.user.email)) == 1, clinician
    desk = Client()
    desk.force_login(front_desk())
    assert "Needs review today" in desk.get(reverse("desk_today")).text
