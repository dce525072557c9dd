"""The times a visit may move to: free, around its own date, and kept by every rule a move checks.

A visit's page offers one window of days at a time, by default from a week
before the visit's date (never before today) for two weeks, with the windows
before and after it a link away. A time is offered only if the move would be
accepted as things stand: free for the clinician, the room and the patient
(``scheduler.availability``), within the booking horizon, inside the visit's
care-plan window (``plans.care_plans.window_rules``) and allowed by the
registered booking rules (``scheduler.booking.rules_for_times``: screening,
dose spacing and whatever else is registered). A move still goes through
those same checks; this only keeps the desk from being offered what they refuse.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from plans import care_plans
from plans.models import PlannedVisit
from scheduler import booking
from scheduler.availability import Availability, Slot
from scheduler.models import Clinic, Visit

WINDOW_DAYS = 14
DAYS_BEFORE = 7  # how far before the visit's own date a window opens
STEP = timedelta(minutes=30)
# A page offers at most this many times, those nearest the visit's own time,
# so that the days around its date are shown when a window holds more.
SLOT_LIMIT = 80
REASONS_SHOWN = 3


@dataclass
class MoveTimes:
    """The times offered in one window of days (local dates, both included)."""

    first: date
    last: date
    earlier: date | None  # the first day of the window before, if any
    later: date | None  # the first day of the window after, if any
    planned: PlannedVisit | None  # the visit's place in a care plan: it keeps its clinician
    slots: list[Slot] = field(default_factory=list)
    more: bool = False  # more times in the window than offered
    # When no time is offered although some were free: why, in the rules' words.
    refusals: list[str] = field(default_factory=list)


def planned_visit(visit: Visit) -> PlannedVisit | None:
    try:
        return visit.planned
    except PlannedVisit.DoesNotExist:
        return None


def window(clinic: Clinic, first: date, now: datetime, days: int | None = None) -> MoveTimes:
    """The window of ``days`` days (default WINDOW_DAYS) opening on ``first`` (between today
    and the booking horizon), no times yet."""
    today, last_bookable_day = _bookable_days(clinic, now)
    first = min(max(first, today), last_bookable_day)
    last = min(first + timedelta(days=(days or WINDOW_DAYS) - 1), last_bookable_day)
    earlier = max(today, first - timedelta(days=WINDOW_DAYS)) if first > today else None
    later = last + timedelta(days=1) if last < last_bookable_day else None
    return MoveTimes(first, last, earlier, later, planned=None)


def _bookable_days(clinic: Clinic, now: datetime) -> tuple[date, date]:
    """Today and the last day visits can be booked on, in the clinic's zone."""
    latest = now + timedelta(days=settings.BOOKING_HORIZON_DAYS)
    return timezone.localdate(now, timezone=clinic.tz), timezone.localdate(
        latest, timezone=clinic.tz
    )


def bookable(slot: Slot, now: datetime) -> bool:
    """Whether booking accepts ``slot``'s time: not today's hours already gone, nor past the horizon."""
    return now < slot.start <= now + timedelta(days=settings.BOOKING_HORIZON_DAYS)


