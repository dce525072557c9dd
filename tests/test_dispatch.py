"""Dispatch passes: due messages go once, checked again at send time; errors retry with
backoff or fail visibly; a dispatcher that dies leaves nothing lost and nothing doubled
(docs/architecture.md, invariants 5 and 6)."""

import io
import json
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django_q.models import Schedule

from notifications import transports
from notifications.dispatch import Dispatcher, Pacer, dispatch
from notifications.models import Channel, Message, Purpose, Status
from notifications.tasks import SCHEDULE_NAME, ensure_schedule
from notifications.transports import Accepted, PermanentError, SMSBackend, TransientError
from scheduler import booking
from scheduler.models import ConsentMethod, Visit
from tests.conftest import MONDAY, at
from tests.reminder_helpers import (  # noqa: F401 - fixtures
    CONSENTED_AT,
    HOUR,
    ReminderClinic,
    messages_of,
    messaging_fixture,
    reminder_emails,
    run_until,
    send_invites,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging")]
VISIT = at(MONDAY, "10:00")


@pytest.fixture
def clinic(db):
    return ReminderClinic()


@pytest.fixture
def visit(clinic, now):
    visit = clinic.book(clinic.texting_patient(), clinic.screening, VISIT)
    send_invites(now)
    return visit


class ScriptedSMSBackend(SMSBackend):
    """An SMS backend by dotted path that raises the errors a test lines up, then sends."""

    errors: list[Exception] = []
    sent: list[str] = []

    def deliver(self, sms):
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(sms.body)
        return Accepted(f"SCRIPTED{len(self.sent)}", Status.SENT)


@pytest.fixture
def scripted(settings):
    settings.SMS_BACKEND = "tests.test_dispatch.ScriptedSMSBackend"
    ScriptedSMSBackend.errors, ScriptedSMSBackend.sent = [], []
    return ScriptedSMSBackend


def sms_72h(visit) -> Message:
    return next(m for m in messages_of(visit, channel=Channel.SMS) if m.rule.offset == 72 * HOUR)


def test_a_pass_sends_what_is_due_once_and_records_it(visit, now):
    now.move_to(VISIT - 72 * HOUR)
    result = dispatch()
    assert (result.sent, result.failed) == (2, 0)
    assert [sms.to for sms in transports.outbox] == [visit.patient.mobile]
    assert [email.to for email in mail.outbox] == [[visit.patient.email]]
    sent = sms_72h(visit)
    assert sent.status == Status.SENT and sent.provider_id.startswith("LM")
    assert sent.sent_at == VISIT - 72 * HOUR and sent.attempts == 1
    assert sent.body == transports.outbox[0].body
    assert dispatch().sent == 0  # a second pass finds nothing due
    assert len(transports.outbox) == 1


def test_nothing_goes_before_its_time(visit, now):
    now.move_to(VISIT - 72 * HOUR - timedelta(minutes=1))
    assert dispatch().sent == 0
    assert transports.outbox == [] and mail.outbox == []


def test_the_whole_visit_gets_each_message_once_and_nothing_in_quiet_hours(clinic, now, settings):
    settings.SMS_DAILY_CAP, settings.SMS_WEEKLY_CAP = 5, 10  # a clinic may set its own
    clinic.book(clinic.texting_patient(), clinic.screening, at(MONDAY, "08:00"))
    run_until(now, VISIT + 24 * HOUR)
    sms_times = [sms.at.astimezone(clinic.clinic.tz) for sms in transports.outbox]
    assert [f"{t:%a %H:%M}" for t in sms_times] == ["Fri 08:00", "Sun 08:00", "Sun 20:45"]
    assert len(reminder_emails()) == 2 and len(mail.outbox) == 3  # and the calendar invite
    assert set(Message.objects.values_list("status", flat=True)) == {Status.SENT}


def test_a_cancelled_visit_gets_only_its_cancellation_notice(visit, now):
    now.move_to(VISIT - 80 * HOUR)
    booking.cancel(visit)
    run_until(now, VISIT + 24 * HOUR)
    assert [sms.body.split(",")[1].strip()[:30] for sms in transports.outbox] == [
        "your visit with Test Clinic Am"
    ]
    assert "is cancelled" in transports.outbox[0].body
    assert [m.subject for m in reminder_emails()] == [
        "Your visit on Mon Jun 3 at 10:00 AM is cancelled"
    ]


def test_a_visit_that_moved_after_planning_is_caught_at_send_time(visit, now):
    # As if the move committed between planning and sending, without re-planning.
    Visit.objects.filter(pk=visit.pk).update(sequence=F("sequence") + 1)
    now.move_to(VISIT - 72 * HOUR)
    result = dispatch()
    assert result.sent == 0 and result.cancelled == 2
    assert sms_72h(visit).reason == "The visit moved after this was planned."


def test_no_text_without_recorded_consent_or_after_opt_out(clinic, now):
    never = clinic.book(clinic.patient("Blake"), clinic.screening, VISIT)
    stopped = clinic.book(clinic.texting_patient("Casey"), clinic.screening, at(MONDAY, "12:00"))
    stopped.patient.sms_opted_out_at = at(MONDAY, "10:00") - 100 * HOUR
    stopped.patient.save()
    send_invites(now)
    now.move_to(at(MONDAY, "12:00") - 72 * HOUR)
    dispatch()
    assert transports.outbox == []
    assert len(mail.outbox) == 2  # email is another channel
    assert sms_72h(never).status == Status.SUPPRESSED
    assert "consent" in sms_72h(never).reason
    assert sms_72h(stopped).status == Status.SUPPRESSED
    assert sms_72h(stopped).reason == "The patient opted out of texts."


def test_text_limits_suppress_plain_reminders_but_leave_room_for_preparation(clinic, now):
    patient = clinic.texting_patient()
    screening = clinic.book(patient, clinic.screening, at(MONDAY, "09:00"))
    dosing = clinic.book(patient, clinic.iv, at(MONDAY + timedelta(days=2), "10:00"))
    run_until(now, at(MONDAY + timedelta(days=3), "12:00"))
    sms = Message.objects.filter(patient=patient, channel=Channel.SMS)
    sent = sms.filter(status=Status.SENT)
    preparation = sms.get(purpose=Purpose.PREPARATION)
    assert preparation.status == Status.SENT  # essential: never suppressed
    suppressed = sms.filter(status=Status.SUPPRESSED)
    assert suppressed.exists()
    assert all("limit" in m.reason for m in suppressed)
    # At most one a day (patient's local days) and three in any 7 days.
    days = [m.sent_at.astimezone(clinic.clinic.tz).date() for m in sent]
    assert len(days) == len(set(days))
    times = sorted(m.sent_at for m in sent)
    assert all(len([t for t in times if s <= t < s + timedelta(days=7)]) <= 3 for s in times)
    assert screening and dosing


def test_a_patient_with_express_consent_to_care_texts_is_not_held_to_the_limits(clinic, now):
    patient = clinic.texting_patient(
        sms_express_consent_at=CONSENTED_AT, sms_express_consent_method=ConsentMethod.PAPER_FORM
    )
    clinic.book(patient, clinic.screening, at(MONDAY, "09:00"))
    clinic.book(patient, clinic.iv, at(MONDAY + timedelta(days=2), "10:00"))
    run_until(now, at(MONDAY + timedelta(days=3), "12:00"))
    assert not Message.objects.filter(status=Status.SUPPRESSED).exists()


def test_a_message_found_due_in_quiet_hours_waits_for_the_morning(visit, now):
    now.move_to(at(MONDAY - timedelta(days=3), "22:30"))  # the dispatcher was down all evening
    result = dispatch()
    assert result.deferred == 2 and transports.outbox == []
    assert sms_72h(visit).send_at == at(MONDAY - timedelta(days=2), "08:00")
    now.move_to(at(MONDAY - timedelta(days=2), "08:00"))
    assert dispatch().sent == 2


def test_transient_errors_retry_with_exponential_backoff_then_fail_visibly(
    visit, now, scripted, settings
):
    settings.MESSAGE_MAX_ATTEMPTS = 4
    scripted.errors = [TransientError("Twilio 503", code="503") for _ in range(4)]
    start = VISIT - 72 * HOUR
    now.move_to(start)
    waits = []
    for _ in range(3):
        dispatch()
        message = sms_72h(visit)
        assert message.status == Status.PENDING and message.error_code == "503"
        waits.append(message.send_at - start)
        now.move_to(message.send_at)
    assert waits == [timedelta(minutes=1), timedelta(minutes=3), timedelta(minutes=7)]
    dispatch()
    message = sms_72h(visit)
    assert message.status == Status.FAILED and message.attempts == 4
    assert "Gave up after 4 attempts" in message.last_error
    assert Message.objects.needs_attention().get() == message
    assert scripted.sent == []


def test_a_transient_error_then_success_sends_once(visit, now, scripted):
    scripted.errors = [TransientError("network", code="network")]
    now.move_to(VISIT - 72 * HOUR)
    dispatch()
    now.move_to(VISIT - 72 * HOUR + timedelta(minutes=1))
    dispatch()
    message = sms_72h(visit)
    assert message.status == Status.SENT and message.attempts == 2
    assert len(scripted.sent) == 1


def test_permanent_errors_fail_at_once(visit, now, scripted):
    scripted.errors = [PermanentError("Twilio 400: invalid number", code="21211")]
    now.move_to(VISIT - 72 * HOUR)
    result = dispatch()
    assert result.failed == 1
    message = sms_72h(visit)
    assert (message.status, message.error_code, message.attempts) == (Status.FAILED, "21211", 1)


def test_a_dispatcher_killed_after_claiming_leaves_the_message_recoverable(visit, now):
    now.move_to(VISIT - 72 * HOUR)
    batch = Dispatcher().claim(10)  # ... and the process dies here
    assert len(batch) == 2
    assert dispatch().sent == 0  # claimed: another pass keeps off it
    now.move_to(VISIT - 72 * HOUR + timedelta(seconds=299))
    assert dispatch().sent == 0  # the lease has not run out
    now.move_to(VISIT - 72 * HOUR + timedelta(seconds=301))
    result = dispatch()
    assert (result.recovered, result.sent) == (2, 2)
    assert len(transports.outbox) == 1 and len(mail.outbox) == 1


def marked_as_being_sent(dispatcher: Dispatcher, channel: str):
    """Claim, prepare and mark a batch; its message for ``channel`` and what it would send."""
    batch = dispatcher.claim(10)
    batch.prepare()
    batch.mark()
    return next((m, outgoing) for m, outgoing in batch.sending if m.channel == channel)


def test_a_dispatcher_killed_after_the_provider_took_the_text_does_not_send_it_again(visit, now):
    now.move_to(VISIT - 72 * HOUR)
    dying = Dispatcher()
    message, outgoing = marked_as_being_sent(dying, Channel.SMS)
    taken = dying.transport(Channel.SMS).send(outgoing)  # ... and the process dies here
    now.move_to(VISIT - 72 * HOUR + timedelta(minutes=6))
    dispatch()
    message.refresh_from_db()
    assert message.status == Status.QUEUED and message.provider_id == taken.provider_id
    assert len(transports.outbox) == 1


def test_a_dispatcher_killed_just_before_the_provider_sends_once_on_recovery(visit, now):
    now.move_to(VISIT - 72 * HOUR)
    message, _ = marked_as_being_sent(Dispatcher(), Channel.SMS)  # ... dies before sending
    now.move_to(VISIT - 72 * HOUR + timedelta(minutes=6))
    dispatch()
    message.refresh_from_db()
    assert message.status == Status.SENT and message.attempts == 2
    assert len(transports.outbox) == 1


def test_an_email_that_may_have_gone_is_failed_visibly_not_sent_twice(visit, now):
    now.move_to(VISIT - 72 * HOUR)
    batch = Dispatcher().claim(10)
    batch.prepare()
    batch.mark()
    message, outgoing = next((m, o) for m, o in batch.sending if m.channel == Channel.EMAIL)
    assert batch.mark_alone(message, outgoing)  # ... and dies handing it to the server
    now.move_to(VISIT - 72 * HOUR + timedelta(minutes=6))
    dispatch()
    message.refresh_from_db()
    assert message.status == Status.FAILED and message.error_code == "in-doubt"
    assert mail.outbox == []


def test_an_email_its_dispatcher_died_before_handing_over_goes_on_recovery(visit, now):
    now.move_to(VISIT - 72 * HOUR)
    marked_as_being_sent(Dispatcher(), Channel.SMS)  # ... dies before sending anything
    email = Message.objects.get(status=Status.CLAIMED, channel=Channel.EMAIL)
    assert not email.in_doubt  # an email is marked on its own, as it goes
    now.move_to(VISIT - 72 * HOUR + timedelta(minutes=6))
    dispatch()
    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.SENT, 1)
    assert len(mail.outbox) == 1


