"""Admin pages for clinic staff.

Two rules shape this module. Times are entered and shown in the clinic's own
zone (DESIGN.md invariant 4), whatever the server's zone. And a visit is never
written directly: the Visit form checks the same rules as ``scheduler.booking``
and saving goes through ``book`` / ``move`` / the status actions, so the admin
cannot double-book a room or skip a safety gate that the rest of the system
enforces.
"""

from datetime import UTC, datetime

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import widgets
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.html import format_html

from scheduler import audit, booking, tokens
from scheduler.external_calendars import queue_refresh
from scheduler.links import feed_url, patient_page_url
from scheduler.models import (
    OPEN_STATUSES,
    AccessToken,
    AuditAction,
    AuditEvent,
    BusyBlock,
    Capability,
    Clinic,
    Clinician,
    Closure,
    ExternalCalendar,
    InvitePreference,
    OpeningHours,
    Patient,
    Room,
    TimeOff,
    TokenPurpose,
    Visit,
    VisitKind,
    VisitStatus,
    VisitType,
    WorkingHours,
)
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


def _requested_pk(request, name: str) -> int | None:
    value = request.POST.get(name) or request.GET.get(name) or ""
    return int(value) if value.isdigit() else None


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


def _clinic_by_pk(pk: int | None) -> Clinic | None:
    return Clinic.objects.filter(pk=pk).first() if pk else None


# -- clinic, hours, closures, rooms ---------------------------------------------


class OpeningHoursInline(admin.TabularInline):
    model = OpeningHours
    extra = 0


class ClosureInline(admin.TabularInline):
    model = Closure
    extra = 0
    formfield_overrides = CLINIC_DATETIME


@admin.register(Clinic)
class ClinicAdmin(ClinicTimeMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "phone", "time_zone")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = (OpeningHoursInline, ClosureInline)

    def clinic_for(self, request, obj):
        return obj


@admin.register(OpeningHours)
class OpeningHoursAdmin(admin.ModelAdmin):
    list_display = ("clinic", "weekday", "opens", "closes")
    list_filter = ("clinic", "weekday")
    list_select_related = ("clinic",)


@admin.register(Closure)
class ClosureAdmin(ClinicTimeMixin, admin.ModelAdmin):
    list_display = ("clinic", "starts_local", "ends_local", "reason")
    list_filter = ("clinic",)
    list_select_related = ("clinic",)
    search_fields = ("reason",)
    date_hierarchy = "start"

    def clinic_for(self, request, obj):
        return obj.clinic if obj else _clinic_by_pk(_requested_pk(request, "clinic"))

    @admin.display(description="Starts (clinic time)", ordering="start")
    def starts_local(self, obj):
        return clinic_time(obj.start, obj.clinic)

    @admin.display(description="Ends (clinic time)", ordering="end")
    def ends_local(self, obj):
        return clinic_time(obj.end, obj.clinic)


@admin.register(Capability)
class CapabilityAdmin(admin.ModelAdmin):
    list_display = ("name", "slug")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "clinic", "capability_names")
    list_filter = ("clinic", "capabilities")
    list_select_related = ("clinic",)
    search_fields = ("name", "clinic__name")
    filter_horizontal = ("capabilities",)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("capabilities")

    @admin.display(description="Capabilities")
    def capability_names(self, obj):
        return ", ".join(capability.name for capability in obj.capabilities.all())


# -- clinicians -------------------------------------------------------------------


class WorkingHoursInline(admin.TabularInline):
    model = WorkingHours
    extra = 0


class TimeOffInline(admin.TabularInline):
    model = TimeOff
    extra = 0
    formfield_overrides = CLINIC_DATETIME


@admin.register(Clinician)
class ClinicianAdmin(ClinicTimeMixin, admin.ModelAdmin):
    list_display = (
        "display_name",
        "user",
        "clinic",
        "is_prescriber",
        "is_therapist",
        "is_nurse",
        "is_active",
    )
    list_filter = ("clinic", "is_prescriber", "is_therapist", "is_nurse", "is_active")
    list_select_related = ("user", "clinic")
    search_fields = (
        "display_name",
        "user__username",
        "user__first_name",
        "user__last_name",
        "user__email",
    )
    autocomplete_fields = ("user",)
    inlines = (WorkingHoursInline, TimeOffInline)
    formfield_overrides = {**CLINIC_DATETIME, models.URLField: {"assume_scheme": "https"}}

    def clinic_for(self, request, obj):
        return obj.clinic if obj else _clinic_by_pk(_requested_pk(request, "clinic"))


