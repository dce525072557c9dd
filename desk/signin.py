"""The home page (each signed-in role goes to its own page), sign-in, and the lockout page.

Signing in is Django's LoginView; the lockout (config/signin_lock.py) is
django-axes' backend and handler, which the admin's login goes through too.
"""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse

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


login = auth_views.LoginView.as_view(redirect_authenticated_user=True)


def locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials=None
) -> HttpResponse:
    """The page for a sign-in refused by the lockout (axes' AXES_LOCKOUT_CALLABLE).

    429 with words and Retry-After, whichever page the sign-in came from. It
    does not say whether the account or the address is locked: that would tell
    a guesser which of the two to change.
    """
    seconds = settings.LOGIN_LOCKOUT_SECONDS
    response = TemplateResponse(
        request,
        "registration/locked_out.html",
        {"minutes": max(1, round(seconds / 60))},
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response.render()
