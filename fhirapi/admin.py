"""FHIR API clients, issued and revoked by clinic admins.

A client is registered with its scopes and its public keys (a JWKS); the
server makes its client_id, which the client puts in its signed token
requests (fhirapi/tokens.py). Clients are never deleted, only revoked: their
tokens and the audit trail name them. Every change is audited.
"""

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from fhirapi.models import ApiClient, ApiToken
from scheduler import audit
from scheduler.admin import ModelAdmin
from scheduler.models import AuditAction
from scheduler.roles import Role, roles_of

# Tokens live minutes and a busy client asks for one every few: the latest are enough to see.
TOKENS_SHOWN = 20


def changed(request, client: ApiClient, what: str) -> None:
    audit.record(request, AuditAction.API_CLIENT_CHANGED, None, f"{client.name}: {what}")


class ClientStatus(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return None


@admin.register(ApiClient)
class ApiClientAdmin(ModelAdmin):
    """For clinic admins (and superusers) only: a client reads patients' data."""

    clinic_path = "clinic"
    # Whether it is active before the long columns (scopes, ids) that may run off a narrow screen.
    list_display = ("name", "active", "clinic", "client_id", "scopes", "created_at")
    list_filter = (ClientStatus, "clinic")
    list_select_related = ("clinic",)
    search_fields = ("name", "client_id")
    fields = (
        "name",
        "clinic",
        "scopes",
        "jwks",
        "client_id",
        "created_at",
        "created_by",
        "revoked_at",
        "recent_tokens",
    )
    readonly_fields = ("client_id", "created_at", "created_by", "revoked_at", "recent_tokens")
    actions = ("revoke_clients",)

    def _is_clinic_admin(self, request) -> bool:
        return Role.ADMIN in roles_of(request.user)

    def has_module_permission(self, request):
        return self._is_clinic_admin(request)

    def has_view_permission(self, request, obj=None):
        return self._is_clinic_admin(request)

    def has_add_permission(self, request):
        return self._is_clinic_admin(request)

    def has_change_permission(self, request, obj=None):
        return self._is_clinic_admin(request) and (obj is None or obj.is_active)

    def has_delete_permission(self, request, obj=None):
        # Revoked, never deleted: its tokens and the audit trail name it.
        return False

    @admin.display(description="Active", boolean=True)
    def active(self, obj):
        return obj.is_active

    @admin.display(description=f"Latest tokens (up to {TOKENS_SHOWN})")
    def recent_tokens(self, obj):
        if obj.pk is None:
            return "-"
        tokens = ApiToken.objects.filter(client=obj).order_by("-issued_at")[:TOKENS_SHOWN]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{token.issued_at:%Y-%m-%d %H:%M:%S} UTC",
                    f"{token.expires_at:%Y-%m-%d %H:%M:%S} UTC",
                    token.scopes,
                    "revoked" if token.revoked_at else "",
                )
                for token in tokens
            ),
        )
        if not rows:
            return "None issued yet."
        return format_html(
            "<table><thead><tr><th>Issued</th><th>Expires</th><th>Scopes</th><th></th></tr>"
            "</thead><tbody>{}</tbody></table>",
            rows,
        )

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if change:
            changed(request, obj, f"changed {', '.join(form.changed_data) or 'nothing'}")
        else:
            changed(request, obj, f"added with scopes {obj.scopes}")
            self.message_user(
                request,
                f"Client {obj.name} added. Its client_id (for its token requests): {obj.client_id}",
                messages.SUCCESS,
            )

    @admin.action(
        description="Revoke selected clients (their tokens stop working)", permissions=["change"]
    )
    def revoke_clients(self, request, queryset):
        revoked = list(queryset.active())
        ApiClient.objects.filter(pk__in=[c.pk for c in revoked]).update(revoked_at=timezone.now())
        for client in revoked:
            changed(request, client, "revoked")
        self.message_user(request, f"{len(revoked)} client(s) revoked.", messages.SUCCESS)
