"""Shared setup for the reminder tests: a clinic with the default policies, consenting
patients, the outboxes emptied, and the clock stepped from one due message to the next."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from notifications import transports
from notifications.demo import seed_reminder_policies
from notifications.dispatch import PassResult, dispatch, next_due
from notifications.models import INVITE_PURPOSES, Message
from scheduler import booking
from scheduler.models import ConsentMethod, Patient, Visit
from tests.conftest import SmallClinic

CONSENTED_AT = datetime(2029, 12, 1, 15, 0, tzinfo=UTC)


@pytest.fixture(name="messaging")
def messaging_fixture(settings):
    """Texts to the in-memory outbox, email to Django's, no pacing; both emptied."""
    settings.SMS_BACKEND = "locmem"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_SEND_RATE = 0
    settings.EMAIL_SEND_RATE = 0
    settings.SITE_URL = "https://clinic.example.org"
    transports.outbox.clear()
    mail.outbox = []
    yield
    transports.outbox.clear()


class ReminderClinic(SmallClinic):
    """SmallClinic with the demo's reminder policies for its visit types."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.policies = seed_reminder_policies(self.clinic)

    def texting_patient(
        self, first: str = "Avery", last: str = "Example", time_zone: str = "", **extra
    ) -> Patient:
        """A patient who agreed to texts (web form) and gave an email address."""
        patient = self.patient(
            first,
            last,
            sms_consent_at=CONSENTED_AT,
            sms_consent_method=ConsentMethod.WEB_FORM,
            **extra,
        )
        if time_zone:
            patient.time_zone = time_zone
            patient.save(update_fields=["time_zone"])
        return patient

    def book(self, patient: Patient, visit_type, start: datetime, **extra) -> Visit:
        clinician = {
            "prescriber": self.prescriber,
            "therapist": self.therapist,
            "nurse": self.nurse,
        }[visit_type.lead_seat.roles[0]]
        room = None
        if not visit_type.is_telehealth:
            room = self.room1 if visit_type.is_dosing else self.room3
        return booking.book(
            patient=patient,
            visit_type=visit_type,
            clinician=clinician,
            room=room,
            start=start,
            **extra,
        )


def send_invites(traveller) -> None:
    """Send the calendar invites planned so far, each when due, then empty the outboxes.

    For tests about reminders: the invites a booking plans (tests/test_invites.py
    is about those) are out of the way, and what the test sends next is its own.
    """
    invites = Message.objects.pending().filter(purpose__in=INVITE_PURPOSES)
    for moment in sorted(set(invites.values_list("send_at", flat=True))):
        traveller.move_to(moment)
        dispatch()
    assert not invites.exists()
    transports.outbox.clear()
    mail.outbox = []


def reminder_emails() -> list:
    """The emails sent through Django's outbox other than calendar invites (their .ics)."""
    return [email for email in mail.outbox if not email.attachments]


def messages_of(visit: Visit, **filters) -> list[Message]:
    return list(Message.objects.filter(visit=visit, **filters).order_by("send_at", "channel"))


def run_until(traveller, until: datetime, **dispatch_options) -> PassResult:
    """Move the frozen clock to each moment a message falls due and run a pass there."""
    total = PassResult()
    moment = timezone.now()
    while moment is not None and moment <= until:
        traveller.move_to(moment)
        result = dispatch(**dispatch_options)
        for name, count in result.as_dict().items():
            setattr(total, name, getattr(total, name) + count)
        moment = next_due(moment)
    traveller.move_to(until)
    return total


def step_through(traveller, until: datetime, twilio, client, *, on=None) -> None:
    """``run_until`` with the fake Twilio's delivery reports after each pass; ``on`` may act."""
    moment = timezone.now()
    while moment is not None and moment <= until:
        traveller.move_to(moment)
        if on:
            on(moment)
        dispatch()
        twilio.deliver_all(client=client)
        moment = next_due(moment)
    traveller.move_to(until)


HOUR = timedelta(hours=1)
