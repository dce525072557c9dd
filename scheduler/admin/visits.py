"""Visits, and booking them from the admin.

A visit is never written directly: the Visit form checks the same rules as
``scheduler.booking`` and saving goes through ``book`` / ``move`` / the status
actions, so the admin cannot double-book a room or skip a safety gate that the
rest of the system enforces.
"""

from datetime import UTC

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from scheduler import booking
from scheduler.admin.base import (
    AuditedMixin,
    CalendarDatesMixin,
    ClinicTimeMixin,
    ClinicZoneMixin,
    ModelAdmin,
    PhoneSearchMixin,
    ReadOnlyMixin,
    TabularInline,
    clinician_only,
)
from scheduler.models import (
    OPEN_STATUSES,
    AuditAction,
    Visit,
    VisitKind,
    VisitParticipant,
    VisitStatus,
)

# What a visit's row shows, read in the same query as the visits.
VISIT_ROW = ("patient__clinic", "visit_type__clinic", "clinician", "room")


def visible_visits(request, visits):
    """``visits`` with what their rows show; a clinician sees only their own."""
    visits = visits.select_related(*VISIT_ROW)
    clinician = clinician_only(request)
    return visits if clinician is None else visits.for_clinician(clinician)


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
    "cancelled_late",
    "moves_by_patient",
    "changed_by_patient_at",
    "created_at",
    "updated_at",
)


@admin.register(VisitParticipant)
class VisitParticipantAdmin(ClinicZoneMixin, ReadOnlyMixin, ModelAdmin):
    """Who is on which visit when: read-only (booking writes it); no patient names shown."""

    clinic_path = "visit__visit_type__clinic"  # where the visit takes place
    list_display = ("visit_link", "clinician", "role", "starts_local", "ends_local", "holds_time")
    list_filter = ("role", "holds_time", ("clinician", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("clinician", "visit__visit_type__clinic")
    fields = list_display
    readonly_fields = list_display
    ordering = ("-start",)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        clinician = clinician_only(request)
        return (
            queryset
            if clinician is None
            else queryset.filter(visit__participants__clinician=clinician)
        )

    @admin.display(description="Visit")
    def visit_link(self, obj):
        return format_html('<a href="../visit/{}/change/">Visit {}</a>', obj.visit_id, obj.visit_id)

    @admin.display(description="From (clinic time)", ordering="start")
    def starts_local(self, obj):
        return self.clinic_time(obj, obj.start)

    @admin.display(description="Until")
    def ends_local(self, obj):
        return self.clinic_time(obj, obj.end)


@admin.register(Visit)
class VisitAdmin(AuditedMixin, CalendarDatesMixin, ClinicTimeMixin, PhoneSearchMixin, ModelAdmin):
    # The clinic the visit takes place at, in its zone: a patient of one location
    # may be booked at another (its visit types are that location's).
    clinic_path = "visit_type__clinic"
    audit_change = AuditAction.VIEWED_VISIT
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
        ("visit_type__clinic", admin.RelatedOnlyFieldListFilter),
        "visit_type__kind",
        "visit_type",
        "clinician",
        RideHomeFilter,
    )
    list_select_related = VISIT_ROW
    search_fields = (
        "patient__first_name",
        "patient__last_name",
        "patient__email",
        "patient__mobile",
    )
    phone_path = "patient__mobile"
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
        return visible_visits(request, super().get_queryset(request))

    def get_fieldsets(self, request, obj=None):
        visit = (None, {"fields": ("patient", "visit_type", ("clinician", "room"), "start")})
        ride = ("Safety", {"fields": ("ride_home_arranged",)})
        if obj is None:
            return (visit, ride)
        return (visit, ride, ("Record", {"fields": ("team", *VISIT_RECORD_FIELDS)}))

    def get_readonly_fields(self, request, obj=None):
        # Status changes only through the actions below (booking's transitions);
        # a visit keeps its patient and type (book a new one instead).
        readonly = ["team", *VISIT_RECORD_FIELDS]
        if obj is not None:
            readonly += ["patient", "visit_type"]
            if not obj.is_open:
                readonly += ["clinician", "room", "start"]
            if obj.status not in (*OPEN_STATUSES, VisitStatus.CHECKED_IN):
                readonly.append("ride_home_arranged")
        return readonly

    @admin.display(description="Team")
    def team(self, obj):
        """Everyone on the visit and when (the desk's visit page swaps people)."""
        return "; ".join(
            f"{part.clinician} ({part.get_role_display().lower()}, "
            f"{self.clinic_time(obj, part.start, '%H:%M')}-{self.clinic_time(obj, part.end, '%H:%M')})"
            for part in obj.staff
        )

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
        return self.clinic_time(obj, obj.start)

    @admin.display(description="Ends", ordering="end")
    def ends_local(self, obj):
        return self.clinic_time(obj, obj.end, "%H:%M")

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
        for visit in queryset.select_related(*VISIT_ROW):
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


# -- the patient page's visits ------------------------------------------------------


class PatientVisitInline(ClinicZoneMixin, ReadOnlyMixin, TabularInline):
    """The patient's visits, read-only: changes go through the Visit page and its rules."""

    clinic_path = "visit_type__clinic"
    model = Visit
    extra = 0
    fields = ("starts_local", "visit_type", "clinician", "room", "status")
    readonly_fields = fields
    show_change_link = True
    ordering = ("-start",)

    def get_queryset(self, request):
        return visible_visits(request, super().get_queryset(request))

    @admin.display(description="Starts (clinic time)")
    def starts_local(self, obj):
        return self.clinic_time(obj, obj.start)
