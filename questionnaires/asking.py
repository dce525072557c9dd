"""When questionnaires are asked: requests on the visits' timeline, and their messages in the outbox.

Runs inside the booking transaction (``scheduler.booking.visit_saved``), like
``notifications.planning``: a booking rolled back asks nothing, a move commits
with its requests' new times, a cancellation with its requests cancelled.

Decisions made here:

- Which rule: for each instrument, the most specific active ``AskingRule``
  that matches the visit: one naming the visit's protocol step (a visit of a
  care plan), else one naming its visit type, else one naming its kind. A
  more specific rule for an instrument replaces the kind rule for it.
- Which occasion: a rule's visits are counted in order of start among the
  patient's active visits (booked, confirmed, checked in, completed) that it
  governs: ``first`` asks before the first only, ``every_other`` before the
  1st, 3rd, 5th..., ``every`` before each. A cancelled, moved or new dose
  changes later doses' numbers, so every change re-evaluates all the
  patient's visits still to come (``plan_patient``); answered requests stay
  as they are, open ones no longer wanted are cancelled.
- When: a request opens ``hours_before`` the visit (not before now) and
  closes when the visit ends; the newest active version of the instrument
  is asked.
- The messages: one ``QUESTIONNAIRE`` text and email per visit covering all
  its open requests (one text for two questionnaires is kinder than two),
  when the first of them opens, moved out of the patient's quiet hours to
  the morning (the questions are not open the evening before), of use until
  the visit starts; and one ``QUESTIONNAIRE_REMINDER`` of each the rule's
  ``reminder_after_hours`` later, sent only if something is still
  unanswered. A visit that moves gets new ones for its new sequence, the old
  pending ones are cancelled. Consent, opt-out, text limits and quiet hours
  are checked again by the dispatcher when they go, as for every message
  to a patient; ``refusal`` says when they have lost their point.
"""

from collections import defaultdict
from datetime import datetime, timedelta

from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from notifications.content import Composer, Email, sms_clinic_name, when_text
from notifications.models import PRIORITY, Message, Purpose, Status
from notifications.planning import ACTIVE_STATUSES, contact_channels
from notifications.rules import quiet_hours_for
from questionnaires.models import (
    AskingRule,
    Instrument,
    Occasion,
    QuestionnaireRequest,
    RequestStatus,
)
from scheduler.booking import VisitChange
from scheduler.models import Patient, Visit
from scheduler.phones import format_for_display
from scheduler.timezones import zone

ASKING_PURPOSES = (Purpose.QUESTIONNAIRE, Purpose.QUESTIONNAIRE_REMINDER)
# Changes that keep the visit's time and status: what was asked stands.
UNCHANGED = (
    VisitChange.CONFIRMED,
    VisitChange.RIDE_HOME,
    VisitChange.CHECKED_IN,
    VisitChange.COMPLETED,
)


# -- which rules ask before which visits ---------------------------------------------


def _specificity(rule: AskingRule, visit: Visit, step_id: int | None) -> int:
    """How closely ``rule`` names ``visit``: 3 by its step, 2 by its type, 1 by its kind, 0 not."""
    if rule.protocol_step_id is not None:
        return 3 if rule.protocol_step_id == step_id else 0
    if rule.visit_type_id is not None:
        return 2 if rule.visit_type_id == visit.visit_type_id else 0
    return 1 if rule.visit_kind == visit.visit_type.kind else 0


def governing_rules(
    rules: list[AskingRule], visit: Visit, step_id: int | None
) -> dict[str, AskingRule]:
    """For each instrument code, the most specific of ``rules`` matching ``visit`` (first by id)."""
    best: dict[str, tuple[int, AskingRule]] = {}
    for rule in rules:
        level = _specificity(rule, visit, step_id)
        if level and level > best.get(rule.instrument_code, (0, None))[0]:
            best[rule.instrument_code] = (level, rule)
    return {code: rule for code, (_, rule) in best.items()}


