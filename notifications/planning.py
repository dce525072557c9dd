"""Plan a visit's messages in the outbox whenever the visit is booked, moved or cancelled.

Runs inside the booking transaction (``scheduler.booking.visit_saved``), so the
outbox always matches the visits: a booking rolled back plans nothing, a move
commits together with its new reminders and the cancellation of the old ones.

Decisions made here, at planning time:

- Quiet hours: a message whose time falls in the patient's quiet hours is
  planned for the evening before (a margin before they begin); aftercare, which
  must follow the visit, waits for the morning instead.
- Short notice: when rules' times have already passed at booking (a visit
  booked 20 h ahead misses its 72 h and 24 h reminders), only the latest missed
  message of each purpose goes, at once; the earlier ones are skipped as
  superseded. A caught-up plain reminder is skipped too when another message
  for the visit, as important or more, goes within REMINDER_MERGE_HOURS anyway
  (booked 3 h ahead: the 2 h reminder is enough). So a late booking gets one
  reminder now, never three at once.
- Moves and cancellations: pending messages of the old time are cancelled, a
  "your visit moved / was cancelled" notice goes at once, and missed reminders
  of the new time are skipped, the notice says it all.
- Calendar invites: a booking, a move and a cancellation each plan one email
  invite per recipient (an iTIP REQUEST, a REQUEST with the raised SEQUENCE, a
  CANCEL): to the patient if they take email, at once or when their quiet
  hours end; to everyone on the visit's team who asked for invites
  (``InvitePreference``), at once. A visit that changes again before they go
  cancels them like any stale row, so only the latest goes.
- A visit handed to another clinician: the clinician it left gets a CANCEL
  (``_former_clinicians``), so the entry leaves their calendar while the new
  clinician gets the REQUEST. Only a clinician an invite of the visit may have
  reached (not one whose invite was cancelled before it went) and whose last
  word on it was not already a CANCEL; worked out from the outbox rather than
  from the move, so a second move before the pass, which cancels the first
  CANCEL as stale, plans it again at the new sequence.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from notifications.models import (
    INVITE_PURPOSES,
    PRIORITY,
    Channel,
    Message,
    Purpose,
    ReminderRule,
    Status,
    Timing,
)
from notifications.rules import QuietHours, quiet_hours_for
from scheduler.booking import VisitChange
from scheduler.models import BLOCKING_STATUSES, Clinician, Patient, Visit

# Messages go only for visits that hold their slot (booked, confirmed, checked
# in, completed): never for proposals, cancelled visits or no-shows.
ACTIVE_STATUSES = BLOCKING_STATUSES
# Aftercare stays useful for a while after the visit; reminders only until it starts.
AFTERCARE_EXPIRY = timedelta(hours=12)

# The changes calendars must hear of, and the invite each sends (RFC 5546: a
# REQUEST; a REQUEST again, SEQUENCE raised; a CANCEL). Confirmations, check-ins
# and rides home keep time and place: no new SEQUENCE, no invite.
INVITES = {
    VisitChange.BOOKED: Purpose.INVITE,
    VisitChange.MOVED: Purpose.INVITE_UPDATE,
    VisitChange.CANCELLED: Purpose.INVITE_CANCEL,
}

CANCELLED_REASONS = {
    VisitChange.MOVED: "The visit moved; messages for the new time replace it.",
    VisitChange.CANCELLED: "The visit was cancelled.",
    VisitChange.NO_SHOW: "The patient did not come.",
}


def contact_channels(patient: Patient) -> list[str]:
    """The channels a patient has an address for and prefers.

    Consent and opt-out are checked again when each message is sent, so
    consent recorded after booking still lets later texts go.
    """
    channels = []
    if patient.contact_by_sms and patient.mobile:
        channels.append(Channel.SMS)
    if patient.contact_by_email and patient.email:
        channels.append(Channel.EMAIL)
    return channels


def on_visit_saved(sender, visit: Visit, change: VisitChange, **kwargs) -> None:
    plan_for_visit(visit, change)


def plan_for_visit(
    visit: Visit, change: VisitChange | None = None, *, now: datetime | None = None
) -> list[Message]:
    """Bring the visit's outbox rows in line with the visit as stored; returns the rows created.

    Idempotent: rows already planned for the visit's current sequence are kept.
    """
    now = now or timezone.now()
    if change in (
        VisitChange.CONFIRMED,
        VisitChange.RIDE_HOME,
        VisitChange.CHECKED_IN,
        VisitChange.COMPLETED,
    ):
        return []  # time and place unchanged: the plan stands
    planned = set(
        Message.objects.for_visit(visit).order_by().values_list("purpose", flat=True).distinct()
    )
    stale = Message.objects.for_visit(visit).pending()
    if visit.status in ACTIVE_STATUSES:
        stale = stale.exclude(visit_sequence=visit.sequence)
    stale.update(
        status=Status.CANCELLED,
        reason=CANCELLED_REASONS.get(change, "The visit changed."),
        updated_at=now,
    )
    existing = set(
        Message.objects.for_visit(visit)
        .filter(visit_sequence=visit.sequence)
        .values_list("rule_id", "purpose", "channel", "clinician_id")
    )
    notice = {VisitChange.MOVED: Purpose.MOVED, VisitChange.CANCELLED: Purpose.CANCELLED}.get(
        change
    )
    # Only a patient who had been told about the visit (it had messages other
    # than invites planned) hears that it changed; a proposal that moves or is
    # dropped tells nobody.
    told = bool(planned - set(INVITE_PURPOSES)) and (
        visit.status in ACTIVE_STATUSES or notice == Purpose.CANCELLED
    )
    rows = []
    # Calendars hear of a visit that holds its slot, and of the cancellation of
    # one that had messages planned (a proposal never did).
    invite = INVITES.get(change)
    if invite == Purpose.INVITE_CANCEL:
        if planned:
            rows += _invites(visit, invite, now, existing)
    elif invite and visit.status in ACTIVE_STATUSES:
        rows += _invites(visit, invite, now, existing)
    if invite or change is None:
        rows += _former_clinicians(visit, now, existing)
    channels = contact_channels(visit.patient)
    if channels:
        rows += _patient_messages(visit, channels, notice if told else None, existing, now)
    return Message.objects.bulk_create(rows)


def _patient_messages(
    visit: Visit, channels: list[str], notice: str | None, existing: set, now: datetime
) -> list[Message]:
    """The patient's change notice (if ``notice``) and reminder rules' messages, by channel."""
    quiet = quiet_hours_for(visit.patient)
    notices = [
        _notice(visit, notice, channel, quiet, now)
        for channel in channels
        if notice and (None, notice, channel, None) not in existing
    ]
    rows = list(notices)
    if visit.status in ACTIVE_STATUSES:
        rules = ReminderRule.objects.filter(
            policy__visit_type_id=visit.visit_type_id, policy__is_active=True, is_active=True
        )
        for channel in channels:
            wanted = [rule for rule in rules if channel in rule.channels]
            rows += _rule_messages(
                visit,
                channel,
                [r for r in wanted if (r.pk, r.purpose, channel, None) not in existing],
                quiet,
                now,
                covered_by_notice=notice == Purpose.MOVED and bool(notices),
            )
    return rows


def _row(visit: Visit, channel: str, purpose: str, send_at: datetime, expires_at, **extra):
    message = Message(
        visit=visit,
        patient=visit.patient,
        purpose=purpose,
        channel=channel,
        visit_sequence=visit.sequence,
        send_at=send_at,
        expires_at=expires_at,
        priority=PRIORITY[purpose],
        **extra,
    )
    message.recipient = message.current_address
    return message


def _invites(visit: Visit, purpose: str, now: datetime, existing: set) -> list[Message]:
    """The calendar invites ``purpose`` sends for ``visit``: to the patient, to each of its team.

    The patient's goes at once or when their quiet hours end, the clinician's
    at once; either is of use until the visit is over.
    """
    rows = []
    patient = visit.patient
    if Channel.EMAIL in contact_channels(patient) and (
        (None, purpose, Channel.EMAIL, None) not in existing
    ):
        send_at = quiet_hours_for(patient).next_allowed(now)
        rows.append(_row(visit, Channel.EMAIL, purpose, send_at, visit.end))
    for clinician_id, address in (
        Clinician.objects.filter(participations__visit=visit, invite_preference__email_invites=True)
        .exclude(user__email="")
        .order_by("participations__position")
        .values_list("pk", "user__email")
    ):
        if (None, purpose, Channel.EMAIL, clinician_id) not in existing:
            message = _row(visit, Channel.EMAIL, purpose, now, visit.end)
            message.clinician_id, message.recipient = clinician_id, address
            rows.append(message)
    for message in rows:
        if message.send_at >= message.expires_at:
            _skip(message, "Too late: the visit is over before it could go.")
    return rows


# An invite row in one of these never went: nothing of it is in anyone's calendar.
NOT_SENT = (Status.PENDING, Status.CANCELLED, Status.SKIPPED, Status.SUPPRESSED)


def _former_clinicians(visit: Visit, now: datetime, existing: set) -> list[Message]:
    """A CANCEL for each clinician who may hold the visit in their calendar but is no longer on it.

    They may hold it if an invite of it may have reached them (sent, being
    sent, or failed in doubt) and their last such invite was not a CANCEL; they
    get one only while they still take invites. It describes the visit as it
    stands at its current SEQUENCE, as every other invite of that SEQUENCE
    does: clients drop an event by UID whatever its time (RFC 5546 3.2.5).
    """
    last: dict[int, str] = {}
    for clinician_id, purpose in (
        Message.objects.for_visit(visit)
        .filter(clinician__isnull=False, purpose__in=INVITE_PURPOSES)
        .exclude(clinician__participations__visit=visit)
        .exclude(status__in=NOT_SENT)
        .order_by("visit_sequence", "pk")
        .values_list("clinician_id", "purpose")
    ):
        last[clinician_id] = purpose
    holding = [
        clinician_id
        for clinician_id, purpose in last.items()
        if purpose != Purpose.INVITE_CANCEL
        and (None, Purpose.INVITE_CANCEL, Channel.EMAIL, clinician_id) not in existing
    ]
    if not holding:
        return []
    rows = []
    for clinician_id, address in (
        Clinician.objects.filter(pk__in=holding, invite_preference__email_invites=True)
        .exclude(user__email="")
        .values_list("pk", "user__email")
    ):
        message = _row(visit, Channel.EMAIL, Purpose.INVITE_CANCEL, now, visit.end)
        message.clinician_id, message.recipient = clinician_id, address
        if message.send_at >= message.expires_at:
            _skip(message, "Too late: the visit is over before it could go.")
        rows.append(message)
    return rows


def _notice(visit: Visit, purpose: str, channel: str, quiet: QuietHours, now: datetime) -> Message:
    # A change notice goes at once, or when quiet hours end; after the visit's
    # (new) start it would only confuse, so that is when it expires.
    send_at = quiet.next_allowed(now)
    message = _row(visit, channel, purpose, send_at, visit.start)
    if send_at >= visit.start:
        message.status = Status.SKIPPED
        message.reason = "Quiet hours last until after the visit starts."
    return message


def planned_time(rule: ReminderRule, visit: Visit, quiet: QuietHours) -> datetime:
    """The rule's time for this visit, moved out of quiet hours."""
    nominal = rule.nominal_time(visit)
    if not quiet.contains(nominal):
        return nominal
    if rule.timing == Timing.AFTER_END:
        return quiet.ends(nominal)  # aftercare must not come before the visit ends
    return quiet.last_moment_before(nominal)


