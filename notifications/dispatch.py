"""A dispatch pass: claim due messages a batch at a time, check them, send them, record the outcomes.

A batch (up to ``DISPATCH_BATCH_SIZE`` messages) costs a fixed handful of
queries whatever its size: the claim and one load; one re-read of its rows with
their visits and patients; one count of the texts that count against the
patients' limits; its preparation texts' links, issued together; one statement
marking the batch as being sent; and its outcomes, written together at the end
of the batch and, while it sends, every ``DISPATCH_FLUSH_SECONDS`` or
``DISPATCH_FLUSH_MESSAGES`` sends, so that statuses show up promptly.

What makes it safe to run anywhere, any number of times at once:

- Claiming is a conditional update (``status=pending -> claimed`` with a fresh
  claim token), inside a transaction that on PostgreSQL also takes the rows
  with ``SELECT ... FOR UPDATE SKIP LOCKED``: two dispatchers never get the
  same message, and on SQLite the IMMEDIATE transaction plus the condition do
  the same.
- Before handing any message of a batch to the provider the pass writes, in
  one statement, what each is about to send (text and recipient) and marks it
  ``in_doubt``, again conditional on still holding the claim; only the rows
  that statement reached are sent, so a dispatcher whose claim lapsed and was
  taken over sends nothing. A message marked but then not sent after all (a
  check failed at the last moment, time ran out) has its mark undone.
- A batch never sends on a claim older than half its lease: it is no larger
  than pacing lets it send in that time (nor in what is left of the pass), and
  whatever a slow provider leaves unsent when the time is up goes back to the
  queue, not in doubt. Every flush also re-reads the rows still to be sent: a
  row no longer ours is not sent.
- A claim older than the lease belongs to a dispatcher that died; the next
  pass returns it to the queue. If that dispatcher had marked the message as
  being sent (``in_doubt``; after a death half-way through a batch, the rest of
  the batch), the message is looked up at the provider first (Twilio lists
  what it accepted) and recorded as sent if found, so it is never sent twice;
  a transport that cannot look up (SMTP) fails it visibly instead.
- Every check is made again close to the send. The visit still on and at the
  same time (sequence unchanged), its reminder rule still on, the patient's
  consent, opt-out and number: re-read for the whole batch when it starts and
  at every flush, so at most a flush interval old when a message goes. Quiet
  hours and expiry: just before each send. Text limits: counted for the whole
  batch in one query (``rules.TextLedger``) and decided in the batch's order,
  counting what the batch itself sends, so the caps hold within a batch as
  between passes. An opt-out the carrier reports (21610) stops the batch's
  other texts to that number at once.
- Outcomes are written conditional on the claim; if a status callback moved a
  message forward first, it keeps that status and the write still records the
  provider's id and the time sent.
- A bug in one message does not strand the rest of the batch: that message is
  retried, or failed visibly if the provider may have it.
"""

import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Expression, QuerySet
from django.db.models.functions import Cast
from django.urls import reverse
from django.utils import timezone

from notifications import consent, content
from notifications.models import Channel, Message, Purpose, Status
from notifications.patient_links import issue_patient_links
from notifications.planning import ACTIVE_STATUSES
from notifications.rules import TextLedger, quiet_hours_for
from notifications.transports import (
    Accepted,
    Outgoing,
    OutgoingEmail,
    OutgoingSMS,
    PermanentError,
    TransientError,
    TransportError,
    transport_for,
)
from scheduler.models import Patient, VisitStatus

log = logging.getLogger(__name__)

OPTED_OUT_CODE = "21610"
# What a batch re-reads of its rows before sending: the query finds only rows
# still ours, and brings their reminder rule's switches, their visit's status
# and sequence, and the patient's contact details and consent as stored now.
CURRENT_FIELDS = (
    "rule__is_active",
    "rule__policy__is_active",
    "visit__status",
    "visit__sequence",
    "patient__mobile",
    "patient__email",
    "patient__contact_by_sms",
    "patient__contact_by_email",
    "patient__sms_consent_at",
    "patient__sms_opted_out_at",
)


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


