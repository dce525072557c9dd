"""A dispatch pass: claim due messages a batch at a time, check them, send them, record the outcomes.

A pass (``Dispatcher.run``) returns lapsed claims to the queue, then works one
batch after another, each through the same pipeline::

    batch = dispatcher.claim(size)  # the due rows, claimed; a Batch holds them
    batch.prepare()                 # settle rows in doubt, re-read, check, combine, compose
    batch.mark()                    # write what each is about to send, in_doubt
    batch.send()                    # hand each to its transport, paced, re-checked
                                    # (an email is marked on its own, just before)
    batch.record()                  # write the outcomes, conditional on the claim

Everything that lives for one batch (its rows as last re-read, the text
ledger, the links, the marks, the outcomes not yet written) lives on the
``Batch``; the pass keeps only what outlives a batch: the clock, pacing, the
open transports and the counts.

A batch (up to ``DISPATCH_BATCH_SIZE`` messages) costs a fixed handful of
queries whatever its size: the claim and one load; one re-read of its rows with
their visits and patients; one count of the texts that count against the
patients' limits; when some patients' texts of a day go as one, one claim,
load and re-read of the rest of their day's texts; its preparation texts'
links, issued together; one statement
marking the batch as being sent; and its outcomes, written together at the end
of the batch and, while it sends, every ``DISPATCH_FLUSH_SECONDS`` or
``DISPATCH_FLUSH_MESSAGES`` sends, so that statuses show up promptly. Emails
add one statement each (see below).

What makes it safe to run anywhere, any number of times at once:

- Claiming is a conditional update (``status=pending -> claimed`` with a fresh
  claim token), inside a transaction that on PostgreSQL also takes the rows
  with ``SELECT ... FOR UPDATE SKIP LOCKED``: two dispatchers never get the
  same message, and on SQLite the IMMEDIATE transaction plus the condition do
  the same (``MessageQuerySet.claim``; the batch's writes are
  ``MessageQuerySet.update_each`` on ``claimed_by`` its token).
- Before handing any message of a batch to the provider the pass writes, in
  one statement, what each is about to send (text and recipient) and marks it
  ``in_doubt``, again conditional on still holding the claim; only the rows
  that statement reached are sent, so a dispatcher whose claim lapsed and was
  taken over sends nothing. A message marked but then not sent after all (a
  check failed at the last moment, time ran out) has its mark undone. A
  message whose provider cannot be asked what it took (email: SMTP) is marked
  on its own instead, just before it is handed over, in a statement that also
  writes the outcome of the one before (``Batch.marks_alone``).
- A batch never sends on a claim older than half its lease: it is no larger
  than pacing lets it send in that time (nor in what is left of the pass), and
  whatever a slow provider leaves unsent when the time is up goes back to the
  queue, not in doubt. Every flush also re-reads the rows still to be sent: a
  row no longer ours is not sent.
- A claim older than the lease belongs to a dispatcher that died; the next
  pass returns it to the queue. If that dispatcher had marked the message as
  being sent (``in_doubt``; after a death half-way through a batch of texts,
  the rest of the batch), the message is looked up at the provider first
  (Twilio lists what it accepted) and recorded as sent if found, so it is
  never sent twice; a transport that cannot look up (SMTP) fails it visibly
  instead, which is why such messages are marked one at a time: only the one
  in the provider's hands when the dispatcher died is failed, the rest go.
- Every check is made again close to the send. The visit still on (or, for a
  cancellation notice or invite, still cancelled; for the CANCEL to a
  clinician the visit moved away from, still someone else's) and at the same time
  (sequence unchanged), its reminder rule still on, the patient's consent,
  opt-out and number, or for a clinician's calendar invite their wish for
  invites and their address (a clinical alert goes whatever that wish, by
  text to their mobile and by email; none of the patient's limits apply): re-read for the whole batch when it starts and
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
- A patient's texts of a day that go as one (express consent,
  ``COMBINED_PURPOSES``; docs/rules.md) are one text but stay one row each: the
  first that may go leads, and the rest of that day's are claimed with the
  batch's token to join it (``join_the_days_texts``). Each is marked with the
  text (``combined_into``) and in doubt with it, and follows its outcome
  (``follow``): sent, failed or in doubt with it, or back to its own time if
  the text did not go. While the text is in doubt they wait for its lookup
  (``MessageQuerySet.due``), which settles them with it (``settle_combined``),
  and its delivery reports are theirs (``webhooks.record_status``).
"""

