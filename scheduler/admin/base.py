"""What the admin pages share: times in the clinic's zone, phone search, clinicians' view, audit.

Times are entered and shown in the clinic's own zone (docs/architecture.md,
invariant 4), whatever the server's zone.
"""

import contextlib
from datetime import datetime
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers, widgets
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from scheduler import audit
from scheduler.models import AuditAction, Clinic, is_row_id
from scheduler.phones import search_digits
from scheduler.roles import Role, access_of, roles_of
from scheduler.timezones import (
    FIRST_DAY,
    LAST_DAY,
    LocalTimeError,
    local_datetime,
    validate_calendar_day,
    zone,
)


class CheckedAutocompleteSelect(widgets.AutocompleteSelect):
    """Django's autocomplete looks submitted ids up as they are, to show them again.

    A crafted "abc" or an id past the database's integers raised there: a
    server error on a form that only needed to say "Select a valid choice".
    Values that can be no id are not looked up (the field's error says why).
    """

    def optgroups(self, name, value, attr=None):
        return super().optgroups(name, [v for v in value if is_row_id(v)], attr)


class CheckedAutocompleteSelectMultiple(widgets.AutocompleteSelectMultiple):
    optgroups = CheckedAutocompleteSelect.optgroups


class CheckedModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Refuses an id past the database's integers as it refuses "abc", not by overflowing."""

    def _check_values(self, value):
        try:
            return super()._check_values(value)
        except OverflowError:
            raise ValidationError(
                self.error_messages["invalid_pk_value"],
                code="invalid_pk_value",
                params={"pk": next((v for v in value if not is_row_id(v)), "")},
            ) from None


def _within_calendar(value) -> None:
    validate_calendar_day(value.date() if isinstance(value, datetime) else value)