def test_a_slow_dispatcher_whose_claim_was_taken_over_sends_nothing(visit, now):
    now.move_to(VISIT - 72 * HOUR)
    slow = Dispatcher()
    batch = slow.claim(10)
    now.move_to(VISIT - 72 * HOUR + timedelta(minutes=6))
    dispatch()  # recovers and sends both
    slow.work(batch)
    assert len(transports.outbox) == 1 and len(mail.outbox) == 1


def test_queries_per_message_stay_bounded(clinic, now, settings, django_assert_max_num_queries):
    settings.SMS_DAILY_CAP, settings.SMS_WEEKLY_CAP = 50, 50
    patients = [clinic.texting_patient(f"P{i}") for i in range(10)]
    for i, patient in enumerate(patients):
        clinic.book(patient, clinic.screening, at(MONDAY, f"{8 + i:02d}:00"))
    send_invites(now)
    now.move_to(at(MONDAY, "17:00") - 72 * HOUR)
    due = Message.objects.due(at(MONDAY, "17:00") - 72 * HOUR)
    emails, due = due.filter(channel=Channel.EMAIL).count(), due.count()
    assert (due, emails) == (20, 10)
    with CaptureQueriesContext(connection) as queries:
        result = dispatch()
    assert result.sent == 20
    per_message = len(queries) / due
    print(f"\n{len(queries)} queries for {due} messages: {per_message:.2f} a message")
    # One batch: claim and load, re-read, text limits, "about to send" and the
    # outcomes, each once for the batch (tests/test_dispatch_batches.py: 400);
    # and each email's own "about to send", which carries the outcome before it.
    assert len(queries) <= 12 + emails, [q["sql"][:80] for q in queries.captured_queries]


