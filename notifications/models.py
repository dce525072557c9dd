"""Reminder policies, the message outbox, per-patient messaging preferences and the inbox.

Every message is a ``Message`` row before anything is sent (healthchecks.io's
pattern): booking a visit writes the rows in the booking's own transaction, a
dispatch pass claims the due ones with a conditional update and records every
outcome on the row. A row is unique per (visit, rule, channel, visit sequence),
so a reminder cannot be planned twice for the same time of the same visit; a
change notice or calendar invite is unique per (visit, purpose, channel, visit
sequence) and recipient: the patient, or the clinician the row names.
"""

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, models, transaction
from django.db.models import Exists, Expression, OuterRef, Q
from django.db.models.functions import Cast
from django.utils import timezone

from scheduler.models import Clinic, Clinician, Patient, Visit, VisitType


class Purpose(models.TextChoices):
    REMINDER = "reminder", "Reminder"
    PREPARATION = "preparation", "Preparation instructions"
    AFTERCARE = "aftercare", "Aftercare"
    VIDEO_LINK = "video_link", "Video link"
    MOVED = "moved", "Visit moved"
    CANCELLED = "cancelled", "Visit cancelled"
    # Calendar invites by email (iMIP): a booking, a move, a cancellation, each
    # for the patient and for the clinician who asked for them.
    INVITE = "invite", "Calendar invite"
    INVITE_UPDATE = "invite_update", "Calendar update"
    INVITE_CANCEL = "invite_cancel", "Calendar cancellation"
    # A freed time offered to a waitlisted patient: hangs on the freed visit (someone
    # else's), so its app composes it and says whether it may still go (``content.composers``).
    WAITLIST_OFFER = "waitlist_offer", "Waitlist offer"
    # A questionnaire asked before a visit (a link only), and one reminder of it.
    QUESTIONNAIRE = "questionnaire", "Questions before a visit"
    QUESTIONNAIRE_REMINDER = "questionnaire_reminder", "Questions before a visit: reminder"
    # To clinicians: a patient's answers need review today, and, when nobody
    # acknowledged that in time, to the clinic's clinical lead.
    SAFETY_ALERT = "safety_alert", "Answers need review"
    SAFETY_ESCALATION = "safety_escalation", "Answers need review: escalated"
    # An instalment of a care plan's payment schedule falls due (billing): by email only.
    INSTALMENT_DUE = "instalment_due", "Payment due"


RULE_PURPOSES = (Purpose.REMINDER, Purpose.PREPARATION, Purpose.AFTERCARE, Purpose.VIDEO_LINK)
INVITE_PURPOSES = (Purpose.INVITE, Purpose.INVITE_UPDATE, Purpose.INVITE_CANCEL)
# Not about the visit they hang on, nor to its patient: their app composes them.
COMPOSED_PURPOSES = (
    Purpose.WAITLIST_OFFER,
    Purpose.QUESTIONNAIRE,
    Purpose.QUESTIONNAIRE_REMINDER,
    Purpose.SAFETY_ALERT,
    Purpose.SAFETY_ESCALATION,
    Purpose.INSTALMENT_DUE,
)
# To clinicians, by text and email, whether or not they take calendar invites:
# a patient's answers that need review today. Once per alert (the questionnaires
# app plans them with the alert and escalates by a conditional update), not once
# per visit change: a visit may see a second alert after the first was dealt with.
CLINICAL_ALERT_PURPOSES = (Purpose.SAFETY_ALERT, Purpose.SAFETY_ESCALATION)
# Go only while the visit is cancelled; every other message only while it is on.
CANCELLATION_PURPOSES = (Purpose.CANCELLED, Purpose.INVITE_CANCEL)
# Texts that lose their point if they wait or are dropped: the video link just
# before a video visit, a visit moved or cancelled.
TIME_CRITICAL_PURPOSES = (Purpose.VIDEO_LINK, Purpose.MOVED, Purpose.CANCELLED)
# These and preparation instructions go even when the patient's text limit is
# reached, and plain reminders leave room for those still to come: a missed
# video link, fasting instruction or move costs more than a reminder.
ESSENTIAL_PURPOSES = (*TIME_CRITICAL_PURPOSES, Purpose.PREPARATION)
# Texts that can wait a few hours or come a few hours early: for a patient with
# express consent, those of one local day go as one text (docs/rules.md).
COMBINED_PURPOSES = (Purpose.REMINDER, Purpose.PREPARATION, Purpose.AFTERCARE)
PRIORITY = {
    Purpose.SAFETY_ALERT: 120,
    Purpose.SAFETY_ESCALATION: 120,
    Purpose.WAITLIST_OFFER: 100,
    Purpose.MOVED: 100,
    Purpose.CANCELLED: 100,
    Purpose.INVITE: 90,
    Purpose.INVITE_UPDATE: 90,
    Purpose.INVITE_CANCEL: 90,
    Purpose.PREPARATION: 80,
    Purpose.VIDEO_LINK: 60,
    Purpose.AFTERCARE: 50,
    Purpose.REMINDER: 40,
    Purpose.QUESTIONNAIRE: 40,
    Purpose.QUESTIONNAIRE_REMINDER: 30,
    Purpose.INSTALMENT_DUE: 20,
}


