"""Protocols (care-plan templates), care plans and the screening that gates dosing.

FHIR vocabulary: a Protocol is a PlanDefinition, its steps are actions with
timing relative to an earlier action; applying it to a patient gives a CarePlan
whose activities are Appointments (our Visits).
"""

from datetime import datetime, timedelta
from itertools import islice

from dateutil.rrule import rrulestr
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from scheduler.models import Clinic, Clinician, Patient, Visit, VisitType

# docs/rules.md: contraindications a screening must answer, each one.
CONTRAINDICATIONS = {
    "uncontrolled_hypertension": "Uncontrolled hypertension",
    "cardiovascular_disease": "Acute cardiovascular disease, aneurysm or AV malformation, "
    "history of intracerebral haemorrhage",
    "intracranial_pressure": "Raised intracranial pressure",
    "psychosis_or_mania": "History of psychosis or mania",
    "substance_use_disorder": "Active substance use disorder",
    "pregnancy_or_breastfeeding": "Pregnancy or breastfeeding",
    "interacting_medications": "Interacting medications (opioids, benzodiazepines, "
    "lamotrigine, MAOIs)",
    "glaucoma": "Glaucoma",
    "recent_seizures": "Recent seizures",
}


WEEK = timedelta(days=7)


def hours_text(hours: int) -> str:
    """A rule's hours as people say them: "40 h", but "3 days" for whole days."""
    if hours and hours % 24 == 0:
        days = hours // 24
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{hours} h"


def range_text(low: int, high: int | None, *, none_if_zero: str = "") -> str:
    """A rule's range of hours: "1 day to 3 days", "at least 40 h" (or ``none_if_zero``)."""
    if high is not None:
        return f"{hours_text(low)} to {hours_text(high)}"
    if not low and none_if_zero:
        return none_if_zero
    return f"at least {hours_text(low)}"


def doses_text(count: int) -> str:
    return f"{count} dose{'s' if count != 1 else ''}"


def within_weekly_limit(starts: list[datetime], candidate: datetime, limit: int | None) -> bool:
    """Whether adding ``candidate`` keeps every 7-day window at ``limit`` starts or fewer."""
    if limit is None:
        return True
    near = sorted([s for s in starts if abs(s - candidate) < WEEK] + [candidate])
    for index, first in enumerate(near):
        if first > candidate:
            break
        in_window = sum(1 for s in near[index:] if s - first < WEEK)
        if in_window > limit and first + WEEK > candidate:
            return False
    return True


def route_dose_problems(
    visit_type: VisitType, start: datetime, others: list[tuple[datetime, VisitType]]
) -> list[str]:
    """Every rule a dose of ``visit_type`` at ``start`` breaks when no protocol decides.

    Each dose brings its own type's rule (``VisitType.dose_rule``: the type's
    numbers or its route's), so the order doses are booked in does not matter:
    two doses keep the longer of their spacings, and any 7 days hold no more
    doses than the smallest weekly maximum among them. ``others`` are the
    patient's other doses with their visit types.
    """
    rule = visit_type.dose_rule
    problems = []
    near = [
        (abs(start - other), max((visit_type, other_type), key=lambda t: t.dose_rule.min_hours))
        for other, other_type in others
        if abs(start - other) < timedelta(hours=max(rule.min_hours, other_type.dose_rule.min_hours))
    ]
    if near:
        gap, stricter = min(near, key=lambda pair: pair[0])
        problems.append(
            f"Without a care plan, doses of {stricter} must be at least "
            f"{hours_text(stricter.dose_rule.min_hours)} apart; another dose is {gap} away."
        )
    week = sorted(
        [(other, other_type) for other, other_type in others if abs(other - start) < WEEK]
        + [(start, visit_type)],
        key=lambda pair: pair[0],
    )
    for index, (first, _) in enumerate(week):
        if first > start:
            break
        if first + WEEK <= start:
            continue  # these 7 days end before the new dose
        window = [t for when, t in week[index:] if when - first < WEEK]
        strictest = min(window, key=lambda t: t.dose_rule.max_per_week)
        limit = strictest.dose_rule.max_per_week
        if len(window) > limit:
            problems.append(
                f"Without a care plan, {strictest} allows at most {doses_text(limit)} "
                "in any 7 days."
            )
            break
    return problems