def asks_at(occasion: str, ordinal: int) -> bool:
    """Whether a rule with ``occasion`` asks before its ``ordinal``-th visit (from 1)."""
    if occasion == Occasion.FIRST:
        return ordinal == 1
    if occasion == Occasion.EVERY_OTHER:
        return ordinal % 2 == 1
    return True


def wanted_rules(patient: Patient, visits: list[Visit]) -> dict[int, dict[str, AskingRule]]:
    """By visit id, the rules that ask before it, by instrument code.

    ``visits``: all the patient's active visits in order of start, each with
    ``step_id`` (its care plan step, or None).
    """
    rules = list(AskingRule.objects.filter(is_active=True).order_by("pk"))
    counted: dict[int, int] = defaultdict(int)
    wanted = {}
    for visit in visits:
        asking = {}
        for code, rule in governing_rules(rules, visit, visit.step_id).items():
            counted[rule.pk] += 1
            if asks_at(rule.occasion, counted[rule.pk]):
                asking[code] = rule
        wanted[visit.pk] = asking
    return wanted


def current_instruments() -> dict[str, Instrument]:
    """The newest active version of each instrument, by code."""
    newest = {}
    for instrument in Instrument.objects.current():
        newest.setdefault(instrument.code, instrument)
    return newest


# -- requests ---------------------------------------------------------------------------


def on_visit_saved(sender, visit: Visit, change: VisitChange, **kwargs) -> None:
    if change in UNCHANGED:
        return
    plan_patient(visit.patient, now=None)


def plan_patient(patient: Patient, *, now: datetime | None = None) -> dict[str, int]:
    """Bring the requests and messages of ``patient``'s visits still to come in line with the rules.

    Idempotent: a second run changes nothing. Returns counts of what changed
    (requests ``asked``, ``moved``, ``cancelled``; ``messages`` planned).
    """
    now = now or timezone.now()
    counts = defaultdict(int)
    visits = list(
        Visit.objects.filter(patient=patient, status__in=ACTIVE_STATUSES)
        .annotate(step_id=F("planned__step_id"))
        .select_related("visit_type")
        .order_by("start", "pk")
    )
    upcoming = [visit for visit in visits if visit.end > now]
    wanted = wanted_rules(patient, visits)
    # Open requests of visits no longer on (cancelled, no-show, back to a
    # proposal), and their messages still to go, end here.
    gone = (
        QuestionnaireRequest.objects.open()
        .filter(patient=patient)
        .exclude(visit__in=[visit.pk for visit in visits])
    )
    counts["cancelled"] += gone.update(status=RequestStatus.CANCELLED, updated_at=now)
    Message.objects.filter(
        patient=patient, purpose__in=ASKING_PURPOSES, status=Status.PENDING
    ).exclude(visit__status__in=ACTIVE_STATUSES).update(
        status=Status.CANCELLED, reason="The visit is no longer on.", updated_at=now
    )
    if not upcoming:
        return dict(counts)
    existing: dict[int, list[QuestionnaireRequest]] = defaultdict(list)
    for request in (
        QuestionnaireRequest.objects.filter(visit__in=upcoming)
        .exclude(status=RequestStatus.CANCELLED)
        .select_related("instrument", "rule")
    ):
        existing[request.visit_id].append(request)
    instruments = current_instruments()
    new = []
    for visit in upcoming:
        by_code = {request.instrument.code: request for request in existing[visit.pk]}
        for code, rule in wanted[visit.pk].items():
            request = by_code.pop(code, None)
            opens_at = visit.start - timedelta(hours=rule.hours_before)
            if request is None:
                if code in instruments:
                    new.append(
                        QuestionnaireRequest(
                            patient=patient,
                            visit=visit,
                            instrument=instruments[code],
                            rule=rule,
                            opens_at=max(opens_at, now),
                            closes_at=visit.end,
                        )
                    )
                continue
            if request.status != RequestStatus.OPEN:
                continue  # answered: it stands
            changes = _request_changes(request, rule, opens_at, visit.end, now)
            if changes:
                QuestionnaireRequest.objects.filter(pk=request.pk).update(**changes, updated_at=now)
                for name, value in changes.items():
                    setattr(request, name, value)
                counts["moved"] += 1
        # Open requests the rules no longer ask for (a dose renumbered): cancelled.
        unwanted = [r.pk for r in by_code.values() if r.status == RequestStatus.OPEN]
        if unwanted:
            counts["cancelled"] += QuestionnaireRequest.objects.filter(pk__in=unwanted).update(
                status=RequestStatus.CANCELLED, updated_at=now
            )
            existing[visit.pk] = [r for r in existing[visit.pk] if r.pk not in unwanted]
    for request in QuestionnaireRequest.objects.bulk_create(new):
        existing[request.visit_id].append(request)
        counts["asked"] += 1
    counts["messages"] += plan_messages(patient, upcoming, existing, now)
    return dict(counts)


