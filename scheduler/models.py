"""The scheduling core: clinics, rooms, clinicians, patients, visit types and visits.

Vocabulary follows HL7 FHIR's Appointment where it fits (status proposed / booked /
cancelled / noshow / checked-in / fulfilled, shown here as ``completed``).
Times are aware datetimes stored in UTC; weekly hours are wall-clock times in the
clinic's zone.
"""

import uuid
from datetime import datetime, timedelta
from functools import cached_property
from typing import NamedTuple
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Now
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_noop

from scheduler.phones import MobileNumberField, format_for_display, search_digits
from scheduler.public_holidays import (
    default_country,
    default_subdivision,
    subdivision_problem,
    validate_country,
)
from scheduler.timezones import validate_time_zone, zone


def default_time_zone() -> str:
    return settings.CLINIC_TIME_ZONE


def patient_languages() -> list[tuple[str, str]]:
    """The languages patients can read their texts, emails and page in (settings.LANGUAGES).

    A callable, so that adding a language to the settings needs no migration.
    """
    return settings.LANGUAGES


def is_row_id(value) -> bool:
    """Whether ``value`` can be a database id: ASCII digits within a 64-bit integer.

    ``str.isdigit`` alone lets "²" through (which ``int`` refuses), and an id
    past the database's integers overflows in the query: both were server errors.
    """
    text = str(value)
    return text.isascii() and text.isdigit() and int(text) < 2**63


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class WeeklyHours(models.Model):
    """One interval of a weekly pattern, wall-clock time in the clinic's zone."""

    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    opens = models.TimeField()
    closes = models.TimeField()

    class Meta:
        abstract = True
        ordering = ["weekday", "opens"]

    def __str__(self):
        return f"{self.get_weekday_display()} {self.opens:%H:%M}-{self.closes:%H:%M}"

    def clean(self):
        if self.opens is not None and self.closes is not None and self.opens >= self.closes:
            raise ValidationError("The end of the hours must be after their start (same day).")


class Interval(models.Model):
    """A stretch of time (closure, time off), stored in UTC."""

    start = models.DateTimeField()
    end = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        abstract = True
        ordering = ["start"]

    def clean(self):
        if self.start and self.end and self.start >= self.end:
            raise ValidationError("The end must be after the start.")


class CalendarDetail(models.TextChoices):
    """How much synced calendar entries say (docs/rules.md messaging rules; see scheduler.calendars)."""

    MINIMAL = "minimal", "Minimal: no initials, kind of visit or links"
    STANDARD = (
        "standard",
        "Standard: kind of visit and initials for clinicians, a neutral title for patients",
    )
    FULL = "full", "Full: visit type and names (may name the treatment)"


class WaitlistOrder(models.TextChoices):
    FIRST_COME = "first_come", "First come, first offered"
    PRIORITY = "priority", "Clinical priority set by the desk, then first come"


class ClinicQuerySet(models.QuerySet):
    def installation(self) -> "Clinic | None":
        """The installation's first clinic (None before any is set up).

        An installation may serve several clinics of one organisation; staff
        work in the one they chose (``scheduler.roles.access_of``). This one
        answers what belongs to no clinic: a text from a number no patient has.
        """
        return self.order_by("pk").first()


# Availability reads a patient's visits a day either side of what it decides
# (scheduler.availability), so a longer travel gap could not be kept.
MAX_TRAVEL_GAP_MINUTES = 12 * 60


# The policy a new clinic starts with; in the patients' languages from our catalogue
# until the clinic words its own (Clinic.cancellation_policy_in).
DEFAULT_LATE_CANCELLATION_POLICY = gettext_noop(
    "Cancelling less than 48 hours before a visit, or not coming, may be charged "
    "as the visit. Please let us know as early as you can."
)


class Clinic(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(unique=True)
    phone = models.CharField(max_length=40, help_text="Shown to patients in messages.")
    updated_at = models.DateTimeField(auto_now=True, editable=False)
    address = models.TextField(blank=True)
    time_zone = models.CharField(
        max_length=64, default=default_time_zone, validators=[validate_time_zone]
    )
    calendar_detail = models.CharField(
        "detail in calendars",
        max_length=10,
        choices=CalendarDetail.choices,
        default=CalendarDetail.STANDARD,
        help_text="What calendar feeds and invites show. Synced calendars can be seen by "
        "others; only Full names the visit type.",
    )
    front_desk_needs_second_factor = models.BooleanField(
        "front desk signs in with a second factor",
        default=False,
        help_text="Clinic admins and clinicians always sign in with a code from an "
        "authenticator app (or a recovery code) after their password. Tick this to ask "
        "the same of the front desk, who see every patient of the clinic.",
    )
    country = models.CharField(
        max_length=2,
        default=default_country,
        validators=[validate_country],
        help_text="ISO country code (US, CA, GB, DE, ...). The clinic is closed on this "
        "country's public holidays unless a closure row opens it anyway.",
    )
    subdivision = models.CharField(
        "state or region",
        max_length=10,
        blank=True,
        default=default_subdivision,
        help_text="Its code (NY, CA; BY for Bavaria): that state's public holidays close the "
        "clinic too. Empty: the national ones only.",
    )
    travel_gap_minutes = models.PositiveIntegerField(
        "travel gap (minutes)",
        default=60,
        validators=[MaxValueValidator(MAX_TRAVEL_GAP_MINUTES)],
        help_text="The least time between a patient's telehealth visit and their visit at the "
        "clinic, either way round, to travel between home and the clinic. 0: none.",
    )
    # What patients may do from their own page (desk.self_service).
    self_service_notice_hours = models.PositiveIntegerField(
        "notice for changes online (hours)",
        default=24,
        validators=[MaxValueValidator(24 * 14)],
        help_text="Patients cannot move or cancel a visit from their page closer to it than "
        "this; they call the clinic instead.",
    )
    self_service_moves = models.PositiveSmallIntegerField(
        "moves online per visit",
        default=2,
        validators=[MaxValueValidator(20)],
        help_text="How many times a patient may move one visit from their page. 0: never.",
    )
    patients_move_dosing = models.BooleanField(
        "patients may move dosing sessions online",
        default=False,
        help_text="Off: dosing sessions are moved by the front desk only, whatever the visit "
        "type says.",
    )
    late_cancellation_hours = models.PositiveIntegerField(
        "late cancellation (hours)",
        default=48,
        validators=[MaxValueValidator(24 * 14)],
        help_text="A cancellation closer to the visit than this is late (and marked so).",
    )
    late_cancellation_policy = models.TextField(
        "late cancellation policy",
        blank=True,
        default=DEFAULT_LATE_CANCELLATION_POLICY,
        help_text="Shown to a patient before they cancel from their page (in other languages: "
        "translated policies below).",
    )
    waitlist_offer_minutes = models.PositiveIntegerField(
        "waitlist offers last (minutes)",
        default=120,
        validators=[MinValueValidator(10), MaxValueValidator(24 * 60)],
        help_text="How long a freed time offered to waitlisted patients stays open.",
    )
    waitlist_order = models.CharField(
        max_length=20,
        choices=WaitlistOrder.choices,
        default=WaitlistOrder.FIRST_COME,
        help_text="Who is offered a freed time first.",
    )

    objects = ClinicQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def tz(self):
        return zone(self.time_zone)

    @property
    def travel_gap(self) -> timedelta:
        return timedelta(minutes=self.travel_gap_minutes)

    def clean(self):
        if problem := subdivision_problem(self.country, self.subdivision):
            raise ValidationError({"subdivision": problem})

    def cancellation_policy_in(self, language: str) -> "Policy":
        """The late-cancellation policy a patient reading ``language`` gets: the clinic's
        translation, else ours of the unchanged default, else the English (``translated``
        False: the desk sees it is missing).

        Reads ``translated_policies`` (prefetch it for many clinics).
        """
        english = self.late_cancellation_policy
        if language.split("-")[0] == "en" or not english.strip():
            return Policy(english, True)
        for translated in self.translated_policies.all():
            if translated.language == language and translated.late_cancellation_policy.strip():
                return Policy(translated.late_cancellation_policy, True)
        if english.strip() == DEFAULT_LATE_CANCELLATION_POLICY:
            with translation.override(language):
                return Policy(gettext(DEFAULT_LATE_CANCELLATION_POLICY), True)
        return Policy(english, False)


class OpeningHours(WeeklyHours):
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="opening_hours")

    class Meta(WeeklyHours.Meta):
        verbose_name_plural = "opening hours"


