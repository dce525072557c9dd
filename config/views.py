"""The home page: each signed-in role goes to its own page."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from scheduler.roles import DESK_ROLES, Role, roles_of


@login_required
def home(request: HttpRequest) -> HttpResponse:
    roles = roles_of(request.user)
    if roles & set(DESK_ROLES):
        return redirect("desk_today")
    if Role.CLINICIAN in roles:
        return redirect("my_calendar")
    if request.user.is_staff:
        return redirect("admin:index")
    raise PermissionDenied("Your account has no role in the clinic yet.")