class EachRow(Expression):
    """A value per row: ``CASE "id" WHEN 1 THEN 'a' WHEN 2 THEN 'b' ... ELSE <the column> END``.

    What ``Case(When(pk=1, then=Value('a')), ...)`` says, at a fraction of the
    cost: Django resolves and compiles each ``When`` (~70 us), which for a
    batch of hundreds of messages takes longer than sending them.
    """

    def __init__(self, field, values: dict[int, Any]):
        super().__init__(output_field=field)
        self.values = values

    def as_sql(self, compiler, connection):
        field = self.output_field
        params = []
        for pk, value in self.values.items():
            params += [pk, field.get_db_prep_save(value, connection)]
        pk_column = connection.ops.quote_name(Message._meta.pk.column)
        column = connection.ops.quote_name(field.column)
        return f"CASE {pk_column}{' WHEN %s THEN %s' * len(self.values)} ELSE {column} END", params


# Rows an UPDATE gives values of their own: SQLite takes at most 32766
# parameters a statement, and a row can bring a dozen.
UPDATE_EACH_ROWS = 1000


def update_each(rows: QuerySet, changes: dict[int, dict[str, Any]], **every_row) -> int:
    """Give each message in ``changes`` (by id) its own new values, in one UPDATE of ``rows``.

    A field every row sets alike is a plain assignment; any other takes each
    row's own value and keeps the stored one for rows that do not set it.
    ``every_row`` is set on all of them. Returns how many rows matched
    (``rows`` carries the claim condition). Past ``UPDATE_EACH_ROWS`` rows,
    one UPDATE per that many.
    """
    if len(changes) > UPDATE_EACH_ROWS:
        pks = list(changes)
        return sum(
            update_each(
                rows, {pk: changes[pk] for pk in pks[start : start + UPDATE_EACH_ROWS]}, **every_row
            )
            for start in range(0, len(pks), UPDATE_EACH_ROWS)
        )
    by_field: dict[str, dict[int, Any]] = defaultdict(dict)
    for pk, row in changes.items():
        for name, value in row.items():
            by_field[name][pk] = value
    assignments = {}
    for name, values in by_field.items():
        if len(values) == len(changes) and len(set(values.values())) == 1:
            assignments[name] = next(iter(values.values()))
            continue
        field = Message._meta.get_field(name)
        assignments[name] = EachRow(field, values)
        if connection.features.requires_casted_case_in_updates:
            # PostgreSQL types the parameters of a CASE from its context.
            assignments[name] = Cast(assignments[name], output_field=field)
    return rows.filter(pk__in=list(changes)).update(**assignments, **every_row)


