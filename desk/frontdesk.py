"""The front desk's pages: the day and week, patients, a visit's actions, messages, new plans.

Views stay thin: the booking rules are ``scheduler.booking`` and
``plans.care_plans``, whose refusals are shown as they are worded, and the times
a visit may move to are ``desk.moves``. Every page runs a fixed number of
queries whatever the number of visits on it (tests/test_frontdesk_pages.py
asserts the bounds; the visit page's also counts what the booking rules ask
about the times it offers).
"""

import hashlib
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from urllib.parse import urlencode

from django.contrib import messages
from django.core.cache import cache
from django.db import connections, router, transaction
from django.db.models import Exists, OuterRef, Prefetch, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from billing import estimates
from billing.models import ClinicBilling
from billing.payments import schedule
from desk import time_grid
from desk.forms import CancelForm, MoveForm, PlanForm, day_in_url, grid_choice
from desk.moves import move_times, planned_visit
from desk.plan_timeline import for_care_plan, for_proposal
from desk.score_chart import charts_of
from notifications.models import InboundKind, InboundMessage, Message
from notifications.patient_links import issue_patient_link
from notifications.rules import preferences_of, text_limits_for
from plans import care_plans, rems
from plans.generator import PlanInfeasible, Proposal, generate
from plans.models import CarePlan, MonitoringFormTask, PlannedVisit, Screening
from questionnaires.safety import open_alerts
from questionnaires.scores import courses_for, may_see_scores
from scheduler import audit, booking
from scheduler.availability import Availability, closures_on
from scheduler.booking import BookingError
from scheduler.models import (
    AuditAction,
    Clinic,
    Clinician,
    Patient,
    Room,
    Visit,
    VisitParticipant,
    VisitStatus,
    VisitType,
    is_row_id,
)
from scheduler.roles import DESK_ROLES, role_required, working_clinic
from waitlist.models import freed_without_taker

SEARCH_LIMIT = 50
# A schedule's key changes with the quarter hour (``_quarter_hour``).
SCHEDULE_CACHE_SECONDS = 15 * 60
QUEUE_LIMIT = 200
PATIENT_CHANGES_DAYS = 7

desk_only = role_required(*DESK_ROLES)


def _scheduled(clinic: Clinic):
    return Visit.objects.at_clinic(clinic).scheduled()


def _with_flags(visits):
    """``visits`` with what their flags need (``flag_visits``), read in the same query."""
    return visits.annotate(
        screening_cleared=Exists(
            Screening.objects.filter(patient=OuterRef("patient"), cleared=True)
        ),
        message_failed=Exists(Message.objects.needs_attention().filter(visit=OuterRef("pk"))),
        asked_to_move=Exists(_open_reschedule_requests().filter(visit=OuterRef("pk"))),
        rems_form_due=Subquery(
            MonitoringFormTask.objects.open().filter(visit=OuterRef("pk")).values("due_on")[:1]
        ),
    )


# The flags ``_with_flags`` asks of each visit as yes or no.
FLAG_FACTS = ("message_failed", "asked_to_move", "screening_cleared")


def _visits(clinic: Clinic):
    """The clinic's visits as the schedules draw them, with their teams and flags."""
    return _with_flags(
        _scheduled(clinic)
        .select_related("patient", "visit_type", "clinician", "room")
        .prefetch_related(
            Prefetch("participants", VisitParticipant.objects.select_related("clinician"))
        )
        .order_by("start", "pk")
    )


def _open_reschedule_requests():
    return InboundMessage.objects.inbox().filter(kind=InboundKind.RESCHEDULE)


def flag_visits(visits: list[Visit], today: date) -> list[Visit]:
    """Set ``visit.flags``: what the front desk must act on, in words. No query: the facts
    come with the visits (``_with_flags``)."""
    for visit in visits:
        flags = []
        if visit.asked_to_move:
            flags.append("Asked to reschedule")
        elif visit.status == VisitStatus.BOOKED:
            flags.append("Not confirmed")
        if visit.lacks_ride_home:
            flags.append("No ride home")
        if visit.visit_type.is_dosing and visit.is_open and not visit.screening_cleared:
            flags.append("Screening not cleared")
        if visit.message_failed:
            flags.append("Message failed")
        if visit.rems_form_due:
            late = "overdue" if visit.rems_form_due < today else "due"
            flags.append(f"REMS form {late} {visit.rems_form_due:%a %-d %b}")
        visit.flags = flags
    return visits