class ClosureKind(models.TextChoices):
    CLOSED = "closed", "Closed"
    # Public holidays close the clinic by default (scheduler.public_holidays);
    # this lifts one, for the span given, within the usual opening hours.
    OPEN = "open", "Open on a public holiday"


class Closure(Interval):
    """A span the clinic takes no visits, or, of kind *open*, a public holiday it works anyway."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="closures")
    kind = models.CharField(
        max_length=10,
        choices=ClosureKind.choices,
        default=ClosureKind.CLOSED,
        help_text="Closed: no visits in this span. Open on a public holiday: the clinic keeps "
        "its usual hours in this span although it is a public holiday.",
    )

    def __str__(self):
        state = "open" if self.kind == ClosureKind.OPEN else "closed"
        return f"{self.clinic} {state} {self.start:%Y-%m-%d %H:%M}-{self.end:%Y-%m-%d %H:%M}"


class Capability(models.Model):
    """What a room offers: an infusion chair, vital-signs monitoring, a REMS-certified setting."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=80)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "capabilities"

    def __str__(self):
        return self.name


class Room(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="rooms")
    name = models.CharField(max_length=80)
    capabilities = models.ManyToManyField(Capability, blank=True, related_name="rooms")
    updated_at = models.DateTimeField(auto_now=True, editable=False)

    class Meta:
        ordering = ["clinic", "name"]
        constraints = [
            models.UniqueConstraint(fields=["clinic", "name"], name="room_name_unique_in_clinic")
        ]

    def __str__(self):
        return self.name


class ClinicianRole(models.TextChoices):
    PRESCRIBER = "prescriber", "Prescriber"
    THERAPIST = "therapist", "Therapist"
    NURSE = "nurse", "Nurse"


class ClinicianQuerySet(models.QuerySet):
    def with_role(self, role: str):
        return self.filter(**{f"is_{role}": True})

    def active(self):
        return self.filter(is_active=True)


class Clinician(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="clinician"
    )
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="clinicians")
    display_name = models.CharField(
        max_length=120, help_text='As patients see it, e.g. "Dr. Rivera".'
    )
    is_prescriber = models.BooleanField("prescriber", default=False)
    is_therapist = models.BooleanField("therapist", default=False)
    is_nurse = models.BooleanField("nurse", default=False)
    telehealth_link = models.URLField(blank=True, help_text="Video room for telehealth visits.")
    updated_at = models.DateTimeField(auto_now=True, editable=False)
    mobile = MobileNumberField(
        blank=True,
        help_text="For urgent clinical alerts by text (a patient's answers that need review "
        "today); stored in international (E.164) form.",
    )
    is_active = models.BooleanField(default=True)

    objects = ClinicianQuerySet.as_manager()

    class Meta:
        ordering = ["display_name"]

    def __str__(self):
        return self.display_name

    def has_role(self, role: str) -> bool:
        return getattr(self, f"is_{role}")

    @property
    def roles(self) -> list[str]:
        return [role.value for role in ClinicianRole if self.has_role(role)]

    def clean(self):
        if not self.roles:
            raise ValidationError("A clinician needs at least one role.")


class WorkingHours(WeeklyHours):
    clinician = models.ForeignKey(Clinician, on_delete=models.CASCADE, related_name="working_hours")

    class Meta(WeeklyHours.Meta):
        verbose_name_plural = "working hours"


class TimeOff(Interval):
    clinician = models.ForeignKey(Clinician, on_delete=models.CASCADE, related_name="time_off")

    class Meta(Interval.Meta):
        verbose_name_plural = "time off"

    def __str__(self):
        return f"{self.clinician} off {self.start:%Y-%m-%d %H:%M}-{self.end:%Y-%m-%d %H:%M}"


def role_label(roles) -> str:
    """ "nurse or prescriber": the roles any one of which fills a place on a team."""
    names = [ClinicianRole(role).label.lower() for role in roles]
    return " or ".join(names)


