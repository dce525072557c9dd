"""Booking operations: book, move, cancel, confirm, check in, complete, mark no-show.

Each runs in one transaction and either does everything or nothing. The overlap
check and the write cannot interleave with another booking: SQLite takes its
write lock when the transaction begins (``transaction_mode="IMMEDIATE"``), and
PostgreSQL's exclusion constraints refuse an overlapping row even when two
checks ran at the same moment (the loser gets ``SlotTaken``, as if its own check
had seen the winner).

Higher layers add their own rules without this app importing them: a callable
in ``booking_checks`` gets the visit about to be booked or confirmed and returns
the reasons it may not be (``plans`` registers the screening gate there). Pages
that offer many times judge them through ``rules_for_times``.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.dispatch import Signal
from django.utils import timezone

from scheduler.availability import Availability, Conflict, Slot, format_span
from scheduler.models import (
    OPEN_STATUSES,
    Clinician,
    Member,
    Patient,
    Room,
    Visit,
    VisitParticipant,
    VisitStatus,
    VisitType,
    lead_of,
)
from scheduler.timezones import require_aware


class BookingError(Exception):
    """The visit cannot be booked or changed as asked; ``problems`` says why, each in a sentence."""

    def __init__(self, problems: str | Iterable[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(" ".join(self.problems))


class SlotTaken(BookingError):
    """Another visit holds someone of the team, the room or the patient at that time."""


class InvalidTransition(BookingError):
    """The visit's status does not allow this step (e.g. completing a cancelled visit)."""


BookingCheck = Callable[[Visit], Iterable[str]]
booking_checks: list[BookingCheck] = []
# Asked by ``complete`` about the checked-in visit: reasons it may not be completed
# yet (``plans`` registers the dosing session record there).
completion_checks: list[BookingCheck] = []

# Two signals per change, both with ``visit`` (as stored), ``change`` (a
# VisitChange) and ``previous`` (the ``Held`` time and place the visit had
# before a change to an existing visit, None for a new one: what a move or a
# cancellation gave up). ``visit_saved`` is sent inside the transaction that changed the
# visit: a receiver's writes (the outbox: reminders, notices, calendar invites)
# commit or roll back with it. ``visit_changed`` is sent after that transaction
# commits: the place to queue background work, so nothing is queued for a
# change rolled back.
visit_saved = Signal()
visit_changed = Signal()


class VisitChange(StrEnum):
    BOOKED = "booked"
    MOVED = "moved"
    CANCELLED = "cancelled"
    CONFIRMED = "confirmed"
    CHECKED_IN = "checked_in"
    COMPLETED = "completed"
    NO_SHOW = "no_show"
    RIDE_HOME = "ride_home"


class Held(NamedTuple):
    """The time and place a visit held, and its status then."""

    start: datetime
    end: datetime
    clinician_id: int
    room_id: int | None
    status: str

    @classmethod
    def of(cls, visit: Visit) -> "Held":
        return cls(visit.start, visit.end, visit.clinician_id, visit.room_id, visit.status)


def _announce(visit: Visit, change: VisitChange, previous: Held | None = None) -> None:
    visit_saved.send(sender=Visit, visit=visit, change=change, previous=previous)
    transaction.on_commit(
        lambda: visit_changed.send(sender=Visit, visit=visit, change=change, previous=previous),
        robust=False,
    )


# PostgreSQL's SQLSTATE for exclusion_violation: the overlap constraints fired.
EXCLUSION_VIOLATION = "23P01"
# ... and for deadlock_detected: two bookings in flight that overlap each wait for the
# other's row while checking the constraints, and PostgreSQL cancels one of them.
DEADLOCK_DETECTED = "40P01"
# How often a booking cancelled that way starts over. On its next try it waits for
# the booking that went on, and so meets it as an exclusion violation or a free time.
DEADLOCK_RETRIES = 5