def schedule_version(clinic: Clinic, start: datetime, end: datetime) -> str:
    """A digest of every visit a day or week schedule shows between start and end, with its
    flags and names.

    One query, whatever the number of visits: their count, latest change and
    sum of sequences (a move, a cancellation, a change of team, a check-in or
    a ride home all change one); for each flag's facts the number and the sum
    of ids of the visits that have it: a failed message, an open reschedule
    request, a cleared screening, an open REMS form (and its latest due date),
    asked as the grid's flags ask them (``_with_flags``); and the latest change
    to the shown visits' patients and to any clinician, room or visit type
    (their names and kinds are drawn).

    Every desk asks it on every look at a schedule, so it is cheap twice over:
    the visits and their flags are one materialised step, each flag asked once
    a visit (the ORM's aggregate over the annotations asked each twice, as
    the count and as the sum), and its SQL is built once for each clinic and
    span a process shows (building and compiling it took longer than running
    it: 11 ms of Python a request).
    """
    sql, params = _schedule_version_query(clinic.pk, start, end)
    with connections[router.db_for_read(Visit)].cursor() as cursor:
        cursor.execute(sql, params)
        parts = [start, end, *cursor.fetchone()]
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


@lru_cache(maxsize=256)
def _schedule_version_query(clinic_id: int, start: datetime, end: datetime) -> tuple[str, tuple]:
    """The SQL ``schedule_version`` runs, with its parameters (nothing in it moves with time)."""
    shown = (
        _with_flags(_scheduled(Clinic(pk=clinic_id)).overlapping(start, end))
        .order_by()
        .values("id", "patient_id", "updated_at", "sequence", *FLAG_FACTS, "rems_form_due")
    )
    sql, params = shown.query.sql_with_params()
    facts = ", ".join(
        f"SUM(CASE WHEN {fact} THEN 1 ELSE 0 END), SUM(CASE WHEN {fact} THEN id ELSE 0 END)"
        for fact in FLAG_FACTS
    )
    names = ", ".join(
        f"(SELECT MAX(updated_at) FROM {model._meta.db_table})"
        for model in (Clinician, Room, VisitType)
    )
    patients = Patient._meta.db_table
    aggregate = (
        f"WITH shown AS MATERIALIZED ({sql}) "
        f"SELECT COUNT(*), MAX(updated_at), SUM(sequence), {facts}, COUNT(rems_form_due), "
        "SUM(CASE WHEN rems_form_due IS NULL THEN 0 ELSE id END), MAX(rems_form_due), "
        f"(SELECT MAX(updated_at) FROM {patients} WHERE id IN (SELECT patient_id FROM shown)), "
        f"{names} FROM shown"
    )
    return aggregate, tuple(params)


def schedule_fragment(template: str, clinic: Clinic, start, end, context, *, also=()) -> str:
    """The rendered schedule between start and end, from the cache while nothing in it changed.

    Twenty desks looking at today's 400 visits would otherwise draw the same
    grid over and over. The key is ``schedule_version`` and ``also``: what
    else the schedule shows (the grid's backdrop, the view chosen, the
    quarter hour it is drawn as of). The fragment has links only, nothing per
    user.
    """
    version = schedule_version(clinic, start, end)
    extra = hashlib.sha256("|".join(map(str, also)).encode()).hexdigest()[:16]
    key = f"desk-schedule:{template}:{version}:{extra}"
    html = cache.get(key)
    if html is None:
        html = render_to_string(template, context())
        cache.set(key, html, SCHEDULE_CACHE_SECONDS)
    return mark_safe(html)  # rendered by our own template, escaped there


def _quarter_hour(now: datetime) -> datetime:
    """The schedules are drawn as of the quarter hour now is in, and kept until the next one.

    Their free times are quarter hours, so one starting after now starts after
    the quarter hour's start too: the same cells are offered. Only the
    now-line is drawn at the quarter hour's start, and static/js/now_line.js
    puts it at the minute as the page loads. Drawn as of the minute, the
    schedule was drawn again every minute by every web process at once, each
    draw taking half a second to a second and a half.
    """
    return now - timedelta(
        minutes=now.minute % 15, seconds=now.second, microseconds=now.microsecond
    )


