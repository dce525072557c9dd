"""The time grids' geometry (desk/time_grid.py): rows, blocks as tall as visits, shading, CSS.

The desk's day and week and a clinician's week all come from this one
builder; tests/test_desk_grids.py checks the pages drawn from it.
"""

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from desk import time_grid
from desk.time_grid import MAX_ROWS, Axis, Backdrop
from scheduler import booking
from scheduler.models import BusyBlock, Closure, TimeOff, Visit, VisitStatus
from tests.conftest import MONDAY, ClinicBuilder, SmallClinic, at
from tests.test_public_holidays import THANKSGIVING

pytestmark = pytest.mark.usefixtures("now")
ROOT = Path(__file__).resolve().parent.parent
GRID_CSS = (ROOT / "static" / "css" / "grid.css").read_text()


def day_grid(clinic: SmallClinic, day: date, visits=None):
    """The columns of ``day`` by person, as the desk's day page builds them (no booking links)."""
    tz = clinic.clinic.tz
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    backdrop = Backdrop.load(clinic.clinic, start, end)
    if visits is None:
        visits = list(
            Visit.objects.filter(patient__clinic=clinic.clinic)
            .on_local_day(day, tz)
            .prefetch_related("participants__clinician")
        )
    axis = time_grid.day_axis(day, backdrop, visits)
    now = at(day, "07:00")
    return axis, {c.title: c for c in time_grid.by_person(day, axis, backdrop, visits, now)}


def local_row(axis: Axis, row: int) -> str:
    """The wall-clock time row ``row`` (a CSS grid line, from 1) starts at."""
    return f"{axis.row_start(row - 1):%H:%M}"


def test_a_60_minute_visit_at_ten_spans_four_quarter_rows_from_the_ten_oclock_row(clinic):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.screening,  # 60 minutes
        clinician=clinic.prescriber,
        room=clinic.room3,
        start=at(MONDAY, "10:00"),
    )
    axis, columns = day_grid(clinic, MONDAY)
    assert local_row(axis, 1) == "08:00" and axis.rows == 40  # the clinic's 08:00-18:00
    [block] = [b for b in columns["Dr. Alvarez"].items if not b.is_cell]
    assert block.visit == visit
    assert (block.row, block.span) == (9, 4)
    assert local_row(axis, block.row) == "10:00"
    assert local_row(axis, block.row + block.span) == "11:00"


def test_a_therapist_on_the_first_hour_of_a_dosing_visit_holds_only_that_hour_in_their_column(
    clinic,
):
    clinic.add_to_team(clinic.iv, "therapist", stays_minutes=60)
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.iv,  # 120 minutes, 09:00-11:00
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "09:00"),
        ride_home_arranged=True,
    )
    axis, columns = day_grid(clinic, MONDAY)
    [lead] = [b for b in columns["Dr. Alvarez"].items if not b.is_cell]
    [guide] = [b for b in columns["Sam Rivers"].items if not b.is_cell]
    assert lead.visit == guide.visit == visit
    assert (local_row(axis, lead.row), lead.span) == ("09:00", 8)
    assert (local_row(axis, guide.row), guide.span) == ("09:00", 4)
    assert guide.part.clinician == clinic.therapist and not guide.is_whole
    # Nobody else's column holds it.
    assert not [b for b in columns["Nurse Kim"].items if not b.is_cell]


@pytest.mark.parametrize(
    "day, rows, labels",
    [
        # A Sunday open 00:00-06:00 has 24 quarter hours; clocks skip 02:00-03:00 on
        # 10 March 2030 and repeat 01:00-02:00 on 3 November 2030 (New York).
        (date(2030, 3, 3), 24, ["00:00", "01:00", "02:00", "03:00", "04:00", "05:00"]),
        (date(2030, 3, 10), 20, ["00:00", "01:00", "03:00", "04:00", "05:00"]),
        (
            date(2030, 11, 3),
            28,
            ["00:00", "01:00 EDT", "01:00 EST", "02:00", "03:00", "04:00", "05:00"],
        ),
    ],
)
def test_a_day_grid_has_a_row_for_each_quarter_hour_that_passes_also_when_clocks_change(
    db, day, rows, labels
):
    clinic = ClinicBuilder(hours=("00:00", "06:00"), days=range(7))
    clinic.clinician("Night Nurse", "nurse", hours=("00:00", "06:00"), days=range(7))
    axis, _ = day_grid(clinic, day, visits=[])
    assert axis.rows == rows
    assert [label for _, label in axis.hours()] == labels


