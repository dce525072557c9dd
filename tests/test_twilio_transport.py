"""The Twilio transport, the real twilio SDK over real HTTP to a Twilio-compatible server
on loopback (tests/fake_twilio.py): what it sends, and how each kind of error is handled."""

import socket
import time
from datetime import timedelta

import pytest
from django.db import connection

from notifications.dispatch import dispatch
from notifications.models import Channel, Message, Status
from tests.conftest import MONDAY, at
from tests.fake_twilio import (  # noqa: F401 - fixtures
    ACCOUNT_SID,
    FROM_NUMBER,
    MESSAGES_PATH,
    Failure,
    twilio_fixture,
    twilio_server_fixture,
)
from tests.reminder_helpers import (  # noqa: F401 - fixtures
    HOUR,
    ReminderClinic,
    messages_of,
    messaging_fixture,
    send_invites,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging", "twilio")]
VISIT = at(MONDAY, "10:00")
DUE = VISIT - 72 * HOUR


@pytest.fixture
def clinic(db):
    return ReminderClinic()


@pytest.fixture
def visit(clinic, now):
    visit = clinic.book(clinic.texting_patient(), clinic.screening, VISIT)
    send_invites(now)
    return visit


def text_of(visit) -> Message:
    return next(m for m in messages_of(visit, channel=Channel.SMS) if m.rule.offset == 72 * HOUR)


def test_a_due_text_goes_through_the_sdk_with_sender_and_status_callback(visit, now, twilio):
    now.move_to(DUE)
    assert dispatch().sent == 2
    [request] = twilio.creates()
    assert request["path"] == MESSAGES_PATH
    message = text_of(visit)
    assert request["params"] == {
        "To": visit.patient.mobile,
        "From": FROM_NUMBER,
        "Body": message.body,
        "StatusCallback": f"https://clinic.example.org/webhooks/twilio/status?m={message.pk}",
    }
    assert message.status == Status.QUEUED
    assert message.provider_id == twilio.messages[0]["sid"]
    assert message.provider_id.startswith("SM") and len(message.provider_id) == 34


def test_a_messaging_service_picks_the_number(visit, now, twilio, settings):
    twilio.configure(settings, messaging_service="MG" + "b2" * 16)
    now.move_to(DUE)
    dispatch()
    [request] = twilio.creates()
    assert request["params"]["MessagingServiceSid"] == "MG" + "b2" * 16
    assert "From" not in request["params"]
    assert text_of(visit).status == Status.QUEUED  # Twilio said "accepted"


def test_rate_limits_and_server_errors_are_retried_until_twilio_takes_the_text(visit, now, twilio):
    twilio.fail_next(Failure(429, 20429, "Too Many Requests"), Failure(500))
    now.move_to(DUE)
    dispatch()
    assert (text_of(visit).status, text_of(visit).error_code) == (Status.PENDING, "20429")
    now.move_to(text_of(visit).send_at)
    dispatch()
    assert (text_of(visit).status, text_of(visit).error_code) == (Status.PENDING, "500")
    assert text_of(visit).send_at - DUE == timedelta(minutes=3)
    now.move_to(text_of(visit).send_at)
    dispatch()
    message = text_of(visit)
    assert (message.status, message.attempts) == (Status.QUEUED, 3)
    assert len(twilio.creates()) == 3 and len(twilio.messages) == 1


def test_a_timeout_after_twilio_took_the_text_is_looked_up_and_not_sent_again(
    visit, now, twilio, settings
):
    settings.TWILIO_TIMEOUT = 1
    twilio.fail_next(Failure(delay=1.5, create=True))
    now.move_to(DUE)
    dispatch()
    message = text_of(visit)
    assert (message.status, message.in_doubt, message.error_code) == (
        Status.PENDING,
        True,
        "timeout",
    )
    now.move_to(message.send_at)
    dispatch()
    message = text_of(visit)
    assert message.status == Status.QUEUED and not message.in_doubt
    assert message.provider_id == twilio.messages[0]["sid"]
    assert len(twilio.creates()) == 1 and len(twilio.messages) == 1
    assert [r["method"] for r in twilio.requests] == ["POST", "GET"]


def test_a_timeout_before_twilio_took_the_text_sends_it_once_on_the_retry(
    visit, now, twilio, settings
):
    settings.TWILIO_TIMEOUT = 1
    twilio.fail_next(Failure(delay=1.5, create=False))
    now.move_to(DUE)
    dispatch()
    now.move_to(text_of(visit).send_at)
    dispatch()
    assert text_of(visit).status == Status.QUEUED
    assert len(twilio.messages) == 1
    assert [r["method"] for r in twilio.requests] == ["POST", "GET", "POST"]


def test_an_invalid_number_fails_at_once_with_twilios_code(visit, now, twilio):
    twilio.invalid_numbers.add(visit.patient.mobile)
    now.move_to(DUE)
    assert dispatch().failed == 1
    message = text_of(visit)
    assert (message.status, message.error_code, message.attempts) == (Status.FAILED, "21211", 1)
    assert "not a valid phone number" in message.last_error
    assert message in Message.objects.needs_attention()


def test_a_number_the_carrier_reports_opted_out_is_recorded_and_its_texts_cancelled(
    visit, now, twilio
):
    twilio.opted_out_numbers.add(visit.patient.mobile)
    now.move_to(DUE)
    dispatch()
    assert text_of(visit).error_code == "21610"
    visit.patient.refresh_from_db()
    assert visit.patient.sms_opted_out_at == DUE and not visit.patient.can_receive_sms
    later = messages_of(visit, channel=Channel.SMS)[1:]
    assert {m.status for m in later} == {Status.CANCELLED}


def test_wrong_credentials_are_retried_with_a_hint(visit, now, twilio, settings):
    settings.TWILIO_AUTH_TOKEN = "not-the-token"
    now.move_to(DUE)
    dispatch()
    message = text_of(visit)
    assert (message.status, message.error_code) == (Status.PENDING, "20003")
    assert "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in message.last_error
    assert twilio.messages == []


def test_an_unreachable_server_is_retried_and_known_not_to_have_the_text(visit, now, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings.TWILIO_API_BASE = f"http://127.0.0.1:{closed}"
    now.move_to(DUE)
    dispatch()
    message = text_of(visit)
    assert (message.status, message.error_code, message.in_doubt) == (
        Status.PENDING,
        "network",
        False,
    )


def test_an_outage_then_recovery_sends_every_text_exactly_once(clinic, now, twilio):
    visits = [
        clinic.book(
            clinic.texting_patient(f"Patient{i}"), clinic.screening, at(MONDAY, f"{9 + i:02d}:00")
        )
        for i in range(4)
    ]
    twilio.down = True
    now.move_to(at(MONDAY, "12:00") - 72 * HOUR)  # all four 72 h reminders are due
    for minutes in (0, 1, 3, 7):
        now.move_to(at(MONDAY, "12:00") - 72 * HOUR + timedelta(minutes=minutes))
        dispatch()
    assert twilio.messages == []
    assert (
        Message.objects.filter(channel=Channel.SMS, status=Status.PENDING, attempts=4).count() == 4
    )
    twilio.down = False
    now.move_to(at(MONDAY, "12:00") - 72 * HOUR + timedelta(minutes=15))
    dispatch()
    for visit in visits:
        message = text_of(visit)
        assert message.status == Status.QUEUED and message.attempts == 5
        assert len(twilio.sent_to(visit.patient.mobile)) == 1
    assert len(twilio.messages) == 4


def test_throughput_through_the_fake_server(clinic, now, twilio, settings):
    """Messages a second through the SDK and real HTTP, unpaced; and that pacing holds."""
    settings.SMS_DAILY_CAP = settings.SMS_WEEKLY_CAP = 100
    week = MONDAY + timedelta(days=7)
    for i in range(9):
        patient = clinic.texting_patient(f"Many{i}", contact_by_email=False)
        for day in range(3):
            clinic.book(
                patient, clinic.screening, at(week + timedelta(days=day), f"{9 + i:02d}:00")
            )
    now.move_to(at(week, "08:30"))
    due = Message.objects.due(at(week, "08:30")).count()
    started = time.perf_counter()
    result = dispatch()
    elapsed = time.perf_counter() - started
    assert result.sent == due >= 30
    print(f"\n{due} texts in {elapsed:.2f} s: {due / elapsed:.0f} a second ({connection.vendor})")
    # Paced at 20 a second, ten more take at least 0.45 s.
    settings.SMS_SEND_RATE = 20
    twilio.reset()
    again = Message.objects.filter(channel=Channel.SMS, status=Status.QUEUED)[:10]
    Message.objects.filter(pk__in=[m.pk for m in again]).update(
        status=Status.PENDING, provider_id="", sent_at=None
    )
    started = time.perf_counter()
    assert dispatch().sent == 10
    assert time.perf_counter() - started >= 0.45


def test_proxy_settings_are_read_once_from_the_environment_and_honoured(monkeypatch):
    from notifications.transports import twilio_http_client

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/clinic-ca.pem")
    to_twilio = twilio_http_client("", 5)
    assert to_twilio.proxy["https"] == "http://proxy.example:3128"
    assert to_twilio.session.verify == "/etc/ssl/clinic-ca.pem"
    assert to_twilio.session.trust_env is False  # not read again on every call
    # A server the environment exempts from the proxy is reached directly.
    assert twilio_http_client("http://127.0.0.1:8099", 5).proxy == {}
