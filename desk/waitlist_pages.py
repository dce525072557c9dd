"""The waitlist's pages: the desk's list and form, the patient's form, and an offer's page."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from config.throttle import token_rate_limited
from desk.frontdesk import desk_only
from desk.patient_page import link_patient, private
from notifications.content import when_text
from scheduler.models import is_row_id
from scheduler.roles import working_clinic
from scheduler.timezones import zone
from waitlist import taking
from waitlist.forms import DeskEntryForm, FilterForm, PatientEntryForm
from waitlist.models import EntryStatus, FreedSlot, Offer, Outcome, SlotStatus, WaitlistEntry
from waitlist.offers import offer_for_link, queue_offers

LIST_LIMIT = 300


def _added(request: HttpRequest, form, **what) -> WaitlistEntry | None:
    if not form.is_valid():
        return None
    try:
        entry = form.entry(**what)
    except ValidationError:
        return None
    entry.save()
    # Freed times nobody took yet may suit the new entry.
    queue_offers()
    return entry


@never_cache
@desk_only
@require_http_methods(["GET", "POST"])
def desk_waitlist(request: HttpRequest) -> HttpResponse:
    clinic = working_clinic(request)
    form = DeskEntryForm(clinic=clinic)
    if request.method == "POST":
        if request.POST.get("action") == "remove":
            pk = request.POST.get("entry", "")
            removed = is_row_id(pk) and WaitlistEntry.objects.at_clinic(clinic).filter(
                pk=pk, status=EntryStatus.WAITING
            ).update(status=EntryStatus.REMOVED)
            if removed:
                messages.success(request, "Taken off the waitlist.")
            else:
                messages.error(request, "That entry is not waiting (any more).")
            return redirect("desk_waitlist")
        form = DeskEntryForm(request.POST, clinic=clinic)
        entry = _added(request, form, created_by=request.user)
        if entry is not None:
            messages.success(request, f"{entry.patient} is on the waitlist for {entry.wanted}.")
            return redirect("desk_waitlist")
    query = request.GET.copy()
    query.setdefault("status", EntryStatus.WAITING)
    # Its own ids: the form for adding an entry below has fields of the same names.
    filters = FilterForm(query, clinic=clinic, auto_id="filter_%s")
    offers = Offer.objects.select_related("slot").order_by("sent_at", "pk")
    entries = filters.filter(
        WaitlistEntry.objects.at_clinic(clinic)
        .select_related("patient", "visit_type", "step__protocol", "gives_up")
        .prefetch_related(Prefetch("offers", queryset=offers))
        .order_by("-priority", "created_at", "pk")
    )[:LIST_LIMIT]
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "form": form,
        "filters": filters,
        "entries": list(entries),
        "open_slots": list(
            FreedSlot.objects.filter(
                clinic=clinic,
                status__in=(SlotStatus.OPEN, SlotStatus.UNFILLED),
                start__gt=timezone.now(),
            ).select_related("visit_type", "clinician")[:LIST_LIMIT]
        ),
    }
    return render(request, "waitlist/desk.html", context)


@token_rate_limited
@never_cache
@require_http_methods(["GET", "POST"])
def patient_join(request: HttpRequest, token: str) -> HttpResponse:
    """From the patient's page: ask for an earlier time for one of their visits."""
    patient = link_patient(request, token)
    tz = zone(patient.time_zone)
    form = PatientEntryForm(request.POST or None, patient=patient, tz=tz)
    if request.method == "POST" and _added(request, form) is not None:
        messages.success(
            request, _("You are on the waitlist: we will text or email you if a time opens up.")
        )
        return redirect("patient_page", token=token)
    waiting = (
        WaitlistEntry.objects.waiting()
        .filter(patient=patient)
        .select_related("gives_up", "visit_type", "step__visit_type")
    )
    context = {
        "patient": patient,
        "clinic": patient.clinic,
        "tz": tz,
        "form": form,
        "waiting": list(waiting),
        "token": token,
    }
    return private(render(request, "waitlist/patient_join.html", context))


@token_rate_limited
@never_cache
@require_http_methods(["GET", "POST"])
def offer_page(request: HttpRequest, token: str) -> HttpResponse:
    """An offer's link: the time, without what the visit is, and "Take this time"."""
    offer = offer_for_link(token)
    if offer is None:
        raise Http404("This link does not work. Ask the clinic.")
    request.audit_actor = "waitlist offer link"
    translation.activate(offer.patient.language)  # until the request ends (config.middleware)
    answer = None
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "take":
            answer = taking.take(offer.pk, "link")
        elif action == "decline":
            answer = taking.decline(offer.pk, "link")
        else:
            return HttpResponse("Choose to take the time or not.", status=400)
        offer.refresh_from_db()
    patient, clinic = offer.patient, offer.slot.clinic
    context = {
        "clinic": clinic,
        "tz": zone(patient.time_zone),
        "first_name": patient.first_name,
        "when": when_text(offer.slot.start, patient.time_zone, clinic.time_zone),
        "until": when_text(offer.expires_at, patient.time_zone, clinic.time_zone),
        "offer": offer,
        "is_open": offer.outcome == Outcome.OPEN and timezone.now() < offer.expires_at,
        "answer": answer,
        "closed_text": {
            Outcome.TAKEN: _("This time is yours."),
            Outcome.TOO_LATE: _(taking.TAKEN),
            Outcome.EXPIRED: _(taking.EXPIRED),
            Outcome.DECLINED: _(taking.DECLINED),
        }.get(offer.outcome, _(taking.EXPIRED)),
    }
    return private(render(request, "waitlist/offer.html", context))
