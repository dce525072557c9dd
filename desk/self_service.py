"""What a patient may change from their own page: move a visit to another offered time, cancel it.

The clinic decides (``Clinic``): which visit types patients may change
(``VisitType.patients_may_change``: not screening; dosing sessions only when
the clinic allows it), how close to a visit changes online stop
(``self_service_notice_hours``, for the visit's time and for the new one),
how many times one visit may be moved online (``self_service_moves``), and
when a cancellation is late (``late_cancellation_hours``, with the policy
text shown before the patient confirms).

A move keeps the visit's whole team and every rule of the patient's protocol:
the times offered are the desk's (``desk.moves.move_times``: free for the team,
a room and the patient, inside the care plan's window, allowed by the booking
rules such as dose spacing and the weekly maximum), less those too close, and
less those where a visit timed from this one (the integration after a dose)
would have to move along to a time that is not free. A time posted that was not
offered is refused with the rule it breaks, and the move itself is checked
again by booking (a time taken meanwhile is refused, not double-booked).
"""

import copy
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext

from desk.moves import MoveTimes, move_times, planned_visit
from plans.care_plans import followers_moving, move_planned_visit, window_rules
from plans.models import PlannedVisit
from scheduler import booking
from scheduler.availability import Availability, Slot
from scheduler.booking import BookingError
from scheduler.models import OPEN_STATUSES, Visit

# Words for a patient, not the desk's: no clinician's diary, no other patient.
# Marked here, translated where it is given (``_(NOT_FREE)``): in the patient's
# language, which these pages run in (desk.patient_page.link_patient).
NOT_FREE = gettext_noop("That time is no longer free. Please choose another.")


@dataclass
class Along:
    """A visit that moves with the one the patient moves (an integration timed from a dose)."""

    visit: Visit  # as it is now
    start: datetime  # where it would go
    end: datetime


@dataclass
class Offer:
    """A time offered to the patient, with what would move along with the visit."""

    slot: Slot
    along: list[Along] = field(default_factory=list)


@dataclass
class PatientMoveTimes:
    times: MoveTimes
    offers: list[Offer]


def _notice(visit: Visit) -> timedelta:
    return timedelta(hours=visit.clinic.self_service_notice_hours)


def why_not_changeable(visit: Visit, now: datetime | None = None) -> str | None:
    """Why the patient cannot move or cancel ``visit`` from their page, in their words; None if they can."""
    now = now or timezone.now()
    clinic = visit.clinic
    call = _("Please call us to change it: %(phone)s.") % {"phone": clinic.phone}
    if visit.status not in OPEN_STATUSES or visit.start <= now:
        return _("This visit can no longer be changed online.") + f" {call}"
    if not visit.visit_type.patients_may_change:
        return (
            _("The clinic changes %(visit_type)s visits itself.") % {"visit_type": visit.visit_type}
            + f" {call}"
        )
    if visit.start - now < _notice(visit):
        return (
            _("Visits can be changed online until %(hours)s hours before they start.")
            % {"hours": clinic.self_service_notice_hours}
            + f" {call}"
        )
    return None


def why_not_movable(visit: Visit, now: datetime | None = None) -> str | None:
    """``why_not_changeable``, and whether the visit was moved online as often as the clinic allows."""
    refusal = why_not_changeable(visit, now)
    if refusal:
        return refusal
    clinic = visit.clinic
    if visit.moves_by_patient >= clinic.self_service_moves:
        times = clinic.self_service_moves
        return (
            ngettext(
                "This visit has been moved online %(times)s time, the most the clinic allows.",
                "This visit has been moved online %(times)s times, the most the clinic allows.",
                times,
            )
            % {"times": times}
            + " "
            + _("Please call us to change it: %(phone)s.") % {"phone": clinic.phone}
        )
    return None


def is_late(visit: Visit, now: datetime | None = None) -> bool:
    """Whether cancelling ``visit`` now is late by the clinic's policy."""
    now = now or timezone.now()
    return visit.start - now < timedelta(hours=visit.clinic.late_cancellation_hours)


def offered_times(
    visit: Visit, first: date | None = None, *, days: int | None = None, now: datetime | None = None
) -> PatientMoveTimes:
    """The times the patient may move ``visit`` to in the window opening on ``first`` (``days`` long)."""
    now = now or timezone.now()
    times = move_times(visit, visit.clinic, first=first, days=days, keep_team=True)
    soonest = now + _notice(visit)
    slots = [slot for slot in times.slots if slot.start >= soonest]
    planned = times.planned
    offers = _with_followers(visit, planned, slots) if planned else [Offer(s) for s in slots]
    return PatientMoveTimes(times, offers)