class Seat(NamedTuple):
    """One place on a visit's team: who may fill it and for which part of the visit.

    ``offset`` is when the person joins after the visit starts and ``length``
    how long they stay (None: to the end); only that span of their time is held.
    """

    roles: tuple[str, ...]
    offset: timedelta = timedelta(0)
    length: timedelta | None = None
    optional: bool = False

    @property
    def label(self) -> str:
        return role_label(self.roles)

    def span(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """The part of a visit running [start, end) this place is needed for."""
        joins = min(start + self.offset, end)
        leaves = end if self.length is None else min(end, joins + self.length)
        return joins, leaves

    def role_of(self, clinician: "Clinician") -> str | None:
        """The role ``clinician`` would fill this place in, or None when they hold none of its roles."""
        return next((role for role in self.roles if clinician.has_role(role)), None)

    def whole_visit(self) -> bool:
        return not self.offset and self.length is None


class Member(NamedTuple):
    """A person on a visit's team, in their place."""

    clinician: "Clinician"
    seat: Seat

    @property
    def role(self) -> str:
        """The role they fill the place in (its first, should they hold none of its roles)."""
        return self.seat.role_of(self.clinician) or self.seat.roles[0]

    def span(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        return self.seat.span(start, end)


def lead_of(visit_type: "VisitType", clinician: "Clinician") -> Member:
    """``clinician`` in the visit type's lead place (any of their roles where it names none)."""
    return Member(clinician, visit_type.lead_seat or Seat(tuple(clinician.roles)))


class ConsentMethod(models.TextChoices):
    WEB_FORM = "web_form", "Online form"
    PAPER_FORM = "paper_form", "Signed paper form"
    VERBAL = "verbal", "Verbal, recorded by staff"
    SMS_KEYWORD = "sms_keyword", "Replied START by text"


class PatientQuerySet(models.QuerySet):
    def seen_at(self, *clinics: "Clinic"):
        """Patients the clinics' staff may see: their own (their home clinic) and those
        with a visit at one of them (a patient of another location booked there)."""
        return self.filter(
            Q(clinic__in=clinics)
            | Exists(Visit.objects.filter(visit_type__clinic__in=clinics, patient=OuterRef("pk")))
        )

    def search(self, text: str):
        text = text.strip()
        if not text:
            return self.none()
        query = (
            Q(first_name__icontains=text) | Q(last_name__icontains=text) | Q(email__icontains=text)
        )
        if digits := search_digits(text):
            query |= Q(mobile__contains=digits)
        first, _, last = text.partition(" ")
        if last:
            query |= Q(first_name__icontains=first, last_name__icontains=last.strip())
        return self.filter(query)


class Patient(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="patients")
    first_name = models.CharField(max_length=80)
    last_name = models.CharField(max_length=80)
    date_of_birth = models.DateField()
    mobile = MobileNumberField(blank=True, help_text="Stored in international (E.164) form.")
    email = models.EmailField(blank=True)
    time_zone = models.CharField(
        max_length=64,
        default=default_time_zone,
        validators=[validate_time_zone],
        help_text="Reminders respect quiet hours in this zone.",
    )
    language = models.CharField(
        max_length=8,
        choices=patient_languages,
        default="en",
        help_text="Texts, emails and the patient's page are in this language.",
    )
    contact_by_sms = models.BooleanField("reminders by text", default=True)
    contact_by_email = models.BooleanField("reminders by email", default=True)
    sms_consent_at = models.DateTimeField("text consent given at", null=True, blank=True)
    sms_consent_method = models.CharField(
        "text consent given by", max_length=20, choices=ConsentMethod.choices, blank=True
    )
    # The FCC's exemption for healthcare texts sent without prior express
    # consent allows one a day and three a week (settings.SMS_DAILY_CAP,
    # SMS_WEEKLY_CAP); with express consent recorded those limits do not bind.
    sms_express_consent_at = models.DateTimeField(
        "express consent to care texts given at",
        null=True,
        blank=True,
        help_text="Prior express consent to healthcare texts: the clinic's daily and weekly "
        "text limits then do not apply (a day's texts go as one).",
    )
    sms_express_consent_method = models.CharField(
        "express consent given by", max_length=20, choices=ConsentMethod.choices, blank=True
    )
    sms_opted_out_at = models.DateTimeField("opted out of texts at", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, editable=False)

    objects = PatientQuerySet.as_manager()

    class Meta:
        ordering = ["last_name", "first_name"]
        indexes = [models.Index(fields=["last_name", "first_name"])]

    def __str__(self):
        return f"{self.first_name} {self.last_name}"

    @property
    def initials(self) -> str:
        return f"{self.first_name[:1]}{self.last_name[:1]}".upper()

    @property
    def mobile_display(self) -> str:
        return format_for_display(self.mobile)

    @property
    def can_receive_sms(self) -> bool:
        """Texts need a number, a recorded opt-in, and no opt-out since."""
        if not (self.mobile and self.contact_by_sms and self.sms_consent_at):
            return False
        return self.sms_opted_out_at is None or self.sms_opted_out_at < self.sms_consent_at

    @property
    def has_express_sms_consent(self) -> bool:
        """Texts allowed, and express consent to care texts given since any opt-out.

        A STOP revokes it with the rest; START afterwards renews consent to
        texts, not this: the limits apply again until it is given anew.
        """
        if not (self.can_receive_sms and self.sms_express_consent_at):
            return False
        return self.sms_opted_out_at is None or self.sms_opted_out_at < self.sms_express_consent_at

    def clean(self):
        if self.sms_consent_at and not self.sms_consent_method:
            raise ValidationError({"sms_consent_method": "Record how the patient agreed to texts."})
        if self.sms_express_consent_at and not self.sms_express_consent_method:
            raise ValidationError(
                {"sms_express_consent_method": "Record how the patient gave express consent."}
            )
        if self.sms_express_consent_at and not self.sms_consent_at:
            raise ValidationError(
                {"sms_consent_at": "Express consent to care texts is consent to texts: record it."}
            )
        if self.sms_consent_at and not self.mobile:
            raise ValidationError({"mobile": "Text consent needs a mobile number."})
        if self.date_of_birth and self.date_of_birth > timezone.localdate():
            raise ValidationError({"date_of_birth": "The date of birth is in the future."})


class VisitKind(models.TextChoices):
    SCREENING = "screening", "Screening"
    PREPARATION = "preparation", "Preparation"
    DOSING = "dosing", "Dosing session"
    INTEGRATION = "integration", "Integration"
    MAINTENANCE = "maintenance", "Maintenance check-in"


class DosingRoute(models.TextChoices):
    IV = "iv", "IV infusion"
    IM = "im", "Intramuscular"
    LOZENGE = "lozenge", "Sublingual lozenge"
    INTRANASAL = "intranasal", "Intranasal"


class DoseRule(NamedTuple):
    """Doses at least ``min_hours`` apart and at most ``max_per_week`` in any 7 days."""

    min_hours: int
    max_per_week: int


# docs/rules.md, dose spacing: the rule for a dose no care plan's protocol
# decides, by route, where the visit type sets no numbers of its own. Spravato's
# induction is twice a week; the other routes are dosed at most daily.
ROUTE_DOSE_RULES = {
    DosingRoute.IV: DoseRule(24, 3),
    DosingRoute.IM: DoseRule(24, 3),
    DosingRoute.LOZENGE: DoseRule(24, 3),
    DosingRoute.INTRANASAL: DoseRule(48, 2),
}


def _route_defaults(what: str) -> str:
    """The routes' defaults in words, for the admin's help text: "IV infusion 24 h, ..."."""
    return ", ".join(
        f"{route.label} {rule.min_hours} h"
        if what == "hours"
        else f"{route.label} {rule.max_per_week}"
        for route, rule in ROUTE_DOSE_RULES.items()
    )


class Modality(models.TextChoices):
    IN_PERSON = "in_person", "In person"
    TELEHEALTH = "telehealth", "Telehealth"


# What a calendar feed's validators read of each visit (scheduler.feeds.Feed.validators).
FEED_SUMMARY = ["status", "updated_at", "sequence", "ride_home_arranged", "end"]

# Availability looks this far back for visits still running (scheduler.availability).
LONGEST_VISIT_MINUTES = 24 * 60


class VisitType(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="visit_types")
    name = models.CharField(max_length=120)
    slug = models.SlugField()
    kind = models.CharField(max_length=20, choices=VisitKind.choices)
    dosing_route = models.CharField(
        max_length=20, choices=DosingRoute.choices, blank=True, help_text="Dosing visits only."
    )
    duration_minutes = models.PositiveIntegerField(
        help_text="The whole booking, post-dose monitoring included."
    )
    monitoring_minutes = models.PositiveIntegerField(
        default=0, help_text="Of the duration, how long the patient is monitored after the dose."
    )
    modality = models.CharField(max_length=20, choices=Modality.choices)
    room_capability = models.ForeignKey(
        Capability,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="The room must offer this (in-person visits only).",
    )
    price = models.DecimalField(max_digits=9, decimal_places=2, default=0)
    preparation_instructions = models.TextField(
        blank=True, help_text="Sent by email and shown on the patient's page before the visit."
    )
    aftercare_instructions = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True, editable=False)
    min_hours_between_doses = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Dosing only, for a patient whose care plan does not decide: no two doses "
        f"closer than this. Empty: the route's default ({_route_defaults('hours')}).",
    )
    max_doses_per_week = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Dosing only, for a patient whose care plan does not decide: at most this many "
        f"doses in any 7 days. Empty: the route's default ({_route_defaults('per week')}).",
    )
    patients_may_move = models.BooleanField(
        "patients may move or cancel it online",
        null=True,
        blank=True,
        help_text="Empty: by its kind (yes for preparation, integration and check-ins, no for "
        "screening). Dosing sessions also need the clinic's permission.",
    )

    class Meta:
        ordering = ["clinic", "kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["clinic", "slug"], name="visit_type_slug_unique"),
        ]

    def __str__(self):
        return self.name

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    @cached_property
    def seats(self) -> list[Seat]:
        """The team the visit needs, one seat per person, the lead first (see StaffingRequirement)."""
        return [seat for row in self.staffing.all() for seat in row.as_seats()]

    @property
    def lead_seat(self) -> Seat | None:
        return self.seats[0] if self.seats else None

    @property
    def team_text(self) -> str:
        """'nurse or prescriber + therapist (optional)': the team in words."""
        return " + ".join(
            seat.label + (" (optional)" if seat.optional else "") for seat in self.seats
        )

    @property
    def is_dosing(self) -> bool:
        return self.kind == VisitKind.DOSING

    @property
    def patients_may_change(self) -> bool:
        """Whether patients may move or cancel visits of this type from their page.

        The type's own setting, else by kind (not screening: its result decides
        the rest of the course); a dosing session also needs the clinic's leave.
        """
        allowed = (
            self.patients_may_move
            if self.patients_may_move is not None
            else self.kind != VisitKind.SCREENING
        )
        return allowed and (not self.is_dosing or self.clinic.patients_move_dosing)

    @property
    def is_telehealth(self) -> bool:
        return self.modality == Modality.TELEHEALTH

    @property
    def needs_ride_home(self) -> bool:
        return self.is_dosing

    @property
    def dose_rule(self) -> DoseRule | None:
        """How this type's doses are spaced when no protocol decides; None for other visits."""
        if not self.is_dosing:
            return None
        # clean() refuses a dosing type without a route; a row made without it
        # still gets the rule most routes share rather than none.
        default = ROUTE_DOSE_RULES.get(self.dosing_route, ROUTE_DOSE_RULES[DosingRoute.IV])
        return DoseRule(
            default.min_hours
            if self.min_hours_between_doses is None
            else self.min_hours_between_doses,
            default.max_per_week if self.max_doses_per_week is None else self.max_doses_per_week,
        )

    def clean(self):
        errors = {}
        if self.kind == VisitKind.DOSING and not self.dosing_route:
            errors["dosing_route"] = "A dosing visit type needs its route."
        if self.kind != VisitKind.DOSING and self.dosing_route:
            errors["dosing_route"] = "Only dosing visit types have a route."
        if self.kind != VisitKind.DOSING:
            for name in ("min_hours_between_doses", "max_doses_per_week"):
                if getattr(self, name) is not None:
                    errors[name] = "Only dosing visit types have dose spacing."
        if self.max_doses_per_week == 0:
            errors["max_doses_per_week"] = "A dosing visit type allows at least one a week."
        if self.kind == VisitKind.DOSING and self.modality == Modality.TELEHEALTH:
            errors["modality"] = "Dosing happens on site, never by telehealth."
        if self.modality == Modality.TELEHEALTH and self.room_capability_id:
            errors["room_capability"] = "Telehealth visits take no room."
        if self.duration_minutes is not None and self.monitoring_minutes > self.duration_minutes:
            errors["monitoring_minutes"] = "Monitoring cannot be longer than the whole visit."
        elif (
            self.kind == VisitKind.DOSING
            and self.monitoring_minutes
            and self.monitoring_minutes == self.duration_minutes
        ):
            # Monitoring starts with the dose: arrival, vitals and the dose itself come first.
            errors["duration_minutes"] = (
                "Leave time before the monitoring to give the dose: the visit must be longer "
                "than its monitoring."
            )
        if self.duration_minutes == 0:
            errors["duration_minutes"] = "A visit takes some time."
        if self.duration_minutes and self.duration_minutes > LONGEST_VISIT_MINUTES:
            errors["duration_minutes"] = "A visit ends on the day it starts: at most 24 hours."
        if errors:
            raise ValidationError(errors)

    def instructions_in(self, language: str) -> "Instructions":
        """The preparation and aftercare a patient reading ``language`` gets: the clinic's
        translation where it wrote one, else the English (``translated`` False).

        Reads ``translated_instructions`` (prefetch it for many visit types).
        """
        english = Instructions(self.preparation_instructions, self.aftercare_instructions, True)
        if language.split("-")[0] == "en" or not (english.preparation or english.aftercare):
            return english
        for translated in self.translated_instructions.all():
            if translated.language == language:
                return Instructions(
                    translated.preparation_instructions or english.preparation,
                    translated.aftercare_instructions or english.aftercare,
                    # Half a translation is still a missing one for the desk.
                    bool(translated.preparation_instructions or not english.preparation)
                    and bool(translated.aftercare_instructions or not english.aftercare),
                )
        return english._replace(translated=False)


