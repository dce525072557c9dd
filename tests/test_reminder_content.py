"""What messages say: texts never name the treatment (docs/architecture.md, invariant 8),
fit in two GSM segments, and emails carry the full instructions."""

import io

import pytest
from django.core.management import call_command

from notifications import transports
from notifications.content import (
    COMBINED_MAX_SEGMENTS,
    SMS_PURPOSES,
    combined_sms_body,
    email_content,
    is_gsm,
    segments,
    sms_body,
    treatment_words,
)
from notifications.dispatch import dispatch
from notifications.models import Channel, Message, Purpose, Status
from notifications.patient_links import issue_patient_link
from scheduler.models import Clinic, Clinician, Patient, Visit, VisitType
from tests.conftest import MONDAY, at
from tests.reminder_helpers import HOUR, ReminderClinic, messages_of, reminder_emails

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging")]


@pytest.fixture
def demo(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("seed_demo", stdout=io.StringIO())
    return Clinic.objects.get(slug="riverside")


VISIT = at(MONDAY, "10:00")


def unsaved_message(visit_type: VisitType, patient: Patient, purpose: str, start=VISIT) -> Message:
    clinician = Clinician.objects.filter(clinic=visit_type.clinic).first()
    visit = Visit(
        pk=int(start.timestamp()),  # one visit, one id: a combined text lists it once
        patient=patient,
        visit_type=visit_type,
        clinician=clinician,
        start=start,
        end=start + visit_type.duration,
    )
    return Message(visit=visit, patient=patient, purpose=purpose, channel=Channel.SMS)


def test_every_sms_template_for_every_visit_type_is_free_of_treatment_words(demo):
    patient = Patient.objects.filter(clinic=demo).first()
    visit_types = list(VisitType.objects.filter(clinic=demo))
    kinds = {vt.kind for vt in visit_types}
    assert kinds == {"screening", "preparation", "dosing", "integration", "maintenance"}
    assert {vt.dosing_route for vt in visit_types} >= {"iv", "im", "lozenge", "intranasal"}
    rendered = 0
    for visit_type in visit_types:
        # The visit type's own name and instructions do name the treatment:
        # the check below would catch them if a template let them through.
        assert treatment_words(visit_type.name + visit_type.preparation_instructions) or (
            not visit_type.is_dosing
        )
        for purpose in SMS_PURPOSES:
            body = sms_body(
                unsaved_message(visit_type, patient, purpose), link=issue_patient_link(patient)
            )
            assert treatment_words(body) == [], (visit_type.slug, purpose, body)
            assert patient.first_name in body and demo.name in body
            assert "(212) 555-0100" in body
            assert is_gsm(body), body
            assert len(body) <= 306, (purpose, len(body))  # two GSM segments
            # Email subjects show on lock screens too; bodies may carry instructions.
            email = email_content(unsaved_message(visit_type, patient, purpose))
            assert treatment_words(email.subject) == [], (visit_type.slug, purpose, email.subject)
            assert "Mon Jun 3" in email.subject or "today" in email.subject
            rendered += 1
    assert rendered == len(visit_types) * len(SMS_PURPOSES)


def test_a_combined_text_says_when_each_visit_is_and_nothing_of_what_they_are(demo):
    patient = Patient.objects.filter(clinic=demo).first()
    dosing = VisitType.objects.get(clinic=demo, slug="iv-infusion")
    checkin = VisitType.objects.get(clinic=demo, kind="maintenance")
    link = issue_patient_link(patient)
    messages = [
        unsaved_message(dosing, patient, Purpose.AFTERCARE, at(MONDAY, "09:00")),
        unsaved_message(dosing, patient, Purpose.PREPARATION, at(MONDAY, "10:00") + 48 * HOUR),
        unsaved_message(checkin, patient, Purpose.REMINDER, at(MONDAY, "15:00") + 24 * HOUR),
        unsaved_message(checkin, patient, Purpose.REMINDER, at(MONDAY, "11:30") + 72 * HOUR),
        unsaved_message(dosing, patient, Purpose.REMINDER, at(MONDAY, "10:00") + 48 * HOUR),
    ]
    body = combined_sms_body(messages, link=link)
    assert body == (
        f"Hi {patient.first_name}, thank you for your visit with {demo.name} today. Your notes "
        "for the rest of the day are in your email. Coming up: Tue Jun 4 at 3:00 PM, Wed Jun 5 "
        f"at 10:00 AM and Thu Jun 6 at 11:30 AM. How to prepare: {link} (also in your email) "
        "Reply C to confirm your next visit or R to reschedule. Questions: (212) 555-0100. "
        "Reply STOP to opt out."
    )
    assert treatment_words(body) == [] and is_gsm(body)
    assert segments(body) <= COMBINED_MAX_SEGMENTS
    reminders = combined_sms_body(messages[2:4], link=link)
    assert reminders.startswith(
        f"Hi {patient.first_name}, a reminder of your visits with {demo.name} on Tue Jun 4 at "
        "3:00 PM and Thu Jun 6 at 11:30 AM. Reply C"
    )
    assert "/p/" not in reminders  # no preparation text among them: no link


def test_segments_count_gsm_and_ucs2_as_carriers_do():
    assert [segments("a" * n) for n in (160, 161, 306, 307, 459)] == [1, 2, 2, 3, 3]
    assert [segments("ë" * n) for n in (70, 71, 134, 135)] == [1, 2, 2, 3]


@pytest.mark.parametrize(
    "text",
    [
        "Your Ketamine session",
        "esketamine",
        "SPRAVATO",
        "IV infusion at 10",
        "psychedelic therapy",
        "your dosing visit",
        "lozenge",
        "for depression",
    ],
)
def test_the_treatment_word_check_catches_what_it_must(text):
    assert treatment_words(text)


def test_the_treatment_word_check_ignores_links_and_ordinary_words():
    assert treatment_words("Join here: https://video.example.com/-iv-/room") == []
    assert treatment_words("Hi Ivy, your visit with Riverside Wellness Clinic is confirmed.") == []


def test_emails_carry_the_full_preparation_and_aftercare_instructions(db):
    clinic = ReminderClinic()
    clinic.iv.preparation_instructions = "No solid food for 6 hours before.\nArrange a ride home."
    clinic.iv.aftercare_instructions = "Rest for the rest of the day."
    clinic.iv.save()
    visit = clinic.book(clinic.texting_patient(), clinic.iv, at(MONDAY, "10:00"))
    preparation = messages_of(visit, purpose=Purpose.PREPARATION, channel=Channel.EMAIL)[0]
    email = email_content(preparation)
    assert "No solid food for 6 hours before." in email.text
    assert "No solid food for 6 hours before.<br>Arrange a ride home." in email.html
    assert "Mon Jun 3 at 10:00 AM" in email.subject
    assert treatment_words(email.subject) == []  # subjects show on lock screens too
    aftercare = email_content(messages_of(visit, purpose=Purpose.AFTERCARE)[0])
    assert "Rest for the rest of the day." in aftercare.text
    assert aftercare.subject == "After your visit today"


def test_a_text_shows_the_patients_own_zone_when_it_differs_from_the_clinics(db):
    clinic = ReminderClinic()
    visit = clinic.book(
        clinic.texting_patient(time_zone="America/Chicago"), clinic.screening, at(MONDAY, "10:00")
    )
    body = sms_body(messages_of(visit, channel=Channel.SMS)[0], link="")
    assert "Mon Jun 3 at 9:00 AM CDT" in body


def test_a_clinic_name_that_names_the_treatment_stops_the_text_and_says_why(db, now, settings):
    clinic = ReminderClinic()
    clinic.clinic.name = "Riverside Ketamine Center"
    clinic.clinic.save()
    visit = clinic.book(clinic.texting_patient(), clinic.screening, at(MONDAY, "10:00"))
    now.move_to(at(MONDAY, "10:00") - 72 * HOUR)
    dispatch()
    sms = messages_of(visit, channel=Channel.SMS, status=Status.FAILED)
    assert len(sms) == 1
    assert sms[0].error_code == "treatment-words" and "SMS_CLINIC_NAME" in sms[0].last_error
    assert transports.outbox == []
    assert len(reminder_emails()) == 1  # email may name the clinic

    settings.SMS_CLINIC_NAME = "Riverside Center"
    now.move_to(at(MONDAY, "10:00") - 24 * HOUR)
    dispatch()
    assert [m.body for m in transports.outbox] == [
        "Hi Avery, a reminder of your visit with Riverside Center on Mon Jun 3 at 10:00 AM. "
        "Reply C to confirm or R to reschedule. Questions: (212) 555-0100. Reply STOP to opt out."
    ]


def test_a_preparation_text_carries_a_private_link_that_opens_only_the_newest(demo, client):
    import re

    patient = Patient.objects.filter(clinic=demo).first()
    dosing = VisitType.objects.get(clinic=demo, slug="iv-infusion")
    first = sms_body(
        unsaved_message(dosing, patient, Purpose.PREPARATION), link=issue_patient_link(patient)
    )
    second = sms_body(
        unsaved_message(dosing, patient, Purpose.PREPARATION), link=issue_patient_link(patient)
    )
    links = [
        re.search(r"https://clinic.example.org(/p/[A-Za-z0-9_-]{43}/)", body).group(1)
        for body in (first, second)
    ]
    assert treatment_words(second) == [] and len(second) <= 306
    assert client.get(links[1]).status_code == 200
    assert client.get(links[0]).status_code == 404  # revoked by the newer text
    reminder = sms_body(unsaved_message(dosing, patient, Purpose.REMINDER), link="")
    assert "/p/" not in reminder