@admin.register(WorkingHours)
class WorkingHoursAdmin(admin.ModelAdmin):
    list_display = ("clinician", "weekday", "opens", "closes")
    list_filter = ("clinician__clinic", "weekday", "clinician")
    list_select_related = ("clinician",)
    search_fields = ("clinician__display_name",)
    autocomplete_fields = ("clinician",)


class ClinicianIntervalAdmin(ClinicTimeMixin, admin.ModelAdmin):
    """A clinician's stretch of time (time off, imported busy time), shown in clinic time."""

    def clinic_for(self, request, obj):
        if obj:
            return obj.clinician.clinic
        pk = _requested_pk(request, "clinician")
        clinician = Clinician.objects.select_related("clinic").filter(pk=pk).first() if pk else None
        return clinician.clinic if clinician else None

    @admin.display(description="Starts (clinic time)", ordering="start")
    def starts_local(self, obj):
        return clinic_time(obj.start, obj.clinician.clinic)

    @admin.display(description="Ends (clinic time)", ordering="end")
    def ends_local(self, obj):
        return clinic_time(obj.end, obj.clinician.clinic)


@admin.register(TimeOff)
class TimeOffAdmin(ClinicianIntervalAdmin):
    list_display = ("clinician", "starts_local", "ends_local", "reason")
    list_filter = ("clinician__clinic", "clinician")
    list_select_related = ("clinician__clinic",)
    search_fields = ("clinician__display_name", "reason")
    autocomplete_fields = ("clinician",)
    date_hierarchy = "start"


# -- patients ---------------------------------------------------------------------


class PatientAdminForm(forms.ModelForm):
    class Meta:
        model = Patient
        fields = (
            "clinic",
            "first_name",
            "last_name",
            "date_of_birth",
            "mobile",
            "email",
            "time_zone",
            "contact_by_sms",
            "contact_by_email",
            "sms_consent_at",
            "sms_consent_method",
            "sms_opted_out_at",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Staff read and type "(212) 555-0147"; the model cleans it back to E.164.
        if self.instance.mobile and "mobile" in self.fields:
            self.initial["mobile"] = self.instance.mobile_display


class PatientVisitInline(admin.TabularInline):
    """The patient's visits, read-only: changes go through the Visit page and its rules."""

    model = Visit
    extra = 0
    fields = ("starts_local", "visit_type", "clinician", "room", "status")
    readonly_fields = fields
    show_change_link = True
    ordering = ("-start",)

    def get_queryset(self, request):
        visits = (
            super()
            .get_queryset(request)
            .select_related("patient__clinic", "visit_type", "clinician", "room")
        )
        clinician = clinician_only(request)
        return visits if clinician is None else visits.for_clinician(clinician)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Starts (clinic time)")
    def starts_local(self, obj):
        return clinic_time(obj.start, obj.patient.clinic)


def clinician_only(request):
    """The signed-in clinician when that is all the user is (not desk, not admin), else None.

    Clinicians see their own patients; other patients' details they need only
    as initials and times, which their calendar shows (DOMAIN.md, roles).
    """
    roles = roles_of(request.user)
    if roles & {Role.FRONT_DESK, Role.ADMIN} or Role.CLINICIAN not in roles:
        return None
    return request.user.clinician


@admin.register(Patient)
class PatientAdmin(ClinicTimeMixin, admin.ModelAdmin):
    form = PatientAdminForm
    list_display = (
        "name",
        "mobile_column",
        "email",
        "date_of_birth",
        "texts_allowed",
        "clinic",
    )
    list_filter = (
        "clinic",
        "contact_by_sms",
        "contact_by_email",
        "sms_consent_method",
        ("sms_opted_out_at", admin.EmptyFieldListFilter),
    )
    list_select_related = ("clinic",)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            audit.record(request, AuditAction.VIEWED_PATIENT, int(unquote(object_id)), "admin")
        return response

    def get_queryset(self, request):
        patients = super().get_queryset(request)
        clinician = clinician_only(request)
        if clinician is None:
            return patients
        return patients.filter(
            pk__in=Visit.objects.for_clinician(clinician)
            .exclude(status=VisitStatus.PROPOSED)
            .values("patient")
        )

    search_fields = ("first_name", "last_name", "email", "mobile")
    readonly_fields = ("created_at",)
    fieldsets = (
        (None, {"fields": ("clinic", ("first_name", "last_name"), "date_of_birth")}),
        ("Contact", {"fields": ("mobile", "email", "time_zone")}),
        (
            "Reminders and consent",
            {
                "fields": (
                    ("contact_by_sms", "contact_by_email"),
                    ("sms_consent_at", "sms_consent_method"),
                    "sms_opted_out_at",
                    "created_at",
                )
            },
        ),
    )

    def clinic_for(self, request, obj):
        return obj.clinic if obj else _clinic_by_pk(_requested_pk(request, "clinic"))

    def get_inlines(self, request, obj):
        return (PatientVisitInline,) if obj else ()

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = phone_digits(search_term)
        if digits:
            results |= queryset.filter(mobile__contains=digits)
        return results, may_have_duplicates

    @admin.display(description="Patient", ordering="last_name")
    def name(self, obj):
        return f"{obj.last_name}, {obj.first_name}"

    @admin.display(description="Mobile", ordering="mobile")
    def mobile_column(self, obj):
        return obj.mobile_display

    @admin.display(description="Texts allowed", boolean=True)
    def texts_allowed(self, obj):
        return obj.can_receive_sms


# -- visit types ------------------------------------------------------------------


@admin.register(VisitType)
class VisitTypeAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "dosing_route",
        "duration_minutes",
        "modality",
        "clinician_role",
        "room_capability",
        "price",
        "clinic",
    )
    list_filter = ("clinic", "kind", "modality", "clinician_role", "dosing_route")
    list_select_related = ("clinic", "room_capability")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    fieldsets = (
        (None, {"fields": ("clinic", "name", "slug", "kind", "dosing_route", "price")}),
        (
            "Booking",
            {
                "fields": (
                    ("duration_minutes", "monitoring_minutes"),
                    "modality",
                    "room_capability",
                    "clinician_role",
                )
            },
        ),
        ("Instructions", {"fields": ("preparation_instructions", "aftercare_instructions")}),
    )


