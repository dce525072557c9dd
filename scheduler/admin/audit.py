"""The audit trail: who saw or changed what, readable by clinic admins only."""

from django.contrib import admin

from scheduler.admin.base import CalendarDatesMixin, ModelAdmin, ReadOnlyMixin
from scheduler.models import AuditEvent
from scheduler.roles import Role, roles_of


@admin.register(AuditEvent)
class AuditEventAdmin(CalendarDatesMixin, ReadOnlyMixin, ModelAdmin):
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