def _with_followers(visit: Visit, planned: PlannedVisit, slots: list[Slot]) -> list[Offer]:
    """Offers for ``slots``, each with the visits that move along; none where one of those cannot.

    A follower keeps its team and room at its new time: one Availability for
    every time asked about, the visit itself held at each candidate in turn.
    """
    followers = list(planned.followers.select_related("visit__visit_type", "step"))
    moving = {slot: followers_moving(planned, slot.start, followers) for slot in slots}
    starts = [start for along in moving.values() for _, start in along]
    if not starts:
        return [Offer(slot) for slot in slots]
    clinic = visit.clinic
    tz = clinic.tz
    availability = Availability.for_days(
        clinic,
        min([*starts, *(s.start for s in slots)]).astimezone(tz).date(),
        max(starts).astimezone(tz).date() + timedelta(days=1),
        patients=[visit.patient],
        ignore_visits=[visit.pk, *(f.visit_id for f in followers)],
    )
    rules = {
        f.visit_id: booking.rules_for_times(f.visit, min(starts), max(starts)) for f in followers
    }
    offers = []
    for slot in slots:
        place = (visit.visit_type, slot.clinician, slot.room, visit.patient, slot.start, slot.end)
        availability.reserve(*place, staff=slot.staff)
        along = [
            Along(follower.visit, start, start + (follower.visit.end - follower.visit.start))
            for follower, start in moving[slot]
        ]
        fits = all(_fits_at(availability, rules, item) for item in along)
        availability.release(*place, staff=slot.staff)
        if fits:
            offers.append(Offer(slot, along))
    return offers


def _fits_at(availability: Availability, rules, along: Along) -> bool:
    """Whether ``along.visit`` fits at its new time with its team and room, by every booking rule."""
    moved = copy.copy(along.visit)
    moved.start, moved.end = along.start, along.end
    return availability.fits(
        moved.visit_type,
        moved.clinician,
        moved.room,
        moved.patient,
        moved.start,
        moved.end,
        booking.staff_of(moved),  # its team as it is
    ) and not rules[moved.pk](moved)


def offer_at(
    visit: Visit, start: datetime, now: datetime | None = None
) -> tuple[Offer | None, list[str]]:
    """The offer of ``start`` to the patient, or None and why not in their words."""
    now = now or timezone.now()
    refusal = why_not_movable(visit, now)
    if refusal:
        return None, [refusal]
    clinic = visit.clinic
    if start < now + _notice(visit):
        return None, [
            _("Times less than %(hours)s hours away cannot be chosen online.")
            % {"hours": clinic.self_service_notice_hours}
        ]
    day = timezone.localdate(start, timezone=clinic.tz)
    offers = offered_times(visit, first=day, days=1, now=now).offers
    offer = next((offer for offer in offers if offer.slot.start == start), None)
    if offer is not None:
        return offer, []
    return None, _rules_against(visit, start) or [_(NOT_FREE)]


def _rules_against(visit: Visit, start: datetime) -> list[str]:
    """What the care plan's window and the booking rules (dose spacing, ...) say against ``start``."""
    planned = planned_visit(visit)
    if planned and (problems := window_rules(planned, visit.clinic.tz)(start)):
        return problems
    moved = copy.copy(visit)
    moved.start, moved.end = start, start + (visit.end - visit.start)
    return booking.rules_for_times(visit, start, moved.end)(moved)


def move_by_patient(visit: Visit, start: datetime, now: datetime | None = None) -> list[Visit]:
    """Move ``visit`` to ``start`` for the patient, with what must move along; every visit moved.

    Raises BookingError with the patient's words when the time is not one they
    may choose, or is taken meanwhile; then nothing moves.
    """
    now = now or timezone.now()
    with transaction.atomic():
        current = booking.locked(visit)
        offer, problems = offer_at(current, start, now)
        if offer is None:
            raise BookingError(problems)
        slot = offer.slot
        try:
            if planned_visit(current):
                moved = move_planned_visit(current, start, room=slot.room)
            else:
                moved = [booking.move(current, start=start, room=slot.room)]
        except BookingError as error:
            raise BookingError([_(NOT_FREE)]) from error
        Visit.objects.filter(pk=current.pk).update(
            moves_by_patient=F("moves_by_patient") + 1, changed_by_patient_at=now
        )
    visit.refresh_from_db()
    return moved


def cancel_by_patient(visit: Visit, now: datetime | None = None) -> Visit:
    """Cancel ``visit`` for the patient, marked late when the clinic's policy says so."""
    now = now or timezone.now()
    with transaction.atomic():
        current = booking.locked(visit)
        refusal = why_not_changeable(current, now)
        if refusal:
            raise BookingError([refusal])
        late = is_late(current, now)
        booking.cancel(
            current,
            "Cancelled by the patient online" + (" (late)" if late else ""),
            late=late,
            changed_by_patient_at=now,
        )
    visit.refresh_from_db()
    return visit
