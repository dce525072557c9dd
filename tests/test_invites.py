"""Email invites: booked, moved and cancelled visits reach calendar apps through a real SMTP
server. Each invite is an outbox row planned with the booking and sent by a dispatch pass,
retried like any email, and visible to the front desk when it fails."""

from datetime import date, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from icalendar import Calendar

from notifications.dispatch import dispatch
from notifications.models import Message, Purpose, Status
from notifications.planning import plan_for_visit
from plans.care_plans import confirm, save_proposal
from plans.generator import generate
from plans.models import Anchor, Protocol, ProtocolStep
from scheduler import booking
from scheduler.booking import VisitChange
from scheduler.models import CalendarDetail, InvitePreference, Modality, Visit, VisitKind
from tests.conftest import MONDAY, at
from tests.ical_checks import assert_valid_ics, treatment_words, unfold
from tests.page_helpers import front_desk
from tests.smtp_server import smtp_fixture, smtp_server_fixture  # noqa: F401 - fixtures

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now")]
TODAY = date(2030, 1, 2)  # the `now` fixture's day
# Noon in New York (09:00 in Los Angeles): outside every test patient's quiet hours.
DAYTIME = at(TODAY, "12:00")
CLINICIAN_EMAIL = "alvarez@clinic.example.org"


@pytest.fixture
def mailbox(smtp, settings, now):
    """The SMTP server's inbox; email goes there, texts to memory, unpaced."""
    settings.DEFAULT_FROM_EMAIL = "Riverside Clinic <appointments@clinic.example.org>"
    settings.SMS_BACKEND = "locmem"
    settings.SMS_SEND_RATE = settings.EMAIL_SEND_RATE = 0
    now.move_to(DAYTIME)
    return smtp


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


def book(clinic, visit_type=None, **kwargs) -> Visit:
    visit_type = visit_type or clinic.iv
    defaults = {
        "patient": clinic.patient(),
        "clinician": clinic.prescriber,
        "room": clinic.room1 if not visit_type.is_telehealth else None,
        "start": at(MONDAY, "10:00"),
    }
    return booking.book(visit_type=visit_type, **{**defaults, **kwargs})


def clinician_takes_invites(clinic) -> None:
    clinic.prescriber.user.email = CLINICIAN_EMAIL
    clinic.prescriber.user.save()
    InvitePreference.objects.create(clinician=clinic.prescriber, email_invites=True)


def invites_of(visit: Visit, **filters) -> list[Message]:
    return list(
        Message.objects.filter(visit=visit, purpose__startswith="invite", **filters).order_by(
            "visit_sequence", "pk"
        )
    )


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


def test_booking_sends_a_request_that_calendar_apps_apply(mailbox, clinic):
    visit = book(clinic)
    dispatch()
    (message,) = mailbox.received
    assert message["To"] == visit.patient.email
    assert message["From"] == "Riverside Clinic <appointments@clinic.example.org>"
    assert message["Auto-Submitted"] == "auto-generated"
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


def test_an_invite_is_an_outbox_row_planned_with_the_booking_and_sent_by_a_pass(mailbox, clinic):
    visit = book(clinic)
    assert mailbox.received == []  # nothing is sent in the request
    (row,) = invites_of(visit)
    assert (row.purpose, row.channel, row.status) == (Purpose.INVITE, "email", Status.PENDING)
    assert (row.recipient, row.send_at, row.clinician) == (visit.patient.email, DAYTIME, None)
    result = dispatch()
    assert result.sent == 1
    row.refresh_from_db()
    (message,) = mailbox.received
    assert (row.status, row.sent_at, row.attempts) == (Status.SENT, DAYTIME, 1)
    assert row.provider_id == message["Message-ID"] and row.body == message["Subject"]
    assert dispatch().sent == 0 and len(mailbox.received) == 1  # once


