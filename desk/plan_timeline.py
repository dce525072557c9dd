"""The course of care as a picture: a plan's visits week by week, one lane per kind of step.

Drawn on the new-plan page (a proposal, before it is confirmed) and on the
patient's desk page (each saved plan) by templates/desk/_plan_timeline.html,
as server-rendered SVG with a table of the same facts beside it.

Nothing here works out a rule. The facts come from the plan:

- each visit's step (its visit type's kind gives the lane) and its status;
- the window its step's rule allowed it in, as the generator computed it
  (``plans.generator.ProposedVisit.window``, kept on ``PlannedVisit`` when the
  plan is saved); a saved plan's windows stay those of its proposal;
- where the proposal first put a visit that has moved since
  (``PlannedVisit.proposed_start``), drawn as a ghost with an arrow;
- on a proposal, the day asked for when the plan had to start later.

Positions are in the clinic's local days from the Monday the picture starts
on, so a week's column holds the same wall-clock days across DST changes.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from plans.generator import LONG_AGO, Proposal, ProposedVisit
from plans.models import CarePlan, PlannedVisit
from scheduler.models import VisitKind, VisitStatus

# The lanes, in the order a course of care runs through them.
LANES = {
    VisitKind.SCREENING: "Screening",
    VisitKind.PREPARATION: "Preparation",
    VisitKind.DOSING: "Dosing",
    VisitKind.INTEGRATION: "Integration",
    VisitKind.MAINTENANCE: "Maintenance",
}
# A mark's shape by status (templates/desk/_plan_timeline.html draws each), and its words.
COUNTED = "counted"  # a visit the patient already has, which the plan counts for its step
STATUS_WORDS = {
    VisitStatus.PROPOSED: "proposed",
    VisitStatus.BOOKED: "booked",
    VisitStatus.CONFIRMED: "confirmed",
    VisitStatus.CHECKED_IN: "checked in",
    VisitStatus.COMPLETED: "completed",
    VisitStatus.CANCELLED: "cancelled",
    VisitStatus.NO_SHOW: "no-show",
    COUNTED: "already there, counted",
}

# Geometry, in CSS pixels.
LABEL_WIDTH = 104  # the lanes' names
PLOT_WIDTH = 840  # what the days share, within the bounds below
DAY_WIDTH = (6, 24)
HEADER = 36  # two lines of week labels
TRACK = 24  # one row of marks; a lane has as many as its windows need
MAX_TRACKS = 4
LANE_PAD = 4
FOOTER_ROW = 16  # a label for each vertical line (asked for, plan starts, today)
MARK_HALF = 8  # half a mark's width: what two marks in one row must keep apart


@dataclass
class Mark:
    """One visit of the plan, where it is, what it is and what it was allowed."""

    kind: str
    label: str  # its step, with the occurrence after the first
    start: datetime
    status: str  # a key of STATUS_WORDS
    status_text: str
    # (earliest, latest) its step's rule allowed, None for no bound; None: not recorded.
    window: tuple[datetime | None, datetime | None] | None
    moved_from: datetime | None = None
    visit_id: int | None = None
    # Set by the layout:
    when: str = ""  # local times in words
    moved_text: str = ""
    window_text: str = ""
    week: int = 0
    track: int = 0
    x: int = 0
    y: int = 0
    window_x: int = 0
    window_width: int = 0
    window_open: bool = False  # runs on past the picture's end
    ghost_x: int | None = None
    arrow: tuple[int, int] | None = None  # from, to (x) when the move is long enough to draw

    @property
    def outside_window(self) -> bool:
        if self.window is None or self.status == VisitStatus.CANCELLED:
            return False
        earliest, latest = self.window
        return (earliest is not None and self.start < earliest) or (
            latest is not None and self.start > latest
        )


@dataclass
class Lane:
    kind: str
    label: str
    marks: list[Mark]
    tracks: int = 1
    top: int = 0

    @property
    def height(self) -> int:
        return self.tracks * TRACK + 2 * LANE_PAD

    @property
    def middle(self) -> int:
        return self.top + self.height // 2


@dataclass
class Line:
    """A day marked across every lane: the day asked for, the plan's start, today."""

    kind: str  # "asked", "start", "today"
    day: date
    text: str
    widens: bool = True  # the picture reaches it (today does not: it is drawn only inside)
    x: int = 0
    label_y: int = 0
    anchor: str = "start"


