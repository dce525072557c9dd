"""A clinician's own calendar page: the week as a time grid, the feed address, invites and own calendars."""

from datetime import date, datetime, timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from desk import time_grid
from desk.forms import chosen
from questionnaires.models import SafetyAlert
from scheduler import tokens
from scheduler.external_calendars import queue_refresh
from scheduler.links import feed_url
from scheduler.models import (
    ExternalCalendar,
    InvitePreference,
    Visit,
    VisitParticipant,
    VisitStatus,
)
from scheduler.timezones import FIRST_DAY, LAST_DAY


class ExternalCalendarForm(forms.ModelForm):
    class Meta:
        model = ExternalCalendar
        fields = ("url",)
        widgets = {"url": forms.URLInput(attrs={"size": 60})}


def _clinician_of(request: HttpRequest):
    clinician = getattr(request.user, "clinician", None)
    if clinician is None:
        raise Http404("Only clinicians have a calendar here.")
    return clinician


@login_required
@require_http_methods(["GET", "POST"])
def my_calendar(request: HttpRequest) -> HttpResponse:
    """A clinician's feed address (issue a new one, turn it off), invites and own calendars."""
    clinician = _clinician_of(request)
    new_feed_url = ""
    form = ExternalCalendarForm()
    action = request.POST.get("action", "")
    if action == "issue":
        _, raw = tokens.issue(clinician, created_by=request.user)
        new_feed_url = feed_url(raw)
    elif action == "revoke":
        tokens.revoke(clinician)
    elif action == "invites":
        InvitePreference.objects.update_or_create(
            clinician=clinician,
            defaults={"email_invites": request.POST.get("email_invites") == "on"},
        )
    elif action == "add_calendar":
        form = ExternalCalendarForm(request.POST, instance=ExternalCalendar(clinician=clinician))
        if form.is_valid():
            calendar = form.save()
            transaction.on_commit(lambda: queue_refresh(calendar))
            form = ExternalCalendarForm()
    elif action == "remove_calendar":
        calendar = chosen(clinician.external_calendars.all(), request.POST.get("calendar"))
        if calendar is None:
            raise Http404("No such calendar of yours.")
        calendar.delete()
    preference = InvitePreference.objects.filter(clinician=clinician).first()
    tz = clinician.clinic.tz
    monday = _week_of(request.GET.get("week", ""), tz)
    context = {
        "clinic": clinician.clinic,
        "tz": tz,
        "monday": monday,
        "previous": monday - timedelta(days=7),
        "next": monday + timedelta(days=7),
        "grid": _week_grid(clinician, monday, tz),
        "clinician": clinician,
        # Their patients' answers that need a clinician today, above the week.
        "safety_alerts": list(
            SafetyAlert.objects.unacknowledged()
            .for_clinician(clinician)
            .select_related("patient")
            .order_by("created_at", "pk")
        ),
        "feed": tokens.active(clinician),
        "new_feed_url": new_feed_url,
        "email_invites": bool(preference and preference.email_invites),
        "calendars": list(clinician.external_calendars.all()),
        "form": form,
    }
    return render(request, "desk/my_calendar.html", context)


def _week_of(text: str, tz) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = timezone.localdate(timezone=tz)
    if not FIRST_DAY <= day <= LAST_DAY:
        # Year 1 or 9999 would overflow the week's arithmetic: show this week.
        day = timezone.localdate(timezone=tz)
    return day - timedelta(days=day.weekday())


def _week_grid(clinician, monday: date, tz) -> time_grid.Grid:
    """The clinician's local week as a grid (desk.time_grid): their part of each visit, their
    hours, time off and busy times from their own calendars shaded. Six queries.

    Proposed visits hold nothing and cancelled ones free their time: neither is drawn.
    """
    start = datetime.combine(monday, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(monday + timedelta(days=7), datetime.min.time(), tzinfo=tz)
    visits = list(
        Visit.objects.for_clinician(clinician)
        .filter(start__lt=end, end__gt=start)
        .scheduled()
        .exclude(status=VisitStatus.CANCELLED)
        .select_related("patient", "visit_type", "room")
        .prefetch_related(
            Prefetch("participants", VisitParticipant.objects.select_related("clinician"))
        )
        .order_by("start")
    )
    backdrop = time_grid.Backdrop.kept(clinician.clinic, start, end, clinician=clinician)
    days = time_grid.days_of(monday)
    axes = time_grid.week_axes(days, backdrop, visits)
    columns = time_grid.by_day(days, axes, backdrop, visits, timezone.now(), person=clinician)
    return time_grid.Grid.of(columns, axes[0])