def _booker(week: bool = False):
    """Links of free cells: the patient search, then booking with that clinician and time."""
    patients = reverse("desk_patients")

    def book(clinician: Clinician, start: datetime) -> tuple[str, str]:
        # ``start`` is in the clinic's zone (the grid's rows are); its UTC offset keeps
        # the instant, also in the hour clocks repeat. Only a "+" needs escaping in it
        # (urlencode, once a cell of thousands, was a third of building the grid).
        at = start.isoformat().replace("+", "%2B")
        url = f"{patients}?with={clinician.pk}&at={at}"
        if week:
            return url, f"Book {clinician} on {start:%a %-d %b} at {start:%H:%M}"
        return url, f"Book {clinician} at {start:%H:%M}"

    return book


@require_safe
@desk_only
def today(request: HttpRequest) -> HttpResponse:
    clinic = working_clinic(request)
    return _day_page(request, clinic, timezone.localdate(timezone=clinic.tz))


@require_safe
@desk_only
def day(request: HttpRequest, day: str) -> HttpResponse:
    return _day_page(request, working_clinic(request), day_in_url(day))


def changed_by_patients(clinic: Clinic, days: int = PATIENT_CHANGES_DAYS) -> list[Visit]:
    """Visits patients moved or cancelled from their own page in the last ``days``, latest first."""
    since = timezone.now() - timedelta(days=days)
    return list(
        Visit.objects.at_clinic(clinic)
        .filter(changed_by_patient_at__gte=since)
        .select_related("patient", "visit_type")
        .only(  # what the list shows, not the whole rows
            "start",
            "status",
            "cancelled_late",
            "changed_by_patient_at",
            "patient__first_name",
            "patient__last_name",
            "visit_type__name",
        )
        .order_by("-changed_by_patient_at")[:QUEUE_LIMIT]
    )


def _local_midnight(day: date, tz) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=tz)


def _day_page(request: HttpRequest, clinic: Clinic, day: date) -> HttpResponse:
    # Local midnights: on the days clocks change a day is 23 or 25 hours long.
    start, end = (
        _local_midnight(day, clinic.tz),
        _local_midnight(day + timedelta(days=1), clinic.tz),
    )
    by_room = request.GET.get("by") == "room"
    now = _quarter_hour(timezone.now())
    today = timezone.localdate(now, timezone=clinic.tz)
    backdrop = time_grid.Backdrop.kept(clinic, start, end)
    rooms = list(Room.objects.filter(clinic=clinic).order_by("name")) if by_room else []

    def schedule() -> dict:
        visits = flag_visits(list(_visits(clinic).on_local_day(day, clinic.tz)), today)
        axis = time_grid.day_axis(day, backdrop, visits)
        if by_room:
            columns = time_grid.by_room(day, axis, backdrop, rooms, visits, now)
        else:
            # Everyone on a visit's team sees it in their column, for their part.
            columns = time_grid.by_person(day, axis, backdrop, visits, now, _booker())
        return {
            "tz": clinic.tz,
            "flagged": [v for v in visits if v.flags and v.status != VisitStatus.CANCELLED],
            "grid": time_grid.Grid.of(columns, axis),
            "cancelled": [v for v in visits if v.status == VisitStatus.CANCELLED],
            "any_visits": bool(visits),
            "by_room": by_room,
        }

    is_today = day == today
    also = [backdrop.digest(), by_room, [(room.pk, room.name) for room in rooms], now]
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "day": day,
        "is_today": is_today,
        "by_room": by_room,
        # The desk's home (today) also lists the REMS forms due, whatever day they are due.
        "monitoring_forms": rems.open_tasks(clinic) if is_today else None,
        # And what patients changed from their own page lately (desk.self_service).
        "patient_changes": changed_by_patients(clinic) if is_today else None,
        "freed_without_taker": freed_without_taker(clinic) if is_today else None,
        # Above everything else: patients whose answers need a clinician today.
        "safety_alerts": list(open_alerts(clinic)) if is_today else None,
        # The day's closures and holiday in words (the grid shades them).
        "closures": closures_on(clinic, day),
        "previous": day - timedelta(days=1),
        "next": day + timedelta(days=1),
        "schedule": schedule_fragment(
            "desk/_day_schedule.html", clinic, start, end, schedule, also=also
        ),
    }
    return render(request, "desk/day.html", context)