# -- visits -----------------------------------------------------------------------


# The fields whose change is a move (booking.move: new SEQUENCE, checks again).
TIME_AND_PLACE = frozenset({"start", "clinician", "room"})


class _Refused(Exception):
    """Booking refused a visit the form had accepted (state changed in between)."""

    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems


class VisitAdminForm(forms.ModelForm):
    """Checks a new or changed visit exactly as ``scheduler.booking`` will."""

    # Problems booking raised on a previous attempt to save this same submission.
    refusals: tuple[str, ...] = ()

    class Meta:
        model = Visit
        fields = ("patient", "visit_type", "clinician", "room", "start", "ride_home_arranged")

    def clean(self):
        cleaned = super().clean()
        visit = self._visit_as_it_would_be(cleaned)
        problems = self._problems(visit) if visit is not None else []
        problems += [refusal for refusal in self.refusals if refusal not in problems]
        for problem in problems:
            self.add_error(None, str(problem))
        return cleaned

    def _value(self, cleaned, name):
        # Fields shown read-only (patient, visit type of an existing visit) are
        # not in the form; they keep the stored value.
        if name in self.fields:
            return cleaned.get(name)
        return getattr(self.instance, name)

    def _visit_as_it_would_be(self, cleaned) -> Visit | None:
        values = {
            name: self._value(cleaned, name)
            for name in ("patient", "visit_type", "clinician", "room", "start")
        }
        if any(values[name] is None for name in ("patient", "visit_type", "clinician", "start")):
            return None  # a field error already says what is missing
        # In UTC: Python adds to an aware local time on the wall clock, which is
        # an hour off across a DST change.
        values["start"] = values["start"].astimezone(UTC)
        existing = self.instance.pk is not None
        return Visit(
            pk=self.instance.pk,
            uid=self.instance.uid,
            end=values["start"] + values["visit_type"].duration,
            status=self.instance.status if existing else VisitStatus.BOOKED,
            sequence=self.instance.sequence,
            ride_home_arranged=self._value(cleaned, "ride_home_arranged") or False,
            **values,
        )

    def _problems(self, visit: Visit) -> list[str]:
        if self.instance.pk is not None and not TIME_AND_PLACE & set(self.changed_data):
            return []  # time and place unchanged: nothing for booking to re-check
        return booking.problems_for(visit) + booking.rule_problems(visit)


