"""The patient's private page at /p/<token>/: upcoming visits, instructions, confirm, move, cancel.

Made for a phone: the next visit first, with what to do before it; later
visits folded, each with its own instructions.

Moving and cancelling follow the clinic's rules for changes online
(``desk.self_service``); where they do not allow it, the page says why and
the patient can still ask the desk to reschedule.

/p/ itself (no token: what a calendar entry or an invite links to, since
those are kept and shared too long to carry a private link) tells a patient
how to get their link.

Anyone holding the link sees the page, so it shows only this patient's own
visits, is never cached or indexed, and sends no referrer (the token is in the
URL) to other sites. A wrong, revoked or expired link gets the same 404.
"""

from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import dateformat, timezone, translation
from django.utils.translation import get_language, pgettext
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from config.throttle import token_rate_limited
from desk import self_service
from desk.forms import chosen, day_in_url
from notifications.models import InboundKind, InboundMessage
from notifications.patient_links import ask_to_reschedule, patient_for_link
from questionnaires import answering
from scheduler import audit, booking
from scheduler.booking import BookingError
from scheduler.calendars import Audience, build_calendar
from scheduler.models import AuditAction, Clinic, Patient, Visit
from scheduler.timezones import zone


def link_patient(request: HttpRequest, token: str) -> Patient:
    patient = patient_for_link(token)
    if patient is None:
        raise Http404("This link does not work (any more). Ask the clinic for a new one.")
    # Whoever holds the link acts here, whether or not a staff member is signed in.
    audit.act_as_patient_link(request)
    # The rest of the request speaks the patient's language (config.middleware
    # puts the staff's back afterwards).
    translation.activate(patient.language)
    return patient


def private(response: HttpResponse) -> HttpResponse:
    response["X-Robots-Tag"] = "noindex, nofollow"
    # "same-origin", not "no-referrer": with no-referrer Chrome sends "Origin: null"
    # on the page's own forms and CSRF refuses them; links out still carry no token.
    response["Referrer-Policy"] = "same-origin"
    return response


@require_safe
def entrance(request: HttpRequest) -> HttpResponse:
    """Where links without a token land: how to get a private link, in the clinic's words."""
    context = {"clinic": Clinic.objects.installation()}
    return private(render(request, "desk/patient_entrance.html", context))


@token_rate_limited
@never_cache
@require_http_methods(["GET", "POST"])
def patient_page(request: HttpRequest, token: str) -> HttpResponse:
    patient = link_patient(request, token)
    if request.method == "POST" and request.POST.get("action") == "language":
        return choose_language(request, patient, token)
    if request.method == "POST":
        # Only this patient's visits: another patient's visit id, or no id, is a 404.
        visit = chosen(
            Visit.objects.scheduled()
            .upcoming()
            .filter(patient=patient)
            .select_related("visit_type__clinic"),
            request.POST.get("visit"),
        )
        if visit is None:
            raise Http404("No such visit.")
        action = request.POST.get("action")
        if action == "confirm":
            try:
                booking.confirm(visit)
            except booking.BookingError:
                # The reasons (screening, spacing) are for staff, not for this page.
                messages.error(
                    request,
                    _("We could not confirm this visit online. Please call us: %(phone)s.")
                    % {"phone": visit.clinic.phone},
                )
            else:
                messages.success(request, _("Thank you: your visit is confirmed."))
        elif action == "reschedule":
            ask_to_reschedule(patient, visit)
            messages.success(request, _("Thank you: we will call you to find a new time."))
        return redirect("patient_page", token=token)
    # A visit the patient asked to move waits for the desk's call, not for a confirmation.
    open_request = InboundMessage.objects.inbox().filter(
        visit=OuterRef("pk"), kind=InboundKind.RESCHEDULE
    )
    visits = list(
        Visit.objects.for_patient(patient)
        .upcoming()
        .scheduled()
        .annotate(asked_to_move=Exists(open_request))
        .select_related("visit_type__clinic", "clinician", "room")
        .prefetch_related("visit_type__translated_instructions")
        .order_by("start")
    )
    now = timezone.now()
    for visit in visits:
        visit.patient = patient  # one patient: not read again for each visit
        # The clinic's own words in the patient's language, else its English ones.
        visit.preparation, visit.aftercare, _translated = visit.visit_type.instructions_in(
            patient.language
        )
        # Why the patient cannot move or cancel it here (None: they can).
        visit.not_movable = self_service.why_not_movable(visit, now)
        visit.not_changeable = self_service.why_not_changeable(visit, now)
    # On a phone the next visit comes first, whole, with what to do before it;
    # the later ones fold away, each with its own instructions. A dose among
    # them is named up front: its preparation (fasting, a ride home) starts early.
    next_visit, later = (visits[0], visits[1:]) if visits else (None, [])
    next_dosing = None
    if next_visit is not None and not next_visit.visit_type.is_dosing:
        next_dosing = next((v for v in later if v.visit_type.is_dosing), None)
    audit.record(request, AuditAction.VIEWED_PATIENT_LINK, patient)
    context = {
        "patient": patient,
        "clinic": patient.clinic,
        "tz": zone(patient.time_zone),
        "next_visit": next_visit,
        "later": later,
        "next_dosing": next_dosing,
        "token": token,
        "answerable": answering.answerable_now(patient),
    }
    return private(render(request, "desk/patient_page.html", context))


