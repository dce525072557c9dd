"""Dispatch works a batch at a time: a handful of queries per batch whatever its size, and
every rule a pass enforces one message at a time still holds inside a batch (text caps,
opt-outs, moved visits, a claim lost half-way, a dispatcher that dies half-way)."""

import re
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from notifications import consent, transports
from notifications.dispatch import Dispatcher, dispatch
from notifications.models import (
    PRIORITY,
    Channel,
    Message,
    MessagingPreferences,
    Purpose,
    ReminderRule,
    Status,
)
from notifications.rules import TextLedger
from notifications.webhooks import handle_inbound, record_status
from scheduler.models import AccessToken, Patient, TokenPurpose, Visit
from scheduler.tokens import digest
from tests.conftest import MONDAY, at
from tests.fake_twilio import Failure, twilio_fixture, twilio_server_fixture  # noqa: F401 - fixtures
from tests.reminder_helpers import ReminderClinic, messaging_fixture  # noqa: F401 - fixtures

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging")]
NOW = at(MONDAY, "12:00")  # noon at the clinic: no quiet hours
H = timedelta(hours=1)
LINK = re.compile(r"https://clinic\.example\.org/p/([A-Za-z0-9_-]{43})/")


@pytest.fixture
def clinic(db):
    return ReminderClinic()


def texting_patients(clinic: ReminderClinic, count: int, prefix: str = "P") -> list[Patient]:
    """Patients who agreed to texts only, each with a number of their own."""
    patients = []
    for i in range(count):
        patient = clinic.texting_patient(f"{prefix}{i}", contact_by_email=False)
        patient.mobile = f"+1646555{len(patients) + 1000 * (ord(prefix[0]) % 10):04d}"
        patient.save(update_fields=["mobile"])
        patients.append(patient)
    return patients


def due_texts(
    clinic: ReminderClinic,
    patients: list[Patient],
    purposes=(Purpose.PREPARATION, Purpose.REMINDER),
) -> list[Message]:
    """For each patient (once per listing) a dosing visit next week and its texts, all due
    now, as if the dispatcher had been down: three reminders and the preparation instructions."""
    rules = list(
        ReminderRule.objects.filter(
            policy__visit_type=clinic.iv, by_sms=True, purpose__in=purposes
        ).order_by("-offset")
    )
    visits = clinic.doses_one_after_another(patients, at(MONDAY + timedelta(days=7), "08:00"))
    return Message.objects.bulk_create(
        Message(
            visit=visit,
            patient=visit.patient,
            rule=rule,
            purpose=rule.purpose,
            channel=Channel.SMS,
            visit_sequence=visit.sequence,
            recipient=visit.patient.mobile,
            send_at=NOW - timedelta(minutes=5),
            expires_at=NOW + timedelta(hours=2),
            priority=PRIORITY[rule.purpose],
        )
        for visit in visits
        for rule in rules
    )


def statuses(patient: Patient) -> list[str]:
    return sorted(Message.objects.filter(patient=patient).values_list("status", flat=True))