def test_pacing_spaces_sends_per_sender():
    pacer = Pacer()

    def seconds_for(sender: str, rate: float, times: int = 1) -> float:
        started = time.monotonic()
        for _ in range(times):
            pacer.wait(sender, rate)
        return time.monotonic() - started

    assert 0.2 <= seconds_for("+15005550006", rate=10, times=3) < 0.5
    assert seconds_for("email", rate=10) < 0.05  # another sender is not held up
    assert seconds_for("+15005550006", rate=0, times=100) < 0.05  # 0 = no pacing


def test_dispatch_reminders_runs_a_pass_at_the_given_moment(visit):
    out = io.StringIO()
    call_command("dispatch_reminders", "--now", "2030-05-31T10:00", "--json", stdout=out)
    assert json.loads(out.getvalue())["sent"] == 2
    assert len(transports.outbox) == 1


def test_dispatch_reminders_rehearses_a_span_jumping_to_each_due_moment(visit):
    out = io.StringIO()
    call_command(
        "dispatch_reminders",
        "--now",
        "2030-05-01T00:00-04:00",
        "--until",
        "2030-06-04T00:00-04:00",
        "--no-pace",
        stdout=out,
    )
    assert "passes" in out.getvalue()
    assert Message.objects.filter(status=Status.PENDING).count() == 0
    assert len(mail.outbox) == 2  # 72 h and 24 h
    assert len(transports.outbox) == 3  # and 2 h: three days, three texts


