"""Time grids: the desk's day and week and a clinician's own week, in rows of quarter hours.

One builder for the three pages. ``Axis`` turns times into rows; ``Backdrop``
holds what shades a column (the clinic's opening hours, its closures and
public holidays, people's working hours, their time off and the busy times
read from their own calendars), read in four queries; ``column`` lays out one
column: each visit a block as tall as the part of it the column's person (or
room, or day) has, the shading, and the quarter hours free to book.

Rows are quarter hours of real time from the axis's first row, so a block is
as tall as the visit lasts, also on the days clocks change: a day grid over
the change has four rows fewer (spring) or more (autumn). The page places
blocks by class names (``r12 s4``: from row 12, four rows tall) because the
Content-Security-Policy allows no inline style; static/css/grid.css has a
rule for each class up to MAX_ROWS, and a test keeps the two in step.
"""

import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import NamedTuple

from django.conf import settings
from django.db.models import CharField, Value

from scheduler.availability import Busy, closed_times
from scheduler.diary import current_diary
from scheduler.models import (
    BusyBlock,
    Clinic,
    Clinician,
    Room,
    TimeOff,
    Visit,
    VisitParticipant,
    VisitStatus,
    WorkingHours,
)
from scheduler.timezones import is_ambiguous

ROW = timedelta(minutes=15)
# The longest local day (25 hours, when clocks fall back) in quarter hours.
MAX_ROWS = 100
DAY_MINUTES = 24 * 60
# What a grid shows when nothing is open and nothing booked (a clinic with no hours yet).
FALLBACK_MINUTES = (8 * 60, 18 * 60)


