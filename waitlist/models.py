"""The waitlist: who wants an earlier (or any) time, the times that free up, and the offers made.

A ``WaitlistEntry`` says what a patient waits for (a visit type, or a step of
their care plan), within which dates, on which weekdays and at which times of
day, and optionally the booked visit of theirs an offer would replace. A
``FreedSlot`` is a time a visit gave up (cancelled, moved away), recorded in the
transaction that freed it. An ``Offer`` is one patient asked to take one freed
time: open until it is taken, expires, or someone else takes the time.
"""

from datetime import datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from plans.models import ProtocolStep
from scheduler.models import Clinic, Clinician, Patient, Room, Visit, VisitType, Weekday
from scheduler.timezones import zone


class TimeOfDay(models.TextChoices):
    MORNING = "morning", "Morning (before 12:00)"
    AFTERNOON = "afternoon", "Afternoon (12:00-17:00)"
    EVENING = "evening", "Evening (from 17:00)"


# Where each time of day begins and ends, wall-clock in the patient's zone.
TIMES_OF_DAY = {
    TimeOfDay.MORNING: (time(0), time(12)),
    TimeOfDay.AFTERNOON: (time(12), time(17)),
    TimeOfDay.EVENING: (time(17), time.max),
}


def time_of_day(moment: datetime, tz) -> str:
    local = timezone.localtime(moment, tz).time()
    return next(name for name, (low, high) in TIMES_OF_DAY.items() if low <= local < high)


class EntryStatus(models.TextChoices):
    WAITING = "waiting", "Waiting"
    BOOKED = "booked", "Booked from an offer"
    REMOVED = "removed", "Taken off the list"


class Priority(models.IntegerChoices):
    ROUTINE = 0, "Routine"
    SOON = 1, "Soon"
    URGENT = 2, "Urgent"


class WaitlistEntryQuerySet(models.QuerySet):
    def waiting(self):
        return self.filter(status=EntryStatus.WAITING)

    def at_clinic(self, clinic: Clinic):
        """Entries for a visit type or a plan step of ``clinic``: what its desk offers."""
        return self.filter(Q(visit_type__clinic=clinic) | Q(step__protocol__clinic=clinic))