class Policy(NamedTuple):
    """A clinic's late-cancellation policy in one language; ``translated`` as ``Instructions``'."""

    text: str
    translated: bool


class Instructions(NamedTuple):
    """A visit type's preparation and aftercare in one language; ``translated``: False
    when the clinic has not written them in the language asked for and they are English."""

    preparation: str
    aftercare: str
    translated: bool


class TranslatedInstructions(models.Model):
    """A visit type's preparation and aftercare instructions in another language than English.

    The clinic writes them (they are its own words, not a catalogue's); a
    patient whose language has none gets the English ones, and the desk sees
    which visit types lack them (``VisitType.instructions_in``).
    """

    visit_type = models.ForeignKey(
        "VisitType", on_delete=models.CASCADE, related_name="translated_instructions"
    )
    language = models.CharField(max_length=8, choices=patient_languages)
    preparation_instructions = models.TextField(blank=True)
    aftercare_instructions = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "translated instructions"
        constraints = [
            models.UniqueConstraint(
                fields=["visit_type", "language"], name="one_translation_per_language"
            )
        ]

    def __str__(self):
        return f"{self.visit_type} ({self.get_language_display()})"


class TranslatedPolicy(models.Model):
    """A clinic's late-cancellation policy in another language than English: its own
    words, as ``TranslatedInstructions`` are a visit type's (``Clinic.cancellation_policy_in``)."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="translated_policies")
    language = models.CharField(max_length=8, choices=patient_languages)
    late_cancellation_policy = models.TextField()

    class Meta:
        verbose_name = "translated cancellation policy"
        verbose_name_plural = "translated cancellation policies"
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "language"], name="one_policy_translation_per_language"
            )
        ]

    def __str__(self):
        return f"{self.clinic} ({self.get_language_display()})"


def parse_roles(text: str) -> tuple[str, ...]:
    return tuple(role for role in (text or "").split(",") if role)


class StaffingRequirement(models.Model):
    """A place on the team a visit type needs: which roles may fill it, how many, for how long.

    The first row (by position) is the lead: the visit's clinician, the name
    patients see. The others join the lead for the span they are needed.
    """

    visit_type = models.ForeignKey(VisitType, on_delete=models.CASCADE, related_name="staffing")
    position = models.PositiveSmallIntegerField(
        default=0, help_text="The lead comes first: the clinician patients are told about."
    )
    roles = models.CharField(
        max_length=60,
        help_text="Any one of these roles fills the place (e.g. nurse or prescriber).",
    )
    count = models.PositiveSmallIntegerField(
        default=1, validators=[MaxValueValidator(4)], help_text="How many such people."
    )
    joins_after_minutes = models.PositiveIntegerField(
        "joins after (minutes)", default=0, help_text="After the visit starts. 0: from the start."
    )
    stays_minutes = models.PositiveIntegerField(
        "stays (minutes)", null=True, blank=True, help_text="Empty: to the end of the visit."
    )
    optional = models.BooleanField(
        default=False,
        help_text="Booked when someone is free; the visit goes ahead without them otherwise.",
    )

    class Meta:
        ordering = ["visit_type", "position", "pk"]
        verbose_name = "team member needed"
        verbose_name_plural = "team"

    def __str__(self):
        return f"{self.count} {role_label(self.role_list)}"

    @property
    def role_list(self) -> tuple[str, ...]:
        return parse_roles(self.roles)

    def as_seats(self) -> list[Seat]:
        length = None if self.stays_minutes is None else timedelta(minutes=self.stays_minutes)
        seat = Seat(
            self.role_list, timedelta(minutes=self.joins_after_minutes), length, self.optional
        )
        return [seat] * self.count

    def clean(self):
        errors = {}
        roles = self.role_list
        known = set(ClinicianRole.values)
        if not roles:
            errors["roles"] = "Choose at least one role."
        elif unknown := [role for role in roles if role not in known]:
            errors["roles"] = f"Unknown role: {', '.join(unknown)}."
        if self.count == 0:
            errors["count"] = "At least one person."
        if self.stays_minutes == 0:
            errors["stays_minutes"] = "Stays for some time, or leave it empty for the whole visit."
        duration = self.visit_type.duration_minutes if self.visit_type_id else None
        if duration and self.joins_after_minutes >= duration:
            errors["joins_after_minutes"] = f"The visit lasts {duration} minutes."
        elif (
            duration
            and self.stays_minutes
            and (self.joins_after_minutes + self.stays_minutes > duration)
        ):
            errors["stays_minutes"] = (
                f"The visit lasts {duration} minutes: joining after {self.joins_after_minutes} "
                f"leaves {duration - self.joins_after_minutes}."
            )
        if errors:
            raise ValidationError(errors)


class VisitStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    BOOKED = "booked", "Booked"
    CONFIRMED = "confirmed", "Confirmed by patient"
    CHECKED_IN = "checked_in", "Checked in"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    NO_SHOW = "no_show", "No-show"


# Statuses that hold the clinician, the room and the patient: overlaps among
# these are refused, by PostgreSQL's exclusion constraints where available.
BLOCKING_STATUSES = (
    VisitStatus.BOOKED,
    VisitStatus.CONFIRMED,
    VisitStatus.CHECKED_IN,
    VisitStatus.COMPLETED,
)
# Statuses a visit can still be moved or cancelled from.
OPEN_STATUSES = (VisitStatus.PROPOSED, VisitStatus.BOOKED, VisitStatus.CONFIRMED)


def new_visit_uid() -> str:
    # RFC 5545 UIDs must be globally unique and never change; a random UUID
    # with our own suffix is both, and says nothing about the patient.
    return f"{uuid.uuid4()}@kap-scheduler"


def overlapping(start: datetime, end: datetime) -> Q:
    """Visits overlapping [start, end), as a condition to combine with others.

    The lower bound on start follows from end > start (no visit lasts longer
    than LONGEST_VISIT_MINUTES) and lets an index on start bound the scan on
    both sides instead of reading every earlier visit.
    """
    return Q(
        start__lt=end,
        end__gt=start,
        start__gte=start - timedelta(minutes=LONGEST_VISIT_MINUTES),
    )


class VisitQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        """Visits in bulk, each with its lead participant (``Visit.participants_follow``'s rule)."""
        created = super().bulk_create(objs, *args, **kwargs)
        VisitParticipant.objects.bulk_create(
            [VisitParticipant.lead_of(visit) for visit in created],
            batch_size=kwargs.get("batch_size"),
        )
        return created

    def scheduled(self):
        """Every visit but the proposed ones: a proposal belongs to a plan still under review,
        so it shows on no calendar, page or feed until it is booked."""
        return self.exclude(status=VisitStatus.PROPOSED)

    def blocking(self):
        return self.filter(status__in=BLOCKING_STATUSES)

    def overlapping(self, start: datetime, end: datetime):
        return self.filter(overlapping(start, end))

    def for_clinician(self, clinician):
        """The visits ``clinician`` is on, leading or not."""
        return self.filter(participants__clinician=clinician)

    def for_patient(self, patient):
        return self.filter(patient=patient)

    def at_clinic(self, clinic):
        """Visits held at ``clinic``: a visit's location is its visit type's clinic,
        which may not be the patient's home clinic (``Patient.clinic``)."""
        return self.filter(visit_type__clinic=clinic)

    def upcoming(self, now: datetime | None = None):
        return self.filter(
            start__gte=now or timezone.now(), status__in=(*OPEN_STATUSES, VisitStatus.CHECKED_IN)
        )

    def on_local_day(self, day, tz):
        start = datetime.combine(day, datetime.min.time(), tzinfo=tz)
        return self.overlapping(start, start + timedelta(days=1))


class Visit(models.Model):
    uid = models.CharField(max_length=255, unique=True, default=new_visit_uid, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="visits")
    visit_type = models.ForeignKey(VisitType, on_delete=models.PROTECT, related_name="visits")
    clinician = models.ForeignKey(Clinician, on_delete=models.PROTECT, related_name="visits")
    room = models.ForeignKey(
        Room, null=True, blank=True, on_delete=models.PROTECT, related_name="visits"
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.CharField(
        max_length=20, choices=VisitStatus.choices, default=VisitStatus.BOOKED
    )
    sequence = models.PositiveIntegerField(
        default=0,
        help_text="iCalendar SEQUENCE: raised when the time or place changes or the visit is cancelled.",
    )
    ride_home_arranged = models.BooleanField(default=False)
    cancellation_reason = models.CharField(max_length=300, blank=True)
    # Changes the patient made from their own page (desk.self_service).
    moves_by_patient = models.PositiveSmallIntegerField(default=0, editable=False)
    changed_by_patient_at = models.DateTimeField(null=True, blank=True, editable=False)
    cancelled_late = models.BooleanField(
        default=False, help_text="Cancelled closer to the visit than the clinic's policy allows."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = VisitQuerySet.as_manager()

    class Meta:
        ordering = ["start"]
        indexes = [
            # A clinician's or a patient's visits by time, carrying what a feed's
            # validators sum up (scheduler.feeds), so an unchanged feed's 304 is
            # answered from the index alone.
            models.Index(
                fields=["clinician", "start", *FEED_SUMMARY], name="visit_clinician_start"
            ),
            models.Index(fields=["room", "start"]),
            models.Index(fields=["patient", "start", *FEED_SUMMARY], name="visit_patient_start"),
            models.Index(fields=["status", "start"]),
            # Day and week schedules, feeds' windows: visits by time alone.
            models.Index(fields=["start"], name="visit_start"),
            # A clinic's day (its visit types' visits by time): in a network, the
            # index on time alone read every clinic's visits of the day, and the
            # desk's schedule digest took 7.3 ms at 1,000,000 visits (3.3 with this).
            models.Index(fields=["visit_type", "start"], name="visit_type_start"),
            # The desk's "changed by patients" list: the few visits patients moved or
            # cancelled lately, without reading every visit (67 ms at 100,000).
            models.Index(
                fields=["changed_by_patient_at"],
                condition=Q(changed_by_patient_at__isnull=False),
                name="visit_changed_by_patient",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")), name="visit_ends_after_start"
            ),
        ]

    def __str__(self):
        local = timezone.localtime(self.start, self.clinic.tz) if self.start else None
        return (
            f"{self.visit_type} for {self.patient} at {local:%Y-%m-%d %H:%M}" if local else "Visit"
        )

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        self.participants_follow()

    @property
    def clinic(self) -> Clinic:
        """Where the visit is held: its visit type's clinic (``VisitQuerySet.at_clinic``).
        Its name, address, phone, zone and settings are the ones a visit's messages use."""
        return self.visit_type.clinic

    @property
    def is_blocking(self) -> bool:
        return self.status in BLOCKING_STATUSES

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def lacks_ride_home(self) -> bool:
        return self.visit_type.needs_ride_home and not self.ride_home_arranged and self.is_open

    @property
    def staff(self) -> list["VisitParticipant"]:
        """Everyone on the visit, the lead first (prefetch ``participants__clinician`` for many)."""
        return sorted(self.participants.all(), key=lambda p: p.position)

    def seat_of(self, part: "VisitParticipant") -> Seat:
        """The place ``part`` fills: its visit type's, or the one it recorded if the team shrank."""
        seats = self.visit_type.seats
        return seats[part.position] if part.position < len(seats) else part.seat

    def participant(self, clinician: "Clinician | int | None") -> "VisitParticipant | None":
        """``clinician``'s place on the visit (a clinician or an id), or None if they are not on it."""
        pk = getattr(clinician, "pk", clinician)
        return next((p for p in self.participants.all() if p.clinician_id == pk), None)

    def span_for(self, clinician: "Clinician | None") -> tuple[datetime, datetime]:
        """When ``clinician`` is needed on the visit: their part of it, else all of it."""
        part = self.participant(clinician) if clinician is not None else None
        return (part.start, part.end) if part else (self.start, self.end)

    def participants_follow(self) -> None:
        """Keep every participant's span and hold in step with the visit; the lead is its clinician.

        A visit saved without participants gets its lead. Whoever saves a visit
        (booking, the admin, a migration, a test) leaves its team consistent.
        """
        rows = list(VisitParticipant.objects.filter(visit=self).select_related("clinician"))
        if not rows:
            VisitParticipant.lead_of(self).save()
            return
        changed = []
        for row in rows:
            before = (row.clinician_id, row.start, row.end, row.holds_time)
            if row.position == 0 and row.clinician_id != self.clinician_id:
                row.clinician = self.clinician
                row.role = lead_of(self.visit_type, self.clinician).role
            row.follow(self)
            if (row.clinician_id, row.start, row.end, row.holds_time) != before:
                changed.append(row)
        if changed:
            VisitParticipant.objects.bulk_update(
                changed, ["clinician", "role", "start", "end", "holds_time"]
            )


class VisitParticipant(models.Model):
    """A person on a visit's team, in a role, for the span of the visit they are needed.

    Position 0 is the lead (the visit's clinician). ``start``, ``end`` and
    ``holds_time`` copy what the visit and the seat say, so that PostgreSQL can
    refuse a person's overlapping participations itself (migration 0015) and
    availability reads a person's busy times from one table.
    """

    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="participants")
    clinician = models.ForeignKey(
        Clinician, on_delete=models.PROTECT, related_name="participations"
    )
    role = models.CharField(max_length=20, choices=ClinicianRole.choices)
    position = models.PositiveSmallIntegerField(default=0)
    joins_after_minutes = models.PositiveIntegerField(default=0)
    stays_minutes = models.PositiveIntegerField(null=True, blank=True)
    start = models.DateTimeField()
    end = models.DateTimeField()
    holds_time = models.BooleanField(default=True)

    class Meta:
        ordering = ["visit", "position"]
        indexes = [models.Index(fields=["clinician", "start"], name="participant_clinician_start")]
        constraints = [
            models.UniqueConstraint(fields=["visit", "clinician"], name="participant_once_a_visit"),
            models.UniqueConstraint(fields=["visit", "position"], name="participant_position"),
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")), name="participant_ends_after_start"
            ),
        ]

    def __str__(self):
        return f"{self.clinician} ({self.get_role_display().lower()})"

    @property
    def is_lead(self) -> bool:
        return self.position == 0

    @property
    def seat(self) -> Seat:
        length = None if self.stays_minutes is None else timedelta(minutes=self.stays_minutes)
        return Seat((self.role,), timedelta(minutes=self.joins_after_minutes), length)

    @property
    def is_partial(self) -> bool:
        return not self.seat.whole_visit()

    @classmethod
    def lead_of(cls, visit: Visit) -> "VisitParticipant":
        """The visit's clinician in its lead place."""
        return cls.for_seat(visit, *lead_of(visit.visit_type, visit.clinician), 0)

    @classmethod
    def for_seat(cls, visit: Visit, clinician: Clinician, seat: Seat, position: int):
        row = cls(
            visit=visit,
            clinician=clinician,
            role=Member(clinician, seat).role,
            position=position,
            joins_after_minutes=seat.offset // timedelta(minutes=1),
            stays_minutes=None if seat.length is None else seat.length // timedelta(minutes=1),
        )
        row.follow(visit)
        return row

    def follow(self, visit: Visit) -> None:
        self.start, self.end = self.seat.span(visit.start, visit.end)
        self.holds_time = visit.is_blocking


# -- calendars: feed tokens, invite preferences, busy times from clinicians' calendars --


class TokenPurpose(models.TextChoices):
    CALENDAR_FEED = "calendar_feed", "Calendar feed"
    PATIENT_LINK = "patient_link", "Patient page link"


class AccessTokenQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)

    def owned_by(self, owner: "Clinician | Patient"):
        field = "clinician" if isinstance(owner, Clinician) else "patient"
        return self.filter(**{field: owner})