class CheckedInputMixin:
    """Related rows are chosen by id through the checked widgets and field above; dates stay
    within the calendar (a year-9999 time overflowed when converted to UTC, a server error)."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if isinstance(db_field, models.DateField) and field is not None:
            field.validators.append(_within_calendar)
        return field

    def get_field_queryset(self, db, db_field, request):
        """A related row is chosen among those of the user's clinics (``ModelAdmin.of_clinics``)."""
        queryset = super().get_field_queryset(db, db_field, request)
        related = self.admin_site._registry.get(db_field.remote_field.model)
        if not isinstance(related, ModelAdmin):
            return queryset
        if queryset is None:
            queryset = db_field.remote_field.model._default_manager.using(db).all()
        return related.in_users_clinics(request, queryset)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = CheckedAutocompleteSelect(
                db_field, self.admin_site, using=kwargs.get("using")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = CheckedAutocompleteSelectMultiple(
                db_field, self.admin_site, using=kwargs.get("using")
            )
        kwargs.setdefault("form_class", CheckedModelMultipleChoiceField)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class CheckedActionsMixin:
    """An action on rows chosen by crafted ids shows the list again with a note."""

    def response_action(self, request, queryset):
        # Django filters by the chosen rows' ids as posted; "abc" raised there.
        chosen = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if not all(is_row_id(pk) for pk in chosen):
            self.message_user(request, "Choose rows from the list.", messages.WARNING)
            return None  # the list again, with the message
        return super().response_action(request, queryset)


class ModelAdmin(CheckedActionsMixin, CheckedInputMixin, admin.ModelAdmin):
    """The base of every admin page of the project (crafted ids get form errors, never a 500).

    A page whose rows belong to a clinic (``clinic_path``, the lookup from a row
    to its clinic; "" for the clinics themselves) lists, opens and offers for
    choosing only the rows of the clinics the user is a member of, as the desk
    does; a superuser sees every clinic's.
    """

    clinic_path: str | None = None

    def get_queryset(self, request):
        return self.in_users_clinics(request, super().get_queryset(request))

    def in_users_clinics(self, request, queryset):
        if self.clinic_path is None or request.user.is_superuser:
            return queryset
        return self.of_clinics(queryset, access_of(request.user).clinics)

    def of_clinics(self, queryset, clinics):
        """The rows of ``queryset`` that belong to one of ``clinics``."""
        lookup = f"{self.clinic_path}__in" if self.clinic_path else "pk__in"
        return queryset.filter(**{lookup: [clinic.pk for clinic in clinics]})


class SharedChoicesFormSet:
    """Each row's lists of related rows read once for the whole formset, not once per row,
    and each row's parent the page's own object, not read again for each row.

    A protocol's twelve steps each listing the clinic's visit types and its
    other steps was a query per list per row, every time the page was drawn.
    Autocomplete fields list only their chosen row and are left as they are.
    """

    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        if self.instance.pk is not None:
            setattr(form.instance, self.fk.name, self.instance)
        return form

    def add_fields(self, form, index):
        super().add_fields(form, index)
        shared = self.__dict__.setdefault("_shared_choices", {})
        for name, field in form.fields.items():
            widget = getattr(field.widget, "widget", field.widget)
            if (
                isinstance(field, forms.ModelChoiceField)
                and not widget.is_hidden  # a row's own id: nothing to list
                and not isinstance(widget, widgets.AutocompleteMixin)
            ):
                if name not in shared:
                    shared[name] = list(field.choices)
                field.choices = shared[name]


class InlineMixin(CheckedInputMixin):
    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        return type(formset.__name__, (SharedChoicesFormSet, formset), {})


class TabularInline(InlineMixin, admin.TabularInline):
    pass


class StackedInline(InlineMixin, admin.StackedInline):
    pass


class PhoneSearchMixin:
    """Search also finds a phone number as people type it (``scheduler.phones.search_digits``)."""

    phone_path: str  # the lookup to the stored E.164 number, e.g. "patient__mobile"

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = search_digits(search_term)
        if digits:
            results |= queryset.filter(**{f"{self.phone_path}__contains": digits})
        return results, may_have_duplicates


class AuditedMixin:
    """Opening a change page or the list of this model leaves a row in the audit trail.

    Declare what is recorded: ``audit_change`` and ``audit_list`` are the
    actions (None: not recorded), ``audit_patient`` the object's attribute
    holding its patient's id. Only pages shown (GET, 200) count; saving is
    recorded where it happens (visit changes by ``scheduler.audit``).
    """

    audit_change: AuditAction | None = None
    audit_list: AuditAction | None = None
    audit_patient: str = "patient_id"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        obj = _shown(request, response, "original")
        if self.audit_change and obj is not None:
            detail = f"{self.opts.verbose_name} {obj.pk} (admin)"
            audit.record(request, self.audit_change, getattr(obj, self.audit_patient), detail)
        return response

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = _shown(request, response, "cl")
        if self.audit_list and changelist is not None:
            detail = f"{self.opts.verbose_name_plural} list (admin): {len(changelist.result_list)}"
            detail += f" shown, page {changelist.page_num}"
            if changelist.query:
                detail += f", search {changelist.query!r}"
            audit.record(request, self.audit_list, None, detail)
        return response


def _shown(request, response, name: str):
    """``name`` from the context of a page shown to the user, else None."""
    if request.method != "GET" or response.status_code != 200:
        return None
    return (getattr(response, "context_data", None) or {}).get(name)


class ReadOnlyMixin:
    """Rows shown, never written, on this page: nobody adds, changes or deletes them here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CalendarChangeList(ChangeList):
    """A list whose date filters stay within the calendar (``scheduler.timezones``).

    Django's date drill-down (``date_hierarchy``) computes the end of the
    chosen day, month or year by plain arithmetic, which overflows at year
    9999, and a date filter near year 1 or 9999 overflows when converted to
    UTC: both were server errors. Here they are bad lookups, which the admin
    answers as it does any other: back to the unfiltered list, with a note.
    """

    def get_filters(self, request):
        if self.date_hierarchy:
            for year in request.GET.getlist(f"{self.date_hierarchy}__year"):
                with contextlib.suppress(ValueError):  # not a number: Django refuses it itself
                    if not FIRST_DAY.year <= int(year) <= LAST_DAY.year:
                        raise IncorrectLookupParameters(f"year {year} is not in the calendar")
        return super().get_filters(request)

    def get_results(self, request):
        try:
            super().get_results(request)
        except OverflowError as error:
            raise IncorrectLookupParameters(error) from error


class CalendarDatesMixin:
    """Date filters of the list stay within the calendar (``CalendarChangeList``)."""

    def get_changelist(self, request, **kwargs):
        return CalendarChangeList


def check_input_of_every_admin(site: admin.AdminSite) -> None:
    """Other apps' admin pages (Django's users, django-q2, axes, django-otp) checked as ours are.

    Their lists, actions and forms took crafted ids and dates to a server
    error (Django's actions filter by the posted ids as they are; its date
    drill-down overflows at year 9999). Each admin not built on this module's
    ``ModelAdmin`` is registered again as a subclass with its checks. Called
    once every app has registered its admin (desk's AppConfig.ready).
    """
    for model, model_admin in list(site._registry.items()):
        if isinstance(model_admin, ModelAdmin):
            continue
        original = type(model_admin)
        checked = type(
            original.__name__,
            (CalendarDatesMixin, CheckedActionsMixin, CheckedInputMixin, original),
            {"__module__": original.__module__},
        )
        site.unregister(model)
        site.register(model, checked)


def _requested_pk(request, name: str) -> int | None:
    value = request.POST.get(name) or request.GET.get(name) or ""
    return int(value) if is_row_id(value) else None


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
        validate_calendar_day(day)
        try:
            return local_datetime(day, at, timezone.get_current_timezone())
        except LocalTimeError as error:
            raise ValidationError(str(error), code="local_time") from None


CLINIC_DATETIME = {
    models.DateTimeField: {"form_class": ClinicDateTimeField, "widget": widgets.AdminSplitDateTime}
}


def clinic_zone(clinic: Clinic | None) -> ZoneInfo:
    return clinic.tz if clinic else zone(settings.CLINIC_TIME_ZONE)


def _follow(obj, path: str):
    for name in path.split("__") if path else ():
        obj = getattr(obj, name)
    return obj


class ClinicZoneMixin:
    """Shows an object's times in the zone of its clinic, which ``clinic_path`` names.

    ``clinic_path`` is the lookup from the object to its clinic, spelled as in a
    queryset filter ("clinic", "patient__clinic"); "" when the object is a
    clinic; None for the default zone (settings.CLINIC_TIME_ZONE). There is no
    default: a page that forgets it fails on first use instead of quietly
    showing another clinic's hours.
    """

    clinic_path: str | None

    def clinic_of(self, obj) -> Clinic | None:
        if self.clinic_path is None:
            return None
        return _follow(obj, self.clinic_path)

    def clinic_time(self, obj, moment: datetime | None, fmt: str = "%a %Y-%m-%d %H:%M %Z") -> str:
        if moment is None:
            return ""
        return timezone.localtime(moment, clinic_zone(self.clinic_of(obj))).strftime(fmt)


class ClinicTimeMixin(ClinicZoneMixin):
    """Change forms, too, read and show times in the zone of the object's clinic.

    The server's zone is only a default (settings.CLINIC_TIME_ZONE); a clinic in
    another zone must not have its 10:00 stored as someone else's 10:00.
    """

    formfield_overrides = CLINIC_DATETIME

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        clinic = self.clinic_of(obj) if obj else self._requested_clinic(request)
        with timezone.override(clinic_zone(clinic)):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            # Drawn here, not after the view returns: the form shows its times in the
            # zone they are read back in (saved unchanged, a time must stay put).
            if hasattr(response, "render"):
                response.render()
            return response

    def _requested_clinic(self, request) -> Clinic | None:
        """The clinic of an object not saved yet, through the first step of ``clinic_path``.

        That step is a form field: a visit's clinic is that of the patient the add
        form was opened with (?patient=7) or that was submitted.
        """
        if not self.clinic_path:
            return None
        first, _, rest = self.clinic_path.partition("__")
        pk = _requested_pk(request, first)
        if not pk:
            return None
        related = self.model._meta.get_field(first).related_model._default_manager
        found = (related.select_related(rest) if rest else related).filter(pk=pk).first()
        return _follow(found, rest) if found else None

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if isinstance(field, ClinicDateTimeField):
            zone_note = f"Clinic time ({timezone.get_current_timezone_name()})."
            field.help_text = f"{field.help_text} {zone_note}".strip()
        return field


class IntervalAdmin(CalendarDatesMixin, ClinicTimeMixin, ModelAdmin):
    """A stretch of time (closure, time off, imported busy time), shown in clinic time."""

    @admin.display(description="Starts (clinic time)", ordering="start")
    def starts_local(self, obj):
        return self.clinic_time(obj, obj.start)

    @admin.display(description="Ends (clinic time)", ordering="end")
    def ends_local(self, obj):
        return self.clinic_time(obj, obj.end)
