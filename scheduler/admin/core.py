"""The clinic and what it is made of: hours, closures, rooms, clinicians, patients, visit types."""

from datetime import UTC, datetime, time, timedelta

from django import forms
from django.contrib import admin
from django.db import models
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from scheduler.admin.base import (
    CLINIC_DATETIME,
    AuditedMixin,
    ClinicTimeMixin,
    IntervalAdmin,
    ModelAdmin,
    PhoneSearchMixin,
    StackedInline,
    TabularInline,
    clinician_only,
)
from scheduler.admin.visits import PatientVisitInline
from scheduler.availability import closed_times
from scheduler.models import (
    AuditAction,
    Capability,
    Clinic,
    Clinician,
    ClinicianRole,
    Closure,
    OpeningHours,
    Patient,
    Room,
    StaffingRequirement,
    StaffMembership,
    TimeOff,
    TranslatedInstructions,
    TranslatedPolicy,
    Visit,
    VisitType,
    WorkingHours,
)
from scheduler.public_holidays import holidays_between

# -- hours and days off, edited on the clinic's and the clinician's page --------


class ScheduleInline(TabularInline):
    """Weekly hours and dated closures or time off; dates read in the page's clinic zone."""

    extra = 0
    formfield_overrides = CLINIC_DATETIME


class OpeningHoursInline(ScheduleInline):
    model = OpeningHours


class ClosureInline(ScheduleInline):
    model = Closure


class WorkingHoursInline(ScheduleInline):
    model = WorkingHours


class TimeOffInline(ScheduleInline):
    model = TimeOff


# -- clinic, hours, closures, rooms ---------------------------------------------


class TranslatedPolicyInline(StackedInline):
    """The clinic's late-cancellation policy in patients' other languages (English is above)."""

    model = TranslatedPolicy
    extra = 0


@admin.register(Clinic)
class ClinicAdmin(ClinicTimeMixin, ModelAdmin):
    clinic_path = ""
    list_display = ("name", "slug", "phone", "time_zone", "country", "subdivision")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("holidays_ahead",)
    inlines = (OpeningHoursInline, ClosureInline, TranslatedPolicyInline)

    @admin.display(description="Public holidays in the next 12 months")
    def holidays_ahead(self, obj):
        """What the country and state close, so staff see where to add an *open* row."""
        if obj is None or obj.pk is None:
            return "Shown once the clinic is saved."
        # As saved: a form sent back with errors holds values not yet checked
        # (a time zone or country that does not exist).
        obj = type(obj).objects.get(pk=obj.pk)
        tz = obj.tz
        first = timezone.localdate(timezone=tz)
        last = first + timedelta(days=365)
        start = datetime.combine(first, time(0), tzinfo=tz)
        _, closed = closed_times(obj, start, datetime.combine(last, time(0), tzinfo=tz))
        rows = []
        for day, name in holidays_between(obj.country, obj.subdivision, first, last).items():
            midnight = datetime.combine(day, time(0), tzinfo=tz)
            span = (midnight.astimezone(UTC), (midnight + timedelta(days=1)).astimezone(UTC))
            state = (
                "closed"
                if closed.covers(*span)
                else "partly open"
                if closed.first_overlap(*span)
                else "open anyway"
            )
            rows.append((f"{day:%a %Y-%m-%d}", name, state))
        if not rows:
            return "None."
        return format_html_join(mark_safe("<br>"), "{} {} ({})", rows)


@admin.register(OpeningHours)
class OpeningHoursAdmin(ModelAdmin):
    clinic_path = "clinic"
    list_display = ("clinic", "weekday", "opens", "closes")
    list_filter = ("clinic", "weekday")
    list_select_related = ("clinic",)


@admin.register(Closure)
class ClosureAdmin(IntervalAdmin):
    clinic_path = "clinic"
    list_display = ("clinic", "kind", "starts_local", "ends_local", "reason")
    list_filter = ("clinic", "kind")
    list_select_related = ("clinic",)
    search_fields = ("reason",)
    date_hierarchy = "start"


@admin.register(Capability)
class CapabilityAdmin(ModelAdmin):
    list_display = ("name", "slug")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Room)
class RoomAdmin(ModelAdmin):
    clinic_path = "clinic"
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


@admin.register(Clinician)
class ClinicianAdmin(ClinicTimeMixin, ModelAdmin):
    clinic_path = "clinic"
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


@admin.register(StaffMembership)
class StaffMembershipAdmin(ModelAdmin):
    """Who works at which clinic, and as what (``scheduler.roles``). Clinicians work at
    their own clinic without a row here; superusers at every clinic."""

    clinic_path = "clinic"
    list_display = ("user", "clinic", "role")
    list_filter = ("clinic", "role")
    list_select_related = ("user", "clinic")
    search_fields = ("user__username", "user__first_name", "user__last_name", "user__email")
    autocomplete_fields = ("user",)


@admin.register(WorkingHours)
class WorkingHoursAdmin(ModelAdmin):
    clinic_path = "clinician__clinic"
    list_display = ("clinician", "weekday", "opens", "closes")
    list_filter = ("clinician__clinic", "weekday", "clinician")
    list_select_related = ("clinician",)
    search_fields = ("clinician__display_name",)
    autocomplete_fields = ("clinician",)