class Channel(models.TextChoices):
    SMS = "sms", "Text message"
    EMAIL = "email", "Email"


class Timing(models.TextChoices):
    BEFORE_START = "before_start", "before the visit starts"
    AFTER_END = "after_end", "after the visit ends"


class ReminderPolicy(models.Model):
    """Which messages a visit type's visits get; the rules say what, when and how."""

    visit_type = models.OneToOneField(
        VisitType, on_delete=models.CASCADE, related_name="reminder_policy"
    )
    is_active = models.BooleanField(default=True)
    notes = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "reminder policies"
        ordering = ["visit_type__clinic", "visit_type__kind", "visit_type__name"]

    def __str__(self):
        return f"Reminders for {self.visit_type}"


class ReminderRule(models.Model):
    policy = models.ForeignKey(ReminderPolicy, on_delete=models.CASCADE, related_name="rules")
    purpose = models.CharField(max_length=20, choices=[(p.value, p.label) for p in RULE_PURPOSES])
    offset = models.DurationField(
        help_text="How long before the start or after the end, e.g. 72:00:00 for 72 hours, "
        "0 for right after."
    )
    timing = models.CharField(max_length=20, choices=Timing.choices, default=Timing.BEFORE_START)
    by_sms = models.BooleanField("by text", default=True)
    by_email = models.BooleanField("by email", default=True)
    is_active = models.BooleanField(
        default=True, help_text="Turn a rule off rather than delete it: sent messages refer to it."
    )

    class Meta:
        ordering = ["policy", "timing", "-offset"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "purpose", "timing", "offset"], name="reminder_rule_unique"
            )
        ]

    def __str__(self):
        hours = self.offset / timedelta(hours=1)
        amount = f"{hours:g} h" if hours else "right"
        return f"{self.get_purpose_display()} {amount} {self.get_timing_display()}"

    @property
    def channels(self) -> list[str]:
        return [
            channel
            for channel, wanted in ((Channel.SMS, self.by_sms), (Channel.EMAIL, self.by_email))
            if wanted
        ]

    def nominal_time(self, visit: Visit):
        """When the rule says to send, before quiet hours and short notice are considered."""
        if self.timing == Timing.AFTER_END:
            return visit.end + self.offset
        return visit.start - self.offset

    def clean(self):
        if not (self.by_sms or self.by_email):
            raise ValidationError("Choose at least one channel (text or email).")
        if self.offset is not None and self.offset < timedelta(0):
            raise ValidationError({"offset": "Give the offset as a positive duration."})
        if self.purpose == Purpose.AFTERCARE and self.timing != Timing.AFTER_END:
            raise ValidationError({"timing": "Aftercare goes after the visit ends."})