def test_the_outbox_holds_one_invite_per_recipient_and_change(mailbox, clinic):
    clinician_takes_invites(clinic)
    visit = book(clinic)
    to_patient, to_clinician = invites_of(visit)
    assert (to_patient.clinician, to_clinician.clinician) == (None, clinic.prescriber)
    assert to_clinician.recipient == CLINICIAN_EMAIL
    assert plan_for_visit(visit, VisitChange.BOOKED) == []  # planning again adds nothing
    for row in (to_patient, to_clinician):
        row.pk = None
        with pytest.raises(IntegrityError), transaction.atomic():
            row.save()


def test_moving_sends_an_update_with_the_same_uid_and_a_higher_sequence(mailbox, clinic):
    visit = book(clinic)
    dispatch()
    booking.move(visit, start=at(MONDAY + timedelta(days=1), "13:00"))
    dispatch()
    booked, moved = mailbox.received
    assert moved["Subject"].startswith("Moved: ")
    method, text = invite_ics(moved)
    event = only_event(text)
    assert method == "REQUEST"
    assert str(event["UID"]) == str(only_event(invite_ics(booked)[1])["UID"]) == visit.uid
    assert event["SEQUENCE"] == 1
    assert event.start == at(MONDAY + timedelta(days=1), "13:00")
    assert "DTSTART;TZID=America/New_York:20300604T130000" in unfold(text)


def test_cancelling_sends_a_cancel_with_status_cancelled_and_a_higher_sequence(mailbox, clinic):
    visit = book(clinic)
    dispatch()
    booking.cancel(visit, "patient asked")
    dispatch()
    _, cancelled = mailbox.received
    method, text = invite_ics(cancelled)
    assert method == "CANCEL" and "METHOD:CANCEL\r\n" in text
    event = only_event(text)
    assert str(event["STATUS"]) == "CANCELLED" and event["SEQUENCE"] == 1
    assert str(event["UID"]) == visit.uid
    assert "is cancelled" in cancelled.get_body(("plain",)).get_content()


OTHER_EMAIL = "baker@clinic.example.org"


def another_prescriber_who_takes_invites(clinic):
    other = clinic.clinician("Dr. Baker", "prescriber")
    other.user.email = OTHER_EMAIL
    other.user.save()
    InvitePreference.objects.create(clinician=other, email_invites=True)
    return other


def test_a_visit_moved_to_another_clinician_is_cancelled_in_the_old_clinicians_calendar(
    mailbox, clinic
):
    clinician_takes_invites(clinic)
    other = another_prescriber_who_takes_invites(clinic)
    visit = book(clinic)
    dispatch()
    new_time = at(MONDAY + timedelta(days=1), "13:00")
    booking.move(visit, start=new_time, clinician=other)
    assert {(m.purpose, m.recipient) for m in invites_of(visit, visit_sequence=1)} == {
        (Purpose.INVITE_UPDATE, visit.patient.email),
        (Purpose.INVITE_UPDATE, OTHER_EMAIL),
        (Purpose.INVITE_CANCEL, CLINICIAN_EMAIL),
    }
    assert dispatch().sent == 3
    booked, cancelled = mailbox.to(CLINICIAN_EMAIL)
    method, text = invite_ics(cancelled)
    assert method == "CANCEL" and "METHOD:CANCEL\r\n" in text
    event = only_event(text)
    assert str(event["UID"]) == str(only_event(invite_ics(booked)[1])["UID"]) == visit.uid
    assert str(event["STATUS"]) == "CANCELLED" and event["SEQUENCE"] == 1
    assert str(event["ATTENDEE"]) == f"mailto:{CLINICIAN_EMAIL}"
    # The event as it stands at this SEQUENCE: clients drop it by UID wherever it was.
    assert event.start == new_time
    assert "Dr. Baker" in cancelled.get_body(("plain",)).get_content()
    (request,) = mailbox.to(OTHER_EMAIL)
    method, text = invite_ics(request)
    event = only_event(text)
    assert method == "REQUEST" and str(event["STATUS"]) == "TENTATIVE"
    assert (str(event["UID"]), event["SEQUENCE"], event.start) == (visit.uid, 1, new_time)
    _, moved = mailbox.to(visit.patient.email)
    assert invite_ics(moved)[0] == "REQUEST"
    assert dispatch().sent == 0  # once