def _request_changes(request, rule, opens_at: datetime, closes_at: datetime, now: datetime) -> dict:
    """What an open request's row must change to follow its visit and rule."""
    changes = {}
    if request.rule_id != rule.pk:
        changes["rule"] = rule
    # Once open, it stays open from when it opened: re-running later must not
    # push its opening to a later "now".
    already_open = request.opens_at <= now and opens_at <= now
    if not already_open and request.opens_at != max(opens_at, now):
        changes["opens_at"] = max(opens_at, now)
    if request.closes_at != closes_at:
        changes["closes_at"] = closes_at
    return changes


# -- messages ---------------------------------------------------------------------------


def plan_messages(
    patient: Patient,
    visits: list[Visit],
    requests: dict[int, list[QuestionnaireRequest]],
    now: datetime,
) -> int:
    """The request and reminder messages of ``visits`` (with their live ``requests``); rows created."""
    pending: dict[int, list[Message]] = defaultdict(list)
    # By (visit, purpose, channel, sequence), the unique constraint's key: a row
    # there blocks another, a cancelled one too, which is planned again instead.
    rows_by_key: dict[tuple, Message] = {}
    for message in Message.objects.filter(
        visit__in=visits, patient=patient, purpose__in=ASKING_PURPOSES
    ):
        if message.status == Status.PENDING:
            pending[message.visit_id].append(message)
        key = (message.visit_id, message.purpose, message.channel, message.visit_sequence)
        rows_by_key[key] = message
    channels = contact_channels(patient)
    quiet = quiet_hours_for(patient)
    rows = []
    for visit in visits:
        visit.patient = patient
        open_requests = [r for r in requests[visit.pk] if r.status == RequestStatus.OPEN]
        planned = _planned_times(visit, open_requests, quiet, now) if open_requests else {}
        for message in pending[visit.pk]:
            if message.visit_sequence != visit.sequence:
                _cancel(message, "The visit moved; messages for the new time replace it.", now)
            elif message.purpose not in planned:
                _cancel(message, "No questions are open for this visit any more.", now)
            elif message.send_at != planned[message.purpose] and not (
                message.send_at <= now and planned[message.purpose] <= now
            ):
                Message.objects.filter(pk=message.pk, status=Status.PENDING).update(
                    send_at=planned[message.purpose], updated_at=now
                )
        for purpose, send_at in planned.items():
            for channel in channels:
                existing = rows_by_key.get((visit.pk, purpose, channel, visit.sequence))
                if existing is not None:
                    if existing.status == Status.CANCELLED and existing.attempts == 0:
                        # Asked again at the same time (a dose renumbered back): it goes after all.
                        Message.objects.filter(pk=existing.pk, status=Status.CANCELLED).update(
                            status=Status.PENDING, send_at=send_at, reason="", updated_at=now
                        )
                    continue
                message = Message(
                    visit=visit,
                    patient=patient,
                    purpose=purpose,
                    channel=channel,
                    visit_sequence=visit.sequence,
                    send_at=send_at,
                    expires_at=visit.start,
                    priority=PRIORITY[purpose],
                )
                message.recipient = message.current_address
                rows.append(message)
    return len(Message.objects.bulk_create(rows))


