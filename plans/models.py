"""Protocols (care-plan templates), care plans and the screening that gates dosing.

FHIR vocabulary: a Protocol is a PlanDefinition, its steps are actions with
timing relative to an earlier action; applying it to a patient gives a CarePlan
whose activities are Appointments (our Visits).
"""

from datetime import datetime, timedelta
from itertools import islice

from dateutil.rrule import rrulestr
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import dateformat, timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext

from scheduler.models import Clinic, Clinician, DosingRoute, Patient, Visit, VisitType

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
    """A rule's hours as people say them: "40 h", but "3 days" for whole days (active language)."""
    if hours and hours % 24 == 0:
        days = hours // 24
        return ngettext("%(days)s day", "%(days)s days", days) % {"days": days}
    return _("%(hours)s h") % {"hours": hours}


def span_text(span: timedelta) -> str:
    """How far apart two times are: "3 days", "20 h", "20 h 30 min" (active language)."""
    minutes = round(abs(span).total_seconds() / 60)
    hours, minutes = divmod(minutes, 60)
    if not minutes:
        return hours_text(hours)
    return _("%(hours)s h %(minutes)s min") % {"hours": hours, "minutes": minutes}


def range_text(low: int, high: int | None, *, none_if_zero: str = "") -> str:
    """A rule's range of hours: "1 day to 3 days", "at least 40 h" (or ``none_if_zero``)."""
    if high is not None:
        return _("%(low)s to %(high)s") % {"low": hours_text(low), "high": hours_text(high)}
    if not low and none_if_zero:
        return none_if_zero
    return _("at least %(low)s") % {"low": hours_text(low)}


def doses_text(count: int) -> str:
    return ngettext("%(count)s dose", "%(count)s doses", count) % {"count": count}


def rule_time(moment: datetime, tz) -> str:
    """A time a rule names, in ``tz`` and the active language: "Tue 2031-04-08 10:00"."""
    # Translators: a Django date format, a time a booking rule names: "Tue 2031-04-08 10:00".
    return dateformat.format(timezone.localtime(moment, tz), pgettext("date format", "D Y-m-d H:i"))


