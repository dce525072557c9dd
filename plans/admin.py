from django import forms
from django.contrib import admin
from django.utils import timezone

from plans.models import (
    CONTRAINDICATIONS,
    CarePlan,
    MonitoringFormTask,
    PlannedVisit,
    Protocol,
    ProtocolStep,
    RemsEnrollment,
    RemsSetting,
    Screening,
    SessionRecord,
)
from scheduler.admin import (
    AuditedMixin,
    CalendarDatesMixin,
    ClinicTimeMixin,
    ModelAdmin,
    StackedInline,
    TabularInline,
)
from scheduler.models import AuditAction, VisitKind

ANSWERS = [("", "Not answered"), ("no", "No"), ("yes", "Yes")]


class ProtocolStepInline(StackedInline):
    model = ProtocolStep
    fk_name = "protocol"
    extra = 0
    fieldsets = [
        (None, {"fields": [("position", "name"), ("visit_type", "count")]}),
        ("Timing", {"fields": [("anchor", "after_step"), ("min_gap_hours", "max_gap_hours")]}),
        ("Series", {"fields": [("min_spacing_hours", "max_spacing_hours", "max_per_week")]}),
        ("Recurring check-ins", {"fields": [("recurrence", "recurrence_tolerance_days")]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("visit_type")

    def get_formset(self, request, obj=None, **kwargs):
        """On a protocol's page, its steps choose among its clinic's visit types and its own
        earlier steps (one list each for every step: ``SharedChoicesFormSet``)."""
        formset = super().get_formset(request, obj, **kwargs)
        fields = formset.form.base_fields
        if "after_step" in fields:  # a step without a name is called by its visit type
            fields["after_step"].queryset = fields["after_step"].queryset.select_related(
                "visit_type"
            )
        if obj is not None:
            for name, lookup in (
                ("visit_type", {"clinic": obj.clinic_id}),
                ("after_step", {"protocol": obj}),
            ):
                if name in fields:
                    fields[name].queryset = fields[name].queryset.filter(**lookup)
        return formset


@admin.register(Protocol)
class ProtocolAdmin(ModelAdmin):
    clinic_path = "clinic"
    list_display = [
        "name",
        "slug",
        "clinic",
        "min_hours_between_doses",
        "max_doses_per_week",
        "is_active",
    ]
    list_filter = ["clinic", "is_active"]
    search_fields = ["name", "slug"]
    inlines = [ProtocolStepInline]


class PlannedVisitInline(TabularInline):
    model = PlannedVisit
    fk_name = "care_plan"
    extra = 0
    can_delete = False
    fields = ["step", "occurrence", "visit", "status", "follows"]
    readonly_fields = fields

    @admin.display(description="Status")
    def status(self, obj):
        return obj.visit.get_status_display()

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(CarePlan)
class CarePlanAdmin(ModelAdmin):
    clinic_path = "protocol__clinic"  # where it is followed
    list_display = [
        "patient",
        "protocol",
        "status",
        "start_date",
        "total_cost",
        "currency",
        "created_at",
    ]
    list_filter = ["status", "protocol"]
    search_fields = ["patient__first_name", "patient__last_name", "patient__email"]
    list_select_related = ["patient", "protocol"]
    readonly_fields = [
        "patient",
        "protocol",
        "start_date",
        "preferences",
        "warnings",
        "total_cost",
        "currency",
        "confirmed_at",
    ]
    fields = readonly_fields
    inlines = [PlannedVisitInline]

    def has_add_permission(self, request):
        return False  # plans come from the generator (the plan command or the front-desk page)


class BaseScreeningForm(forms.ModelForm):
    class Meta:
        model = Screening
        fields = ["patient", "notes", "answered_by", "cleared", "cleared_by"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        answers = self.instance.answers or {}
        for code in CONTRAINDICATIONS:
            value = answers.get(code)
            self.fields[f"answer_{code}"].initial = (
                "" if value is None else ("yes" if value else "no")
            )

    def clean(self):
        cleaned = super().clean()
        self.instance.answers = {
            code: cleaned[f"answer_{code}"] == "yes"
            for code in CONTRAINDICATIONS
            if cleaned.get(f"answer_{code}")
        }
        if cleaned.get("cleared") and not self.instance.cleared_at:
            self.instance.cleared_at = timezone.now()
        if not cleaned.get("cleared"):
            self.instance.cleared_at = None
        if cleaned.get("answered_by") and not self.instance.answered_at:
            self.instance.answered_at = timezone.now()
        return cleaned


# One question per contraindication instead of a raw JSON field; declared on
# the class so that the admin accepts them as form fields.
ScreeningForm = type(
    "ScreeningForm",
    (BaseScreeningForm,),
    {
        f"answer_{code}": forms.ChoiceField(label=label, choices=ANSWERS, required=False)
        for code, label in CONTRAINDICATIONS.items()
    },
)


@admin.register(Screening)
class ScreeningAdmin(ModelAdmin):
    clinic_path = "patient__clinic"
    form = ScreeningForm
    list_display = ["patient", "cleared", "cleared_by", "cleared_at", "answered_at"]
    list_filter = ["cleared"]
    search_fields = ["patient__first_name", "patient__last_name", "patient__email"]
    list_select_related = ["patient", "cleared_by"]
    autocomplete_fields = ["patient"]
    readonly_fields = ["answered_at", "cleared_at"]

    def get_fields(self, request, obj=None):
        return [
            "patient",
            *[f"answer_{code}" for code in CONTRAINDICATIONS],
            "notes",
            "answered_by",
            "answered_at",
            "cleared",
            "cleared_by",
            "cleared_at",
        ]


# -- Spravato REMS -------------------------------------------------------------------


@admin.register(RemsSetting)
class RemsSettingAdmin(ModelAdmin):
    list_display = ["name", "setting_id", "clinic", "certified_on"]
    search_fields = ["name", "setting_id"]


@admin.register(RemsEnrollment)
class RemsEnrollmentAdmin(AuditedMixin, CalendarDatesMixin, ClinicTimeMixin, ModelAdmin):
    clinic_path = "patient__clinic"
    audit_change = AuditAction.VIEWED_PATIENT
    list_display = ["patient", "enrolled_on", "patient_rems_id", "recorded_by", "recorded_at"]
    search_fields = ["patient__first_name", "patient__last_name", "patient_rems_id"]
    list_select_related = ["patient", "recorded_by"]
    autocomplete_fields = ["patient"]
    readonly_fields = ["recorded_by", "recorded_at"]

    def save_model(self, request, obj, form, change):
        obj.recorded_by = request.user
        super().save_model(request, obj, form, change)


class DosingVisitMixin:
    """The visit of a REMS row is chosen among dosing visits only."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "visit" and field is not None:
            field.queryset = field.queryset.filter(visit_type__kind=VisitKind.DOSING)
        return field


@admin.register(SessionRecord)
class SessionRecordAdmin(
    DosingVisitMixin, AuditedMixin, CalendarDatesMixin, ClinicTimeMixin, ModelAdmin
):
    clinic_path = "visit__visit_type__clinic"
    audit_change = AuditAction.VIEWED_VISIT
    list_display = ["visit", "monitoring_start", "monitoring_end", "dose", "updated_at"]
    list_select_related = ["visit__patient", "visit__visit_type__clinic"]
    search_fields = ["visit__patient__first_name", "visit__patient__last_name", "lot_number"]
    autocomplete_fields = ["visit"]
    readonly_fields = ["recorded_by", "updated_at"]

    def save_model(self, request, obj, form, change):
        obj.recorded_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(MonitoringFormTask)
class MonitoringFormTaskAdmin(
    DosingVisitMixin, AuditedMixin, CalendarDatesMixin, ClinicTimeMixin, ModelAdmin
):
    """Tasks come from completed Spravato sessions; staff record submissions on the desk."""

    clinic_path = "visit__visit_type__clinic"
    audit_change = AuditAction.VIEWED_VISIT
    list_display = ["visit", "due_on", "submitted_on", "submitted_by"]
    list_filter = ["submitted_on"]
    list_select_related = ["visit__patient", "visit__visit_type__clinic", "submitted_by"]
    search_fields = ["visit__patient__first_name", "visit__patient__last_name"]
    date_hierarchy = "due_on"
    autocomplete_fields = ["visit"]
    readonly_fields = ["due_on", "submitted_by", "recorded_at", "created_at"]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        if "submitted_on" in form.changed_data:
            obj.submitted_by = request.user if obj.submitted_on else None
            obj.recorded_at = timezone.now() if obj.submitted_on else None
        super().save_model(request, obj, form, change)