def rule_problems(visit: Visit) -> list[str]:
    """What the registered rules (screening gate, dose spacing, ...) say against ``visit``.

    A proposed visit holds nothing yet, so the rules wait until it is booked.
    """
    if visit.status == VisitStatus.PROPOSED:
        return []
    return [problem for check in booking_checks for problem in check(visit)]


def rules_for_times(visit: Visit, start: datetime, end: datetime) -> Callable[[Visit], list[str]]:
    """The registered rules, ready to judge ``visit`` moved to many times between start and end.

    For pages that offer times rather than book one (the desk's move page): the
    returned function takes a copy of the visit moved to one candidate time
    and answers what the first check to object says, or nothing. A check may
    carry ``for_times(visit, start, end)``, which reads once what the check
    needs for the whole span and returns such a function that asks the
    database nothing more; any other check is asked about each copy in turn,
    with its own queries each time.
    """
    if visit.status == VisitStatus.PROPOSED:
        return lambda moved: []
    judges = [
        check.for_times(visit, start, end) if hasattr(check, "for_times") else check
        for check in booking_checks
    ]

    def first_objection(moved: Visit) -> list[str]:
        for judge in judges:
            if problems := list(judge(moved)):
                return problems
        return []

    return first_objection


def _availability_for(visit: Visit, staff: Sequence[Member] | None = ()) -> Availability:
    """What decides ``visit``: its people (everyone, when ``staff`` is None: to choose from)."""
    people = None if staff is None else [visit.clinician, *(m.clinician for m in staff)]
    return Availability(
        visit.clinic,
        visit.start,
        visit.end,
        clinicians=people,
        rooms=[visit.room] if visit.room else [],
        patients=[visit.patient],
        ignore_visits=[visit.pk] if visit.pk else [],
    )


def seat_staff(
    visit_type: VisitType, clinicians: Iterable[Clinician]
) -> tuple[list[Member], list[str], list[str]]:
    """``clinicians`` in the places of the visit type's team after the lead: (members,
    anyone who fills no place, every required place left empty), the last two in words.

    Each takes the first open place one of their roles fills, so the order
    they are given in does not matter.
    """
    open_seats = list(enumerate(visit_type.seats[1:]))
    placed, misplaced = [], []
    for clinician in clinicians:
        index = next((i for i, (_, seat) in enumerate(open_seats) if seat.role_of(clinician)), None)
        if index is None:
            misplaced.append(
                f"{clinician} has no place left on the team of {visit_type} "
                f"({visit_type.team_text})."
            )
            continue
        number, seat = open_seats.pop(index)
        placed.append((number, Member(clinician, seat)))
    missing = [
        f"{visit_type} needs a {seat.label} as well." for _, seat in open_seats if not seat.optional
    ]
    return [member for _, member in sorted(placed, key=lambda pair: pair[0])], misplaced, missing


def staff_of(visit: Visit) -> list[Member]:
    """The visit's team after the lead, as stored, in their places."""
    return [Member(p.clinician, visit.seat_of(p)) for p in visit.staff if not p.is_lead]


def choose_staff(visit: Visit, prefer: Iterable[Clinician] = ()) -> list[Member]:
    """The first free people for the places after the lead, ``prefer`` first; BookingError if none."""
    availability = _availability_for(visit, None)
    staff, missing = availability.staff_for(
        visit.visit_type, visit.clinician, visit.start, visit.end, prefer
    )
    if missing is not None:
        span = format_span(*missing.span(visit.start, visit.end), visit.clinic.tz)
        raise BookingError(f"No {missing.label} is free {span} for this visit.")
    return list(staff)


def save_with_team(visit: Visit, staff: Sequence[Member]) -> Visit:
    """Write ``visit`` and its team (lead: its clinician; ``staff`` after), without checks.

    For proposals, which hold no one's time, and inside the checked booking
    operations. Places no longer on the team are emptied before the visit's
    new time is written, so that on PostgreSQL someone leaving the visit is
    never held at its new time even for a moment.
    """
    if visit.pk:
        VisitParticipant.objects.filter(visit=visit, position__gt=0).delete()
    visit.save()
    VisitParticipant.objects.bulk_create(
        VisitParticipant.for_seat(visit, member.clinician, member.seat, position)
        for position, member in enumerate(staff, start=1)
    )
    return visit