class AccessToken(models.Model):
    """A secret link for a clinician or a patient (see scheduler.tokens).

    Only the SHA-256 of the token is stored: a copy of the database does not
    open anyone's calendar, and the URL is shown once, when it is issued.
    """

    purpose = models.CharField(max_length=20, choices=TokenPurpose.choices)
    clinician = models.ForeignKey(
        Clinician, null=True, blank=True, on_delete=models.CASCADE, related_name="access_tokens"
    )
    patient = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.CASCADE, related_name="access_tokens"
    )
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = AccessTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(clinician__isnull=False, patient__isnull=True)
                | Q(clinician__isnull=True, patient__isnull=False),
                name="access_token_has_one_owner",
            ),
            # Issuing revokes the previous token in the same transaction; two
            # staff issuing at once cannot leave two live links behind.
            models.UniqueConstraint(
                fields=["purpose", "clinician"],
                condition=Q(revoked_at__isnull=True, clinician__isnull=False),
                name="one_active_token_per_clinician",
            ),
            models.UniqueConstraint(
                fields=["purpose", "patient"],
                condition=Q(revoked_at__isnull=True, patient__isnull=False),
                name="one_active_token_per_patient",
            ),
        ]

    def __str__(self):
        state = "revoked" if self.revoked_at else "active"
        return f"{self.get_purpose_display()} of {self.owner} ({state})"

    @property
    def owner(self) -> "Clinician | Patient":
        return self.clinician if self.clinician_id else self.patient

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def clean(self):
        if bool(self.clinician_id) == bool(self.patient_id):
            raise ValidationError("Choose either a clinician or a patient.")