def test_a_two_hour_visit_over_the_spring_change_is_two_hours_tall(db):
    clinic = SmallClinic(hours=("00:00", "06:00"), days=range(7))
    spring = date(2030, 3, 10)
    start = at(spring, "01:00")
    visit = Visit.objects.create(
        patient=clinic.patient(),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=start,
        end=start.astimezone(UTC) + timedelta(hours=2),  # 04:00 summer time on the wall clock
    )
    axis, columns = day_grid(clinic, spring)
    [block] = [b for b in columns["Dr. Alvarez"].items if not b.is_cell]
    assert block.visit == visit and block.span == 8
    assert local_row(axis, block.row) == "01:00" and local_row(axis, block.row + 8) == "04:00"


def shading(column) -> list[tuple[str, str, str, str]]:
    return [
        (shade.kind, shade.label, f"{shade.start:%H:%M}", f"{shade.end:%H:%M}")
        for shade in column.shades
    ]


def test_closed_hours_closures_and_time_off_are_shaded_with_their_reasons(clinic):
    Closure.objects.create(
        clinic=clinic.clinic,
        start=at(MONDAY, "15:00"),
        end=at(MONDAY, "16:00"),
        reason="Staff training",
    )
    TimeOff.objects.create(
        clinician=clinic.therapist,
        start=at(MONDAY, "12:00"),
        end=at(MONDAY, "13:30"),
        reason="Dentist",
    )
    _, columns = day_grid(clinic, MONDAY)
    # Sam Rivers works 09:00-17:00 in a clinic open 08:00-18:00.
    assert shading(columns["Sam Rivers"]) == [
        ("away", "Not working", "08:00", "09:00"),
        ("off", "Time off: Dentist", "12:00", "13:30"),
        ("closed", "Closed: Staff training", "15:00", "16:00"),
        ("away", "Not working", "17:00", "18:00"),
    ]
    assert shading(columns["Dr. Alvarez"]) == [
        ("closed", "Closed: Staff training", "15:00", "16:00")
    ]


def test_a_public_holiday_shades_every_column_with_its_name(clinic):
    _, columns = day_grid(clinic, THANKSGIVING)
    for column in columns.values():
        assert shading(column) == [("closed", "Public holiday: Thanksgiving Day", "08:00", "18:00")]


def test_free_cells_are_the_open_quarter_hours_nobody_holds_after_now(clinic):
    booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,  # 50 minutes: the 10:45 quarter is held too
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    TimeOff.objects.create(
        clinician=clinic.therapist, start=at(MONDAY, "12:00"), end=at(MONDAY, "13:00")
    )
    tz = clinic.clinic.tz
    start = datetime.combine(MONDAY, time(0), tzinfo=tz)
    backdrop = Backdrop.load(clinic.clinic, start, start + timedelta(days=1))
    visits = list(
        Visit.objects.on_local_day(MONDAY, tz).prefetch_related("participants__clinician")
    )
    axis = time_grid.day_axis(MONDAY, backdrop, visits)
    [sam] = [
        column
        for column in time_grid.by_person(
            MONDAY,
            axis,
            backdrop,
            visits,
            now=at(MONDAY, "09:20"),
            book=lambda person, when: ("/book", f"Book {person} at {when:%H:%M}"),
        )
        if column.title == "Sam Rivers"
    ]
    free = [f"{cell.start.astimezone(tz):%H:%M}" for cell in sam.items if cell.is_cell]
    # From 09:30 (09:15 has begun), not 10:00-11:00, not the time off, until 16:45.
    assert free[:2] == ["09:30", "09:45"] and "10:00" not in free and "10:45" not in free
    assert "11:00" in free and "12:00" not in free and "12:45" not in free and "13:00" in free
    assert free[-1] == "16:45"
    assert next(cell.label for cell in sam.items if cell.is_cell) == "Book Sam Rivers at 09:30"