def _horizon_problems(start: datetime, tz) -> list[str]:
    now = timezone.now()
    horizon = timedelta(days=settings.BOOKING_HORIZON_DAYS)
    if start < now:
        return [f"{start.astimezone(tz):%a %Y-%m-%d %H:%M} is in the past."]
    if start > now + horizon:
        return [f"Visits can be booked at most {horizon.days} days ahead."]
    return []


def problems_for(visit: Visit, staff: Sequence[Member] = ()) -> list[str]:
    """Every reason ``visit`` (saved or not) cannot hold its time, place and people."""
    visit.start = require_aware(visit.start, "start").astimezone(UTC)
    if visit.end is None:
        visit.end = visit.start + visit.visit_type.duration
    if visit.visit_type.lead_seat is None:
        return [f"{visit.visit_type} has no team set up: add who it needs in the admin."]
    *_, missing = seat_staff(visit.visit_type, [m.clinician for m in staff])
    return (
        _horizon_problems(visit.start, visit.clinic.tz)
        + missing
        + _availability_for(visit, staff).problems(
            visit.visit_type,
            visit.clinician,
            visit.room,
            visit.patient,
            visit.start,
            visit.end,
            staff,
        )
    )


def _save_checked(visit: Visit, staff: Sequence[Member]) -> Visit:
    """Validate and save ``visit`` and its team atomically; raise BookingError/SlotTaken with every reason."""
    new = visit.pk is None
    for _ in range(DEADLOCK_RETRIES):
        try:
            return _save_checked_once(visit, staff)
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != DEADLOCK_DETECTED:
                raise
            if new:  # the insert was undone with the rest
                visit.pk = None
                visit._state.adding = True
    raise SlotTaken(["Other bookings of this time are being made at this moment."])


def _save_checked_once(visit: Visit, staff: Sequence[Member]) -> Visit:
    try:
        with transaction.atomic():
            problems = problems_for(visit, staff) + rule_problems(visit)
            if problems:
                overlap_only = all(isinstance(problem, Conflict) for problem in problems)
                raise (SlotTaken if overlap_only else BookingError)(problems)
            return save_with_team(visit, staff)
    except IntegrityError as error:
        if getattr(error.__cause__, "sqlstate", None) != EXCLUSION_VIOLATION:
            raise
        # Another transaction booked an overlapping visit between our check and
        # our insert; it has committed, so a fresh look names it.
        team = [lead_of(visit.visit_type, visit.clinician), *staff]
        conflicts = _availability_for(visit, staff).conflicts(
            team, visit.room, visit.patient, visit.start, visit.end
        )
        raise SlotTaken(
            list(conflicts) or ["Another booking took this time a moment ago."]
        ) from error


def locked(visit: Visit) -> Visit:
    """The visit as stored now, locked for this transaction (SQLite: the IMMEDIATE lock)."""
    return (
        Visit.objects.select_for_update(of=("self",))
        .select_related("patient__clinic", "visit_type__clinic", "clinician", "room")
        .prefetch_related("participants__clinician", "visit_type__staffing")
        .get(pk=visit.pk)
    )


def _require_status(visit: Visit, allowed, action: str) -> None:
    if visit.status not in allowed:
        raise InvalidTransition(f"A {visit.get_status_display().lower()} visit cannot be {action}.")


@contextmanager
def _changing(visit: Visit, allowed, action: str) -> Iterator[Visit]:
    """The stored visit, locked in a transaction, if its status allows ``action``.

    The caller changes, saves and announces it inside the block; ``visit``
    itself is refreshed once the change has committed.
    """
    with transaction.atomic():
        current = locked(visit)
        _require_status(current, allowed, action)
        yield current
    visit.refresh_from_db()


