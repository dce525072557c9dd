"""A PHQ-9 with item 9 above "not at all" reaches the patient's prescriber and therapist in one
dispatch pass: a text each through Twilio (the fake on loopback) and an email each through
SMTP (aiosmtpd), none of them saying who, what or why; the link opens the alert page."""

import time_machine
from django.test import Client

from notifications.dispatch import dispatch
from notifications.models import Message, Purpose, Status
from questionnaires.models import SafetyAlert
from tests.page_helpers import sign_in_verified
from tests.safety_helpers import (
    OPEN_MORNING,
    SEVERAL_DAYS,
    answer_phq9,
    request_before,
)


def submit_positive_item_9(safety_clinic):
    patient = safety_clinic.patient("Avery", "Applewood")
    with time_machine.travel(OPEN_MORNING, tick=False):
        visit = safety_clinic.dose(patient)
        answer_phq9(request_before(visit, OPEN_MORNING), item_9=SEVERAL_DAYS, others=1)
    return patient, visit


def test_prescriber_and_therapist_each_get_one_text_and_one_email_in_one_pass(
    safety_clinic, twilio, smtp
):
    patient, _ = submit_positive_item_9(safety_clinic)
    alert = SafetyAlert.objects.get(patient=patient)
    with time_machine.travel(OPEN_MORNING, tick=False):
        dispatch()
    prescriber, therapist = safety_clinic.prescriber, safety_clinic.therapist
    link = f"https://clinic.example.org/desk/alerts/{alert.pk}/"
    for clinician in (prescriber, therapist):
        texts = twilio.sent_to(clinician.mobile)
        assert len(texts) == 1
        body = texts[0]["body"]
        assert "A patient's answers need review today" in body
        assert link in body
        emails = smtp.to(clinician.user.email)
        assert len(emails) == 1
        assert emails[0]["Subject"] == "A patient's answers need review today"
        assert link in emails[0].get_body(("plain",)).get_content()
        for said in (body, emails[0].as_string()):
            for private in ("Avery", "Applewood", "AA", "PHQ", "item 9", "self-harm", "dead"):
                assert private not in said
            assert "Infusion" not in said and "infusion" not in said
    statuses = set(
        Message.objects.filter(purpose=Purpose.SAFETY_ALERT).values_list("status", flat=True)
    )
    assert statuses <= {Status.QUEUED, Status.SENT}


def test_the_texts_link_opens_the_alert_page_for_the_prescriber(safety_clinic, twilio, smtp):
    submit_positive_item_9(safety_clinic)
    with time_machine.travel(OPEN_MORNING, tick=False):
        dispatch()
    link = twilio.sent_to(safety_clinic.prescriber.mobile)[0]["body"].rsplit(" ", 1)[-1]
    path = link.removeprefix("https://clinic.example.org")
    client = Client()
    assert client.get(path).status_code == 302  # behind sign-in
    sign_in_verified(client, safety_clinic.prescriber.user)
    page = client.get(path)
    assert page.status_code == 200
    assert "Avery Applewood" in page.text
    assert "Thoughts of being better off dead or of self-harm" in page.text
