"""Schedule and Slot: whose time can be booked, and when it is free or busy.

A Schedule is a clinician's (``practitioner-<pk>``) or a room's
(``room-<pk>``). Slots are not stored: they are worked out for the days
asked from what decides bookings (``scheduler.availability``): busy times
are the visits holding the person or the room, imported busy times from a
clinician's own calendar, time off, the clinic's closures and public
holidays; free times are SLOT_MINUTES cells inside the clinic's hours (and
the clinician's) that nothing holds. A slot's id says whose, when and how
long, so reading it again recomputes it (docs/fhir-scheduling.md).

Both types live outside the generic views (their rows are not one table):
fhirapi/schedule_views.py searches and reads them.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from fhirapi.http import FhirError, instant
from fhirapi.resources import ResourceType, reference, register
from fhirapi.resources.appointments import VISIT_TYPE_SYSTEM
from fhirapi.search import SearchParam
from scheduler.availability import Availability, wall_clock_grid
from scheduler.diary import EVER
from scheduler.models import Clinic, Clinician, Modality, Room, VisitType, is_row_id

SLOT_MINUTES = 30
SLOT = timedelta(minutes=SLOT_MINUTES)
MOST_SLOT_DAYS = 31  # a Slot search covers at most this many days
WHOLE_DAY = ((time.min, time.max),)
FREE, BUSY, UNAVAILABLE = "free", "busy", "busy-unavailable"


def _in_python(value: str, modifier: str | None) -> Q:
    # Schedules and slots are filtered as lists (fhirapi/schedule_views.py); the
    # parameter is declared for the CapabilityStatement and the paging links.
    return Q()


@dataclass(frozen=True)
class Owner:
    """Whose schedule: a clinician's or a room's."""

    kind: str  # "practitioner" or "room"
    row: Clinician | Room

    @property
    def schedule_id(self) -> str:
        return f"{self.kind}-{self.row.pk}"

    @property
    def actor(self) -> dict:
        if self.kind == "room":
            return reference("Location", f"room-{self.row.pk}", self.row.name)
        return reference("Practitioner", self.row.pk, self.row.display_name)

    @property
    def active(self) -> bool:
        return self.kind == "room" or self.row.is_active


def owners(clinic: Clinic, schedule_ids: list[str] | None = None) -> list[Owner]:
    """The clinic's schedules (only those named, if ``schedule_ids``): two queries."""
    wanted = {"practitioner": None, "room": None}
    if schedule_ids is not None:
        wanted = {"practitioner": set(), "room": set()}
        for schedule_id in schedule_ids:
            kind, _, pk = schedule_id.partition("-")
            if kind in wanted and is_row_id(pk):
                wanted[kind].add(int(pk))
    found = []
    for kind, model in (("practitioner", Clinician), ("room", Room)):
        if wanted[kind] is not None and not wanted[kind]:
            continue
        rows = model.objects.filter(clinic=clinic).order_by("pk")
        if wanted[kind] is not None:
            rows = rows.filter(pk__in=wanted[kind])
        if model is Room:
            rows = rows.prefetch_related("capabilities")
        found += [Owner(kind, row) for row in rows]
    return found


def find_owner(clinic: Clinic, schedule_id: str) -> Owner:
    found = owners(clinic, [schedule_id])
    if not found:
        raise FhirError(404, "not-found", f"There is no Schedule/{schedule_id}.")
    return found[0]


def services(owner: Owner, visit_types: list[VisitType]) -> list[VisitType]:
    """The visit types a clinician may lead, or a room can hold."""
    if owner.kind == "practitioner":
        return [t for t in visit_types if t.lead_seat and t.lead_seat.role_of(owner.row)]
    capabilities = {c.pk for c in owner.row.capabilities.all()}
    return [
        t
        for t in visit_types
        if t.modality == Modality.IN_PERSON
        and (t.room_capability_id is None or t.room_capability_id in capabilities)
    ]


@register
class ScheduleType(ResourceType):
    name = "Schedule"
    profile = "http://hl7.org/fhir/StructureDefinition/Schedule"
    search_params = {
        "_id": SearchParam("token", _in_python, "practitioner-<id> or room-<id>."),
        "actor": SearchParam("reference", _in_python, "Practitioner/<id> or Location/room-<id>."),
        "active": SearchParam("token", _in_python, "true or false."),
    }

    def to_fhir(self, owner: Owner, visit_types: list[VisitType] = ()) -> dict[str, Any]:
        now = timezone.now()
        resource = {
            "resourceType": "Schedule",
            "id": owner.schedule_id,
            "meta": self.meta(owner.row),
            "active": owner.active,
            "actor": [owner.actor],
            "planningHorizon": {
                "start": instant(now),
                "end": instant(now + timedelta(days=settings.BOOKING_HORIZON_DAYS)),
            },
            "comment": "Free and busy times: Slot?schedule=Schedule/"
            f"{owner.schedule_id}&start=ge<date>&start=lt<date>.",
        }
        if kinds := services(owner, list(visit_types)):
            resource["serviceType"] = [
                {
                    "coding": [{"system": VISIT_TYPE_SYSTEM, "code": str(t.pk), "display": t.name}],
                    "text": t.name,
                }
                for t in kinds
            ]
        return resource


