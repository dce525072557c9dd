"""A care plan's cost, visit by visit, shaped as the US Good Faith Estimate.

``Estimate`` prices a list of visits (a proposal not saved yet, or a saved
plan) from each visit type's self-pay price (``VisitType.price``) and its
``Fee`` codes; subtotals by phase; a package price for a full dosing series
(``PackagePrice``) and the patient's own discount (``PatientDiscount``) come
off the total. ``as_record`` is what ``GoodFaithEstimate`` keeps, and
``changes_since`` compares the plan as it is with the estimate last given.

When an estimate is due (45 CFR 149.610(b)(1)(vi), docs/billing.md): an
item scheduled at least 3 business days ahead, within 1 business day of
scheduling; at least 10 business days ahead, within 3 business days. Business
days here are Monday to Friday; a clinic closed on a public holiday gives it
earlier, never later.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

from billing.models import ZERO, Fee, GoodFaithEstimate, PackagePrice, PatientDiscount
from plans.generator import Proposal
from plans.models import CarePlan
from scheduler.models import Patient, Visit, VisitKind, VisitStatus, VisitType

CENT = Decimal("0.01")
# The phases of a course, in order (docs/rules.md); a visit's phase is its kind.
PHASES = [
    VisitKind.SCREENING,
    VisitKind.PREPARATION,
    VisitKind.DOSING,
    VisitKind.INTEGRATION,
    VisitKind.MAINTENANCE,
]

# The disclaimers a Good Faith Estimate must carry (45 CFR 149.610(c)(1)), each
# element as the pages cited in docs/billing.md state it; the HHS model notice's
# exact wording was not among the sources read, so the clinic should compare.
DISCLAIMER = (
    "This Good Faith Estimate shows the costs of items and services reasonably expected "
    "for your care, based on information known when it was made. It does not include "
    "unknown or unexpected costs that may arise during treatment; you could be charged "
    "more if complications or special circumstances occur. If you are billed at least "
    "$400 more than this Good Faith Estimate, you have the right to dispute the bill "
    "through the federal patient-provider dispute resolution process, which you must start "
    "within 120 calendar days of the date on the bill. Keep a copy or a picture of this "
    "Good Faith Estimate. It is not a contract and does not require you to obtain the "
    "items or services from any provider or facility named in it. For questions or more "
    "information about your right to a Good Faith Estimate, visit www.cms.gov/nosurprises "
    "or call 1-800-985-3059."
)


@dataclass(frozen=True)
class Line:
    """One visit's fee."""

    start: datetime
    visit_type: str
    phase: str
    codes: str
    units: int
    fee: Decimal
    reimbursable: bool
    visit_id: int | None = None

    @property
    def phase_label(self) -> str:
        return VisitKind(self.phase).label


@dataclass
class Estimate:
    patient: Patient
    lines: list[Line]
    package: PackagePrice | None = None
    discount: PatientDiscount | None = None
    currency: str = field(default_factory=lambda: settings.CURRENCY)

    @property
    def gross(self) -> Decimal:
        return sum((line.fee for line in self.lines), ZERO)

    @property
    def phases(self) -> list[tuple[str, int, Decimal]]:
        """(phase label, visits, subtotal) for each phase the plan has, in course order."""
        rows = []
        for phase in PHASES:
            fees = [line.fee for line in self.lines if line.phase == phase]
            if fees:
                rows.append((phase.label, len(fees), sum(fees, ZERO)))
        return rows

    @property
    def package_saving(self) -> Decimal:
        """What the package price takes off: the series' doses at their own price, less it.

        Only for a plan with the whole series (at least the package's doses); the
        package's doses are the plan's first ones.
        """
        doses = [line.fee for line in self.lines if line.phase == VisitKind.DOSING]
        if self.package is None or len(doses) < self.package.doses:
            return ZERO
        return max(sum(doses[: self.package.doses], ZERO) - self.package.price, ZERO)

    @property
    def discount_amount(self) -> Decimal:
        if self.discount is None:
            return ZERO
        base = self.gross - self.package_saving
        return (base * self.discount.percent / 100).quantize(CENT, ROUND_HALF_UP)

    @property
    def total(self) -> Decimal:
        return self.gross - self.package_saving - self.discount_amount

    @property
    def reimbursable(self) -> Decimal:
        """The fees of visits the clinic flags as possibly reimbursable (before discounts)."""
        return sum((line.fee for line in self.lines if line.reimbursable), ZERO)

    def as_record(self) -> dict:
        """What a ``GoodFaithEstimate`` keeps: plain JSON, amounts as strings."""
        return {
            "lines": [
                {
                    "visit": line.visit_id,
                    "start": line.start.isoformat(),
                    "visit_type": line.visit_type,
                    "phase": line.phase,
                    "codes": line.codes,
                    "units": line.units,
                    "fee": str(line.fee),
                    "reimbursable": line.reimbursable,
                }
                for line in self.lines
            ],
            "gross": str(self.gross),
            "package_saving": str(self.package_saving),
            "discount": str(self.discount_amount),
            "discount_reason": self.discount.reason if self.discount else "",
            "total": str(self.total),
            "reimbursable": str(self.reimbursable),
            "currency": self.currency,
        }