def test_a_clinicians_own_calendar_busy_times_are_shaded_on_their_week(clinic):
    calendar = clinic.therapist.external_calendars.create(url="https://calendar.example.com/a.ics")
    BusyBlock.objects.create(
        clinician=clinic.therapist,
        external_calendar=calendar,
        start=at(MONDAY, "14:00"),
        end=at(MONDAY, "15:00"),
    )
    tz = clinic.clinic.tz
    start = datetime.combine(MONDAY, time(0), tzinfo=tz)
    backdrop = Backdrop.load(
        clinic.clinic, start, start + timedelta(days=7), clinician=clinic.therapist
    )
    days = time_grid.days_of(MONDAY)
    axes = time_grid.week_axes(days, backdrop, [])
    columns = time_grid.by_day(
        days, axes, backdrop, [], at(MONDAY, "07:00"), person=clinic.therapist
    )
    assert ("busy", "Busy (own calendar)", "14:00", "15:00") in shading(columns[0])
    assert all(shade.kind != "busy" for column in columns[1:] for shade in column.shades)
    # Saturday: the clinic is closed all day (the weekly hours are Monday to Friday).
    assert shading(columns[5]) == [("closed", "Clinic closed", "08:00", "18:00")]


def test_the_now_line_is_on_todays_columns_only_at_the_minute(clinic):
    tz = clinic.clinic.tz
    start = datetime.combine(MONDAY, time(0), tzinfo=tz)
    backdrop = Backdrop.load(clinic.clinic, start, start + timedelta(days=7))
    days = time_grid.days_of(MONDAY)
    axes = time_grid.week_axes(days, backdrop, [])
    columns = time_grid.by_day(days, axes, backdrop, [], at(MONDAY + timedelta(days=1), "10:37"))
    lines = [column.now for column in columns]
    assert lines[0] is None and all(line is None for line in lines[2:])
    assert (lines[1].row, lines[1].minute, lines[1].shown) == (11, 7, True)  # 10:30 + 7 min
    # Before the grid's first row (the clinic opens at 08:00) the line is drawn hidden.
    early = time_grid.by_day(days, axes, backdrop, [], at(MONDAY, "06:00"))[0].now
    assert early.shown is False


def test_cancelled_visits_free_their_time_in_the_grid(clinic):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    booking.cancel(visit, reason="Unwell")
    assert Visit.objects.get().status == VisitStatus.CANCELLED
    _, columns = day_grid(clinic, MONDAY)
    assert not [item for item in columns["Sam Rivers"].items if not item.is_cell]


# -- the stylesheet the grid's class names need -----------------------------------


def test_the_stylesheet_places_every_row_and_span_the_builder_can_give():
    rows = {int(n) for n in re.findall(r"\.tg \.r(\d+) \{ grid-row-start: \1; \}", GRID_CSS)}
    spans = {int(n) for n in re.findall(r"\.tg \.s(\d+) \{ grid-row-end: span \1; \}", GRID_CSS)}
    minutes = {int(n) for n in re.findall(r"\.tg \.m(\d+) \{ margin-top: ", GRID_CSS)}
    assert rows == spans == set(range(1, MAX_ROWS + 1))
    assert minutes == set(range(15))
    # The longest day there is fits: 25 hours when clocks fall back.
    assert MAX_ROWS * 15 >= 25 * 60


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: str, other: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""
    light, dark = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_every_kind_status_and_shading_colour_keeps_text_readable():
    """WCAG AA: at least 4.5:1 between text and background, for each rule that sets both."""
    pairs = {
        selector.strip(): (background, text)
        for selector, background, text in re.findall(
            r"([^{}]+)\{[^}]*background-color: (#[0-9a-f]{6});[^}]*?\bcolor: (#[0-9a-f]{6});",
            GRID_CSS,
        )
    }
    for kind in ("screening", "preparation", "dosing", "integration", "maintenance"):
        assert f".k-{kind}" in pairs
    for status in ("completed", "no_show"):
        assert f".st-{status}" in pairs
    for shade in ("closed", "away", "off", "busy"):
        assert f".tg-{shade}" in pairs
    low = {sel: round(contrast(*pair), 2) for sel, pair in pairs.items() if contrast(*pair) < 4.5}
    assert low == {}
    # The flags' colours on every kind's and status's background: flags sit on their own.
    assert ".tg-flag" in pairs
