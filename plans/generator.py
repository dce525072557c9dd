"""Turn a protocol into a patient's dated care plan.

The generator walks the protocol's steps in order and gives each visit the
earliest slot that satisfies every rule: the step's window relative to its
anchor (a gap after an earlier step, or after each visit of it), spacing
between visits of the step, weekly limits, the protocol's dose spacing and
weekly maximum (counting doses already booked), clinic and clinician hours,
time off, closures, rooms, every existing visit and the clinic's travel gap
between the patient's telehealth and in-clinic visits (one ``Availability`` for the
whole plan, loaded again only when a window reaches past it, so the number of
queries does not depend on how many visits exist). Patient preferences
(weekdays, times of day, clinicians) are honoured where a slot allows and
reported as warnings where none does. The same inputs give the same plan.

What is already done is not planned again: a visit the patient has booked or
completed, of a step's visit type and inside that step's window, counts as
that step's visit (``Proposal.satisfied``), and the steps timed from it are
timed from it. Such a visit counts only if the rest of the plan can follow it:
when a window timed from it (directly or through visits timed from those) has
no room, the plan is made again without it.

The start date is the earliest the plan may start. When no plan fits from it,
the generator tries each following day, up to ``LATER_START_DAYS``, so that a
step with no room in its window (every therapist away) moves the steps before
it later instead of failing; the plan then says which day it starts from.

When no plan fits, ``PlanInfeasible`` names the step, the rule and the nearest
free slot found outside the rule, as seen from the date asked for.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import islice

from django.conf import settings
from django.db import connections, router
from django.db.models import Q
from django.utils import timezone

from plans.models import (
    Anchor,
    Protocol,
    ProtocolStep,
    RemsEnrollment,
    Screening,
    is_spravato,
    within_weekly_limit,
)
from scheduler.availability import Availability, format_span, local_day
from scheduler.booking import staff_of
from scheduler.diary import current_diary
from scheduler.models import (
    BLOCKING_STATUSES,
    Clinician,
    Member,
    Patient,
    Room,
    Seat,
    Visit,
    VisitKind,
    VisitType,
    lead_of,
)

SEARCH_STEP = timedelta(minutes=30)
# How many people per place after the lead a search tries first (scheduler.availability
# loads a few people's weeks at once, many people's by the day).
STAFF_FIRST = 2
# How far past a rule's window to look for "the nearest alternative".
ALTERNATIVE_DAYS = 28
# How many days after the date asked for a plan may start when none fits from it.
LATER_START_DAYS = 28
# How many times, over all start days, a new visit whose follower found no time may
# be moved to a later day before the plan starts a day later instead.
LATER_VISIT_TRIES = 8
# Before any visit: an existing visit for a step timed from the plan's start may
# be this old (the steps timed from it decide whether it can count).
LONG_AGO = datetime(1900, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Preferences:
    weekdays: frozenset[int] = frozenset()  # 0 = Monday; empty = any day
    time_windows: tuple[tuple[time, time], ...] = ()  # local wall-clock; empty = any time
    clinicians: dict[str, int] = field(default_factory=dict)  # role -> clinician id

    @classmethod
    def from_dict(cls, data: dict | None) -> "Preferences":
        data = data or {}
        return cls(
            weekdays=frozenset(int(day) for day in data.get("weekdays", ())),
            time_windows=tuple(
                (time.fromisoformat(start), time.fromisoformat(end))
                for start, end in data.get("time_windows", ())
            ),
            clinicians={role: int(pk) for role, pk in data.get("clinicians", {}).items()},
        )

    def as_dict(self) -> dict:
        return {
            "weekdays": sorted(self.weekdays),
            "time_windows": [[f"{a:%H:%M}", f"{b:%H:%M}"] for a, b in self.time_windows],
            "clinicians": self.clinicians,
        }

    def likes_time(self, local: datetime, end_local: datetime) -> bool:
        if self.weekdays and local.weekday() not in self.weekdays:
            return False
        return not self.time_windows or any(
            start <= local.time() and end_local.time() <= end for start, end in self.time_windows
        )


@dataclass(eq=False)
class ProposedVisit:
    step: ProtocolStep
    occurrence: int
    visit_type: VisitType
    clinician: Clinician
    room: Room | None
    start: datetime  # UTC
    end: datetime
    follows: "ProposedVisit | None" = None  # the anchor visit of its series
    # The visit the patient already has that does for this one (booked or
    # completed): the plan counts it and books nothing for it.
    existing: Visit | None = None
    # What its window was counted from: the anchor, or the visit before it in its series.
    timed_from: "ProposedVisit | None" = None
    staff: tuple[Member, ...] = ()  # the team after the lead, in their places
    # The window its step's rule gave it (latest None: no upper bound).
    window: "Window | None" = None

    @property
    def team(self) -> list[tuple[Clinician, str]]:
        """Everyone on the visit, the lead first, each with the role they fill."""
        members = (lead_of(self.visit_type, self.clinician), *self.staff)
        return [(member.clinician, member.role) for member in members]


@dataclass
class Proposal:
    """A plan to book: ``visits`` are the new ones, ``satisfied`` the steps' visits already there.

    ``start_date`` is the day the plan counts from: the date asked for, or the
    first later day from which a plan fits (a warning says so).
    """

    patient: Patient
    protocol: Protocol
    start_date: date
    preferences: Preferences
    visits: list[ProposedVisit]
    warnings: list[str]
    total_cost: Decimal
    currency: str
    satisfied: list[ProposedVisit] = field(default_factory=list)


class PlanInfeasible(Exception):
    def __init__(self, step: ProtocolStep, constraint: str, nearest: str | None):
        self.step, self.constraint, self.nearest = step, constraint, nearest
        message = f"No slot for step {step}: {constraint}."
        message += f" Nearest free slot: {nearest}." if nearest else " No free slot nearby either."
        super().__init__(message)

    def as_dict(self) -> dict:
        return {"error": str(self), "step": str(self.step), "constraint": self.constraint}


class NotOpenToPatient(PlanInfeasible):
    """The patient may not follow the protocol at all (``Protocol.refusal_for``)."""

    def __init__(self, step: ProtocolStep | None, constraint: str):
        self.step, self.constraint, self.nearest = step, constraint, None
        Exception.__init__(self, constraint)


@dataclass
class Window:
    earliest: datetime  # as the rule says; new visits also wait for the plan's start
    latest: datetime | None  # None: the rule sets no upper bound
    rule: str
    # From when a visit already booked or done counts for it (default: earliest).
    counts_from: datetime | None = None


def plan_horizon(protocol_steps: list[ProtocolStep], start: datetime) -> datetime:
    """A generous end for the plan: the availability window loaded once."""
    total = timedelta(days=14)
    for step in protocol_steps:
        per_visit = max(
            timedelta(hours=step.min_spacing_hours or 24),
            timedelta(hours=step.max_spacing_hours or 0),
            timedelta(days=7 / step.max_per_week) if step.max_per_week else timedelta(0),
        )
        gap = step.max_gap or step.min_gap
        if step.recurrence:
            occurrences = list(step.recurrence_rule(start))
            span = occurrences[-1] - occurrences[0] if occurrences else timedelta(0)
            total += span + gap + timedelta(days=step.recurrence_tolerance_days)
        elif step.anchor != Anchor.AFTER_EACH:
            total += gap + per_visit * step.count
    return start + total + timedelta(days=ALTERNATIVE_DAYS)


def _papers_of(patient: Patient) -> tuple[bool, bool, bool]:
    """(Whether the patient's screening is cleared, whether their REMS enrollment is
    recorded, whether they have a visit that holds its time), in one query.

    Written as SQL, as ``scheduler.diary.busy_rows`` is: with the ORM, building
    and compiling the question cost 3 ms, asking it under half of one. The last
    answer spares a new patient (the usual case) the query of their visits.
    """
    db = connections[router.db_for_read(Visit)]
    screenings, enrollments, visits = (
        db.ops.quote_name(model._meta.db_table) for model in (Screening, RemsEnrollment, Visit)
    )
    statuses = ", ".join(["%s"] * len(BLOCKING_STATUSES))
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {screenings} WHERE patient_id = %s AND cleared), "
            f"EXISTS (SELECT 1 FROM {enrollments} WHERE patient_id = %s), "
            f"EXISTS (SELECT 1 FROM {visits} WHERE patient_id = %s AND status IN ({statuses}))",
            [patient.pk, patient.pk, patient.pk, *BLOCKING_STATUSES],
        )
        return tuple(bool(value) for value in cursor.fetchone())


class Generator:
    def __init__(
        self, patient: Patient, protocol: Protocol, start_date: date, preferences=None, *, now=None
    ):
        self.patient = patient
        self.protocol = protocol
        self.clinic = protocol.clinic
        self.tz = self.clinic.tz
        self.preferences = preferences or Preferences()
        self.now = now or timezone.now()
        self.start_date = start_date
        # Kept between plans, with the clinic's set-up (scheduler.diary); None in a transaction.
        self.diary = current_diary()
        self.steps = self._steps_of(protocol)
        # Visits the patient already has that may do for a step, earliest first, and
        # the starts of their doses (of any visit type), read together.
        step_types = {step.visit_type_id for step in self.steps}
        self.existing: dict[int, list[Visit]] = {}
        self.patient_doses: list[datetime] = []
        self.cleared, self.enrolled, has_visits = _papers_of(patient)
        for visit in (
            Visit.objects.blocking()
            .for_patient(patient)
            .filter(Q(visit_type__in=step_types) | Q(visit_type__kind=VisitKind.DOSING))
            .select_related("clinician", "room", "visit_type")
            .prefetch_related("participants__clinician")
            .order_by("start", "pk")
            if has_visits  # a new patient, the usual case, has none: no query
            else ()
        ):
            if visit.visit_type_id in step_types:
                self.existing.setdefault(visit.visit_type_id, []).append(visit)
            if visit.visit_type.kind == VisitKind.DOSING:
                self.patient_doses.append(visit.start)
        self.start = self.earliest = self._start_of(start_date)
        self.visits: list[ProposedVisit] = []
        self.searched: dict[tuple, tuple | None] = {}
        self.liked: dict[tuple, list[datetime]] = {}
        self.horizon = self.start
        self._load_until(plan_horizon(self.steps, self.start))

    def _steps_of(self, protocol: Protocol) -> list[ProtocolStep]:
        """The protocol's steps in order, with their visit types and teams: kept in the
        diary until a protocol, step, visit type or team changes (migrations
        plans/0004 and scheduler/0018 log those writes)."""

        def read() -> list[ProtocolStep]:
            return list(
                protocol.steps.select_related("visit_type__room_capability")
                .prefetch_related("visit_type__staffing")
                .order_by("position")
            )

        if self.diary is None:
            return read()
        return self.diary.setup(("protocol steps", protocol.pk), lambda kept: True, read)

    # -- the plan ----------------------------------------------------------

    def generate(self) -> Proposal:
        """The plan from the start date, or from the first later day one fits from."""
        if rule := self.protocol.refusal_for(self.patient):
            raise NotOpenToPatient(self.steps[0] if self.steps else None, rule)
        refusal = None
        self.later_tries_left = LATER_VISIT_TRIES
        for day in self._start_days():
            try:
                return self._plan_from(day, explain=refusal is None)
            except PlanInfeasible as failure:
                refusal = refusal or failure
        raise refusal

    def _start_of(self, day: date) -> datetime:
        return max(datetime.combine(day, time(0), tzinfo=self.tz).astimezone(UTC), self.now)

    def _start_days(self):
        """The start date, then each later day whose plan could differ (past days all start now)."""
        yield self.start_date
        day = max(self.start_date, self.now.astimezone(self.tz).date())
        for _ in range(LATER_START_DAYS):
            day += timedelta(days=1)
            yield day

    def _plan_from(self, day: date, *, explain: bool) -> Proposal:
        """The plan from ``day``, counting what the patient already has where the plan can follow it.

        ``explain``: look for the nearest free slot when a step fails (only the
        failure from the date asked for is shown).

        A visit is placed at the first time it fits, and the visits timed from
        it may then find none: an infusion on a Friday afternoon whose
        integration must follow within three days, over a weekend the clinic
        is closed. Such a visit is moved to a later day and the plan made
        again from ``day`` (``LATER_VISIT_TRIES`` in all), rather than the
        whole plan starting a day later: at one of the network benchmark's
        clinics that started a course a week late, after seven failed plans.
        """
        not_counted: set[int] = set()
        later: dict[tuple[int, int], datetime] = {}  # (step, its nth visit) -> not before
        first_failure = None
        while True:
            self._begin(self._start_of(day), not_counted, later, explain)
            try:
                self._place_steps()
            except PlanInfeasible as failure:
                done = self._existing_behind(self.failed_after)
                if done is not None:
                    not_counted.add(done.pk)  # and plan again without it
                    continue
                first_failure = first_failure or failure
                moved = self._moved_later(self.failed_after)
                if moved is None:
                    raise first_failure from None
                later.update([moved])
                explain = False  # the failure shown is the first one
            else:
                return self._proposal(day)

    def _moved_later(
        self, visit: "ProposedVisit | None"
    ) -> tuple[tuple[int, int], datetime] | None:
        """``visit`` (new to this plan) kept to the next day or later, while tries are left.

        Not a visit timed from the plan's start: moving it is starting the plan
        later, which ``generate`` does, and says so.
        """
        if (
            visit is None
            or visit.existing is not None
            or visit.timed_from is None
            or self.later_tries_left <= 0
        ):
            return None
        self.later_tries_left -= 1
        nth = next(n for n, v in enumerate(self.by_step[visit.step.pk]) if v is visit)
        next_day = visit.start.astimezone(self.tz).date() + timedelta(days=1)
        midnight = datetime.combine(next_day, time(0), tzinfo=self.tz).astimezone(UTC)
        return (visit.step.pk, nth), midnight

    def _begin(
        self,
        start: datetime,
        not_counted: set[int],
        later: dict[tuple[int, int], datetime],
        explain: bool,
    ) -> None:
        for visit in self.visits:  # the last attempt's visits no longer hold their slots
            self.availability.release(*self._place_of(visit))
        self.start = start
        self.first_horizon = plan_horizon(self.steps, start)
        self._load_until(self.first_horizon)
        self.not_counted = not_counted
        self.later = later
        self.explain = explain
        self.visits, self.satisfied = [], []
        self.counted: set[int] = set()
        self.warnings: list[str] = []
        self.by_step: dict[int, list[ProposedVisit]] = {}
        self.continuity: dict[str, Clinician] = {}  # role -> the first clinician in it
        # Places no one could fill while a lead and a room were free, by how many searches.
        self.short_of: dict[str, int] = {}
        self.failed_after: ProposedVisit | None = None
        # Everything a search depends on besides its window: the visits placed or counted so far.
        self.placed: tuple = ()

    def _place_steps(self) -> None:
        for index, step in enumerate(self.steps):
            previous = self.steps[index - 1] if index else None
            self.by_step[step.pk] = []
            for anchor, base, rule in self._anchors(step, previous):
                self.failed_after = anchor  # a recurrence with no date left fails here
                for occurrence, window in self._windows(step, anchor, base, rule):
                    visit = self._visit(step, occurrence, window, anchor)
                    self.by_step[step.pk].append(visit)

    def _proposal(self, day: date) -> Proposal:
        self.visits.sort(key=lambda v: v.start)
        self.satisfied.sort(key=lambda v: v.start)
        warnings = []
        if day != self.start_date:
            warnings.append(
                f"No plan fits from {self.start_date:%a %Y-%m-%d}: this one starts from "
                f"{day:%a %Y-%m-%d}, the first later day from which every rule can be kept."
            )
        if self.satisfied:
            warnings.append(
                "Already booked or done, so not booked again: "
                + "; ".join(
                    f"{v.step} #{v.occurrence} ({self._local_span(v)}, "
                    f"{v.existing.get_status_display().lower()})"
                    for v in self.satisfied
                )
                + "."
            )
        warnings += self.warnings
        if any(v.visit_type.is_dosing for v in self.visits):
            warnings.append("Every dosing visit needs a ride home arranged before check-in.")
            if not self.cleared:
                warnings.append(
                    "Screening is not cleared yet: the plan can be proposed, "
                    "but it cannot be confirmed until a prescriber clears it."
                )
            if any(is_spravato(v.visit_type) for v in self.visits) and not self.enrolled:
                warnings.append(
                    "REMS enrollment missing: the plan can be proposed, but its Spravato "
                    "doses cannot be booked until the patient's enrollment is recorded."
                )
        total = sum((v.visit_type.price for v in self.visits), Decimal("0"))
        return Proposal(
            patient=self.patient,
            protocol=self.protocol,
            start_date=day,
            preferences=self.preferences,
            visits=self.visits,
            warnings=warnings,
            total_cost=total,
            currency=settings.CURRENCY,
            satisfied=self.satisfied,
        )

    def _anchors(self, step: ProtocolStep, previous: ProtocolStep | None):
        """(anchor visit, time the step is counted from, rule text) for each series of the step."""
        if step.anchor == Anchor.START or (previous is None and not step.after_step_id):
            yield None, self.start, "from the plan's start"
            return
        # The step it names among the plan's own (their visit types are loaded).
        earlier = next((s for s in self.steps if s.pk == step.after_step_id), previous)
        earlier_visits = sorted(self.by_step.get(earlier.pk, []), key=lambda v: v.start)
        if not earlier_visits:
            yield None, self.start, "from the plan's start"
            return
        if step.anchor == Anchor.AFTER_EACH:
            for visit in earlier_visits:
                yield visit, visit.end, f"after {earlier} on {self._local_span(visit)}"
        else:
            last = earlier_visits[-1]
            yield last, last.end, f"after the last {earlier} on {self._local_span(last)}"

    def _windows(self, step: ProtocolStep, anchor: ProposedVisit | None, base: datetime, rule: str):
        """(occurrence, first window) for each visit of one series; later windows follow spacing."""
        gap_rule = step.gap_text
        if step.recurrence:
            first = (base + step.min_gap).astimezone(self.tz)
            dates = list(step.recurrence_rule(first))
            if not dates:
                raise PlanInfeasible(
                    step, f"{step.recurrence} gives no date {gap_rule} {rule}", None
                )
            for occurrence, when in enumerate(dates, start=1):
                # dateutil drops ``fold``: from the second 01:30 of a fall-back
                # night it would start an hour early, before the gap has passed.
                earliest = max(when.astimezone(UTC), base + step.min_gap)
                yield (
                    occurrence,
                    Window(
                        earliest,
                        earliest + timedelta(days=step.recurrence_tolerance_days),
                        f"{step.recurrence} {gap_rule} {rule}, within {step.recurrence_tolerance_days} days of each date",
                    ),
                )
            return
        latest = base + step.max_gap if step.max_gap is not None else None
        # A visit already done counts for a step timed from the plan's start
        # however long ago; the steps timed from it decide (see _plan_from).
        counts_from = LONG_AGO if anchor is None else None
        yield 1, Window(base + step.min_gap, latest, f"{gap_rule} {rule}", counts_from)
        for occurrence in range(2, step.count + 1):
            yield occurrence, None  # placed by spacing from the previous visit of the series

    # -- one visit ---------------------------------------------------------

    def _visit(self, step, occurrence, window, anchor) -> ProposedVisit:
        """The visit for one occurrence: one the patient already has in its window, or a new one."""
        series = [v for v in self.by_step[step.pk] if v.follows is anchor]
        timed_from = anchor
        if window is None:  # a later visit of a series: spacing from the one before
            timed_from = before = series[-1]
            latest = (
                before.start + timedelta(hours=step.max_spacing_hours)
                if step.max_spacing_hours is not None
                else None
            )
            window = Window(
                before.start + timedelta(hours=step.min_spacing_hours),
                latest,
                f"{step.spacing_text} after visit {occurrence - 1} on {self._local_span(before)}",
            )
        allowed = window  # before a search horizon stands in for "no latest"
        if window.latest is None:
            # Look as far past the plan so far as its first visit looks past the
            # start: weekly limits, dose spacing and preferences can push later
            # visits beyond the end estimated for the whole plan.
            since = max(
                [window.earliest, self.start, *(v.end for v in self.visits + self.satisfied)]
            )
            window = Window(
                window.earliest,
                since + (self.first_horizon - self.start),
                window.rule,
                window.counts_from,
            )
        existing = self._existing_in(step, window)
        if existing is not None:
            visit = ProposedVisit(
                step,
                occurrence,
                step.visit_type,
                existing.clinician,
                existing.room,
                existing.start,
                existing.end,
                follows=anchor,
                existing=existing,
                timed_from=timed_from,
                staff=tuple(staff_of(existing)),
                window=allowed,
            )
            self.counted.add(existing.pk)
            self._keep_continuity(step.visit_type, existing.clinician, visit.staff)
            self.satisfied.append(visit)
            self.placed += ((step.pk, existing.pk),)
            return visit
        # New visits are never booked before the plan's start (or now), nor before
        # the day a failed plan moved this one to (``_plan_from``).
        not_before = self.later.get((step.pk, len(self.by_step[step.pk])), self.start)
        window = Window(max(window.earliest, self.start, not_before), window.latest, window.rule)
        try:
            visit = self._place(step, occurrence, window, anchor)
        except PlanInfeasible:
            self.failed_after = timed_from
            raise
        visit.timed_from = timed_from
        visit.window = allowed
        return visit

    def _existing_in(self, step, window: Window) -> Visit | None:
        """The first visit of the step's type the patient already has in ``window`` and not yet counted."""
        counts_from = window.counts_from or window.earliest
        for visit in self.existing.get(step.visit_type_id, ()):
            if visit.start > window.latest:
                break
            if (
                visit.start >= counts_from
                and visit.pk not in self.counted
                and visit.pk not in self.not_counted
                and within_weekly_limit(
                    [v.start for v in self.by_step[step.pk]], visit.start, step.max_per_week
                )
            ):
                return visit
        return None

    @staticmethod
    def _existing_behind(visit: ProposedVisit | None) -> Visit | None:
        """The nearest visit already booked or done that ``visit``'s window was counted from."""
        while visit is not None:
            if visit.existing is not None:
                return visit.existing
            visit = visit.timed_from
        return None

    def _place(self, step, occurrence, window, anchor) -> ProposedVisit:
        self._load_until(window.latest)
        visit_type = step.visit_type
        for relax in ("nothing", "clinician", "everything"):
            found = self._search(step, visit_type, window.earliest, window.latest, relax)
            if found:
                break
        else:
            nearest_text = None
            nearest = self.explain and self._search(
                step,
                visit_type,
                window.earliest,
                window.latest + timedelta(days=ALTERNATIVE_DAYS),
                "everything",
            )
            if nearest:
                clinician, room, start, end, staff = nearest
                nearest_text = f"{self._local_text(start, end)} with {clinician}" + (
                    f" in {room}" if room else ""
                )
            constraint = f"{window.rule} ({self._local_window(window)})"
            if self.short_of:
                short = max(self.short_of, key=self.short_of.get)
                constraint += f"; no {short} was free when a lead and a room were"
            raise PlanInfeasible(step, constraint, nearest_text)
        clinician, room, start, end, staff = found
        if relax != "nothing":
            team = ", ".join(str(m.clinician) for m in staff)
            self.warnings.append(
                f"{step} #{occurrence}: no slot matched the preferences; "
                f"proposed {self._local_text(start, end)} with {clinician}"
                + (f" ({team})" if team else "")
                + "."
            )
        self._keep_continuity(visit_type, clinician, staff)
        self.availability.reserve(visit_type, clinician, room, self.patient, start, end, staff)
        self.placed += (
            (
                step.pk,
                clinician.pk,
                room.pk if room else None,
                start,
                *(m.clinician.pk for m in staff),
            ),
        )
        visit = ProposedVisit(
            step, occurrence, visit_type, clinician, room, start, end, follows=anchor, staff=staff
        )
        self.visits.append(visit)
        return visit

    def _keep_continuity(self, visit_type, lead, staff) -> None:
        """Remember the first person in each role: later visits ask for them first."""
        for member in (lead_of(visit_type, lead), *staff):
            self.continuity.setdefault(member.role, member.clinician)

    def _place_of(self, visit: ProposedVisit) -> tuple:
        """What ``Availability.reserve`` and ``release`` take for a planned visit."""
        return (
            visit.visit_type,
            visit.clinician,
            visit.room,
            self.patient,
            visit.start,
            visit.end,
            visit.staff,
        )

    def _load_until(self, horizon: datetime) -> None:
        """Load what decides slots up to ``horizon`` (once, or again when it moves out).

        From the earliest start any attempt uses, so that trying a later start
        reads nothing again.
        """
        if horizon <= self.horizon:
            return
        # With room to spare: an attempt from a later start looks that much further.
        self.horizon = max(horizon, self.horizon + timedelta(days=LATER_START_DAYS))
        self.availability = Availability(
            self.clinic,
            self.earliest,
            self.horizon,
            patients=[self.patient],
            lazy=True,
            diary=self.diary,
        )
        for visit in self.visits:
            self.availability.reserve(*self._place_of(visit))
        # Doses the patient already has count for spacing and the weekly maximum:
        # the dose_spacing gate counts them when the plan is confirmed.
        reach = self.protocol.dose_reach
        self.booked_doses = [
            start
            for start in self.patient_doses
            if self.earliest - reach < start < self.horizon + reach
        ]

    def _wanted(self, seat: Seat) -> list[Clinician]:
        """Whom the patient asked for, else whom the plan already has, in ``seat``'s roles."""
        # By id: comparing model instances costs a call or two each, and searches ask often.
        ids = {self.preferences.clinicians.get(role) for role in seat.roles} - {None}
        qualified = self.availability.qualified(seat)
        if asked := [c for c in qualified if c.id in ids]:
            return asked
        kept = {c.id for role in seat.roles if (c := self.continuity.get(role))}
        return [c for c in qualified if c.id in kept][:1]

    def _clinicians(self, seat: Seat, relax: str) -> list[Clinician]:
        first = self._wanted(seat)
        if relax == "nothing" and first:
            return first
        chosen = {c.id for c in first}
        return first + [c for c in self.availability.qualified(seat) if c.id not in chosen]

    def _search(self, step, visit_type, earliest, latest, relax):
        """The earliest (lead, room, start, end, staff) in [earliest, latest] that every rule allows.

        Remembered for the plan's visits so far (``self.placed``): an attempt
        from a later start that places the same visits first asks the same
        questions, and a search over weeks is the costly part of an attempt.
        """
        seats = visit_type.seats
        if not seats:
            raise PlanInfeasible(step, f"{visit_type} has no team set up", None)
        clinicians = tuple(self._clinicians(seats[0], relax))
        prefer_times = relax != "everything" and bool(
            self.preferences.weekdays or self.preferences.time_windows
        )
        last = min(latest, self.horizon)
        # The rest of the team from a few people first (whom the patient has,
        # then the first by name): their weeks load in a query or two. Only
        # when no time suits them does the search ask everyone, day by day.
        wanted = [c for seat in seats[1:] for c in self._wanted(seat)]
        wanted_ids = {c.id for c in wanted}
        others = [
            islice(
                (c for c in self.availability.qualified(seat) if c.id not in wanted_ids),
                STAFF_FIRST,
            )
            for seat in seats[1:]
        ]
        few = _distinct(wanted + [c for people in others for c in people])
        everyone = _distinct(c for seat in seats[1:] for c in self.availability.qualified(seat))
        # A team is searched first with the therapist the patient has, then
        # with the few people tried first, then with everyone.
        pools = [(few, True, ())]
        if relax == "nothing" and wanted:
            pools.insert(0, (few, True, tuple(wanted)))
        if {c.id for c in few} != {c.id for c in everyone}:
            pools.append((tuple(wanted), False, ()))
        # What a pass learns that does not depend on the rest of the team (the leads'
        # starts, the rules, the rooms), for the passes after it.
        facts = SearchFacts()
        for pool, only_pool, keep in pools:
            key = (
                step.pk,
                _ids(clinicians),
                _ids(pool),
                only_pool,
                _ids(keep),
                prefer_times,
                earliest,
                latest,
                last,
                self.placed,
            )
            if key not in self.searched:
                self.searched[key] = self._search_days(
                    step,
                    visit_type,
                    (earliest, latest),
                    clinicians,
                    prefer_times,
                    (pool, only_pool, keep),
                    pool if only_pool else everyone,
                    facts,
                )
            found, short = self.searched[key]
            if found or not short:
                return found  # other people would not help: no lead and room were free
        return None

    def _search_days(
        self, step, visit_type, window, clinicians, prefer_times, staffing, people, facts
    ):
        """(The earliest fit in ``window`` led by one of ``clinicians``, or None; whether a
        place went unfilled). The rest of the team among ``people``: ``staffing`` is
        (pool, only_pool, keep) for ``staff_for``.

        Each day's candidate times are tried earliest first, the leads in order
        at each: what does not depend on the lead (weekly limit, dose spacing,
        whether the therapist the patient has is free) is asked once a time,
        not once a lead. What does not depend on the rest of the team is kept
        in ``facts`` for the search's next pass over the same window.
        """
        earliest, latest = window
        pool, only_pool, keep = staffing
        availability = self.availability
        rooms = availability.rooms_for(visit_type)
        doses = self.booked_doses + [v.start for v in self.visits if v.visit_type.is_dosing]
        same_step = [v.start for v in self.by_step[step.pk]]
        duration = visit_type.duration
        people = list(_distinct([*clinicians, *people]))
        short: set[str] = set()  # places no one could fill while a lead and a room were free
        day = earliest.astimezone(self.tz).date()
        last_day = min(latest, self.horizon).astimezone(self.tz).date()
        found = None
        # No start before these can be free of what holds the lead (by lead), or anyone.
        held_until: dict[int, datetime] = {}
        all_held_until = earliest
        while day <= last_day and found is None:
            midnight, next_midnight = local_day(self.tz, day)
            if next_midnight <= all_held_until or availability.closed_all_day(day):
                day += timedelta(days=1)
                continue
            # Everyone this day's search may look at, in one query (or none).
            availability.load(people, rooms, midnight, next_midnight)
            if day not in facts.starts:
                leads_at = self._leads_at(clinicians, day, duration, prefer_times, earliest, latest)
                facts.starts[day] = sorted(leads_at.items())
            for start, leads in facts.starts[day]:
                if held_until:
                    leads = [c for c in leads if start >= held_until.get(c.id, start)]
                if not leads or start < all_held_until:
                    continue
                end = start + duration
                if start not in facts.rules:
                    facts.rules[start] = self._rules_at(step, visit_type, same_step, doses, start)
                allowed, wait_until = facts.rules[start]
                if not allowed:
                    all_held_until = wait_until or all_held_until
                    continue
                # Whoever leads, a place kept for someone busy then stays empty.
                unkept, until = availability.kept_busy(visit_type, keep, start, end)
                if unkept is not None and unkept.label in short:
                    all_held_until = until or all_held_until
                    continue
                for clinician in leads:
                    place = (start, clinician.id)
                    if place not in facts.rooms:
                        room = availability.first_room(
                            visit_type, clinician, rooms, self.patient, start, end
                        )
                        facts.rooms[place] = (
                            room,
                            availability.held_until(visit_type, clinician, self.patient, start, end)
                            if room is False
                            else None,
                        )
                    room, until = facts.rooms[place]
                    if room is False:
                        if until is not None:
                            held_until[clinician.id] = until
                        continue
                    missing = unkept
                    if missing is None:
                        staff, missing, until = availability.staff_or_wait(
                            visit_type, clinician, start, end, pool, only_pool, keep
                        )
                    if missing is not None:
                        short.add(missing.label)
                        if missing is unkept:
                            break
                        if until is not None:  # nobody for the place until then, whoever leads
                            all_held_until = until
                            break
                        continue
                    found = (clinician, room, start, end, staff)
                    break
                if found:
                    break
            day += timedelta(days=1)
        for label in short:
            self.short_of[label] = self.short_of.get(label, 0) + 1
        return found, bool(short)

    def _rules_at(self, step, visit_type, same_step, doses, start) -> tuple[bool, datetime | None]:
        """Whether the step's weekly limit and the protocol's dose rules allow a visit at
        ``start``; when a dose is too near, the first start it no longer is."""
        if not within_weekly_limit(same_step, start, step.max_per_week):
            return False, None
        if visit_type.is_dosing and not self.protocol.allows_dose(doses, start):
            near = self.protocol.dose_too_near(doses, start)
            return False, near + self.protocol.dose_spacing if near else None
        return True, None

    def _leads_at(self, clinicians, day, duration, prefer_times, first, last):
        """{start: the leads (in ``clinicians``' order) who could start a visit then}
        for local ``day``, within [first, last]. Leads with the same hours share one
        grid of starts (scheduler.availability.wall_clock_grid): walked once for all."""
        grids: dict[int, tuple[tuple, list[Clinician]]] = {}
        for clinician in clinicians:
            if self.availability.away_all_day(clinician, day):
                continue
            starts = self._starts(clinician, day, duration, prefer_times)
            grids.setdefault(id(starts), (starts, []))[1].append(clinician)
        leads_at: dict[datetime, list[Clinician]] = {}
        shared: set[datetime] = set()  # starts of more than one grid
        for starts, leads in grids.values():
            for start in starts:
                if first <= start <= last:
                    if start in leads_at:
                        leads_at[start] = leads_at[start] + leads
                        shared.add(start)
                    else:
                        leads_at[start] = leads
        if shared:  # back in the leads' order, once a start
            rank = {c.id: n for n, c in enumerate(clinicians)}
            for start in shared:
                leads_at[start].sort(key=lambda c: rank[c.id])
        return leads_at

    def _starts(self, clinician, day: date, duration: timedelta, prefer_times: bool):
        """The clinician's candidate starts on ``day``; with ``prefer_times``, the preferred ones."""
        starts = self.availability.candidate_starts(clinician, day, SEARCH_STEP)
        if not prefer_times:
            return starts
        # By the grid itself: leads with the same hours share the list (see _leads_at).
        key = (starts, duration)
        if key not in self.liked:  # asked again by every later visit and attempt
            self.liked[key] = [
                start
                for start in starts
                if self.preferences.likes_time(
                    start.astimezone(self.tz), (start + duration).astimezone(self.tz)
                )
            ]
        return self.liked[key]

    # -- wording -----------------------------------------------------------

    def _local_span(self, visit: ProposedVisit) -> str:
        return self._local_text(visit.start, visit.end)

    def _local_text(self, start, end) -> str:
        return format_span(start, end, self.tz)

    def _local_window(self, window: Window) -> str:
        first, last = window.earliest.astimezone(self.tz), window.latest.astimezone(self.tz)
        return f"{first:%a %Y-%m-%d %H:%M} to {last:%a %Y-%m-%d %H:%M}"


@dataclass
class SearchFacts:
    """What one pass of a search found that holds for any rest of the team: by local
    day, the (start, leads) it tries; by start, the rules' answer (``_rules_at``);
    by (start, lead id), the first free room (False: none) and, without one, the
    start before which the lead or the patient stays held (``held_until``)."""

    starts: dict[date, list[tuple[datetime, list[Clinician]]]] = field(default_factory=dict)
    rules: dict[datetime, tuple[bool, datetime | None]] = field(default_factory=dict)
    rooms: dict[tuple[datetime, int], tuple] = field(default_factory=dict)


def _distinct(clinicians) -> tuple[Clinician, ...]:
    """Each clinician once, in order (by id: hashing a model instance costs calls)."""
    return tuple({c.id: c for c in clinicians}.values())


def _ids(clinicians) -> tuple[int, ...]:
    return tuple(c.id for c in clinicians)


def generate(
    patient: Patient, protocol: Protocol, start_date: date, preferences=None, *, now=None
) -> Proposal:
    """A proposed plan for ``patient``; raises PlanInfeasible naming the step and rule that failed."""
    return Generator(patient, protocol, start_date, preferences, now=now).generate()