@require_safe
@desk_only
def week(request: HttpRequest, day: str | None = None) -> HttpResponse:
    clinic = working_clinic(request)
    day = day or request.GET.get("day")  # the "go to" form asks by query string
    now = _quarter_hour(timezone.now())
    today = timezone.localdate(now, timezone=clinic.tz)
    anchor = day_in_url(day) if day else today
    monday = anchor - timedelta(days=anchor.weekday())
    # Seven local days; on DST weeks the span is 167 or 169 hours, not 7 x 24.
    start = _local_midnight(monday, clinic.tz)
    end = _local_midnight(monday + timedelta(days=7), clinic.tz)
    backdrop = time_grid.Backdrop.kept(clinic, start, end)
    # One clinician's week (their part of each visit, and free times to book) or everyone's.
    asked = request.GET.get("clinician", "")
    person = backdrop.people.get(int(asked)) if is_row_id(asked) else None

    def schedule() -> dict:
        visits = _visits(clinic).overlapping(start, end)
        if person is not None:
            visits = visits.for_clinician(person)
        visits = flag_visits(list(visits), today)
        days = time_grid.days_of(monday)
        axes = time_grid.week_axes(days, backdrop, visits)
        columns = time_grid.by_day(
            days,
            axes,
            backdrop,
            visits,
            now,
            person=person,
            book=(lambda at: _booker(week=True)(person, at)) if person else None,
            link=lambda day: reverse("desk_day", args=[day.isoformat()]),
        )
        return {
            "tz": clinic.tz,
            "grid": time_grid.Grid.of(columns, axes[0]),
            "cancelled": [v for v in visits if v.status == VisitStatus.CANCELLED],
            "person": person,
        }

    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "monday": monday,
        "previous": monday - timedelta(days=7),
        "next": monday + timedelta(days=7),
        "this_week": today,
        "person": person,
        "people": list(backdrop.people.values()),
        "filter": f"?{urlencode({'clinician': person.pk})}" if person else "",
        "schedule": schedule_fragment(
            "desk/_week_schedule.html",
            clinic,
            start,
            end,
            schedule,
            also=[backdrop.digest(), person.pk if person else "", now],
        ),
    }
    return render(request, "desk/week.html", context)


@require_safe
@desk_only
def patients(request: HttpRequest) -> HttpResponse:
    """Search patients; coming from a free time of the day grid, the one to book it for."""
    clinic = working_clinic(request)
    query = request.GET.get("q", "").strip()
    found = list(Patient.objects.seen_at(clinic).search(query)[:SEARCH_LIMIT])
    from_grid = grid_choice(request.GET, clinic)
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "query": query,
        "patients": found,
        "from_grid": from_grid,
        "carry": urlencode(from_grid.query) if from_grid else "",
    }
    return render(request, "desk/patients.html", context)