def test_a_pass_over_400_texts_costs_at_most_one_query_per_20_messages(
    clinic, now, twilio, settings
):
    settings.DISPATCH_BATCH_SIZE = 500
    # One write of outcomes half-way (and the re-read with it), none by the clock.
    settings.DISPATCH_FLUSH_MESSAGES, settings.DISPATCH_FLUSH_SECONDS = 250, 60
    settings.SMS_DAILY_CAP = settings.SMS_WEEKLY_CAP = 50
    patients = texting_patients(clinic, 100)
    messages = due_texts(clinic, patients)
    assert len(messages) == 400
    assert sorted({m.purpose for m in messages}) == [Purpose.PREPARATION, Purpose.REMINDER]
    capped, opted_out, moved, carrier_stopped = (
        patients[:5],
        patients[5:10],
        patients[10:15],
        patients[15:17],
    )
    ordinary = patients[17:]
    for patient in capped:  # stricter than the clinic's limit: needs no agreement
        MessagingPreferences.objects.create(patient=patient, sms_per_day=2)
    Patient.objects.filter(pk__in=[p.pk for p in opted_out]).update(sms_opted_out_at=NOW - 1 * H)
    # Moved after its texts were planned, without re-planning (caught at send time).
    Visit.objects.filter(patient__in=moved).update(sequence=F("sequence") + 1)
    twilio.opted_out_numbers.update(p.mobile for p in carrier_stopped)
    now.move_to(NOW)

    with CaptureQueriesContext(connection) as queries:
        result = dispatch()

    print(f"\n{len(queries)} queries for 400 messages: {len(queries) / 400:.3f} a message")
    assert len(queries) <= 0.05 * 400, "\n".join(q["sql"][:120] for q in queries.captured_queries)
    sent_count = len(ordinary) * 4 + len(capped) * 2
    assert (result.sent, result.suppressed, result.cancelled, result.failed) == (
        sent_count,
        len(capped) * 2 + len(opted_out) * 4 + len(carrier_stopped) * 3,
        len(moved) * 4,
        len(carrier_stopped),
    )
    for patient in ordinary:
        assert statuses(patient) == [Status.QUEUED] * 4
    for patient in capped:
        assert statuses(patient) == [Status.QUEUED] * 2 + [Status.SUPPRESSED] * 2
        suppressed = Message.objects.filter(patient=patient, status=Status.SUPPRESSED)
        assert {m.purpose for m in suppressed} == {Purpose.REMINDER}
        assert all(m.reason.startswith("Daily text limit (2) reached") for m in suppressed)
    for patient in opted_out:
        assert statuses(patient) == [Status.SUPPRESSED] * 4
    for patient in moved:
        assert statuses(patient) == [Status.CANCELLED] * 4
    for patient in carrier_stopped:
        # The first text (the preparation instructions) met the carrier's opt-out; the
        # rest of the batch's texts to that number were not tried.
        assert statuses(patient) == [Status.FAILED] + [Status.SUPPRESSED] * 3
        patient.refresh_from_db()
        assert patient.sms_opted_out_at == NOW and not patient.can_receive_sms
    assert len(twilio.creates()) == sent_count + len(carrier_stopped)
    sent = Message.objects.filter(status=Status.QUEUED)
    assert sorted(sent.values_list("provider_id", flat=True)) == sorted(
        m["sid"] for m in twilio.messages
    )
    assert set(sent.values_list("attempts", flat=True)) == {1}
    assert not sent.filter(in_doubt=True).exists()
    assert not Message.objects.filter(status=Status.CLAIMED).exists()
    # Each preparation text carries its own link, and it is the patient's live one.
    preparation = sent.filter(purpose=Purpose.PREPARATION)
    assert preparation.count() == len(ordinary) + len(capped)
    for message in preparation:
        token = LINK.search(message.body).group(1)
        live = AccessToken.objects.active().get(
            patient=message.patient, purpose=TokenPurpose.PATIENT_LINK
        )
        assert live.digest == digest(token)


def test_a_daily_cap_of_one_holds_for_three_reminders_in_one_batch(clinic, now):
    [patient] = texting_patients(clinic, 1)
    reminders = due_texts(clinic, [patient] * 3, purposes=[Purpose.REMINDER])
    reminders = [m for m in reminders if m.rule.offset == 72 * H]  # one a visit
    Message.objects.exclude(pk__in=[m.pk for m in reminders]).delete()
    now.move_to(NOW)

    result = dispatch()

    assert (result.sent, result.suppressed) == (1, 2)
    assert [sms.to for sms in transports.outbox] == [patient.mobile]
    first, *others = Message.objects.filter(patient=patient).order_by("send_at", "pk")
    assert first.status == Status.SENT
    for message in others:
        assert message.status == Status.SUPPRESSED
        assert message.reason == (
            "Daily text limit (1) reached: 1 sent today, 0 texts that always go still due today."
        )
        # The ledger of that moment, for this message alone, says the same.
        message.status = Status.CLAIMED
        assert TextLedger.load([patient], NOW).problem(message) == message.reason