import logging
import operator
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import cached_property, reduce
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from notifications import consent, content
from notifications.models import (
    ACCEPTED_STATUSES,
    CANCELLATION_PURPOSES,
    COMBINED_PURPOSES,
    Channel,
    Message,
    MessageQuerySet,
    Purpose,
    Status,
    Timing,
)
from notifications.patient_links import issue_patient_links
from notifications.planning import ACTIVE_STATUSES
from notifications.rules import TextLedger, local_day, quiet_hours_for
from notifications.transports import (
    Accepted,
    Outgoing,
    OutgoingEmail,
    OutgoingSMS,
    PermanentError,
    TransientError,
    Transport,
    TransportError,
    transport_for,
)
from scheduler.models import Patient, VisitStatus

log = logging.getLogger(__name__)

OPTED_OUT_CODE = "21610"
NO_CLINICIAN_ADDRESS = {
    Channel.SMS: "The clinician has no mobile number for urgent texts; the email still goes.",
    Channel.EMAIL: "The clinician has no email address.",
}
# What a batch re-reads of its rows before sending: the query finds only rows
# still ours, and brings their reminder rule's switches, their visit's status
# and sequence, the patient's contact details and consent, and for a row to a
# clinician their address and wish for invites, as stored now.
CURRENT_FIELDS = (
    "rule__is_active",
    "rule__policy__is_active",
    "visit__status",
    "visit__sequence",
    "visit__clinician_id",
    "patient__mobile",
    "patient__email",
    "patient__contact_by_sms",
    "patient__contact_by_email",
    "patient__sms_consent_at",
    "patient__sms_express_consent_at",
    "patient__sms_opted_out_at",
    "clinician__user__email",
    "clinician__mobile",
    "clinician__invite_preference__email_invites",
)


@dataclass
class PassResult:
    sent: int = 0
    combined: int = 0  # went in another message's text (a patient's texts of a day, as one)
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

    def __init__(self):
        self.next_slot: dict[str, float] = {}

    def wait(self, sender: str, rate: float) -> None:
        if rate <= 0:
            return
        now = time.monotonic()
        slot = self.next_slot.get(sender, now)
        if slot > now:
            time.sleep(slot - now)
            now = slot
        self.next_slot[sender] = now + 1 / rate


