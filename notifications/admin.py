"""Admin for reminder policies, the outbox, the front-desk inbox and patients' preferences.

The outbox is read-only: rows are written by planning and dispatch only, so the
record of what was sent, when and why not, stays true. Staff can retry a
failed message the provider never accepted, and mark inbox texts handled.
"""

from django.contrib import admin, messages
from django.utils import timezone

from notifications.models import (
    InboundMessage,
    Message,
    MessagingPreferences,
    ReminderPolicy,
    ReminderRule,
)
from scheduler.admin import (
    AuditedMixin,
    CalendarDatesMixin,
    ClinicZoneMixin,
    ModelAdmin,
    TabularInline,
)
from scheduler.models import AuditAction


class ReminderRuleInline(TabularInline):
    model = ReminderRule
    extra = 0
    fields = ("purpose", "offset", "timing", "by_sms", "by_email", "is_active")


@admin.register(ReminderPolicy)
class ReminderPolicyAdmin(ModelAdmin):
    list_display = ("visit_type", "clinic", "rule_summary", "is_active")
    list_filter = ("is_active", "visit_type__clinic", "visit_type__kind")
    list_select_related = ("visit_type__clinic",)
    search_fields = ("visit_type__name",)
    inlines = (ReminderRuleInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("rules")

    @admin.display(description="Clinic", ordering="visit_type__clinic__name")
    def clinic(self, obj):
        return obj.visit_type.clinic

    @admin.display(description="Rules")
    def rule_summary(self, obj):
        return "; ".join(str(rule) for rule in obj.rules.all() if rule.is_active)


class AttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("yes", "Failed or undelivered")]

    def queryset(self, request, queryset):
        return queryset.needs_attention() if self.value() == "yes" else queryset


@admin.register(Message)
class MessageAdmin(CalendarDatesMixin, ClinicZoneMixin, ModelAdmin):
    clinic_path = "patient__clinic"
    list_display = (
        "patient",
        "clinician",  # set when the message went to the clinician (a calendar invite)
        "visit_time",
        "purpose",
        "channel",
        "status",
        "send_time",
        "attempts",
        "why",
    )
    list_filter = (AttentionFilter, "status", "channel", "purpose")
    list_select_related = ("patient__clinic", "visit", "clinician")
    search_fields = ("patient__first_name", "patient__last_name", "recipient", "provider_id")
    date_hierarchy = "send_at"
    actions = ("retry",)
    readonly_fields = [field.name for field in Message._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Visit (clinic time)", ordering="visit__start")
    def visit_time(self, obj):
        return self.clinic_time(obj, obj.visit.start)

    @admin.display(description="Send at (clinic time)", ordering="send_at")
    def send_time(self, obj):
        return self.clinic_time(obj, obj.send_at)

    @admin.display(description="Reason or error")
    def why(self, obj):
        why = obj.last_error if obj.needs_attention else obj.reason
        if obj.combined_into_id:
            # One text for the patient's messages of a day: its status is this one's.
            return f"In the text of message {obj.combined_into_id}. {why}".strip()
        return why

    @admin.action(description="Try again now (failed before the provider took them)")
    def retry(self, request, queryset):
        retried = queryset.retry_now()
        messages.info(request, f"{retried} messages will go in the next pass.")


class InboxFilter(admin.SimpleListFilter):
    title = "inbox"
    parameter_name = "inbox"

    def lookups(self, request, model_admin):
        return [("open", "To do"), ("handled", "Handled")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.inbox()
        if self.value() == "handled":
            return queryset.filter(handled_at__isnull=False)
        return queryset


@admin.register(InboundMessage)
class InboundMessageAdmin(AuditedMixin, ModelAdmin):
    # Patients' own words: reading them, in the list or one by one, is recorded.
    audit_change = AuditAction.READ_MESSAGES
    audit_list = AuditAction.READ_MESSAGES
    list_display = (
        "received_at",
        "from_number",
        "patient",
        "kind",
        "body",
        "visit",
        "outcome",
        "handled_at",
    )
    list_filter = (InboxFilter, "kind")
    list_select_related = ("patient", "visit__visit_type", "visit__patient__clinic")
    search_fields = ("from_number", "body", "patient__first_name", "patient__last_name")
    readonly_fields = (
        "provider_id",
        "from_number",
        "to_number",
        "patient",
        "body",
        "kind",
        "visit",
        "outcome",
        "reply",
        "needs_attention",
        "received_at",
        "handled_at",
        "handled_by",
    )
    actions = ("mark_handled",)

    def has_add_permission(self, request):
        return False

    @admin.action(description="Mark as handled")
    def mark_handled(self, request, queryset):
        done = queryset.filter(handled_at__isnull=True).update(
            handled_at=timezone.now(), handled_by=request.user
        )
        messages.info(request, f"{done} texts marked handled.")


@admin.register(MessagingPreferences)
class MessagingPreferencesAdmin(ModelAdmin):
    list_display = (
        "patient",
        "sms_per_day",
        "sms_per_week",
        "quiet_hours_start",
        "quiet_hours_end",
    )
    list_select_related = ("patient",)
    autocomplete_fields = ("patient",)
    search_fields = ("patient__first_name", "patient__last_name", "patient__mobile")