class Status(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    CLAIMED = "claimed", "Being sent"
    QUEUED = "queued", "Accepted by the provider"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    UNDELIVERED = "undelivered", "Not delivered"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped"
    SUPPRESSED = "suppressed", "Suppressed"


# Twilio's statuses only move forward (docs/rules.md): a late "sent" callback must
# not undo "delivered". Terminal statuses share the top rank.
STATUS_RANK = {
    Status.PENDING: 0,
    Status.CLAIMED: 1,
    Status.QUEUED: 2,
    Status.SENDING: 3,
    Status.SENT: 4,
    Status.DELIVERED: 5,
    Status.UNDELIVERED: 5,
    Status.FAILED: 5,
}
# Still to go (claimed: a dispatcher is on it).
WAITING_STATUSES = (Status.PENDING, Status.CLAIMED)
# Accepted by the provider: these count against a patient's text limits.
ACCEPTED_STATUSES = (
    Status.QUEUED,
    Status.SENDING,
    Status.SENT,
    Status.DELIVERED,
    Status.UNDELIVERED,
)
NEEDS_ATTENTION_STATUSES = (Status.FAILED, Status.UNDELIVERED)


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
        pk_column = connection.ops.quote_name(field.model._meta.pk.column)
        column = connection.ops.quote_name(field.column)
        return f"CASE {pk_column}{' WHEN %s THEN %s' * len(self.values)} ELSE {column} END", params


# Rows an UPDATE gives values of their own: SQLite takes at most 32766
# parameters a statement, and a row can bring a dozen.
UPDATE_EACH_ROWS = 1000
# Most urgent first: changes, then preparation (PRIORITY), then the longest due.
DISPATCH_ORDER = ("-priority", "send_at", "pk")


def about_clinic(clinic: Clinic) -> Q:
    """A message or text about a visit at ``clinic``, or about no visit from or to its patient."""
    return Q(visit__visit_type__clinic=clinic) | Q(visit__isnull=True, patient__clinic=clinic)


class MessageQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status=Status.PENDING)

    def due(self, now):
        """Pending and due, unless it went in a text still in doubt (wait for that one's lookup)."""
        waiting_text = Message.objects.filter(
            pk=OuterRef("combined_into"), status__in=WAITING_STATUSES
        )
        # Asked only of the few combined messages. PostgreSQL takes pending and
        # past-due as independent, so at 3,000,000 messages it expects half a
        # million due where a few thousand are; written as a plain NOT EXISTS it
        # then hashed every pending message (0.9 s a claim), where this form
        # looks each combined message's text up by its key (2.5 ms).
        return self.filter(status=Status.PENDING, send_at__lte=now).filter(
            Q(combined_into__isnull=True) | ~Exists(waiting_text)
        )

    def lapsed_claims(self, now):
        lease = timedelta(seconds=settings.MESSAGE_CLAIM_LEASE_SECONDS)
        return self.filter(status=Status.CLAIMED, claimed_at__lt=now - lease)

    def claimed_by(self, token: str):
        return self.filter(status=Status.CLAIMED, claim_token=token)

    def sms(self):
        return self.filter(channel=Channel.SMS)

    def needs_attention(self):
        return self.filter(status__in=NEEDS_ATTENTION_STATUSES)

    def about_clinic(self, clinic: Clinic):
        """Messages the clinic's desk handles: about its visits, or about no visit and
        to one of its own patients (``Visit.clinic``: where a visit is held)."""
        return self.filter(about_clinic(clinic))

    def for_visit(self, visit: Visit):
        """The visit's own messages (not offers of its freed time to other patients)."""
        return self.filter(visit=visit).exclude(purpose__in=COMPOSED_PURPOSES)

    def in_dispatch_order(self):
        return self.order_by(*DISPATCH_ORDER)

    def claim(self, now: datetime, size: int) -> "MessageQuerySet":
        """Claim up to ``size`` of these messages that are due, most urgent first; the claimed rows."""
        return self.due(now).take(now, size)

    def take(self, now: datetime, size: int | None = None, token: str = "") -> "MessageQuerySet":
        """Claim up to ``size`` of these pending messages, most urgent first; the claimed rows.

        A conditional update (``pending -> claimed`` with a fresh claim token,
        or ``token``) inside a transaction that on PostgreSQL first takes the
        rows with ``SELECT ... FOR UPDATE SKIP LOCKED``: two dispatchers never
        claim the same message, and on SQLite the IMMEDIATE transaction plus
        the condition do the same. The rows come back as a query, not yet run.
        """
        token = token or uuid.uuid4().hex
        with transaction.atomic(using=self.db):
            pending = self.pending().in_dispatch_order()
            if connections[self.db].features.has_select_for_update_skip_locked:
                # Only the messages: a join (a rule, say) must not lock its rows.
                pending = pending.select_for_update(skip_locked=True, of=("self",))
            ids = list(pending.values_list("pk", flat=True)[:size])
            if ids:
                self.model.objects.using(self.db).filter(pk__in=ids, status=Status.PENDING).update(
                    status=Status.CLAIMED, claimed_at=now, claim_token=token, updated_at=now
                )
        claimed = self.model.objects.using(self.db).filter(pk__in=ids, claim_token=token)
        return claimed.in_dispatch_order()

    def recover(self, now: datetime) -> int:
        """Return these claimed messages to the queue (``lapsed_claims``: their dispatcher died).

        One conditional statement: a claim taken back by another pass at the
        same moment is taken back once. A message its dispatcher had marked as
        being sent stays ``in_doubt``, to be looked up before it goes again.
        """
        return self.filter(status=Status.CLAIMED).update(
            status=Status.PENDING,
            claim_token="",
            last_error="Recovered: the dispatcher holding it stopped.",
            updated_at=now,
        )

    def update_each(self, changes: dict[int, dict[str, Any]], **every_row) -> int:
        """Give each message in ``changes`` (by id) its own new values, in one UPDATE of these rows.

        A field every row sets alike is a plain assignment; any other takes each
        row's own value and keeps the stored one for rows that do not set it.
        ``every_row`` is set on all of them. Returns how many rows matched
        (this queryset carries the condition, e.g. ``claimed_by``). Past
        ``UPDATE_EACH_ROWS`` rows, one UPDATE per that many.
        """
        if len(changes) > UPDATE_EACH_ROWS:
            pks = list(changes)
            return sum(
                self.update_each(
                    {pk: changes[pk] for pk in pks[start : start + UPDATE_EACH_ROWS]}, **every_row
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
            field = self.model._meta.get_field(name)
            assignments[name] = EachRow(field, values)
            if connections[self.db].features.requires_casted_case_in_updates:
                # PostgreSQL types the parameters of a CASE from its context.
                assignments[name] = Cast(assignments[name], output_field=field)
        return self.filter(pk__in=list(changes)).update(**assignments, **every_row)

    def retry_now(self, now=None) -> int:
        """Send these failed messages again in the next pass; how many will go.

        Only failures the provider never took (no provider id, not in doubt)
        and that are not yet pointless: retrying one the provider accepted, or
        might have, could text the patient twice.
        """
        now = now or timezone.now()
        # One that failed in a text with others goes again as its own (or in a new one).
        return self.filter(
            status=Status.FAILED, provider_id="", in_doubt=False, expires_at__gt=now
        ).update(status=Status.PENDING, send_at=now, attempts=0, combined_into=None, updated_at=now)


class Message(models.Model):
    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="messages")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="messages")
    clinician = models.ForeignKey(
        Clinician,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="messages",
        help_text="Set when the message goes to this clinician (a calendar invite, a clinical "
        "alert), not the patient.",
    )
    rule = models.ForeignKey(
        ReminderRule, null=True, blank=True, on_delete=models.PROTECT, related_name="messages"
    )
    purpose = models.CharField(max_length=30, choices=Purpose.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    visit_sequence = models.PositiveIntegerField(
        help_text="The visit's SEQUENCE when planned: a moved visit's old messages are stale."
    )
    recipient = models.CharField(max_length=254, blank=True)
    send_at = models.DateTimeField(help_text="Quiet hours already taken into account.")
    expires_at = models.DateTimeField(help_text="Not sent after this: it would be pointless.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    priority = models.PositiveSmallIntegerField(
        default=0, help_text="Higher goes first in a dispatch pass (changes, then preparation)."
    )
    reason = models.CharField(
        max_length=300, blank=True, help_text="Why it was skipped, suppressed or cancelled."
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last attempt handed it to the provider."
    )
    claim_token = models.CharField(max_length=32, blank=True)
    in_doubt = models.BooleanField(
        default=False,
        help_text="A send was started without a definite answer: look it up before sending again.",
    )
    provider_id = models.CharField(max_length=64, blank=True)
    body = models.TextField(blank=True, help_text="The text as sent (for email: the subject).")
    combined_into = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="combined",
        help_text="Went in this message's text, one text for the patient's messages of a day; "
        "its delivery reports are this one's too.",
    )
    error_code = models.CharField(max_length=16, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["send_at", "pk"]
        constraints = [
            # docs/architecture.md, invariant 5: at most once per (visit, rule, visit sequence).
            models.UniqueConstraint(
                fields=["visit", "rule", "channel", "visit_sequence"],
                condition=Q(rule__isnull=False),
                name="message_once_per_rule_and_sequence",
            ),
            # Per patient: a visit's freed time may be offered to several.
            models.UniqueConstraint(
                fields=["visit", "purpose", "channel", "visit_sequence", "patient"],
                condition=Q(rule__isnull=True, clinician__isnull=True),
                name="notice_once_per_change_and_patient",
            ),
            models.UniqueConstraint(
                fields=["visit", "purpose", "channel", "visit_sequence", "clinician"],
                condition=Q(rule__isnull=True, clinician__isnull=False)
                & ~Q(purpose__in=CLINICAL_ALERT_PURPOSES),
                name="clinician_notice_once_per_change",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "send_at"]),
            models.Index(fields=["patient", "channel", "sent_at"]),
            models.Index(fields=["provider_id"]),
        ]

    def __str__(self):
        to = self.clinician if self.clinician_id else self.patient
        return f"{self.get_purpose_display()} by {self.get_channel_display().lower()} to {to}"

    def save(self, *args, **kwargs):
        self.priority = PRIORITY[self.purpose]
        super().save(*args, **kwargs)

    @property
    def to_clinician(self) -> bool:
        """Sent to a clinician: the patient's consent, limits and hours do not apply."""
        return self.clinician_id is not None

    @property
    def is_clinical_alert(self) -> bool:
        return self.purpose in CLINICAL_ALERT_PURPOSES

    @property
    def current_address(self) -> str:
        """Where the message goes now: the clinician's mobile (a clinical alert's text) or
        email, or the patient's mobile or email, by channel. ``recipient`` keeps the
        address it was planned for; a change in between makes the message stale rather
        than send it somewhere new."""
        if self.to_clinician:
            if self.channel == Channel.SMS:
                return self.clinician.mobile
            return self.clinician.user.email
        return self.patient.mobile if self.channel == Channel.SMS else self.patient.email

    @property
    def is_essential(self) -> bool:
        return self.purpose in ESSENTIAL_PURPOSES

    @property
    def needs_attention(self) -> bool:
        return self.status in NEEDS_ATTENTION_STATUSES


