"""A dispatch pass: claim the due messages, check them again, send, record the outcome.

What makes it safe to run anywhere, any number of times at once:

- Claiming is a conditional update (``status=pending -> claimed`` with a fresh
  claim token), inside a transaction that on PostgreSQL also takes the rows
  with ``SELECT ... FOR UPDATE SKIP LOCKED``: two dispatchers never get the
  same message, and on SQLite the IMMEDIATE transaction plus the condition do
  the same.
- Before handing a message to the provider the pass writes what it is about
  to send and marks it ``in_doubt``, again conditional on still holding the
  claim: a dispatcher whose claim lapsed and was taken over sends nothing.
- A claim older than the lease belongs to a dispatcher that died; the next
  pass returns it to the queue. If that dispatcher had got as far as the
  provider (``in_doubt``), the message is looked up at the provider first
  (Twilio lists what it accepted) and recorded as sent if found, so it is never
  sent twice; a transport that cannot look up (SMTP) fails it visibly instead.
- Every check is made again at send time: the visit still on and at the same
  time (sequence unchanged), consent and opt-out, quiet hours, text limits.
"""

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from notifications import consent, content
from notifications.models import Channel, Message, Purpose, Status
from notifications.planning import ACTIVE_STATUSES
from notifications.rules import quiet_hours_for, text_limit_problem
from notifications.transports import (
    Accepted,
    EmailTransport,
    OutgoingEmail,
    OutgoingSMS,
    PermanentError,
    TransientError,
    TransportError,
    sms_backend,
)
from scheduler.models import Patient, Visit, VisitStatus

log = logging.getLogger(__name__)

OPTED_OUT_CODE = "21610"


@dataclass
class PassResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    suppressed: int = 0
    skipped: int = 0
    cancelled: int = 0
    deferred: int = 0
    recovered: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        return ", ".join(f"{count} {name}" for name, count in self.as_dict().items())


