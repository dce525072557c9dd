"""Property-based tests of plan generation (docs/architecture.md invariant 3) and of confirming a plan.

Hypothesis draws whole worlds: a clinic in one of four zones (closed on the
public holidays of a country and state there) with random weekly hours
(closed days, split days, early mornings that cross DST changes), 1-3
prescribers, therapists and nurses with their own hours, rooms with random
capabilities, a calendar (closures, spans opened anyway, time off, visits
already booked for the patient and others), a protocol of 1-5 steps that passes ``full_clean()``, a
start date (often in a DST change week) and patient preferences. Properties:

- the generator either raises ``PlanInfeasible`` naming one of the protocol's
  steps and the rule, or proposes a plan in which every rule of
  ``tests/plan_rules.py`` holds, plus the rules stated here independently
  (hours from the drawn spec, anchors and recurrences, doses already booked,
  no visit before the start or now, the cost); the same inputs give the same
  outcome;
- in a roomy clinic (open every day, no upper bound on any window) a plan
  always exists, however far preferences and weekly limits push it;
- confirming a saved plan books exactly its visits, or refuses with every
  visit left proposed, and refuses exactly when it must (a slot taken since,
  dosing without a cleared screening).

Worlds that once broke a rule are kept as explicit examples. Each example's rows
live in a savepoint that is rolled back, so examples do not see one another.
``PLAN_PROPERTIES=deep`` runs ten times as many randomised examples (for hunting
bugs locally; CI runs the derandomised set).
"""

import os
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from dateutil.rrule import rrulestr
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from plans.care_plans import PlanNotConfirmed, confirm, save_proposal
from plans.generator import LATER_START_DAYS, PlanInfeasible, Preferences, Proposal, generate
from plans.models import Anchor, PlanStatus, Protocol, ProtocolStep
from scheduler.models import (
    BLOCKING_STATUSES,
    Closure,
    ClosureKind,
    Modality,
    OpeningHours,
    TimeOff,
    Visit,
    VisitKind,
    VisitStatus,
    WorkingHours,
)
from scheduler.timezones import zone
from tests.conftest import ClinicBuilder
from tests.plan_rules import rule_violations

DEEP = os.environ.get("PLAN_PROPERTIES") == "deep"


def properties(examples: int) -> settings:
    return settings(
        max_examples=examples * 10 if DEEP else examples,
        derandomize=not DEEP,
        database=None,
        deadline=None,
        print_blob=DEEP,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # `now` freezes the clock for every example
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
        ],
    )


ZONES = ("America/New_York", "Europe/Berlin", "Australia/Sydney", "UTC")
# Each zone's clinic is closed on the public holidays of a country and state there.
HOLIDAYS_OF = {
    "America/New_York": ("US", "NY"),
    "Europe/Berlin": ("DE", "BE"),
    "Australia/Sydney": ("AU", "NSW"),
    "UTC": ("GB", "ENG"),
}
ROLES = ("prescriber", "therapist", "nurse")
CAPABILITIES = ("infusion-chair", "monitoring")
RECURRENCES = (
    "FREQ=WEEKLY;COUNT=2",
    "FREQ=MONTHLY;COUNT=2",
    "FREQ=WEEKLY;INTERVAL=2;COUNT=3",
    "FREQ=DAILY;COUNT=3",
    "FREQ=MONTHLY;COUNT=3",
    "FREQ=WEEKLY;COUNT=1",
    "FREQ=WEEKLY;UNTIL=20300601T000000Z",
)
FIRST_DAY, LAST_DAY = date(2029, 12, 28), date(2030, 12, 20)  # the clock says 2030-01-02


def dst_changes(tz_name: str, year: int = 2030) -> list[date]:
    """Local dates on which the zone's UTC offset changes."""
    tz, found = zone(tz_name), []
    day = date(year, 1, 1)
    while day.year == year:
        today = datetime.combine(day, time(12), tzinfo=tz).utcoffset()
        tomorrow = datetime.combine(day + timedelta(days=1), time(12), tzinfo=tz).utcoffset()
        if today != tomorrow:
            found.append(day + timedelta(days=1))
        day += timedelta(days=1)
    return found


DST_CHANGES = {name: dst_changes(name) for name in ZONES}