class MessagingPreferences(models.Model):
    """What a patient asked for: fewer texts than the clinic allows, other quiet hours.

    More texts than the clinic's limits (settings.SMS_*_CAP) need no number
    here but the patient's express consent (``Patient.sms_express_consent_at``),
    with which those limits do not bind at all.
    """

    patient = models.OneToOneField(
        Patient, on_delete=models.CASCADE, related_name="messaging_preferences"
    )
    sms_per_day = models.PositiveSmallIntegerField(
        "texts per day",
        null=True,
        blank=True,
        help_text="At most, at the patient's request. Empty: the clinic's limit, or none with "
        "express consent.",
    )
    sms_per_week = models.PositiveSmallIntegerField(
        "texts per week",
        null=True,
        blank=True,
        help_text="In any 7 days, as above.",
    )
    quiet_hours_start = models.TimeField(null=True, blank=True)
    quiet_hours_end = models.TimeField(null=True, blank=True)

    class Meta:
        verbose_name = "messaging preferences"
        verbose_name_plural = "messaging preferences"

    def __str__(self):
        return f"Messaging preferences of {self.patient}"

    def clean(self):
        above_default = (self.sms_per_day or 0) > settings.SMS_DAILY_CAP or (
            self.sms_per_week or 0
        ) > settings.SMS_WEEKLY_CAP
        if above_default and self.patient_id and not self.patient.has_express_sms_consent:
            raise ValidationError(
                "More texts than the clinic's limits need the patient's express consent: "
                "record it on the patient (then the limits do not apply)."
            )
        if (self.quiet_hours_start is None) != (self.quiet_hours_end is None):
            raise ValidationError("Give both ends of the quiet hours, or neither.")


