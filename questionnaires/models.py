"""Measurement-based care: validated questionnaires asked before the visits that matter.

- ``Instrument``: one version of a questionnaire (PHQ-9, GAD-7, or one a clinic
  adds) as data: its items as a FHIR R4 Questionnaire resource and how it is
  scored (which items add up, the severity bands, the answers that need a
  clinician the same day). Versions are kept: a response always names the
  version it answered, so a changed wording never rescores old answers.
- ``AskingRule``: which instrument goes out before which visits (a visit kind,
  a visit type or a protocol step; every one, the first, or every other dose)
  and how long before.
- ``QuestionnaireRequest``: one instrument asked of one patient before one
  visit. Its link goes out through the outbox like any reminder.
- ``QuestionnaireResponse``: the answers to one request, saved as they are
  given (a half-answered questionnaire survives a closed browser), scored on
  the server when submitted, once.
- ``SafetyAlert``: a submitted response that needs a clinician today (PHQ-9
  item 9 above "not at all", or a total at or over the clinic's threshold),
  until someone acknowledges it and says what was done.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from notifications.models import Message
from plans.models import ProtocolStep
from scheduler.models import (
    Clinic,
    Clinician,
    Patient,
    Visit,
    VisitKind,
    VisitParticipant,
    VisitType,
)


class InstrumentQuerySet(models.QuerySet):
    def current(self):
        """The newest active version of each instrument."""
        return self.filter(is_active=True).order_by("code", "-version").distinct()


class Instrument(models.Model):
    code = models.SlugField(max_length=40, help_text='e.g. "phq-9"; the same for every version.')
    version = models.CharField(max_length=20)
    short_name = models.CharField(max_length=20, help_text='As staff see it, e.g. "PHQ-9".')
    title = models.CharField(max_length=200)
    questionnaire = models.JSONField(
        help_text="The items as a FHIR R4 Questionnaire resource: choice items with answer "
        "options carrying an ordinalValue extension (the points each answer scores)."
    )
    scoring = models.JSONField(
        help_text='{"total": {"items": [linkIds], "max": N, "linkId": ...}, '
        '"bands": [{"min", "max", "label"}], "safety": [{"linkId", "above", "reason"}], '
        '"response_drop": 0.5, "remission_below": N}'
    )
    source = models.TextField(help_text="The published instrument this version follows.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = InstrumentQuerySet.as_manager()

    class Meta:
        ordering = ["code", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["code", "version"], name="instrument_version_once")
        ]

    def __str__(self):
        return f"{self.short_name} (version {self.version})"

    def clean(self):
        from questionnaires.scoring import definition_problems

        problems = definition_problems(self.questionnaire, self.scoring)
        if problems:
            raise ValidationError(problems)


class Occasion(models.TextChoices):
    EVERY = "every", "Before every such visit"
    FIRST = "first", "Before the first only"
    EVERY_OTHER = "every_other", "Before the first and every other one after (1st, 3rd, 5th...)"


class AskingRule(models.Model):
    """Which instrument goes out before which visits, and when.

    A rule matches a visit by its protocol step if it names one, else by its
    visit type if it names one, else by its kind. The occasion counts the
    patient's active visits the rule matches, in order of start.
    """

    instrument_code = models.SlugField(
        max_length=40, help_text="The instrument's code; its newest active version is asked."
    )
    visit_kind = models.CharField(max_length=20, choices=VisitKind.choices, blank=True)
    visit_type = models.ForeignKey(
        VisitType, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    protocol_step = models.ForeignKey(
        ProtocolStep, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    occasion = models.CharField(max_length=20, choices=Occasion.choices, default=Occasion.EVERY)
    hours_before = models.PositiveIntegerField(
        default=48, help_text="The link goes this long before the visit starts."
    )
    reminder_after_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=24,
        help_text="One reminder this long after the request if it is not answered "
        "(empty: none). It goes only while the visit is still ahead.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["instrument_code", "visit_kind", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(visit_kind="")
                | Q(visit_type__isnull=False)
                | Q(protocol_step__isnull=False),
                name="asking_rule_names_visits",
            )
        ]

    def __str__(self):
        target = self.protocol_step or self.visit_type or self.get_visit_kind_display()
        return f"{self.instrument_code}: {self.get_occasion_display().lower()} ({target})"

    def clean(self):
        if not (self.visit_kind or self.visit_type_id or self.protocol_step_id):
            raise ValidationError("Name the visits: a kind, a visit type or a protocol step.")
        if not Instrument.objects.filter(code=self.instrument_code, is_active=True).exists():
            raise ValidationError({"instrument_code": "No active instrument has this code."})


class RequestStatus(models.TextChoices):
    OPEN = "open", "Open"
    ANSWERED = "answered", "Answered"
    CANCELLED = "cancelled", "Cancelled"


class QuestionnaireRequestQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status=RequestStatus.OPEN)

    def answerable(self, now=None):
        """Open and within its time: from when its link went out until the visit ends."""
        now = now or timezone.now()
        return self.open().filter(opens_at__lte=now, closes_at__gt=now)


class QuestionnaireRequest(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="questionnaires")
    visit = models.ForeignKey(
        Visit,
        null=True,
        on_delete=models.SET_NULL,
        related_name="questionnaires",
        help_text="The visit it is asked before; the answers outlive it.",
    )
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="requests")
    rule = models.ForeignKey(
        AskingRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="requests"
    )
    opens_at = models.DateTimeField(help_text="When the link goes out (and may be answered from).")
    closes_at = models.DateTimeField(help_text="The visit's end: answers after it are too late.")
    status = models.CharField(
        max_length=20, choices=RequestStatus.choices, default=RequestStatus.OPEN
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = QuestionnaireRequestQuerySet.as_manager()

    class Meta:
        ordering = ["opens_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["visit", "instrument"],
                condition=~Q(status="cancelled"),
                name="questionnaire_once_per_visit",
            )
        ]
        indexes = [models.Index(fields=["patient", "status"])]

    def __str__(self):
        return f"{self.instrument.short_name} for {self.patient}"


class ResponseStatus(models.TextChoices):
    IN_PROGRESS = "in-progress", "In progress"
    COMPLETED = "completed", "Completed"


class QuestionnaireResponseQuerySet(models.QuerySet):
    def completed(self):
        return self.filter(status=ResponseStatus.COMPLETED)


class QuestionnaireResponse(models.Model):
    """The answers to one request. FHIR QuestionnaireResponse statuses."""

    request = models.OneToOneField(
        QuestionnaireRequest, on_delete=models.PROTECT, related_name="response"
    )
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="responses")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="responses")
    answers = models.JSONField(
        default=dict, help_text="By item linkId: the answer option's code, as given."
    )
    status = models.CharField(
        max_length=20, choices=ResponseStatus.choices, default=ResponseStatus.IN_PROGRESS
    )
    total = models.PositiveSmallIntegerField(null=True, blank=True)
    band = models.CharField(max_length=40, blank=True, help_text="The severity band of the total.")
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = QuestionnaireResponseQuerySet.as_manager()

    class Meta:
        ordering = ["completed_at", "pk"]
        indexes = [models.Index(fields=["patient", "instrument", "completed_at"])]

    def __str__(self):
        return f"{self.instrument.short_name} by {self.patient}: {self.total}"


class SafetyPolicy(models.Model):
    """Per clinic: who hears of an alert nobody acknowledged, and when."""

    clinic = models.OneToOneField(Clinic, on_delete=models.CASCADE, related_name="safety_policy")
    clinical_lead = models.ForeignKey(
        Clinician,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Hears of an alert nobody has acknowledged in time.",
    )
    escalate_after_minutes = models.PositiveIntegerField(
        default=60, help_text="Counted in opening hours."
    )
    phq9_total_threshold = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="A PHQ-9 total at or above this raises an alert too (empty: item 9 only).",
    )

    class Meta:
        verbose_name_plural = "safety policies"

    def __str__(self):
        return f"Safety policy of {self.clinic}"


class SafetyAlertQuerySet(models.QuerySet):
    def unacknowledged(self):
        return self.filter(acknowledged_at__isnull=True)

    def for_clinician(self, clinician: Clinician):
        """Alerts about the clinician's own patients: on any of the patient's visits' teams,
        told of the alert, or the clinic's clinical lead."""
        return self.filter(
            Exists(
                VisitParticipant.objects.filter(
                    visit__patient=OuterRef("patient"), clinician=clinician
                )
            )
            | Exists(
                Message.objects.filter(safety_notice__alert=OuterRef("pk"), clinician=clinician)
            )
            | Exists(
                SafetyPolicy.objects.filter(
                    clinic=OuterRef("patient__clinic"), clinical_lead=clinician
                )
            )
        )


class SafetyAlert(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="safety_alerts")
    response = models.ForeignKey(
        QuestionnaireResponse, on_delete=models.PROTECT, related_name="alerts"
    )
    reasons = models.JSONField(
        help_text="Why, in words: one line per answer or total that raised it."
    )
    created_at = models.DateTimeField(default=timezone.now)
    escalated_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    action_taken = models.TextField(blank=True, help_text="What was done, in a few words.")

    objects = SafetyAlertQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["response"], name="one_alert_per_response"),
            models.CheckConstraint(
                condition=Q(acknowledged_at__isnull=True) | ~Q(action_taken=""),
                name="acknowledged_alert_says_what_was_done",
            ),
        ]

    def __str__(self):
        return f"Alert for {self.patient} at {self.created_at:%Y-%m-%d %H:%M}"


class SafetyNotice(models.Model):
    """One outbox message that told someone of an alert: its clinicians at once, the
    clinical lead when nobody acknowledged it in time. Who was told, and what became
    of each message, is read from here."""

    alert = models.ForeignKey(SafetyAlert, on_delete=models.CASCADE, related_name="notices")
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="safety_notice")

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return f"{self.message} about {self.alert}"
