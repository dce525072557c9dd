"""The desk books one visit of any type for a patient: a visit type, a window of free times, one chosen.

The times offered are found as the visit page finds move times
(``desk.moves``): a window of days from today (*Earlier times*, *Later
times*), free for the whole team the type needs, a room and the patient
(``scheduler.availability``), within the booking horizon and allowed by the
registered booking rules. ``scheduler.booking.book`` then decides, checking
every rule again; its refusals are shown as they are worded (a time another
desk took meanwhile too).
"""

from datetime import date

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from desk import moves
from desk.forms import MoveForm, day_in_url
from desk.frontdesk import desk_clinic, desk_only, window_url
from desk.moves import MoveTimes
from scheduler import audit, booking
from scheduler.availability import Availability, Slot
from scheduler.booking import BookingError
from scheduler.models import AuditAction, Clinic, Patient, Visit, VisitStatus, VisitType

RIDE_HOME_CHOICES = [
    ("yes", "Yes: an adult will drive the patient home"),
    ("no", "Not yet: the desk will flag the visit until it is"),
]


def new_visit(patient: Patient, visit_type: VisitType) -> Visit:
    """The visit to book, not saved: what the booking rules and the time form read."""
    return Visit(patient=patient, visit_type=visit_type, status=VisitStatus.BOOKED)


def booking_times(
    patient: Patient, visit_type: VisitType, clinic: Clinic, first: date | None = None
) -> MoveTimes:
    """Times a ``visit_type`` visit may be booked at for ``patient`` in the window opening on ``first``.

    Earliest first, with any qualified lead and whoever is free for the rest
    of the team; default window: from today. A fixed number of queries.
    """
    now = timezone.now()
    times = moves.window(clinic, first or timezone.localdate(now, timezone=clinic.tz), now)
    availability = Availability.for_days(clinic, times.first, times.last, patients=[patient])
    free = [
        slot
        for slot in availability.free_slots(
            visit_type, times.first, times.last, patient=patient, step=moves.STEP
        )
        if moves.bookable(slot, now)
    ]
    visit = new_visit(patient, visit_type)
    starts = [slot.start for slot in free] or [now]
    rules = booking.rules_for_times(visit, min(starts), max(starts))
    moves.offer(times, free, lambda slot: rules(moves.moved_to(visit, slot)), clinic, now)
    return times


class BookingForm(MoveForm):
    """One of the times offered (read as the visit page reads a move's), and for a dose the ride home."""

    ride_home_arranged = forms.ChoiceField(
        label="Is a ride home arranged?", choices=RIDE_HOME_CHOICES, widget=forms.RadioSelect
    )

    def __init__(self, *args, slots: list[Slot], visit: Visit, **kwargs):
        super().__init__(*args, slots=slots, visit=visit, **kwargs)
        self.fields["slot"].label = "Time"
        if not visit.visit_type.needs_ride_home:
            del self.fields["ride_home_arranged"]

    @property
    def ride_home(self) -> bool:
        return self.cleaned_data.get("ride_home_arranged") == "yes"


def _book(form: BookingForm, patient: Patient, visit_type: VisitType) -> Visit:
    return booking.book_slot(patient, visit_type, form.chosen, ride_home_arranged=form.ride_home)


@require_http_methods(["GET", "POST"])
@desk_only
def book_visit(request: HttpRequest, pk: int) -> HttpResponse:
    clinic = desk_clinic()
    person = get_object_or_404(Patient.objects.select_related("clinic"), pk=pk, clinic=clinic)
    visit_types = list(VisitType.objects.filter(clinic=clinic).prefetch_related("staffing"))
    asked = request.GET.get("type", "")
    visit_type = next((kind for kind in visit_types if str(kind.pk) == asked), None)
    first = day_in_url(request.GET["from"]) if "from" in request.GET else None
    here = reverse("desk_book_visit", args=[person.pk])
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "patient": person,
        "visit_types": visit_types,
        "visit_type": visit_type,
        "problems": [],
    }
    if visit_type is not None:
        times = booking_times(person, visit_type, clinic, first)
        visit = new_visit(person, visit_type)
        form = BookingForm(slots=times.slots, visit=visit)
        if request.method == "POST":
            form = BookingForm(request.POST, slots=times.slots, visit=visit)
            if form.is_valid():
                try:
                    booked = _book(form, person, visit_type)
                except BookingError as error:
                    context["problems"] = error.problems
                else:
                    messages.success(
                        request,
                        f"Booked: {visit_type}, "
                        f"{timezone.localtime(booked.start, clinic.tz):%a %Y-%m-%d %H:%M}, "
                        f"with {booked.clinician}.",
                    )
                    return redirect("desk_patient", person.pk)
        choice = {"type": visit_type.pk}
        context |= {
            "times": times,
            "form": form,
            "earlier_url": window_url(here, choice, times.earlier),
            "later_url": window_url(here, choice, times.later),
        }
    elif request.method == "POST":
        context["problems"] = ["Choose a visit type first."]
    audit.record(request, AuditAction.VIEWED_PATIENT, person, "booking a visit")
    return render(request, "desk/book_visit.html", context)