def move_times(
    visit: Visit,
    clinic: Clinic,
    *,
    any_clinician: bool = False,
    first: date | None = None,
    days: int | None = None,
    keep_team: bool = False,
) -> MoveTimes:
    """Times ``visit`` may move to in the window opening on ``first`` (default: around its date).

    ``days``: the window's length (default WINDOW_DAYS); ``keep_team``: only
    times its whole team is free for (a care plan's visit always keeps it).

    A fixed number of queries for the window, plus what the registered booking
    rules ask about each time they judge, unless they judge a whole window at
    once (``scheduler.booking.rules_for_times``), as the plans app's gates do.
    """
    tz = clinic.tz
    now = timezone.now()
    if first is None:
        first = timezone.localtime(visit.start, tz).date() - timedelta(days=DAYS_BEFORE)
    times = window(clinic, first, now, days)
    planned = times.planned = planned_visit(visit)
    if not visit.is_open:
        return times

    # Patients keep their clinician unless the desk asks for anyone's times. A
    # visit of a care plan always does: plans.care_plans.move_planned_visit
    # keeps its clinician.
    # The rest of the team stays where they are free; a care plan's visit
    # keeps its whole team (plans.care_plans.move_planned_visit moves it as is).
    clinicians = None if any_clinician and not planned else [visit.clinician]
    team = [part.clinician for part in visit.staff if not part.is_lead]
    availability = Availability.for_days(
        clinic,
        times.first,
        times.last,
        patients=[visit.patient],
        ignore_visits=[visit.pk],  # the visit does not stand in its own way
        # The visits of the people and rooms the search asks about, not every
        # clinician's (16,000 busy times a fortnight at full scale).
        lazy=True,
    )
    availability.load(
        [visit.clinician, *team],
        list(availability.rooms.values()),
        availability.start,
        availability.end,
    )
    free = [
        slot
        for slot in availability.free_slots(
            visit.visit_type,
            times.first,
            times.last,
            clinicians=clinicians,
            patient=visit.patient,
            step=STEP,
            prefer_staff=team,
        )
        if bookable(slot, now)
        and not _where_it_is(visit, slot)
        and (not (planned or keep_team) or [member.clinician for member in slot.staff] == team)
    ]
    free.sort(key=lambda slot: (abs(slot.start - visit.start), slot.start))
    step_rules = care_plans.window_rules(planned, tz) if planned else lambda start: []
    starts = [slot.start for slot in free] or [visit.start]
    booking_rules = booking.rules_for_times(visit, min(starts), max(starts))
    offer(
        times,
        free,
        lambda slot: step_rules(slot.start) or booking_rules(moved_to(visit, slot)),
        clinic,
        now,
    )
    return times


def offer(
    times: MoveTimes,
    free: list[Slot],
    objections: Callable[[Slot], list[str]],
    clinic: Clinic,
    now: datetime,
) -> None:
    """Offer in ``times`` the ``free`` slots (best first) nothing objects to, at most SLOT_LIMIT.

    ``objections`` says what the rules have against a slot. When none is
    offered, ``times.refusals`` says why, in the rules' words; when more were
    free than offered, the window narrows to the days the offered times cover.
    """
    today, last_bookable_day = _bookable_days(clinic, now)
    refusals: dict[str, None] = {}  # ordered and distinct
    for slot in free:
        if len(times.slots) == SLOT_LIMIT:
            times.more = True  # the rest, farther from the best, are not judged
            break
        problems = objections(slot)
        if problems:
            refusals.update(dict.fromkeys(problems))
        else:
            times.slots.append(slot)
    times.slots.sort(key=lambda slot: (slot.start, slot.clinician.display_name))
    if not times.slots:
        times.refusals = list(refusals)[:REASONS_SHOWN]
    elif times.more:
        # The times offered are every good time within some distance of the
        # best: the window is the days they cover, and the windows either
        # side start from its edges (whose days may hold more times).
        times.first = times.slots[0].start.date()
        times.last = times.slots[-1].start.date()
        times.earlier = (
            max(today, times.first - timedelta(days=WINDOW_DAYS - 1))
            if times.first > today
            else None
        )
        times.later = times.last if times.last < last_bookable_day else None


def _where_it_is(visit: Visit, slot: Slot) -> bool:
    return (slot.start, slot.clinician.pk, slot.room) == (
        visit.start,
        visit.clinician_id,
        visit.room,
    )


def moved_to(visit: Visit, slot: Slot) -> Visit:
    """The visit as a move to ``slot`` (or a booking at it) would save it, for the booking rules to judge."""
    moved = copy.copy(visit)  # keeps what was loaded with it (its plan, type, patient)
    moved.start, moved.end = slot.start, slot.end
    moved.clinician, moved.room = slot.clinician, slot.room
    return moved
