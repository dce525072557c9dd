"""Whether a visit fits, and where the free slots are.

(Searches read ``.id`` rather than ``.pk`` where they ask thousands of times:
``pk`` is a property call each time.)

``Availability`` loads everything a decision needs for one clinic and one window
of time in a fixed number of queries (hours, closures, public holidays,
clinicians' hours, time off and busy times from their own calendars, rooms, and
the visits that hold clinicians, rooms and patients; a patient's telehealth and
in-clinic visits are kept the clinic's travel gap apart). Booking uses it to
validate one visit; slot search and plan generation use it to test thousands of
candidate times without another query.
"""

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import accumulate

from django.db.models import CharField, Value
from django.utils import timezone

from scheduler.diary import (
    DAY,
    LONGEST_VISIT,
    PARTICIPATIONS,
    ROOM_VISITS,
    Busy,
    Diary,
    busy_by_resource,
    busy_rows,
    current_diary,
    day_span,
    days_touched,
    not_among,
    read_rows,
    sql_in,
)
from scheduler.models import (
    BLOCKING_STATUSES,
    BusyBlock,
    Clinic,
    Clinician,
    Closure,
    ClosureKind,
    Member,
    Modality,
    Patient,
    Room,
    Seat,
    TimeOff,
    Visit,
    VisitType,
    Weekday,
    WorkingHours,
    lead_of,
)
from scheduler.public_holidays import holidays_between
from scheduler.timezones import LocalTimeError, local_datetime


class Timeline:
    """Busy intervals of one resource, answering "what overlaps [start, end)?" by bisection.

    Intervals may overlap one another (time off, closures, imported busy blocks),
    so a running maximum of end times bounds the backward scan.
    """

    def __init__(self, intervals: Iterable[Busy] = ()):
        self.intervals = sorted(intervals)  # by start, then end
        self.starts = [busy.start for busy in self.intervals]
        self.max_ends = list(accumulate((busy.end for busy in self.intervals), max))

    def overlapping(self, start: datetime, end: datetime) -> Iterator[Busy]:
        index = bisect_left(self.starts, end) - 1
        while index >= 0 and self.max_ends[index] > start:
            busy = self.intervals[index]
            if busy.end > start:
                yield busy
            index -= 1

    def first_overlap(self, start: datetime, end: datetime) -> Busy | None:
        return next(self.overlapping(start, end), None)

    def covers(self, start: datetime, end: datetime) -> bool:
        """Whether one interval holds all of [start, end)."""
        return any(busy.start <= start and end <= busy.end for busy in self.overlapping(start, end))

    def add(self, busy: Busy) -> None:
        index = bisect_left(self.starts, busy.start)
        self.intervals.insert(index, busy)
        self.starts.insert(index, busy.start)
        self.max_ends = list(accumulate((b.end for b in self.intervals), max))

    def remove(self, busy: Busy) -> None:
        """Take out one interval equal to ``busy`` (one that ``add`` put in)."""
        index = self.intervals.index(busy, bisect_left(self.starts, busy.start))
        del self.intervals[index], self.starts[index]
        self.max_ends = list(accumulate((b.end for b in self.intervals), max))


class DayTimeline:
    """Visits holding one person, room or patient, kept by the UTC days they touch
    (scheduler.diary numbers them): a day's visits come in at once, as the diary
    keeps them, and "what overlaps [start, end)?" looks at the day or two that
    span touches, a handful of visits each.

    A day's list may be the diary's own, shared until this timeline changes it.
    Answers as ``Timeline`` does: of several overlaps, the latest first.
    """

    __slots__ = ("days", "shared")

    def __init__(self):
        self.days: dict[int, list[Busy]] = {}
        self.shared: set[int] = set()

    def put_day(self, day: int, intervals: list[Busy]) -> None:
        """Every interval touching ``day``, at once (kept as given until changed)."""
        if day in self.days:
            self._own(day).extend(intervals)
        else:
            self.days[day] = intervals
            self.shared.add(day)

    def _own(self, day: int) -> list[Busy]:
        if day in self.shared or day not in self.days:
            self.days[day] = list(self.days.get(day, ()))
            self.shared.discard(day)
        return self.days[day]

    def extend(self, intervals: Iterable[Busy]) -> None:
        for busy in intervals:
            self.add(busy)

    def add(self, busy: Busy) -> None:
        for day in days_touched(busy.start, busy.end):
            self._own(day).append(busy)

    def remove(self, busy: Busy) -> None:
        """Take out one interval equal to ``busy`` (one that ``add`` put in)."""
        for day in days_touched(busy.start, busy.end):
            self._own(day).remove(busy)

    def overlapping(self, start: datetime, end: datetime) -> Iterator[Busy]:
        found = {
            busy
            for day in days_touched(start, end)
            for busy in self.days.get(day, ())
            if busy.start < end and start < busy.end
        }
        return iter(sorted(found, reverse=True))

    def first_overlap(self, start: datetime, end: datetime) -> Busy | None:
        latest = None
        for day in days_touched(start, end):
            for busy in self.days.get(day, ()):
                if busy.start < end and start < busy.end and (latest is None or busy > latest):
                    latest = busy
        return latest


# A problem a search does not word (Availability._problems with ``words=False``).
UNWORDED = "(not worded)"


class Conflict(str):
    """A problem that is an overlap with another visit (as opposed to hours, roles, rooms)."""


class RoomProblem(str):
    """A problem with the room only: another room may do."""


class RoomConflict(Conflict, RoomProblem):
    """The room is taken by another visit."""


@dataclass(frozen=True)
class Slot:
    """A free place for a visit; ``start`` and ``end`` are in the clinic's zone."""

    start: datetime
    end: datetime
    clinician: Clinician  # the lead
    room: Room | None
    staff: tuple[Member, ...] = ()  # the rest of the team, in their places


