"""The desk adds a patient and edits their details, consent to texts included, without the admin.

The model decides what a patient's details may be (``Patient.clean``, the
mobile's ``MobileNumberField``, the time zone's validator); the form only reads
what the desk types: dates for consent, a number as people write it. Consent
to texts is recorded as ``Patient`` keeps it (when, and how it was given), and
an opt-out (STOP) stands until the desk says, in so many words, that the
patient asked for texts again. Adding and changing a patient are audited.
"""

from datetime import date, datetime, time

from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from desk.frontdesk import desk_only
from scheduler import audit
from scheduler.admin.core import PatientAdminForm
from scheduler.models import AuditAction, Clinic, ConsentMethod, Patient
from scheduler.roles import working_clinic
from scheduler.timezones import day_input, validate_calendar_day

# Offered as the time zone is typed; any zone name is accepted.
COMMON_TIME_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
)
CONSENT_FIELDS = ("sms_consent_at", "sms_express_consent_at")
CONSENT_METHODS = ("sms_consent_method", "sms_express_consent_method")


def _day_field(label: str, **options) -> forms.DateField:
    return forms.DateField(
        label=label,
        widget=day_input(),
        validators=[validate_calendar_day],
        error_messages={"invalid": "Enter a real date, as year-month-day (1985-04-12)."},
        **options,
    )


class PatientForm(PatientAdminForm):
    """A patient's details as the desk types them; the admin's form, without what only it may set.

    Consent is given on a day (``*_consent_at`` read as dates in the clinic's
    zone: today is now, an earlier day its start, a day left as it was keeps
    its time). The opt-out (``sms_opted_out_at``) is not on the form.
    """

    date_of_birth = _day_field("Date of birth")
    sms_consent_at = _day_field("Agreed to texts on", required=False)
    sms_express_consent_at = _day_field("Express consent to care texts on", required=False)
    texts_again = forms.BooleanField(
        label="The patient asked to get texts again since opting out",
        required=False,
    )

    class Meta(PatientAdminForm.Meta):
        # The admin's, less the clinic (the desk's own) and the opt-out (only a STOP sets it).
        fields = tuple(
            name
            for name in PatientAdminForm.Meta.fields
            if name not in ("clinic", "sms_opted_out_at")
        )
        widgets = {
            "mobile": forms.TextInput(attrs={"type": "tel", "autocomplete": "off"}),
            "time_zone": forms.TextInput(attrs={"list": "time-zones"}),
        }
        help_texts = {
            "mobile": "As the patient gives it, e.g. (212) 555-0147; +country code if not a US number.",
        }

    def __init__(self, *args, clinic: Clinic, **kwargs):
        super().__init__(*args, **kwargs)
        self.clinic = clinic
        patient = self.instance
        # What changed is judged against the patient as stored, not a copy the page sends
        # back (Django's way for a field with a default that is a function).
        self.fields["time_zone"].show_hidden_initial = False
        for name in CONSENT_FIELDS:
            given = getattr(patient, name)
            if given:
                self.initial[name] = timezone.localdate(given, timezone=clinic.tz)
        # "Replied START by text" is recorded by the text itself, never typed.
        for name in CONSENT_METHODS:
            if getattr(patient, name) != ConsentMethod.SMS_KEYWORD:
                field = self.fields[name]
                field.choices = [c for c in field.choices if c[0] != ConsentMethod.SMS_KEYWORD]
        self.stored = {name: getattr(patient, name) for name in self._meta.fields}
        # When the patient opted out of texts, if no consent since lifted it.
        self.opted_out = None
        stopped, agreed = patient.sms_opted_out_at, patient.sms_consent_at
        if stopped and not (agreed and stopped < agreed):
            self.opted_out = stopped
        else:
            del self.fields["texts_again"]

    def clean_sms_consent_at(self) -> datetime | None:
        return self._consent_time("sms_consent_at")

    def clean_sms_express_consent_at(self) -> datetime | None:
        return self._consent_time("sms_express_consent_at")

    def _consent_time(self, name: str) -> datetime | None:
        day: date | None = self.cleaned_data[name]
        if day is None:
            return None
        tz = self.clinic.tz
        now = timezone.now()
        recorded = getattr(self.instance, name)
        if recorded and timezone.localdate(recorded, timezone=tz) == day:
            return recorded
        today = timezone.localdate(now, timezone=tz)
        if day > today:
            raise forms.ValidationError("Consent cannot be given on a day still to come.")
        return now if day == today else datetime.combine(day, time(0), tzinfo=tz)

    def clean(self):
        data = super().clean()
        for day, method in zip(CONSENT_FIELDS, CONSENT_METHODS, strict=True):
            if data.get(method) and day not in self.errors and not data.get(day):
                self.add_error(day, "Give the day the patient agreed, or leave both empty.")
        opted_out = self.opted_out
        if opted_out is None:
            return data
        # A consent recorded now, dated after the opt-out, would lift it.
        renewing = [
            name
            for name in CONSENT_FIELDS
            if data.get(name)
            and data[name] != getattr(self.instance, name)
            and data[name] > opted_out
        ]
        stopped = timezone.localtime(opted_out, self.clinic.tz)
        if renewing and not data.get("texts_again"):
            for name in renewing:
                self.add_error(
                    name,
                    f"The patient opted out of texts (STOP) on {stopped:%a %Y-%m-%d %H:%M}. "
                    "Record new consent only if they asked to get texts again, and tick the box "
                    "that says so.",
                )
        elif data.get("texts_again") and "sms_consent_at" not in renewing:
            self.add_error(
                "texts_again",
                f"Give the day the patient agreed to texts again (after {stopped:%a %Y-%m-%d}).",
            )
        return data

    def changed_details(self) -> list[str]:
        """The patient's fields the desk changed, once cleaned (a mobile typed "(212) 555-0147"
        is the +12125550147 stored). Names only: the trail keeps no values."""
        return [
            name for name, stored in self.stored.items() if getattr(self.instance, name) != stored
        ]


