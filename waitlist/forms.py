"""Putting a patient on the waitlist: the desk's form and the patient's own."""

from datetime import timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from plans.models import ProtocolStep
from scheduler.models import Patient, Visit, VisitType, Weekday
from scheduler.timezones import day_input
from waitlist.models import EntryStatus, Priority, TimeOfDay, WaitlistEntry


class PreferencesForm(forms.Form):
    """The window and preferences every entry has; subclasses say what is waited for."""

    # Labels in the reader's language: the patient's form is read in theirs (the desk's,
    # in English, shares them). Weekday names come from Django's own catalogues.
    earliest = forms.DateField(label=_("Earliest"), widget=day_input())
    latest = forms.DateField(label=_("Latest"), widget=day_input())
    weekdays = forms.TypedMultipleChoiceField(
        label=_("Weekdays"),
        choices=[(value, _(label)) for value, label in Weekday.choices],
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: any day."),
    )
    times_of_day = forms.MultipleChoiceField(
        label=_("Times of day"),
        choices=[(value, _(label)) for value, label in TimeOfDay.choices],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: any time."),
    )
    # Model errors by field, for the form's own names of them.
    field_names: dict[str, str] = {}

    def clean(self):
        cleaned = super().clean()
        earliest, latest = cleaned.get("earliest"), cleaned.get("latest")
        today = timezone.localdate()
        if latest and latest < today:
            self.add_error("latest", _("The latest date has passed."))
        if earliest and latest and latest < earliest:
            self.add_error("latest", _("The latest date comes on or after the earliest."))
        return cleaned

    def entry(self, **what) -> WaitlistEntry:
        """The entry the valid form describes, checked by the model; errors land on the form."""
        data = self.cleaned_data
        entry = WaitlistEntry(
            earliest=data["earliest"],
            latest=data["latest"],
            weekdays=sorted(data.get("weekdays") or []),
            times_of_day=[t for t in TimeOfDay.values if t in (data.get("times_of_day") or [])],
            **what,
        )
        try:
            entry.full_clean(exclude=["created_by", "booked_visit"])
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                name = self.field_names.get(field, field)
                self.add_error(name if name in self.fields else None, messages)
            raise
        return entry


class DeskEntryForm(PreferencesForm):
    patient = forms.ModelChoiceField(queryset=Patient.objects.none())
    visit_type = forms.ModelChoiceField(queryset=VisitType.objects.none(), required=False)
    step = forms.ModelChoiceField(
        queryset=ProtocolStep.objects.none(), required=False, label="or care plan step"
    )
    gives_up_visit = forms.IntegerField(
        required=False,
        min_value=1,
        label="Visit to give up (number)",
        help_text="Optional: the number of a booked visit of the patient's (from its page) "
        "that taking an offer moves. Required for a care plan step.",
    )
    priority = forms.TypedChoiceField(choices=Priority.choices, coerce=int, initial=0)
    field_names = {"gives_up": "gives_up_visit"}

    def __init__(self, *args, clinic, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["patient"].queryset = Patient.objects.seen_at(clinic)
        self.fields["visit_type"].queryset = clinic.visit_types.all()
        self.fields["step"].queryset = ProtocolStep.objects.filter(
            protocol__clinic=clinic, protocol__is_active=True
        ).select_related("protocol", "visit_type")
        self.fields["step"].label_from_instance = lambda step: f"{step.protocol}: {step}"

    def clean_gives_up_visit(self):
        pk = self.cleaned_data.get("gives_up_visit")
        if pk is None:
            return None
        visit = Visit.objects.select_related("visit_type").filter(pk=pk).first()
        if visit is None:
            raise ValidationError("No visit has this number.")
        return visit

    def entry(self, **what) -> WaitlistEntry:
        data = self.cleaned_data
        return super().entry(
            patient=data["patient"],
            visit_type=data.get("visit_type"),
            step=data.get("step"),
            gives_up=data.get("gives_up_visit"),
            priority=data["priority"],
            **what,
        )


class PatientEntryForm(PreferencesForm):
    """From the patient's page: an earlier time for one of their own upcoming visits."""

    visit = forms.ModelChoiceField(
        queryset=Visit.objects.none(), label=_("Which visit would you like earlier?")
    )
    field_names = {"gives_up": "visit", "visit_type": "visit", "step": "visit"}

    def __init__(self, *args, patient: Patient, tz, **kwargs):
        super().__init__(*args, **kwargs)
        self.tz = tz
        visits = (
            Visit.objects.for_patient(patient)
            .upcoming()
            .scheduled()
            # Not NOT IN a column with NULLs (an entry the desk made for a visit type),
            # which SQL answers "unknown" for every visit.
            .exclude(
                pk__in=WaitlistEntry.objects.waiting()
                .filter(gives_up__isnull=False)
                .values("gives_up")
            )
            .select_related("visit_type")
            .order_by("start")
        )
        self.fields["visit"].queryset = visits
        # What a patient reads: the date and time only, written their language's way.
        self.fields["visit"].label_from_instance = lambda visit: date_format(
            timezone.localtime(visit.start, tz), pgettext_lazy("date format", "D j M Y, H:i")
        )
        today = timezone.localdate(timezone=tz)
        self.fields["earliest"].initial = today + timedelta(days=1)

    def clean(self):
        cleaned = super().clean()
        visit, latest = cleaned.get("visit"), cleaned.get("latest")
        if visit and latest and latest >= timezone.localtime(visit.start, self.tz).date():
            self.add_error("latest", _("Choose a latest date before the visit you have."))
        return cleaned

    def entry(self, **what) -> WaitlistEntry:
        visit = self.cleaned_data["visit"]
        planned = getattr(visit, "planned", None)
        return super().entry(
            patient=visit.patient,
            visit_type=None if planned else visit.visit_type,
            step=planned.step if planned else None,
            gives_up=visit,
            added_by_patient=True,
            **what,
        )


class FilterForm(forms.Form):
    visit_type = forms.ModelChoiceField(queryset=VisitType.objects.none(), required=False)
    step = forms.ModelChoiceField(queryset=ProtocolStep.objects.none(), required=False)
    status = forms.ChoiceField(
        choices=[("", "Any"), *EntryStatus.choices], required=False, initial=EntryStatus.WAITING
    )

    def __init__(self, *args, clinic, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["visit_type"].queryset = clinic.visit_types.all()
        self.fields["step"].queryset = ProtocolStep.objects.filter(protocol__clinic=clinic)

    def filter(self, entries):
        if not self.is_valid():
            return entries
        data = self.cleaned_data
        if data.get("visit_type"):
            entries = entries.filter(visit_type=data["visit_type"])
        if data.get("step"):
            entries = entries.filter(step=data["step"])
        if data.get("status"):
            entries = entries.filter(status=data["status"])
        return entries