def rule_day(day) -> str:
    """A day a rule names, in the active language: "Tue 2031-04-08"."""
    # Translators: a Django date format, a day a booking rule names: "Tue 2031-04-08".
    return dateformat.format(day, pgettext("date format", "D Y-m-d"))


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
            _(
                "Without a care plan, doses of %(visit_type)s must be at least %(spacing)s "
                "apart; another dose is %(gap)s away."
            )
            % {
                "visit_type": stricter,
                "spacing": hours_text(stricter.dose_rule.min_hours),
                "gap": span_text(gap),
            }
        )
    week = sorted(
        [(other, other_type) for other, other_type in others if abs(other - start) < WEEK]
        + [(start, visit_type)],
        key=lambda pair: pair[0],
    )
    for index, (first, _type) in enumerate(week):
        if first > start:
            break
        if first + WEEK <= start:
            continue  # these 7 days end before the new dose
        window = [t for when, t in week[index:] if when - first < WEEK]
        strictest = min(window, key=lambda t: t.dose_rule.max_per_week)
        limit = strictest.dose_rule.max_per_week
        if len(window) > limit:
            problems.append(
                _("Without a care plan, %(visit_type)s allows at most %(doses)s in any 7 days.")
                % {"visit_type": strictest, "doses": doses_text(limit)}
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
    open_to_other_clinics = models.BooleanField(
        "open to the organisation's other clinics",
        default=False,
        help_text="Patients whose home is another clinic of this installation may follow "
        "this protocol here (their plan's visits are held at this clinic).",
    )
    updated_at = models.DateTimeField(auto_now=True, editable=False)

    class Meta:
        ordering = ["clinic", "name"]
        constraints = [
            models.UniqueConstraint(fields=["clinic", "slug"], name="protocol_slug_unique")
        ]

    def __str__(self):
        return self.name

    def refusal_for(self, patient: Patient) -> str:
        """Why ``patient`` may not follow this protocol ("" if they may).

        All clinics of an installation are one organisation: a patient of one
        may follow a protocol of another when that protocol is open to them.
        """
        if patient.clinic_id == self.clinic_id or self.open_to_other_clinics:
            return ""
        return (
            f"{patient} is a patient of {patient.clinic}; {self} at {self.clinic} is not open "
            "to patients of the organisation's other clinics (see its setting)."
        )

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
                _(
                    "Doses must be at least %(spacing)s apart (%(protocol)s); another dose is %(gap)s away."
                )
                % {
                    "spacing": hours_text(self.min_hours_between_doses),
                    "protocol": self,
                    "gap": span_text(near - start),
                }
            )
        if not within_weekly_limit(doses, start, self.max_doses_per_week):
            problems.append(
                _("%(protocol)s allows at most %(doses)s in any 7 days.")
                % {"protocol": self, "doses": doses_text(self.max_doses_per_week)}
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
        return range_text(self.min_gap_hours, self.max_gap_hours, none_if_zero=_("any time"))

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
    updated_at = models.DateTimeField(auto_now=True, editable=False)

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
    # The plan as proposed, kept as the generator made it (plans.generator
    # ProposedVisit): where it put the visit, and the window its step's rule
    # allowed then. A visit that moved since shows where it came from; the
    # window stays the proposal's, so a visit moved along with the one it
    # follows can lie outside it. Empty for plans saved before they were kept.
    proposed_start = models.DateTimeField(null=True, blank=True, editable=False)
    window_earliest = models.DateTimeField(null=True, blank=True, editable=False)
    window_latest = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Empty with an earliest: no bound."
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


# -- Spravato REMS (docs/rules.md, section 5) ---------------------------------------

# The REMS Patient Monitoring Form is due this many calendar days after the
# session; weekends and holidays count.
MONITORING_FORM_DAYS = 7
# Spravato's monitoring after the dose lasts at least this long (the 2-hour rule).
SPRAVATO_MONITORING = timedelta(hours=2)


def is_spravato(visit_type: VisitType) -> bool:
    """A Spravato dose: a dosing visit type given intranasally (the REMS applies to it)."""
    return visit_type.is_dosing and visit_type.dosing_route == DosingRoute.INTRANASAL


class RemsSetting(models.Model):
    """The clinic's REMS-certified healthcare setting: Spravato is booked only where one is.

    Kept beside the clinic rather than on it: the REMS is a plans matter, the
    clinic a scheduling one.
    """

    clinic = models.OneToOneField(Clinic, on_delete=models.CASCADE, related_name="rems_setting")
    name = models.CharField("name of the healthcare setting", max_length=200)
    setting_id = models.CharField(
        "REMS setting ID", max_length=60, help_text="The ID the Spravato REMS gave the setting."
    )
    certified_on = models.DateField(
        null=True,
        blank=True,
        help_text="Empty until the REMS confirms the certification; Spravato doses "
        "are booked only from this day on.",
    )

    class Meta:
        verbose_name = "REMS-certified setting"

    def __str__(self):
        return f"{self.name} ({self.setting_id})"

    def problem_on(self, day) -> str:
        """Why no Spravato dose may be given here on ``day``; "" when it may."""
        if self.certified_on is None:
            return _(
                "%(setting)s is not certified in the Spravato REMS yet; record the "
                "certification date before booking Spravato doses."
            ) % {"setting": self.name}
        if day < self.certified_on:
            return _(
                "%(setting)s is certified in the Spravato REMS from %(day)s; no Spravato dose "
                "before then."
            ) % {"setting": self.name, "day": rule_day(self.certified_on)}
        return ""


class RemsEnrollment(models.Model):
    """A patient's enrolment in the Spravato REMS, done before the first treatment."""

    patient = models.OneToOneField(
        Patient, on_delete=models.CASCADE, related_name="rems_enrollment"
    )
    enrolled_on = models.DateField()
    patient_rems_id = models.CharField(
        "patient REMS ID", max_length=60, blank=True, help_text="If the REMS gave one."
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "REMS enrollment"

    def __str__(self):
        return f"{self.patient}, enrolled in the REMS on {self.enrolled_on:%Y-%m-%d}"


class SpravatoDose(models.TextChoices):
    MG_56 = "56", "56 mg"
    MG_84 = "84", "84 mg"
    OTHER = "other", "Other"


# (systolic, diastolic) field names of each blood-pressure reading, and what it is.
BLOOD_PRESSURES = {
    "bp_before": "blood pressure before the dose",
    "bp_after_40": "blood pressure about 40 minutes after the dose",
    "bp_discharge": "blood pressure before discharge",
}
SYSTOLIC, DIASTOLIC, SPO2 = (50, 260), (30, 160), (50, 100)
HEART_RATE = (20, 250)
CONCOMITANT_MEDICATIONS = {
    "takes_benzodiazepines": "Benzodiazepines",
    "takes_non_benzo_hypnotics": "Non-benzodiazepine sedative hypnotics",
    "takes_psychostimulants": "Psychostimulants",
    "takes_maois": "Monoamine oxidase inhibitors (MAOIs)",
}


def _reading(label: str, bounds: tuple[int, int]) -> models.PositiveSmallIntegerField:
    return models.PositiveSmallIntegerField(
        label, null=True, blank=True, help_text=f"{bounds[0]}-{bounds[1]}."
    )


class SessionRecord(models.Model):
    """What was observed in one dosing session: vitals, monitoring, and for Spravato the
    fields of the REMS Patient Monitoring Form.

    One model for every route; what must be filled in before the visit can be
    completed depends on the route (``missing``). A record may be saved half
    done during the session; every value present must be possible.
    """

    visit = models.OneToOneField(Visit, on_delete=models.CASCADE, related_name="session_record")
    bp_before_systolic = _reading("systolic before the dose", SYSTOLIC)
    bp_before_diastolic = _reading("diastolic before the dose", DIASTOLIC)
    bp_after_40_systolic = _reading("systolic ~40 min after", SYSTOLIC)
    bp_after_40_diastolic = _reading("diastolic ~40 min after", DIASTOLIC)
    bp_discharge_systolic = _reading("systolic before discharge", SYSTOLIC)
    bp_discharge_diastolic = _reading("diastolic before discharge", DIASTOLIC)
    heart_rate = _reading("heart rate before the dose (bpm)", HEART_RATE)
    spo2 = _reading("lowest SpO2 during monitoring (%)", SPO2)
    monitoring_start = models.DateTimeField(
        "dose given (first device) / monitoring start", null=True, blank=True
    )
    monitoring_end = models.DateTimeField("end of monitoring", null=True, blank=True)
    ready_to_leave_at = models.DateTimeField(
        "ready to leave without the 2-hour rule at", null=True, blank=True
    )
    vitals_ok_before_dose = models.BooleanField(
        "vital signs acceptable before the dose", null=True, blank=True
    )
    vitals_ok_before_discharge = models.BooleanField(
        "vital signs acceptable before discharge", null=True, blank=True
    )
    sedation = models.BooleanField("sedation observed", null=True, blank=True)
    sedation_resolved_at = models.DateTimeField("sedation resolved at", null=True, blank=True)
    dissociation = models.BooleanField("dissociation observed", null=True, blank=True)
    dissociation_resolved_at = models.DateTimeField(
        "dissociation resolved at", null=True, blank=True
    )
    ride_home = models.CharField("ride home: who picks the patient up", max_length=200, blank=True)
    dose = models.CharField(max_length=10, choices=SpravatoDose.choices, blank=True)
    dose_other_mg = models.PositiveSmallIntegerField(
        "other dose (mg)", null=True, blank=True, help_text="Only with dose Other."
    )
    lot_number = models.CharField(max_length=60, blank=True)
    serious_adverse_events = models.TextField(
        blank=True, help_text='Write "None" when there were none.'
    )
    takes_benzodiazepines = models.BooleanField(
        CONCOMITANT_MEDICATIONS["takes_benzodiazepines"], default=False
    )
    takes_non_benzo_hypnotics = models.BooleanField(
        CONCOMITANT_MEDICATIONS["takes_non_benzo_hypnotics"], default=False
    )
    takes_psychostimulants = models.BooleanField(
        CONCOMITANT_MEDICATIONS["takes_psychostimulants"], default=False
    )
    takes_maois = models.BooleanField(CONCOMITANT_MEDICATIONS["takes_maois"], default=False)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-visit__start"]

    def __str__(self):
        return f"Session record of {self.visit}"

    @property
    def patient_id(self) -> int:
        return self.visit.patient_id

    @property
    def is_spravato(self) -> bool:
        return is_spravato(self.visit.visit_type)

    def blood_pressure(self, reading: str) -> str:
        systolic, diastolic = (getattr(self, f"{reading}_{p}") for p in ("systolic", "diastolic"))
        return f"{systolic}/{diastolic}" if systolic and diastolic else ""

    @property
    def dose_text(self) -> str:
        if self.dose == SpravatoDose.OTHER:
            return f"{self.dose_other_mg} mg" if self.dose_other_mg else "other"
        return self.get_dose_display()

    @property
    def total_duration(self) -> timedelta | None:
        """From the first device to the end of monitoring, as the REMS form asks."""
        if self.monitoring_start and self.monitoring_end:
            return self.monitoring_end - self.monitoring_start
        return None

    @property
    def total_duration_text(self) -> str:
        return _duration_text(self.total_duration) if self.total_duration else ""

    def medications_answered(self) -> list[tuple[str, bool]]:
        return [(label, getattr(self, name)) for name, label in CONCOMITANT_MEDICATIONS.items()]

    @property
    def concomitant_medications(self) -> list[str]:
        return [label for name, label in CONCOMITANT_MEDICATIONS.items() if getattr(self, name)]

    def missing(self) -> list[str]:
        """What must still be recorded before the visit can be completed, by its route.

        Every route: blood pressure before the dose and before discharge, the
        monitoring's start and end. Spravato: every field of the REMS Patient
        Monitoring Form, and the ride home; heart rate and SpO2 stay optional.
        """
        needed = ["bp_before", "bp_discharge"]
        if self.is_spravato:
            needed.insert(1, "bp_after_40")
        missing = [BLOOD_PRESSURES[r] for r in needed if None in self._pressure(r)]
        fields = ["monitoring_start", "monitoring_end"]
        if self.is_spravato:
            fields += ["ready_to_leave_at", "vitals_ok_before_dose", "vitals_ok_before_discharge"]
            fields += ["sedation", "dissociation"]
            fields += ["sedation_resolved_at"] if self.sedation else []
            fields += ["dissociation_resolved_at"] if self.dissociation else []
            fields += ["ride_home", "dose", "lot_number", "serious_adverse_events"]
            fields += ["dose_other_mg"] if self.dose == SpravatoDose.OTHER else []
        missing += [
            str(self._meta.get_field(name).verbose_name)
            for name in fields
            if getattr(self, name) is None or str(getattr(self, name)).strip() == ""
        ]
        return missing

    def _pressure(self, reading: str) -> tuple[int | None, int | None]:
        return getattr(self, f"{reading}_systolic"), getattr(self, f"{reading}_diastolic")

    def clean(self):
        errors: dict[str, str] = {}
        for reading, what in BLOOD_PRESSURES.items():
            systolic, diastolic = self._pressure(reading)
            high, low = f"{reading}_systolic", f"{reading}_diastolic"
            if systolic is not None and not SYSTOLIC[0] <= systolic <= SYSTOLIC[1]:
                errors[high] = (
                    f"A systolic pressure must be between {SYSTOLIC[0]} and {SYSTOLIC[1]} mmHg."
                )
            if diastolic is not None and not DIASTOLIC[0] <= diastolic <= DIASTOLIC[1]:
                errors[low] = (
                    f"A diastolic pressure must be between {DIASTOLIC[0]} and {DIASTOLIC[1]} mmHg."
                )
            if (systolic is None) != (diastolic is None):
                errors[low if diastolic is None else high] = f"Give both numbers of the {what}."
            elif systolic is not None and not {high, low} & set(errors) and systolic <= diastolic:
                errors[high] = f"The systolic pressure must be higher than the diastolic ({what})."
        if self.spo2 is not None and not SPO2[0] <= self.spo2 <= SPO2[1]:
            errors["spo2"] = f"SpO2 must be between {SPO2[0]} and {SPO2[1]} %."
        if self.heart_rate is not None and not HEART_RATE[0] <= self.heart_rate <= HEART_RATE[1]:
            errors["heart_rate"] = (
                f"A heart rate must be between {HEART_RATE[0]} and {HEART_RATE[1]} bpm."
            )
        if self.dose == SpravatoDose.OTHER:
            if self.dose_other_mg is not None and not 1 <= self.dose_other_mg <= 200:
                errors["dose_other_mg"] = "A dose must be between 1 and 200 mg."
        elif self.dose_other_mg is not None:
            errors["dose_other_mg"] = "Give a dose in mg only with dose Other."
        for observed in ("sedation", "dissociation"):
            if getattr(self, observed) is not True and getattr(self, f"{observed}_resolved_at"):
                errors[f"{observed}_resolved_at"] = (
                    f"Only {observed} that was observed can have resolved."
                )
        if self.visit_id:
            errors |= self._time_problems()
        if errors:
            raise ValidationError(errors)

    def _time_problems(self) -> dict[str, str]:
        """The times lie on the visit's own (local) day and in the order a session has them."""
        errors = {}
        tz = self.visit.clinic.tz
        day = self.visit.start.astimezone(tz).date()
        names = [
            "monitoring_start",
            "monitoring_end",
            "ready_to_leave_at",
            "sedation_resolved_at",
            "dissociation_resolved_at",
        ]
        for name in names:
            value = getattr(self, name)
            if value is not None and value.astimezone(tz).date() != day:
                errors[name] = f"Give a time on the visit's day, {day:%a %Y-%m-%d}."
        if errors:
            return errors
        start, end = self.monitoring_start, self.monitoring_end
        if start and end and end <= start:
            errors["monitoring_end"] = "Monitoring must end after it starts."
        elif start and end and self.is_spravato and end - start < SPRAVATO_MONITORING:
            errors["monitoring_end"] = (
                "Spravato monitoring must last at least 2 hours after the dose "
                f"(the REMS); this records {_duration_text(end - start)}."
            )
        for name in names[2:]:
            value = getattr(self, name)
            if value is None or name in errors:
                continue
            if start and value < start:
                errors[name] = "This time comes after the dose (the monitoring start), not before."
            elif end and value > end and "monitoring_end" not in errors:
                errors[name] = "This time comes before the end of monitoring, not after."
        return errors


def _duration_text(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


class MonitoringFormTaskQuerySet(models.QuerySet):
    def open(self):
        return self.filter(submitted_on__isnull=True)

    def for_clinic(self, clinic: Clinic):
        return self.filter(visit__visit_type__clinic=clinic)


class MonitoringFormTask(models.Model):
    """The REMS Patient Monitoring Form of one completed Spravato session, to submit in 7 days.

    Created when the session is completed (``plans.rems``); closed when staff
    record that the form went in.
    """

    visit = models.OneToOneField(
        Visit, on_delete=models.CASCADE, related_name="monitoring_form_task"
    )
    due_on = models.DateField()
    submitted_on = models.DateField(null=True, blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recorded_at = models.DateTimeField(null=True, blank=True, help_text="When staff recorded it.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MonitoringFormTaskQuerySet.as_manager()

    class Meta:
        ordering = ["due_on", "pk"]

    def __str__(self):
        return f"REMS monitoring form of {self.visit}, due {self.due_on:%Y-%m-%d}"

    @property
    def patient_id(self) -> int:
        return self.visit.patient_id

    @staticmethod
    def due_for(visit: Visit):
        """Seven calendar days after the session's local date; weekends and holidays count."""
        local_day = visit.start.astimezone(visit.clinic.tz).date()
        return local_day + timedelta(days=MONITORING_FORM_DAYS)

    def days_left(self, today) -> int:
        return (self.due_on - today).days