class InboundKind(models.TextChoices):
    OPT_OUT = "opt_out", "Opted out (STOP)"
    OPT_IN = "opt_in", "Opted in again (START)"
    HELP = "help", "Asked for help"
    CONFIRM = "confirm", "Confirmed (C)"
    RESCHEDULE = "reschedule", "Asked to reschedule (R)"
    TAKE = "take", "Took a waitlist offer (TAKE)"
    OTHER = "other", "Other text"


class InboundMessageQuerySet(models.QuerySet):
    def inbox(self):
        """What the front desk still has to read or act on."""
        return self.filter(needs_attention=True, handled_at__isnull=True)

    def about_clinic(self, clinic: Clinic):
        """Texts the clinic's desk handles: about its visits, from its own patients about
        no visit, and from numbers no patient has (any desk may call them back)."""
        return self.filter(about_clinic(clinic) | Q(patient__isnull=True))


class InboundMessage(models.Model):
    provider_id = models.CharField(max_length=64, unique=True)
    from_number = models.CharField(max_length=32)
    to_number = models.CharField(max_length=32, blank=True)
    patient = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_messages"
    )
    body = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=InboundKind.choices)
    visit = models.ForeignKey(
        Visit, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_messages"
    )
    outcome = models.CharField(max_length=300, blank=True)
    reply = models.TextField(
        blank=True, help_text="What we answered (a retried webhook gets the same)."
    )
    needs_attention = models.BooleanField(default=False)
    received_at = models.DateTimeField(default=timezone.now)
    handled_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = InboundMessageQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["needs_attention", "handled_at"])]

    def __str__(self):
        return f"{self.get_kind_display()} from {self.patient or self.from_number}"