@require_http_methods(["GET", "POST"])
@desk_only
def patient(request: HttpRequest, pk: int) -> HttpResponse:
    clinic = working_clinic(request)
    person = get_object_or_404(
        Patient.objects.seen_at(clinic).select_related("messaging_preferences", "clinic"), pk=pk
    )
    new_link = ""
    if request.method == "POST" and request.POST.get("action") == "issue_link":
        # Shown once, now: only its hash is kept (scheduler.tokens).
        new_link = issue_patient_link(person, created_by=request.user)
        audit.record(request, AuditAction.ISSUED_LINK, person)
    visits = list(
        # Every visit of theirs, wherever it is held (the page names each one's clinic).
        Visit.objects.for_patient(person)
        .select_related("visit_type__clinic", "clinician", "room", "planned__care_plan__protocol")
        .prefetch_related(
            "visit_type__translated_instructions",
            # Its own patient's: not offers of its freed time to others (waitlist).
            Prefetch(
                "messages",
                queryset=Message.objects.filter(patient=person).order_by("send_at", "pk"),
            ),
        )
        .order_by("start", "pk")
    )
    now = timezone.now()
    plans = list(
        CarePlan.objects.filter(patient=person)
        .select_related("protocol")
        .order_by("-start_date", "-pk")
        .prefetch_related(
            Prefetch(
                "planned_visits",
                queryset=PlannedVisit.objects.select_related(
                    "step__visit_type", "visit__visit_type", "visit__clinician", "visit__room"
                ).prefetch_related(
                    Prefetch(
                        "visit__participants",
                        queryset=VisitParticipant.objects.select_related("clinician"),
                    )
                ),
            )
        )
    )
    today = timezone.localdate(now, timezone=clinic.tz)
    for plan in plans:
        plan.timeline = for_care_plan(plan, clinic.tz, today)
    # Scores for clinic admins (and a desk user who is also this patient's
    # clinician); the front desk reads whose they are (questionnaires.scores).
    scores_visible = may_see_scores(request.user, person)
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "patient": person,
        "preferences": preferences_of(person),
        "text_limits": text_limits_for(person),
        "screening": Screening.objects.filter(patient=person).order_by("-pk").first(),
        # Each plan as a whole: its visits in order, with their steps and teams,
        # and drawn week by week (plan.timeline).
        "care_plans": plans,
        "past": [v for v in visits if v.start < now],
        "upcoming": [v for v in visits if v.start >= now],
        # Visit types ahead whose instructions the clinic has not written in the
        # patient's language: the patient gets the English ones.
        "untranslated": sorted(
            {
                v.visit_type.name
                for v in visits
                if v.start >= now and not v.visit_type.instructions_in(person.language).translated
            }
        ),
        "policy_untranslated": not person.clinic.cancellation_policy_in(person.language).translated,
        "inbound": list(person.inbound_messages.select_related("visit")[:20]),
        "new_link": new_link,
        "scores_visible": scores_visible,
        "score_charts": charts_of(courses_for(person), visits, clinic.tz) if scores_visible else [],
    }
    audit.record(
        request,
        AuditAction.VIEWED_PATIENT,
        person,
        "with questionnaire scores" if scores_visible else "",
    )
    return render(request, "desk/patient.html", context)


def _visit_for_desk(pk: int, clinic: Clinic) -> Visit:
    return get_object_or_404(
        Visit.objects.select_related(
            "patient__clinic",
            "visit_type__clinic",
            "clinician",
            "room",
            # A visit of a care plan: its step and what it follows bound its
            # moves, and the booking rules read the plan's protocol for every
            # time the page considers.
            "planned__step__visit_type",
            "planned__follows__visit",
            "planned__follows__step__visit_type",
            "planned__care_plan__protocol",
        ).prefetch_related("participants__clinician", "visit_type__staffing"),
        pk=pk,
        visit_type__clinic=clinic,
    )


@require_http_methods(["GET", "POST"])
@desk_only
def visit_page(request: HttpRequest, pk: int) -> HttpResponse:
    clinic = working_clinic(request)
    visit = _visit_for_desk(pk, clinic)
    any_clinician = request.GET.get("with") == "anyone"
    first = day_in_url(request.GET["from"]) if "from" in request.GET else None
    times = move_times(visit, clinic, any_clinician=any_clinician, first=first)
    move_form, cancel_form = MoveForm(slots=times.slots, visit=visit), CancelForm()
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action == "move":
            move_form = MoveForm(request.POST, slots=times.slots, visit=visit)
            if move_form.is_valid():
                return _act(request, visit, lambda: _move(visit, move_form.chosen), "Moved.")
        elif action == "swap":
            return _act(request, visit, lambda: _swap(visit, request.POST), "Team changed.")
        elif action == "cancel":
            cancel_form = CancelForm(request.POST)
            if cancel_form.is_valid():
                reason = cancel_form.cleaned_data["reason"]
                return _act(request, visit, lambda: booking.cancel(visit, reason), "Cancelled.")
        elif action in ACTIONS:
            operation, done = ACTIONS[action]
            return _act(request, visit, lambda: operation(visit), done)
        else:
            messages.error(request, "Unknown action.")
    here = reverse("desk_visit", args=[visit.pk])
    choice = {"with": "anyone"} if any_clinician else {}
    if any_clinician and not times.planned:
        whose = f"with any {visit.visit_type.lead_seat.label}"
    else:
        whose = f"with {visit.clinician}"
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "visit": visit,
        # Who could take someone's place is worked out when the desk asks.
        "team": team_choices(visit, clinic) if request.GET.get("team") == "change" else None,
        "change_team_url": f"{here}?{urlencode(choice | {'team': 'change'})}#team-heading",
        "planned": times.planned,
        "visit_messages": list(
            Message.objects.for_visit(visit).select_related("clinician").order_by("send_at", "pk")
        ),
        "move_form": move_form,
        "cancel_form": cancel_form,
        "times": times,
        "any_clinician": any_clinician,
        "whose": whose,
        "earlier_url": window_url(here, choice, times.earlier),
        "later_url": window_url(here, choice, times.later),
        "own_clinician_url": window_url(here, {}, times.first),
        "any_clinician_url": window_url(here, {"with": "anyone"}, times.first),
    }
    audit.record(request, AuditAction.VIEWED_VISIT, visit.patient, f"visit {visit.pk}")
    return render(request, "desk/visit.html", context)


