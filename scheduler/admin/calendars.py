"""Calendars: feed addresses and patient links, invites, clinicians' own calendars."""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from scheduler import tokens
from scheduler.admin.base import (
    ClinicTimeMixin,
    IntervalAdmin,
    ModelAdmin,
)
from scheduler.external_calendars import queue_refresh
from scheduler.links import feed_url, patient_page_url
from scheduler.models import (
    AccessToken,
    BusyBlock,
    ExternalCalendar,
    InvitePreference,
    TokenPurpose,
)


class AccessTokenForm(forms.ModelForm):
    class Meta:
        model = AccessToken
        fields = ("purpose", "clinician", "patient")

    def validate_unique(self):
        # "One live token per owner" holds because issuing revokes the old
        # token first (scheduler.tokens.issue); a new one is always allowed.
        pass


@admin.register(AccessToken)
class AccessTokenAdmin(ModelAdmin):
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
class InvitePreferenceAdmin(ModelAdmin):
    list_display = ("clinician", "email_invites")
    list_filter = ("email_invites", "clinician__clinic")
    list_select_related = ("clinician",)
    search_fields = ("clinician__display_name",)
    autocomplete_fields = ("clinician",)


class ExternalCalendarAdminForm(forms.ModelForm):
    """The address is typed, never shown back: it is often a secret (the model shows its host).

    On an existing calendar the field is empty and optional: a new address
    replaces the one in use, an empty field keeps it.
    """

    class Meta:
        model = ExternalCalendar
        fields = ("clinician", "url")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and "url" in self.fields:
            field = self.fields["url"]
            field.required = False
            field.label = "New address"
            field.help_text = (
                "Only to replace the address; empty keeps the one in use, which is not "
                "shown (it works like a password)."
            )
            self.initial["url"] = ""

    def clean_url(self) -> str:
        return self.cleaned_data["url"] or self.instance.url


@admin.register(ExternalCalendar)
class ExternalCalendarAdmin(ClinicTimeMixin, ModelAdmin):
    """Clinicians' own calendars: when each was last read, and why not if it failed.

    Pages show the address's host only; whoever may change a calendar may type
    a new address, nobody reads the one in use back.
    """

    clinic_path = "clinician__clinic"
    form = ExternalCalendarAdminForm
    list_display = ("clinician", "host", "read_local", "status", "busy_times")
    list_filter = ("clinician__clinic", ("last_error", admin.EmptyFieldListFilter))
    list_select_related = ("clinician__clinic",)
    search_fields = ("clinician__display_name",)
    autocomplete_fields = ("clinician",)
    readonly_fields = ("address_host", "last_fetched_at", "last_success_at", "last_error")
    actions = ("read_now",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("clinician", "url")
        # A user who may only view gets every field shown as text: not the address.
        new_address = ("url",) if self.has_change_permission(request, obj) else ()
        record = ("last_fetched_at", "last_success_at", "last_error")
        return ("clinician", "address_host", *new_address, *record)

    @admin.display(description="Address (host only)")
    def address_host(self, obj):
        return obj.host

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(busy_count=Count("busy_blocks"))

    @admin.display(description="Last read (clinic time)", ordering="last_success_at")
    def read_local(self, obj):
        return self.clinic_time(obj, obj.last_success_at) or "never"

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
class BusyBlockAdmin(IntervalAdmin):
    """Imported busy times (no titles are kept). Each read replaces a calendar's blocks."""

    clinic_path = "clinician__clinic"
    list_display = ("clinician", "starts_local", "ends_local", "calendar_host")
    list_filter = ("clinician__clinic", "clinician")
    list_select_related = ("clinician__clinic", "external_calendar")
    autocomplete_fields = ("clinician",)
    date_hierarchy = "start"

    @admin.display(description="Calendar")
    def calendar_host(self, obj):
        return obj.external_calendar.host