class RideHomeFilter(admin.SimpleListFilter):
    """Dosing visits still open without a ride home: the front desk's to-do list."""

    title = "ride home"
    parameter_name = "ride_home"

    def lookups(self, request, model_admin):
        return [("missing", "Missing (dosing)"), ("arranged", "Arranged")]

    def queryset(self, request, queryset):
        if self.value() == "missing":
            return queryset.filter(
                visit_type__kind=VisitKind.DOSING,
                ride_home_arranged=False,
                status__in=OPEN_STATUSES,
            )
        if self.value() == "arranged":
            return queryset.filter(ride_home_arranged=True)
        return queryset


VISIT_RECORD_FIELDS = (
    "status",
    "uid",
    "sequence",
    "end",
    "cancellation_reason",
    "created_at",
    "updated_at",
)


@admin.register(Visit)
class VisitAdmin(ClinicTimeMixin, admin.ModelAdmin):
    form = VisitAdminForm
    list_display = (
        "starts_local",
        "ends_local",
        "patient",
        "visit_type",
        "clinician",
        "room",
        "status",
        "ride_home",
    )
    list_filter = (
        "status",
        ("patient__clinic", admin.RelatedOnlyFieldListFilter),
        "visit_type__kind",
        "visit_type",
        "clinician",
        RideHomeFilter,
    )
    list_select_related = ("patient__clinic", "visit_type", "clinician", "room")
    search_fields = (
        "patient__first_name",
        "patient__last_name",
        "patient__email",
        "patient__mobile",
    )
    date_hierarchy = "start"
    autocomplete_fields = ("patient", "clinician")
    actions = (
        "cancel_visits",
        "arrange_ride_home",
        "confirm_visits",
        "check_in_visits",
        "complete_visits",
        "mark_no_shows",
    )

    def get_queryset(self, request):
        visits = (
            super()
            .get_queryset(request)
            .select_related("patient__clinic", "visit_type", "clinician", "room")
        )
        clinician = clinician_only(request)
        return visits if clinician is None else visits.for_clinician(clinician)

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = phone_digits(search_term)
        if digits:
            results |= queryset.filter(patient__mobile__contains=digits)
        return results, may_have_duplicates

    def clinic_for(self, request, obj):
        if obj:
            return obj.patient.clinic
        pk = _requested_pk(request, "patient")
        patient = Patient.objects.select_related("clinic").filter(pk=pk).first() if pk else None
        return patient.clinic if patient else None

    def get_fieldsets(self, request, obj=None):
        visit = (None, {"fields": ("patient", "visit_type", ("clinician", "room"), "start")})
        ride = ("Safety", {"fields": ("ride_home_arranged",)})
        if obj is None:
            return (visit, ride)
        return (visit, ride, ("Record", {"fields": VISIT_RECORD_FIELDS}))

    def get_readonly_fields(self, request, obj=None):
        # Status changes only through the actions below (booking's transitions);
        # a visit keeps its patient and type (book a new one instead).
        readonly = list(VISIT_RECORD_FIELDS)
        if obj is not None:
            readonly += ["patient", "visit_type"]
            if not obj.is_open:
                readonly += ["clinician", "room", "start"]
            if obj.status not in (*OPEN_STATUSES, VisitStatus.CHECKED_IN):
                readonly.append("ride_home_arranged")
        return readonly

    def has_delete_permission(self, request, obj=None):
        # A deleted visit would linger in patients' and clinicians' calendars;
        # cancelling sends the cancellation and keeps the history.
        return False

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.refusals = tuple(getattr(request, "_visit_refusals", ()))
        return form

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _Refused as refused:
            # Everything the first attempt wrote was rolled back with its
            # transaction; show the same submission again with booking's reasons.
            request._visit_refusals = refused.problems
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        try:
            if not change:
                booked = booking.book(
                    patient=obj.patient,
                    visit_type=obj.visit_type,
                    clinician=obj.clinician,
                    start=obj.start,
                    room=obj.room,
                    ride_home_arranged=obj.ride_home_arranged,
                )
                obj.pk = booked.pk
                obj.refresh_from_db()
                return
            # move() reloads the visit from the database, so read the form's
            # ride-home answer first.
            ride_home = obj.ride_home_arranged
            if TIME_AND_PLACE & set(form.changed_data):
                booking.move(obj, start=obj.start, clinician=obj.clinician, room=obj.room)
            if "ride_home_arranged" in form.changed_data:
                booking.arrange_ride_home(obj, ride_home)
        except booking.BookingError as error:
            raise _Refused(error.problems) from error

    # -- time in the clinic's zone ---------------------------------------------

    @admin.display(description="Starts (clinic time)", ordering="start")
    def starts_local(self, obj):
        return clinic_time(obj.start, obj.patient.clinic)

    @admin.display(description="Ends", ordering="end")
    def ends_local(self, obj):
        return clinic_time(obj.end, obj.patient.clinic, "%H:%M")

    @admin.display(description="Ride home")
    def ride_home(self, obj):
        if not obj.visit_type.needs_ride_home:
            return "-"
        if obj.ride_home_arranged:
            return "Arranged"
        return format_html('<span class="ride-home-missing">{}</span>', "Missing")

    # -- actions: every status change goes through scheduler.booking -----------

    def _apply(self, request, queryset, operation, done: str, log: str) -> None:
        succeeded = 0
        for visit in queryset.select_related("patient__clinic", "visit_type", "clinician", "room"):
            try:
                operation(visit)
            except booking.BookingError as error:
                self.message_user(request, f"{visit}: {error}", messages.ERROR)
            else:
                succeeded += 1
                self.log_change(request, visit, log)
        if succeeded:
            noun = "visit" if succeeded == 1 else "visits"
            self.message_user(request, f"{succeeded} {noun} {done}.", messages.SUCCESS)

    @admin.action(description="Cancel selected visits", permissions=["change"])
    def cancel_visits(self, request, queryset):
        self._apply(request, queryset, booking.cancel, "cancelled", "Cancelled.")

    @admin.action(description="Mark ride home arranged", permissions=["change"])
    def arrange_ride_home(self, request, queryset):
        self._apply(
            request,
            queryset,
            booking.arrange_ride_home,
            "marked with a ride home",
            "Ride home arranged.",
        )

    @admin.action(description="Record patient's confirmation", permissions=["change"])
    def confirm_visits(self, request, queryset):
        self._apply(request, queryset, booking.confirm, "confirmed", "Confirmed.")

    @admin.action(description="Check in", permissions=["change"])
    def check_in_visits(self, request, queryset):
        self._apply(request, queryset, booking.check_in, "checked in", "Checked in.")

    @admin.action(description="Mark completed", permissions=["change"])
    def complete_visits(self, request, queryset):
        self._apply(request, queryset, booking.complete, "completed", "Completed.")

    @admin.action(description="Mark no-show", permissions=["change"])
    def mark_no_shows(self, request, queryset):
        self._apply(request, queryset, booking.mark_no_show, "marked no-show", "Marked no-show.")


