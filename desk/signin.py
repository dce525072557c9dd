"""The home page (each signed-in role goes to its own page) and the throttled sign-in."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from config import throttle
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


class SignInForm(AuthenticationForm):
    """The sign-in form, refusing further tries after repeated failures (config.throttle).

    Failures count per account and per address: a guesser spreading tries over
    many accounts is stopped by the second, one aiming at one account from many
    addresses by the first.
    """

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        if throttle.login_locked(self.request, username):
            minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
            raise ValidationError(
                f"Too many failed sign-ins. Try again in {minutes} minutes, or ask a "
                "clinic admin to reset your password.",
                code="throttled",
            )
        try:
            return super().clean()
        except ValidationError:
            throttle.login_failed(self.request, username)
            raise


login = auth_views.LoginView.as_view(
    authentication_form=SignInForm, redirect_authenticated_user=True
)