class Dispatcher:
    """One dispatch pass: its clock, pacing, open transports and counts; batches do the rest.

    ``now`` runs the pass as if at that moment (``dispatch_reminders --now``);
    ``pace=False`` sends as fast as the transports take messages (rehearsals
    and benchmarks against fakes), as ``SMS_SEND_RATE = EMAIL_SEND_RATE = 0`` do.
    """

    def __init__(self, now: datetime | None = None, *, pace: bool = True):
        self.fixed_now = now
        self.rates = (
            {Channel.SMS: settings.SMS_SEND_RATE, Channel.EMAIL: settings.EMAIL_SEND_RATE}
            if pace
            else {}
        )
        self.pacer = Pacer()
        self.result = PassResult()
        self.transports: dict[str, Transport] = {}

    def now(self) -> datetime:
        return self.fixed_now or timezone.now()

    @cached_property
    def status_callback(self) -> str:
        # Our own id rides along (m=): Twilio may call back before our record
        # of its SID is committed, and the callback still finds the message.
        return f"{settings.SITE_URL}{reverse('twilio-status')}?m="

    def transport(self, channel: str) -> Transport:
        if channel not in self.transports:
            self.transports[channel] = transport_for(channel)
            self.transports[channel].open()
        return self.transports[channel]

    def pace(self, channel: str) -> None:
        """Wait until ``channel``'s sender may send again."""
        self.pacer.wait(self.transport(channel).sender, self.rates.get(channel, 0))

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()
        self.transports.clear()

    def run(self) -> PassResult:
        """Return lapsed claims to the queue, then claim and work batches until none is due."""
        now = self.now()
        self.result.recovered += Message.objects.lapsed_claims(now).recover(now)
        deadline = time.monotonic() + settings.DISPATCH_PASS_SECONDS
        try:
            while time.monotonic() < deadline:
                size = self.batch_size(deadline)
                batch = self.claim(size)
                if batch:
                    self.work(batch)
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
        rates = [rate for rate in self.rates.values() if rate > 0]
        if rates:
            seconds = min(deadline - time.monotonic(), settings.MESSAGE_CLAIM_LEASE_SECONDS / 2)
            size = min(size, max(1, int(seconds * min(rates))))
        return size

    def claim(self, size: int) -> "Batch":
        """Claim up to ``size`` due messages, most urgent first, and load them: a batch."""
        claimed = Message.objects.claim(self.now(), size)
        # Measured on this machine's own clock, so that clocks that disagree
        # eat into the margin (the other half of the lease), not the claim.
        hand_over_until = time.monotonic() + settings.MESSAGE_CLAIM_LEASE_SECONDS / 2
        return Batch(self, loaded(claimed), hand_over_until)

    def work(self, batch: "Batch") -> None:
        """Check, send and record the outcome of a claimed batch (see the module docstring)."""
        try:
            batch.prepare()
            batch.mark()
            batch.send()
        finally:
            batch.record()


def loaded(claimed: MessageQuerySet) -> list[Message]:
    """The claimed rows with everything a batch reads of them, in one query."""
    messages = list(
        claimed.select_related(
            "patient__clinic",
            "patient__messaging_preferences",
            "visit__visit_type__clinic",
            "visit__clinician",
            "visit__room",
            "clinician__user",
        )
    )
    for message in messages:
        message.visit.patient = message.patient  # one object, loaded once
    return messages