def clock(half_hours: int) -> time:
    return time(half_hours // 2, 30 * (half_hours % 2))


# -- the world, as plain data (readable when Hypothesis shrinks a failure) --------

Week = tuple[tuple[tuple[time, time], ...], ...]  # 7 days of (opens, closes)


def every_day(opens: str, closes: str) -> Week:
    return (((time.fromisoformat(opens), time.fromisoformat(closes)),),) * 7


EIGHT_TO_SIX = every_day("08:00", "18:00")


@dataclass(frozen=True)
class ClinicianSpec:
    name: str
    roles: tuple[str, ...]
    hours: Week | None = None  # None: the clinic's hours
    active: bool = True


@dataclass(frozen=True)
class VisitTypeSpec:
    kind: str
    minutes: int
    modality: str = Modality.IN_PERSON
    capability: str | None = None
    role: str = "prescriber"
    price: Decimal = Decimal("100.00")


@dataclass(frozen=True)
class StepSpec:
    visit_type: int = 0
    count: int = 1
    anchor: str = Anchor.AFTER_STEP
    after: int | None = None  # index of an earlier step
    min_gap: int = 0
    max_gap: int | None = None
    min_spacing: int = 0
    max_spacing: int | None = None
    max_per_week: int | None = None
    recurrence: str = ""
    tolerance: int = 7


@dataclass(frozen=True)
class Interval:
    who: int  # clinician index (time off); unused for closures
    offset_hours: int  # from local midnight of the start date
    hours: int


@dataclass(frozen=True)
class Existing:
    clinician: int
    visit_type: int
    room: int
    day: int  # from the start date
    half_hour: int  # local wall clock
    own_patient: bool
    status: str


@dataclass(frozen=True)
class World:
    """Defaults: a clinic open 08:00-18:00 every day, one clinician per role, one room."""

    visit_types: tuple[VisitTypeSpec, ...]
    steps: tuple[StepSpec, ...]
    time_zone: str = "America/New_York"
    start_date: date = date(2030, 2, 4)
    opening: Week = EIGHT_TO_SIX
    rooms: tuple[tuple[str, ...], ...] = (CAPABILITIES,)
    clinicians: tuple[ClinicianSpec, ...] = tuple(
        ClinicianSpec(f"{role.title()} A", (role,)) for role in ROLES
    )
    min_hours_between_doses: int = 24
    max_doses_per_week: int = 3
    closures: tuple[Interval, ...] = ()
    openings: tuple[Interval, ...] = ()  # open anyway, on public holidays
    time_off: tuple[Interval, ...] = ()
    existing: tuple[Existing, ...] = ()
    weekdays: frozenset[int] = frozenset()
    time_windows: tuple[tuple[time, time], ...] = ()
    preferred: tuple[tuple[str, int], ...] = ()  # role -> clinician index
    screened: bool = True


# -- strategies ---------------------------------------------------------------


@st.composite
def day_hours(draw, roomy: bool):
    if roomy:  # open every day, long enough for any visit type
        opens = draw(st.integers(0, 16))
        return ((clock(opens), clock(draw(st.integers(max(opens + 20, 36), 47)))),)
    shape = draw(st.sampled_from(["one", "one", "one", "two", "closed"]))
    if shape == "closed":
        return ()
    if shape == "one":
        opens = draw(st.integers(0, 24))  # from midnight: DST changes happen at 02:00-03:00
        return ((clock(opens), clock(draw(st.integers(opens + 6, 47)))),)
    a = draw(st.integers(0, 20))
    b = draw(st.integers(a + 2, a + 16))
    c = draw(st.integers(b, b + 4))
    d = draw(st.integers(c + 2, 47))
    return ((clock(a), clock(b)), (clock(c), clock(d)))


def weeks(roomy: bool = False):
    return st.tuples(*[day_hours(roomy) for _ in range(7)])


@st.composite
def start_dates(draw, time_zone: str):
    changes = DST_CHANGES[time_zone]
    if changes and draw(st.booleans()):
        change = draw(st.sampled_from(changes))
        return change + timedelta(days=draw(st.integers(-6, 1)))
    return draw(st.dates(FIRST_DAY, LAST_DAY))


@st.composite
def visit_types(draw, roomy: bool):
    kind = draw(st.sampled_from(VisitKind.values))
    if kind == VisitKind.DOSING:
        modality = Modality.IN_PERSON
    else:
        modality = draw(st.sampled_from(Modality.values))
    capability = None
    if modality == Modality.IN_PERSON:
        capability = draw(st.sampled_from((None, *CAPABILITIES)))
    return VisitTypeSpec(
        kind=kind,
        minutes=draw(st.integers(2, 12 if roomy else 16)) * 15,
        modality=modality,
        capability=capability,
        role=draw(st.sampled_from(ROLES)),
        price=Decimal(draw(st.integers(0, 60000))).scaleb(-2),
    )


@st.composite
def steps(draw, type_count: int, roomy: bool):
    """1-5 steps of at most ~24 visits in all (16 when roomy), so that runs stay short."""
    specs, visits_of, budget = [], [], 16 if roomy else 24
    for index in range(draw(st.integers(1, 5))):
        if index == 0:
            anchor = draw(st.sampled_from([Anchor.START, Anchor.AFTER_STEP]))
        else:
            anchor = draw(st.sampled_from([Anchor.AFTER_STEP, Anchor.AFTER_EACH, Anchor.START]))
        after = None
        if anchor == Anchor.AFTER_EACH or (
            index and anchor == Anchor.AFTER_STEP and draw(st.booleans())
        ):
            after = draw(st.integers(0, index - 1))
        per_series = 1 if anchor != Anchor.AFTER_EACH else max(visits_of[after], 1)
        if per_series > max(budget, 1):
            anchor, after, per_series = Anchor.AFTER_STEP, None, 1
        count = draw(st.integers(1, max(1, min(6, budget // per_series))))
        recurrence = ""
        if not roomy and draw(st.integers(0, 4)) == 0:
            recurrence = draw(st.sampled_from(RECURRENCES))
        min_gap = draw(st.sampled_from([0, 0, 24, 48, 2, 12, 72, 168, 336]))
        min_spacing = draw(st.sampled_from([0, 24, 48, 72, 168, 4]))
        max_gap = max_spacing = None
        if not roomy:
            if draw(st.booleans()):
                max_gap = min_gap + draw(st.sampled_from([72, 48, 168, 24, 6, 0]))
            if draw(st.booleans()):
                max_spacing = min_spacing + draw(st.sampled_from([72, 168, 24, 12, 0]))
        max_per_week = draw(st.one_of(st.none(), st.integers(1, 7)))
        if max_per_week and max_spacing and count > max_per_week:
            # Visits at most S h apart put ceil(168 / S) in some week: keep the
            # step consistent (full_clean() refuses it otherwise).
            max_per_week = max(max_per_week, -(-168 // max_spacing))
        specs.append(
            StepSpec(
                visit_type=draw(st.integers(0, type_count - 1)),
                count=count,
                anchor=anchor,
                after=after,
                min_gap=min_gap,
                max_gap=max_gap,
                min_spacing=min_spacing,
                max_spacing=max_spacing,
                max_per_week=max_per_week,
                recurrence=recurrence,
                tolerance=draw(st.sampled_from([7, 3, 10, 1, 0])),
            )
        )
        dates = 22 if "UNTIL" in recurrence else 3 if recurrence else count
        visits_of.append(per_series * dates)
        budget -= visits_of[-1]
    return tuple(specs)


@st.composite
def worlds(draw, roomy: bool = False):
    """A clinic, its calendar, a protocol, a start date and preferences.

    ``roomy``: every day open, clinicians working the clinic's hours, a room
    with every capability, and no upper bounds on windows: a plan always exists.
    """
    time_zone = draw(st.sampled_from(ZONES))
    rooms = draw(
        st.lists(
            st.lists(st.sampled_from(CAPABILITIES), unique=True).map(tuple),
            min_size=1,
            max_size=3,
        )
    )
    if roomy or draw(st.booleans()):
        rooms[0] = CAPABILITIES
    clinicians = []
    for role in ROLES:
        for letter in "ABC"[: draw(st.integers(1, 3))]:
            extra = draw(st.lists(st.sampled_from(ROLES), max_size=1))
            clinicians.append(
                ClinicianSpec(
                    name=f"{role.title()} {letter}",
                    roles=tuple(sorted({role, *extra})),
                    hours=None if roomy or draw(st.integers(0, 2)) < 2 else draw(weeks()),
                    active=roomy or letter == "A" or draw(st.sampled_from([True, False])),
                )
            )
    types = draw(st.lists(visit_types(roomy), min_size=1, max_size=4))
    intervals = st.builds(
        Interval,
        who=st.integers(0, 8),
        offset_hours=st.integers(-48, 24 * 40),
        hours=st.integers(1, 72 if roomy else 24 * 10),
    )
    window = st.tuples(st.integers(0, 40), st.integers(2, 20)).map(
        lambda w: (clock(w[0]), clock(min(w[0] + w[1], 47)))
    )
    return World(
        time_zone=time_zone,
        start_date=draw(start_dates(time_zone)),
        opening=draw(weeks(roomy)),
        rooms=tuple(rooms),
        clinicians=tuple(clinicians),
        visit_types=tuple(types),
        steps=draw(steps(len(types), roomy)),
        min_hours_between_doses=draw(st.sampled_from([24, 0, 40, 48, 72, 6])),
        max_doses_per_week=draw(st.integers(1, 7)),
        closures=tuple(draw(st.lists(intervals, max_size=2))),
        openings=tuple(draw(st.lists(intervals, max_size=1))),
        time_off=tuple(draw(st.lists(intervals, max_size=3))),
        existing=tuple(
            draw(
                st.lists(
                    st.builds(
                        Existing,
                        clinician=st.integers(0, 8),
                        visit_type=st.integers(0, 3),
                        room=st.integers(0, 2),
                        day=st.integers(-1, 21),
                        half_hour=st.integers(14, 38),
                        own_patient=st.booleans(),
                        status=st.sampled_from(
                            [VisitStatus.BOOKED] * 3
                            + [
                                VisitStatus.CONFIRMED,
                                VisitStatus.COMPLETED,
                                VisitStatus.CANCELLED,
                                VisitStatus.PROPOSED,
                            ]
                        ),
                    ),
                    max_size=8,
                )
            )
        ),
        weekdays=draw(st.frozensets(st.integers(0, 6), max_size=4)),
        time_windows=tuple(draw(st.lists(window, max_size=2))),
        preferred=tuple(
            draw(st.lists(st.tuples(st.sampled_from(ROLES), st.integers(0, 9)), max_size=2))
        ),
        screened=draw(st.booleans()),
    )


# -- the world in the database ------------------------------------------------


@dataclass
class Built:
    world: World
    builder: ClinicBuilder
    patient: object
    protocol: Protocol
    steps: list[ProtocolStep]
    hours_of: dict[int, Week]  # clinician pk -> working hours
    price_of: dict[int, Decimal]  # visit type pk -> price
    preferences: Preferences

    @property
    def tz(self):
        return self.builder.clinic.tz

    def earliest(self, day: date | None = None) -> datetime:
        """When a plan counting from ``day`` (the world's start date) starts: its midnight, or now."""
        midnight = datetime.combine(day or self.world.start_date, time(0), tzinfo=self.tz)
        return max(midnight, timezone.now())


def build(world: World) -> Built:
    """Rows for ``world``; skips (``assume``) protocols that ``full_clean()`` refuses."""
    builder = ClinicBuilder(world.time_zone, days=())
    clinic = builder.clinic
    clinic.country, clinic.subdivision = HOLIDAYS_OF[world.time_zone]
    clinic.save()
    for weekday, intervals in enumerate(world.opening):
        for opens, closes in intervals:
            OpeningHours.objects.create(clinic=clinic, weekday=weekday, opens=opens, closes=closes)
    capability = {"infusion-chair": builder.infusion_chair, "monitoring": builder.monitoring}
    rooms = [
        builder.room(f"Room {number}", *(capability[c] for c in caps))
        for number, caps in enumerate(world.rooms, start=1)
    ]
    clinicians, hours_of = [], {}
    for spec in world.clinicians:
        clinician = builder.clinician(spec.name, *spec.roles, days=())
        hours_of[clinician.pk] = spec.hours if spec.hours is not None else world.opening
        for weekday, intervals in enumerate(hours_of[clinician.pk]):
            for opens, closes in intervals:
                WorkingHours.objects.create(
                    clinician=clinician, weekday=weekday, opens=opens, closes=closes
                )
        if not spec.active:
            clinician.is_active = False
            clinician.save(update_fields=["is_active"])
        clinicians.append(clinician)
    types = [
        builder.visit_type(
            f"type-{number}",
            spec.kind,
            spec.minutes,
            spec.role,
            spec.modality,
            capability.get(spec.capability),
            price=spec.price,
            dosing_route="iv" if spec.kind == VisitKind.DOSING else "",
        )
        for number, spec in enumerate(world.visit_types)
    ]
    for visit_type in types:
        visit_type.full_clean()
    patient = builder.patient(screened=world.screened)
    other = builder.patient("Blake", "Other", screened=False)

    tz = clinic.tz
    midnight = datetime.combine(world.start_date, time(0), tzinfo=tz).astimezone(UTC)
    for closure in world.closures:
        start = midnight + timedelta(hours=closure.offset_hours)
        Closure.objects.create(
            clinic=clinic, start=start, end=start + timedelta(hours=closure.hours)
        )
    for opening in world.openings:
        start = midnight + timedelta(hours=opening.offset_hours)
        Closure.objects.create(
            clinic=clinic,
            kind=ClosureKind.OPEN,
            start=start,
            end=start + timedelta(hours=opening.hours),
        )
    for off in world.time_off:
        start = midnight + timedelta(hours=off.offset_hours)
        TimeOff.objects.create(
            clinician=clinicians[off.who % len(clinicians)],
            start=start,
            end=start + timedelta(hours=off.hours),
        )
    held: dict[tuple, list[tuple[datetime, datetime]]] = {}
    for spec in world.existing:
        visit_type = types[spec.visit_type % len(types)]
        start = datetime.combine(
            world.start_date + timedelta(days=spec.day), clock(spec.half_hour), tzinfo=tz
        ).astimezone(UTC)
        end = start + visit_type.duration
        visit = Visit(
            patient=patient if spec.own_patient else other,
            visit_type=visit_type,
            clinician=clinicians[spec.clinician % len(clinicians)],
            room=None if visit_type.is_telehealth else rooms[spec.room % len(rooms)],
            start=start,
            end=end,
            status=spec.status,
        )
        # PostgreSQL refuses overlapping blocking visits; keep the calendar one
        # that could really exist.
        keys = [("clinician", visit.clinician_id), ("patient", visit.patient_id)]
        keys += [("room", visit.room_id)] if visit.room_id else []
        if spec.status in BLOCKING_STATUSES:
            if any(s < end and start < e for key in keys for s, e in held.get(key, ())):
                continue
            for key in keys:
                held.setdefault(key, []).append((start, end))
        visit.save()

    protocol = Protocol(
        clinic=clinic,
        name="Property protocol",
        slug="property",
        min_hours_between_doses=world.min_hours_between_doses,
        max_doses_per_week=world.max_doses_per_week,
    )
    protocol.full_clean()
    protocol.save()
    rows = []
    for position, spec in enumerate(world.steps, start=1):
        step = ProtocolStep(
            protocol=protocol,
            position=position,
            name=f"Step {position}",
            visit_type=types[spec.visit_type],
            count=spec.count,
            anchor=spec.anchor,
            after_step=rows[spec.after] if spec.after is not None else None,
            min_gap_hours=spec.min_gap,
            max_gap_hours=spec.max_gap,
            min_spacing_hours=spec.min_spacing,
            max_spacing_hours=spec.max_spacing,
            max_per_week=spec.max_per_week,
            recurrence=spec.recurrence,
            recurrence_tolerance_days=spec.tolerance,
        )
        try:
            step.full_clean()
        except ValidationError as refused:
            event(f"protocol refused: {sorted(refused.message_dict)}")
            assume(False)
        step.save()
        rows.append(step)

    by_index = dict(enumerate(clinicians))
    preferences = Preferences(
        weekdays=world.weekdays,
        time_windows=world.time_windows,
        clinicians={
            role: by_index[index].pk if index in by_index else 0 for role, index in world.preferred
        },
    )
    return Built(
        world=world,
        builder=builder,
        patient=patient,
        protocol=protocol,
        steps=rows,
        hours_of=hours_of,
        price_of={t.pk: spec.price for t, spec in zip(types, world.visit_types, strict=True)},
        preferences=preferences,
    )


def attempt(built: Built, start: date | None = None) -> Proposal | PlanInfeasible:
    """The plan from ``start`` (the world's start date), or why there is none."""
    try:
        return generate(
            built.patient, built.protocol, start or built.world.start_date, built.preferences
        )
    except PlanInfeasible as failure:
        return failure


def fingerprint(outcome: Proposal | PlanInfeasible):
    if isinstance(outcome, PlanInfeasible):
        return ("infeasible", outcome.step.pk, outcome.constraint, outcome.nearest)
    everything = outcome.visits + outcome.satisfied
    index = {id(v): i for i, v in enumerate(everything)}
    return (
        "plan",
        outcome.start_date,
        [
            (
                v.step.pk,
                v.occurrence,
                v.start,
                v.end,
                v.clinician.pk,
                v.room.pk if v.room else None,
                index.get(id(v.follows)),
                v.existing.pk if v.existing else None,
            )
            for v in everything
        ],
        outcome.warnings,
        outcome.total_cost,
        outcome.currency,
    )


# -- rules stated here, independently of the generator --------------------------


def hours_violations(built: Built, proposal: Proposal) -> list[str]:
    """Each visit lies inside one interval of the clinic's and its clinician's drawn hours."""
    broken = []
    for visit in proposal.visits:
        local_start, local_end = visit.start.astimezone(built.tz), visit.end.astimezone(built.tz)
        weekday = local_start.weekday()
        for what, week in (
            ("clinic", built.world.opening),
            (str(visit.clinician), built.hours_of[visit.clinician.pk]),
        ):
            if local_end.date() != local_start.date() or not any(
                opens <= local_start.time() and local_end.time() <= closes
                for opens, closes in week[weekday]
            ):
                broken.append(f"{visit.step} {local_start}-{local_end} outside {what} hours")
    return broken


def anchor_violations(built: Built, proposal: Proposal) -> list[str]:
    """Each visit is timed from the visit its step's anchor names; recurrences keep their dates.

    Visits already done count too; steps timed from the plan's start count from
    the day the plan says it starts from.
    """
    broken = []
    everything = proposal.visits + proposal.satisfied
    start = built.earliest(proposal.start_date).astimezone(UTC)
    visits_of = {
        step.pk: sorted((v for v in everything if v.step.pk == step.pk), key=lambda v: v.start)
        for step in built.steps
    }
    for index, step in enumerate(built.steps):
        mine = visits_of[step.pk]
        earlier = step.after_step or (built.steps[index - 1] if index else None)
        if step.anchor == Anchor.START or earlier is None:
            anchors = [None]
        elif step.anchor == Anchor.AFTER_EACH:
            anchors = visits_of[earlier.pk]
        else:
            anchors = visits_of[earlier.pk][-1:]
        if not anchors:
            broken.append(f"{step} follows {earlier}, which has no visits.")
            continue
        for anchor in anchors:
            series = [v for v in mine if v.follows is anchor]
            if step.recurrence:
                base = anchor.end if anchor else start
                first = (base + step.min_gap).astimezone(built.tz)
                dates = list(rrulestr(step.recurrence, dtstart=first))
                if len(series) != len(dates):
                    broken.append(f"{step}: {len(series)} visits for {len(dates)} recurrences.")
                tolerance = timedelta(days=step.recurrence_tolerance_days)
                for visit, when in zip(
                    sorted(series, key=lambda v: v.occurrence), dates, strict=False
                ):
                    # Never before the gap: a date's wall-clock time can name the
                    # earlier of two 01:30s on a fall-back night.
                    when = max(when.astimezone(UTC), base + step.min_gap)
                    if not when <= visit.start <= when + tolerance:
                        broken.append(f"{step} #{visit.occurrence}: not within its recurrence.")
            elif len(series) != step.count:
                broken.append(f"{step}: {len(series)} visits after {anchor}, not {step.count}.")
            elif anchor is None:  # timed from the plan's start
                first = min(series, key=lambda v: v.occurrence)
                if first.existing is None and first.start < start + step.min_gap:
                    broken.append(f"{step} #1: before its minimum gap after the start.")
                if step.max_gap is not None and first.start > start + step.max_gap:
                    broken.append(f"{step} #1: after its maximum gap after the start.")
        followed = {id(a) for a in anchors}
        stray = [v for v in mine if id(v.follows) not in followed]
        if stray:
            broken.append(f"{step}: {len(stray)} visits timed from the wrong visit.")
    return broken


def dose_violations(built: Built, proposal: Proposal) -> list[str]:
    """Dose spacing and the weekly maximum hold counting the doses the patient already has."""
    protocol = built.protocol
    planned = [v.start for v in proposal.visits if v.visit_type.is_dosing]
    booked = list(
        Visit.objects.blocking()
        .filter(patient=built.patient, visit_type__kind=VisitKind.DOSING)
        .values_list("start", flat=True)
    )
    spacing, week = timedelta(hours=protocol.min_hours_between_doses), timedelta(days=7)
    broken = [
        f"A dose on {start} is within {spacing} of another."
        for index, start in enumerate(planned)
        if any(abs(start - other) < spacing for other in booked + planned[index + 1 :])
    ]
    doses = sorted(booked + planned)
    for first in doses:
        in_week = [start for start in doses if first <= start < first + week]
        if len(in_week) > protocol.max_doses_per_week and set(in_week) & set(planned):
            broken.append(f"{len(in_week)} doses in the week from {first}.")
    return broken


def check_plan(built: Built, proposal: Proposal) -> None:
    assert rule_violations(proposal) == []
    assert hours_violations(built, proposal) == []
    assert anchor_violations(built, proposal) == []
    assert dose_violations(built, proposal) == []
    assert proposal.start_date >= built.world.start_date
    moved = any("No plan fits from" in w for w in proposal.warnings)
    assert moved == (proposal.start_date != built.world.start_date)
    earliest = built.earliest(proposal.start_date)
    assert all(visit.start >= earliest for visit in proposal.visits)
    assert all(
        visit.visit_type == visit.step.visit_type for visit in proposal.visits + proposal.satisfied
    )
    assert proposal.total_cost == sum(
        (built.price_of[visit.visit_type.pk] for visit in proposal.visits), Decimal(0)
    )
    assert proposal.currency == "USD"
    dosing = any(visit.visit_type.is_dosing for visit in proposal.visits)
    unscreened_warning = any("Screening is not cleared" in w for w in proposal.warnings)
    assert unscreened_warning == (dosing and not built.world.screened)


def check_failure(built: Built, failure: PlanInfeasible) -> None:
    assert failure.step.pk in {step.pk for step in built.steps}
    assert isinstance(failure.constraint, str)
    assert len(failure.constraint.split()) >= 3, failure.constraint
    assert str(failure.step) in str(failure)
    assert failure.as_dict()["constraint"] == failure.constraint


# -- worlds that once broke a rule (kept as explicit examples) ------------------

SCREENING = VisitTypeSpec(VisitKind.SCREENING, 30, Modality.TELEHEALTH)
CHECK_IN = VisitTypeSpec(VisitKind.MAINTENANCE, 30, Modality.TELEHEALTH, role="therapist")
DOSING = VisitTypeSpec(VisitKind.DOSING, 120, capability="infusion-chair")

# RFC 5545 UNTIL (in UTC) passed full_clean() but made generate() raise ValueError.
UNTIL_SUMMER = World(
    visit_types=(CHECK_IN,),
    steps=(StepSpec(anchor=Anchor.START, recurrence="FREQ=WEEKLY;UNTIL=20300601T000000Z"),),
)
# ... and once the UNTIL date has passed there is no date at all: a clear failure.
UNTIL_PASSED = replace(UNTIL_SUMMER, start_date=date(2030, 7, 1))
# A recurring check-in right after a visit ending at the second 01:30 of the
# fall-back night was put at the first 01:30: before the visit it follows.
FALL_BACK_NIGHT = World(
    start_date=date(2030, 11, 3),
    opening=every_day("00:00", "23:30"),
    visit_types=(SCREENING, CHECK_IN),
    steps=(
        StepSpec(anchor=Anchor.START),
        StepSpec(visit_type=1, recurrence="FREQ=DAILY;COUNT=1", tolerance=0),
    ),
    time_off=(Interval(who=0, offset_hours=0, hours=2),),  # the prescriber, 00:00-01:00 EDT
)
# One dose a week: 4 + 1 + 4 x 2 doses need 13 weeks, more than the end the
# generator estimated for the plan (the protocol's weekly maximum and steps
# after each visit did not count), so it said no slot exists.
WEEKLY_DOSES = World(
    visit_types=(DOSING,),
    steps=(
        StepSpec(count=4, anchor=Anchor.START),
        StepSpec(),
        StepSpec(count=2, anchor=Anchor.AFTER_EACH, after=0),
    ),
    max_doses_per_week=1,
)
# Preferring Monday nights pushed each visit a week on, past that end as well.
MONDAY_NIGHTS = World(
    start_date=date(2029, 12, 28),  # in the past: the plan starts now
    opening=every_day("00:00", "18:00"),
    visit_types=(SCREENING, replace(SCREENING, minutes=135)),
    steps=(
        StepSpec(anchor=Anchor.START),
        StepSpec(visit_type=1, count=3),
        StepSpec(),
        StepSpec(visit_type=1, count=3, anchor=Anchor.AFTER_EACH, after=0, min_spacing=24),
    ),
    weekdays=frozenset({0}),
    time_windows=((time(0), time(2, 30)),),
)
# A dose the patient already has was ignored by the generator, so the plan broke
# the weekly maximum and confirming it was refused.
DOSE_ALREADY_BOOKED = World(
    visit_types=(DOSING,),
    steps=(StepSpec(anchor=Anchor.START),),
    max_doses_per_week=1,
    existing=(Existing(0, 0, 0, day=0, half_hour=16, own_patient=True, status="booked"),),
)

# The patient already has the only visit the protocol asks for: the plan books
# nothing, and confirming it has nothing for anyone to take.
ALREADY_BOOKED = World(
    visit_types=(SCREENING,),
    steps=(StepSpec(anchor=Anchor.START),),
    existing=(Existing(0, 0, 0, day=0, half_hour=14, own_patient=True, status="booked"),),
)
# The therapist is away for the two weeks after the start: a check-in 1-2 days
# after the screening has no room from the start date, but has from two weeks
# later, and such a plan is also a plan from the start date.
THERAPIST_AWAY = World(
    visit_types=(SCREENING, CHECK_IN),
    steps=(StepSpec(anchor=Anchor.START), StepSpec(visit_type=1, min_gap=24, max_gap=48)),
    time_off=(Interval(who=1, offset_hours=24, hours=14 * 24),),
)
# A video visit at 08:00-08:30 was followed by a dose at 08:30: no time to get
# from home to the clinic (Clinic.travel_gap_minutes).
VIDEO_THEN_DOSE = World(
    visit_types=(CHECK_IN, DOSING),
    steps=(StepSpec(anchor=Anchor.START), StepSpec(visit_type=1)),
)
# Thanksgiving, with the clinic open anyway that morning: daily visits skip the
# rest of the day, and only the morning takes one.
THANKSGIVING = World(
    start_date=date(2030, 11, 27),
    visit_types=(CHECK_IN,),
    steps=(StepSpec(count=4, anchor=Anchor.START, min_spacing=4, max_per_week=7),),
    opening=every_day("08:00", "18:00"),
    time_off=(Interval(who=1, offset_hours=8, hours=10),),  # the therapist, all Wednesday
    openings=(Interval(who=0, offset_hours=24 + 8, hours=3),),  # Thursday 08:00-11:00
)


# -- the properties -------------------------------------------------------------


@pytest.mark.django_db
@properties(examples=150)
@given(world=worlds())
@example(world=UNTIL_SUMMER)
@example(world=UNTIL_PASSED)
@example(world=FALL_BACK_NIGHT)
@example(world=DOSE_ALREADY_BOOKED)
@example(world=VIDEO_THEN_DOSE)
@example(world=THANKSGIVING)
def test_a_generated_plan_keeps_every_rule_or_names_the_step_and_rule_that_failed(now, world):
    with transaction.atomic():
        built = build(world)
        outcome = attempt(built)
        assert fingerprint(attempt(built)) == fingerprint(outcome), "not deterministic"
        if isinstance(outcome, PlanInfeasible):
            event("infeasible")
            check_failure(built, outcome)
        else:
            event(f"plan of {len(outcome.visits)} visits")
            check_plan(built, outcome)
        transaction.set_rollback(True)


@pytest.mark.django_db
@properties(examples=25)
@given(world=worlds(roomy=True))
@example(world=WEEKLY_DOSES)
@example(world=MONDAY_NIGHTS)
def test_a_roomy_clinic_always_gets_a_plan_when_no_window_has_an_upper_bound(now, world):
    with transaction.atomic():
        built = build(world)
        outcome = attempt(built)
        assert not isinstance(outcome, PlanInfeasible), str(outcome)
        check_plan(built, outcome)
        transaction.set_rollback(True)


@pytest.mark.django_db
@properties(examples=30)
@given(world=worlds(roomy=True), conflict=st.one_of(st.none(), st.integers(0, 200)))
@example(world=DOSE_ALREADY_BOOKED, conflict=None)
@example(world=WEEKLY_DOSES, conflict=5)
@example(world=ALREADY_BOOKED, conflict=0)
def test_confirming_a_plan_books_exactly_its_visits_or_leaves_all_of_them_proposed(
    now, world, conflict
):
    with transaction.atomic():
        built = build(world)
        outcome = attempt(built)
        assert not isinstance(outcome, PlanInfeasible), str(outcome)
        patient = built.patient
        booked_before = set(Visit.objects.filter(patient=patient).values_list("pk", "status"))
        plan = save_proposal(outcome)
        ids = set(plan.planned_visits.values_list("visit_id", flat=True))
        assert len(ids) == len(outcome.visits)
        if not ids:  # every step is a visit the patient already has: nothing to take
            conflict = None
        if conflict is not None:
            # Someone else took one of the plan's slots since it was proposed.
            taken = sorted(outcome.visits, key=lambda v: v.start)[conflict % len(ids)]
            intruder = built.builder.patient("Casey", "Intruder", screened=False)
            Visit.objects.create(
                patient=intruder,
                visit_type=taken.visit_type,
                clinician=taken.clinician,
                room=None,
                start=taken.start,
                end=taken.end,
                status=VisitStatus.BOOKED,
            )
        dosing = any(visit.visit_type.is_dosing for visit in outcome.visits)
        must_refuse = conflict is not None or (dosing and not world.screened)
        try:
            confirm(plan)
        except PlanNotConfirmed as refused:
            event("refused")
            assert must_refuse, refused.problems
            assert refused.problems
            plan.refresh_from_db()
            assert plan.status == PlanStatus.PROPOSED
            assert set(Visit.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
                VisitStatus.PROPOSED
            }
        else:
            event("booked")
            assert not must_refuse
            plan.refresh_from_db()
            assert plan.status == PlanStatus.ACTIVE
            booked = Visit.objects.filter(patient=patient).exclude(
                pk__in=[pk for pk, _ in booked_before]
            )
            assert {(v.pk, v.status) for v in booked} == {(pk, VisitStatus.BOOKED) for pk in ids}
            assert sorted(
                (v.start, v.end, v.clinician_id, v.room_id, v.visit_type_id) for v in booked
            ) == sorted(
                (v.start, v.end, v.clinician.pk, v.room.pk if v.room else None, v.visit_type.pk)
                for v in outcome.visits
            )
        assert set(Visit.objects.filter(patient=patient).values_list("pk", "status")) >= {
            (pk, status) for pk, status in booked_before
        }
        transaction.set_rollback(True)


@pytest.mark.django_db
def test_a_recurrence_that_gives_no_date_is_refused(clinic):
    protocol = Protocol.objects.create(clinic=clinic.clinic, name="Check-ins", slug="check-ins")
    step = ProtocolStep(
        protocol=protocol,
        position=1,
        visit_type=clinic.integration,
        recurrence="FREQ=WEEKLY;COUNT=0",
    )
    with pytest.raises(ValidationError, match="COUNT=0 gives no visit"):
        step.full_clean()


@pytest.mark.django_db
@properties(examples=40)
@given(world=worlds(), later=st.integers(1, 21))
@example(world=THERAPIST_AWAY, later=14)
def test_a_plan_found_from_a_later_start_means_one_is_found_from_an_earlier_one(now, world, later):
    """Whenever a plan exists from a later start, one is found from the earlier start.

    A start date is the earliest a plan may start, so a plan from a later day is
    also a plan from an earlier one. The generator tries each day up to
    ``LATER_START_DAYS`` after the date asked for (or after today, for a date
    already past), so the property holds for plans counting from those days.
    """
    with transaction.atomic():
        built = build(world)
        from_later = attempt(built, world.start_date + timedelta(days=later))
        if isinstance(from_later, PlanInfeasible):
            event("no plan from the later start")
            transaction.set_rollback(True)
            return
        today = timezone.localdate(timezone=built.tz)
        if from_later.start_date > max(world.start_date, today) + timedelta(days=LATER_START_DAYS):
            event("the later plan starts past the days tried")
            transaction.set_rollback(True)
            return
        outcome = attempt(built)
        assert not isinstance(outcome, PlanInfeasible), str(outcome)
        event("moved later" if outcome.start_date != world.start_date else "from the start")
        assert outcome.start_date <= from_later.start_date
        check_plan(built, outcome)
        transaction.set_rollback(True)