def test_an_essential_text_cancelled_earlier_in_the_batch_leaves_its_room_to_a_reminder(
    clinic, now
):
    [patient] = texting_patients(clinic, 1)
    first_visit_preparation = due_texts(clinic, [patient], purposes=[Purpose.PREPARATION])
    [reminder] = [
        m
        for m in due_texts(clinic, [patient], purposes=[Purpose.REMINDER])
        if m.rule.offset == 72 * H
    ]
    Message.objects.filter(purpose=Purpose.REMINDER).exclude(pk=reminder.pk).delete()
    [preparation] = first_visit_preparation
    Visit.objects.filter(pk=preparation.visit_id).update(sequence=F("sequence") + 1)
    now.move_to(NOW)

    result = dispatch()

    # Counted as still to come when the batch began, the preparation text went
    # first and was cancelled: the reminder no longer has to leave room for it.
    assert (result.cancelled, result.sent) == (1, 1)
    preparation.refresh_from_db()
    reminder.refresh_from_db()
    assert (preparation.status, reminder.status) == (Status.CANCELLED, Status.SENT)


def test_two_preparation_texts_in_one_batch_carry_the_same_link_and_it_opens(clinic, now, client):
    """One link a patient a batch: issuing a second would revoke the first text's."""
    [patient] = texting_patients(clinic, 1)
    due_texts(clinic, [patient] * 2, purposes=[Purpose.PREPARATION])
    now.move_to(NOW)

    assert dispatch().sent == 2

    earlier, later = (LINK.search(sms.body).group(1) for sms in transports.outbox)
    assert earlier == later
    assert client.get(f"/p/{later}/").status_code == 200


class TakenOverAfterTheFirstText(transports.LocmemSMSBackend):
    """Delivers, and after the first text of the batch stalls long enough for its claim to
    lapse: a second dispatcher recovers the batch and sends the rest meanwhile."""

    traveller = None

    def deliver(self, sms):
        accepted = super().deliver(sms)
        cls = TakenOverAfterTheFirstText
        if cls.traveller is not None:
            traveller, cls.traveller = cls.traveller, None
            traveller.move_to(NOW + timedelta(minutes=6))  # past the 5-minute lease
            cls.other_pass = dispatch()
        return accepted


def test_a_claim_lost_half_way_through_a_batch_sends_nothing_more_for_the_lost_rows(
    clinic, now, settings
):
    settings.SMS_BACKEND = "tests.test_dispatch_batches.TakenOverAfterTheFirstText"
    settings.SMS_DAILY_CAP = settings.SMS_WEEKLY_CAP = 50
    settings.DISPATCH_FLUSH_MESSAGES = 1  # re-read the rows before each send
    due_texts(clinic, texting_patients(clinic, 3))
    now.move_to(NOW)
    TakenOverAfterTheFirstText.traveller = now

    result = dispatch()

    other = TakenOverAfterTheFirstText.other_pass
    assert result.sent == 1
    # The other dispatcher found the first text at the provider (it was marked as
    # being sent) and sent the other eleven; nothing went twice.
    assert (other.recovered, other.sent) == (12, 12)
    # A visit's reminders read the same: each message has a text of its own.
    assert sorted(Message.objects.values_list("provider_id", flat=True)) == sorted(
        sms.provider_id for sms in transports.outbox
    )
    assert set(Message.objects.values_list("status", flat=True)) == {Status.SENT, Status.QUEUED}
    # The stalled dispatcher had marked the lost rows as being sent (an attempt,
    # which it can no longer undo); the other marked them again and sent them.
    assert sorted(Message.objects.values_list("attempts", flat=True)) == [1] + [2] * 11


def test_an_opt_out_arriving_half_way_through_a_batch_stops_the_rest_of_its_texts(
    clinic, now, settings
):
    settings.SMS_BACKEND = "tests.test_dispatch_batches.StopRepliedAfterTheFirstText"
    settings.SMS_DAILY_CAP = settings.SMS_WEEKLY_CAP = 50
    settings.DISPATCH_FLUSH_MESSAGES = 1
    first, second = texting_patients(clinic, 2)
    due_texts(clinic, [first, second])
    StopRepliedAfterTheFirstText.number = second.mobile
    now.move_to(NOW)

    dispatch()

    # Preparation texts go first, in visit order: the first patient's, then the
    # second's; the second patient replies STOP while the batch is being sent.
    assert [sms.to for sms in transports.outbox] == [first.mobile, second.mobile] + [
        first.mobile
    ] * 3
    assert statuses(second) == [Status.SENT] + [Status.SUPPRESSED] * 3
    assert set(
        Message.objects.filter(patient=second, status=Status.SUPPRESSED).values_list(
            "reason", flat=True
        )
    ) == {consent.OPTED_OUT}