def format_span(start: datetime, end: datetime, tz, on: date | None = None) -> str:
    """'10:00-12:00' in ``tz``, with the date when it is not ``on``."""
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    text = f"{local_start:%H:%M}-{local_end:%H:%M}"
    if local_end.date() != local_start.date():
        text = f"{local_start:%H:%M}-{local_end:%Y-%m-%d %H:%M}"
    if local_start.date() != on:
        text = f"{local_start:%a %Y-%m-%d} {text}"
    return text


OWN_CALENDAR = "own_calendar"

READ_AHEAD_CLINICIANS = 4
CLINICIAN_BLOCK_DAYS = 28
ROOM_BLOCK_DAYS = 14


def _blocks(days: range, size: int) -> range:
    """``days`` widened to whole blocks of ``size`` days.

    Blocks are fixed (counted from DAY_ZERO), not counted from the day asked
    for: which blocks a search loads depends on the days it looks at, not on
    where in them the free slots happened to be.
    """
    return range(days.start - days.start % size, days.stop + (-days.stop) % size)


def _absences(clinician_ids: list[int], start: datetime, end: datetime):
    """(clinician id, start, end, reason, source) of time off and imported busy times.

    One query for both (a UNION), so loading availability costs no more with
    external calendars than without.
    """
    if not clinician_ids:
        return []
    text = CharField()
    time_off = (
        TimeOff.objects.filter(clinician__in=clinician_ids, start__lt=end, end__gt=start)
        .annotate(source=Value("time_off", output_field=text))
        .values_list("clinician_id", "start", "end", "reason", "source")
        .order_by()  # a UNION's parts may not be ordered (Meta.ordering is)
    )
    busy = (
        BusyBlock.objects.filter(clinician__in=clinician_ids, start__lt=end, end__gt=start)
        .annotate(
            reason=Value("", output_field=text), source=Value(OWN_CALENDAR, output_field=text)
        )
        .values_list("clinician_id", "start", "end", "reason", "source")
        .order_by()
    )
    return time_off.union(busy, all=True)


def _without(busy: Busy, holes: Iterable[Busy]) -> list[Busy]:
    """What is left of ``busy`` once the ``holes`` are cut out of it."""
    pieces = [busy]
    for hole in holes:
        left = []
        for piece in pieces:
            if hole.end <= piece.start or piece.end <= hole.start:
                left.append(piece)
                continue
            if piece.start < hole.start:
                left.append(piece._replace(end=hole.start))
            if hole.end < piece.end:
                left.append(piece._replace(start=hole.end))
        pieces = left
    return pieces


def closed_times(clinic: Clinic, start: datetime, end: datetime) -> tuple[Timeline, Timeline]:
    """The clinic's own closures, and its public holidays, touching [start, end): one query.

    A holiday is its whole local day, less the spans a closure row of kind
    *open* gives back (labelled with the holiday's name). Opening anyway lifts
    only a holiday: the weekly hours and the clinic's own closures still hold.
    """
    closed, opened = [], []
    for row in Closure.objects.filter(clinic=clinic, start__lt=end, end__gt=start):
        (opened if row.kind == ClosureKind.OPEN else closed).append(
            Busy(row.start, row.end, row.reason)
        )
    tz = clinic.tz
    first, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    holidays = []
    for day, name in holidays_between(clinic.country, clinic.subdivision, first, last).items():
        midnight = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
        next_midnight = datetime.combine(day + DAY, time(0), tzinfo=tz).astimezone(UTC)
        holidays += _without(Busy(midnight, next_midnight, name), opened)
    return Timeline(closed), Timeline(holidays)


def closures_on(clinic: Clinic, day: date) -> list[str]:
    """What closes the clinic on local ``day``, or opens it on a holiday, in words: one query.

    For the desk's day page: "Public holiday: Thanksgiving Day. The clinic is
    closed.", "... Open anyway 09:00-13:00 (reason).", "Closed 15:00-18:00 (reason)."
    """
    tz = clinic.tz
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + DAY, time(0), tzinfo=tz).astimezone(UTC)
    rows = Closure.objects.filter(clinic=clinic, start__lt=end, end__gt=start)

    def spans(kind: str) -> list[str]:
        return [
            format_span(row.start, row.end, tz, day) + (f" ({row.reason})" if row.reason else "")
            for row in rows
            if row.kind == kind
        ]

    notes = []
    holiday = holidays_between(clinic.country, clinic.subdivision, day, day).get(day)
    if holiday:
        opened = spans(ClosureKind.OPEN)
        notes.append(
            f"Public holiday: {holiday}. "
            + (f"Open anyway {', '.join(opened)}." if opened else "The clinic is closed.")
        )
    notes += [f"Closed {span}." for span in spans(ClosureKind.CLOSED)]
    return notes


def _extend(timelines: dict, new: dict[int, list[Busy]]) -> None:
    """Add each key's intervals in ``new`` to the key's timeline."""
    for key, intervals in new.items():
        timelines[key].extend(intervals)


def _weekly(rows) -> dict[int, list[tuple[time, time]]]:
    """{weekday: [(opens, closes), ...]} from (weekday, opens, closes) rows."""
    week = defaultdict(list)
    for weekday, opens, closes in rows:
        week[weekday].append((opens, closes))
    for intervals in week.values():
        intervals.sort()
    return week


def _describe_week(intervals: list[tuple[time, time]]) -> str:
    return ", ".join(f"{opens:%H:%M}-{closes:%H:%M}" for opens, closes in intervals)


def _within(week, local_start: datetime, local_end: datetime) -> bool:
    if local_end.date() != local_start.date() and local_end.time() != time(0):
        return False
    end_time = local_end.time() if local_end.date() == local_start.date() else time.max
    return any(
        opens <= local_start.time() and end_time <= closes
        for opens, closes in week.get(local_start.weekday(), ())
    )


