"""Choosing the clinic a staff member works in (``scheduler.roles``): the header's switcher."""

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from scheduler.models import is_row_id
from scheduler.roles import choose_clinic

# Pages that show a clinic as a whole: after a switch the user stays on the same
# page of the other clinic. A page of one row (a patient, a visit) belongs to
# the clinic left, so the switch lands on the day's schedule instead.
CLINIC_WIDE_PAGES = {
    "desk_today",
    "desk_day",
    "desk_this_week",
    "desk_week",
    "desk_patients",
    "desk_messages",
    "desk_waitlist",
    "desk_new_plan",
    "desk_scores",
}


@require_POST
def choose(request: HttpRequest) -> HttpResponse:
    """Work in the clinic posted (a member's only), remembered for later sessions too."""
    if not request.user.is_authenticated:
        raise PermissionDenied("Sign in first.")
    posted = request.POST.get("clinic", "")
    clinic = choose_clinic(request.user, int(posted)) if is_row_id(posted) else None
    if clinic is None:
        raise PermissionDenied("You are not a member of that clinic.")
    return redirect(_back_to(request))


def _back_to(request: HttpRequest) -> str:
    wanted = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        try:
            if resolve(wanted.split("?")[0]).url_name in CLINIC_WIDE_PAGES:
                return wanted
        except Resolver404:
            pass
    return "desk_today"
