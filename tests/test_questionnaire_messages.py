"""The questions asked before a visit reach the patient like any reminder: one text (a link
only) and one email when they open, out of quiet hours; one reminder only while something is
unanswered; moved with the visit, never for a cancelled one. The real parts at the edge: the
twilio SDK against the fake Twilio, Django's SMTP backend against a real SMTP server."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from notifications.content import is_gsm, segments, treatment_words
from notifications.models import Message, Purpose, Status
from questionnaires import answering, scoring
from questionnaires.models import QuestionnaireRequest, RequestStatus
from scheduler import booking
from scheduler.models import ConsentMethod
from tests.conftest import MONDAY, at
from tests.questionnaire_helpers import AskingClinic
from tests.reminder_helpers import CONSENTED_AT, run_until

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.questionnaires,
    pytest.mark.usefixtures("messaging", "twilio", "smtp"),
]
LINK = re.compile(r"https://clinic\.example\.org(/p/[A-Za-z0-9_-]+/questions/)")
ASKING = (Purpose.QUESTIONNAIRE, Purpose.QUESTIONNAIRE_REMINDER)
# The screening the tests book: Monday 3 June 2030, 09:00 in New York; the questions open
# 48 hours before, on the Saturday.
VISIT = at(MONDAY, "09:00")
OPENS = VISIT - timedelta(hours=48)
# Without it, at most one text a day: the clinic's own reminders could take the reminder's place.
EXPRESS_CONSENT = {
    "sms_express_consent_at": CONSENTED_AT,
    "sms_express_consent_method": ConsentMethod.WEB_FORM,
}


@pytest.fixture
def clinic(db, now):
    return AskingClinic()


def question_texts(twilio, patient) -> list[str]:
    return [m["body"] for m in twilio.sent_to(patient.mobile) if "a few questions" in m["body"]]


def question_emails(smtp, patient) -> list:
    return [m for m in smtp.to(patient.email) if "questions before your visit" in m["Subject"]]


def answer_all(request: QuestionnaireRequest) -> None:
    for item in scoring.items(request.instrument.questionnaire):
        answering.save_answer(request, item.link_id, item.options[0].code)
    answering.submit(request)


def test_the_questions_go_as_one_text_and_one_email_with_the_same_link_when_they_open(
    clinic, now, twilio, smtp, client
):
    patient = clinic.texting_patient()
    clinic.book(patient, clinic.screening, VISIT)
    run_until(now, OPENS - timedelta(minutes=1))
    assert question_texts(twilio, patient) == [] and question_emails(smtp, patient) == []

    run_until(now, OPENS + timedelta(minutes=1))
    [text] = question_texts(twilio, patient)  # one text for PHQ-9 and GAD-7 together
    assert text.startswith(f"Hi Avery, {clinic.clinic.name}: a few questions before your visit")
    assert "on Mon Jun 3" in text
    [email] = question_emails(smtp, patient)
    assert email["Subject"] == "A few questions before your visit on Mon Jun 3"
    [link] = LINK.findall(text)
    assert LINK.findall(email.get_body(("plain",)).get_content()) == [link]
    page = client.get(link)
    assert page.status_code == 200
    assert "Answer PHQ-9" in page.text and "Answer GAD-7" in page.text  # both answerable now


def test_questions_opening_in_the_patients_quiet_hours_go_when_they_end(clinic, now, twilio):
    # 09:00 in New York is 06:00 in Los Angeles: the questions open there at 06:00 on Saturday.
    patient = clinic.texting_patient(time_zone="America/Los_Angeles")
    clinic.book(patient, clinic.screening, VISIT)
    [message] = Message.objects.filter(purpose=Purpose.QUESTIONNAIRE, channel="sms")
    assert message.send_at == at(OPENS.date(), "08:00", "America/Los_Angeles")
    run_until(now, message.send_at - timedelta(minutes=1))
    assert question_texts(twilio, patient) == []
    run_until(now, message.send_at)
    assert len(question_texts(twilio, patient)) == 1


def test_the_reminder_goes_only_while_something_is_unanswered(clinic, now, twilio, smtp):
    answering_patient = clinic.texting_patient("Ada", **EXPRESS_CONSENT)
    silent = clinic.texting_patient("Ben", **EXPRESS_CONSENT)
    clinic.book(answering_patient, clinic.screening, VISIT)
    clinic.book(silent, clinic.screening, VISIT + timedelta(hours=1))
    run_until(now, OPENS + timedelta(hours=2))
    for request in QuestionnaireRequest.objects.filter(patient=answering_patient):
        answer_all(request)
    run_until(now, VISIT - timedelta(minutes=1))
    assert len(question_texts(twilio, answering_patient)) == 1
    assert len(question_emails(smtp, answering_patient)) == 1
    texts = question_texts(twilio, silent)
    assert len(texts) == 2 and "reminder" in texts[1]
    assert [m["Subject"] for m in question_emails(smtp, silent)] == [
        "A few questions before your visit on Mon Jun 3",
        "Reminder: a few questions before your visit on Mon Jun 3",
    ]
    reminder = Message.objects.get(
        patient=answering_patient, purpose=Purpose.QUESTIONNAIRE_REMINDER, channel="sms"
    )
    assert reminder.status == Status.CANCELLED
    assert "answered" in reminder.reason


def test_a_moved_visit_moves_its_questions_and_their_messages(clinic, now):
    patient = clinic.texting_patient()
    visit = clinic.book(patient, clinic.screening, VISIT)
    old = list(Message.objects.filter(purpose__in=ASKING).values_list("pk", flat=True))
    assert len(old) == 4  # the request and its reminder, by text and by email
    later = VISIT + timedelta(days=2)
    booking.move(visit, start=later)
    for request in QuestionnaireRequest.objects.filter(visit=visit):
        assert (request.opens_at, request.closes_at) == (later - timedelta(hours=48), visit.end)
        assert request.status == RequestStatus.OPEN
    assert set(Message.objects.filter(pk__in=old).values_list("status", flat=True)) == {
        Status.CANCELLED
    }
    new = Message.objects.filter(purpose__in=ASKING, visit_sequence=visit.sequence)
    assert (
        sorted(m.send_at for m in new if m.purpose == Purpose.QUESTIONNAIRE)
        == [later - timedelta(hours=48)] * 2
    )
    assert all(m.expires_at == later for m in new)


def test_nothing_is_sent_for_a_cancelled_visit(clinic, now, twilio, smtp):
    patient = clinic.texting_patient()
    visit = clinic.book(patient, clinic.screening, VISIT)
    booking.cancel(visit, "Patient asked")
    assert set(QuestionnaireRequest.objects.values_list("status", flat=True)) == {
        RequestStatus.CANCELLED
    }
    call_command(
        "dispatch_reminders",
        "--now",
        (OPENS - timedelta(minutes=1)).isoformat(),
        "--until",
        (VISIT + timedelta(hours=2)).isoformat(),
        stdout=StringIO(),
    )
    assert question_texts(twilio, patient) == [] and question_emails(smtp, patient) == []
    assert set(Message.objects.filter(purpose__in=ASKING).values_list("status", flat=True)) == {
        Status.CANCELLED
    }


def test_a_patient_who_opted_out_of_texts_gets_the_email_only(clinic, now, twilio, smtp):
    patient = clinic.texting_patient()
    clinic.book(patient, clinic.screening, VISIT)
    patient.sms_opted_out_at = now_moment = OPENS - timedelta(days=1)
    patient.save(update_fields=["sms_opted_out_at"])
    assert now_moment < OPENS
    run_until(now, OPENS + timedelta(minutes=1))
    assert question_texts(twilio, patient) == []
    assert len(question_emails(smtp, patient)) == 1
    text = Message.objects.get(purpose=Purpose.QUESTIONNAIRE, channel="sms")
    assert text.status == Status.SUPPRESSED


@pytest.mark.parametrize("first", ["Avery", "Maximilianna-Josephine"])
def test_the_text_names_no_questionnaire_score_or_treatment_and_fits_two_segments(
    clinic, now, twilio, smtp, settings, first
):
    settings.SMS_CLINIC_NAME = "Riverside Wellness and Integration Center"
    patient = clinic.texting_patient(first, **EXPRESS_CONSENT)
    clinic.book(patient, clinic.screening, VISIT)
    run_until(now, OPENS + timedelta(hours=30))
    texts = question_texts(twilio, patient)
    assert len(texts) == 2  # the request and its reminder
    for text in texts:
        assert treatment_words(text) == [], text
        for word in ("PHQ", "GAD", "depress", "anxi", "mood", "score", "questionnaire"):
            assert word.lower() not in text.lower(), (word, text)
        assert is_gsm(text) and segments(text) <= 2, (len(text), text)
    for email in question_emails(smtp, patient):
        body = email.get_body(("plain",)).get_content()
        html = email.get_body(("html",)).get_content()
        assert treatment_words(email["Subject"]) == []
        assert treatment_words(body) == [] and treatment_words(html) == []
        assert "PHQ" not in body + html and "GAD" not in body + html


def test_a_dose_asked_again_after_a_renumbering_gets_its_messages_back(clinic, now):
    patient = clinic.texting_patient()
    doses = clinic.doses(patient, 3)
    booking.cancel(doses[1], "Unwell")  # the third dose is now the second: not asked
    third = Message.objects.filter(visit=doses[2], purpose__in=ASKING)
    assert set(third.values_list("status", flat=True)) == {Status.CANCELLED}
    clinic.book(patient, clinic.iv, doses[1].start)  # booked again: the third is third again
    assert set(third.values_list("status", flat=True)) == {Status.PENDING}
    assert third.count() == 4
    assert (
        QuestionnaireRequest.objects.filter(visit=doses[2], status=RequestStatus.OPEN).count() == 2
    )
