"""What the admin pages share: times in the clinic's zone, phone search, clinicians' view.

Times are entered and shown in the clinic's own zone (docs/architecture.md,
invariant 4), whatever the server's zone.
"""

from datetime import datetime

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin import widgets
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from scheduler.models import Clinic, Clinician
from scheduler.roles import Role, roles_of
from scheduler.timezones import LocalTimeError, local_datetime, zone


def clinic_time(moment: datetime | None, clinic: Clinic, fmt: str = "%a %Y-%m-%d %H:%M %Z") -> str:
    if moment is None:
        return ""
    return timezone.localtime(moment, clinic.tz).strftime(fmt)


def phone_digits(search_term: str) -> str:
    """The digits of a search that looks like (part of) a phone number, else "".

    Mobiles are stored as +12125550147; people search "(212) 555-0147" or
    "555-0147", which the word-by-word admin search cannot match. Fewer than four
    digits would match nearly every number.
    """
    digits = "".join(ch for ch in search_term if ch.isdigit())
    looks_like_phone = all(ch.isdigit() or ch in " +-.()" for ch in search_term.strip())
    return digits if looks_like_phone and len(digits) >= 4 else ""


def requested_pk(request, name: str) -> int | None:
    value = request.POST.get(name) or request.GET.get(name) or ""
    return int(value) if value.isdigit() else None


def clinician_only(request):
    """The signed-in clinician when that is all the user is (not desk, not admin), else None.

    Clinicians see their own patients; other patients' details they need only
    as initials and times, which their calendar shows (docs/rules.md, roles).
    """
    roles = roles_of(request.user)
    if roles & {Role.FRONT_DESK, Role.ADMIN} or Role.CLINICIAN not in roles:
        return None
    return request.user.clinician


class ClinicDateTimeField(forms.SplitDateTimeField):
    """A date and a wall-clock time in the active (clinic) zone.

    Django's own field refuses a time skipped or repeated by a DST change with a
    generic message; this one says what happened and what to do.
    """

    def compress(self, data_list):
        if not data_list:
            return None
        day, at = data_list
        if day in self.empty_values:
            raise ValidationError(self.error_messages["invalid_date"], code="invalid_date")
        if at in self.empty_values:
            raise ValidationError(self.error_messages["invalid_time"], code="invalid_time")
        try:
            return local_datetime(day, at, timezone.get_current_timezone())
        except LocalTimeError as error:
            raise ValidationError(str(error), code="local_time") from None


CLINIC_DATETIME = {
    models.DateTimeField: {"form_class": ClinicDateTimeField, "widget": widgets.AdminSplitDateTime}
}


class ClinicTimeMixin:
    """Change forms read and show times in the zone of the clinic the object belongs to.

    The server's zone is only a default (settings.CLINIC_TIME_ZONE); a clinic in
    another zone must not have its 10:00 stored as someone else's 10:00.
    """

    formfield_overrides = CLINIC_DATETIME

    def clinic_for(self, request, obj) -> Clinic | None:
        raise NotImplementedError

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        clinic = self.clinic_for(request, obj)
        tz = clinic.tz if clinic else zone(settings.CLINIC_TIME_ZONE)
        with timezone.override(tz):
            return super().changeform_view(request, object_id, form_url, extra_context)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if isinstance(field, ClinicDateTimeField):
            zone_note = f"Clinic time ({timezone.get_current_timezone_name()})."
            field.help_text = f"{field.help_text} {zone_note}".strip()
        return field


def clinic_by_pk(pk: int | None) -> Clinic | None:
    return Clinic.objects.filter(pk=pk).first() if pk else None


class ClinicianIntervalAdmin(ClinicTimeMixin, admin.ModelAdmin):
    """A clinician's stretch of time (time off, imported busy time), shown in clinic time."""

    def clinic_for(self, request, obj):
        if obj:
            return obj.clinician.clinic
        pk = requested_pk(request, "clinician")
        clinician = Clinician.objects.select_related("clinic").filter(pk=pk).first() if pk else None
        return clinician.clinic if clinician else None

    @admin.display(description="Starts (clinic time)", ordering="start")
    def starts_local(self, obj):
        return clinic_time(obj.start, obj.clinician.clinic)

    @admin.display(description="Ends (clinic time)", ordering="end")
    def ends_local(self, obj):
        return clinic_time(obj.end, obj.clinician.clinic)
