"""An alert nobody acknowledged for the clinic's opening minutes (60 by default) goes to its
clinical lead, by text and email, once; counted in opening hours, so after closing time,
over a weekend or a public holiday the clock waits for the next opening."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django_q.models import Schedule

from notifications.dispatch import dispatch
from notifications.models import Message, Purpose
from questionnaires.escalation import SCHEDULE_NAME, OpeningClock, escalate, escalate_due
from questionnaires.models import SafetyAlert
from questionnaires.safety import acknowledge, policy_for
from tests.conftest import at
from tests.page_helpers import front_desk
from tests.safety_helpers import OPEN_MORNING, SEVERAL_DAYS, answer_phq9, request_before


def alert_at(safety_clinic, moment: datetime) -> SafetyAlert:
    patient = safety_clinic.patient("Avery", "Applewood")
    with time_machine.travel(moment, tick=False):
        visit = safety_clinic.dose(patient)
        answer_phq9(request_before(visit, moment), item_9=SEVERAL_DAYS)
    return SafetyAlert.objects.get(patient=patient)


def escalations():
    return Message.objects.filter(purpose=Purpose.SAFETY_ESCALATION)


def test_after_60_opening_minutes_the_clinical_lead_gets_one_text_and_one_email(
    safety_clinic, twilio, smtp
):
    alert = alert_at(safety_clinic, OPEN_MORNING)  # Thursday 10:00, open
    with time_machine.travel(OPEN_MORNING + timedelta(minutes=59), tick=False):
        assert escalate_due() == {"escalated": 0, "no_clinical_lead": 0}
    with time_machine.travel(OPEN_MORNING + timedelta(minutes=60), tick=False):
        assert escalate_due()["escalated"] == 1
        dispatch()
        # Another pass, and another escalation run, change nothing.
        assert escalate_due()["escalated"] == 0
        dispatch()
    alert.refresh_from_db()
    assert alert.escalated_at == OPEN_MORNING + timedelta(minutes=60)
    lead = safety_clinic.lead
    (text,) = twilio.sent_to(lead.mobile)
    assert text["body"] == (
        "Northside Clinic: Not yet acknowledged: a patient's answers need review today: "
        f"https://clinic.example.org/desk/alerts/{alert.pk}/"
    )
    (email,) = smtp.to(lead.user.email)
    assert email["Subject"] == "Not yet acknowledged: a patient's answers need review today"
    assert "clinical lead" in email.get_body(("plain",)).get_content()
    assert "Avery" not in email.as_string()


def test_two_workers_claiming_the_same_alert_escalate_it_once(safety_clinic):
    alert = alert_at(safety_clinic, OPEN_MORNING)
    policy = policy_for(safety_clinic.clinic)
    later = OPEN_MORNING + timedelta(hours=2)
    # Both read the alert as waiting; each then claims it.
    first, second = SafetyAlert.objects.get(pk=alert.pk), SafetyAlert.objects.get(pk=alert.pk)
    assert escalate(first, policy, later) is True
    assert escalate(second, policy, later) is False
    assert escalations().count() == 2  # one text, one email: to the lead alone
    assert set(escalations().values_list("clinician", flat=True)) == {safety_clinic.lead.pk}


NEW_YORK_EVENINGS = [
    # Raised at 21:00 on a Thursday: 60 minutes after Friday's 08:00 opening.
    (at(datetime(2030, 1, 3).date(), "21:00"), at(datetime(2030, 1, 4).date(), "09:00")),
    # At 17:30 on a Friday: 30 minutes that day, the other 30 on Monday morning.
    (at(datetime(2030, 1, 4).date(), "17:30"), at(datetime(2030, 1, 7).date(), "08:30")),
    # At 17:30 on New Year's Eve (a Monday): New Year's Day is a public holiday.
    (at(datetime(2029, 12, 31).date(), "17:30"), at(datetime(2030, 1, 2).date(), "08:30")),
]


@pytest.mark.parametrize(("raised", "due"), NEW_YORK_EVENINGS, ids=["21h", "weekend", "holiday"])
def test_an_alert_after_hours_escalates_after_the_next_openings_minutes(safety_clinic, raised, due):
    alert = alert_at(safety_clinic, raised)
    with time_machine.travel(due - timedelta(minutes=1), tick=False):
        assert escalate_due()["escalated"] == 0
    with time_machine.travel(due, tick=False):
        assert escalate_due()["escalated"] == 1
    alert.refresh_from_db()
    assert alert.escalated_at == due.astimezone(UTC)


def test_an_acknowledged_alert_is_never_escalated(safety_clinic):
    alert = alert_at(safety_clinic, OPEN_MORNING)
    acknowledge(alert, safety_clinic.prescriber.user, "Called the patient; safe, seen tomorrow.")
    with time_machine.travel(OPEN_MORNING + timedelta(hours=3), tick=False):
        assert escalate_due()["escalated"] == 0
    assert not escalations().exists()


def test_without_a_clinical_lead_nothing_escalates_and_the_desk_says_so(safety_clinic):
    safety_clinic.policy.clinical_lead = None
    safety_clinic.policy.save()
    alert = alert_at(safety_clinic, OPEN_MORNING)
    with time_machine.travel(OPEN_MORNING + timedelta(hours=2), tick=False):
        assert escalate_due() == {"escalated": 0, "no_clinical_lead": 1}
        desk = Client()
        desk.force_login(front_desk())
        today = desk.get(reverse("desk_today")).text
        page = desk.get(reverse("desk_alert", args=[alert.pk])).text
    assert not escalations().exists()
    assert "No clinical lead is set" in today
    assert "No clinical lead is set" in page
    # Once a lead is set, the next run escalates it.
    safety_clinic.policy.clinical_lead = safety_clinic.lead
    safety_clinic.policy.save()
    with time_machine.travel(OPEN_MORNING + timedelta(hours=2, minutes=1), tick=False):
        assert escalate_due()["escalated"] == 1


def test_the_escalation_runs_every_minute_on_the_worker(db):
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "questionnaires.escalation.escalate_due",
        Schedule.MINUTES,
        1,
    )


def test_a_clinic_that_never_opens_counts_plain_minutes(safety_clinic):
    safety_clinic.clinic.opening_hours.all().delete()
    clock = OpeningClock(safety_clinic.clinic, OPEN_MORNING, OPEN_MORNING + timedelta(days=31))
    assert clock.after(60) == OPEN_MORNING + timedelta(minutes=60)
