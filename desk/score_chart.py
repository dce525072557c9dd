"""A patient's questionnaire scores over time as a picture, one per instrument.

Drawn on the patient's desk page and the clinician's page for their patient by
templates/desk/_score_chart.html as server-rendered SVG (classes only, the
colours in static/css/app.css: the CSP allows no inline style), with the same
facts in words (the caption) and in a table (date, score, band, change).

Nothing here decides what a score means: the bands, the response and the
remission come from the instrument's scoring data through
``questionnaires.scores.Course``. This module only places them: time across
(the clinic's local days, from the earliest score or dose to the latest), the
total up (0 at the bottom, the instrument's maximum at the top), the bands
shaded behind, each dosing visit a line with a mark under the axis.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from questionnaires.scores import Course
from scheduler.models import Visit, VisitKind, VisitStatus

# Geometry, in CSS pixels.
LEFT = 36  # the totals' labels
PLOT_WIDTH = 520
RIGHT = 168  # the bands' names
TOP = 10
PLOT_HEIGHT = 180
AXIS = 48  # dose marks and dates under the plot
PAD = 14  # keeps the first and last points off the plot's edges
LABEL_GAP = 56  # the least room between two dates under the axis
SHADES = 5  # .sc-band-0 (lightest) to .sc-band-4


@dataclass(frozen=True)
class BandArea:
    label: str
    range_text: str
    y: float
    height: float
    label_y: float
    shade: int


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    when: str
    total: int
    band: str
    change_text: str


@dataclass(frozen=True)
class Dose:
    x: float
    when: str
    name: str


@dataclass(frozen=True)
class Level:
    """A horizontal line across the plot: the baseline, the response or remission threshold."""

    kind: str
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    key: str
    course: Course
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_width: int
    plot_top: int
    plot_bottom: int
    bands: list[BandArea]
    ticks: list[tuple[float, int]]  # (y, total) on the left
    dots: list[Dot]
    line: str  # the polyline's points
    doses: list[Dose]
    dates: list[tuple[float, str]]  # (x, date) under the axis
    levels: list[Level]
    summary: str


def _day(moment: datetime, tz: tzinfo) -> str:
    local = moment.astimezone(tz)
    return f"{local.day} {local:%b %Y}"


def _signed(change: int) -> str:
    return "no change" if change == 0 else f"{change:+d}"


def dosing_visits(visits) -> list[Visit]:
    """The patient's doses to mark: dosing visits booked or after, not cancelled."""
    return [
        visit
        for visit in visits
        if visit.visit_type.kind == VisitKind.DOSING
        and visit.status not in (VisitStatus.PROPOSED, VisitStatus.CANCELLED)
    ]


def summary_of(course: Course, tz: tzinfo) -> str:
    """The chart in words: where the course started, where it is, what that means."""
    first, last = course.baseline, course.latest
    words = [f"{course.short_name}: baseline {first.total} ({first.band}) on {_day(first.at, tz)}."]
    if len(course.points) == 1:
        words.append("No later score yet to compare with it.")
        return " ".join(words)
    words.append(f"Latest {last.total} ({last.band}) on {_day(last.at, tz)}, ")
    change = course.change
    if change == 0:
        words[-1] += "the same as the baseline."
    else:
        words[-1] += f"{abs(change)} points {'lower' if change < 0 else 'higher'}"
        percent = course.change_percent
        words[-1] += f" ({percent:+d} %)." if percent is not None else "."
    drop = round(course.response_drop * 100)
    words.append(
        f"Response (a drop of at least {drop} % from baseline): {'yes' if course.response else 'no'}."
    )
    if course.remission_below is not None:
        words.append(
            f"Remission (below {course.remission_below}): {'yes' if course.remission else 'no'}."
        )
    return " ".join(words)


def chart_of(course: Course, doses: list[Visit], tz: tzinfo) -> Chart:
    """``course`` drawn against ``doses`` (``dosing_visits``) in the clinic's zone ``tz``."""
    moments = [point.at for point in course.points] + [visit.start for visit in doses]
    start, end = min(moments), max(moments)
    if end - start < timedelta(days=1):
        start, end = start - timedelta(hours=12), end + timedelta(hours=12)
    span = (end - start).total_seconds()
    left, right = LEFT, LEFT + PLOT_WIDTH
    top, bottom = TOP, TOP + PLOT_HEIGHT

    def x(moment: datetime) -> float:
        return round(
            left + PAD + (PLOT_WIDTH - 2 * PAD) * (moment - start).total_seconds() / span, 1
        )

    def y(total: float) -> float:
        return round(bottom - PLOT_HEIGHT * total / max(course.max_total, 1), 1)

    bands = []
    count = len(course.bands)
    for i, band in enumerate(course.bands):
        # A band reaches up to where the next begins: totals are whole numbers.
        upper = course.bands[i + 1].low if i + 1 < count else course.max_total
        shade = round(i * (SHADES - 1) / (count - 1)) if count > 1 else 0
        high_y, low_y = y(upper), y(band.low)
        bands.append(
            BandArea(
                band.label,
                f"{band.low}-{band.high}",
                high_y,
                round(low_y - high_y, 1),
                round((high_y + low_y) / 2 + 4, 1),
                shade,
            )
        )
    ticks = [(y(band.low), band.low) for band in course.bands] + [
        (y(course.max_total), course.max_total)
    ]
    dots = [
        Dot(
            x(point.at),
            y(point.total),
            _day(point.at, tz),
            point.total,
            point.band,
            "baseline" if i == 0 else _signed(point.change),
        )
        for i, point in enumerate(course.points)
    ]
    dates, last_x = [], None
    for dot in dots:
        if last_x is None or dot.x - last_x >= LABEL_GAP:
            dates.append((dot.x, dot.when))
            last_x = dot.x
    levels = [Level("baseline", y(course.baseline.total), f"Baseline {course.baseline.total}")]
    if course.response_at_most is not None:
        at_most = course.response_at_most
        levels.append(Level("response", y(at_most), f"Response: {at_most} or lower"))
    if course.remission_below is not None:
        levels.append(
            Level(
                "remission", y(course.remission_below), f"Remission: below {course.remission_below}"
            )
        )
    return Chart(
        key=f"sc-{course.code}",
        course=course,
        width=LEFT + PLOT_WIDTH + RIGHT,
        height=TOP + PLOT_HEIGHT + AXIS,
        plot_left=left,
        plot_right=right,
        plot_width=PLOT_WIDTH,
        plot_top=top,
        plot_bottom=bottom,
        bands=bands,
        ticks=ticks,
        dots=dots,
        line=" ".join(f"{dot.x},{dot.y}" for dot in dots),
        doses=[
            Dose(x(visit.start), _day(visit.start, tz), visit.visit_type.name) for visit in doses
        ],
        dates=dates,
        levels=levels,
        summary=summary_of(course, tz) + _doses_in_words(doses, tz),
    )


def _doses_in_words(doses: list[Visit], tz: tzinfo) -> str:
    if not doses:
        return ""
    days = ", ".join(_day(visit.start, tz) for visit in doses)
    return f" Dose{'s' if len(doses) > 1 else ''} marked: {days}."


def charts_of(courses: list[Course], visits, tz: tzinfo) -> list[Chart]:
    """A chart per course, each against the patient's doses among ``visits`` (loaded with
    their visit types)."""
    doses = dosing_visits(visits)
    return [chart_of(course, doses, tz) for course in courses]