class Pacer:
    """At most ``rate`` sends a second per sender, within this process.

    Twilio queues what a number cannot send at once (a long code sends about
    one segment a second), so pacing keeps that queue short and avoids 429s
    rather than guarding correctness; passes normally run one at a time.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        self.clock, self.sleep = clock, sleep
        self.next_slot: dict[str, float] = {}

    def wait(self, sender: str, rate: float) -> None:
        if rate <= 0:
            return
        now = self.clock()
        slot = self.next_slot.get(sender, now)
        if slot > now:
            self.sleep(slot - now)
            now = slot
        self.next_slot[sender] = now + 1 / rate


def status_callback_url(message: Message) -> str:
    # Our own id rides along: Twilio may call back before our record of its
    # SID is committed, and the callback still finds the message.
    return f"{settings.SITE_URL}{reverse('twilio-status')}?m={message.pk}"


class Dispatcher:
    def __init__(self, now: datetime | None = None, *, pace: bool = True):
        self.fixed_now = now
        self.handed_over = False  # the message in hand has been marked as being sent
        self.pacer = Pacer() if pace else None
        self.result = PassResult()
        self._transports: dict[str, object] = {}

    def now(self) -> datetime:
        return self.fixed_now or timezone.now()

    def transport(self, channel: str):
        if channel not in self._transports:
            self._transports[channel] = (
                sms_backend() if channel == Channel.SMS else EmailTransport()
            )
        return self._transports[channel]

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    # -- the pass -------------------------------------------------------------------

    def run(self, limit: int | None = None) -> PassResult:
        self.recover_lapsed_claims()
        deadline = time.monotonic() + settings.DISPATCH_PASS_SECONDS
        handled = 0
        try:
            while time.monotonic() < deadline and (limit is None or handled < limit):
                size = settings.DISPATCH_BATCH_SIZE
                if limit is not None:
                    size = min(size, limit - handled)
                batch = self.claim(size)
                if not batch:
                    break
                for message in batch:
                    self.handle(message)
                handled += len(batch)
        finally:
            self.close()
        return self.result

    def recover_lapsed_claims(self) -> None:
        """Return the messages of dispatchers that died to the queue (see the module docstring)."""
        now = self.now()
        for pk, token in Message.objects.lapsed_claims(now).values_list("pk", "claim_token")[:500]:
            recovered = Message.objects.filter(
                pk=pk, status=Status.CLAIMED, claim_token=token
            ).update(
                status=Status.PENDING,
                claim_token="",
                last_error="Recovered: the dispatcher holding it stopped.",
                updated_at=now,
            )
            self.result.recovered += recovered

    def claim(self, size: int) -> list[Message]:
        now = self.now()
        token = uuid.uuid4().hex
        with transaction.atomic():
            due = Message.objects.due(now).order_by("-priority", "send_at", "pk")
            if connection.features.has_select_for_update_skip_locked:
                due = due.select_for_update(skip_locked=True)
            ids = list(due.values_list("pk", flat=True)[:size])
            if not ids:
                return []
            Message.objects.filter(pk__in=ids, status=Status.PENDING).update(
                status=Status.CLAIMED, claimed_at=now, claim_token=token, updated_at=now
            )
        claimed = list(
            Message.objects.filter(pk__in=ids, claim_token=token)
            .select_related(
                "patient__clinic",
                "patient__messaging_preferences",
                "visit__visit_type",
                "visit__clinician",
                "rule__policy",
            )
            .order_by("-priority", "send_at", "pk")
        )
        for message in claimed:
            message.visit.patient = message.patient  # one object, loaded once
        return claimed

    # -- one message ---------------------------------------------------------------

    def handle(self, message: Message) -> None:
        self.handed_over = False
        try:
            self._handle(message)
        except Exception as error:  # a bug must not strand the rest of the batch
            log.exception("Dispatching message %s failed", message.pk)
            # Past mark_sending the provider may have the message: look before resending.
            transport = self._transports.get(message.channel)
            self.retry_or_fail(
                message,
                TransientError(
                    f"Internal error: {error!r}", code="error", in_doubt=self.handed_over
                ),
                can_look_up=bool(transport and transport.can_look_up),
            )

    def _handle(self, message: Message) -> None:
        now = self.now()
        if message.in_doubt and self.already_accepted(message):
            return
        current = (
            Visit.objects.filter(pk=message.visit_id)
            .values(
                "status",
                "sequence",
                "patient__mobile",
                "patient__email",
                "patient__contact_by_sms",
                "patient__contact_by_email",
                "patient__sms_consent_at",
                "patient__sms_opted_out_at",
            )
            .first()
        )
        if current is None:
            return self.finish(message, Status.CANCELLED, "The visit no longer exists.")
        if message.purpose == Purpose.CANCELLED:
            if current["status"] != VisitStatus.CANCELLED:
                return self.finish(message, Status.CANCELLED, "The visit is on again.")
        elif current["status"] not in ACTIVE_STATUSES:
            return self.finish(message, Status.CANCELLED, "The visit is no longer on.")
        if current["sequence"] != message.visit_sequence:
            return self.finish(message, Status.CANCELLED, "The visit moved after this was planned.")
        if message.rule_id and not (message.rule.is_active and message.rule.policy.is_active):
            return self.finish(message, Status.CANCELLED, "Its reminder rule was turned off.")
        if now >= message.expires_at:
            return self.finish(message, Status.SKIPPED, "Too late: its time had passed.")
        # The patient as stored now: an opt-out a second ago counts.
        patient = message.patient
        for field, value in current.items():
            if field.startswith("patient__"):
                setattr(patient, field.removeprefix("patient__"), value)
        refusal = self.channel_refusal(message)
        if refusal:
            return self.finish(message, Status.SUPPRESSED, refusal)
        quiet = quiet_hours_for(patient)
        if quiet.contains(now):
            later = quiet.ends(now)
            if later >= message.expires_at:
                return self.finish(
                    message, Status.SKIPPED, "Quiet hours last until it is too late."
                )
            return self.release(message, later, "Waiting for quiet hours to end.")
        if message.channel == Channel.SMS and not message.is_essential:
            problem = text_limit_problem(message, now)
            if problem:
                return self.finish(message, Status.SUPPRESSED, problem)
        outgoing = self.compose(message)
        if outgoing is None:
            return
        transport = self.transport(message.channel)
        if not self.mark_sending(message, outgoing):
            return  # our claim lapsed and another dispatcher holds the message now
        if self.pacer is not None:
            rate = (
                settings.SMS_SEND_RATE
                if message.channel == Channel.SMS
                else settings.EMAIL_SEND_RATE
            )
            self.pacer.wait(transport.sender, rate)
        try:
            accepted = transport.send(outgoing)
        except PermanentError as error:
            self.fail(message, error)
        except TransientError as error:
            self.retry_or_fail(message, error, can_look_up=transport.can_look_up)
        else:
            self.accepted(message, accepted)

    def channel_refusal(self, message: Message) -> str:
        patient = message.patient
        if message.channel == Channel.EMAIL:
            if not (patient.contact_by_email and patient.email):
                return "The patient does not want email or has no address."
            return ""
        if patient.sms_opted_out_at and not patient.can_receive_sms:
            return consent.OPTED_OUT
        if not patient.can_receive_sms:
            return "No recorded consent to texts, or no mobile number."
        return ""

    def compose(self, message: Message) -> OutgoingSMS | OutgoingEmail | None:
        if message.channel == Channel.EMAIL:
            email = content.email_content(message)
            return OutgoingEmail(message.patient.email, email.subject, email.text, email.html)
        body = content.sms_body(message)
        words = content.treatment_words(body)
        if words:
            # Never sent: a text naming the treatment can be read by anyone
            # who sees the phone. Usually the clinic's name: set SMS_CLINIC_NAME.
            self.fail(
                message,
                PermanentError(
                    f"The text would contain {', '.join(words)}; set SMS_CLINIC_NAME or "
                    "change the template.",
                    code="treatment-words",
                ),
            )
            return None
        return OutgoingSMS(message.patient.mobile, body, status_callback_url(message))

    def already_accepted(self, message: Message) -> bool:
        """For a message an earlier attempt may have delivered: record it as sent if it did.

        Asks the provider for the text exactly as that attempt wrote it down
        (recipient and body), whatever the visit or the templates say now.
        """
        transport = self.transport(message.channel)
        if not transport.can_look_up:
            self.fail(
                message,
                PermanentError(
                    "An earlier attempt may have been delivered and this provider cannot be "
                    "asked; not sent again. Check with the patient.",
                    code="in-doubt",
                ),
            )
            return True
        try:
            candidates = transport.find(OutgoingSMS(message.recipient, message.body))
        except TransientError as error:
            self.retry_or_fail(message, error, can_look_up=True, counts=False)
            return True
        # Reminders 72 h and 24 h before read the same; a text already on
        # record as another message is not this one.
        known = set(
            Message.objects.filter(provider_id__in=candidates).values_list("provider_id", flat=True)
        )
        provider_id = next((sid for sid in candidates if sid not in known), None)
        if provider_id:
            self.accepted(message, Accepted(provider_id, Status.QUEUED), when=message.attempted_at)
            return True
        return False

    # -- recording outcomes (each conditional on still holding the claim) ------------

    def _mine(self, message: Message):
        return Message.objects.filter(
            pk=message.pk, status=Status.CLAIMED, claim_token=message.claim_token
        )

    def mark_sending(self, message: Message, outgoing) -> bool:
        now = self.now()
        body = outgoing.body if isinstance(outgoing, OutgoingSMS) else outgoing.subject
        updated = self._mine(message).update(
            body=body,
            recipient=outgoing.to,
            in_doubt=True,
            attempted_at=now,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
        message.attempts += 1
        message.attempted_at = now
        self.handed_over = bool(updated)
        return bool(updated)

    def accepted(self, message: Message, accepted: Accepted, when: datetime | None = None) -> None:
        now = self.now()
        sent_at = when or now
        done = {"provider_id": accepted.provider_id, "sent_at": sent_at, "in_doubt": False}
        updated = self._mine(message).update(
            status=accepted.status,
            claim_token="",
            error_code="",
            last_error="",
            updated_at=now,
            **done,
        )
        if not updated:
            # A status callback moved it forward first; keep its status.
            Message.objects.filter(pk=message.pk).update(updated_at=now, **done)
        self.result.sent += 1

    def finish(self, message: Message, status: str, reason: str) -> None:
        self._mine(message).update(
            status=status,
            reason=reason[:300],
            claim_token="",
            in_doubt=False,
            updated_at=self.now(),
        )
        counter = {
            Status.CANCELLED: "cancelled",
            Status.SKIPPED: "skipped",
            Status.SUPPRESSED: "suppressed",
        }[status]
        setattr(self.result, counter, getattr(self.result, counter) + 1)

    def release(self, message: Message, send_at: datetime, reason: str) -> None:
        self._mine(message).update(
            status=Status.PENDING,
            send_at=send_at,
            reason=reason,
            claim_token="",
            updated_at=self.now(),
        )
        self.result.deferred += 1

    def fail(self, message: Message, error: TransportError) -> None:
        now = self.now()
        self._mine(message).update(
            status=Status.FAILED,
            error_code=error.code[:16],
            last_error=str(error),
            claim_token="",
            in_doubt=False,
            updated_at=now,
        )
        self.result.failed += 1
        if error.code == OPTED_OUT_CODE:
            # The carrier says this number replied STOP: honour it everywhere.
            consent.record_opt_out(Patient.objects.filter(mobile=message.patient.mobile), now)

    def retry_or_fail(
        self,
        message: Message,
        error: TransportError,
        *,
        can_look_up: bool = False,
        counts: bool = True,
    ) -> None:
        now = self.now()
        if error.in_doubt and not can_look_up:
            return self.fail(
                message,
                PermanentError(
                    f"{error} The provider may have taken it and cannot be asked; not sent "
                    "again. Check with the patient.",
                    code=error.code or "in-doubt",
                ),
            )
        if counts and message.attempts >= settings.MESSAGE_MAX_ATTEMPTS:
            return self.fail(
                message,
                TransientError(
                    f"Gave up after {message.attempts} attempts: {error}", code=error.code
                ),
            )
        backoff = min(
            settings.MESSAGE_RETRY_SECONDS * 2 ** max(message.attempts - 1, 0),
            settings.MESSAGE_RETRY_MAX_SECONDS,
        )
        next_try = quiet_hours_for(message.patient).next_allowed(now + timedelta(seconds=backoff))
        if next_try >= message.expires_at:
            return self.fail(
                message, TransientError(f"No time left to try again: {error}", code=error.code)
            )
        self._mine(message).update(
            status=Status.PENDING,
            send_at=next_try,
            error_code=error.code[:16],
            last_error=str(error),
            in_doubt=error.in_doubt,
            claim_token="",
            updated_at=now,
        )
        self.result.retrying += 1


def dispatch(
    now: datetime | None = None, *, limit: int | None = None, pace: bool = True
) -> PassResult:
    """One dispatch pass (what the schedule runs every minute)."""
    return Dispatcher(now, pace=pace).run(limit)


def next_due(after: datetime) -> datetime | None:
    """When the next pending message is due after ``after`` (for rehearsals)."""
    return (
        Message.objects.pending()
        .filter(send_at__gt=after)
        .order_by("send_at")
        .values_list("send_at", flat=True)
        .first()
    )
