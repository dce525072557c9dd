"""The second factor for staff: a code from an authenticator app, or a one-time recovery code.

Built on django-otp: a ``TOTPDevice`` (RFC 6238, 30-second codes, replay and
drift handled by the library) and a ``StaticDevice`` holding the recovery
codes, each accepted once. A session is *verified* once ``django_otp.login``
has recorded the device that checked the code in it; ``OTPMiddleware`` reads
it back on every request.

Who needs one is ``scheduler.roles.needs_second_factor``. For them,
``SecondFactorMiddleware`` sends every request for a page that is not open to
all (sign-in, sign-out, these two pages, the token URLs) to the code page, or
to set-up when they have no authenticator yet: whichever page the password was
typed on (the desk's sign-in, the admin's), nothing past it opens without the
second step.

Wrong codes count in the sign-in lockout (config/signin_lock.py) like wrong
passwords: they are reported with Django's ``user_login_failed`` signal, which
django-axes counts. Set-up, wrong codes and recovery codes are audit events.
"""

import re
from base64 import b32encode

import django_otp
import segno
from axes.handlers.proxy import AxesProxyHandler
from axes.signals import user_locked_out
from django import forms
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_login_failed
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from desk.signin import locked_out
from scheduler import audit
from scheduler.models import AuditAction
from scheduler.roles import needs_second_factor

RECOVERY_CODES = 10
# django-otp's own pause after wrong codes in a row (1, 2, 4 ... seconds).
WAIT = "Too many wrong codes in a row. Wait a few seconds and try again."
APP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"

# Pages a signed-in user may open before the second step: signing in and out,
# the second step itself, and the URLs whose token is the credential (a
# clinician's feed, a patient's page). Everything else, the admin included.
OPEN_PAGES = {
    "login",
    "logout",
    "second_factor_verify",
    "second_factor_setup",
    "admin:login",
    "admin:logout",
    "favicon",
    "calendar_feed",
    "patient_page",
    "patient_visit_ics",
    "twilio-status",
    "twilio-inbound",
}


class SecondFactorMiddleware:
    """Staff who need a second factor reach no page past sign-in without it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = request.user
        if not user.is_authenticated or user.is_verified() or not needs_second_factor(user):
            return None
        if request.resolver_match.view_name in OPEN_PAGES:
            return None
        step = "second_factor_verify" if _app(user) else "second_factor_setup"
        return redirect_to_login(request.get_full_path(), reverse(step))


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=20,
        help_text="The 6 digits your authenticator app shows now, or one of your recovery codes.",
    )

    def clean_code(self) -> str:
        return re.sub(r"[\s-]", "", self.cleaned_data["code"]).lower()


def _app(user) -> TOTPDevice | None:
    return TOTPDevice.objects.devices_for_user(user, confirmed=True).first()


def _next(request: HttpRequest) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if wanted and url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _credentials(request: HttpRequest) -> dict:
    # What axes counts a failure under: the account, as a sign-in form would name it.
    return {"username": request.user.get_username()}


def _refuse_while_locked(request: HttpRequest) -> HttpResponse | None:
    """The lockout page, signed out, when the account or the address is locked."""
    credentials = _credentials(request)
    if AxesProxyHandler.is_allowed(request, credentials):
        return None
    user_locked_out.send(
        "axes",
        request=request,
        username=credentials["username"],
        ip_address=request.axes_ip_address,
    )
    logout(request)
    return locked_out(request)


def _verified(request: HttpRequest, device) -> HttpResponse:
    django_otp.login(request, device)
    # A new session key for the session that now opens records (no fixation).
    request.session.cycle_key()
    return redirect(_next(request))


@login_required
def verify(request: HttpRequest) -> HttpResponse:
    """The second step of signing in: a code from the app, or a recovery code."""
    user = request.user
    app = _app(user)
    if app is None:
        # Nothing to check a code against: set an app up first, where one is needed.
        if needs_second_factor(user):
            return redirect_to_login(_next(request), reverse("second_factor_setup"))
        return redirect(_next(request))
    if user.is_verified():
        return redirect(_next(request))
    form = CodeForm(request.POST or None)
    problem = ""
    if request.method == "POST":
        refused = _refuse_while_locked(request)
        if refused:
            return refused
        if form.is_valid():
            code = form.cleaned_data["code"]
            # Six digits are the app's; anything else can only be a recovery code.
            device = app if code.isdigit() else StaticDevice.objects.filter(user=user).first()
            if device is not None and not device.verify_is_allowed()[0]:
                problem = WAIT
            elif device is not None and django_otp.verify_token(user, device.persistent_id, code):
                if isinstance(device, StaticDevice):
                    left = StaticToken.objects.filter(device=device).count()
                    audit.record(
                        request,
                        AuditAction.RECOVERY_CODE_USED,
                        detail=f"{left} recovery codes left",
                    )
                else:
                    audit.record(
                        request, AuditAction.SECOND_FACTOR_VERIFIED, detail="authenticator app"
                    )
                return _verified(request, device)
            else:
                problem = "That code did not work. Codes change every 30 seconds; recovery codes work once."
                audit.record(request, AuditAction.SECOND_FACTOR_FAILED)
                user_login_failed.send(
                    sender=__name__, credentials=_credentials(request), request=request
                )
                if request.axes_locked_out:  # that failure locked the account or address
                    logout(request)
                    return locked_out(request)
    return render(
        request,
        "registration/second_factor_verify.html",
        {"form": form, "problem": problem, "next": _next(request)},
        status=400 if problem else 200,
    )


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@login_required
def setup(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app; then the recovery codes, shown once.

    Someone with an app already must pass the second step first: set-up then
    replaces their app and their recovery codes (a new phone).
    """
    user = request.user
    if _app(user) and not user.is_verified():
        return redirect_to_login(_next(request), reverse("second_factor_verify"))
    # The same secret until it is confirmed, so that reloading the page does
    # not invalidate what the app has just scanned.
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").last()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=APP_DEVICE_NAME, confirmed=False)
    form = CodeForm(request.POST or None)
    problem = ""
    if request.method == "POST" and form.is_valid():
        if not device.verify_is_allowed()[0]:
            problem = WAIT
        elif device.verify_token(form.cleaned_data["code"]):
            codes = _confirm(user, device)
            audit.record(request, AuditAction.SECOND_FACTOR_ENROLLED, detail="authenticator app")
            django_otp.login(request, device)
            request.session.cycle_key()
            response = render(
                request,
                "registration/recovery_codes.html",
                {"codes": codes, "next": _next(request)},
            )
            response["Cache-Control"] = "no-store"
            return response
        else:
            problem = "That code did not work. Check the app shows the account below, and type the code it shows now."
    secret = _grouped(b32encode(device.bin_key).decode())
    return render(
        request,
        "registration/second_factor_setup.html",
        {
            "form": form,
            "problem": problem,
            "secret": secret,
            "qr_code": _qr_svg(device.config_url),
            "next": _next(request),
        },
        status=400 if problem else 200,
    )


@transaction.atomic
def _confirm(user, device: TOTPDevice) -> list[str]:
    """Make ``device`` the user's only app, with fresh recovery codes (returned, never stored readable elsewhere)."""
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    StaticDevice.objects.filter(user=user).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    recovery = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=recovery, token=code) for code in codes)
    return codes


def _qr_svg(uri: str) -> str:
    """The otpauth:// address as an inline SVG QR code: no image request, nothing the CSP blocks."""
    return segno.make(uri, error="m").svg_inline(
        scale=5, title="QR code for your authenticator app", svgclass="qr-code"
    )
