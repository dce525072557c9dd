"""The FHIR API's edge: JSON in and out, OperationOutcome for every refusal,
and who is asking (a client's bearer token and its scopes).

Every view is wrapped by ``api_view``: it answers ``application/fhir+json``
only, turns ``FhirError`` into an OperationOutcome with the right status,
and (unless ``public``) authenticates the bearer token before the view runs.
It also counts the request against the rate limit: per client for
authenticated calls, per address for the open ones (``FHIR_RATE_LIMIT`` a
minute, a fixed window in config/throttle.py). Views then call
``require(request, type, interaction)`` for each thing they touch, and
``audit(...)`` for what they showed or changed. A refusal for want of a scope
is audited too (the client is known); a call without a valid token is not,
as there is nobody to name (docs/fhir.md, audit).
"""

import json
from collections.abc import Callable, Iterable
from datetime import UTC
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from config.throttle import client_address, hit
from fhirapi import scopes
from fhirapi.models import ApiToken
from scheduler import audit as audit_trail
from scheduler.models import AuditAction, Patient
from scheduler.tokens import digest

FHIR_JSON = "application/fhir+json"
_JSON_FORMATS = {"json", "application/json", FHIR_JSON}


class FhirError(Exception):
    """A refusal, answered as an OperationOutcome with ``status``.

    ``code`` is from FHIR's IssueType (``not-found``, ``invalid``,
    ``forbidden``, ``conflict``, ``throttled``, ...); ``diagnostics`` is the
    sentence a developer on the other side reads.
    """

    def __init__(self, status: int, code: str, diagnostics: str, expression: str | None = None):
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression
        self.headers: dict[str, str] = {}


def operation_outcome(code: str, diagnostics: str, severity: str = "error", expression=None):
    issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def fhir_response(resource: dict, status: int = 200) -> HttpResponse:
    response = HttpResponse(
        json.dumps(resource, ensure_ascii=False, separators=(",", ":")),
        status=status,
        content_type=f"{FHIR_JSON}; charset=utf-8",
    )
    if version := resource.get("meta", {}).get("versionId"):
        response["ETag"] = f'W/"{version}"'
    if last_updated := resource.get("meta", {}).get("lastUpdated"):
        response["Last-Modified"] = last_updated
    return response


def error_response(error: FhirError) -> HttpResponse:
    response = fhir_response(
        operation_outcome(error.code, error.diagnostics, expression=error.expression),
        status=error.status,
    )
    for name, value in error.headers.items():
        response[name] = value
    return response


def _check_format(request: HttpRequest) -> None:
    wanted = request.GET.get("_format")
    if wanted and wanted not in _JSON_FORMATS:
        raise FhirError(406, "not-supported", "This server answers in JSON only (_format=json).")
    accept = request.headers.get("Accept", "")
    if accept and not any(
        kind.split(";")[0].strip() in (FHIR_JSON, "application/json", "application/*", "*/*")
        for kind in accept.split(",")
    ):
        raise FhirError(406, "not-supported", f"This server answers {FHIR_JSON} only.")


def authenticate(request: HttpRequest) -> ApiToken:
    """The live token in the Authorization header, or a 401 naming what is wrong."""
    kind, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    if kind.lower() != "bearer" or not secret:
        error = FhirError(401, "login", "A bearer token is required (Authorization: Bearer ...).")
        error.headers["WWW-Authenticate"] = 'Bearer realm="fhir"'
        raise error
    token = (
        ApiToken.objects.live()
        .select_related("client", "client__clinic")
        .filter(digest=digest(secret))
        .first()
        if secret.isascii()  # ours are; anything else is no token of ours
        else None
    )
    if token is None:
        error = FhirError(401, "login", "The bearer token is unknown, expired or revoked.")
        error.headers["WWW-Authenticate"] = 'Bearer realm="fhir", error="invalid_token"'
        raise error
    return token


RATE_WINDOW_SECONDS = 60


def throttle(who: str) -> None:
    """429 once ``who`` has made more than FHIR_RATE_LIMIT requests in this minute."""
    if hit("fhir", who, RATE_WINDOW_SECONDS) > settings.FHIR_RATE_LIMIT:
        error = FhirError(
            429,
            "throttled",
            f"More than {settings.FHIR_RATE_LIMIT} requests in a minute: "
            "wait for the time Retry-After gives, then go on.",
        )
        # A fixed window ends within a minute; the whole minute is a safe answer.
        error.headers["Retry-After"] = str(RATE_WINDOW_SECONDS)
        raise error


def require(request: HttpRequest, resource_type: str, interaction: str) -> None:
    """403 unless the request's token has a scope for ``interaction`` on ``resource_type``.

    The refusal is audited: a client asking for what it may not have is worth seeing.
    """
    if not scopes.allows(request.api_token.scopes, resource_type, interaction):
        needed = f"system/{resource_type}.{scopes.v1_name(interaction)}"
        audit(request, AuditAction.API_REFUSED, None, f"needs {needed}: {request.path}")
        raise FhirError(403, "forbidden", f"The token has no scope for this: it needs {needed}.")


def audit(
    request: HttpRequest, action: AuditAction, patient: Patient | int | None = None, detail=""
) -> None:
    audit_trail.record(request, action, patient, detail)


def audit_each(
    request: HttpRequest, action: AuditAction, patients: Iterable[Patient | int], detail=""
) -> None:
    """One audit row per patient shown (one row without a patient if none was), in one insert."""
    audit_trail.record_many(request, action, list(patients) or [None], detail)


def api_view(
    view: Callable | None = None, *, public: bool = False, methods: tuple[str, ...] = ("GET",)
):
    """Wrap a FHIR view: its methods, formats, authentication (unless ``public``),
    errors as outcomes. The view runs in the client's clinic's time zone: a date
    without a time in a search is that clinic's day."""

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                if request.method not in methods:
                    error = FhirError(
                        405, "not-supported", f"{request.method} is not supported here."
                    )
                    error.headers["Allow"] = ", ".join(methods)
                    raise error
                _check_format(request)
                if public:
                    throttle(f"address:{client_address(request)}")
                    return view(request, *args, **kwargs)
                request.api_token = authenticate(request)
                request.api_client = request.api_token.client
                request.audit_actor = f"FHIR client {request.api_client.name}"
                throttle(f"client:{request.api_client.pk}")
                with timezone.override(request.api_client.clinic.tz):
                    return view(request, *args, **kwargs)
            except FhirError as error:
                return error_response(error)

        return wrapper

    return decorate(view) if view is not None else decorate


def instant(moment) -> str:
    """A FHIR instant: UTC, seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def body_json(request: HttpRequest) -> dict:
    """The request's JSON body, or a 400/415 saying why it cannot be read."""
    kind = request.content_type or ""
    if kind not in (FHIR_JSON, "application/json"):
        raise FhirError(415, "not-supported", f"Send the body as {FHIR_JSON}.")
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as problem:
        raise FhirError(400, "structure", f"The body is not valid JSON: {problem}.") from None
    if not isinstance(data, dict):
        raise FhirError(400, "structure", "The body must be a JSON object (a FHIR resource).")
    return data
