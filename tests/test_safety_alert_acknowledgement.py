"""An alert stays at the top of the desk's day and of its clinicians' calendars until one of the
patient's clinicians (or a clinic admin) acknowledges it, saying what was done; the audit
trail records who, when and what. The front desk sees the alert, not the answers."""

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from notifications.dispatch import dispatch
from notifications.models import Message, Purpose, Status
from questionnaires.models import SafetyAlert
from scheduler.models import AuditAction, AuditEvent
from tests.page_helpers import front_desk, sign_in_verified
from tests.safety_helpers import OPEN_MORNING, SEVERAL_DAYS, answer_phq9, request_before

LATER = OPEN_MORNING + timedelta(minutes=20)


@pytest.fixture
def alert(safety_clinic) -> SafetyAlert:
    patient = safety_clinic.patient("Avery", "Applewood")
    with time_machine.travel(OPEN_MORNING, tick=False):
        visit = safety_clinic.dose(patient)
        answer_phq9(request_before(visit, OPEN_MORNING), item_9=SEVERAL_DAYS)
    return SafetyAlert.objects.get(patient=patient)


def signed_in(user, *, verified=True) -> Client:
    client = Client()
    if verified:
        sign_in_verified(client, user)
    else:
        client.force_login(user)
    return client


def test_the_desk_lists_the_alert_first_under_needs_attention_with_a_text_label(alert):
    with time_machine.travel(LATER, tick=False):
        page = signed_in(front_desk(), verified=False).get(reverse("desk_today")).text
    link = reverse("desk_alert", args=[alert.pk])
    assert link in page
    assert "Needs review today" in page
    # Before every other list of what needs attention, and before the day's grid.
    assert page.index(link) < page.index("Needs attention: changed by patients")
    assert page.index(link) < page.index("Needs attention: REMS monitoring forms")


def test_the_prescribers_calendar_lists_the_alert_and_another_clinicians_does_not(
    safety_clinic, alert
):
    link = reverse("desk_alert", args=[alert.pk])
    with time_machine.travel(LATER, tick=False):
        mine = signed_in(safety_clinic.prescriber.user).get(reverse("my_calendar")).text
        nurse = signed_in(safety_clinic.nurse.user)
        others = nurse.get(reverse("my_calendar")).text
        assert nurse.get(link).status_code == 403
    assert link in mine and "Needs review today" in mine
    assert link not in others


def test_acknowledging_records_who_when_and_what_and_takes_it_off_the_lists(safety_clinic, alert):
    link = reverse("desk_alert", args=[alert.pk])
    with time_machine.travel(LATER, tick=False):
        therapist = signed_in(safety_clinic.therapist.user)
        refused = therapist.post(link, {"action": "acknowledge", "action_taken": "  "})
        assert refused.status_code == 200 and "This field is required" in refused.text
        answer = therapist.post(
            link,
            {
                "action": "acknowledge",
                "action_taken": "Called the patient; safety plan reviewed.",
            },
        )
    assert answer.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_by == safety_clinic.therapist.user
    assert alert.acknowledged_at == LATER
    assert alert.action_taken == "Called the patient; safety plan reviewed."
    event = AuditEvent.objects.get(action=AuditAction.CHANGED_PATIENT, patient=alert.patient)
    assert event.actor == safety_clinic.therapist.user
    assert event.at == LATER
    assert event.detail == (
        f"acknowledged safety alert {alert.pk}: Called the patient; safety plan reviewed."
    )
    with time_machine.travel(LATER, tick=False):
        desk = signed_in(front_desk(), verified=False).get(reverse("desk_today")).text
        mine = signed_in(safety_clinic.prescriber.user).get(reverse("my_calendar")).text
        page = therapist.get(link).text
    assert link not in desk and link not in mine
    assert "Acknowledged by" in page and "safety plan reviewed" in page


def test_a_second_acknowledgement_keeps_the_first(safety_clinic, alert):
    link = reverse("desk_alert", args=[alert.pk])
    with time_machine.travel(LATER, tick=False):
        signed_in(safety_clinic.therapist.user).post(link, {"action_taken": "Called; safe."})
        second = signed_in(safety_clinic.prescriber.user).post(
            link, {"action_taken": "Also called."}, follow=True
        )
    assert "Someone acknowledged this alert already" in second.text
    alert.refresh_from_db()
    assert alert.action_taken == "Called; safe."
    assert AuditEvent.objects.filter(detail__startswith="acknowledged safety alert").count() == 1


def test_messages_not_yet_sent_when_it_is_acknowledged_are_not_sent(safety_clinic, alert, smtp):
    with time_machine.travel(LATER, tick=False):
        signed_in(safety_clinic.therapist.user).post(
            reverse("desk_alert", args=[alert.pk]), {"action_taken": "Seen in clinic now."}
        )
        dispatch()
    told = Message.objects.filter(purpose=Purpose.SAFETY_ALERT)
    assert set(told.values_list("status", flat=True)) == {Status.CANCELLED}
    for clinician in (safety_clinic.prescriber, safety_clinic.therapist):
        assert smtp.to(clinician.user.email) == []


def test_the_front_desk_sees_that_it_exists_and_whom_it_went_to_not_the_answers(alert):
    link = reverse("desk_alert", args=[alert.pk])
    with time_machine.travel(LATER, tick=False):
        desk = signed_in(front_desk(), verified=False)
        page = desk.get(link).text
        refused = desk.post(link, {"action_taken": "Called."})
    assert "Avery Applewood" in page
    assert "Dr. Alvarez" in page and "Sam Rivers" in page  # who was told
    assert "self-harm" not in page and "Little interest or pleasure" not in page
    assert refused.status_code == 403
    viewed = AuditEvent.objects.filter(action=AuditAction.VIEWED_PATIENT, patient=alert.patient)
    assert list(viewed.values_list("detail", flat=True)) == [f"safety alert {alert.pk}"]


def test_the_patients_clinician_sees_the_reasons_and_every_answer_and_the_view_is_audited(
    safety_clinic, alert
):
    with time_machine.travel(LATER, tick=False):
        page = (
            signed_in(safety_clinic.prescriber.user)
            .get(reverse("desk_alert", args=[alert.pk]))
            .text
        )
    assert "Thoughts of being better off dead or of self-harm (PHQ-9 item 9)" in page
    assert "Little interest or pleasure in doing things" in page
    assert "Several days" in page
    assert "Goes to the clinical lead, Dr. Lead" in page
    event = AuditEvent.objects.get(action=AuditAction.VIEWED_PATIENT, patient=alert.patient)
    assert event.actor == safety_clinic.prescriber.user
    assert event.detail == f"safety alert {alert.pk} with the answers"
