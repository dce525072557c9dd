from django import forms
from django.contrib import admin
from django.utils import timezone

from plans.models import (
    CONTRAINDICATIONS,
    CarePlan,
    PlannedVisit,
    Protocol,
    ProtocolStep,
    Screening,
)
from scheduler.admin import ModelAdmin, StackedInline, TabularInline

ANSWERS = [("", "Not answered"), ("no", "No"), ("yes", "Yes")]


class ProtocolStepInline(StackedInline):
    model = ProtocolStep
    fk_name = "protocol"
    extra = 0
    autocomplete_fields = ["visit_type"]
    fieldsets = [
        (None, {"fields": [("position", "name"), ("visit_type", "count")]}),
        ("Timing", {"fields": [("anchor", "after_step"), ("min_gap_hours", "max_gap_hours")]}),
        ("Series", {"fields": [("min_spacing_hours", "max_spacing_hours", "max_per_week")]}),
        ("Recurring check-ins", {"fields": [("recurrence", "recurrence_tolerance_days")]}),
    ]


@admin.register(Protocol)
class ProtocolAdmin(ModelAdmin):
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