def test_the_old_clinician_hears_once_however_often_the_visit_moves_before_a_pass(mailbox, clinic):
    clinician_takes_invites(clinic)
    other = another_prescriber_who_takes_invites(clinic)
    visit = book(clinic)
    dispatch()
    booking.move(visit, start=at(MONDAY, "13:00"), clinician=other)
    booking.move(visit, start=at(MONDAY + timedelta(days=1), "09:00"))
    dispatch()
    _, cancelled = mailbox.to(CLINICIAN_EMAIL)
    assert invite_ics(cancelled)[0] == "CANCEL"
    assert only_event(invite_ics(cancelled)[1])["SEQUENCE"] == 2
    booking.move(visit, start=at(MONDAY + timedelta(days=1), "14:00"))
    dispatch()
    assert len(mailbox.to(CLINICIAN_EMAIL)) == 2
    assert len(mailbox.to(OTHER_EMAIL)) == 2  # the request, then the update


def test_a_clinician_who_never_received_the_invite_gets_no_cancel_for_it(mailbox, clinic):
    clinician_takes_invites(clinic)
    other = another_prescriber_who_takes_invites(clinic)
    visit = book(clinic)
    booking.move(visit, start=at(MONDAY, "13:00"), clinician=other)  # before any pass
    dispatch()
    assert mailbox.to(CLINICIAN_EMAIL) == []
    booking.move(visit, start=at(MONDAY, "14:00"), clinician=clinic.prescriber)
    dispatch()
    (request,) = mailbox.to(CLINICIAN_EMAIL)
    assert invite_ics(request)[0] == "REQUEST"
    _, cancelled = mailbox.to(OTHER_EMAIL)
    assert invite_ics(cancelled)[0] == "CANCEL"


def test_a_cancel_to_the_old_clinician_is_not_sent_once_the_visit_is_theirs_again(mailbox, clinic):
    clinician_takes_invites(clinic)
    other = another_prescriber_who_takes_invites(clinic)
    visit = book(clinic)
    dispatch()
    booking.move(visit, start=at(MONDAY, "13:00"), clinician=other)
    # As if moved back between planning and sending, without re-planning.
    Visit.objects.filter(pk=visit.pk).update(clinician=clinic.prescriber)
    dispatch()
    (row,) = invites_of(visit, purpose=Purpose.INVITE_CANCEL)
    assert row.status == Status.CANCELLED and row.reason == "The visit is on, with this clinician."
    assert len(mailbox.to(CLINICIAN_EMAIL)) == 1


def test_changes_that_keep_time_and_place_send_nothing(mailbox, clinic):
    visit = book(clinic)
    booking.confirm(visit)
    booking.arrange_ride_home(visit)
    dispatch()
    assert len(mailbox.received) == 1
    assert len(invites_of(visit)) == 1


def test_a_visit_moved_twice_before_a_pass_sends_only_the_latest_request(mailbox, clinic):
    visit = book(clinic)
    booking.move(visit, start=at(MONDAY, "13:00"))
    booking.move(visit, start=at(MONDAY + timedelta(days=1), "09:00"))
    dispatch()
    (message,) = mailbox.received
    method, text = invite_ics(message)
    event = only_event(text)
    assert method == "REQUEST" and event["SEQUENCE"] == 2
    assert event.start == at(MONDAY + timedelta(days=1), "09:00")
    assert [(m.visit_sequence, m.status) for m in invites_of(visit)] == [
        (0, Status.CANCELLED),
        (1, Status.CANCELLED),
        (2, Status.SENT),
    ]