def _planned_times(visit: Visit, open_requests, quiet, now: datetime) -> dict[str, datetime]:
    """When the visit's request message and its reminder go; a purpose left out: none goes."""
    first = quiet.next_allowed(max(min(r.opens_at for r in open_requests), now))
    planned = {}
    if first < visit.start:
        planned[Purpose.QUESTIONNAIRE] = first
        after = [
            r.rule.reminder_after_hours
            for r in open_requests
            if r.rule is not None and r.rule.reminder_after_hours
        ]
        if after:
            reminder = quiet.next_allowed(first + timedelta(hours=min(after)))
            if reminder < visit.start:
                planned[Purpose.QUESTIONNAIRE_REMINDER] = reminder
    return planned


def _cancel(message: Message, reason: str, now: datetime) -> None:
    Message.objects.filter(pk=message.pk, status=Status.PENDING).update(
        status=Status.CANCELLED, reason=reason, updated_at=now
    )


def plan_upcoming(*, now: datetime | None = None) -> dict[str, int]:
    """Apply the asking rules as they are now to every patient's visits still to come.

    For after rules or instruments change; running it again changes nothing.
    """
    now = now or timezone.now()
    patients = Patient.objects.filter(
        visits__status__in=ACTIVE_STATUSES, visits__end__gt=now
    ).distinct()
    counts = defaultdict(int)
    for patient in patients.select_related("clinic").order_by("pk"):
        for name, count in plan_patient(patient, now=now).items():
            counts[name] += count
    return dict(counts)


# -- what the messages say -------------------------------------------------------------


def questions_url(link: str) -> str:
    """The questions page under the patient's private link (``link``: their page's URL)."""
    token = link.rstrip("/").rsplit("/", 1)[-1]
    return link.split("/p/", 1)[0] + reverse("patient_questions", args=[token])


def _context(message: Message, link: str) -> dict:
    patient, visit = message.patient, message.visit
    clinic = visit.clinic  # where the visit is held
    local = timezone.localtime(visit.start, zone(patient.time_zone))
    return {
        "first_name": patient.first_name,
        "clinic": sms_clinic_name(clinic),
        "clinic_name": clinic.name,
        "phone": format_for_display(clinic.phone),
        "day": dateformat.format(local, pgettext("day in a text", "D M j")),
        "when": when_text(visit.start, patient.time_zone, clinic.time_zone),
        "link": questions_url(link),
        "reminder": message.purpose == Purpose.QUESTIONNAIRE_REMINDER,
    }


def sms_text(message: Message, link: str) -> str:
    return render_to_string("questionnaires/sms/request.txt", _context(message, link))


def email(message: Message, link: str) -> Email:
    context = _context(message, link)
    context["clinic"] = context["clinic_name"]  # an email names the clinic in full
    if context["reminder"]:
        subject = _("Reminder: a few questions before your visit on %(day)s")
    else:
        subject = _("A few questions before your visit on %(day)s")
    subject %= {"day": context["day"]}
    return Email(
        subject=subject,
        text=render_to_string("questionnaires/email/request.txt", context).strip() + "\n",
        html=render_to_string("questionnaires/email/request.html", context),
    )


def refusal(message: Message) -> str:
    """Why the request or reminder message must not go (any more); "" while it may."""
    visit = Visit.objects.filter(pk=message.visit_id).values("status", "sequence").first()
    if visit is None or visit["status"] not in ACTIVE_STATUSES:
        return "The visit is no longer on."
    if visit["sequence"] != message.visit_sequence:
        return "The visit moved after this was planned."
    if not QuestionnaireRequest.objects.open().filter(visit_id=message.visit_id).exists():
        return "Every question asked before this visit is answered or no longer needed."
    return ""


composer = Composer(sms=sms_text, email=email, refusal=refusal, carries_link=True)