@admin.register(TimeOff)
class TimeOffAdmin(IntervalAdmin):
    clinic_path = "clinician__clinic"
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
            "language",
            "contact_by_sms",
            "contact_by_email",
            "sms_consent_at",
            "sms_consent_method",
            "sms_express_consent_at",
            "sms_express_consent_method",
            "sms_opted_out_at",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Staff read and type "(212) 555-0147"; the model cleans it back to E.164.
        if self.instance.mobile and "mobile" in self.fields:
            self.initial["mobile"] = self.instance.mobile_display


@admin.register(Patient)
class PatientAdmin(AuditedMixin, ClinicTimeMixin, PhoneSearchMixin, ModelAdmin):
    clinic_path = "clinic"
    audit_change = AuditAction.VIEWED_PATIENT
    audit_list = AuditAction.LISTED_PATIENTS
    audit_patient = "pk"
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
        ("sms_express_consent_at", admin.EmptyFieldListFilter),
        ("sms_opted_out_at", admin.EmptyFieldListFilter),
    )
    list_select_related = ("clinic",)
    search_fields = ("first_name", "last_name", "email", "mobile")
    phone_path = "mobile"
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
                    ("sms_express_consent_at", "sms_express_consent_method"),
                    "sms_opted_out_at",
                    "created_at",
                )
            },
        ),
    )

    def of_clinics(self, queryset, clinics):
        # Their own, and those booked at one of them (as the desk's search finds).
        return queryset.seen_at(*clinics)

    def get_queryset(self, request):
        patients = super().get_queryset(request)
        clinician = clinician_only(request)
        if clinician is None:
            return patients
        return patients.filter(
            pk__in=Visit.objects.for_clinician(clinician).scheduled().values("patient")
        )

    def get_inlines(self, request, obj):
        return (PatientVisitInline,) if obj else ()

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


class StaffingForm(forms.ModelForm):
    roles = forms.MultipleChoiceField(
        choices=ClinicianRole.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="Any one of these roles fills the place.",
    )

    class Meta:
        model = StaffingRequirement
        fields = ("position", "roles", "count", "joins_after_minutes", "stays_minutes", "optional")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["roles"] = list(self.instance.role_list)

    def clean_roles(self):
        return ",".join(self.cleaned_data["roles"])


class StaffingFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        kept = [
            form
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE") and form.is_valid()
        ]
        if not any(self.errors) and not kept:
            raise forms.ValidationError(
                "A visit type needs a team: at least one person (the lead, listed first)."
            )
        if any(not form.cleaned_data.get("optional") for form in kept):
            return
        if kept:
            raise forms.ValidationError("At least one member of the team must not be optional.")


class TranslatedInstructionsInline(StackedInline):
    """The visit type's instructions in patients' other languages (English is above)."""

    model = TranslatedInstructions
    extra = 0


class StaffingInline(TabularInline):
    model = StaffingRequirement
    form = StaffingForm
    formset = StaffingFormSet
    extra = 0
    min_num = 1


@admin.register(TranslatedInstructions)
class TranslatedInstructionsAdmin(ModelAdmin):
    """Every visit type's instructions in other languages (also edited on the visit type's page)."""

    clinic_path = "visit_type__clinic"
    list_display = ("visit_type", "language")
    list_filter = ("language",)
    list_select_related = ("visit_type",)


@admin.register(TranslatedPolicy)
class TranslatedPolicyAdmin(ModelAdmin):
    """Every clinic's cancellation policy in other languages (also on the clinic's page)."""

    clinic_path = "clinic"
    list_display = ("clinic", "language")
    list_filter = ("language",)
    list_select_related = ("clinic",)


@admin.register(StaffingRequirement)
class StaffingRequirementAdmin(ModelAdmin):
    """Each place on each visit type's team (also edited on the visit type's page)."""

    clinic_path = "visit_type__clinic"
    form = StaffingForm
    list_display = (
        "visit_type",
        "position",
        "__str__",
        "joins_after_minutes",
        "stays_minutes",
        "optional",
    )
    list_filter = (("visit_type", admin.RelatedOnlyFieldListFilter), "optional")
    list_select_related = ("visit_type",)
    fields = ("visit_type", *StaffingForm.Meta.fields)


@admin.register(VisitType)
class VisitTypeAdmin(ModelAdmin):
    clinic_path = "clinic"
    inlines = (StaffingInline, TranslatedInstructionsInline)
    list_display = (
        "name",
        "kind",
        "dosing_route",
        "duration_minutes",
        "modality",
        "team",
        "room_capability",
        "price",
        "clinic",
    )
    list_filter = ("clinic", "kind", "modality", "dosing_route")
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
                    "patients_may_move",
                )
            },
        ),
        (
            "Dose spacing without a care plan (dosing only; empty: the route's default)",
            {"fields": (("min_hours_between_doses", "max_doses_per_week"),)},
        ),
        ("Instructions", {"fields": ("preparation_instructions", "aftercare_instructions")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("staffing")

    @admin.display(description="Team")
    def team(self, obj):
        return obj.team_text
