"""Admin for instruments, asking rules and safety policies; requests, responses and alerts to read.

An instrument is edited as its two JSON documents (the FHIR Questionnaire and
its scoring); ``Instrument.clean`` refuses a definition that cannot be scored
and the form shows why. A version that has been asked is never rewritten:
changing its definition needs a new version number, and saving then adds that
version beside the old one (which is no longer asked), so every response keeps
the wording it answered.

Requests, responses and alerts are written by the system (asking, answering,
the safety path): read here, not written. Answers and scores are seen by clinic
admins and the patient's own clinicians only (``questionnaires.scores``), and
every look is in the audit trail.
"""

from django import forms
from django.contrib import admin
from django.utils.html import format_html, format_html_join

from questionnaires.models import (
    AskingRule,
    Instrument,
    QuestionnaireRequest,
    QuestionnaireResponse,
    SafetyAlert,
    SafetyPolicy,
)
from questionnaires.scores import patients_whose_scores
from questionnaires.scoring import definition_problems, items, stem
from scheduler.admin import AuditedMixin, ClinicTimeMixin, ModelAdmin, ReadOnlyMixin
from scheduler.models import AuditAction
from scheduler.roles import Role, roles_of

DEFINITION = ("questionnaire", "scoring")


class InstrumentForm(forms.ModelForm):
    class Meta:
        model = Instrument
        fields = ("code", "version", "short_name", "title", "questionnaire", "scoring", "source")
        fields += ("is_active",)
        widgets = {
            "questionnaire": forms.Textarea(attrs={"rows": 24, "cols": 100}),
            "scoring": forms.Textarea(attrs={"rows": 12, "cols": 100}),
        }

    def clean(self):
        cleaned = super().clean()
        instrument = self.instance
        if instrument.pk is None or not instrument.requests.exists():
            return cleaned
        changed = set(self.changed_data)
        if changed & {*DEFINITION, "code"} and "version" not in changed:
            raise forms.ValidationError(
                "This version has been asked of patients: give the changed definition a new "
                "version number. It is saved as that version; this one stays as it was."
            )
        return cleaned


@admin.register(Instrument)
class InstrumentAdmin(ModelAdmin):
    form = InstrumentForm
    list_display = ("short_name", "code", "version", "is_active", "created_at")
    list_filter = ("is_active", "code")
    search_fields = ("code", "short_name", "title")
    readonly_fields = ("preview",)
    fieldsets = (
        (None, {"fields": ("code", "version", "short_name", "title", "is_active", "source")}),
        ("As patients and staff read it", {"fields": ("preview",)}),
        ("Definition", {"fields": DEFINITION}),
    )

    def save_model(self, request, obj, form, change):
        adding = not change
        if change and "version" in form.changed_data:
            # A new version beside the old: the old one's answers keep their wording.
            obj.pk = None
            obj._state.adding = True
            adding = True
        super().save_model(request, obj, form, change)
        if adding and obj.is_active:
            # One version of a code is asked: the newest, just added. The others stay
            # for the answers that name them.
            Instrument.objects.filter(code=obj.code).exclude(pk=obj.pk).update(is_active=False)

    @admin.display(description="Preview")
    def preview(self, obj):
        if obj.pk is None:
            return "Shown once the instrument is saved."
        try:
            unreadable = bool(definition_problems(obj.questionnaire, obj.scoring))
        except (AttributeError, KeyError, TypeError, ValueError):
            unreadable = True
        if unreadable:
            return "The definition cannot be scored as it stands; see the errors above."
        questions, bands = items(obj.questionnaire), obj.scoring["bands"]
        rows = format_html_join(
            "",
            "<li><p>{}</p><ul>{}</ul></li>",
            (
                (
                    item.text,
                    format_html_join(
                        "",
                        "<li>{} ({})</li>",
                        (
                            (
                                option.display,
                                "not scored" if option.points is None else option.points,
                            )
                            for option in item.options
                        ),
                    ),
                )
                for item in questions
            ),
        )
        scale = format_html_join(
            "", "<li>{}-{}: {}</li>", ((b["min"], b["max"], b["label"]) for b in bands)
        )
        return format_html(
            "<p>{}</p><ol>{}</ol><p>Total of {} items, 0 to {}. Bands:</p><ul>{}</ul>",
            stem(obj.questionnaire),
            rows,
            len(obj.scoring["total"]["items"]),
            obj.scoring["total"]["max"],
            scale,
        )


