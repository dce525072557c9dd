"""The desk books one visit of any type for a patient: a visit type, a window of free times, one chosen.

The times offered are found as the visit page finds move times
(``desk.moves``): a window of days from today (*Earlier times*, *Later
times*), free for the whole team the type needs, a room and the patient
(``scheduler.availability``), within the booking horizon and allowed by the
registered booking rules. ``scheduler.booking.book`` then decides, checking
every rule again; its refusals are shown as they are worded (a time another
desk took meanwhile too).

Coming from a free time clicked on the desk's day or week grid
(``desk.forms.grid_choice``), the page offers that day's times with that
clinician leading, every quarter hour, the time clicked chosen when it is
free for the visit type; booked, it goes back to that day's grid.
"""

from datetime import date
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from desk import moves, time_grid
from desk.forms import GridChoice, MoveForm, day_in_url, grid_choice, slot_value
from desk.frontdesk import desk_only, window_url
from desk.moves import MoveTimes
from scheduler import audit, booking
from scheduler.availability import Availability, Slot
from scheduler.booking import BookingError
from scheduler.models import AuditAction, Clinic, Patient, Visit, VisitStatus, VisitType
from scheduler.roles import working_clinic

RIDE_HOME_CHOICES = [
    ("yes", "Yes: an adult will drive the patient home"),
    ("no", "Not yet: the desk will flag the visit until it is"),
]


def new_visit(patient: Patient, visit_type: VisitType) -> Visit:
    """The visit to book, not saved: what the booking rules and the time form read."""
    return Visit(patient=patient, visit_type=visit_type, status=VisitStatus.BOOKED)


def booking_times(
    patient: Patient,
    visit_type: VisitType,
    clinic: Clinic,
    first: date | None = None,
    choice: GridChoice | None = None,
) -> MoveTimes:
    """Times a ``visit_type`` visit may be booked at for ``patient`` in the window opening on ``first``.

    Earliest first, with any qualified lead and whoever is free for the rest
    of the team; default window: from today. With ``choice``, the day of the
    time chosen on the grid, its clinician leading, every quarter hour (the
    nearest to the time chosen are judged first). A fixed number of queries.
    """
    now = timezone.now()
    if choice is not None:
        times = moves.window(clinic, choice.start.date(), now, days=1)
    else:
        times = moves.window(clinic, first or timezone.localdate(now, timezone=clinic.tz), now)
    availability = Availability.for_days(clinic, times.first, times.last, patients=[patient])
    free = [
        slot
        for slot in availability.free_slots(
            visit_type,
            times.first,
            times.last,
            clinicians=[choice.clinician] if choice else None,
            patient=patient,
            step=time_grid.ROW if choice else moves.STEP,
        )
        if moves.bookable(slot, now)
    ]
    if choice is not None:
        free.sort(key=lambda slot: (abs(slot.start - choice.start), slot.start))
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


def _chosen(times: MoveTimes, choice: GridChoice | None) -> Slot | None:
    """The time offered that is the one chosen on the grid, if it is offered."""
    if choice is None:
        return None
    return next(
        (
            slot
            for slot in times.slots
            if slot.start == choice.start and slot.clinician.pk == choice.clinician.pk
        ),
        None,
    )


@require_http_methods(["GET", "POST"])
@desk_only
def book_visit(request: HttpRequest, pk: int) -> HttpResponse:
    clinic = working_clinic(request)
    person = get_object_or_404(Patient.objects.seen_at(clinic).select_related("clinic"), pk=pk)
    choice = grid_choice(request.GET, clinic)
    visit_types = list(VisitType.objects.filter(clinic=clinic).prefetch_related("staffing"))
    if choice is not None:
        # Only what the clinician chosen may lead.
        visit_types = [
            kind
            for kind in visit_types
            if kind.lead_seat is not None and kind.lead_seat.role_of(choice.clinician)
        ]
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
        "choice": choice,
        "problems": [],
    }
    if visit_type is not None:
        times = booking_times(person, visit_type, clinic, first, choice)
        visit = new_visit(person, visit_type)
        chosen = _chosen(times, choice)
        initial = {"slot": slot_value(chosen)} if chosen else {}
        form = BookingForm(slots=times.slots, visit=visit, initial=initial)
        if request.method == "POST":
            form = BookingForm(request.POST, slots=times.slots, visit=visit)
            if form.is_valid():
                try:
                    booked = _book(form, person, visit_type)
                except BookingError as error:
                    context["problems"] = error.problems
                else:
                    local = timezone.localtime(booked.start, clinic.tz)
                    messages.success(
                        request,
                        f"Booked: {visit_type}, {local:%a %Y-%m-%d %H:%M}, with {booked.clinician}.",
                    )
                    if choice is not None:  # back to the grid it was chosen on
                        return redirect("desk_day", local.date().isoformat())
                    return redirect("desk_patient", person.pk)
        choice_query = {"type": visit_type.pk}
        context |= {
            "times": times,
            "form": form,
            "chosen": chosen,
            "earlier_url": "" if choice else window_url(here, choice_query, times.earlier),
            "later_url": "" if choice else window_url(here, choice_query, times.later),
            "other_times_url": f"{here}?{urlencode(choice_query)}" if choice else "",
        }
    elif request.method == "POST":
        context["problems"] = ["Choose a visit type first."]
    audit.record(request, AuditAction.VIEWED_PATIENT, person, "booking a visit")
    return render(request, "desk/book_visit.html", context)