def book(
    *,
    patient: Patient,
    visit_type: VisitType,
    clinician: Clinician,
    start: datetime,
    room: Room | None = None,
    ride_home_arranged: bool = False,
    staff: Iterable[Clinician] | None = None,
) -> Visit:
    """Book a new visit led by ``clinician``, or raise BookingError saying everything that is wrong.

    ``staff``: the rest of the team, each in the first place of the visit
    type's team they fill; None: the first free people for its places.
    """
    start = require_aware(start, "start").astimezone(UTC)
    visit = Visit(
        patient=patient,
        visit_type=visit_type,
        clinician=clinician,
        room=room,
        start=start,
        end=start + visit_type.duration,
        status=VisitStatus.BOOKED,
        ride_home_arranged=ride_home_arranged,
    )
    with transaction.atomic():
        _save_checked(visit, _staff_for(visit, staff))
        _announce(visit, VisitChange.BOOKED)
    return visit


def book_slot(patient: Patient, visit_type: VisitType, slot: Slot, **extra) -> Visit:
    """Book ``visit_type`` for ``patient`` at a free ``slot`` (``Availability.free_slots``),
    with its lead, room and team; ``extra`` as ``book`` takes it (``ride_home_arranged``)."""
    return book(
        patient=patient,
        visit_type=visit_type,
        clinician=slot.clinician,
        start=slot.start,
        room=slot.room,
        staff=[member.clinician for member in slot.staff],
        **extra,
    )


def _staff_for(visit: Visit, staff: Iterable[Clinician] | None) -> list[Member]:
    if staff is None:
        return choose_staff(visit)
    members, misplaced, _ = seat_staff(visit.visit_type, staff)
    if misplaced:
        raise BookingError(misplaced)
    return members


def book_proposed(visit: Visit) -> Visit:
    """Turn a proposed visit (from a care plan) into a booked one, with the team it was proposed with."""
    with _changing(visit, {VisitStatus.PROPOSED}, "booked again") as current:
        current.status = VisitStatus.BOOKED
        _save_checked(current, staff_of(current))
        _announce(current, VisitChange.BOOKED)
    return visit


def move(
    visit: Visit,
    *,
    start: datetime,
    clinician: Clinician | None = None,
    room: Room | bool | None = False,
    staff: Iterable[Clinician] | None = None,
) -> Visit:
    """Move a visit to ``start`` (and optionally another lead, room or team).

    ``room=False`` keeps the room; ``room=None`` clears it (telehealth).
    ``staff=None`` keeps the team, refused if someone is not free then. The
    visit keeps its UID and its SEQUENCE rises, so calendars update the same
    event. A confirmed visit goes back to booked: the patient confirms the new time.
    """
    start = require_aware(start, "start").astimezone(UTC)
    with _changing(visit, OPEN_STATUSES, "moved") as current:
        previous = Held.of(current)
        team = (
            [m for m in staff_of(current) if m.clinician != (clinician or current.clinician)]
            if staff is None
            else None
        )
        current.start = start
        current.end = start + current.visit_type.duration
        if clinician is not None:
            current.clinician = clinician
        if room is not False:
            current.room = room
        if current.status == VisitStatus.CONFIRMED:
            current.status = VisitStatus.BOOKED
        current.sequence += 1
        if team is None:
            team = _staff_for(current, staff)
        _save_checked(current, team)
        _announce(current, VisitChange.MOVED, previous)
    return visit


def replace_participant(visit: Visit, leaving: Clinician, joining: Clinician) -> Visit:
    """Put ``joining`` in ``leaving``'s place on the visit, at the same time ("swap the monitor").

    The lead's place too: the visit's clinician changes. Checked like a
    booking; calendars update (SEQUENCE rises), and ``leaving`` gets a cancellation.
    """
    with _changing(visit, OPEN_STATUSES, "changed") as current:
        previous = Held.of(current)
        staff = staff_of(current)
        if current.clinician == leaving:
            current.clinician = joining
        elif leaving in [m.clinician for m in staff]:
            staff = [Member(joining, m.seat) if m.clinician == leaving else m for m in staff]
        else:
            raise BookingError(f"{leaving} is not on this visit.")
        current.sequence += 1
        _save_checked(current, staff)
        _announce(current, VisitChange.MOVED, previous)
    return visit