class StopRepliedAfterTheFirstText(transports.LocmemSMSBackend):
    """Delivers; the patient with ``number`` replies STOP to their first text at once."""

    number = ""

    def deliver(self, sms):
        accepted = super().deliver(sms)
        if sms.to == StopRepliedAfterTheFirstText.number:
            StopRepliedAfterTheFirstText.number = ""
            handle_inbound(f"SM{accepted.provider_id}", sms.to, "STOP")
        return accepted


def test_a_dispatcher_that_dies_half_way_through_a_batch_leaves_each_text_to_go_once(
    clinic, now, settings
):
    settings.SMS_DAILY_CAP = settings.SMS_WEEKLY_CAP = 50
    due_texts(clinic, texting_patients(clinic, 2))
    now.move_to(NOW)
    dying = Dispatcher()
    batch = dying.claim(500)
    batch.prepare()
    batch.mark()
    assert [m for m, _ in batch.sending] == batch.messages
    for _, outgoing in batch.sending[:3]:
        dying.transport(Channel.SMS).send(outgoing)  # ... and the process dies here
    assert set(Message.objects.values_list("in_doubt", flat=True)) == {True}

    now.move_to(NOW + timedelta(minutes=6))
    result = dispatch()

    # Each text marked as being sent was looked up first: three were found.
    assert (result.recovered, result.sent) == (8, 8)
    # A visit's three reminders read the same: each message has a text of its own.
    assert sorted(Message.objects.values_list("provider_id", flat=True)) == sorted(
        sms.provider_id for sms in transports.outbox
    )
    found = Message.objects.filter(status=Status.QUEUED)
    assert sorted(found.values_list("provider_id", flat=True)) == sorted(
        sms.provider_id for sms in transports.outbox[:3]
    )
    assert set(found.values_list("attempts", flat=True)) == {1}
    assert set(Message.objects.filter(status=Status.SENT).values_list("attempts", flat=True)) == {2}


class FailsForOneNumber(transports.LocmemSMSBackend):
    """Raises an unexpected error (a bug) for one number; cannot look texts up."""

    number = ""
    can_look_up = False

    def deliver(self, sms):
        if sms.to == FailsForOneNumber.number:
            raise RuntimeError("connection pool exploded")
        return super().deliver(sms)


def test_a_bug_in_one_message_does_not_strand_the_rest_of_the_batch(clinic, now, settings):
    settings.SMS_BACKEND = "tests.test_dispatch_batches.FailsForOneNumber"
    settings.SMS_DAILY_CAP = settings.SMS_WEEKLY_CAP = 50
    unlucky, *others = texting_patients(clinic, 3)
    due_texts(clinic, [unlucky, *others])
    FailsForOneNumber.number = unlucky.mobile
    now.move_to(NOW)

    result = dispatch()

    assert (result.sent, result.failed) == (8, 4)
    for patient in others:
        assert statuses(patient) == [Status.SENT] * 4
    # Handed over when it raised: the provider may have it, so not sent again.
    for message in Message.objects.filter(patient=unlucky):
        assert message.status == Status.FAILED and "RuntimeError" in message.last_error
        assert "Check with the patient" in message.last_error
    assert not Message.objects.filter(status=Status.CLAIMED).exists()


class DeliveredBeforeWeWriteItDown(transports.LocmemSMSBackend):
    """Delivers, and Twilio's "delivered" callback arrives before the batch records the SID."""

    def deliver(self, sms):
        accepted = super().deliver(sms)
        message_id = sms.status_callback.rpartition("?m=")[2]
        assert record_status(accepted.provider_id, "delivered", message_id=message_id)
        return accepted


