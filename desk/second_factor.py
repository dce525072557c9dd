"""The second factor for staff: a code from an authenticator app, or a one-time recovery code.

Built on django-otp: a ``TOTPDevice`` (RFC 6238, 30-second codes, replay and
drift handled by the library), a ``StaticDevice`` holding the recovery
codes, each accepted once, and passkeys (django-otp-webauthn's
``WebAuthnCredential``), which someone past the second step may add. A session is *verified* once ``django_otp.login``
has recorded the device that checked the code in it; ``OTPMiddleware`` reads
it back on every request.

Who needs one is ``scheduler.roles.needs_second_factor``. For them,
``SecondFactorMiddleware`` sends every request for a page that is not open to
all (sign-in, sign-out, these two pages, the token URLs) to the code page, or
to set-up when they have no authenticator yet: whichever page the password was
typed on (the desk's sign-in, the admin's), nothing past it opens without the
second step.

Wrong codes and failed passkey checks count in the sign-in lockout
(config/signin_lock.py) like wrong passwords: they are reported with Django's
``user_login_failed`` signal, which django-axes counts. Set-up, wrong codes,
passkeys and recovery codes are audit events.
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
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.exceptions import NotVerified, OTPWebAuthnApiError
from django_otp_webauthn.models import WebAuthnCredential
from django_otp_webauthn.views import (
    BeginCredentialRegistrationView,
    CompleteCredentialAuthenticationView,
    CompleteCredentialRegistrationView,
)

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
    # Checking a passkey is the second step too (adding one is not: only past it).
    "otp_webauthn:credential-authentication-begin",
    "otp_webauthn:credential-authentication-complete",
    "otp_webauthn:js-i18n-catalog",
    "admin:login",
    "admin:logout",
    "favicon",
    "calendar_feed",
    "patient_page",
    "patient_visit_ics",
    "patient_move",
    "patient_cancel",
    "patient_waitlist",
    "patient_costs",
    "patient_questions",
    "patient_question",
    "patient_question_review",
    "patient_question_done",
    "waitlist_offer",
    "twilio-status",
    "twilio-inbound",
}
# URL namespaces that take no session at all: the FHIR API answers on a bearer
# token alone (fhirapi/http.py), so a half-signed-in session changes nothing there.
SESSIONLESS_NAMESPACES = {"fhir"}


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
        match = request.resolver_match
        if match.view_name in OPEN_PAGES or match.namespace in SESSIONLESS_NAMESPACES:
            return None
        step = "second_factor_verify" if django_otp.user_has_device(user) else "second_factor_setup"
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


def _locked(request: HttpRequest) -> bool:
    """Whether the account or the address is locked; if so, the session is signed out."""
    credentials = _credentials(request)
    if AxesProxyHandler.is_allowed(request, credentials):
        return False
    user_locked_out.send(
        "axes",
        request=request,
        username=credentials["username"],
        ip_address=request.axes_ip_address,
    )
    logout(request)
    return True


def _failed(request: HttpRequest, detail: str = "") -> bool:
    """Record a wrong code or a failed passkey; whether that failure locked (then signed out)."""
    audit.record(request, AuditAction.SECOND_FACTOR_FAILED, detail=detail)
    user_login_failed.send(sender=__name__, credentials=_credentials(request), request=request)
    if request.axes_locked_out:
        logout(request)
        return True
    return False


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
    if not django_otp.user_has_device(user):
        # Nothing to check a code against: set an app up first, where one is needed.
        if needs_second_factor(user):
            return redirect_to_login(_next(request), reverse("second_factor_setup"))
        return redirect(_next(request))
    if user.is_verified():
        return redirect(_next(request))
    form = CodeForm(request.POST or None)
    problem = ""
    if request.method == "POST":
        if _locked(request):
            return locked_out(request)
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
                if _failed(request):
                    return locked_out(request)
    return render(
        request,
        "registration/second_factor_verify.html",
        {
            "form": form,
            "problem": problem,
            "next": _next(request),
            "passkey": WebAuthnCredential.objects.filter(user=user, confirmed=True).exists(),
        },
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
    if django_otp.user_has_device(user) and not user.is_verified():
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
            # Passkeys are added past the second step, beside the app (its codes stay the fallback).
            "passkeys": (
                WebAuthnCredential.objects.filter(user=user, confirmed=True).count()
                if user.is_verified()
                else None
            ),
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


# -- passkeys: django-otp-webauthn's ceremony views, in the audit trail and the lockout --------


class PastSecondStepOnly:
    """Passkeys are added only in a session past the second step.

    django-otp-webauthn lets someone with no device yet add one with the
    password alone; here a passkey is something added beside the app, so
    that everyone who has one has set up the app and its recovery codes too.
    """

    def check_can_register(self):
        super().check_can_register()
        if not self.request.user.is_verified():
            raise NotVerified(detail="Set up your authenticator app first, then add a passkey.")


class PasskeyAddBegins(PastSecondStepOnly, BeginCredentialRegistrationView):
    pass


class PasskeyAdded(PastSecondStepOnly, CompleteCredentialRegistrationView):
    """Adding a passkey, audited."""

    def post(self, *args, **kwargs):
        response = super().post(*args, **kwargs)
        audit.record(self.request, AuditAction.SECOND_FACTOR_ENROLLED, detail="passkey")
        return response


class PasskeyChecked(CompleteCredentialAuthenticationView):
    """The second step with a passkey: refused while locked, a failure counted, a success audited."""

    def post(self, *args, **kwargs):
        request = self.request
        if _locked(request):
            return JsonResponse(
                {"detail": "Too many failed sign-ins. Try again later."}, status=429
            )
        try:
            response = super().post(*args, **kwargs)
        except OTPWebAuthnApiError:
            _failed(request, "passkey")
            raise
        audit.record(request, AuditAction.SECOND_FACTOR_VERIFIED, detail="passkey")
        request.session.cycle_key()
        return response
