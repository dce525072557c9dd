"""Email invites: booked, moved and cancelled visits reach calendar apps through a real SMTP server."""

from datetime import timedelta

import pytest
from django_q.conf import Conf
from django_q.models import OrmQ, Task
from icalendar import Calendar

from scheduler import booking
from scheduler.invites import send_invites
from scheduler.models import CalendarDetail, InvitePreference, Modality, VisitKind
from tests.conftest import MONDAY, at
from tests.ical_checks import assert_valid_ics, treatment_words, unfold
from tests.servers import SmtpServer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now")]


@pytest.fixture
def mailbox(settings):
    server = SmtpServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.DEFAULT_FROM_EMAIL = "Riverside Clinic <appointments@clinic.example.org>"
    yield server.mailbox
    server.stop()


@pytest.fixture
def worker(monkeypatch, django_capture_on_commit_callbacks):
    """Run what the booking queues: after commit, through django-q2's own sync worker path."""
    monkeypatch.setattr(Conf, "SYNC", True)

    def run(operation, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return operation(*args, **kwargs)

    return run


@pytest.fixture
def spravato(clinic):
    return clinic.visit_type(
        "spravato-esketamine",
        VisitKind.DOSING,
        120,
        "prescriber",
        Modality.IN_PERSON,
        clinic.monitoring,
        dosing_route="intranasal",
        preparation_instructions="No food 2 hours before your esketamine session.",
    )


def book(worker, clinic, visit_type=None, **kwargs):
    visit_type = visit_type or clinic.iv
    defaults = {
        "patient": clinic.patient(),
        "clinician": clinic.prescriber,
        "room": clinic.room1 if not visit_type.is_telehealth else None,
        "start": at(MONDAY, "10:00"),
    }
    return worker(booking.book, visit_type=visit_type, **{**defaults, **kwargs})


def calendar_parts(message):
    """(the text/calendar alternative, the attached .ics) of an invite, checking the MIME layout."""
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    kinds = [part.get_content_type() for part in alternative.get_payload()]
    assert kinds == ["text/plain", "text/html", "text/calendar"]
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_filename() == "invite.ics"
    calendar = alternative.get_payload()[2]
    return calendar, attachment


def invite_ics(message) -> tuple[str, str]:
    """(the METHOD the MIME part declares, the calendar text), after checking both copies agree."""
    part, attachment = calendar_parts(message)
    text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    assert attachment.get_payload(decode=True).decode("utf-8") == text
    assert_valid_ics(text)
    return part.get_param("method"), text


def only_event(text: str):
    (event,) = Calendar.from_ical(text).events
    return event


def test_booking_sends_a_request_that_calendar_apps_apply(worker, mailbox, clinic):
    visit = book(worker, clinic)
    (message,) = mailbox.messages
    assert message["To"] == visit.patient.email
    assert message["From"] == "Riverside Clinic <appointments@clinic.example.org>"
    method, text = invite_ics(message)
    assert method == "REQUEST" and "METHOD:REQUEST\r\n" in text
    event = only_event(text)
    assert str(event["UID"]) == visit.uid and event["SEQUENCE"] == 0
    assert str(event["STATUS"]) == "TENTATIVE"
    assert str(event["ORGANIZER"]) == "mailto:appointments@clinic.example.org"
    assert event["ORGANIZER"].params["CN"] == clinic.clinic.name
    attendee = event["ATTENDEE"]
    assert str(attendee) == f"mailto:{visit.patient.email}"
    assert attendee.params["PARTSTAT"] == "NEEDS-ACTION" and attendee.params["RSVP"] == "FALSE"
    assert event.start == visit.start
    plain = message.get_body(("plain",)).get_content()
    assert "Monday, June 3, 2030, 10:00-12:00 EDT" in plain
    assert "Dr. Alvarez" in plain and "http://localhost:8000/p/" in plain
    html = message.get_body(("html",)).get_content()
    assert "is booked" in html and "<table>" in html


def test_moving_sends_an_update_with_the_same_uid_and_a_higher_sequence(worker, mailbox, clinic):
    visit = book(worker, clinic)
    worker(booking.move, visit, start=at(MONDAY + timedelta(days=1), "13:00"))
    booked, moved = mailbox.messages
    assert moved["Subject"].startswith("Moved: ")
    method, text = invite_ics(moved)
    event = only_event(text)
    assert method == "REQUEST"
    assert str(event["UID"]) == str(only_event(invite_ics(booked)[1])["UID"]) == visit.uid
    assert event["SEQUENCE"] == 1
    assert event.start == at(MONDAY + timedelta(days=1), "13:00")
    assert "DTSTART;TZID=America/New_York:20300604T130000" in unfold(text)


def test_cancelling_sends_a_cancel_with_status_cancelled_and_a_higher_sequence(
    worker, mailbox, clinic
):
    visit = book(worker, clinic)
    worker(booking.cancel, visit, "patient asked")
    _, cancelled = mailbox.messages
    method, text = invite_ics(cancelled)
    assert method == "CANCEL" and "METHOD:CANCEL\r\n" in text
    event = only_event(text)
    assert str(event["STATUS"]) == "CANCELLED" and event["SEQUENCE"] == 1
    assert str(event["UID"]) == visit.uid
    assert "is cancelled" in cancelled.get_body(("plain",)).get_content()


def test_changes_that_keep_time_and_place_send_nothing(worker, mailbox, clinic):
    visit = book(worker, clinic)
    worker(booking.confirm, visit)
    worker(booking.arrange_ride_home, visit)
    assert len(mailbox.messages) == 1


def test_invites_are_queued_for_the_worker_not_sent_in_the_request(
    mailbox, clinic, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        visit = booking.book(
            patient=clinic.patient(),
            visit_type=clinic.iv,
            clinician=clinic.prescriber,
            room=clinic.room1,
            start=at(MONDAY, "10:00"),
        )
    assert mailbox.messages == []
    (queued,) = OrmQ.objects.all()
    assert queued.func() == "scheduler.invites.send_invites"
    assert queued.task["args"] == (visit.pk, 0, "booked")


def test_the_worker_records_what_it_did(worker, mailbox, clinic):
    book(worker, clinic)
    (task,) = Task.objects.all()
    assert task.success and task.result == "sent 1 REQUEST invite(s): patient"


def test_a_task_for_a_visit_that_changed_again_sends_nothing(mailbox, clinic):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "10:00"),
    )
    booking.move(visit, start=at(MONDAY, "13:00"))
    assert send_invites(visit.pk, 0, "booked").startswith("skipped: the visit changed again")
    booking.cancel(visit)
    assert send_invites(visit.pk, 2, "moved").startswith("skipped: the visit is cancelled")
    assert mailbox.messages == []
    assert send_invites(visit.pk, 2, "cancelled").startswith("sent 1 CANCEL")