@lru_cache(maxsize=8192)
def local_day(tz, day: date) -> tuple[datetime, datetime]:
    """The UTC instants local ``day`` begins and ends in ``tz`` (kept: asked thousands of times)."""
    return (
        datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC),
        datetime.combine(day + DAY, time(0), tzinfo=tz).astimezone(UTC),
    )


@lru_cache(maxsize=8192)
def wall_clock_grid(
    tz, opening_hours: tuple, working_hours: tuple, day: date, step: timedelta
) -> tuple[datetime, ...]:
    """The UTC instants on local ``day`` at ``step`` intervals of wall-clock time
    within both ``opening_hours`` and ``working_hours`` ((opens, closes) pairs).

    Kept for the process: every plan and page asks for the same few hours on
    the same days (clinicians with equal hours share an entry), and working
    out a day's instants through its time zone is a tenth of a plan's time.
    """
    instants = []
    for opens, closes in opening_hours:
        for works_from, works_until in working_hours:
            begin, finish = max(opens, works_from), min(closes, works_until)
            if begin >= finish:
                continue
            wall = datetime.combine(day, begin)
            while wall.time() < finish and wall.date() == day:
                for fold in (0, 1):
                    try:
                        instant = local_datetime(day, wall.time(), tz, fold=fold)
                    except LocalTimeError:
                        break
                    # Arithmetic on aware datetimes of one zone is wall-clock
                    # arithmetic in Python; durations must be added in UTC.
                    instants.append(instant.astimezone(UTC))
                    if instant.replace(fold=1).utcoffset() == instant.replace(fold=0).utcoffset():
                        break
                wall += step
    return tuple(instants)


# How far around now a kept set-up reaches (closures, holidays, time off):
# plans look weeks to months ahead.
SETUP_KEPT_BEFORE = timedelta(days=2)
SETUP_KEPT_AFTER = timedelta(days=400)


@dataclass
class ClinicSetup:
    """What decides visits at a clinic over [start, end) besides the visits:
    opening hours, closures, public holidays, clinicians with their hours, time
    off and own-calendar busy times, rooms with what they offer.

    Read in seven queries; a lazy Availability keeps one for the process in
    its diary (scheduler.diary) until a set-up table is written.
    """

    start: datetime
    end: datetime
    opening_hours: dict
    closures: Timeline
    holidays: Timeline
    clinicians: dict[int, Clinician]
    working_hours: dict[int, dict]
    time_off: dict[int, Timeline]
    own_calendar_busy: dict[int, Timeline]
    rooms: dict[int, Room]
    room_capabilities: dict[int, set[int]]

    @classmethod
    def read(cls, clinic: Clinic, start, end, clinicians=None, rooms=None) -> "ClinicSetup":
        """``clinicians`` and ``rooms``: only these (default: all of the clinic's)."""
        opening_hours = _weekly(
            clinic.opening_hours.values_list("weekday", "opens", "closes").order_by()
        )
        closures, holidays = closed_times(clinic, start, end)

        # Rows as values, not as objects: a clinic of a hundred clinicians has
        # hundreds of weekly rows, and this runs for every plan and page.
        clinician_rows = Clinician.objects.filter(clinic=clinic)
        if clinicians is not None:
            clinician_rows = clinician_rows.filter(pk__in=[c.pk for c in clinicians])
        people = {c.pk: c for c in clinician_rows}
        hours = defaultdict(list)
        for clinician_id, *row in (
            WorkingHours.objects.filter(clinician__in=list(people))
            .values_list("clinician_id", "weekday", "opens", "closes")
            .order_by()
        ):
            hours[clinician_id].append(row)
        off, busy = defaultdict(list), defaultdict(list)
        for clinician_id, start_, end_, reason, source in _absences(list(people), start, end):
            (busy if source == OWN_CALENDAR else off)[clinician_id].append(
                Busy(start_, end_, reason)
            )

        room_rows = Room.objects.filter(clinic=clinic)
        if rooms is not None:
            room_rows = room_rows.filter(pk__in=[r.pk for r in rooms])
        places = {r.pk: r for r in room_rows}
        capabilities = {pk: set() for pk in places}
        for room_id, capability_id in (
            Room.capabilities.through.objects.filter(room__in=list(places))
            .values_list("room_id", "capability_id")
            .order_by()
        ):
            capabilities[room_id].add(capability_id)
        return cls(
            start,
            end,
            opening_hours,
            closures,
            holidays,
            people,
            {pk: _weekly(hours[pk]) for pk in people},
            {pk: Timeline(off[pk]) for pk in people},
            # Busy times imported from clinicians' own calendars (scheduler.external_calendars).
            {pk: Timeline(busy[pk]) for pk in people},
            places,
            capabilities,
        )