class Batch:
    """The messages one claim took, and all a pass knows of them until their outcomes are written."""

    def __init__(self, dispatcher: Dispatcher, messages: list[Message], hand_over_until: float):
        self.dispatcher = dispatcher
        self.messages = messages
        self.hand_over_until = hand_over_until  # see the module docstring: half the lease
        self.current: dict[int, dict[str, Any]] = {}  # rows still ours, as last re-read
        self.ledger: TextLedger | None = None  # the text limits, while prepare decides them
        self.links: dict[int, str] = {}  # each preparation text's fresh link
        # A patient's texts of the day that go as one (express consent): by patient
        # id, the message whose text they go in; by its id, the messages they are.
        self.leaders: dict[int, Message] = {}
        self.combined: dict[int, list[Message]] = {}
        self.sending: list[tuple[Message, Outgoing]] = []  # composed; after mark, still ours
        self.marked: set[int] = set()  # marked as being sent
        self.handed_over: set[int] = set()  # given to the provider, which may have them
        self.opted_out_numbers: set[str] = set()  # the carrier answered 21610 for these
        # Outcomes noted and not yet written, and what to write even for a row
        # a status callback moved forward first (the provider's id and time).
        self.outcomes: dict[Message, dict[str, Any]] = {}
        self.accepts: dict[Message, dict[str, Any]] = {}
        self.opt_outs: set[str] = set()  # numbers to record as opted out
        self.last_write = time.monotonic()
        self.sent_since_write = 0

    def __len__(self) -> int:
        return len(self.messages)

    def now(self) -> datetime:
        return self.dispatcher.now()

    @property
    def result(self) -> PassResult:
        return self.dispatcher.result

    # -- the pipeline ----------------------------------------------------------------

    def prepare(self) -> None:
        """Everything before the first provider call: check each message, compose what will go.

        Messages an earlier attempt may have delivered are settled first; the
        rest are checked in priority order, so that the text limits leave
        room as they should. For a patient whose texts of a day go as one, the
        first that may go leads: the others due go in its text, and so do
        those due later that day (``join_the_days_texts``). Preparation texts
        get their links together.
        """
        now = self.now()
        unsettled = self.settle_in_doubt()
        self.current = self.reread(unsettled)
        self.ledger = TextLedger.load(
            [
                m.patient
                for m in unsettled
                if m.channel == Channel.SMS and not (m.is_essential or m.to_clinician)
            ],
            now,
        )
        going = []
        for message in unsettled:
            with self.guard(message):
                if not self.may_send(message, now):
                    continue
                combines = self.combines(message)
                leader = self.leaders.get(message.patient_id) if combines else None
                if leader is not None:
                    self.combined[leader.pk].append(message)  # not a text of its own
                elif self.within_text_limits(message):
                    going.append(message)
                    self.ledger.note(message, status=Status.QUEUED, sent_at=now)
                    if combines:
                        self.leaders[message.patient_id] = message
                        self.combined[message.pk] = []
        self.ledger = None  # the limits are decided
        self.join_the_days_texts(now)
        linked = [m for m in going if self.needs_link(m)]
        self.links = self.issue_links(linked)
        for message in going:
            if self.needs_link(message) and message.pk not in self.links:
                continue  # put back for a retry
            with self.guard(message):
                outgoing = self.compose(message)
                if outgoing is not None:
                    self.sending.append((message, outgoing))

    def mark(self) -> None:
        """Write what each message is about to send and mark it ``in_doubt``; keep those still ours.

        One statement, together with the outcomes decided so far, conditional
        on the claim: only the messages it reached may be sent. Messages whose
        provider cannot be asked what it took are left to ``mark_alone``.
        """
        now = self.now()
        marks = {
            message: self.mark_of(message, outgoing, now)
            for message, outgoing in self.sending
            if not self.marks_alone(message)
        }
        for leader, outgoing in self.sending:
            for message in self.combined.get(leader.pk, ()):
                # In doubt with its text: after a crash, the lookup of that text settles it.
                marks[message] = {
                    "body": outgoing.body,
                    "recipient": outgoing.to,
                    "in_doubt": True,
                    "combined_into": leader.pk,
                }
        if not marks:
            return
        expected = len(marks) + len(self.outcomes)
        written = self.record(marks)
        self.marked.update(message.pk for message in marks)
        if written != expected:
            ours = self.reread([message for message, _ in self.sending])
            self.sending = [(m, outgoing) for m, outgoing in self.sending if m.pk in ours]

    @staticmethod
    def mark_of(message: Message, outgoing: Outgoing, now: datetime) -> dict[str, Any]:
        """What marking ``message`` as being sent writes: what goes, to whom, the attempt."""
        return {
            "body": outgoing.body if isinstance(outgoing, OutgoingSMS) else outgoing.subject,
            "recipient": outgoing.to,
            "in_doubt": True,
            "attempted_at": now,
            "attempts": message.attempts + 1,
        }

    def marks_alone(self, message: Message) -> bool:
        """Whether ``message`` is marked as being sent on its own, just before it goes.

        A provider that can be asked what it took (Twilio) settles messages
        left in doubt by looking each up, so a batch of them is marked at once.
        One that cannot (SMTP) would have a dispatcher that dies half-way leave
        every message of its batch failed as in doubt, most of them never
        handed over; marked one at a time, only the message in the provider's
        hands may be. A statement per message costs little beside an SMTP
        conversation.
        """
        return not self.dispatcher.transport(message.channel).can_look_up

    def mark_alone(self, message: Message, outgoing: Outgoing) -> bool:
        """Mark ``message`` as being sent, with the outcomes noted so far; whether it is still ours.

        One statement, conditional on the claim, as ``mark``; writing the
        outcome of the message sent just before it in the same statement
        leaves that one in doubt no longer.
        """
        expected = 1 + len(self.outcomes)
        written = self.record({message: self.mark_of(message, outgoing, self.now())}, flush=False)
        self.marked.add(message.pk)
        return written == expected or message.pk in self.reread([message])

    def send(self) -> None:
        """Hand each marked message to its transport, checked again just before, paced."""
        for index, (message, outgoing) in enumerate(self.sending):
            if self.flush_due():
                self.record()
                self.current = self.reread([m for m, _ in self.sending[index:]])
            if time.monotonic() > self.hand_over_until:
                for later, _ in self.sending[index:]:
                    if later.pk in self.current:
                        self.release(
                            later, later.send_at, "The batch ran out of time; queued again."
                        )
                return
            with self.guard(message):
                if not self.may_send(message, self.now()):
                    continue
                if outgoing.to != message.current_address:
                    # Composed for a number or address since changed: the
                    # next pass composes it again for the new one.
                    self.release(message, message.send_at, "The recipient's address changed.")
                    continue
                if self.marks_alone(message) and not self.mark_alone(message, outgoing):
                    continue  # our claim lapsed and another dispatcher holds it now
                self.hand_over(message, outgoing)

    def record(
        self, marks: dict[Message, dict[str, Any]] | None = None, *, flush: bool = True
    ) -> int:
        """Write the outcomes noted so far (and ``marks``); how many rows were still ours.

        ``flush=False``: a write on the way (``mark_alone``), which does not
        stand for a flush: the rows are still re-read every flush interval.
        """
        changes = {**self.outcomes, **(marks or {})}
        accepts = self.accepts
        self.outcomes, self.accepts = {}, {}
        if flush:
            self.last_write, self.sent_since_write = time.monotonic(), 0
        written = 0
        by_claim: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        for message, row in changes.items():
            by_claim[message.claim_token][message.pk] = row
        now = self.now()
        for token, rows in by_claim.items():
            written += Message.objects.claimed_by(token).update_each(rows, updated_at=now)
        if written < len(changes) and accepts:
            # A status callback may have moved a message forward first: it
            # keeps its status, and we still record the provider's id and time.
            # One back in the queue stays in doubt, to be looked up.
            moved = Message.objects.filter(pk__in=[m.pk for m in accepts]).exclude(
                status__in=(Status.PENDING, Status.CLAIMED)
            )
            moved.update_each(
                {message.pk: done for message, done in accepts.items()}, updated_at=now
            )
        if self.opt_outs:
            numbers, self.opt_outs = self.opt_outs, set()
            consent.record_opt_out(Patient.objects.filter(mobile__in=numbers), now)
        return written

    # -- reading and checking ----------------------------------------------------------

    def flush_due(self) -> bool:
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

    def settle_in_doubt(self) -> list[Message]:
        """Record as sent the messages an earlier attempt may have delivered and did; the rest.

        Asks the provider for each text exactly as that attempt wrote it down
        (recipient and body), whatever the visit or the templates say now.
        """
        found: dict[Message, list[str]] = {}
        settled = set()
        for message in self.messages:
            if not message.in_doubt:
                continue
            settled.add(message)
            with self.guard(message):
                transport = self.dispatcher.transport(message.channel)
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
            # record as another message (or taken by one just now) is not this
            # one, unless that message went in the same combined text.
            taken: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
            candidates = {sid for sids in found.values() for sid in sids}
            for pk, sid, leader_id in Message.objects.filter(
                provider_id__in=candidates
            ).values_list("pk", "provider_id", "combined_into_id"):
                taken[sid].append((pk, leader_id))
            for message, sids in found.items():
                text = {message.pk, message.combined_into_id} - {None}
                provider_id = next(
                    (
                        sid
                        for sid in sids
                        if all(pk in text or leader_id in text for pk, leader_id in taken[sid])
                    ),
                    None,
                )
                if provider_id:
                    taken[provider_id].append((message.pk, message.combined_into_id))
                    settled.add(message)
                    self.accepted(
                        message, Accepted(provider_id, Status.QUEUED), when=message.attempted_at
                    )
            self.settle_combined(found)
        return [message for message in self.messages if message not in settled]

    def settle_combined(self, looked_up: dict[Message, list[str]]) -> None:
        """The messages that went in a text left in doubt follow its lookup.

        Held back while that text was in doubt (``MessageQuerySet.due``), they
        are recorded as sent with it if the provider has it, or else free to
        go again, each at its own time. Not claimed, but nobody else takes
        them: their text is claimed by this batch.
        """
        combined = Message.objects.filter(
            combined_into__in=[m.pk for m in looked_up], status=Status.PENDING
        )
        accepted = {message.pk: done for message, done in self.accepts.items()}
        went, back = {}, []
        for pk, leader_id in combined.values_list("pk", "combined_into_id"):
            done = accepted.get(leader_id)
            if done:
                went[pk] = {"status": Status.QUEUED, "error_code": "", "last_error": "", **done}
            else:
                back.append(pk)
        now = self.now()
        if went:
            combined.update_each(went, updated_at=now)
            self.result.combined += len(went)
        if back:
            combined.filter(pk__in=back).update(
                combined_into=None, in_doubt=False, body="", updated_at=now
            )

    def may_send(self, message: Message, now: datetime) -> bool:
        """Whether ``message`` may go at ``now``, as its row was last re-read; if not, notes why."""
        current = self.current.get(message.pk)
        if current is None:
            return False  # our claim lapsed and another dispatcher holds the message now
        composer = content.composers.get(message.purpose)
        if composer is not None:
            # Not about the visit it hangs on: its own app says whether it may still go.
            if reason := composer.refusal(message):
                self.finish(message, Status.CANCELLED, reason)
                return False
        elif message.purpose in CANCELLATION_PURPOSES:
            if current["visit__status"] != VisitStatus.CANCELLED:
                # A visit still on: only a clinician it moved away from still
                # hears a CANCEL, while it is someone else's.
                if not message.to_clinician:
                    self.finish(message, Status.CANCELLED, "The visit is on again.")
                    return False
                if current["visit__clinician_id"] == message.clinician_id:
                    self.finish(message, Status.CANCELLED, "The visit is on, with this clinician.")
                    return False
        elif current["visit__status"] not in ACTIVE_STATUSES:
            self.finish(message, Status.CANCELLED, "The visit is no longer on.")
            return False
        if composer is None and current["visit__sequence"] != message.visit_sequence:
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
        if message.to_clinician:
            # Staff: the patient's consent, text limits and quiet hours are not theirs.
            message.clinician.user.email = current["clinician__user__email"]
            message.clinician.mobile = current["clinician__mobile"]
            if message.is_clinical_alert:
                # Goes whatever their wish for invites: a patient may be at risk.
                if not message.current_address:
                    self.finish(message, Status.SUPPRESSED, NO_CLINICIAN_ADDRESS[message.channel])
                    return False
                return True
            if not (
                current["clinician__invite_preference__email_invites"] and message.current_address
            ):
                self.finish(
                    message,
                    Status.SUPPRESSED,
                    "The clinician turned calendar invites off or has no email address.",
                )
                return False
            return True
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

    @staticmethod
    def combines(message: Message) -> bool:
        """Whether ``message`` goes in one text with the patient's others of its day.

        Texts that can wait, to a patient with express consent (as re-read):
        without it, the text limits decide instead. Time-critical texts (video
        link, changes) always go on their own, when due.
        """
        return (
            message.channel == Channel.SMS
            and message.purpose in COMBINED_PURPOSES
            and not message.to_clinician
            and message.patient.has_express_sms_consent
        )

    def join_the_days_texts(self, now: datetime) -> None:
        """Claim the rest of each leading text's patient's texts of the day, to go in it.

        The rest of the day: due before the patient's local midnight, so
        within the day's allowed hours, which quiet hours bound. A text may
        come a few hours early if it is about a visit still to come; one
        timed after a visit (aftercare) joins only once due. They are claimed
        with this batch's token and checked like the batch's own.
        """
        if not self.leaders:
            return
        zones: dict[str, list[int]] = defaultdict(list)
        for leader in self.leaders.values():
            zones[leader.patient.time_zone].append(leader.patient_id)
        today = reduce(
            operator.or_,
            (Q(patient_id__in=ids, send_at__lt=local_day(now, tz)[1]) for tz, ids in zones.items()),
        )
        later = (
            Message.objects.sms()
            .filter(today, purpose__in=COMBINED_PURPOSES, clinician=None, combined_into=None)
            .filter(Q(rule__timing=Timing.BEFORE_START) | Q(send_at__lte=now))
        )
        token = next(iter(self.leaders.values())).claim_token
        joining = loaded(later.take(now, token=token))
        self.current.update(self.reread(joining))
        for message in sorted(joining, key=lambda m: (m.send_at, m.pk)):
            with self.guard(message):
                if self.may_send(message, now):
                    self.combined[self.leaders[message.patient_id].pk].append(message)

    def within_text_limits(self, message: Message) -> bool:
        if message.channel != Channel.SMS or message.is_essential or message.to_clinician:
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

    # -- composing and sending -----------------------------------------------------------

    def needs_link(self, message: Message) -> bool:
        """A preparation text, or a text with one combined into it, carries a fresh link; so
        does a text or email whose composer says it carries one (questions before a visit)."""
        composer = content.composers.get(message.purpose)
        if composer is not None and composer.carries_link:
            return True
        texts = [message, *self.combined.get(message.pk, ())]
        return message.channel == Channel.SMS and any(
            m.purpose == Purpose.PREPARATION for m in texts
        )

    def issue_links(self, messages: list[Message]) -> dict[int, str]:
        """A fresh private link for each patient of ``messages``, issued together; by message id.

        One link a patient: issuing revokes the patient's previous link, so a
        text and an email of the same batch carry the same one, which works.
        If issuing fails (a link issued at the front desk at the same moment
        may collide), those messages are retried later and the batch goes on.
        """
        if not messages:
            return {}
        patients = list({m.patient_id: m.patient for m in messages}.values())
        try:
            urls = issue_patient_links(patients)
        except Exception as error:
            log.exception("Issuing links for %s messages failed", len(messages))
            for message in messages:
                self.raised(message, error)
            return {}
        by_patient = {patient.pk: url for patient, url in zip(patients, urls, strict=True)}
        return {message.pk: by_patient[message.patient_id] for message in messages}

    def compose(self, message: Message) -> Outgoing | None:
        if message.channel == Channel.EMAIL:
            email = content.email_content(message, link=self.links.get(message.pk, ""))
            return OutgoingEmail(
                message.current_address,
                email.subject,
                email.text,
                email.html,
                alternatives=email.alternatives,
                attachments=email.attachments,
                headers=email.headers,
            )
        body = self.sms_body(message, self.links.get(message.pk, ""))
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
        callback = f"{self.dispatcher.status_callback}{message.pk}"
        return OutgoingSMS(message.current_address, body, callback)

    def sms_body(self, message: Message, link: str) -> str:
        """The text of ``message``, and of the messages combined into it, as many as fit.

        A combined text keeps to ``content.COMBINED_MAX_SEGMENTS``; the
        messages planned latest are left out first, back in the queue for
        their own time.
        """
        combined = self.combined.get(message.pk, [])
        combined.sort(key=lambda m: (m.send_at, m.pk))
        while combined:
            body = content.combined_sms_body([message, *combined], link=link)
            if content.segments(body) <= content.COMBINED_MAX_SEGMENTS:
                return body
            left_out = combined.pop()
            self.release(left_out, left_out.send_at, "Left out of a combined text: too long.")
        return content.sms_body(message, link=link)

    def hand_over(self, message: Message, outgoing: Outgoing) -> None:
        transport = self.dispatcher.transport(message.channel)
        self.dispatcher.pace(message.channel)
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
        transport = self.dispatcher.transports.get(message.channel)
        self.retry_or_fail(
            message,
            TransientError(
                f"Internal error: {error!r}",
                code="error",
                in_doubt=message.in_doubt or message.pk in self.handed_over,
            ),
            can_look_up=bool(transport and transport.can_look_up),
        )

    # -- outcomes, noted here and written by record() ------------------------------------

    def note(self, message: Message, **changes) -> None:
        """Note an outcome, to be written with the batch's next ``record``."""
        if message.pk in self.marked and message.pk not in self.handed_over:
            # Marked as being sent but never handed over: undo the mark, so the
            # attempt does not count and nobody looks the message up for nothing.
            changes = {
                "attempts": message.attempts,
                "attempted_at": message.attempted_at,
                "in_doubt": False,
                **changes,
            }
        self.outcomes.setdefault(message, {}).update(changes)
        if self.ledger is not None:
            self.ledger.note(message, **changes)
        for combined in self.combined.get(message.pk, ()):
            self.note(combined, **self.follow(message, combined, changes))

    @staticmethod
    def follow(leader: Message, message: Message, changes: dict[str, Any]) -> dict[str, Any]:
        """What becomes of ``message``, combined into ``leader``'s text, when ``changes`` do of it.

        If the text went, failed, or may have gone, so did the message, as part
        of it: the same outcome, and which text it was. If it did not go (not
        sent after all, held back, to be retried), the message waits for its
        own time again, no sooner than the leader, to be combined anew.
        """
        if (
            changes["status"] in (*ACCEPTED_STATUSES, Status.FAILED)
            or changes.get("in_doubt") is True
        ):
            own = ("attempts", "attempted_at", "send_at")
            went = {name: value for name, value in changes.items() if name not in own}
            return {**went, "combined_into": leader.pk}
        return {
            "status": Status.PENDING,
            "send_at": max(message.send_at, changes.get("send_at", message.send_at)),
            "combined_into": None,
            "body": "",
            "in_doubt": False,
            "claim_token": "",
        }

    def accepted(self, message: Message, accepted: Accepted, when: datetime | None = None) -> None:
        done = {
            "provider_id": accepted.provider_id,
            "sent_at": when or self.now(),
            "in_doubt": False,
        }
        self.handed_over.add(message.pk)
        self.accepts[message] = done
        self.result.sent += 1
        for combined in self.combined.get(message.pk, ()):
            self.accepts[combined] = {**done, "combined_into": message.pk}
            self.result.combined += 1
        self.note(
            message, status=accepted.status, claim_token="", error_code="", last_error="", **done
        )

    def finish(self, message: Message, status: str, reason: str) -> None:
        counter = {
            Status.CANCELLED: "cancelled",
            Status.SKIPPED: "skipped",
            Status.SUPPRESSED: "suppressed",
        }[status]
        setattr(self.result, counter, getattr(self.result, counter) + 1)
        self.note(message, status=status, reason=reason[:300], claim_token="", in_doubt=False)

    def release(self, message: Message, send_at: datetime, reason: str) -> None:
        self.result.deferred += 1
        self.note(message, status=Status.PENDING, send_at=send_at, reason=reason, claim_token="")

    def fail(self, message: Message, error: TransportError) -> None:
        self.result.failed += 1
        if error.code == OPTED_OUT_CODE and not message.to_clinician:
            # The carrier says this number replied STOP: honour it everywhere,
            # and in the rest of this batch at once. (A clinician's number is
            # not a patient's consent to lose.)
            self.opted_out_numbers.add(message.patient.mobile)
            self.opt_outs.add(message.patient.mobile)
        self.note(
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
        next_try = now + timedelta(seconds=backoff)
        if not message.to_clinician:
            next_try = quiet_hours_for(message.patient).next_allowed(next_try)
        if next_try >= message.expires_at:
            return self.fail(
                message, TransientError(f"No time left to try again: {error}", code=error.code)
            )
        self.result.retrying += 1
        self.note(
            message,
            status=Status.PENDING,
            send_at=next_try,
            error_code=error.code[:16],
            last_error=str(error),
            in_doubt=error.in_doubt,
            claim_token="",
        )


def dispatch(now: datetime | None = None, *, pace: bool = True) -> PassResult:
    """One dispatch pass (what the schedule runs every minute)."""
    return Dispatcher(now, pace=pace).run()


def next_due(after: datetime) -> datetime | None:
    """When the next pending message is due after ``after`` (for rehearsals)."""
    return (
        Message.objects.pending()
        .filter(send_at__gt=after)
        .order_by("send_at")
        .values_list("send_at", flat=True)
        .first()
    )
