"""The email transport, through Django's SMTP backend to a real SMTP server on loopback
(tests/smtp_server.py): the parts it sends, and how the server's answers are classified."""

import pytest

from notifications.models import Status
from notifications.transports import (
    Attachment,
    EmailTransport,
    OutgoingEmail,
    PermanentError,
    TransientError,
)
from tests.servers import free_port
from tests.smtp_server import smtp_fixture, smtp_server_fixture  # noqa: F401 - fixtures

CALENDAR = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"


def email(to: str = "avery@example.com", **extra) -> OutgoingEmail:
    return OutgoingEmail(to, "Your visit", "Plain words.", "<p>Plain words.</p>", **extra)


def sent_through(transport: EmailTransport, outgoing: OutgoingEmail):
    try:
        return transport.send(outgoing)
    finally:
        transport.close()


def test_an_email_goes_with_its_alternatives_attachments_and_headers(smtp, settings):
    settings.DEFAULT_FROM_EMAIL = "Riverside Clinic <appointments@clinic.example.org>"
    outgoing = email(
        alternatives=((CALENDAR, "text/calendar; method=REQUEST"),),
        attachments=(Attachment("invite.ics", CALENDAR.encode(), "application/ics"),),
        headers=(("Auto-Submitted", "auto-generated"),),
    )
    accepted = sent_through(EmailTransport(), outgoing)
    (received,) = smtp.received
    assert accepted.status == Status.SENT and received["Message-ID"] == accepted.provider_id
    assert received["Auto-Submitted"] == "auto-generated"
    assert received["From"] == "Riverside Clinic <appointments@clinic.example.org>"
    alternative, attachment = received.get_payload()
    parts = alternative.get_payload()
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html", "text/calendar"]
    assert parts[2].get_param("method") == "REQUEST"
    assert parts[2].get_payload(decode=True).decode() == CALENDAR
    assert (attachment.get_filename(), attachment.get_content_type()) == (
        "invite.ics",
        "application/ics",
    )
    assert attachment.get_payload(decode=True) == CALENDAR.encode()


def test_an_address_the_server_refuses_fails_for_good_and_a_busy_one_for_now(smtp):
    smtp.refuse.add("gone@example.com")
    smtp.defer["busy@example.com"] = 1
    with pytest.raises(PermanentError) as refused:
        sent_through(EmailTransport(), email("gone@example.com"))
    assert refused.value.code == "550" and not refused.value.in_doubt
    with pytest.raises(TransientError) as deferred:
        sent_through(EmailTransport(), email("busy@example.com"))
    assert deferred.value.code == "451" and not deferred.value.in_doubt
    sent_through(EmailTransport(), email("busy@example.com"))
    assert [m["To"] for m in smtp.received] == ["busy@example.com"]


def test_a_server_that_cannot_be_reached_is_worth_trying_again(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    with pytest.raises(TransientError) as error:
        sent_through(EmailTransport(), email())
    assert error.value.code == "smtp-connect" and not error.value.in_doubt


def test_no_address_is_refused_before_the_server_is_asked(smtp):
    with pytest.raises(PermanentError, match="not an email address"):
        sent_through(EmailTransport(), email(""))
    assert smtp.received == []
