"""What raises a safety alert: PHQ-9 item 9 above "not at all", and a PHQ-9 total at or over the
clinic's threshold when it set one; nothing else does."""

import time_machine

from notifications.models import Message, Purpose
from questionnaires import answering, scoring
from questionnaires.models import Instrument, QuestionnaireRequest, SafetyAlert, SafetyPolicy
from questionnaires.safety import policy_for
from tests.safety_helpers import (
    NOT_AT_ALL,
    OPEN_MORNING,
    SEVERAL_DAYS,
    answer_phq9,
    request_before,
)


def answered(safety_clinic, *, item_9: int, others: int):
    patient = safety_clinic.patient("Avery", "Applewood")
    with time_machine.travel(OPEN_MORNING, tick=False):
        visit = safety_clinic.dose(patient)
        return answer_phq9(request_before(visit, OPEN_MORNING), item_9=item_9, others=others)


def test_item_9_not_at_all_and_a_total_under_the_threshold_raise_nothing(safety_clinic):
    safety_clinic.policy.phq9_total_threshold = 20
    safety_clinic.policy.save()
    response = answered(safety_clinic, item_9=NOT_AT_ALL, others=2)  # total 16
    assert response.total == 16
    assert not SafetyAlert.objects.exists()
    assert not Message.objects.filter(purpose=Purpose.SAFETY_ALERT).exists()


def test_item_9_several_days_raises_one_alert_saying_why(safety_clinic):
    response = answered(safety_clinic, item_9=SEVERAL_DAYS, others=0)
    alert = SafetyAlert.objects.get()
    assert alert.response == response
    assert alert.reasons == ["Thoughts of being better off dead or of self-harm (PHQ-9 item 9)"]
    # A text and an email to each of the prescriber and the therapist, due at once.
    told = Message.objects.filter(purpose=Purpose.SAFETY_ALERT)
    assert sorted(told.values_list("clinician__display_name", "channel")) == [
        ("Dr. Alvarez", "email"),
        ("Dr. Alvarez", "sms"),
        ("Sam Rivers", "email"),
        ("Sam Rivers", "sms"),
    ]
    assert {m.send_at for m in told} == {OPEN_MORNING}


def test_a_total_at_the_clinics_threshold_raises_one_alert(safety_clinic):
    safety_clinic.policy.phq9_total_threshold = 16
    safety_clinic.policy.save()
    answered(safety_clinic, item_9=NOT_AT_ALL, others=2)  # total 16
    alert = SafetyAlert.objects.get()
    assert alert.reasons == ["PHQ-9 total 16 is at or above the clinic's threshold of 16."]


def test_item_9_and_the_threshold_together_raise_one_alert_with_both_reasons(safety_clinic):
    safety_clinic.policy.phq9_total_threshold = 10
    safety_clinic.policy.save()
    answered(safety_clinic, item_9=SEVERAL_DAYS, others=2)  # total 17
    (alert,) = SafetyAlert.objects.all()
    assert len(alert.reasons) == 2
    assert Message.objects.filter(purpose=Purpose.SAFETY_ALERT).count() == 4


def test_without_a_threshold_a_high_total_alone_raises_nothing(safety_clinic):
    answered(safety_clinic, item_9=NOT_AT_ALL, others=3)  # total 24, the most without item 9
    assert not SafetyAlert.objects.exists()


def test_a_clinic_without_a_policy_gets_the_defaults(clinic):
    policy = policy_for(clinic.clinic)
    assert policy.pk is None
    assert policy.escalate_after_minutes == 60
    assert policy.phq9_total_threshold is None
    assert policy.clinical_lead is None
    assert not SafetyPolicy.objects.exists()


def test_a_gad7_raises_nothing_however_high(safety_clinic):
    patient = safety_clinic.patient("Avery", "Applewood")
    with time_machine.travel(OPEN_MORNING, tick=False):
        visit = safety_clinic.dose(patient)
        gad7 = Instrument.objects.current().get(code="gad-7")
        request = QuestionnaireRequest.objects.create(
            patient=patient,
            visit=visit,
            instrument=gad7,
            opens_at=OPEN_MORNING,
            closes_at=visit.end,
        )
        for item in scoring.items(gad7.questionnaire):
            answering.save_answer(request, item.link_id, item.options[-1].code)
        assert answering.submit(request).total == 21
    assert not SafetyAlert.objects.exists()