@dataclass
class Timeline:
    key: str  # unique on its page: the SVG's ids start with it
    title: str
    tz: tzinfo
    marks: list[Mark]
    lines: list[Line] = field(default_factory=list)
    # Set by the layout:
    first_day: date | None = None
    days: int = 0
    day_width: int = 0
    lanes: list[Lane] = field(default_factory=list)
    weeks: list[tuple[int, str, str]] = field(default_factory=list)  # x, number, first day
    width: int = 0
    height: int = 0
    plot_bottom: int = 0

    @property
    def moved(self) -> list[Mark]:
        return [m for m in self.marks if m.moved_from is not None]

    @property
    def outside(self) -> list[Mark]:
        return [m for m in self.marks if m.outside_window]

    @property
    def statuses(self) -> list[tuple[str, str]]:
        """The statuses on the picture, in the legend's order, with their words."""
        present = {m.status for m in self.marks}
        return [(key, words) for key, words in STATUS_WORDS.items() if key in present]

    @property
    def has_windows(self) -> bool:
        return any(m.window is not None for m in self.marks)

    @property
    def summary(self) -> str:
        """The picture in one sentence, for its text alternative's first words."""
        count = len(self.marks)
        last_day = self.first_day + timedelta(days=self.days - 1)
        text = (
            f"{self.title}: {count} visit{'s' if count != 1 else ''} over "
            f"{len(self.weeks)} week{'s' if len(self.weeks) != 1 else ''}, "
            f"{self.first_day:%a %Y-%m-%d} to {last_day:%a %Y-%m-%d}; "
            + ", ".join(f"{lane.label.lower()} ({len(lane.marks)})" for lane in self.lanes)
        )
        if self.moved:
            text += f"; {len(self.moved)} moved from where the plan first put them"
        if self.outside:
            text += f"; {len(self.outside)} outside the window the protocol allowed"
        for line in self.lines:
            if line.kind == "asked":
                text += f"; {line.text}"
        return text + "."


def for_proposal(proposal: Proposal, tz: tzinfo, asked_from: date | None = None) -> Timeline:
    """The proposal's picture: the visits to book, and those already there that it counts.

    ``asked_from``: the start date asked for; when the plan starts later, both
    days are marked. Costs one query when the plan counts visits already there
    (where an earlier plan first put them).
    """
    first_times = dict(
        PlannedVisit.objects.filter(
            visit__in=[v.existing.pk for v in proposal.satisfied], proposed_start__isnull=False
        ).values_list("visit_id", "proposed_start")
        if proposal.satisfied
        else ()
    )
    marks = [_proposed_mark(v, first_times) for v in [*proposal.satisfied, *proposal.visits]]
    lines = []
    if asked_from is not None and asked_from != proposal.start_date:
        lines += [
            Line("asked", asked_from, f"asked for {asked_from:%a %Y-%m-%d}"),
            Line("start", proposal.start_date, f"plan starts {proposal.start_date:%a %Y-%m-%d}"),
        ]
    timeline = Timeline("proposal", f"{proposal.protocol} for {proposal.patient}", tz, marks, lines)
    return laid_out(timeline)


def _proposed_mark(visit: ProposedVisit, first_times: dict) -> Mark:
    window = None
    if visit.window is not None:
        earliest = visit.window.earliest
        if visit.existing is not None and visit.window.counts_from is not None:
            # What is already there counted from then (for a step timed from the
            # plan's start: however long ago).
            earliest = visit.window.counts_from if visit.window.counts_from > LONG_AGO else None
        window = (earliest, visit.window.latest)
    existing = visit.existing
    if existing is None:
        status, words = VisitStatus.PROPOSED, "proposed, to book"
    else:
        status = COUNTED
        words = f"already {existing.get_status_display().lower()}, counted"
    moved_from = first_times.get(existing.pk) if existing is not None else None
    return Mark(
        kind=visit.visit_type.kind,
        label=_label(visit.step, visit.occurrence),
        start=visit.start,
        status=status,
        status_text=words,
        window=window,
        moved_from=moved_from if moved_from != visit.start else None,
        visit_id=existing.pk if existing is not None else None,
    )


def for_care_plan(plan: CarePlan, tz: tzinfo, today: date | None = None) -> Timeline:
    """A saved plan's picture, from ``plan.planned_visits`` with their steps' visit types
    and visits (prefetch them: this asks the database nothing)."""
    marks = []
    for planned in plan.planned_visits.all():
        visit = planned.visit
        window = None
        if planned.window_earliest is not None:
            window = (planned.window_earliest, planned.window_latest)
        moved_from = planned.proposed_start
        marks.append(
            Mark(
                kind=planned.step.visit_type.kind,
                label=_label(planned.step, planned.occurrence),
                start=visit.start,
                status=visit.status,
                status_text=visit.get_status_display().lower(),
                window=window,
                moved_from=moved_from if moved_from not in (None, visit.start) else None,
                visit_id=visit.pk,
            )
        )
    timeline = Timeline(
        f"plan-{plan.pk}", f"{plan.protocol} from {plan.start_date:%Y-%m-%d}", tz, marks
    )
    if today is not None:
        timeline.lines.append(Line("today", today, f"today, {today:%a %Y-%m-%d}", widens=False))
    return laid_out(timeline)


def _label(step, occurrence: int) -> str:
    return f"{step} #{occurrence}" if occurrence > 1 else str(step)


# -- layout ------------------------------------------------------------------