class InvitePreference(models.Model):
    """Whether a clinician also gets the email invites their patients get."""

    clinician = models.OneToOneField(
        Clinician, on_delete=models.CASCADE, related_name="invite_preference"
    )
    email_invites = models.BooleanField(
        "email me calendar invites",
        default=True,
        help_text="Invites, updates and cancellations of this clinician's visits go to their "
        "login's email address.",
    )

    def __str__(self):
        return f"{self.clinician}: invites {'on' if self.email_invites else 'off'}"


CALENDAR_URL_SCHEMES = ("http", "https", "webcal")


def validate_calendar_url(value: str) -> None:
    # webcal:// is Apple's and Outlook's way of writing an https:// feed address.
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in CALENDAR_URL_SCHEMES:
        raise ValidationError(
            "Give the calendar's web address (https://... or webcal://...), "
            "as the calendar app shows it for sharing or exporting."
        )
    URLValidator(schemes=CALENDAR_URL_SCHEMES)(value)


class ExternalCalendar(models.Model):
    """A clinician's own calendar (an .ics address), read every 15 minutes for busy times.

    The address is often a secret in itself (Google's "secret address in iCal
    format"), so pages show only its host.
    """

    clinician = models.ForeignKey(
        Clinician, on_delete=models.CASCADE, related_name="external_calendars"
    )
    url = models.CharField(
        "address",
        max_length=2000,
        validators=[validate_calendar_url],
        help_text="The private iCal (.ics) address of the clinician's own calendar.",
    )
    etag = models.CharField(max_length=300, blank=True, editable=False)
    last_fetched_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["clinician", "created_at"]

    def __str__(self):
        return f"{self.clinician}: {self.host}"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "?"

    @property
    def is_failing(self) -> bool:
        return bool(self.last_error)