class WaitlistEntry(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="waitlist_entries")
    visit_type = models.ForeignKey(
        VisitType,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="What the patient waits for; or a step of their care plan.",
    )
    step = models.ForeignKey(
        ProtocolStep,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="A step of the patient's care plan: the planned visit to give up is required.",
    )
    earliest = models.DateField()
    latest = models.DateField()
    weekdays = models.JSONField(
        default=list, blank=True, help_text="Weekday numbers (0 Monday); empty: any day."
    )
    times_of_day = models.JSONField(default=list, blank=True, help_text="Empty: any time.")
    gives_up = models.ForeignKey(
        Visit,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="visit to give up",
        help_text="A booked visit of the patient's that taking an offer moves to the new time.",
    )
    priority = models.PositiveSmallIntegerField(
        choices=Priority.choices,
        default=Priority.ROUTINE,
        help_text="Clinical priority: first when the clinic offers by priority.",
    )
    status = models.CharField(
        max_length=20, choices=EntryStatus.choices, default=EntryStatus.WAITING
    )
    booked_visit = models.ForeignKey(
        Visit, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    added_by_patient = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = WaitlistEntryQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name_plural = "waitlist entries"
        constraints = [
            models.CheckConstraint(
                condition=Q(visit_type__isnull=False, step__isnull=True)
                | Q(visit_type__isnull=True, step__isnull=False),
                name="waitlist_entry_wants_one_thing",
            ),
            models.CheckConstraint(
                condition=Q(latest__gte=models.F("earliest")), name="waitlist_window_in_order"
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self):
        return f"{self.patient} waits for {self.wanted}"

    @property
    def wanted(self) -> str:
        return str(self.step) if self.step_id else str(self.visit_type)

    @property
    def wanted_type(self) -> VisitType:
        return self.step.visit_type if self.step_id else self.visit_type

    @property
    def weekdays_text(self) -> str:
        return ", ".join(Weekday(day).label[:3] for day in self.weekdays) or "any day"

    @property
    def times_text(self) -> str:
        return ", ".join(TimeOfDay(t).label.split(" (")[0] for t in self.times_of_day) or "any time"

    def fits(self, start: datetime) -> bool:
        """Whether a visit at ``start`` is within the window and preferences (patient's zone)."""
        tz = zone(self.patient.time_zone)
        local = timezone.localtime(start, tz)
        return (
            self.earliest <= local.date() <= self.latest
            and (not self.weekdays or local.weekday() in self.weekdays)
            and (not self.times_of_day or time_of_day(start, tz) in self.times_of_day)
        )

    def clean(self):
        errors = {}
        if bool(self.visit_type_id) == bool(self.step_id):
            errors["visit_type"] = "Choose a visit type or a step of a care plan, not both."
        if self.earliest and self.latest and self.latest < self.earliest:
            errors["latest"] = _("The latest date comes on or after the earliest.")
        # Empty is "any"; anything but a list of known values is refused (the admin posts JSON).
        self.weekdays = self.weekdays or []
        self.times_of_day = self.times_of_day or []
        if not isinstance(self.weekdays, list) or any(
            type(day) is not int or day not in Weekday.values for day in self.weekdays
        ):
            errors["weekdays"] = "A list of weekdays, 0 (Monday) to 6 (Sunday), e.g. [0, 2]."
        if (
            not isinstance(self.times_of_day, list)
            or any(t not in TimeOfDay.values for t in self.times_of_day if isinstance(t, str))
            or not all(isinstance(t, str) for t in self.times_of_day)
        ):
            errors["times_of_day"] = (
                'A list of times of day: "morning", "afternoon", "evening", e.g. ["morning"].'
            )
        if self.gives_up_id and self.patient_id:
            visit = self.gives_up
            if visit.patient_id != self.patient_id:
                errors["gives_up"] = _("The visit to give up must be the patient's own.")
            elif not visit.is_open or visit.start <= timezone.now():
                errors["gives_up"] = _("The visit to give up must be booked and still to come.")
            elif self.wanted_type is not None and visit.visit_type_id != self.wanted_type.pk:
                errors["gives_up"] = _("The visit to give up must be of the kind waited for.")
        if self.step_id and not self.gives_up_id:
            errors["gives_up"] = _(
                "Waiting for a step of a care plan: name the planned visit an offer would "
                "move, so that the plan's timing rules can be kept."
            )
        if self.step_id and self.gives_up_id and "gives_up" not in errors:
            planned = getattr(self.gives_up, "planned", None)
            if planned is None or planned.step_id != self.step_id:
                errors["gives_up"] = _("The visit to give up must be a planned visit of that step.")
        if errors:
            raise ValidationError(errors)


class SlotStatus(models.TextChoices):
    OPEN = "open", "Being offered"
    TAKEN = "taken", "Taken from the waitlist"
    UNFILLED = "unfilled", "No taker"


class FreedSlotQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status=SlotStatus.OPEN)

    def without_taker(self, clinic: Clinic, now: datetime, hours: int):
        """Freed times within ``hours`` from ``now`` that nobody from the waitlist took."""
        return self.filter(
            clinic=clinic,
            status__in=(SlotStatus.OPEN, SlotStatus.UNFILLED),
            start__gt=now,
            start__lte=now + timedelta(hours=hours),
        )


class FreedSlot(models.Model):
    """A time a visit gave up: the same visit type, team and room, free to offer."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="+")
    visit_type = models.ForeignKey(VisitType, on_delete=models.CASCADE, related_name="+")
    clinician = models.ForeignKey(Clinician, on_delete=models.CASCADE, related_name="+")
    room = models.ForeignKey(
        Room, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    staff = models.JSONField(default=list, help_text="The rest of the team: clinician ids.")
    start = models.DateTimeField()
    end = models.DateTimeField()
    visit_sequence = models.PositiveIntegerField(
        help_text="The visit's SEQUENCE once it gave the time up: its offers' messages carry it."
    )
    change = models.CharField(max_length=20, help_text="How it freed: cancelled, moved, no_show.")
    status = models.CharField(max_length=20, choices=SlotStatus.choices, default=SlotStatus.OPEN)
    freed_at = models.DateTimeField(default=timezone.now)
    taken_at = models.DateTimeField(null=True, blank=True)

    objects = FreedSlotQuerySet.as_manager()

    class Meta:
        ordering = ["start", "pk"]
        indexes = [models.Index(fields=["status", "start"])]

    def __str__(self):
        local = timezone.localtime(self.start, self.clinic.tz)
        return f"{self.visit_type} {local:%a %Y-%m-%d %H:%M} ({self.get_status_display().lower()})"


class Outcome(models.TextChoices):
    OPEN = "open", "Open"
    TAKEN = "taken", "Taken"
    TOO_LATE = "too_late", "Too late: someone else took it"
    EXPIRED = "expired", "Expired"
    DECLINED = "declined", "Declined"


FINAL_OUTCOMES = (Outcome.TAKEN, Outcome.TOO_LATE, Outcome.EXPIRED, Outcome.DECLINED)


class Offer(models.Model):
    slot = models.ForeignKey(FreedSlot, on_delete=models.CASCADE, related_name="offers")
    entry = models.ForeignKey(WaitlistEntry, on_delete=models.CASCADE, related_name="offers")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    sent_at = models.DateTimeField(help_text="When its text and email go (quiet hours kept).")
    expires_at = models.DateTimeField()
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.OPEN)
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_by = models.CharField(max_length=10, blank=True, help_text="text or link")
    visit = models.ForeignKey(
        Visit, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["sent_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["slot", "patient"], name="offer_once_a_patient"),
        ]
        indexes = [models.Index(fields=["patient", "outcome"])]

    def __str__(self):
        return f"Offer to {self.patient}: {self.slot} ({self.get_outcome_display().lower()})"

    @property
    def is_open(self) -> bool:
        return self.outcome == Outcome.OPEN


# "Needs attention" on the desk's home: freed times this close with nobody from the list.
ATTENTION_HOURS = 72


def freed_without_taker(clinic: Clinic) -> int:
    """How many freed times in the next 72 h nobody from the waitlist has taken (one query)."""
    return FreedSlot.objects.without_taker(clinic, timezone.now(), ATTENTION_HOURS).count()