def test_a_callback_ahead_of_the_batch_keeps_its_status_and_the_batch_records_the_sid(
    clinic, now, settings
):
    settings.SMS_BACKEND = "tests.test_dispatch_batches.DeliveredBeforeWeWriteItDown"
    settings.SMS_DAILY_CAP = settings.SMS_WEEKLY_CAP = 50
    due_texts(clinic, texting_patients(clinic, 2))
    now.move_to(NOW)

    assert dispatch().sent == 8

    by_sid = {sms.provider_id: sms for sms in transports.outbox}
    for message in Message.objects.all():
        assert message.status == Status.DELIVERED and not message.in_doubt
        assert message.provider_id in by_sid and message.sent_at == NOW
        assert message.body == by_sid[message.provider_id].body


def test_a_paced_pass_claims_no_more_than_it_can_send_before_it_ends(clinic, now, settings):
    settings.SMS_DAILY_CAP = settings.SMS_WEEKLY_CAP = 50
    settings.SMS_SEND_RATE = settings.EMAIL_SEND_RATE = 20
    settings.DISPATCH_PASS_SECONDS = 1
    due_texts(clinic, texting_patients(clinic, 15))  # 60 texts, 3 seconds' worth
    now.move_to(NOW)

    started = time.monotonic()
    result = dispatch()

    assert time.monotonic() - started < 2.5  # not the 3 seconds all 60 would take
    assert 1 <= result.sent <= 21
    assert Message.objects.filter(status=Status.PENDING).count() == 60 - result.sent
    assert not Message.objects.filter(status=Status.CLAIMED).exists()


def test_a_batch_stops_sending_when_half_its_lease_is_gone_and_queues_the_rest_again(
    clinic, now, twilio, settings
):
    settings.SMS_DAILY_CAP = settings.SMS_WEEKLY_CAP = 50
    settings.MESSAGE_CLAIM_LEASE_SECONDS = 2
    settings.TWILIO_TIMEOUT = 1
    twilio.fail_next(Failure(delay=1.5))  # the first send takes all of the second it has
    due_texts(clinic, texting_patients(clinic, 1))
    now.move_to(NOW)

    result = dispatch()

    assert (result.retrying, result.deferred, result.sent) == (1, 3, 0)
    assert len(twilio.creates()) == 1
    first = Message.objects.get(status=Status.PENDING, attempts=1)
    assert first.in_doubt and first.error_code == "timeout"  # looked up before a resend
    for message in Message.objects.exclude(pk=first.pk):
        # Marked as being sent, then never handed over: the mark is undone.
        assert (message.status, message.attempts, message.in_doubt) == (Status.PENDING, 0, False)
        assert message.send_at == NOW - timedelta(minutes=5)
        assert "ran out of time" in message.reason


class NumberChangedAfterTheFirstText(transports.LocmemSMSBackend):
    """Delivers; after the first text, the front desk corrects one patient's number."""

    change: tuple[int, str] | None = None

    def deliver(self, sms):
        accepted = super().deliver(sms)
        if NumberChangedAfterTheFirstText.change:
            patient_id, mobile = NumberChangedAfterTheFirstText.change
            NumberChangedAfterTheFirstText.change = None
            Patient.objects.filter(pk=patient_id).update(mobile=mobile)
        return accepted


def test_a_number_corrected_half_way_through_a_batch_gets_the_rest_of_the_texts(
    clinic, now, settings
):
    settings.SMS_BACKEND = "tests.test_dispatch_batches.NumberChangedAfterTheFirstText"
    settings.SMS_DAILY_CAP = settings.SMS_WEEKLY_CAP = 50
    settings.DISPATCH_FLUSH_MESSAGES = 1
    first, second = texting_patients(clinic, 2)
    due_texts(clinic, [first, second])
    NumberChangedAfterTheFirstText.change = (second.pk, "+16465559999")
    now.move_to(NOW)

    result = dispatch()

    # Only the first patient's preparation text went before the correction.
    assert (result.sent, result.deferred) == (4, 4)
    assert {sms.to for sms in transports.outbox} == {first.mobile}
    result = dispatch()  # the next pass composes them for the new number
    assert result.sent == 4
    assert [sms.to for sms in transports.outbox[4:]] == ["+16465559999"] * 4
    assert statuses(second) == [Status.SENT] * 4
    assert set(Message.objects.values_list("attempts", flat=True)) == {1}