def expiry(rule: ReminderRule, visit: Visit) -> datetime:
    if rule.timing == Timing.AFTER_END:
        return visit.end + rule.offset + AFTERCARE_EXPIRY
    return visit.start


def _rule_messages(
    visit: Visit,
    channel: str,
    rules: Iterable[ReminderRule],
    quiet: QuietHours,
    now: datetime,
    *,
    covered_by_notice: bool,
) -> list[Message]:
    rows = []
    missed: dict[str, list[tuple[datetime, Message]]] = {}
    for rule in rules:
        send_at, expires_at = planned_time(rule, visit, quiet), expiry(rule, visit)
        message = _row(visit, channel, rule.purpose, send_at, expires_at, rule=rule)
        rows.append(message)
        if send_at < now:
            missed.setdefault(rule.purpose, []).append((rule.nominal_time(visit), message))
    catch_ups = []
    for purpose, candidates in missed.items():
        candidates.sort(key=lambda pair: pair[0])
        *superseded, (_, latest) = candidates
        for _, message in superseded:
            _skip(message, "Booked at short notice: a later message of the same kind replaces it.")
        if covered_by_notice and purpose != Purpose.AFTERCARE:
            _skip(latest, "The notice that the visit moved gives the new time.")
            continue
        latest.send_at = quiet.next_allowed(now)
        if latest.send_at >= latest.expires_at:
            _skip(latest, "Too late: no allowed time is left before the visit.")
            continue
        catch_ups.append(latest)
    merge = timedelta(hours=settings.REMINDER_MERGE_HOURS)
    for late in catch_ups:
        if late.purpose != Purpose.REMINDER:
            continue
        covering = [
            other
            for other in rows
            if other is not late
            and other.status == Status.PENDING
            and PRIORITY[other.purpose] >= PRIORITY[late.purpose]
            and other.send_at <= late.send_at + merge
            and other.purpose != Purpose.AFTERCARE
        ]
        if covering:
            _skip(
                late,
                f"Booked at short notice: the {covering[0].get_purpose_display().lower()} "
                f"message within {settings.REMINDER_MERGE_HOURS} h covers it.",
            )
    return rows


def _skip(message: Message, reason: str) -> None:
    message.status = Status.SKIPPED
    message.reason = reason


def plan_upcoming(visits: Iterable[Visit] | None = None, *, now: datetime | None = None) -> int:
    """Plan messages for upcoming active visits that lack some (after policies change).

    Returns the number of rows created; running it again creates none.
    """
    now = now or timezone.now()
    if visits is None:
        visits = Visit.objects.filter(
            Q(start__gt=now) | Q(end__gt=now - AFTERCARE_EXPIRY), status__in=ACTIVE_STATUSES
        ).select_related("patient", "visit_type")
    return sum(len(plan_for_visit(visit, now=now)) for visit in visits)