def _swap(visit: Visit, data) -> None:
    """Put another person in one place of the visit's team (same time), as the form asks."""
    ids = [data.get("leaving", ""), data.get("joining", "")]
    people = Clinician.objects.filter(clinic=visit.clinic).in_bulk(
        [int(pk) for pk in ids if is_row_id(pk)]
    )
    leaving, joining = (people.get(int(pk)) if is_row_id(pk) else None for pk in ids)
    if leaving is None or joining is None:
        raise booking.BookingError("Choose who leaves the team and who takes their place.")
    booking.replace_participant(visit, leaving, joining)


def team_choices(visit: Visit, clinic: Clinic) -> list[tuple]:
    """(participant, clinicians free to take their place) for each place on an open visit's team."""
    if not visit.is_open:
        return [(part, []) for part in visit.staff]
    availability = Availability(clinic, visit.start, visit.end, ignore_visits=[visit.pk])
    on_visit = {part.clinician_id for part in visit.staff}
    choices = []
    for part in visit.staff:
        choices.append(
            (
                part,
                [
                    clinician
                    for clinician in availability.qualified(visit.seat_of(part))
                    if clinician.pk not in on_visit
                    and availability.person_free(clinician, part.start, part.end)
                ],
            )
        )
    return choices


def window_url(here: str, choice: dict, first: date | None) -> str:
    """The visit page showing the window of times that opens on ``first``."""
    return f"{here}?{urlencode(choice | {'from': first.isoformat()})}" if first else ""


def _move(visit: Visit, slot) -> None:
    if planned_visit(visit):
        care_plans.move_planned_visit(visit, slot.start, room=slot.room)
    else:
        booking.move(
            visit,
            start=slot.start,
            clinician=slot.clinician,
            room=slot.room,
            staff=[member.clinician for member in slot.staff],
        )


ACTIONS = {
    "check_in": (booking.check_in, "Checked in."),
    "complete": (booking.complete, "Completed."),
    "no_show": (booking.mark_no_show, "Marked as a no-show."),
    "ride_home": (booking.arrange_ride_home, "Ride home recorded."),
}


def _act(request: HttpRequest, visit: Visit, operation, done: str) -> HttpResponse:
    """Run a booking operation; its refusals become messages, each sentence as worded."""
    try:
        operation()
    except BookingError as error:
        for problem in error.problems:
            messages.error(request, str(problem))
    else:
        messages.success(request, done)
    # Post/redirect/get: a reload must not move or cancel twice. Back to the
    # same address, so fresh times are offered with the same choices (whose).
    return redirect(request.get_full_path())


@require_safe
@desk_only
def message_queue(request: HttpRequest) -> HttpResponse:
    clinic = working_clinic(request)
    failed = list(
        Message.objects.needs_attention()
        .about_clinic(clinic)
        .select_related("patient", "visit__visit_type", "clinician")
        .order_by("-updated_at", "-pk")[:QUEUE_LIMIT]
    )
    inbox = list(
        InboundMessage.objects.inbox()
        .about_clinic(clinic)
        .select_related("patient", "visit__visit_type")
        .order_by("-received_at", "-pk")[:QUEUE_LIMIT]
    )
    context = {"clinic": clinic, "tz": clinic.tz, "failed": failed, "inbox": inbox}
    audit.record(request, AuditAction.READ_MESSAGES, detail="message queue")
    return render(request, "desk/messages.html", context)