def _transition(
    visit: Visit,
    allowed,
    to: str,
    action: str,
    change: VisitChange,
    *,
    bump: bool = False,
    guard=None,
    **changes,
) -> Visit:
    """Move the stored visit to status ``to``; ``guard`` checks the locked row first."""
    with _changing(visit, allowed, action) as current:
        if guard is not None:
            guard(current)
        previous = Held.of(current)
        current.status = to
        for name, value in changes.items():
            setattr(current, name, value)
        if bump:
            current.sequence += 1
        current.save()
        _announce(current, change, previous)
    return visit


def cancel(visit: Visit, reason: str = "", *, late: bool = False, **changes) -> Visit:
    """Cancel the visit; its SEQUENCE rises so calendar clients drop the event.

    ``late``: closer to the visit than the clinic's policy allows (recorded for
    the desk); ``changes``: other fields to store with it.
    """
    return _transition(
        visit,
        OPEN_STATUSES,
        VisitStatus.CANCELLED,
        "cancelled",
        VisitChange.CANCELLED,
        bump=True,
        cancellation_reason=reason.strip()[:300],
        cancelled_late=late,
        **changes,
    )


def confirm(visit: Visit) -> Visit:
    """The patient confirmed they will come. Safety rules are checked again."""
    with transaction.atomic():
        current = locked(visit)
        if current.status == VisitStatus.CONFIRMED:
            visit.refresh_from_db()
            return visit  # a second "C" reply changes nothing
        _require_status(current, {VisitStatus.BOOKED}, "confirmed")
        problems = rule_problems(current)
        if problems:
            raise BookingError(problems)
        current.status = VisitStatus.CONFIRMED
        current.save(update_fields=["status", "updated_at"])
        _announce(current, VisitChange.CONFIRMED)
    visit.refresh_from_db()
    return visit


def check_in(visit: Visit, *, now: datetime | None = None) -> Visit:
    now = now or timezone.now()

    def on_its_day_with_a_ride(current: Visit) -> None:
        tz = current.clinic.tz
        if current.start.astimezone(tz).date() != now.astimezone(tz).date():
            raise InvalidTransition("A visit can be checked in only on its own day.")
        if current.visit_type.needs_ride_home and not current.ride_home_arranged:
            raise BookingError(
                "Record a ride home before checking in a dosing visit: the patient must not drive today."
            )

    return _transition(
        visit,
        {VisitStatus.BOOKED, VisitStatus.CONFIRMED},
        VisitStatus.CHECKED_IN,
        "checked in",
        VisitChange.CHECKED_IN,
        guard=on_its_day_with_a_ride,
    )


def complete(visit: Visit) -> Visit:
    def nothing_missing(current: Visit) -> None:
        if problems := [p for check in completion_checks for p in check(current)]:
            raise BookingError(problems)

    return _transition(
        visit,
        {VisitStatus.CHECKED_IN},
        VisitStatus.COMPLETED,
        "completed",
        VisitChange.COMPLETED,
        guard=nothing_missing,
    )


def mark_no_show(visit: Visit, *, now: datetime | None = None) -> Visit:
    now = now or timezone.now()

    def started(current: Visit) -> None:
        if now < current.start:
            raise InvalidTransition("A visit that has not started yet cannot be a no-show.")

    return _transition(
        visit,
        {VisitStatus.BOOKED, VisitStatus.CONFIRMED},
        VisitStatus.NO_SHOW,
        "marked no-show",
        VisitChange.NO_SHOW,
        guard=started,
    )


def arrange_ride_home(visit: Visit, arranged: bool = True) -> Visit:
    with _changing(visit, (*OPEN_STATUSES, VisitStatus.CHECKED_IN), "changed") as current:
        current.ride_home_arranged = arranged
        current.save(update_fields=["ride_home_arranged", "updated_at"])
        _announce(current, VisitChange.RIDE_HOME)
    return visit