class Protocol(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="protocols")
    name = models.CharField(max_length=120)
    slug = models.SlugField()
    description = models.TextField(blank=True)
    min_hours_between_doses = models.PositiveIntegerField(
        default=24, help_text="No two dosing visits closer than this, whatever the step."
    )
    max_doses_per_week = models.PositiveSmallIntegerField(
        default=3, help_text="At most this many dosing visits in any 7 days."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["clinic", "name"]
        constraints = [
            models.UniqueConstraint(fields=["clinic", "slug"], name="protocol_slug_unique")
        ]

    def __str__(self):
        return self.name

    # -- the dose rules: the generator and the booking gate both ask these --

    @property
    def dose_spacing(self) -> timedelta:
        return timedelta(hours=self.min_hours_between_doses)

    @property
    def dose_reach(self) -> timedelta:
        """How far either side of a dose its rules look: the 7-day window, or a longer spacing."""
        return max(WEEK, self.dose_spacing)

    def dose_too_near(self, doses: list[datetime], start: datetime) -> datetime | None:
        """The first of ``doses`` closer to ``start`` than the protocol's dose spacing."""
        spacing = self.dose_spacing
        return next((dose for dose in doses if abs(start - dose) < spacing), None)

    def allows_dose(self, doses: list[datetime], start: datetime) -> bool:
        """Whether a dose at ``start`` keeps the spacing and the weekly maximum beside ``doses``."""
        return self.dose_too_near(doses, start) is None and within_weekly_limit(
            doses, start, self.max_doses_per_week
        )

    def dose_problems(self, doses: list[datetime], start: datetime) -> list[str]:
        """``allows_dose``'s answer in words: every rule a dose at ``start`` would break."""
        problems = []
        if (near := self.dose_too_near(doses, start)) is not None:
            problems.append(
                f"Doses must be at least {hours_text(self.min_hours_between_doses)} apart "
                f"({self}); another dose is {abs(near - start)} away."
            )
        if not within_weekly_limit(doses, start, self.max_doses_per_week):
            problems.append(
                f"{self} allows at most {doses_text(self.max_doses_per_week)} in any 7 days."
            )
        return problems

    def clean(self):
        if self.max_doses_per_week == 0:
            raise ValidationError(
                {"max_doses_per_week": "A protocol with dosing allows at least one a week."}
            )


# A recurrence (COUNT or UNTIL) may not plan more visits than this.
MAX_RECURRING = 52


class Anchor(models.TextChoices):
    START = "start", "The plan's start"
    AFTER_STEP = "after_step", "After the last visit of an earlier step"
    AFTER_EACH = "after_each", "After each visit of an earlier step"


class ProtocolStep(models.Model):
    protocol = models.ForeignKey(Protocol, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=120, blank=True)
    visit_type = models.ForeignKey(VisitType, on_delete=models.PROTECT, related_name="+")
    count = models.PositiveSmallIntegerField(
        default=1, help_text="How many visits (with After each: how many per earlier visit)."
    )
    anchor = models.CharField(max_length=20, choices=Anchor.choices, default=Anchor.AFTER_STEP)
    after_step = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="dependents",
        help_text="The earlier step this one is timed from (default: the one before).",
    )
    min_gap_hours = models.PositiveIntegerField(
        default=0, help_text="From the end of the anchor visit to the start of this one."
    )
    max_gap_hours = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: no upper limit."
    )
    min_spacing_hours = models.PositiveIntegerField(
        default=0, help_text="Between consecutive visits of this step (start to start)."
    )
    max_spacing_hours = models.PositiveIntegerField(null=True, blank=True)
    max_per_week = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="At most this many visits of this step in any 7 days."
    )
    recurrence = models.CharField(
        max_length=200,
        blank=True,
        help_text="An RFC 5545 RRULE for recurring check-ins, e.g. FREQ=MONTHLY;COUNT=3, "
        "counted from the anchor plus the minimum gap. Overrides count.",
    )
    recurrence_tolerance_days = models.PositiveSmallIntegerField(
        default=7, help_text="How many days after each recurrence date the visit may fall."
    )

    class Meta:
        ordering = ["protocol", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["protocol", "position"], name="protocol_step_position_unique"
            )
        ]

    def __str__(self):
        return self.name or f"{self.position}. {self.visit_type}"

    @property
    def min_gap(self) -> timedelta:
        return timedelta(hours=self.min_gap_hours)

    @property
    def max_gap(self) -> timedelta | None:
        return None if self.max_gap_hours is None else timedelta(hours=self.max_gap_hours)

    @property
    def gap_text(self) -> str:
        """How long after its anchor the step's visits start, in words ("1 day to 3 days")."""
        return range_text(self.min_gap_hours, self.max_gap_hours, none_if_zero="any time")

    @property
    def spacing_text(self) -> str:
        """How far apart the step's visits are, in words ("at least 40 h")."""
        return range_text(self.min_spacing_hours, self.max_spacing_hours)

    def recurrence_rule(self, dtstart):
        """The rule's dates from ``dtstart``, which must be aware.

        RFC 5545 gives UNTIL in UTC when DTSTART has a zone, and dateutil refuses
        to compare a naive start with it. Dates keep ``dtstart``'s wall-clock
        time in its zone (across DST changes too).
        """
        return rrulestr(self.recurrence, dtstart=dtstart)

    def rule_problems(self) -> dict[str, str]:
        """Contradictions within this step; empty when it is consistent."""
        errors = {}
        if self.max_gap_hours is not None and self.max_gap_hours < self.min_gap_hours:
            errors["max_gap_hours"] = (
                f"The maximum gap ({self.max_gap_hours} h) is shorter than the minimum ({self.min_gap_hours} h)."
            )
        if self.max_spacing_hours is not None and self.max_spacing_hours < self.min_spacing_hours:
            errors["max_spacing_hours"] = (
                f"The maximum spacing ({self.max_spacing_hours} h) is shorter than the minimum ({self.min_spacing_hours} h)."
            )
        if self.max_per_week == 0:
            errors["max_per_week"] = "Zero visits a week allows no visit at all."
        elif self.max_per_week and self.max_spacing_hours is not None:
            # Visits at most S hours apart put at least ceil(168 / S) in some week.
            least_per_week = -(-7 * 24 // max(self.max_spacing_hours, 1))
            if least_per_week > self.max_per_week and self.count > self.max_per_week:
                errors["max_per_week"] = (
                    f"Visits at most {self.max_spacing_hours} h apart mean at least {least_per_week} "
                    f"a week, more than the limit of {self.max_per_week}."
                )
        if self.anchor == Anchor.START and self.after_step_id:
            errors["after_step"] = "A step timed from the plan's start has no earlier step."
        if self.anchor == Anchor.AFTER_EACH and not self.after_step_id:
            errors["after_step"] = "Say which earlier step this one follows each visit of."
        if (
            self.after_step_id
            and self.position is not None
            and self.after_step.position >= self.position
        ):
            errors["after_step"] = "A step can only be timed from an earlier step."
        if self.after_step_id and self.after_step.protocol_id != self.protocol_id:
            errors["after_step"] = "The earlier step belongs to another protocol."
        if self.count == 0:
            errors["count"] = "A step has at least one visit."
        if self.recurrence:
            try:
                rule = self.recurrence_rule(timezone.now())
            except (ValueError, TypeError) as error:
                errors["recurrence"] = f"Not a valid RRULE ({error})."
            else:
                if rule._count is None and rule._until is None:
                    errors["recurrence"] = "A recurrence needs COUNT or UNTIL: care plans end."
                elif rule._count == 0:
                    errors["recurrence"] = "COUNT=0 gives no visit; a step has at least one."
                elif len(list(islice(rule, MAX_RECURRING + 1))) > MAX_RECURRING:
                    errors["recurrence"] = f"At most {MAX_RECURRING} recurring visits in one plan."
        if (
            self.visit_type_id
            and self.protocol_id
            and self.visit_type.clinic_id != self.protocol.clinic_id
        ):
            errors["visit_type"] = "The visit type belongs to another clinic."
        return errors

    def clean(self):
        errors = self.rule_problems()
        if errors:
            raise ValidationError(errors)


class PlanStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    ACTIVE = "active", "Booked"
    CANCELLED = "cancelled", "Cancelled"
    COMPLETED = "completed", "Completed"


class CarePlan(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="care_plans")
    protocol = models.ForeignKey(Protocol, on_delete=models.PROTECT, related_name="care_plans")
    status = models.CharField(
        max_length=20, choices=PlanStatus.choices, default=PlanStatus.PROPOSED
    )
    start_date = models.DateField()
    preferences = models.JSONField(default=dict, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    total_cost = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, default="USD")
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.protocol} for {self.patient} from {self.start_date}"