def laid_out(timeline: Timeline) -> Timeline:
    """Weeks across from the Monday before the first visit, lanes down, marks in rows.

    The picture spans every visit, every earlier position, every window's end
    and the lines that widen it; a window reaching back before that (what was
    already there counts however long ago) is cut at the picture's start, and
    a line outside it (today, for a plan long past) is left out.
    """
    tz = timeline.tz
    marks = timeline.marks
    if not marks:
        timeline.lines = []
        return timeline

    def local(moment: datetime) -> datetime:
        return moment.astimezone(tz)

    days = [local(m.start).date() for m in marks]
    days += [local(m.moved_from).date() for m in marks if m.moved_from is not None]
    days += [line.day for line in timeline.lines if line.widens]
    ends = [local(m.window[1]).date() for m in marks if m.window and m.window[1] is not None]
    first, last = min(days), max(days + ends)
    first -= timedelta(days=first.weekday())
    last += timedelta(days=6 - last.weekday())
    timeline.lines = [line for line in timeline.lines if first <= line.day <= last]
    total_days = (last - first).days + 1
    day_width = min(DAY_WIDTH[1], max(DAY_WIDTH[0], PLOT_WIDTH // total_days))
    end_x = LABEL_WIDTH + total_days * day_width

    def x_of(moment: datetime | date) -> int:
        """Where ``moment`` falls: its local day and the time within it."""
        if isinstance(moment, datetime):
            moment = local(moment)
            offset = (moment.date() - first).days + (moment.hour * 60 + moment.minute) / 1440
        else:
            offset = (moment - first).days
        return LABEL_WIDTH + round(max(0, min(total_days, offset)) * day_width)

    timeline.first_day, timeline.days, timeline.day_width = first, total_days, day_width
    timeline.width = end_x + 8
    week_width = 7 * day_width
    timeline.weeks = [
        (
            LABEL_WIDTH + n * week_width,
            f"Week {n + 1}" if week_width >= 56 else f"W{n + 1}",
            f"{first + timedelta(days=7 * n):%b %-d}",
        )
        for n in range(total_days // 7)
    ]

    top = HEADER
    for kind, label in LANES.items():
        in_lane = sorted((m for m in marks if m.kind == kind), key=lambda m: m.start)
        if not in_lane:
            continue
        reaches = {}
        for mark in in_lane:
            mark.week = (local(mark.start).date() - first).days // 7 + 1
            mark.x = x_of(mark.start)
            reach = [mark.x - MARK_HALF, mark.x + MARK_HALF]
            mark.when = _text(local(mark.start))
            if mark.moved_from is not None:
                mark.moved_text = _text(local(mark.moved_from))
            if mark.window is not None:
                earliest, latest = mark.window
                mark.window_text = _window_text(*(w and local(w) for w in mark.window))
                mark.window_x = LABEL_WIDTH if earliest is None else x_of(earliest)
                mark.window_open = latest is None
                right = end_x if latest is None else x_of(latest)
                mark.window_width = max(2, right - mark.window_x)
                reach = [min(reach[0], mark.window_x), max(reach[1], right)]
            if mark.moved_from is not None:
                mark.ghost_x = ghost = x_of(mark.moved_from)
                reach = [min(reach[0], ghost - MARK_HALF), max(reach[1], ghost + MARK_HALF)]
                gap = mark.x - ghost
                if abs(gap) > 3 * MARK_HALF:  # room for an arrow between the two
                    step = MARK_HALF + 2 if gap > 0 else -(MARK_HALF + 2)
                    mark.arrow = (ghost + step, mark.x - step)
            reaches[id(mark)] = reach
        # Each mark in the first row its window (and ghost) fits in beside the
        # others', else a new row, up to MAX_TRACKS; then the row ending first.
        track_ends: list[int] = []
        for mark in sorted(in_lane, key=lambda m: reaches[id(m)][0]):
            left, right = reaches[id(mark)]
            free = [n for n, end in enumerate(track_ends) if end < left]
            if free:
                mark.track = free[0]
            elif len(track_ends) < MAX_TRACKS:
                mark.track = len(track_ends)
                track_ends.append(right)
            else:
                mark.track = min(range(MAX_TRACKS), key=track_ends.__getitem__)
            track_ends[mark.track] = max(track_ends[mark.track], right)
        lane = Lane(kind, label, in_lane, tracks=max(1, len(track_ends)), top=top)
        for mark in in_lane:
            mark.y = top + LANE_PAD + mark.track * TRACK + TRACK // 2
        timeline.lanes.append(lane)
        top += lane.height

    timeline.plot_bottom = top
    for row, line in enumerate(timeline.lines, start=1):
        line.x = x_of(line.day)
        line.label_y = top + row * FOOTER_ROW - 3
        line.anchor = "start" if line.x < (LABEL_WIDTH + end_x) / 2 else "end"
    timeline.height = top + len(timeline.lines) * FOOTER_ROW + 6
    return timeline


def _text(moment: datetime) -> str:
    return f"{moment:%a %Y-%m-%d %H:%M}"


def _window_text(earliest: datetime | None, latest: datetime | None) -> str:
    if earliest is None:
        return f"any time up to {_text(latest)}" if latest else "any time"
    return (
        f"{_text(earliest)} to {_text(latest)}" if latest else f"from {_text(earliest)}, no latest"
    )