def test_a_cancel_goes_for_a_cancelled_visit_and_nothing_stale_goes_with_it(mailbox, clinic):
    visit = book(clinic)
    booking.cancel(visit)
    dispatch()
    (message,) = mailbox.received
    assert invite_ics(message)[0] == "CANCEL"
    assert [(m.purpose, m.status) for m in invites_of(visit)] == [
        (Purpose.INVITE, Status.CANCELLED),
        (Purpose.INVITE_CANCEL, Status.SENT),
    ]


def test_an_invite_for_a_visit_that_changed_after_planning_is_caught_at_send_time(mailbox, clinic):
    visit = book(clinic)
    # As if the move committed between planning and sending, without re-planning.
    Visit.objects.filter(pk=visit.pk).update(sequence=F("sequence") + 1)
    assert dispatch().cancelled == 1
    assert mailbox.received == []
    (row,) = invites_of(visit)
    assert row.reason == "The visit moved after this was planned."


def test_nothing_is_sent_for_a_proposed_visit(mailbox, clinic):
    clinician_takes_invites(clinic)
    protocol = Protocol.objects.create(clinic=clinic.clinic, name="Short", slug="short")
    ProtocolStep.objects.create(
        protocol=protocol, position=1, visit_type=clinic.screening, anchor=Anchor.START
    )
    plan = save_proposal(generate(clinic.patient(), protocol, MONDAY))
    (proposed,) = [planned.visit for planned in plan.planned_visits.all()]
    booking.move(proposed, start=proposed.start + timedelta(hours=1))
    dispatch()
    assert mailbox.received == [] and not Message.objects.exists()
    confirm(plan)
    dispatch()
    assert sorted(m["To"] for m in mailbox.received) == sorted(
        [proposed.patient.email, CLINICIAN_EMAIL]
    )


@pytest.mark.parametrize(
    "change", [{"email": ""}, {"contact_by_email": False}], ids=["no email", "declined email"]
)
def test_no_invite_to_a_patient_without_email_or_who_declined_it(mailbox, clinic, change):
    patient = clinic.patient()
    for name, value in change.items():
        setattr(patient, name, value)
    patient.save()
    book(clinic, patient=patient)
    dispatch()
    assert mailbox.received == []


def test_clinicians_get_invites_in_their_own_wording_only_when_they_ask(mailbox, clinic):
    clinic.prescriber.user.email = CLINICIAN_EMAIL
    clinic.prescriber.user.save()
    book(clinic)
    dispatch()
    assert [m["To"] for m in mailbox.received] == ["avery.example@example.com"]
    InvitePreference.objects.create(clinician=clinic.prescriber, email_invites=True)
    visit = book(clinic, patient=clinic.patient("Blake", "Sample"), start=at(MONDAY, "13:00"))
    dispatch()
    _, to_clinician = mailbox.received[1:]
    assert to_clinician["To"] == CLINICIAN_EMAIL
    _, text = invite_ics(to_clinician)
    event = only_event(text)
    assert str(event["SUMMARY"]) == "Session (BS)"
    assert str(event["ATTENDEE"]) == f"mailto:{CLINICIAN_EMAIL}"
    assert str(event["UID"]) == visit.uid
    row = Message.objects.get(visit=visit, clinician=clinic.prescriber)
    assert (row.recipient, row.status, row.patient) == (CLINICIAN_EMAIL, Status.SENT, visit.patient)
    assert str(row) == "Calendar invite by email to Dr. Alvarez"


def test_a_clinicians_invite_goes_at_night_and_whatever_the_patient_agreed_to(mailbox, clinic, now):
    clinician_takes_invites(clinic)
    now.move_to(at(TODAY, "22:30"))  # quiet hours for the patient
    patient = clinic.patient(contact_by_email=False)
    visit = book(clinic, patient=patient)
    dispatch()
    assert [m["To"] for m in mailbox.received] == [CLINICIAN_EMAIL]
    assert invites_of(visit)[0].clinician == clinic.prescriber