# -- calendars: feed addresses, invites, clinicians' own calendars -------------------


class AccessTokenForm(forms.ModelForm):
    class Meta:
        model = AccessToken
        fields = ("purpose", "clinician", "patient")

    def validate_unique(self):
        # "One live token per owner" holds because issuing revokes the old
        # token first (scheduler.tokens.issue); a new one is always allowed.
        pass


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    """Calendar addresses. Adding one issues a token and shows its URL once; only a hash is kept."""

    form = AccessTokenForm
    list_display = ("owner_name", "purpose", "created_at", "created_by", "revoked_at", "live")
    list_filter = ("purpose", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("clinician", "patient", "created_by")
    search_fields = (
        "clinician__display_name",
        "patient__first_name",
        "patient__last_name",
        "patient__email",
    )
    autocomplete_fields = ("clinician", "patient")
    actions = ("revoke_tokens", "reissue_tokens")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("purpose", "clinician", "patient", "created_at", "created_by", "revoked_at")

    def has_delete_permission(self, request, obj=None):
        # Revoked rows are the record of who could read a calendar until when.
        return False

    @admin.display(description="For")
    def owner_name(self, obj):
        return str(obj.owner)

    @admin.display(description="Live", boolean=True)
    def live(self, obj):
        return obj.is_active

    def _show_new_url(self, request, owner, raw: str, purpose: str) -> None:
        if purpose == TokenPurpose.PATIENT_LINK:
            what, url = "patient page link", patient_page_url(raw)
        else:
            what, url = "calendar address", feed_url(raw)
        self.message_user(
            request,
            f"New {what} for {owner} (shown only now; the old one no longer works): {url}",
            messages.WARNING,
        )

    def save_model(self, request, obj, form, change):
        if change:
            return  # nothing about a token can be edited; revoke and issue instead
        token, raw = tokens.issue(obj.owner, obj.purpose, created_by=request.user)
        obj.pk = token.pk
        obj.refresh_from_db()
        self._show_new_url(request, obj.owner, raw, obj.purpose)

    @admin.action(description="Revoke selected addresses", permissions=["change"])
    def revoke_tokens(self, request, queryset):
        count = queryset.active().update(revoked_at=timezone.now())
        self.message_user(request, f"{count} address(es) revoked.", messages.SUCCESS)

    @admin.action(description="Issue new addresses (revokes the selected)", permissions=["change"])
    def reissue_tokens(self, request, queryset):
        for token in queryset.select_related("clinician", "patient"):
            _, raw = tokens.issue(token.owner, token.purpose, created_by=request.user)
            self._show_new_url(request, token.owner, raw, token.purpose)


@admin.register(InvitePreference)
class InvitePreferenceAdmin(admin.ModelAdmin):
    list_display = ("clinician", "email_invites")
    list_filter = ("email_invites", "clinician__clinic")
    list_select_related = ("clinician",)
    search_fields = ("clinician__display_name",)
    autocomplete_fields = ("clinician",)


@admin.register(ExternalCalendar)
class ExternalCalendarAdmin(ClinicTimeMixin, admin.ModelAdmin):
    """Clinicians' own calendars: when each was last read, and why not if it failed."""

    list_display = ("clinician", "host", "read_local", "status", "busy_times")
    list_filter = ("clinician__clinic", ("last_error", admin.EmptyFieldListFilter))
    list_select_related = ("clinician__clinic",)
    search_fields = ("clinician__display_name",)
    autocomplete_fields = ("clinician",)
    fields = ("clinician", "url", "last_fetched_at", "last_success_at", "last_error")
    readonly_fields = ("last_fetched_at", "last_success_at", "last_error")
    actions = ("read_now",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(busy_count=Count("busy_blocks"))

    def clinic_for(self, request, obj):
        if obj:
            return obj.clinician.clinic
        pk = _requested_pk(request, "clinician")
        clinician = Clinician.objects.select_related("clinic").filter(pk=pk).first() if pk else None
        return clinician.clinic if clinician else None

    @admin.display(description="Last read (clinic time)", ordering="last_success_at")
    def read_local(self, obj):
        return clinic_time(obj.last_success_at, obj.clinician.clinic) or "never"

    @admin.display(description="Status")
    def status(self, obj):
        if obj.last_error:
            return f"Failing: {obj.last_error}"
        return "OK" if obj.last_success_at else "Waiting for the first read"

    @admin.display(description="Busy times", ordering="busy_count")
    def busy_times(self, obj):
        return obj.busy_count

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change or "url" in form.changed_data:
            transaction.on_commit(lambda: queue_refresh(obj))

    @admin.action(description="Read selected calendars now", permissions=["change"])
    def read_now(self, request, queryset):
        calendars = list(queryset)
        for calendar in calendars:
            queue_refresh(calendar)
        self.message_user(
            request, f"{len(calendars)} calendar(s) queued for reading.", messages.SUCCESS
        )


@admin.register(BusyBlock)
class BusyBlockAdmin(ClinicianIntervalAdmin):
    """Imported busy times (no titles are kept). Each read replaces a calendar's blocks."""

    list_display = ("clinician", "starts_local", "ends_local", "calendar_host")
    list_filter = ("clinician__clinic", "clinician")
    list_select_related = ("clinician__clinic", "external_calendar")
    autocomplete_fields = ("clinician",)
    date_hierarchy = "start"

    @admin.display(description="Calendar")
    def calendar_host(self, obj):
        return obj.external_calendar.host


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail, for clinic admins only, and read-only for everyone (superusers too)."""

    list_display = ("at", "actor_label", "action", "patient", "detail", "ip_address")
    list_filter = ("action", "at", "actor_label")
    search_fields = ("actor_label", "patient__last_name", "detail", "ip_address")
    date_hierarchy = "at"
    list_select_related = ("patient",)
    fields = (
        "at",
        "actor",
        "actor_label",
        "action",
        "patient",
        "detail",
        "ip_address",
        "user_agent",
    )
    readonly_fields = fields

    def has_module_permission(self, request):
        return Role.ADMIN in roles_of(request.user)

    def has_view_permission(self, request, obj=None):
        return Role.ADMIN in roles_of(request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