@dataclass(frozen=True)
class SlotTime:
    """A free or busy span of one schedule, as a Slot."""

    schedule_id: str
    start: datetime
    end: datetime
    status: str

    @property
    def slot_id(self) -> str:
        minutes = int((self.end - self.start).total_seconds() // 60)
        return f"{self.schedule_id}.{self.start.astimezone(UTC):%Y%m%dT%H%MZ}.{minutes}"

    def to_fhir(self) -> dict[str, Any]:
        return {
            "resourceType": "Slot",
            "id": self.slot_id,
            "schedule": reference("Schedule", self.schedule_id),
            "status": self.status,
            "start": instant(self.start),
            "end": instant(self.end),
        }


def in_reach(start: datetime, end: datetime) -> bool:
    """Whether [start, end) lies where availability can look (it reads a day either side)."""
    return EVER[0] + timedelta(days=2) <= start and end <= EVER[1] - timedelta(days=2)


def checked_window(
    low: datetime, high: datetime, *, most_days: int, what: str, expression: str
) -> tuple[datetime, datetime]:
    """[low, high) when it is a window a search may look at: not empty, within what
    availability can read, at most ``most_days`` long; else a 400 naming ``what``."""
    if high <= low:
        raise FhirError(
            400,
            "invalid",
            f"{what} is empty: its end must come after its start.",
            expression=expression,
        )
    if not in_reach(low, high):
        raise FhirError(400, "invalid", f"{what} is out of reach.", expression=expression)
    if high - low > timedelta(days=most_days):
        raise FhirError(
            400,
            "too-costly",
            f"{what} may cover at most {most_days} days; ask for a shorter one.",
            expression=expression,
        )
    return low, high


def parse_slot_id(slot_id: str) -> tuple[str, datetime, timedelta]:
    """(schedule id, start, length) a slot id names; 404 when it names none."""
    try:
        schedule_id, moment, minutes = slot_id.split(".")
        start = datetime.strptime(moment, "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
        length = timedelta(minutes=int(minutes))
    except (ValueError, OverflowError):
        length = None
    # No slot is longer than a search could return (a closure of weeks at most).
    if (
        length is None
        or not timedelta(0) < length <= timedelta(days=MOST_SLOT_DAYS)
        or not in_reach(start, start + length)
    ):
        raise FhirError(404, "not-found", f"There is no Slot/{slot_id}.")
    return schedule_id, start, length


@register
class SlotType(ResourceType):
    name = "Slot"
    profile = "http://hl7.org/fhir/StructureDefinition/Slot"
    search_params = {
        "schedule": SearchParam(
            "reference", _in_python, "Schedule/<id> (required; comma for several)."
        ),
        "start": SearchParam(
            "date",
            _in_python,
            f"Required both ways (ge/gt and lt/le), at most {MOST_SLOT_DAYS} days apart.",
        ),
        "status": SearchParam("token", _in_python, "free, busy or busy-unavailable."),
    }


def _days(tz, start: datetime, end: datetime) -> Iterator[date]:
    day, last = start.astimezone(tz).date(), (end - timedelta(microseconds=1)).astimezone(tz).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


def slot_times(clinic: Clinic, owner: Owner, start: datetime, end: datetime) -> list[SlotTime]:
    """The free and busy slots of ``owner``'s schedule starting in [start, end), by start.

    Loaded in a fixed number of queries (``Availability`` for that one
    person or room) whatever the number of days or visits.
    """
    person = owner.row if owner.kind == "practitioner" else None
    room = owner.row if owner.kind == "room" else None
    availability = Availability(
        clinic,
        start,
        end,
        clinicians=[person] if person else [],
        rooms=[room] if room else [],
    )
    tz = clinic.tz
    closed = [
        (UNAVAILABLE, availability.closures.overlapping(start, end)),
        (UNAVAILABLE, availability.holidays.overlapping(start, end)),
    ]
    if person:
        closed += [
            (BUSY, availability.clinician_visits[person.pk].overlapping(start, end)),
            (BUSY, availability.own_calendar_busy[person.pk].overlapping(start, end)),
            (UNAVAILABLE, availability.time_off[person.pk].overlapping(start, end)),
        ]
    else:
        closed.append((BUSY, availability.room_visits[room.pk].overlapping(start, end)))
    found = {
        SlotTime(owner.schedule_id, busy.start, busy.end, status)
        for status, spans in closed
        for busy in spans
        if start <= busy.start < end
    }
    for day in _days(tz, start, end):
        if person:
            grid = availability.candidate_starts(person, day, SLOT)
        else:
            hours = tuple(availability.opening_hours.get(day.weekday(), ()))
            grid = wall_clock_grid(tz, hours, WHOLE_DAY, day, SLOT)
        for moment in grid:
            if not start <= moment < end:
                continue
            if _free(availability, person, room, moment, moment + SLOT):
                found.add(SlotTime(owner.schedule_id, moment, moment + SLOT, FREE))
    return sorted(found, key=lambda slot: (slot.start, slot.end, slot.status))


def _free(availability: Availability, person, room, start: datetime, end: datetime) -> bool:
    if not availability.clinic_open(start, end):
        return False
    if person:
        return availability.person_free(person, start, end)
    return availability.room_visits[room.pk].first_overlap(start, end) is None
