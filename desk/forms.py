"""Forms of the front desk's and the patient's pages."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django import forms
from django.conf import settings
from django.http import Http404
from django.utils import timezone

from plans.generator import Preferences
from plans.models import Protocol
from scheduler.availability import Slot
from scheduler.booking import seat_staff
from scheduler.models import Clinic, Clinician, Patient, Room, Visit, Weekday, is_row_id
from scheduler.timezones import FIRST_DAY, LAST_DAY, day_input, validate_calendar_day


def slot_value(slot: Slot) -> str:
    # The slot as one form value: who, where and when (ISO with offset, so
    # the instant survives DST).
    staff = ",".join(str(member.clinician.pk) for member in slot.staff)
    return (
        f"{slot.clinician.pk}:{slot.room.pk if slot.room else ''}:{staff}:{slot.start.isoformat()}"
    )


class MoveForm(forms.Form):
    """A new time for ``visit``: one of the free ``slots`` offered, or one offered earlier.

    A time no longer offered is not refused here: another desk may have taken
    it since the page was drawn, and the booking rules, which decide the move,
    say so in their own words ("Dr. ... is booked 10:00-11:00 by another
    visit."). The form only checks that the value names a time, a clinician
    and a room of the visit's clinic.
    """

    slot = forms.CharField(label="New time", widget=forms.Select)

    def __init__(self, *args, slots: list[Slot], visit: Visit, **kwargs):
        super().__init__(*args, **kwargs)
        self.visit = visit
        self.slots = {slot_value(slot): slot for slot in slots}
        by_day: dict[date, list] = {}
        for value, slot in self.slots.items():
            team = " + ".join(str(c) for c in [slot.clinician, *(m.clinician for m in slot.staff)])
            label = f"{slot.start:%H:%M}-{slot.end:%H:%M} {team}"
            if slot.room:
                label += f", {slot.room}"
            by_day.setdefault(slot.start.date(), []).append((value, label))
        self.fields["slot"].widget.choices = [("", "Choose a free time")] + [
            (f"{day:%a %Y-%m-%d}", choices) for day, choices in by_day.items()
        ]

    def clean_slot(self) -> Slot:
        value = self.cleaned_data["slot"]
        slot = self.slots.get(value) or self._read(value)
        if slot is None:
            raise forms.ValidationError("Choose one of the times offered.", code="invalid")
        return slot

    def _read(self, value: str) -> Slot | None:
        """The slot ``value`` names, if it names an instant and people and places of the clinic."""
        clinician_pk, _, rest = value.partition(":")
        room_pk, _, rest = rest.partition(":")
        staff_text, _, start_text = rest.partition(":")
        clinic = self.visit.clinic
        try:
            staff_pks = [_pk(pk) for pk in staff_text.split(",") if pk]
            start = datetime.fromisoformat(start_text)
            if start.tzinfo is None:
                return None
            start = start.astimezone(clinic.tz)
            end = start + self.visit.visit_type.duration
            clinician = Clinician.objects.filter(clinic=clinic, pk=_pk(clinician_pk)).first()
            room = Room.objects.filter(clinic=clinic, pk=_pk(room_pk)).first() if room_pk else None
            staff = list(Clinician.objects.filter(clinic=clinic, pk__in=staff_pks))
        except (ValueError, OverflowError):
            return None
        if clinician is None or (room_pk and room is None) or len(staff) != len(staff_pks):
            return None
        members, *_ = seat_staff(self.visit.visit_type, staff)  # the move names what is wrong
        return Slot(start, end, clinician, room, tuple(members))

    @property
    def chosen(self) -> Slot:
        return self.cleaned_data["slot"]


class CancelForm(forms.Form):
    reason = forms.CharField(
        label="Reason", max_length=300, widget=forms.TextInput(attrs={"size": 40})
    )


class PlanForm(forms.Form):
    patient = forms.ModelChoiceField(queryset=Patient.objects.none())
    protocol = forms.ModelChoiceField(queryset=Protocol.objects.none())
    start_date = forms.DateField(
        label="Earliest start",
        widget=day_input(),
        validators=[validate_calendar_day],
    )
    weekdays = forms.TypedMultipleChoiceField(
        label="Preferred weekdays",
        choices=Weekday.choices,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: any day.",
    )
    time_from = forms.TimeField(
        label="Preferred from", required=False, widget=forms.TimeInput(attrs={"type": "time"})
    )
    time_to = forms.TimeField(
        label="Preferred until", required=False, widget=forms.TimeInput(attrs={"type": "time"})
    )

    def __init__(self, *args, clinic: Clinic, **kwargs):
        super().__init__(*args, **kwargs)
        self.clinic = clinic
        protocols = Protocol.objects.filter(clinic=clinic, is_active=True)
        self.fields["protocol"].queryset = protocols
        # The clinic's patients; with a protocol open to the organisation's other
        # clinics, theirs too (Protocol.refusal_for says who may follow which).
        self.fields["patient"].queryset = (
            Patient.objects.all()
            if protocols.filter(open_to_other_clinics=True).exists()
            else Patient.objects.seen_at(clinic)
        )

    def clean_start_date(self) -> date:
        # A past day means "from now" (the generator starts there); a plan
        # can start no later than its first visit could be booked.
        day = self.cleaned_data["start_date"]
        last = timezone.localdate(timezone=self.clinic.tz) + timedelta(
            days=settings.BOOKING_HORIZON_DAYS
        )
        if day > last:
            raise forms.ValidationError(
                "Visits can be booked at most %(days)s days ahead: start on %(last)s or earlier.",
                code="beyond_horizon",
                params={"days": settings.BOOKING_HORIZON_DAYS, "last": f"{last:%a %Y-%m-%d}"},
            )
        return day

    def clean(self):
        data = super().clean()
        start, end = data.get("time_from"), data.get("time_to")
        if (start is None) != (end is None):
            raise forms.ValidationError("Give both ends of the preferred times, or neither.")
        if start is not None and start >= end:
            raise forms.ValidationError("The preferred times must end after they start.")
        patient, protocol = data.get("patient"), data.get("protocol")
        if patient and protocol and (refusal := protocol.refusal_for(patient)):
            raise forms.ValidationError(refusal)
        return data

    def preferences(self) -> Preferences:
        data = self.cleaned_data
        windows = ((data["time_from"], data["time_to"]),) if data.get("time_from") else ()
        return Preferences(weekdays=frozenset(data.get("weekdays") or ()), time_windows=windows)


def chosen(queryset, value: str | None):
    """The row of ``queryset`` whose id was posted as ``value``, else None.

    A form field reads the id, so "abc", "", "1e9", "-1" or an id too large for
    the database are refused like the id of a row outside ``queryset`` (another
    patient's visit), not raised as errors mid-query.
    """
    try:
        return forms.ModelChoiceField(queryset).clean(value)
    except forms.ValidationError:
        return None


def _pk(text: str) -> int:
    number = int(text)
    if not 0 < number < 2**63:  # what a database key can hold
        raise ValueError(text)
    return number


def parse_day(text: str) -> date:
    return datetime.strptime(text, "%Y-%m-%d").date()


def day_in_url(text: str) -> date:
    """The date a page's URL names (``2030-01-04``); 404 for anything else or out of range."""
    try:
        day = date.fromisoformat(text)
    except ValueError as error:
        raise Http404("Not a date.") from error
    if not FIRST_DAY <= day <= LAST_DAY:
        raise Http404("No schedule that far away.")
    return day


@dataclass(frozen=True)
class GridChoice:
    """A free time clicked on the desk's grid: book ``clinician`` at ``start`` (clinic's zone)."""

    clinician: Clinician
    start: datetime

    @property
    def query(self) -> dict:
        """The query string that carries the choice from page to page."""
        return {"with": self.clinician.pk, "at": self.start.isoformat()}


def grid_choice(data, clinic: Clinic) -> GridChoice | None:
    """The clinician and time a free cell of the grid asks to book (``?with=<id>&at=<ISO time
    with its UTC offset>``), or None when they name no active clinician of the clinic or
    no instant: the pages then work as they do without."""
    pk, text = data.get("with", ""), data.get("at", "")
    if not is_row_id(pk) or not text:
        return None
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        return None
    if start.tzinfo is None or not FIRST_DAY <= start.date() <= LAST_DAY:
        return None
    clinician = Clinician.objects.filter(clinic=clinic, pk=int(pk), is_active=True).first()
    return GridChoice(clinician, start.astimezone(clinic.tz)) if clinician else None