class BusyBlock(models.Model):
    """A time a clinician is busy in their own calendar. No titles: only when, never what."""

    clinician = models.ForeignKey(Clinician, on_delete=models.CASCADE, related_name="busy_blocks")
    external_calendar = models.ForeignKey(
        ExternalCalendar, on_delete=models.CASCADE, related_name="busy_blocks"
    )
    start = models.DateTimeField()
    end = models.DateTimeField()

    class Meta:
        ordering = ["start"]
        indexes = [models.Index(fields=["clinician", "start"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")), name="busy_block_ends_after_start"
            ),
        ]

    def __str__(self):
        return f"{self.clinician} busy {self.start:%Y-%m-%d %H:%M}-{self.end:%Y-%m-%d %H:%M} UTC"


class AuditAction(models.TextChoices):
    VIEWED_PATIENT = "viewed_patient", "viewed patient page"
    ADDED_PATIENT = "added_patient", "added patient"
    CHANGED_PATIENT = "changed_patient", "changed patient details"
    LISTED_PATIENTS = "listed_patients", "listed patients"
    VIEWED_VISIT = "viewed_visit", "viewed visit page"
    CHANGED_VISIT = "changed_visit", "changed visit"
    READ_MESSAGES = "read_messages", "read messages"
    ISSUED_LINK = "issued_link", "issued patient link"
    VIEWED_PATIENT_LINK = "viewed_patient_link", "viewed patient link page"
    EXPORTED = "exported", "exported patient data"
    SIGN_IN_LOCKED = "sign_in_locked", "sign-in locked out"
    SECOND_FACTOR_ENROLLED = "second_factor_enrolled", "set up a second factor"
    SECOND_FACTOR_VERIFIED = "second_factor_verified", "signed in with a second factor"
    SECOND_FACTOR_FAILED = "second_factor_failed", "wrong second-factor code"
    RECOVERY_CODE_USED = "recovery_code_used", "signed in with a recovery code"
    API_READ = "api_read", "read through the FHIR API"
    API_SEARCHED = "api_searched", "searched through the FHIR API"
    API_BOOKED = "api_booked", "booked through the FHIR API"
    API_CLIENT_CHANGED = "api_client_changed", "changed a FHIR API client"
    API_TOKEN_ISSUED = "api_token_issued", "FHIR API token issued"
    API_REFUSED = "api_refused", "refused by the FHIR API"


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("Audit events are append-only.")

    def delete(self):
        raise PermissionError("Audit events are append-only.")


class AuditEvent(models.Model):
    """Who saw or changed which patient's data, when and from where. Append-only.

    ``actor_label`` keeps the username (or "patient link", "system") as it was,
    so the trail still says who after an account is renamed or removed.
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField("who", max_length=150)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    patient = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.CharField(max_length=200, blank=True)
    ip_address = models.GenericIPAddressField("from address", null=True, blank=True)
    user_agent = models.CharField(max_length=200, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["patient", "at"])]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label}: {self.get_action_display()}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("Audit events are append-only: an event cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit events are append-only: an event cannot be deleted.")


class DiaryChange(models.Model):
    """A visit whose hold on people or rooms may have changed, or (no visit) a
    change to a clinic's set-up: written by the database's own triggers
    (migration 0018) on every insert, delete and change of a visit's or a
    participant's times, status, room or person, and on every write to the
    set-up tables listed there, whatever writes them (booking, the admin, bulk
    loads, a cascade). A table that comes to decide availability needs its
    trigger too.

    Processes that keep diaries in memory (``scheduler.diary``) read the rows
    they have not seen, read those visits again, and forget the set-up they
    kept when it changed. ``transaction`` is
    PostgreSQL's transaction id: there transactions commit in another order
    than their rows were numbered, and a reader finds what it has not seen by
    transaction, not by number. SQLite writes one transaction at a time, so
    numbers follow commits.
    """

    visit_id = models.BigIntegerField(null=True)
    transaction = models.BigIntegerField(null=True, editable=False)
    at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["transaction"], name="diary_change_transaction"),
            models.Index(fields=["at"], name="diary_change_at"),
        ]

    def __str__(self) -> str:
        return f"visit {self.visit_id} changed"


class StaffRole(models.TextChoices):
    FRONT_DESK = "front_desk", "Front desk"
    ADMIN = "admin", "Clinic admin"


class StaffMembership(models.Model):
    """A staff account's role at one clinic: which clinics a user may work in.

    A clinician works at their ``Clinician.clinic`` without a row here, and a
    superuser at every clinic (``scheduler.roles.access_of``). The "Front desk"
    and "Clinic admins" groups still carry the admin's model permissions.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=StaffRole.choices)

    class Meta:
        ordering = ["clinic", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "clinic", "role"], name="staff_membership_unique"
            )
        ]

    def __str__(self):
        return f"{self.user} - {self.get_role_display()} at {self.clinic}"


class ChosenClinic(models.Model):
    """The clinic a user last chose to work in, kept across sessions and devices."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chosen_clinic"
    )
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    chosen_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.user} works in {self.clinic}"