class Availability:
    def __init__(
        self,
        clinic: Clinic,
        start: datetime,
        end: datetime,
        *,
        clinicians: Iterable[Clinician] | None = None,
        rooms: Iterable[Room] | None = None,
        patients: Iterable[Patient] = (),
        ignore_visits: Iterable[int] = (),
        lazy: bool = False,
        diary: Diary | bool | None = True,
    ):
        """Load what decides visits touching [start, end) at ``clinic``.

        ``clinicians`` and ``rooms`` default to all of the clinic's; visits of
        ``patients`` are loaded too so that a patient is never double-booked.
        ``ignore_visits`` are ids of visits being moved (they do not block themselves).
        ``lazy``: load clinicians' and rooms' visits only when asked about
        (see ``load``); the patients' visits are loaded at once either way.
        ``diary``: where a lazy one keeps what it loads (scheduler.diary): by
        default this process's, brought up to date now; None for none.
        """
        self.clinic = clinic
        self.tz = clinic.tz
        # A day either side: hours are checked on local dates, and a window given
        # in UTC can start or end on a neighbouring local date.
        self.start, self.end = start - timedelta(days=1), end + timedelta(days=1)
        # Kept between plans (scheduler.diary); a search for a visit being moved reads
        # its visits afresh, but takes the clinic's set-up from the diary all the same.
        if diary is True:
            diary = current_diary()
        self.diary = diary if lazy and not ignore_visits else None
        if diary is not None and clinicians is None and rooms is None:
            setup = diary.setup(
                ("availability", clinic.pk),
                lambda kept: kept.start <= self.start and self.end <= kept.end,
                lambda: ClinicSetup.read(
                    clinic,
                    min(self.start, timezone.now() - SETUP_KEPT_BEFORE),
                    max(self.end, timezone.now() + SETUP_KEPT_AFTER),
                ),
            )
        else:
            setup = ClinicSetup.read(clinic, self.start, self.end, clinicians, rooms)
        self.opening_hours = setup.opening_hours
        self.closures, self.holidays = setup.closures, setup.holidays
        self.clinicians = setup.clinicians
        self.working_hours = setup.working_hours
        self.time_off = setup.time_off
        self.own_calendar_busy = setup.own_calendar_busy
        self.rooms = setup.rooms
        self.room_capabilities = setup.room_capabilities

        self.ignore_visits = set(ignore_visits)
        self.clinician_visits: dict[int, DayTimeline] = defaultdict(DayTimeline)
        self.room_visits: dict[int, DayTimeline] = defaultdict(DayTimeline)
        self.patient_visits: dict[int, DayTimeline] = defaultdict(DayTimeline)
        self._qualified: dict[Seat, list[Clinician]] = {}  # who may fill a seat, by name
        self._fit: dict[tuple, list[str]] = {}  # _fit_of_people_and_place, by who and where
        self._closed_days: dict[date, bool] = {}  # closed_all_day, by day
        self._rooms_with: dict[int | None, list[Room]] = {}  # rooms_for, by capability
        # By day number: (ids of the clinicians, ids of the rooms) whose visits are loaded.
        self._loaded: dict[int, tuple[set[int], set[int]]] = defaultdict(lambda: (set(), set()))
        # The last span, clinicians and rooms (ids) ``load`` made sure of: a search loads
        # a day for everyone it may try, then asks again for each lead and time in it.
        self._last_load: tuple[datetime, datetime, frozenset[int], frozenset[int]] | None = None
        self.patient_ids = {p.pk for p in patients}
        # Eager: every clinician's and room's visits in the window, now, in the same query.
        self._complete = not lazy
        if not lazy:
            rows = read_rows(PARTICIPATIONS, self.clinicians, self.start, self.end, ignore_visits)
            _extend(self.clinician_visits, busy_by_resource(PARTICIPATIONS, rows))
        self._load_visits(() if lazy else self.rooms, self.patient_ids, self.start, self.end)

    # -- loading visits ----------------------------------------------------

    @classmethod
    def for_days(cls, clinic: Clinic, first_day: date, last_day: date, **options):
        """What decides visits on the clinic's local days first_day to last_day (inclusive)."""
        tz = clinic.tz
        start = datetime.combine(first_day, time(0), tzinfo=tz)
        end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=tz)
        return cls(clinic, start, end, **options)

    def load(
        self,
        clinicians: Iterable[Clinician],
        rooms: Iterable[Room | None],
        start: datetime,
        end: datetime,
    ) -> None:
        """Make sure the visits holding these clinicians and rooms in [start, end) are known.

        One query for whatever is missing, by whole days (UTC); none when all
        of it is loaded. A lazy Availability (plan generation over months)
        loads the days and the people it actually looks at instead of every
        clinician's whole diary. Whole blocks save queries where they are
        cheap: a plan that keeps its clinician walks forward through that
        clinician's weeks (28-day blocks for up to four people: a lead and the
        few tried first for the rest of a team), and rooms are few (14-day
        blocks); many clinicians at once load by the day.
        """
        if self._complete and self.start <= start and end <= self.end:
            return
        clinicians, rooms = tuple(clinicians), tuple(rooms)
        if (last := self._last_load) is not None:
            first, until, people, places = last
            if (
                first <= start
                and end <= until
                and all(c.id in people for c in clinicians)
                and all(r is None or r.id in places for r in rooms)
            ):
                return
        days = days_touched(start, end)
        # By day, the people and rooms loaded: set lookups, as a search asks thousands of times.
        loaded = [self._loaded[n] for n in days]
        wanted_clinicians = {c.id for c in clinicians for people, _ in loaded if c.id not in people}
        wanted_rooms = {
            r.id for r in rooms if r is not None for _, places in loaded if r.id not in places
        }
        if wanted_clinicians or wanted_rooms:
            self._read(wanted_clinicians, wanted_rooms, days)
        people = frozenset(c.id for c in clinicians)
        places = frozenset(r.id for r in rooms if r is not None)
        # Remembered as far as all of them are loaded (blocks of days were read):
        # the search's next days, and each lead and time in them, ask nothing.
        stop = days.stop
        while (
            stop < days.stop + CLINICIAN_BLOCK_DAYS
            and (known := self._loaded.get(stop)) is not None
            and people <= known[0]
            and places <= known[1]
        ):
            stop += 1
        self._last_load = (*day_span(range(days.start, stop)), people, places)

    def _read(self, wanted_clinicians: set[int], wanted_rooms: set[int], days: range) -> None:
        """Load the visits of these clinicians and rooms on ``days``, by blocks of days."""
        few = len(wanted_clinicians) <= READ_AHEAD_CLINICIANS
        clinician_days = _blocks(days, CLINICIAN_BLOCK_DAYS if few else 1)
        room_days = _blocks(days, ROOM_BLOCK_DAYS)
        if wanted_clinicians:
            self._take(self.clinician_visits, PARTICIPATIONS, wanted_clinicians, clinician_days)
            for n in clinician_days:
                self._loaded[n][0].update(wanted_clinicians)
        if wanted_rooms:
            self._take(self.room_visits, ROOM_VISITS, wanted_rooms, room_days)
            for n in room_days:
                self._loaded[n][1].update(wanted_rooms)

    def _take(self, timelines: dict[int, "DayTimeline"], kind: str, ids, days: range) -> None:
        """Put the busy times of ``kind`` holding ``ids`` on ``days`` on their timelines:
        from this process's diary when there is one (scheduler.diary), else from the database."""
        if self.diary is None:
            rows = read_rows(kind, ids, *day_span(days), self.ignore_visits)
            _extend(timelines, busy_by_resource(kind, rows))
            return
        for resource, day, busy in self.diary.busy(kind, ids, days):
            timelines[resource].put_day(day, busy)

    def _load_visits(self, rooms, patients, start: datetime, end: datetime) -> None:
        """Visits holding ``rooms`` or ``patients`` in [start, end): each holds its room and
        patient for all of its time."""
        held = [
            sql_in(column, ids)
            for column, ids in (("t.room_id", rooms), ("t.patient_id", patients))
            if ids
        ]
        if not held:
            return
        either = (
            " OR ".join(sql for sql, _ in held),
            [value for _, values in held for value in values],
        )
        # The modality only for patients' visits (rooms are loaded many times a plan).
        modality = (
            f"(SELECT modality FROM {VisitType._meta.db_table} WHERE id = t.visit_type_id)"
            if patients
            else "''"
        )
        # The columns of scheduler.diary's room visits, then the patient's.
        rows = busy_rows(
            Visit,
            f"t.id, t.room_id, t.id, t.status, t.patient_id, {modality}",
            [either, *not_among("t.id", self.ignore_visits)],
            start,
            end,
        )
        self._take_visits(rows, with_patients=bool(patients))

    def _take_visits(self, rows, with_patients=False) -> None:
        """Put rows of visits (scheduler.diary's ROOM_VISITS, with the patient and the
        visit type's modality after them ``with_patients``) on the rooms' and patients'
        timelines: each holds its room and patient for all of its time."""
        _extend(self.room_visits, busy_by_resource(ROOM_VISITS, rows))
        if not with_patients:
            return
        by_patient = defaultdict(list)
        for start, end, _, _, _, status, patient_id, modality in rows:
            # Others' visits never matter here (a room's visits may be in the same rows).
            if status in BLOCKING_STATUSES and patient_id in self.patient_ids:
                # Labelled with the modality: the travel gap is between a video visit and one here.
                by_patient[patient_id].append(Busy(start, end, modality))
        _extend(self.patient_visits, by_patient)

    # -- deciding one visit ------------------------------------------------

    def problems(
        self,
        visit_type: VisitType,
        clinician: Clinician,
        room: Room | None,
        patient: Patient | None,
        start: datetime,
        end: datetime | None = None,
        staff: Sequence[Member] = (),
    ) -> list[str]:
        """Every reason the visit cannot take place as given; empty when it fits.

        ``clinician`` leads; ``staff`` are the rest of the team in their places.
        Whether the team is complete is the booking's question (``booking.seat_staff``).
        """
        return list(self._problems(visit_type, clinician, room, patient, start, end, staff))

    def fits(self, visit_type, clinician, room, patient, start, end=None, staff=()) -> bool:
        problems = self._problems(visit_type, clinician, room, patient, start, end, staff, False)
        return next(problems, None) is None

    def first_room(self, visit_type, clinician, rooms, patient, start, end=None):
        """The first of ``rooms`` the visit fits in (None for telehealth), or False if none.

        Rooms another visit holds then are passed over at once; the first free
        one is checked with everything else, so a busy clinician costs one
        check, not one per room.
        """
        if visit_type.modality == Modality.TELEHEALTH:
            return None if self.fits(visit_type, clinician, None, patient, start, end) else False
        end = end or start + visit_type.duration
        self.load([clinician], rooms, start, end)
        for room in rooms:
            if self.room_visits[room.id].first_overlap(start, end) is not None:
                continue
            problem = next(
                self._problems(visit_type, clinician, room, patient, start, end, (), False), None
            )
            if problem is None:
                return room
            if not isinstance(problem, RoomProblem):
                return False
        return False

    def _problems(self, visit_type, clinician, room, patient, start, end, staff=(), words=True):
        """Why the visit cannot be; ``words=False``: the same problems, unworded (searches
        ask thousands of times and only whether, or of which kind)."""
        tz = self.tz
        start = start.astimezone(UTC) if start.tzinfo else start
        end = end or start + visit_type.duration
        if start.tzinfo is None or end.tzinfo is None:
            yield "Times must carry a time zone."
            return
        if end <= start:
            yield "The visit must end after it starts."
            return
        if end - start > LONGEST_VISIT:
            yield "A visit cannot last longer than 24 hours."
            return
        local_start, local_end = start.astimezone(tz), end.astimezone(tz)
        day = local_start.date()

        def span() -> str:  # only for a message: fits() asks thousands of times
            return format_span(start, end, tz, day)

        lead = lead_of(visit_type, clinician)
        team = [lead, *staff]
        key = (
            visit_type.id,
            tuple((m.clinician.id, m.seat) for m in team),
            room.id if room else None,
            patient.id if patient else None,
        )
        if key not in self._fit:  # the same for every time a search tries
            self._fit[key] = list(self._fit_of_people_and_place(visit_type, team, room, patient))
        yield from self._fit[key]

        if not _within(self.opening_hours, local_start, local_end):
            if not words:
                yield UNWORDED
                return
            hours = self.opening_hours.get(local_start.weekday())
            if hours:
                yield (
                    f"The clinic is open {_describe_week(hours)} on "
                    f"{Weekday(local_start.weekday()).label}s; the visit runs {span()}."
                )
            else:
                yield f"The clinic is closed on {Weekday(local_start.weekday()).label}s."
        holiday = self.holidays.first_overlap(start, end)
        if holiday:
            yield f"Clinic closed: {holiday.label}." if words else UNWORDED
        closure = self.closures.first_overlap(start, end)
        if closure and not words:
            yield UNWORDED
        elif closure:
            why = f" ({closure.label})" if closure.label else ""
            yield f"The clinic is closed {format_span(closure.start, closure.end, tz, day)}{why}."

        for member in team:
            whole = member.seat.whole_visit()
            yield from self._person_problems(
                member.clinician, *member.span(start, end), whole, words
            )
        yield from self.conflicts(team, room, patient, start, end, words)
        if patient is not None:
            yield from self.travel_problems(visit_type, patient, start, end, words)

    def _person_problems(
        self, clinician: Clinician, start: datetime, end: datetime, whole=True, words=True
    ):
        """Why ``clinician`` cannot be on a visit for [start, end): their hours, time off, own calendar.

        ``whole``: [start, end) is the whole visit (else the part they are needed for).
        """
        if clinician.id not in self.clinicians:
            return
        tz = self.tz
        local_start, local_end = start.astimezone(tz), end.astimezone(tz)
        day = local_start.date()
        hours = self.working_hours[clinician.id]
        if not words:
            if (
                not _within(hours, local_start, local_end)
                or self.time_off[clinician.id].first_overlap(start, end)
                or self.own_calendar_busy[clinician.id].first_overlap(start, end)
            ):
                yield UNWORDED
            return
        if not _within(hours, local_start, local_end):
            worked = hours.get(local_start.weekday())
            if worked:
                yield (
                    f"{clinician} works {_describe_week(worked)} on "
                    f"{Weekday(local_start.weekday()).label}s; "
                    + ("the visit runs" if whole else "they are needed")
                    + f" {format_span(start, end, tz, day)}."
                )
            else:
                yield f"{clinician} does not work on {Weekday(local_start.weekday()).label}s."
        off = self.time_off[clinician.id].first_overlap(start, end)
        if off:
            yield f"{clinician} is off {format_span(off.start, off.end, tz, day)}."
        busy = self.own_calendar_busy[clinician.id].first_overlap(start, end)
        if busy:
            yield f"{clinician} is busy {format_span(busy.start, busy.end, tz, day)} (own calendar)."

    def travel_problems(self, visit_type, patient, start, end, words=True) -> Iterator[str]:
        """A visit of the patient's in the other modality closer than the clinic's travel gap.

        Both ways round: before a visit here the patient must get from home
        (where they took the video call) to the clinic, and after one they
        must get home for the call, driven by someone else after a dose. Two
        visits of one modality need no journey between them (one clinic, or
        both from home). Days do not matter: a journey is a journey at midnight too.
        """
        gap = self.clinic.travel_gap
        if not gap:
            return
        other = (
            Modality.IN_PERSON
            if visit_type.modality == Modality.TELEHEALTH
            else Modality.TELEHEALTH
        )
        for busy in self.patient_visits[patient.id].overlapping(start - gap, end + gap):
            if busy.label == other and (busy.end <= start or end <= busy.start):
                if not words:
                    yield UNWORDED
                    break
                span = format_span(busy.start, busy.end, self.tz, start.astimezone(self.tz).date())
                kind = "a telehealth" if other == Modality.TELEHEALTH else "an in-clinic"
                yield (
                    f"{patient} has {kind} visit {span}; the clinic keeps "
                    f"{self.clinic.travel_gap_minutes} minutes between a telehealth visit and "
                    "one at the clinic, for the journey."
                )
                break

    def _fit_of_people_and_place(self, visit_type, team, room, patient) -> Iterator[str]:
        # The patient may be another clinic's: all clinics of an installation are one
        # organisation, and who may be booked where is the callers' rule
        # (plans.models.Protocol.refusal_for, the desk's patients of the clinic).
        if any(m.clinician.clinic_id != self.clinic.pk for m in team):
            yield "The clinician and the clinic must belong together."
        if visit_type.clinic_id != self.clinic.pk:
            yield f"{visit_type} is not a visit type of {self.clinic}."
        seen = set()
        for member in team:
            clinician, seat = member
            if clinician.id in seen:
                yield f"{clinician} cannot take two places on one visit."
            seen.add(clinician.id)
            if not clinician.is_active:
                yield f"{clinician} no longer takes visits."
            if seat.role_of(clinician) is None:
                yield f"{visit_type} needs a {seat.label}; {clinician} is not one."
        if visit_type.modality == Modality.TELEHEALTH:
            if room is not None:
                yield f"{visit_type} is a telehealth visit and takes no room."
            return
        if room is None:
            yield f"{visit_type} is in person and needs a room."
            return
        if room.clinic_id != self.clinic.pk or room.pk not in self.rooms:
            yield f"{room} is not a room of {self.clinic}."
            return
        capability = visit_type.room_capability_id
        if capability and capability not in self.room_capabilities[room.pk]:
            yield RoomProblem(
                f"{room} has no {visit_type.room_capability.name.lower()}, which {visit_type} needs."
            )

    def conflicts(
        self, team: Sequence[Member], room, patient, start, end, words=True
    ) -> Iterator[str]:
        """Overlaps with visits that hold someone of the team (for their span), the room or the patient."""
        self.load([member.clinician for member in team], [room], start, end)
        tz, day = self.tz, start.astimezone(self.tz).date()
        for clinician, seat in team:
            joins, leaves = seat.span(start, end)
            if busy := self.clinician_visits[clinician.id].first_overlap(joins, leaves):
                yield Conflict(
                    f"{clinician} is booked {format_span(busy.start, busy.end, tz, day)} "
                    "by another visit."
                    if words
                    else UNWORDED
                )
        if room is not None and (busy := self.room_visits[room.id].first_overlap(start, end)):
            yield RoomConflict(
                f"{room} is booked {format_span(busy.start, busy.end, tz, day)} by another visit."
                if words
                else UNWORDED
            )
        if patient is not None and (
            busy := self.patient_visits[patient.id].first_overlap(start, end)
        ):
            yield Conflict(
                f"{patient} already has a visit {format_span(busy.start, busy.end, tz, day)}."
                if words
                else UNWORDED
            )

    def held_until(self, visit_type, clinician, patient, start, end) -> datetime | None:
        """A start before which every later visit ``clinician`` leads still clashes with
        what holds the lead or ``patient`` at [start, end) (a visit, time off, their own
        calendar), or None when nothing does.

        A search trying starts in order skips to it: a later start shifts the
        lead's part by as much, and overlaps the same interval until its part
        begins at that interval's end.
        """
        ends = [self._held_until(lead_of(visit_type, clinician), start, end)]
        if patient is not None and (
            busy := self.patient_visits[patient.id].first_overlap(start, end)
        ):
            ends.append(busy.end)
        return max((e for e in ends if e is not None), default=None)

    def _held_until(self, member: Member, start, end) -> datetime | None:
        """``held_until`` for one person in their place: None when nothing holds them."""
        joins, leaves = member.span(start, end)
        cid = member.clinician.id
        held = [
            busy.end - (joins - start)
            for timeline in (self.clinician_visits, self.time_off, self.own_calendar_busy)
            if cid in timeline and (busy := timeline[cid].first_overlap(joins, leaves))
        ]
        return max(held, default=None)

    def clinic_open(self, start: datetime, end: datetime) -> bool:
        """Whether the clinic is open all of [start, end): its hours, no closure, no holiday."""
        return (
            _within(self.opening_hours, start.astimezone(self.tz), end.astimezone(self.tz))
            and self.closures.first_overlap(start, end) is None
            and self.holidays.first_overlap(start, end) is None
        )

    def person_free(self, clinician: Clinician, start: datetime, end: datetime) -> bool:
        """Whether ``clinician`` works and is held by nothing (time off, own calendar, visits) then."""
        return (
            next(self._person_problems(clinician, start, end, words=False), None) is None
            and self.clinician_visits[clinician.id].first_overlap(start, end) is None
        )

    def qualified(self, seat: Seat) -> list[Clinician]:
        """Active clinicians who may fill ``seat``, by name."""
        if seat not in self._qualified:
            self._qualified[seat] = sorted(
                (c for c in self.clinicians.values() if c.is_active and seat.role_of(c)),
                key=lambda c: (c.display_name, c.pk),  # pk: names may repeat
            )
        return self._qualified[seat]

    def staff_for(
        self,
        visit_type: VisitType,
        lead: Clinician,
        start: datetime,
        end: datetime,
        prefer: Iterable[Clinician] = (),
        only_preferred: bool = False,
        keep: Iterable[Clinician] = (),
    ) -> tuple[tuple[Member, ...], Seat | None]:
        """The rest of the team for a visit ``lead`` leads at [start, end): (members, None).

        Each place goes to the first free qualified person, those in
        ``prefer`` first (the same therapist across a course); with
        ``only_preferred``, a place someone in ``prefer`` could fill goes to
        them or to no one; a required place someone in ``keep`` can fill goes
        to them or to no one (the therapist the patient has). An optional
        place nobody can fill is left empty.
        When a required place cannot be filled: ((), that seat).
        """
        members, missing, _ = self.staff_or_wait(
            visit_type, lead, start, end, prefer, only_preferred, keep
        )
        return members, missing

    def staff_or_wait(
        self, visit_type, lead, start, end, prefer=(), only_preferred=False, keep=()
    ) -> tuple[tuple[Member, ...], Seat | None, datetime | None]:
        """``staff_for``, and when a place cannot be filled, a start before which it
        stays so whoever leads (as ``held_until``: everyone who could fill it is held
        by something that lasts), or None when that is not known."""
        preferred, kept = list(prefer), list(keep)
        taken = {lead.id}
        members = []
        seats = visit_type.seats
        for place, seat in enumerate(seats[1:], start=1):
            joins, leaves = seat.span(start, end)
            qualified = self.qualified(seat)
            first = [c for c in preferred if c.id not in taken and seat.role_of(c)]
            # The preferred alone are asked; another lead would ask others only if one
            # of them could lead or take an earlier place (and so be taken then).
            narrowed = (
                only_preferred and first and any(s.role_of(c) for s in seats[:place] for c in first)
            )
            candidates = first if only_preferred and first else first + qualified
            if not seat.optional and (ours := [c for c in kept if seat.role_of(c)]):
                candidates, narrowed = ours, False
            chosen = self._first_free(candidates, taken, joins, leaves)
            if chosen is None:
                if seat.optional:
                    continue
                # Known only when another lead would ask the same people or fewer, and
                # nobody taken (the lead, an earlier place) could do.
                held = [
                    None if c.id in taken else self._held_until(Member(c, seat), start, end)
                    for c in candidates
                    if c.is_active
                ]
                known = held and not narrowed and None not in held
                return (), seat, min(held) if known else None
            taken.add(chosen.id)
            members.append(Member(chosen, seat))
        return tuple(members), None, None

    def kept_busy(self, visit_type, keep, start, end) -> tuple[Seat | None, datetime | None]:
        """The first required place after the lead that ``staff_for`` with ``keep`` cannot
        fill at [start, end) whoever leads (everyone in ``keep`` who could is busy), or
        None; and a start before which it stays so (as ``held_until``), if known."""
        for seat in visit_type.seats[1:]:
            ours = [c for c in keep if seat.role_of(c)] if not seat.optional else ()
            if ours and not any(self.person_free(c, *seat.span(start, end)) for c in ours):
                until = [self._held_until(Member(c, seat), start, end) for c in ours]
                return seat, None if None in until else min(until)
        return None, None

    def _first_free(self, candidates, taken, start, end) -> Clinician | None:
        self.load(candidates, [], start, end)
        return next(
            (
                c
                for c in candidates
                if c.id not in taken and c.is_active and self.person_free(c, start, end)
            ),
            None,
        )

    def reserve(self, visit_type, clinician, room, patient, start, end, staff=()) -> None:
        """Treat a planned visit as busy, so later searches in this window avoid it."""
        for member in (lead_of(visit_type, clinician), *staff):
            self.clinician_visits[member.clinician.pk].add(Busy(*member.span(start, end)))
        if room is not None:
            self.room_visits[room.pk].add(Busy(start, end))
        if patient is not None:
            self.patient_visits[patient.pk].add(Busy(start, end, visit_type.modality))

    def release(self, visit_type, clinician, room, patient, start, end, staff=()) -> None:
        """Undo ``reserve``: a planned visit given up no longer holds its slot."""
        for member in (lead_of(visit_type, clinician), *staff):
            self.clinician_visits[member.clinician.pk].remove(Busy(*member.span(start, end)))
        if room is not None:
            self.room_visits[room.pk].remove(Busy(start, end))
        if patient is not None:
            self.patient_visits[patient.pk].remove(Busy(start, end, visit_type.modality))

    # -- searching ---------------------------------------------------------

    def _local_day(self, day: date) -> tuple[datetime, datetime]:
        return local_day(self.tz, day)

    def closed_all_day(self, day: date) -> bool:
        """Whether a closure or a public holiday (not opened anyway) takes the whole local ``day``."""
        if day not in self._closed_days:  # asked for every lead of a search
            start, end = self._local_day(day)
            self._closed_days[day] = self.closures.covers(start, end) or self.holidays.covers(
                start, end
            )
        return self._closed_days[day]

    def away_all_day(self, clinician: Clinician, day: date) -> bool:
        """Whether the clinic is closed, or the clinician off, the whole local ``day``.

        A search over weeks skips such days at once instead of refusing each
        candidate time (a clinic closed for the holidays, a therapist away).
        """
        off = self.time_off.get(clinician.id)
        return self.closed_all_day(day) or (off is not None and off.covers(*self._local_day(day)))

    def rooms_for(self, visit_type: VisitType) -> list[Room | None]:
        """The rooms a visit of ``visit_type`` may take, by name ([None]: telehealth)."""
        if visit_type.modality == Modality.TELEHEALTH:
            return [None]
        capability = visit_type.room_capability_id
        if capability not in self._rooms_with:  # asked by every search
            self._rooms_with[capability] = [
                room
                for room in sorted(self.rooms.values(), key=lambda r: r.name)
                if capability is None or capability in self.room_capabilities[room.id]
            ]
        return self._rooms_with[capability]

    def candidate_starts(
        self, clinician: Clinician, day: date, step: timedelta
    ) -> tuple[datetime, ...]:
        """Instants on local ``day`` where a visit could start, on a ``step`` grid of wall-clock time.

        Times skipped by a spring-forward change are left out; a repeated hour on
        a fall-back day yields both instants.
        """
        weekday = day.weekday()
        return wall_clock_grid(
            self.tz,
            tuple(self.opening_hours.get(weekday, ())),
            tuple(self.working_hours.get(clinician.id, {}).get(weekday, ())),
            day,
            step,
        )

    def free_slots(
        self,
        visit_type: VisitType,
        first_day: date,
        last_day: date,
        *,
        clinicians: Iterable[Clinician] | None = None,
        patient: Patient | None = None,
        step: timedelta = timedelta(minutes=15),
        limit: int | None = None,
        prefer_staff: Iterable[Clinician] = (),
    ) -> list[Slot]:
        """Free slots for ``visit_type`` between two local dates (inclusive), earliest first.

        ``clinicians`` may lead (default: anyone qualified); the rest of the
        team comes from everyone loaded, ``prefer_staff`` first.
        """
        lead_seat = visit_type.lead_seat
        if lead_seat is None:
            return []  # a visit type without a team (booking says so)
        allowed = None if clinicians is None else {c.pk for c in clinicians}
        leads = [c for c in self.qualified(lead_seat) if allowed is None or c.pk in allowed]
        prefer_staff = list(prefer_staff)
        rooms = self.rooms_for(visit_type)
        slots = []
        day = first_day
        while day <= last_day:
            found = []
            for clinician in [] if self.closed_all_day(day) else leads:
                for start in self.candidate_starts(clinician, day, step):
                    end = start + visit_type.duration
                    room = self.first_room(visit_type, clinician, rooms, patient, start, end)
                    if room is False:
                        continue
                    staff, missing = self.staff_for(visit_type, clinician, start, end, prefer_staff)
                    if missing is None:
                        local_start, local_end = start.astimezone(self.tz), end.astimezone(self.tz)
                        found.append(Slot(local_start, local_end, clinician, room, staff))
            found.sort(key=lambda slot: (slot.start, slot.clinician.display_name))
            slots.extend(found)
            if limit is not None and len(slots) >= limit:
                return slots[:limit]
            day += timedelta(days=1)
        return slots


def free_slots(
    visit_type: VisitType,
    first_day: date,
    last_day: date,
    *,
    clinicians: Iterable[Clinician] | None = None,
    patient: Patient | None = None,
    **options,
) -> list[Slot]:
    """Free slots between two local dates (inclusive) in the visit type's clinic.

    Loads what those days hold, then answers as ``Availability.free_slots``
    (``step``, ``limit`` and the rest go to it).
    """
    availability = Availability.for_days(
        visit_type.clinic, first_day, last_day, patients=[patient] if patient else ()
    )
    return availability.free_slots(
        visit_type,
        first_day,
        last_day,
        clinicians=clinicians,
        patient=patient,
        **options,
    )