def choose_language(request: HttpRequest, patient: Patient, token: str) -> HttpResponse:
    """The patient picks the language of their texts, emails and page; the page answers in it."""
    language = request.POST.get("language", "")
    if language not in dict(settings.LANGUAGES):
        messages.error(request, _("Choose one of the languages listed."))
        return redirect("patient_page", token=token)
    if language != patient.language:
        patient.language = language
        patient.save(update_fields=["language", "updated_at"])
        audit.record(request, AuditAction.CHANGED_PATIENT, patient, f"language: {language}")
    translation.activate(language)
    # Translators: say the language of the catalogue itself ("... now in Spanish", in Spanish).
    messages.success(request, _("Your texts, emails and this page are now in English."))
    return redirect("patient_page", token=token)


@token_rate_limited
@never_cache
@require_safe
def visit_ics(request: HttpRequest, token: str, pk: int) -> HttpResponse:
    """One visit as an .ics file, for "add to calendar" (the feed URL cannot be shown again)."""
    patient = link_patient(request, token)
    visit = get_object_or_404(
        Visit.objects.scheduled().select_related("visit_type__clinic", "clinician", "room"),
        pk=pk,
        patient=patient,
    )
    ics = build_calendar(
        [visit],
        audience=Audience.PATIENT,
        clinic=visit.clinic,
        tz=zone(patient.time_zone),
        now=timezone.now(),
    )
    response = HttpResponse(ics, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="appointment.ics"'
    return private(response)


def _own_visit(request: HttpRequest, token: str, pk: int) -> tuple[Visit, dict]:
    """The link's patient's visit ``pk`` (404 for anyone else's), and what its pages show."""
    patient = link_patient(request, token)
    visit = get_object_or_404(
        Visit.objects.for_patient(patient)
        .scheduled()
        .select_related("patient__clinic", "visit_type__clinic", "clinician", "room")
        .prefetch_related("participants__clinician", "visit_type__staffing"),
        pk=pk,
    )
    context = {
        "patient": patient,
        "clinic": visit.clinic,  # where the visit is held: its phone, its rules
        "tz": zone(patient.time_zone),
        "token": token,
        "visit": visit,
    }
    return visit, context


def _start(text: str | None) -> datetime | None:
    """An aware instant from the page's ISO text, else None."""
    try:
        start = datetime.fromisoformat(text or "")
    except ValueError:
        return None
    return start if start.tzinfo is not None else None


@token_rate_limited
@never_cache
@require_http_methods(["GET", "POST"])
def move_visit(request: HttpRequest, token: str, pk: int) -> HttpResponse:
    """The times the patient may move a visit to; with ``start``, that time to confirm."""
    visit, context = _own_visit(request, token, pk)
    tz = context["tz"]
    refusal = self_service.why_not_movable(visit)
    if refusal:
        context["refusal"] = refusal
        return private(render(request, "desk/patient_move.html", context, status=409))
    start = _start(
        request.POST.get("start") if request.method == "POST" else request.GET.get("start")
    )
    if request.method == "POST":
        if start is None:
            raise Http404("No such time.")
        try:
            moved = self_service.move_by_patient(visit, start)
        except BookingError as error:
            context |= {"start": start, "problems": error.problems}
            return private(render(request, "desk/patient_move.html", context, status=409))
        local = timezone.localtime(moved[0].start, tz)
        # Translators: a Django date format: "Tuesday 4 February at 10:00 AM".
        when = dateformat.format(local, pgettext("date format", r"l j F \a\t g:i A"))
        messages.success(
            request,
            _("Your visit is moved to %(when)s.") % {"when": when}
            + (" " + _("The visits that follow it moved with it.") if len(moved) > 1 else "")
            + " "
            + _("We have sent you the new time."),
        )
        return redirect("patient_page", token=token)
    if start is not None:  # the time chosen, to confirm
        offer, problems = self_service.offer_at(visit, start)
        context |= {"start": start, "offer": offer, "problems": problems}
        return private(render(request, "desk/patient_move.html", context))
    first = day_in_url(request.GET["from"]) if "from" in request.GET else None
    found = self_service.offered_times(visit, first=first)
    context |= {"times": found.times, "offers": found.offers}
    return private(render(request, "desk/patient_move.html", context))


@token_rate_limited
@never_cache
@require_http_methods(["GET", "POST"])
def cancel_visit(request: HttpRequest, token: str, pk: int) -> HttpResponse:
    """The clinic's cancellation policy, then the patient's cancellation."""
    visit, context = _own_visit(request, token, pk)
    context["refusal"] = self_service.why_not_changeable(visit)
    context["late"] = self_service.is_late(visit)
    context["policy"] = visit.clinic.cancellation_policy_in(get_language()).text
    if context["refusal"]:
        return private(render(request, "desk/patient_cancel.html", context, status=409))
    if request.method == "POST":
        try:
            self_service.cancel_by_patient(visit)
        except BookingError as error:
            context["refusal"] = " ".join(error.problems)
            return private(render(request, "desk/patient_cancel.html", context, status=409))
        messages.success(request, _("Your visit is cancelled. We have sent you a note of it."))
        return redirect("patient_page", token=token)
    return private(render(request, "desk/patient_cancel.html", context))
