"""The desk's Spravato REMS pages: a dosing visit's session record, its printable Patient
Monitoring Form, and recording that a form went in.

The rules are the plans app's (``plans.models`` ``SessionRecord``,
``plans.rems``); these views only parse, show and save. Times are typed as
wall-clock times of the clinic on the visit's own day.
"""

from datetime import date

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from desk.frontdesk import desk_only
from plans.models import (
    BLOOD_PRESSURES,
    CONCOMITANT_MEDICATIONS,
    MonitoringFormTask,
    RemsEnrollment,
    RemsSetting,
    SessionRecord,
    is_spravato,
)
from plans.rems import record_submission
from scheduler import audit
from scheduler.models import AuditAction, Clinic, Visit
from scheduler.roles import working_clinic
from scheduler.timezones import LocalTimeError, day_input, local_datetime, validate_calendar_day

TIME_FIELDS = [
    "monitoring_start",
    "monitoring_end",
    "ready_to_leave_at",
    "sedation_resolved_at",
    "dissociation_resolved_at",
]
YES_NO = [("", "Not recorded"), ("True", "Yes"), ("False", "No")]


class SessionRecordForm(forms.ModelForm):
    """A session record; times are clinic wall-clock times on the visit's day."""

    class Meta:
        model = SessionRecord
        fields = [
            *(f"{r}_{p}" for r in BLOOD_PRESSURES for p in ("systolic", "diastolic")),
            "heart_rate",
            "spo2",
            "vitals_ok_before_dose",
            "vitals_ok_before_discharge",
            *TIME_FIELDS[:3],
            "sedation",
            "sedation_resolved_at",
            "dissociation",
            "dissociation_resolved_at",
            "ride_home",
            "dose",
            "dose_other_mg",
            "lot_number",
            "serious_adverse_events",
            *CONCOMITANT_MEDICATIONS,
        ]
        widgets = {"serious_adverse_events": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, visit: Visit, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.visit = visit
        self.tz = visit.clinic.tz
        self.day = visit.start.astimezone(self.tz).date()
        for name in TIME_FIELDS:
            self.fields[name] = forms.TimeField(
                label=self.fields[name].label,
                required=False,
                widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            )
            value = getattr(self.instance, name)
            self.initial[name] = value.astimezone(self.tz).time() if value else None
        for field in self.fields.values():
            if isinstance(field, forms.NullBooleanField):
                field.widget = forms.Select(choices=YES_NO)

    def clean(self):
        cleaned = super().clean()
        for name in TIME_FIELDS:
            at = cleaned.get(name)
            if at is None:
                continue
            try:
                cleaned[name] = local_datetime(self.day, at, self.tz)
            except LocalTimeError as error:
                self.add_error(name, str(error))
        return cleaned

    def readings(self):
        """The blood-pressure fields in pairs, for the template: (what, systolic, diastolic)."""
        return [
            (what, self[f"{reading}_systolic"], self[f"{reading}_diastolic"])
            for reading, what in BLOOD_PRESSURES.items()
        ]


class SubmissionForm(forms.Form):
    submitted_on = forms.DateField(label="Form submitted on", widget=day_input())

    def clean_submitted_on(self):
        day = self.cleaned_data["submitted_on"]
        validate_calendar_day(day)
        return day


def _dosing_visit(pk: int, clinic: Clinic) -> Visit:
    visit = get_object_or_404(
        Visit.objects.select_related("patient", "visit_type__clinic", "clinician", "room"),
        pk=pk,
        visit_type__clinic=clinic,
    )
    if not visit.visit_type.is_dosing:
        raise Http404("Only dosing visits have a session record.")
    return visit


@require_http_methods(["GET", "POST"])
@desk_only
def session_record(request: HttpRequest, pk: int) -> HttpResponse:
    clinic = working_clinic(request)
    visit = _dosing_visit(pk, clinic)
    record = SessionRecord.objects.filter(visit=visit).first() or SessionRecord(visit=visit)
    if request.method == "POST":
        form = SessionRecordForm(request.POST, instance=record, visit=visit)
        if form.is_valid():
            record = form.save(commit=False)
            record.recorded_by = request.user
            record.save()
            audit.record(
                request,
                AuditAction.CHANGED_VISIT,
                visit.patient,
                f"visit {visit.pk}: session record saved",
            )
            messages.success(request, "Session record saved.")
            return redirect("desk_session_record", pk=visit.pk)
    else:
        form = SessionRecordForm(instance=record, visit=visit)
        audit.record(
            request, AuditAction.VIEWED_VISIT, visit.patient, f"visit {visit.pk}: session record"
        )
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "visit": visit,
        "form": form,
        "saved": record.pk is not None,
        "missing": record.missing(),
        "spravato": is_spravato(visit.visit_type),
        "day": form.day,
    }
    return render(request, "desk/session_record.html", context)


@require_safe
@desk_only
def monitoring_form(request: HttpRequest, pk: int) -> HttpResponse:
    """The REMS Patient Monitoring Form of one Spravato session, filled in from its record."""
    clinic = working_clinic(request)
    visit = _dosing_visit(pk, clinic)
    if not is_spravato(visit.visit_type):
        raise Http404("The REMS monitoring form is for Spravato sessions.")
    record = SessionRecord.objects.filter(visit=visit).first()
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "visit": visit,
        "record": record,
        "missing": (record or SessionRecord(visit=visit)).missing(),
        "setting": RemsSetting.objects.filter(clinic=clinic).first(),
        "enrollment": RemsEnrollment.objects.filter(patient=visit.patient).first(),
        "task": MonitoringFormTask.objects.filter(visit=visit).first(),
        "pressures": [
            (what, record.blood_pressure(reading) if record else "")
            for reading, what in BLOOD_PRESSURES.items()
        ],
    }
    audit.record(
        request, AuditAction.VIEWED_VISIT, visit.patient, f"visit {visit.pk}: REMS monitoring form"
    )
    return render(request, "desk/monitoring_form.html", context)


@require_POST
@desk_only
def form_submitted(request: HttpRequest, pk: int) -> HttpResponse:
    """Staff record that a monitoring form went in: the task closes, in the audit trail."""
    clinic = working_clinic(request)
    task = get_object_or_404(
        MonitoringFormTask.objects.for_clinic(clinic).select_related("visit__visit_type__clinic"),
        pk=pk,
    )
    form = SubmissionForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, f"Submission date: {error}")
        return redirect("desk_today")
    submitted_on: date = form.cleaned_data["submitted_on"]
    try:
        closed = record_submission(task, submitted_on, request.user)
    except ValidationError as error:
        for problem in error.messages:
            messages.error(request, problem)
        return redirect("desk_today")
    if closed:
        audit.record(
            request,
            AuditAction.CHANGED_VISIT,
            task.visit.patient,
            f"visit {task.visit_id}: REMS monitoring form submitted {submitted_on:%Y-%m-%d}",
        )
        messages.success(request, f"Monitoring form of {task.visit.patient} recorded as submitted.")
    else:
        messages.error(request, "That monitoring form was already recorded as submitted.")
    return redirect("desk_today")
