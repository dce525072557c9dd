"""Alert texts and emails to clinicians go whatever binds the patient's own messages (consent,
opt-out, quiet hours, text limits) and whatever the clinicians' wish for calendar invites;
a clinician without a mobile still gets the email; each alert is told once, even two on one
visit; a clinician's number refused by the carrier is never taken for the patient's opt-out."""

from datetime import timedelta

import time_machine
from django.test import Client
from django.urls import reverse

from notifications.dispatch import dispatch
from notifications.models import Message, Purpose, Status
from notifications.rules import TextCounts, TextLedger
from questionnaires.models import Instrument, QuestionnaireRequest, SafetyAlert
from questionnaires.safety import acknowledge
from scheduler.models import ConsentMethod, InvitePreference
from tests.conftest import at
from tests.fake_twilio import Failure
from tests.page_helpers import sign_in_verified
from tests.safety_helpers import (
    DOSE_DAY,
    OPEN_MORNING,
    SEVERAL_DAYS,
    answer_phq9,
    request_before,
)

LATE_EVENING = at(DOSE_DAY - timedelta(days=4), "23:30")  # Thursday, the patient's quiet hours


def texts_to(twilio, clinician) -> list[str]:
    return [m["body"] for m in twilio.sent_to(clinician.mobile)]


def test_a_clinician_without_a_mobile_gets_the_email_and_the_desk_sees_why_no_text(
    safety_clinic, twilio, smtp
):
    therapist = safety_clinic.therapist
    therapist.mobile = ""
    therapist.save(update_fields=["mobile"])
    patient = safety_clinic.patient("Avery", "Applewood")
    with time_machine.travel(OPEN_MORNING, tick=False):
        answer_phq9(request_before(safety_clinic.dose(patient), OPEN_MORNING), item_9=SEVERAL_DAYS)
        dispatch()
        client = Client()
        sign_in_verified(client, safety_clinic.prescriber.user)
        page = client.get(reverse("desk_alert", args=[SafetyAlert.objects.get().pk])).text
    assert len(smtp.to(therapist.user.email)) == 1
    text = Message.objects.get(purpose=Purpose.SAFETY_ALERT, clinician=therapist, channel="sms")
    assert text.status == Status.SUPPRESSED
    assert text.reason.startswith("The clinician has no mobile number for urgent texts")
    assert "The clinician has no mobile number for urgent texts" in page
    assert len(texts_to(twilio, safety_clinic.prescriber)) == 1


def test_they_go_at_once_in_the_patients_quiet_hours_after_an_opt_out_and_without_invites(
    safety_clinic, twilio, smtp
):
    # The patient said STOP and has no consent to texts; the clinicians take no invites.
    patient = safety_clinic.patient(
        "Avery",
        "Applewood",
        sms_consent_at=OPEN_MORNING - timedelta(days=30),
        sms_consent_method=ConsentMethod.WEB_FORM,
        sms_opted_out_at=OPEN_MORNING - timedelta(days=1),
    )
    for clinician in (safety_clinic.prescriber, safety_clinic.therapist):
        InvitePreference.objects.create(clinician=clinician, email_invites=False)
    with time_machine.travel(OPEN_MORNING, tick=False):
        visit = safety_clinic.dose(patient)
    with time_machine.travel(LATE_EVENING, tick=False):
        answer_phq9(request_before(visit, LATE_EVENING), item_9=SEVERAL_DAYS)
        dispatch()
    for clinician in (safety_clinic.prescriber, safety_clinic.therapist):
        assert len(texts_to(twilio, clinician)) == 1
        assert len(smtp.to(clinician.user.email)) == 1
    assert twilio.sent_to(patient.mobile) == []


def test_they_do_not_count_against_the_patients_text_limits(safety_clinic, twilio, smtp):
    patient = safety_clinic.patient("Avery", "Applewood")
    with time_machine.travel(OPEN_MORNING, tick=False):
        answer_phq9(request_before(safety_clinic.dose(patient), OPEN_MORNING), item_9=SEVERAL_DAYS)
        dispatch()
        assert len(twilio.creates()) == 2
        assert TextLedger.load([patient], OPEN_MORNING).counts[patient.pk] == TextCounts()