@pytest.mark.parametrize(
    "change", [{"email": ""}, {"contact_by_email": False}], ids=["no email", "declined email"]
)
def test_no_invite_to_a_patient_without_email_or_who_declined_it(worker, mailbox, clinic, change):
    patient = clinic.patient()
    for name, value in change.items():
        setattr(patient, name, value)
    patient.save()
    book(worker, clinic, patient=patient)
    assert mailbox.messages == []


def test_clinicians_get_invites_in_their_own_wording_only_when_they_ask(worker, mailbox, clinic):
    clinic.prescriber.user.email = "alvarez@clinic.example.org"
    clinic.prescriber.user.save()
    book(worker, clinic)
    assert [m["To"] for m in mailbox.messages] == ["avery.example@example.com"]
    InvitePreference.objects.create(clinician=clinic.prescriber, email_invites=True)
    visit = book(
        worker, clinic, patient=clinic.patient("Blake", "Sample"), start=at(MONDAY, "13:00")
    )
    _, to_clinician = mailbox.messages[1:]
    assert to_clinician["To"] == "alvarez@clinic.example.org"
    _, text = invite_ics(to_clinician)
    event = only_event(text)
    assert str(event["SUMMARY"]) == "Session (BS)"
    assert str(event["ATTENDEE"]) == "mailto:alvarez@clinic.example.org"
    assert str(event["UID"]) == visit.uid


def test_patient_invites_are_in_the_patients_zone(worker, mailbox, clinic):
    patient = clinic.patient()
    patient.time_zone = "America/Los_Angeles"
    patient.save()
    book(worker, clinic, patient=patient)
    (message,) = mailbox.messages
    _, text = invite_ics(message)
    assert "DTSTART;TZID=America/Los_Angeles:20300603T070000" in unfold(text)
    assert "7:00" in message["Subject"] or "07:00" in message["Subject"]
    assert "07:00-09:00 PDT" in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("audience", ["patient", "clinician"])
def test_the_calendar_part_never_names_the_treatment(worker, mailbox, clinic, spravato, audience):
    InvitePreference.objects.create(clinician=clinic.prescriber)
    clinic.prescriber.user.email = "alvarez@clinic.example.org"
    clinic.prescriber.user.save()
    visit = book(worker, clinic, spravato, room=clinic.room2)
    worker(booking.move, visit, start=at(MONDAY, "14:00"))
    worker(booking.cancel, visit)
    messages = [
        m for m in mailbox.messages if (m["To"] == visit.patient.email) == (audience == "patient")
    ]
    assert len(messages) == 3
    for message in messages:
        _, text = invite_ics(message)
        assert treatment_words(text) == []
        assert treatment_words(message["Subject"]) == []


def test_full_detail_names_the_visit_type_in_invites_too(worker, mailbox, clinic):
    clinic.clinic.calendar_detail = CalendarDetail.FULL
    clinic.clinic.save()
    book(worker, clinic)
    (message,) = mailbox.messages
    assert str(only_event(invite_ics(message)[1])["SUMMARY"]).startswith("Iv Infusion at")