@admin.register(AskingRule)
class AskingRuleAdmin(ModelAdmin):
    list_display = ("instrument_code", "visit_kind", "visit_type", "protocol_step", "occasion")
    list_display += ("hours_before", "reminder_after_hours", "is_active")
    list_filter = ("instrument_code", "visit_kind", "occasion", "is_active")
    raw_id_fields = ("protocol_step",)


@admin.register(SafetyPolicy)
class SafetyPolicyAdmin(ModelAdmin):
    list_display = ("clinic", "clinical_lead", "escalate_after_minutes", "phq9_total_threshold")


class WrittenByTheSystem(ReadOnlyMixin):
    """Rows recorded by asking, answering and the safety path: read here, not written.

    Seen only by whoever may see the patient's answers (clinic admins, the
    patient's own clinicians), whatever view permission a group grants, and
    each page opened is in the audit trail.
    """

    audit_change = AuditAction.VIEWED_PATIENT
    audit_list = AuditAction.LISTED_PATIENTS
    clinic_path = "patient__clinic"

    def has_view_permission(self, request, obj=None):
        if not super().has_view_permission(request, obj):
            return False
        if obj is None:
            return bool(roles_of(request.user) & {Role.ADMIN, Role.CLINICIAN})
        return patients_whose_scores(request.user).filter(pk=obj.patient_id).exists()

    def get_queryset(self, request):
        return super().get_queryset(request).filter(patient__in=patients_whose_scores(request.user))


@admin.register(QuestionnaireRequest)
class QuestionnaireRequestAdmin(WrittenByTheSystem, AuditedMixin, ClinicTimeMixin, ModelAdmin):
    list_display = ("patient", "instrument", "visit", "opens_at", "closes_at", "status")
    list_filter = ("status", "instrument__code")
    list_select_related = ("patient__clinic", "instrument", "visit__visit_type")
    raw_id_fields = ("patient", "visit", "rule")


@admin.register(QuestionnaireResponse)
class QuestionnaireResponseAdmin(WrittenByTheSystem, AuditedMixin, ClinicTimeMixin, ModelAdmin):
    list_display = ("patient", "instrument", "status", "total", "band", "completed_at")
    list_filter = ("status", "instrument__code")
    list_select_related = ("patient__clinic", "instrument")
    raw_id_fields = ("request", "patient")
    fields = ("request", "patient", "instrument", "status", "answered", "total", "band")
    fields += ("started_at", "completed_at")
    readonly_fields = fields

    @admin.display(description="Answers")
    def answered(self, obj):
        return format_html(
            "<ol>{}</ol>",
            format_html_join(
                "",
                "<li>{}: <strong>{}</strong></li>",
                (
                    (item.text, option.display if option else "not answered")
                    for item in items(obj.instrument.questionnaire)
                    for option in [item.option(obj.answers.get(item.link_id, ""))]
                ),
            ),
        )


@admin.register(SafetyAlert)
class SafetyAlertAdmin(WrittenByTheSystem, AuditedMixin, ClinicTimeMixin, ModelAdmin):
    list_display = ("patient", "created_at", "escalated_at", "acknowledged_at", "acknowledged_by")
    list_filter = ("acknowledged_at",)
    list_select_related = ("patient__clinic", "acknowledged_by")
    raw_id_fields = ("patient", "response", "acknowledged_by")