def test_dispatch_reminders_refuses_a_time_that_does_not_exist():
    with pytest.raises(Exception, match="does not exist"):
        call_command("dispatch_reminders", "--now", "2030-03-10T02:30", stdout=io.StringIO())


def test_the_every_minute_schedule_exists_once_and_keeps_staff_changes():
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "notifications.tasks.dispatch_due",
        Schedule.MINUTES,
        1,
    )
    Schedule.objects.filter(pk=schedule.pk).update(minutes=2)
    ensure_schedule()
    assert Schedule.objects.filter(name=SCHEDULE_NAME).count() == 1
    assert Schedule.objects.get(name=SCHEDULE_NAME).minutes == 2


def test_an_unexpected_error_after_handing_over_fails_visibly_rather_than_risk_a_second_text(
    visit, now, scripted
):
    scripted.errors = [RuntimeError("connection pool exploded")]
    now.move_to(VISIT - 72 * HOUR)
    dispatch()
    message = sms_72h(visit)
    assert message.status == Status.FAILED
    assert "RuntimeError" in message.last_error and "Check with the patient" in message.last_error
    assert scripted.sent == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("console", "ConsoleSMSBackend"),
        ("file", "FileSMSBackend"),
        ("locmem", "LocmemSMSBackend"),
        ("notifications.transports.FileSMSBackend", "FileSMSBackend"),
        ("tests.test_dispatch.ScriptedSMSBackend", "ScriptedSMSBackend"),
    ],
)
def test_sms_backends_are_named_by_alias_or_dotted_path(name, expected):
    assert type(transports.sms_backend(name)).__name__ == expected


def test_an_unknown_sms_backend_says_what_is_allowed():
    with pytest.raises(ImproperlyConfigured, match="console, file, locmem, twilio"):
        transports.sms_backend("carrier-pigeon")


def test_twilio_without_credentials_is_refused_clearly(settings):
    settings.TWILIO_ACCOUNT_SID = settings.TWILIO_AUTH_TOKEN = ""
    with pytest.raises(ImproperlyConfigured, match="TWILIO_ACCOUNT_SID"):
        transports.sms_backend("twilio")


def test_the_file_and_console_backends_write_the_text_where_it_can_be_read(tmp_path):
    sms = transports.OutgoingSMS("+12125550123", "Hi Avery, a reminder.")
    accepted = transports.FileSMSBackend(tmp_path).send(sms)
    [written] = tmp_path.iterdir()
    assert accepted.provider_id in written.read_text()
    assert "To: +12125550123\nHi Avery, a reminder." in written.read_text()
    stream = io.StringIO()
    transports.ConsoleSMSBackend(stream).send(sms)
    assert stream.getvalue() == "SMS to +12125550123: Hi Avery, a reminder.\n"
    with pytest.raises(PermanentError):
        transports.ConsoleSMSBackend(stream).send(transports.OutgoingSMS("2125550123", "x"))