@dataclass(frozen=True)
class Axis:
    """Rows of a quarter hour each from ``start`` (an instant in the clinic's zone)."""

    start: datetime
    rows: int

    @classmethod
    def between(cls, start: datetime, end: datetime) -> "Axis":
        # Aware datetimes of one zone subtract as wall-clock times in Python: in UTC.
        length = end.astimezone(UTC) - start.astimezone(UTC)
        return cls(start, max(1, min(MAX_ROWS, math.ceil(length / ROW))))

    @classmethod
    def for_day(cls, day: date, tz, minutes: tuple[int, int]) -> "Axis":
        """Local ``day`` from wall-clock minute ``minutes[0]`` to ``minutes[1]`` (1440: midnight)."""
        return cls.between(_wall(day, minutes[0], tz), _wall(day, minutes[1], tz))

    def row_start(self, index: int) -> datetime:
        """When row ``index`` (from 0) begins, in the axis's zone."""
        return (self.start.astimezone(UTC) + index * ROW).astimezone(self.start.tzinfo)

    @property
    def end(self) -> datetime:
        return self.row_start(self.rows)

    def place(self, start: datetime, end: datetime) -> tuple[int, int] | None:
        """(first row, number of rows) that [start, end) touches, rows numbered from 1 like
        CSS grid lines; cut to the axis, None when off it."""
        origin = self.start.astimezone(UTC)
        first = max(0, (start.astimezone(UTC) - origin) // ROW)
        last = min(self.rows, -(-(end.astimezone(UTC) - origin) // ROW))
        if last <= first:
            return None
        return first + 1, last - first

    def inside(self, start: datetime, end: datetime) -> range:
        """The rows (from 0) lying wholly inside [start, end)."""
        origin = self.start.astimezone(UTC)
        first = max(0, -(-(start.astimezone(UTC) - origin) // ROW))
        last = min(self.rows, (end.astimezone(UTC) - origin) // ROW)
        return range(first, max(first, last))

    def hours(self) -> list[tuple[int, str]]:
        """(row, label) of each row that starts an hour: the grid's time scale.

        On the day clocks fall back the hour that happens twice is labelled
        with its zone's abbreviation each time (01:00 EDT, then 01:00 EST).
        """
        labels = []
        for index in range(self.rows):
            at = self.row_start(index)
            if at.minute == 0:
                label = f"{at:%H:%M} {at:%Z}" if is_ambiguous(at) else f"{at:%H:%M}"
                labels.append((index + 1, label))
        return labels


def _wall(day: date, minute: int, tz) -> datetime:
    """Wall-clock ``minute`` of local ``day`` (1440: the next midnight) as an aware datetime."""
    day += timedelta(days=minute // DAY_MINUTES)
    minute %= DAY_MINUTES
    return datetime.combine(day, time(minute // 60, minute % 60), tzinfo=tz)


def minutes_shown(
    days: Sequence[date],
    tz,
    spans: Iterable[tuple[datetime, datetime]],
    fallback: tuple[int, int] = FALLBACK_MINUTES,
) -> tuple[int, int]:
    """The wall-clock minutes (from, until) a grid of local ``days`` shows: all of each span
    that falls on them, widened to whole hours; ``fallback`` when none does."""
    low, high = DAY_MINUTES, 0
    first, last = _wall(days[0], 0, tz), _wall(days[-1], DAY_MINUTES, tz)
    for span in spans:
        start, end = max(span[0], first).astimezone(tz), min(span[1], last).astimezone(tz)
        if end <= start:
            continue
        day_end = _wall(start.date(), DAY_MINUTES, tz)
        low = min(low, start.hour * 60 + start.minute)
        high = max(high, DAY_MINUTES if end >= day_end else end.hour * 60 + end.minute)
        if end > day_end:  # over midnight: the next day's early hours are shown too
            low = 0
    if high <= low:
        return fallback
    return low - low % 60, min(DAY_MINUTES, high + (-high) % 60)


class Layer(NamedTuple):
    """One kind of shading. ``outside``: the rows not wholly inside ``spans`` are shaded
    (hours); otherwise the rows ``spans`` touch (time off, closures), each span's own
    label after the layer's."""

    kind: str
    label: str
    spans: list[Busy]
    outside: bool = False


@dataclass(frozen=True)
class Shade:
    row: int
    span: int
    kind: str  # closed, away, off, busy: its CSS class
    label: str
    start: datetime
    end: datetime


@dataclass
class Block:
    """A visit in a column: the part of it the column's person has (``part``), else all of it."""

    visit: Visit
    part: VisitParticipant | None
    start: datetime
    end: datetime
    row: int
    span: int
    is_cell = False

    @property
    def is_whole(self) -> bool:
        return (self.start, self.end) == (self.visit.start, self.visit.end)


class FreeCell(NamedTuple):
    """A quarter hour free to book: a link to start a booking there.

    A tuple: a day grid of many clinicians has thousands of them.
    """

    start: datetime
    row: int
    url: str
    label: str
    is_cell = True

    @property
    def time(self) -> str:
        # The template's date filter takes several times longer, once a cell.
        return f"{self.start:%H:%M}"


@dataclass(frozen=True)
class NowLine:
    """Where now is on a column: ``row``, ``minute`` minutes into it; ``shown`` when on the axis.

    static/js/now_line.js moves it on from ``axis`` without a reload.
    """

    row: int
    minute: int
    shown: bool
    axis: Axis


@dataclass
class Column:
    title: str
    axis: Axis
    items: list = field(default_factory=list)  # blocks and free cells, in time order
    shades: list[Shade] = field(default_factory=list)
    now: NowLine | None = None
    link: str = ""  # where the heading leads (a week's day: that day's grid)
    note: str = ""  # under the heading (a person's role)


@dataclass
class Grid:
    columns: list[Column]
    times: list[tuple[int, str]]
    rows: int

    @classmethod
    def of(cls, columns: list[Column], scale: Axis) -> "Grid":
        rows = max([scale.rows, *(column.axis.rows for column in columns)])
        return cls(columns, scale.hours(), rows)


# A link to book at a time: (address, accessible label), or None where the page books nothing.
Booker = Callable[[datetime], tuple[str, str]] | None


def column(
    title: str,
    axis: Axis,
    entries: Iterable[tuple[Visit, VisitParticipant | None]],
    layers: Sequence[Layer],
    *,
    now: datetime,
    book: Booker = None,
    **extra,
) -> Column:
    """One column of ``axis``: the ``entries`` as blocks, shading by ``layers`` (the least
    important first: a later one paints over), and, when ``book`` is given, a free cell
    for each quarter hour that is neither shaded nor taken, after ``now`` and within the
    booking horizon."""
    blocks = []
    for visit, part in entries:
        start, end = (part.start, part.end) if part is not None else (visit.start, visit.end)
        placed = axis.place(start, end)
        if placed:
            blocks.append(Block(visit, part, start, end, *placed))
    blocks.sort(key=lambda block: (block.row, block.start, block.visit.pk))

    reasons = _paint(axis, layers)
    shades = _shades(axis, reasons)
    items: list = list(blocks)
    if book is not None:
        taken = {index for b in blocks for index in range(b.row - 1, b.row - 1 + b.span)}
        horizon = now + timedelta(days=settings.BOOKING_HORIZON_DAYS)
        for index, reason in enumerate(reasons):
            start = axis.row_start(index)
            if reason is None and index not in taken and now < start <= horizon:
                items.append(FreeCell(start, index + 1, *book(start)))
        items.sort(key=lambda item: (item.row, item.is_cell))
    return Column(title, axis, items, shades, now_line(axis, now), **extra)


def _paint(axis: Axis, layers: Sequence[Layer]) -> list[tuple[str, str] | None]:
    """Each row's (kind, words) of shading, or None where nothing shades it; a later
    layer paints over an earlier one."""
    reasons: list[tuple[str, str] | None] = [None] * axis.rows
    for layer in layers:
        if layer.outside:
            inside = {index for busy in layer.spans for index in axis.inside(busy.start, busy.end)}
            for index in range(axis.rows):
                if index not in inside:
                    reasons[index] = (layer.kind, layer.label)
            continue
        for busy in layer.spans:
            placed = axis.place(busy.start, busy.end)
            if placed:
                words = f"{layer.label}: {busy.label}" if busy.label else layer.label
                for index in range(placed[0] - 1, sum(placed) - 1):
                    reasons[index] = (layer.kind, words)
    return reasons


def _shades(axis: Axis, reasons: list[tuple[str, str] | None]) -> list[Shade]:
    """Runs of rows shaded for the same reason, one Shade each."""
    shades: list[Shade] = []
    for index, reason in enumerate(reasons):
        if reason is None:
            continue
        last = shades[-1] if shades else None
        if last and (last.kind, last.label) == reason and last.row + last.span == index + 1:
            shades[-1] = Shade(
                last.row, last.span + 1, *reason, last.start, axis.row_start(index + 1)
            )
        else:
            shades.append(
                Shade(index + 1, 1, *reason, axis.row_start(index), axis.row_start(index + 1))
            )
    return shades


def now_line(axis: Axis, now: datetime) -> NowLine | None:
    """Now on ``axis`` when the axis is of today (its local day), else None."""
    local = now.astimezone(axis.start.tzinfo)
    if local.date() != axis.start.date():
        return None
    minutes = (now.astimezone(UTC) - axis.start.astimezone(UTC)) // timedelta(minutes=1)
    shown = 0 <= minutes < axis.rows * 15
    row, minute = divmod(max(0, min(minutes, axis.rows * 15 - 1)), 15)
    return NowLine(row + 1, minute, shown, axis)


def days_of(monday: date) -> list[date]:
    return [monday + timedelta(days=n) for n in range(7)]


# -- what is behind the visits -----------------------------------------------


def _weekly(rows) -> dict[int, list[tuple[time, time]]]:
    week: dict[int, list[tuple[time, time]]] = defaultdict(list)
    for weekday, opens, closes in rows:
        week[weekday].append((opens, closes))
    return week


@dataclass
class Backdrop:
    """What shades a clinic's grid between two instants, and who works: four queries.

    Only clinicians with working hours are read (``people``): the others are
    never free to book, and those of them on a visit come with its team.
    """

    tz: tzinfo
    opening: dict[int, list[tuple[time, time]]]
    closures: list[Busy]
    holidays: list[Busy]
    people: dict[int, Clinician]
    working: dict[int, dict[int, list[tuple[time, time]]]]
    time_off: dict[int, list[Busy]]
    own_busy: dict[int, list[Busy]]

    @classmethod
    def kept(
        cls, clinic: Clinic, start: datetime, end: datetime, clinician: Clinician | None = None
    ) -> "Backdrop":
        """``load``, kept by this process until the clinic's set-up changes.

        Every table a backdrop reads writes the set-up change log
        (``scheduler.diary``), so twenty desks on the same day read it once;
        inside a transaction there is no diary, and it is read afresh.
        """
        diary = current_diary()
        if diary is None:
            return cls.load(clinic, start, end, clinician)
        key = ("grid backdrop", clinic.pk, start, end, clinician.pk if clinician else None)
        return diary.setup(key, lambda kept: True, lambda: cls.load(clinic, start, end, clinician))

    @classmethod
    def load(
        cls, clinic: Clinic, start: datetime, end: datetime, clinician: Clinician | None = None
    ) -> "Backdrop":
        """The clinic's, and its active clinicians' (or only ``clinician``'s), shading in [start, end)."""
        opening = _weekly(clinic.opening_hours.values_list("weekday", "opens", "closes").order_by())
        closures, holidays = closed_times(clinic, start, end)
        hours = WorkingHours.objects.select_related("clinician").order_by(
            "clinician__display_name", "clinician", "weekday", "opens"
        )
        if clinician is not None:
            hours = hours.filter(clinician=clinician)
        else:
            hours = hours.filter(clinician__clinic=clinic, clinician__is_active=True)
        people: dict[int, Clinician] = {}
        working: dict[int, list] = defaultdict(list)
        for row in hours:
            people.setdefault(row.clinician_id, row.clinician)
            working[row.clinician_id].append((row.weekday, row.opens, row.closes))
        off, busy = defaultdict(list), defaultdict(list)
        for clinician_id, begins, ends, reason, source in _absences(
            [clinician] if clinician else None, clinic, start, end
        ):
            (busy if source == "busy" else off)[clinician_id].append(Busy(begins, ends, reason))
        return cls(
            tz=clinic.tz,
            opening=opening,
            closures=sorted(closures.overlapping(start, end)),
            holidays=sorted(holidays.overlapping(start, end)),
            people=people,
            working={pk: _weekly(rows) for pk, rows in working.items()},
            time_off=off,
            own_busy=busy,
        )

    def _spans(self, day: date, week: dict[int, list[tuple[time, time]]]) -> list[Busy]:
        """The weekly hours of local ``day`` as instants."""
        return [
            Busy(
                datetime.combine(day, opens, tzinfo=self.tz),
                datetime.combine(day, closes, tzinfo=self.tz),
            )
            for opens, closes in week.get(day.weekday(), ())
        ]

    def open_spans(self, day: date) -> list[Busy]:
        return self._spans(day, self.opening)

    def works_on(self, clinician_id: int, day: date) -> bool:
        return bool(self.working.get(clinician_id, {}).get(day.weekday()))

    def usual_minutes(self) -> tuple[int, int]:
        """The widest of the clinic's weekly hours, as wall-clock minutes (from, until)."""
        spans = [span for day in self.opening.values() for span in day]
        if not spans:
            return FALLBACK_MINUTES
        opens, closes = min(span[0] for span in spans), max(span[1] for span in spans)
        return opens.hour * 60 + opens.minute, closes.hour * 60 + closes.minute

    def layers(self, day: date, clinician: Clinician | None = None) -> list[Layer]:
        """The shading of a column of local ``day``, least important first; with
        ``clinician``, their hours, busy times from their own calendar and time off too."""
        layers = []
        if clinician is not None:
            layers += [
                Layer(
                    "away",
                    "Not working",
                    self._spans(day, self.working.get(clinician.pk, {})),
                    outside=True,
                ),
                Layer("busy", "Busy (own calendar)", self.own_busy.get(clinician.pk, [])),
                Layer("off", "Time off", self.time_off.get(clinician.pk, [])),
            ]
        return [
            *layers,
            Layer("closed", "Clinic closed", self.open_spans(day), outside=True),
            Layer("closed", "Closed", self.closures),
            Layer("closed", "Public holiday", self.holidays),
        ]

    def digest(self) -> str:
        """A digest of everything here, for the key of a cached grid."""
        parts = [
            sorted(self.opening.items()),
            self.closures,
            self.holidays,
            [
                (pk, c.display_name, sorted(self.working[pk].items()))
                for pk, c in self.people.items()
            ],
            sorted((pk, sorted(spans)) for pk, spans in self.time_off.items()),
            sorted((pk, sorted(spans)) for pk, spans in self.own_busy.items()),
        ]
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _absences(clinicians: list[Clinician] | None, clinic: Clinic, start: datetime, end: datetime):
    """(clinician id, start, end, reason, "off" or "busy") of time off and own-calendar busy
    times in [start, end): one query (a UNION)."""
    text = CharField()
    owners = {"clinician__in": clinicians} if clinicians else {"clinician__clinic": clinic}
    time_off = (
        TimeOff.objects.filter(start__lt=end, end__gt=start, **owners)
        .annotate(source=Value("off", output_field=text))
        .values_list("clinician_id", "start", "end", "reason", "source")
        .order_by()  # a UNION's parts may not be ordered
    )
    busy = (
        BusyBlock.objects.filter(start__lt=end, end__gt=start, **owners)
        .annotate(reason=Value("", output_field=text), source=Value("busy", output_field=text))
        .values_list("clinician_id", "start", "end", "reason", "source")
        .order_by()
    )
    return time_off.union(busy, all=True)


# -- the three arrangements ---------------------------------------------------


def shown(visits: Iterable[Visit]) -> list[Visit]:
    """The visits a grid draws: a cancelled one frees its time (pages list them apart)."""
    return [visit for visit in visits if visit.status != VisitStatus.CANCELLED]


def by_person(
    day: date,
    axis: Axis,
    backdrop: Backdrop,
    visits: list[Visit],
    now: datetime,
    book: Callable[[Clinician, datetime], tuple[str, str]] | None = None,
) -> list[Column]:
    """A column for each person who works on ``day`` or is on a visit of it, by name:
    each visit under everyone on its team, for their own part of it."""
    parts: dict[int, list] = defaultdict(list)
    people = {pk: person for pk, person in backdrop.people.items() if backdrop.works_on(pk, day)}
    for visit in shown(visits):
        for part in visit.staff:
            parts[part.clinician_id].append((visit, part))
            people.setdefault(part.clinician_id, part.clinician)
    return [
        column(
            person.display_name,
            axis,
            parts[pk],
            backdrop.layers(day, person),
            now=now,
            book=(lambda start, person=person: book(person, start)) if book else None,
            note=", ".join(person.roles),
        )
        for pk, person in sorted(people.items(), key=lambda item: (item[1].display_name, item[0]))
    ]


TELEHEALTH = "Telehealth"


def by_room(
    day: date, axis: Axis, backdrop: Backdrop, rooms: list[Room], visits: list[Visit], now
) -> list[Column]:
    """A column for each room, and one for telehealth visits (no room)."""
    in_room: dict[int | None, list] = defaultdict(list)
    for visit in shown(visits):
        in_room[visit.room_id].append((visit, None))
    layers = backdrop.layers(day)
    columns = [column(room.name, axis, in_room[room.pk], layers, now=now) for room in rooms]
    return [*columns, column(TELEHEALTH, axis, in_room[None], layers, now=now)]


def by_day(
    days: list[date],
    axes: list[Axis],
    backdrop: Backdrop,
    visits: list[Visit],
    now: datetime,
    *,
    person: Clinician | None = None,
    book: Booker = None,
    link: Callable[[date], str] | None = None,
) -> list[Column]:
    """A column for each of ``days``: everyone's visits, or ``person``'s part of theirs."""
    entries: dict[date, list] = defaultdict(list)
    tz = backdrop.tz
    for visit in shown(visits):
        part = visit.participant(person) if person is not None else None
        if person is not None and part is None:
            continue
        start = part.start if part else visit.start
        entries[start.astimezone(tz).date()].append((visit, part))
    return [
        column(
            f"{day:%A} {day.day} {day:%B}",
            axis,
            entries[day],
            backdrop.layers(day, person),
            now=now,
            book=book,
            link=link(day) if link else "",
        )
        for day, axis in zip(days, axes, strict=True)
    ]


def week_axes(days: list[date], backdrop: Backdrop, visits: list[Visit]) -> list[Axis]:
    """One axis a day over the same wall-clock hours: the week's opening hours and visits.

    The time scale is Monday's. On a day clocks change inside the hours shown
    (a clinic open at 02:00 on a Sunday), that day's rows after the change sit
    an hour off the scale; its blocks still say their own times.
    """
    spans = [span for day in days for span in backdrop.open_spans(day)]
    spans += [(visit.start, visit.end) for visit in shown(visits)]
    minutes = minutes_shown(days, backdrop.tz, spans, backdrop.usual_minutes())
    return [Axis.for_day(day, backdrop.tz, minutes) for day in days]


def day_axis(day: date, backdrop: Backdrop, visits: list[Visit]) -> Axis:
    """The day's opening hours and visits; on a day the clinic does not open, its usual hours."""
    spans = backdrop.open_spans(day) + [(v.start, v.end) for v in shown(visits)]
    minutes = minutes_shown([day], backdrop.tz, spans, backdrop.usual_minutes())
    return Axis.for_day(day, backdrop.tz, minutes)