def line_for(start: datetime, visit_type: VisitType, visit_id: int | None = None) -> Line:
    """``visit_type`` with its ``fee`` read already (``select_related("fee")``)."""
    fee: Fee | None = getattr(visit_type, "fee", None)
    return Line(
        start=start,
        visit_type=visit_type.name,
        phase=visit_type.kind,
        codes=fee.codes if fee else "",
        units=fee.units if fee else 1,
        fee=visit_type.price,
        reimbursable=bool(fee and fee.typically_reimbursable),
        visit_id=visit_id,
    )


def _estimate(patient: Patient, protocol_id: int, lines: Iterable[Line]) -> Estimate:
    return Estimate(
        patient=patient,
        lines=sorted(lines, key=lambda line: line.start),
        package=PackagePrice.objects.filter(protocol_id=protocol_id).first(),
        discount=PatientDiscount.objects.filter(patient=patient).first(),
    )


def for_proposal(proposal: Proposal) -> Estimate:
    """The estimate of a plan not saved yet: its new visits (those already done are not billed again)."""
    types = VisitType.objects.select_related("fee").in_bulk(
        {proposed.visit_type.pk for proposed in proposal.visits}
    )
    lines = [line_for(p.start, types[p.visit_type.pk]) for p in proposal.visits]
    return _estimate(proposal.patient, proposal.protocol.pk, lines)


def plan_visits(plan: CarePlan) -> list[Visit]:
    """The plan's visits still on (a cancelled one is no longer estimated), fees read with them."""
    return list(_visits_of([plan.pk]))


def _visits_of(plan_ids: list[int]):
    return (
        Visit.objects.filter(planned__care_plan__in=plan_ids)
        .exclude(status=VisitStatus.CANCELLED)
        .select_related("visit_type__fee", "planned")
        .order_by("start", "pk")
    )


def for_plan(plan: CarePlan, visits: list[Visit] | None = None) -> Estimate:
    visits = plan_visits(plan) if visits is None else visits
    return _estimate(
        plan.patient, plan.protocol_id, (line_for(v.start, v.visit_type, v.pk) for v in visits)
    )


def for_plans(patient: Patient, plans: list[CarePlan]) -> dict[int, Estimate]:
    """Each of ``patient``'s ``plans`` estimated, in three queries however many there are."""
    lines: dict[int, list[Line]] = {plan.pk: [] for plan in plans}
    for visit in _visits_of(list(lines)):
        lines[visit.planned.care_plan_id].append(line_for(visit.start, visit.visit_type, visit.pk))
    packages = PackagePrice.objects.in_bulk(
        {plan.protocol_id for plan in plans}, field_name="protocol_id"
    )
    discount = PatientDiscount.objects.filter(patient=patient).first()
    return {
        plan.pk: Estimate(patient, lines[plan.pk], packages.get(plan.protocol_id), discount)
        for plan in plans
    }


# -- the timeline -------------------------------------------------------------------


def add_business_days(day: date, days: int) -> date:
    while days:
        day += timedelta(days=1)
        if day.weekday() < 5:
            days -= 1
    return day


def business_days_between(first: date, last: date) -> int:
    """Business days after ``first`` up to and including ``last``."""
    count, day = 0, first
    while day < last:
        day += timedelta(days=1)
        count += day.weekday() < 5
    return count


def due_by(scheduled_on: date, first_visit_on: date) -> date:
    """The last day to give the estimate of care scheduled on ``scheduled_on``.

    Scheduled 10 or more business days ahead: 3 business days after scheduling;
    3 or more: 1 business day after. Nearer than that the rule sets no day of
    its own; the clinic gives it by the first visit.
    """
    ahead = business_days_between(scheduled_on, first_visit_on)
    if ahead >= 10:
        return add_business_days(scheduled_on, 3)
    if ahead >= 3:
        return add_business_days(scheduled_on, 1)
    return first_visit_on


# -- what changed since the estimate was given ----------------------------------------


@dataclass(frozen=True)
class Change:
    what: str  # "added", "moved", "cancelled"
    visit_type: str
    before: datetime | None = None  # the start as given
    after: datetime | None = None


def changes_since(given: GoodFaithEstimate, estimate: Estimate) -> list[Change]:
    """The plan's visits added, moved or cancelled since ``given`` was given."""
    then = {line["visit"]: line for line in given.content["lines"] if line.get("visit")}
    now = {line.visit_id: line for line in estimate.lines if line.visit_id}
    changes = []
    for visit_id, line in now.items():
        old = then.get(visit_id)
        if old is None:
            changes.append(Change("added", line.visit_type, after=line.start))
        elif (was := datetime.fromisoformat(old["start"])) != line.start:
            changes.append(Change("moved", line.visit_type, was, line.start))
    for visit_id, old in then.items():
        if visit_id not in now:
            was = datetime.fromisoformat(old["start"])
            changes.append(Change("cancelled", old["visit_type"], before=was))
    return changes