def test_a_patients_stop_does_not_stop_the_clinicians_texts_about_them(safety_clinic, twilio, smtp):
    patient = safety_clinic.patient(
        "Avery",
        "Applewood",
        sms_consent_at=OPEN_MORNING - timedelta(days=30),
        sms_consent_method=ConsentMethod.WEB_FORM,
    )
    with time_machine.travel(OPEN_MORNING, tick=False):
        answer_phq9(request_before(safety_clinic.dose(patient), OPEN_MORNING), item_9=SEVERAL_DAYS)
        twilio.text_from(patient.mobile, "STOP", client=Client())
        dispatch()
    patient.refresh_from_db()
    assert patient.sms_opted_out_at is not None
    assert len(texts_to(twilio, safety_clinic.prescriber)) == 1
    assert len(texts_to(twilio, safety_clinic.therapist)) == 1


def test_a_clinicians_number_refused_as_opted_out_is_not_the_patients_opt_out(
    safety_clinic, twilio, smtp
):
    patient = safety_clinic.patient(
        "Avery",
        "Applewood",
        sms_consent_at=OPEN_MORNING - timedelta(days=30),
        sms_consent_method=ConsentMethod.WEB_FORM,
    )
    twilio.opted_out_numbers.add(safety_clinic.therapist.mobile)
    with time_machine.travel(OPEN_MORNING, tick=False):
        answer_phq9(request_before(safety_clinic.dose(patient), OPEN_MORNING), item_9=SEVERAL_DAYS)
        dispatch()
    text = Message.objects.get(clinician=safety_clinic.therapist, channel="sms")
    assert text.status == Status.FAILED and text.error_code == "21610"  # visible on the desk
    patient.refresh_from_db()
    assert patient.sms_opted_out_at is None
    assert len(smtp.to(safety_clinic.therapist.user.email)) == 1


def test_two_alerts_on_one_visit_each_reach_the_clinicians_once(safety_clinic, twilio, smtp):
    """The outbox keeps a notice to a clinician once per visit change; alerts are once per
    alert instead, so a second alert on the same visit is told like the first."""
    phq9 = Instrument.objects.current().get(code="phq-9")
    # The same items under another code: a second instrument with a safety rule.
    twin = Instrument.objects.create(
        code="phq-9-clinic",
        version="1",
        short_name="PHQ-9 (clinic)",
        title=phq9.title,
        questionnaire=phq9.questionnaire,
        scoring=phq9.scoring,
        source=phq9.source,
    )
    patient = safety_clinic.patient("Avery", "Applewood")
    with time_machine.travel(OPEN_MORNING, tick=False):
        visit = safety_clinic.dose(patient)
        answer_phq9(request_before(visit, OPEN_MORNING), item_9=SEVERAL_DAYS)
        dispatch()
        acknowledge(SafetyAlert.objects.get(), safety_clinic.prescriber.user, "Called; safe.")
    with time_machine.travel(OPEN_MORNING + timedelta(hours=1), tick=False):
        second = QuestionnaireRequest.objects.create(
            patient=patient,
            visit=visit,
            instrument=twin,
            opens_at=OPEN_MORNING,
            closes_at=visit.end,
        )
        answer_phq9(second, item_9=SEVERAL_DAYS)
        dispatch()
        dispatch()
    assert SafetyAlert.objects.count() == 2
    for clinician in (safety_clinic.prescriber, safety_clinic.therapist):
        assert len(texts_to(twilio, clinician)) == 2
        assert len(smtp.to(clinician.user.email)) == 2
    links = {body.rsplit(" ", 1)[-1] for body in texts_to(twilio, safety_clinic.prescriber)}
    assert len(links) == 2  # each text opens its own alert


def test_a_text_twilio_could_not_take_is_retried_and_then_goes(safety_clinic, twilio, smtp):
    patient = safety_clinic.patient("Avery", "Applewood")
    twilio.fail_next(Failure(500))
    with time_machine.travel(OPEN_MORNING, tick=False):
        answer_phq9(request_before(safety_clinic.dose(patient), OPEN_MORNING), item_9=SEVERAL_DAYS)
        dispatch()
    waiting = Message.objects.get(status=Status.PENDING, purpose=Purpose.SAFETY_ALERT)
    assert waiting.channel == "sms" and waiting.attempts == 1 and waiting.last_error
    assert waiting.send_at > OPEN_MORNING
    with time_machine.travel(waiting.send_at, tick=False):
        dispatch()
    for clinician in (safety_clinic.prescriber, safety_clinic.therapist):
        assert len(texts_to(twilio, clinician)) == 1