def test_a_clinician_who_turns_invites_off_before_the_pass_gets_none(mailbox, clinic):
    clinician_takes_invites(clinic)
    visit = book(clinic)
    InvitePreference.objects.filter(clinician=clinic.prescriber).update(email_invites=False)
    dispatch()
    assert [m["To"] for m in mailbox.received] == [visit.patient.email]
    row = Message.objects.get(visit=visit, clinician=clinic.prescriber)
    assert row.status == Status.SUPPRESSED and "turned calendar invites off" in row.reason


def test_a_patient_invite_waits_for_the_end_of_their_quiet_hours(mailbox, clinic, now):
    now.move_to(at(TODAY, "22:30"))
    visit = book(clinic)
    dispatch()
    assert mailbox.received == []
    (row,) = invites_of(visit)
    assert row.send_at == at(TODAY + timedelta(days=1), "08:00")
    now.move_to(row.send_at)
    dispatch()
    assert [m["To"] for m in mailbox.received] == [visit.patient.email]


def test_an_invite_the_server_defers_is_sent_by_a_later_pass(mailbox, clinic, now):
    visit = book(clinic)
    mailbox.defer[visit.patient.email] = 1
    assert dispatch().retrying == 1
    assert mailbox.received == []
    (row,) = invites_of(visit)
    assert (row.status, row.error_code, row.attempts) == (Status.PENDING, "451", 1)
    assert row.send_at == DAYTIME + timedelta(minutes=1)  # backing off
    assert row not in Message.objects.needs_attention()
    now.move_to(row.send_at)
    assert dispatch().sent == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.SENT, 2)
    (message,) = mailbox.received
    assert invite_ics(message)[0] == "REQUEST"


def test_an_invite_the_server_refuses_fails_visibly_on_the_desk(mailbox, clinic, client):
    clinician_takes_invites(clinic)
    mailbox.refuse.add(CLINICIAN_EMAIL)
    visit = book(clinic)
    assert dispatch().failed == 1
    assert [m["To"] for m in mailbox.received] == [visit.patient.email]
    failed = Message.objects.get(visit=visit, clinician=clinic.prescriber)
    assert (failed.status, failed.error_code) == (Status.FAILED, "550")
    assert list(Message.objects.needs_attention()) == [failed]
    client.force_login(front_desk())
    page = client.get(reverse("desk_messages")).text
    assert f"Calendar invite by email to Dr. Alvarez ({CLINICIAN_EMAIL})" in page
    assert "No such user here" in page
    visit_page = client.get(reverse("desk_visit", args=[visit.pk])).text
    assert "Calendar invite to Dr. Alvarez" in visit_page


def test_patient_invites_are_in_the_patients_zone(mailbox, clinic):
    patient = clinic.patient()
    patient.time_zone = "America/Los_Angeles"
    patient.save()
    book(clinic, patient=patient)
    dispatch()
    (message,) = mailbox.received
    _, text = invite_ics(message)
    assert "DTSTART;TZID=America/Los_Angeles:20300603T070000" in unfold(text)
    assert "7:00" in message["Subject"] or "07:00" in message["Subject"]
    assert "07:00-09:00 PDT" in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("audience", ["patient", "clinician"])
def test_the_calendar_part_never_names_the_treatment(mailbox, clinic, spravato, audience):
    clinician_takes_invites(clinic)
    visit = book(clinic, spravato, room=clinic.room2)
    dispatch()
    booking.move(visit, start=at(MONDAY, "14:00"))
    dispatch()
    booking.cancel(visit)
    dispatch()
    messages = [
        m for m in mailbox.received if (m["To"] == visit.patient.email) == (audience == "patient")
    ]
    assert len(messages) == 3
    for message in messages:
        _, text = invite_ics(message)
        assert treatment_words(text) == []
        assert treatment_words(message["Subject"]) == []


def test_full_detail_names_the_visit_type_in_invites_too(mailbox, clinic):
    clinic.clinic.calendar_detail = CalendarDetail.FULL
    clinic.clinic.save()
    book(clinic)
    dispatch()
    (message,) = mailbox.received
    assert str(only_event(invite_ics(message)[1])["SUMMARY"]).startswith("Iv Infusion at")