class PlannedVisit(models.Model):
    """A visit of a care plan: which step and occurrence it is, and what it follows."""

    care_plan = models.ForeignKey(CarePlan, on_delete=models.CASCADE, related_name="planned_visits")
    visit = models.OneToOneField(Visit, on_delete=models.CASCADE, related_name="planned")
    step = models.ForeignKey(ProtocolStep, on_delete=models.PROTECT, related_name="+")
    occurrence = models.PositiveSmallIntegerField()
    follows = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="followers",
        help_text="The visit this one is timed from (e.g. the dosing an integration follows).",
    )

    class Meta:
        ordering = ["visit__start"]

    def __str__(self):
        return f"{self.step} #{self.occurrence}"


class Screening(models.Model):
    """The pre-treatment evaluation; dosing is booked only once a prescriber clears it."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="screenings")
    answers = models.JSONField(
        default=dict, help_text="For each contraindication: true (present), false (absent)."
    )
    notes = models.TextField(blank=True)
    answered_by = models.ForeignKey(
        Clinician, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    answered_at = models.DateTimeField(null=True, blank=True)
    cleared = models.BooleanField(default=False)
    cleared_by = models.ForeignKey(
        Clinician, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-answered_at"]

    def __str__(self):
        return f"Screening of {self.patient} ({'cleared' if self.cleared else 'not cleared'})"

    @property
    def unanswered(self) -> list[str]:
        return [
            label
            for code, label in CONTRAINDICATIONS.items()
            if not isinstance(self.answers.get(code), bool)
        ]

    @property
    def present(self) -> list[str]:
        return [
            label for code, label in CONTRAINDICATIONS.items() if self.answers.get(code) is True
        ]

    def clean(self):
        unknown = set(self.answers) - set(CONTRAINDICATIONS)
        if unknown:
            raise ValidationError(
                {"answers": f"Unknown contraindications: {', '.join(sorted(unknown))}."}
            )
        if self.cleared:
            if self.unanswered:
                raise ValidationError(
                    f"Answer every contraindication before clearing: {'; '.join(self.unanswered)}."
                )
            if not (self.cleared_by and self.cleared_by.is_prescriber):
                raise ValidationError({"cleared_by": "Only a prescriber can clear a screening."})
            if self.present and not self.notes.strip():
                raise ValidationError(
                    {
                        "notes": "Explain why dosing is safe despite: "
                        + "; ".join(self.present)
                        + "."
                    }
                )

    def clear(self, prescriber: Clinician, when=None) -> None:
        self.cleared, self.cleared_by, self.cleared_at = True, prescriber, when or timezone.now()
        self.full_clean()
        self.save()

    @classmethod
    def is_cleared_for(cls, patient: Patient) -> bool:
        return cls.objects.filter(patient=patient, cleared=True).exists()