def _page(request: HttpRequest, clinic: Clinic, form: PatientForm, name: str):
    """The form page; ``name``: the patient's as stored ("" for a new patient)."""
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "form": form,
        "name": name,
        "patient_pk": form.instance.pk,
        "time_zones": sorted({*COMMON_TIME_ZONES, clinic.time_zone}),
    }
    return render(request, "desk/patient_form.html", context)


@require_http_methods(["GET", "POST"])
@desk_only
def new_patient(request: HttpRequest) -> HttpResponse:
    clinic = working_clinic(request)
    blank = Patient(clinic=clinic, time_zone=clinic.time_zone)
    if request.method != "POST":
        return _page(request, clinic, PatientForm(instance=blank, clinic=clinic), "")
    form = PatientForm(request.POST, instance=blank, clinic=clinic)
    if not form.is_valid():
        return _page(request, clinic, form, "")
    with transaction.atomic():
        person = form.save()
        audit.record(request, AuditAction.ADDED_PATIENT, person, "desk")
    messages.success(request, f"{person} added.")
    return redirect("desk_patient", person.pk)


@require_http_methods(["GET", "POST"])
@desk_only
def edit_patient(request: HttpRequest, pk: int) -> HttpResponse:
    clinic = working_clinic(request)
    if request.method != "POST":
        person = get_object_or_404(Patient.objects.seen_at(clinic), pk=pk)
        audit.record(request, AuditAction.VIEWED_PATIENT, person, "edit form")
        return _page(request, clinic, PatientForm(instance=person, clinic=clinic), str(person))
    with transaction.atomic():
        # Locked, so a STOP that arrives meanwhile is read before the form is judged.
        person = get_object_or_404(Patient.objects.seen_at(clinic).select_for_update(), pk=pk)
        shown_as = str(person)  # the form writes what was typed into ``person``
        form = PatientForm(request.POST, instance=person, clinic=clinic)
        saved = form.is_valid()
        changed = form.changed_details() if saved else []
        if changed:
            # Only what the form changed: never the opt-out, nor anything else.
            form.save(commit=False).save(update_fields=changed)
            audit.record(request, AuditAction.CHANGED_PATIENT, person, ", ".join(changed))
    if not saved:
        audit.record(request, AuditAction.VIEWED_PATIENT, person, "edit form")
        return _page(request, clinic, form, shown_as)
    messages.success(request, "Saved." if changed else "Nothing was changed.")
    return redirect("desk_patient", person.pk)