@require_POST
@desk_only
def resend(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(Message.objects.about_clinic(working_clinic(request)), pk=pk)
    if Message.objects.filter(pk=message.pk).retry_now():
        messages.success(request, "The message will go in the next dispatch pass.")
    else:
        messages.error(
            request,
            "This message cannot be sent again from here: the provider took it (or may "
            "have), or it is too late to be useful. Call the patient instead.",
        )
    return redirect("desk_messages")


@require_POST
@desk_only
def mark_handled(request: HttpRequest, pk: int) -> HttpResponse:
    inbound = get_object_or_404(InboundMessage.objects.about_clinic(working_clinic(request)), pk=pk)
    done = InboundMessage.objects.filter(pk=inbound.pk, handled_at__isnull=True).update(
        handled_at=timezone.now(), handled_by=request.user
    )
    if done:
        messages.success(request, "Marked as handled.")
    return redirect("desk_messages")


def proposal_fingerprint(proposal: Proposal) -> str:
    """A digest of what the new-plan page shows of ``proposal``: who, which protocol, every visit.

    The visits already there that the plan counts (``satisfied``) are part of it.

    Confirming generates the plan again and books that; the form carries this
    digest so that only the plan the user saw is booked. Any change (another
    protocol, patient, date or preference in the form, or a booking since that
    took one of its times) gives another digest.
    """
    parts = [proposal.patient.pk, proposal.protocol.pk, proposal.start_date]
    parts += [proposal.total_cost, proposal.currency, *proposal.warnings]
    parts += [visit.existing.pk for visit in proposal.satisfied]
    for visit in proposal.visits:
        room = visit.room.pk if visit.room else ""
        start, end = visit.start.astimezone(UTC), visit.end.astimezone(UTC)
        parts += [visit.step.pk, visit.occurrence, visit.visit_type.pk, visit.clinician.pk, room]
        parts += [start.isoformat(), end.isoformat()]
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


@require_http_methods(["GET", "POST"])
@desk_only
def new_plan(request: HttpRequest) -> HttpResponse:
    """Propose a plan (nothing is saved), then confirm it: saved and booked in one go, or not at all.

    Only the plan on screen is booked: when the plan generated again on
    confirming differs from the one shown, it is shown instead and nothing is booked.
    """
    clinic = working_clinic(request)
    proposal, problems, changed, timeline = None, [], False, None
    estimate, instalments = None, []
    if request.method == "POST":
        form = PlanForm(request.POST, clinic=clinic)
        if form.is_valid():
            data = form.cleaned_data
            try:
                proposal = generate(
                    data["patient"], data["protocol"], data["start_date"], form.preferences()
                )
            except PlanInfeasible as error:
                problems = [str(error)]
            else:
                timeline = for_proposal(proposal, clinic.tz, asked_from=data["start_date"])
                estimate = estimates.for_proposal(proposal)
                instalments = schedule(
                    estimate,
                    ClinicBilling.of(clinic),
                    timezone.localdate(timezone=clinic.tz),
                    clinic.tz,
                )
            confirming = proposal is not None and request.POST.get("action") == "confirm"
            changed = confirming and request.POST.get("shown") != proposal_fingerprint(proposal)
            if confirming and not changed:
                try:
                    with transaction.atomic():
                        plan = care_plans.save_proposal(proposal)
                        care_plans.confirm(plan)
                except BookingError as error:
                    problems = [str(p) for p in error.problems]
                else:
                    messages.success(
                        request, f"{plan.protocol} booked: {len(proposal.visits)} visits."
                    )
                    return redirect(reverse("desk_patient", args=[data["patient"].pk]))
    else:
        form = PlanForm(
            clinic=clinic,
            initial={
                "patient": request.GET.get("patient"),
                "start_date": timezone.localdate(timezone=clinic.tz) + timedelta(days=1),
            },
        )
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "form": form,
        "proposal": proposal,
        "shown": proposal_fingerprint(proposal) if proposal else "",
        "changed": changed,
        "problems": problems,
        "timeline": timeline,
        "estimate": estimate,
        "instalments": instalments,
    }
    return render(request, "desk/new_plan.html", context)