class Dispatcher:
    def __init__(self, now: datetime | None = None, *, pace: bool = True):
        self.fixed_now = now
        self.pacer = Pacer() if pace else None
        self.result = PassResult()
        self._transports: dict[str, object] = {}
        # Outcomes wait here while a batch is in hand and are written together;
        # outside a batch (one message at a time) each is written at once.
        self.in_batch = False
        self.unwritten: dict[Message, dict[str, Any]] = {}
        self.unwritten_accepts: dict[Message, dict[str, Any]] = {}
        self.unrecorded_opt_outs: set[str] = set()
        self.last_write = time.monotonic()
        self.sent_since_write = 0
        self.start_batch()
        self.hand_over_until = math.inf

    def now(self) -> datetime:
        return self.fixed_now or timezone.now()

    @cached_property
    def status_callback(self) -> str:
        # Our own id rides along (m=): Twilio may call back before our record
        # of its SID is committed, and the callback still finds the message.
        return f"{settings.SITE_URL}{reverse('twilio-status')}?m="

    def transport(self, channel: str):
        if channel not in self._transports:
            self._transports[channel] = transport_for(channel)
            self._transports[channel].open()
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
                size = self.batch_size(deadline)
                if limit is not None:
                    size = min(size, limit - handled)
                batch = self.claim(size)
                if batch:
                    self.handle_batch(batch)
                handled += len(batch)
                if len(batch) < size:
                    break  # nothing more was due
        finally:
            self.close()
        return self.result

    def batch_size(self, deadline: float) -> int:
        """``DISPATCH_BATCH_SIZE``, or fewer when pacing could not send that many in time.

        In time: before the pass ends, so that passes do not pile up on one
        sender's rate, and within half the claim lease (see the module docstring).
        """
        size = settings.DISPATCH_BATCH_SIZE
        rates = [rate for rate in (settings.SMS_SEND_RATE, settings.EMAIL_SEND_RATE) if rate > 0]
        if self.pacer is not None and rates:
            seconds = min(deadline - time.monotonic(), settings.MESSAGE_CLAIM_LEASE_SECONDS / 2)
            size = min(size, max(1, int(seconds * min(rates))))
        return size

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
        # Measured on this machine's own clock, so that clocks that disagree
        # eat into the margin (the other half of the lease), not the claim.
        self.hand_over_until = time.monotonic() + settings.MESSAGE_CLAIM_LEASE_SECONDS / 2
        claimed = list(
            Message.objects.filter(pk__in=ids, claim_token=token)
            .select_related(
                "patient__clinic",
                "patient__messaging_preferences",
                "visit__visit_type",
                "visit__clinician",
            )
            .order_by("-priority", "send_at", "pk")
        )
        for message in claimed:
            message.visit.patient = message.patient  # one object, loaded once
        return claimed

    # -- one batch -------------------------------------------------------------------

    def start_batch(self) -> None:
        self.current: dict[int, dict[str, Any]] = {}  # rows still ours, as last re-read
        self.ledger: TextLedger | None = None
        self.marked: set[int] = set()  # marked as being sent
        self.handed_over: set[int] = set()  # given to the provider, which may have them
        self.opted_out_numbers: set[str] = set()  # the carrier answered 21610 for these

    def handle_batch(self, batch: list[Message]) -> None:
        """Check, send and record the outcome of a claimed batch (see the module docstring)."""
        self.start_batch()
        self.in_batch = True
        try:
            self.send(self.prepare(batch))
        finally:
            self.in_batch = False
            self.write_outcomes()

    def prepare(self, batch: list[Message]) -> list[tuple[Message, Outgoing]]:
        """Everything before the first provider call; the messages to send, marked as being sent."""
        now = self.now()
        batch = self.settle_in_doubt(batch)
        self.current = self.reread(batch)
        self.ledger = TextLedger.load(
            [m.patient for m in batch if m.channel == Channel.SMS and not m.is_essential], now
        )
        going = []
        for message in batch:  # in priority order, so the limits leave room as they should
            with self.guard(message):
                if self.may_send(message, now) and self.within_text_limits(message):
                    going.append(message)
                    self.ledger.note(message, status=Status.QUEUED, sent_at=now)
        self.ledger = None  # the limits are decided
        preparation = [
            m for m in going if m.channel == Channel.SMS and m.purpose == Purpose.PREPARATION
        ]
        links = self.issue_links(preparation)
        unlinked = {m.pk for m in preparation} - set(links)  # put back for a retry
        sending = []
        for message in going:
            if message.pk in unlinked:
                continue
            with self.guard(message):
                outgoing = self.compose(message, links.get(message.pk, ""))
                if outgoing is not None:
                    sending.append((message, outgoing))
        ours = self.mark_batch_sending(sending)
        return [(message, outgoing) for message, outgoing in sending if message.pk in ours]

    def send(self, sending: list[tuple[Message, Outgoing]]) -> None:
        for index, (message, outgoing) in enumerate(sending):
            if self.write_due():
                self.write_outcomes()
                self.current = self.reread([m for m, _ in sending[index:]])
            if time.monotonic() > self.hand_over_until:
                for later, _ in sending[index:]:
                    if later.pk in self.current:
                        self.release(
                            later, later.send_at, "The batch ran out of time; queued again."
                        )
                return
            with self.guard(message):
                if not self.may_send(message, self.now()):
                    continue
                if outgoing.to != self.address_of(message):
                    # Composed for a number or address the patient has since
                    # changed: the next pass composes it again for the new one.
                    self.release(message, message.send_at, "The patient's contact changed.")
                    continue
                self.hand_over(message, outgoing)

    def write_due(self) -> bool:
        return (
            self.sent_since_write >= settings.DISPATCH_FLUSH_MESSAGES
            or time.monotonic() - self.last_write >= settings.DISPATCH_FLUSH_SECONDS
        )

    def reread(self, messages: list[Message]) -> dict[int, dict[str, Any]]:
        """The rows of ``messages`` still ours, with visit and patient as stored now (one query)."""
        if not messages:
            return {}
        rows = Message.objects.filter(
            pk__in=[m.pk for m in messages],
            status=Status.CLAIMED,
            claim_token__in={m.claim_token for m in messages},  # all ours
        ).values("pk", *CURRENT_FIELDS)
        return {row.pop("pk"): row for row in rows}

    @contextmanager
    def guard(self, message: Message) -> Iterator[None]:
        """A bug in one message must not strand the rest of the batch."""
        try:
            yield
        except Exception as error:
            log.exception("Dispatching message %s failed", message.pk)
            self.raised(message, error)

    def raised(self, message: Message, error: Exception) -> None:
        # Once handed over the provider may have it: look before resending.
        transport = self._transports.get(message.channel)
        self.retry_or_fail(
            message,
            TransientError(
                f"Internal error: {error!r}",
                code="error",
                in_doubt=message.in_doubt or message.pk in self.handed_over,
            ),
            can_look_up=bool(transport and transport.can_look_up),
        )

    # -- one message, in memory ----------------------------------------------------

    def may_send(self, message: Message, now: datetime) -> bool:
        """Whether ``message`` may go at ``now``, as its row was last re-read; if not, records why."""
        current = self.current.get(message.pk)
        if current is None:
            return False  # our claim lapsed and another dispatcher holds the message now
        if message.purpose == Purpose.CANCELLED:
            if current["visit__status"] != VisitStatus.CANCELLED:
                self.finish(message, Status.CANCELLED, "The visit is on again.")
                return False
        elif current["visit__status"] not in ACTIVE_STATUSES:
            self.finish(message, Status.CANCELLED, "The visit is no longer on.")
            return False
        if current["visit__sequence"] != message.visit_sequence:
            self.finish(message, Status.CANCELLED, "The visit moved after this was planned.")
            return False
        if message.rule_id and not (
            current["rule__is_active"] and current["rule__policy__is_active"]
        ):
            self.finish(message, Status.CANCELLED, "Its reminder rule was turned off.")
            return False
        if now >= message.expires_at:
            self.finish(message, Status.SKIPPED, "Too late: its time had passed.")
            return False
        # The patient as stored now: an opt-out a second ago counts.
        patient = message.patient
        for field, value in current.items():
            if field.startswith("patient__"):
                setattr(patient, field.removeprefix("patient__"), value)
        refusal = self.channel_refusal(message)
        if refusal:
            self.finish(message, Status.SUPPRESSED, refusal)
            return False
        quiet = quiet_hours_for(patient)
        if quiet.contains(now):
            later = quiet.ends(now)
            if later >= message.expires_at:
                self.finish(message, Status.SKIPPED, "Quiet hours last until it is too late.")
            else:
                self.release(message, later, "Waiting for quiet hours to end.")
            return False
        return True

    def within_text_limits(self, message: Message) -> bool:
        if message.channel != Channel.SMS or message.is_essential:
            return True
        problem = self.ledger.problem(message)
        if problem:
            self.finish(message, Status.SUPPRESSED, problem)
            return False
        return True

    def channel_refusal(self, message: Message) -> str:
        patient = message.patient
        if message.channel == Channel.EMAIL:
            if not (patient.contact_by_email and patient.email):
                return "The patient does not want email or has no address."
            return ""
        if patient.mobile in self.opted_out_numbers:
            return consent.OPTED_OUT
        if patient.sms_opted_out_at and not patient.can_receive_sms:
            return consent.OPTED_OUT
        if not patient.can_receive_sms:
            return "No recorded consent to texts, or no mobile number."
        return ""

    @staticmethod
    def address_of(message: Message) -> str:
        patient = message.patient
        return patient.email if message.channel == Channel.EMAIL else patient.mobile

    def issue_links(self, messages: list[Message]) -> dict[int, str]:
        """A fresh private link for each preparation text, issued together; by message id.

        If issuing fails (a link issued at the front desk at the same moment
        may collide), those texts are retried later and the batch goes on.
        """
        if not messages:
            return {}
        try:
            urls = issue_patient_links([m.patient for m in messages])
        except Exception as error:
            log.exception("Issuing links for %s preparation texts failed", len(messages))
            for message in messages:
                self.raised(message, error)
            return {}
        return {message.pk: url for message, url in zip(messages, urls, strict=True)}

    def compose(self, message: Message, link: str = "") -> Outgoing | None:
        if message.channel == Channel.EMAIL:
            email = content.email_content(message)
            return OutgoingEmail(self.address_of(message), email.subject, email.text, email.html)
        body = content.sms_body(message, link=link)
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
        return OutgoingSMS(self.address_of(message), body, f"{self.status_callback}{message.pk}")

    def hand_over(self, message: Message, outgoing: Outgoing) -> None:
        transport = self.transport(message.channel)
        if self.pacer is not None:
            rate = (
                settings.SMS_SEND_RATE
                if message.channel == Channel.SMS
                else settings.EMAIL_SEND_RATE
            )
            self.pacer.wait(transport.sender, rate)
        self.handed_over.add(message.pk)
        message.attempts += 1
        message.attempted_at = self.now()
        self.sent_since_write += 1
        try:
            accepted = transport.send(outgoing)
        except PermanentError as error:
            self.fail(message, error)
        except TransientError as error:
            self.retry_or_fail(message, error, can_look_up=transport.can_look_up)
        else:
            self.accepted(message, accepted)

    def settle_in_doubt(self, batch: list[Message]) -> list[Message]:
        """Record as sent the messages an earlier attempt may have delivered and did; the rest go on.

        Asks the provider for each text exactly as that attempt wrote it down
        (recipient and body), whatever the visit or the templates say now.
        """
        found: dict[Message, list[str]] = {}
        settled = set()
        for message in batch:
            if not message.in_doubt:
                continue
            settled.add(message)
            with self.guard(message):
                transport = self.transport(message.channel)
                if not transport.can_look_up:
                    self.fail(
                        message,
                        PermanentError(
                            "An earlier attempt may have been delivered and this provider cannot "
                            "be asked; not sent again. Check with the patient.",
                            code="in-doubt",
                        ),
                    )
                    continue
                try:
                    found[message] = transport.find(OutgoingSMS(message.recipient, message.body))
                except TransientError as error:
                    self.retry_or_fail(message, error, can_look_up=True, counts=False)
                    continue
                settled.discard(message)
        if found:
            # Reminders 72 h and 24 h before read the same; a text already on
            # record as another message (or taken by one just now) is not this one.
            taken: dict[str, set[int]] = defaultdict(set)
            candidates = {sid for sids in found.values() for sid in sids}
            for pk, sid in Message.objects.filter(provider_id__in=candidates).values_list(
                "pk", "provider_id"
            ):
                taken[sid].add(pk)
            for message, sids in found.items():
                provider_id = next((sid for sid in sids if not taken[sid] - {message.pk}), None)
                if provider_id:
                    taken[provider_id].add(message.pk)
                    settled.add(message)
                    self.accepted(
                        message, Accepted(provider_id, Status.QUEUED), when=message.attempted_at
                    )
        return [message for message in batch if message not in settled]

    # -- recording outcomes (each conditional on still holding the claim) ------------

    def mark_batch_sending(self, sending: list[tuple[Message, Outgoing]]) -> set[int]:
        """Write what each message is about to send and mark it ``in_doubt``; the ids still ours.

        One statement, together with the outcomes decided so far, conditional
        on the claim: only the messages it reached may be sent.
        """
        if not sending:
            return set()
        now = self.now()
        marks = {
            message: {
                "body": outgoing.body if isinstance(outgoing, OutgoingSMS) else outgoing.subject,
                "recipient": outgoing.to,
                "in_doubt": True,
                "attempted_at": now,
                "attempts": message.attempts + 1,
            }
            for message, outgoing in sending
        }
        expected = len(marks) + len(self.unwritten)
        written = self.write_outcomes(marks)
        self.marked.update(message.pk for message in marks)
        ids = {message.pk for message in marks}
        if written == expected:
            return ids
        return set(self.reread(list(marks))) & ids

    def mark_sending(self, message: Message, outgoing: Outgoing) -> bool:
        """``mark_batch_sending`` for one message: whether it is still ours to send."""
        return message.pk in self.mark_batch_sending([(message, outgoing)])

    def record(self, message: Message, **changes) -> None:
        """Note an outcome, to be written with the batch's next write (outside a batch: now)."""
        if message.pk in self.marked and message.pk not in self.handed_over:
            # Marked as being sent but never handed over: undo the mark, so the
            # attempt does not count and nobody looks the message up for nothing.
            changes = {
                "attempts": message.attempts,
                "attempted_at": message.attempted_at,
                "in_doubt": False,
                **changes,
            }
        self.unwritten.setdefault(message, {}).update(changes)
        if self.ledger is not None:
            self.ledger.note(message, **changes)
        if not self.in_batch:
            self.write_outcomes()

    def write_outcomes(self, marks: dict[Message, dict[str, Any]] | None = None) -> int:
        """Write the outcomes noted so far (and ``marks``); how many rows were still ours."""
        changes = {**self.unwritten, **(marks or {})}
        accepts = self.unwritten_accepts
        self.unwritten, self.unwritten_accepts = {}, {}
        self.last_write, self.sent_since_write = time.monotonic(), 0
        written = 0
        by_claim: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        for message, row in changes.items():
            by_claim[message.claim_token][message.pk] = row
        now = self.now()
        for token, rows in by_claim.items():
            held = Message.objects.filter(status=Status.CLAIMED, claim_token=token)
            written += update_each(held, rows, updated_at=now)
        if written < len(changes) and accepts:
            # A status callback may have moved a message forward first: it
            # keeps its status, and we still record the provider's id and time.
            # One back in the queue stays in doubt, to be looked up.
            moved = Message.objects.filter(pk__in=[m.pk for m in accepts]).exclude(
                status__in=(Status.PENDING, Status.CLAIMED)
            )
            update_each(
                moved, {message.pk: done for message, done in accepts.items()}, updated_at=now
            )
        if self.unrecorded_opt_outs:
            numbers, self.unrecorded_opt_outs = self.unrecorded_opt_outs, set()
            consent.record_opt_out(Patient.objects.filter(mobile__in=numbers), self.now())
        return written

    def accepted(self, message: Message, accepted: Accepted, when: datetime | None = None) -> None:
        now = self.now()
        done = {
            "provider_id": accepted.provider_id,
            "sent_at": when or now,
            "in_doubt": False,
        }
        self.handed_over.add(message.pk)
        self.unwritten_accepts[message] = done
        self.result.sent += 1
        self.record(
            message, status=accepted.status, claim_token="", error_code="", last_error="", **done
        )

    def finish(self, message: Message, status: str, reason: str) -> None:
        counter = {
            Status.CANCELLED: "cancelled",
            Status.SKIPPED: "skipped",
            Status.SUPPRESSED: "suppressed",
        }[status]
        setattr(self.result, counter, getattr(self.result, counter) + 1)
        self.record(
            message,
            status=status,
            reason=reason[:300],
            claim_token="",
            in_doubt=False,
        )

    def release(self, message: Message, send_at: datetime, reason: str) -> None:
        self.result.deferred += 1
        self.record(
            message,
            status=Status.PENDING,
            send_at=send_at,
            reason=reason,
            claim_token="",
        )

    def fail(self, message: Message, error: TransportError) -> None:
        self.result.failed += 1
        if error.code == OPTED_OUT_CODE:
            # The carrier says this number replied STOP: honour it everywhere,
            # and in the rest of this batch at once.
            self.opted_out_numbers.add(message.patient.mobile)
            self.unrecorded_opt_outs.add(message.patient.mobile)
        self.record(
            message,
            status=Status.FAILED,
            error_code=error.code[:16],
            last_error=str(error),
            claim_token="",
            in_doubt=False,
        )

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
        self.result.retrying += 1
        self.record(
            message,
            status=Status.PENDING,
            send_at=next_try,
            error_code=error.code[:16],
            last_error=str(error),
            in_doubt=error.in_doubt,
            claim_token="",
        )


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
