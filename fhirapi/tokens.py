"""SMART Backend Services: a signed client assertion exchanged for a short-lived bearer token.

The client (another system, no user present) posts to ``/fhir/auth/token``::

    grant_type=client_credentials
    client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
    client_assertion=<a JWT signed with its private key>
    scope=system/Patient.read system/Appointment.read

The assertion's header names the algorithm (RS384 or ES384) and the key
(``kid``) among the public keys the client registered; its claims say who
(``iss`` = ``sub`` = the client_id), for whom (``aud`` = this token URL),
until when (``exp``, at most five minutes ahead) and once (``jti``, never
taken twice while the assertion lives). The answer is an OAuth 2 token
response (RFC 6749 section 5): the token, its lifetime and the scopes
granted, which are those asked for that the client holds.
"""

from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from config.throttle import client_address, hit
from fhirapi import scopes
from fhirapi.models import SIGNING_ALGORITHMS, ApiClient, ApiToken, UsedAssertion, key_algorithms
from fhirapi.resources import REGISTRY
from scheduler import audit
from scheduler.models import AuditAction

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART: "exp ... no more than five minutes in the future".
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)
# Clocks of two machines differ a little; a few seconds are forgiven.
LEEWAY_SECONDS = 30
_REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "jti"]


class TokenRefused(Exception):
    """An OAuth 2 error answer: ``error`` from RFC 6749 section 5.2 and a sentence saying why."""

    def __init__(self, error: str, description: str, client: ApiClient | None = None):
        super().__init__(description)
        self.error = error
        self.description = description
        self.client = client

    @property
    def status(self) -> int:
        # RFC 6749: 401 when the client could not be authenticated, 400 otherwise.
        return 401 if self.error == "invalid_client" else 400


def token_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("fhir:token"))


def _oauth_response(data: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status)
    # RFC 6749 section 5.1: a token answer is never stored by a cache.
    add_never_cache_headers(response)
    response["Pragma"] = "no-cache"
    return response


def _client_of(assertion: str) -> ApiClient:
    """The client the (not yet verified) assertion claims to come from."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise TokenRefused("invalid_client", "The client_assertion is not a JWT.") from None
    issuer, subject = claims.get("iss"), claims.get("sub")
    if not isinstance(issuer, str) or issuer != subject:
        raise TokenRefused("invalid_client", "iss and sub must both be the client_id.")
    client = ApiClient.objects.select_related("clinic").filter(client_id=issuer).first()
    if client is None:
        raise TokenRefused("invalid_client", "No client is registered with this client_id.")
    if not client.is_active:
        raise TokenRefused("invalid_client", "This client has been revoked.", client)
    return client


def _verified_claims(client: ApiClient, assertion: str, audience: str) -> dict:
    """The assertion's claims once its signature, audience, issuer and times are checked."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        raise TokenRefused(
            "invalid_client", "The assertion's header cannot be read.", client
        ) from None
    algorithm, kid = header.get("alg"), header.get("kid")
    # The algorithm is pinned before any key is used: an HS256 assertion
    # "signed" with the public key as a shared secret must never verify.
    if algorithm not in SIGNING_ALGORITHMS:
        raise TokenRefused(
            "invalid_client",
            f"alg {algorithm!r} is not accepted: sign with {' or '.join(SIGNING_ALGORITHMS)}.",
            client,
        )
    jwk = next((key for key in client.jwks.get("keys", []) if key.get("kid") == kid), None)
    if jwk is None:
        raise TokenRefused("invalid_client", f"The client has no key with kid {kid!r}.", client)
    if algorithm not in key_algorithms(jwk):
        raise TokenRefused("invalid_client", f"Key {kid!r} is not an {algorithm} key.", client)
    try:
        claims = jwt.decode(
            assertion,
            jwt.PyJWK(jwk, algorithm).key,
            algorithms=[algorithm],
            audience=audience,
            issuer=client.client_id,
            leeway=LEEWAY_SECONDS,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.InvalidAudienceError:
        raise TokenRefused(
            "invalid_client", f"aud must be this token URL, {audience}.", client
        ) from None
    except jwt.ExpiredSignatureError:
        raise TokenRefused("invalid_client", "The assertion has expired.", client) from None
    except jwt.InvalidTokenError as problem:
        raise TokenRefused(
            "invalid_client", f"The assertion is refused: {problem}.", client
        ) from None
    except jwt.PyJWKError as problem:  # a stored key PyJWT cannot use (validation refuses them)
        raise TokenRefused(
            "invalid_client", f"Key {kid!r} cannot be used: {problem}.", client
        ) from None
    latest = timezone.now() + MAX_ASSERTION_LIFETIME + timedelta(seconds=LEEWAY_SECONDS)
    # Compared as numbers: an exp of year 10^12 is refused here, not overflowed into a date.
    if claims["exp"] > latest.timestamp():
        raise TokenRefused(
            "invalid_client", "exp may be at most five minutes after the request.", client
        )
    if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 255:
        raise TokenRefused("invalid_client", "jti must be a string of 1-255 characters.", client)
    return claims


def _expiry(claims: dict) -> datetime:
    return datetime.fromtimestamp(int(claims["exp"]), UTC)


def _use_once(client: ApiClient, claims: dict) -> None:
    """Remember the assertion's jti until it expires; a second use is a replay."""
    UsedAssertion.objects.filter(client=client, expires_at__lt=timezone.now()).delete()
    try:
        with transaction.atomic():
            UsedAssertion.objects.create(
                client=client, jti=claims["jti"], expires_at=_expiry(claims)
            )
    except IntegrityError:
        raise TokenRefused(
            "invalid_client", "This assertion (its jti) has been used already.", client
        ) from None


def _granted(client: ApiClient, requested: str) -> str:
    granted = [word for word in requested.split() if scopes.covered(word, client.scopes)]
    if not granted:
        raise TokenRefused(
            "invalid_scope",
            f"None of the scopes asked for is held by this client (it holds {client.scopes}).",
            client,
        )
    return " ".join(dict.fromkeys(granted))


def exchange(request: HttpRequest) -> tuple[ApiClient, str, ApiToken, str]:
    """Check the token request; the client, the scopes granted, the new token and its secret."""
    form = request.POST
    if form.get("grant_type") != "client_credentials":
        raise TokenRefused("unsupported_grant_type", "grant_type must be client_credentials.")
    if form.get("client_assertion_type") != JWT_BEARER:
        raise TokenRefused("invalid_request", f"client_assertion_type must be {JWT_BEARER}.")
    assertion = form.get("client_assertion", "")
    if not assertion:
        raise TokenRefused("invalid_request", "client_assertion is missing.")
    if not form.get("scope", "").strip():
        raise TokenRefused("invalid_request", "scope is missing: name the system scopes wanted.")
    client = _client_of(assertion)
    claims = _verified_claims(client, assertion, token_url(request))
    granted = _granted(client, form["scope"])
    _use_once(client, claims)
    lifetime = timedelta(minutes=settings.FHIR_TOKEN_MINUTES)
    token, secret = ApiToken.issue(client, granted, lifetime)
    return client, granted, token, secret


def _as_client(request: HttpRequest, client: ApiClient) -> None:
    request.audit_actor = f"FHIR client {client.name}"


@csrf_exempt
@require_POST
def token(request: HttpRequest) -> JsonResponse:
    if hit("fhir-token", client_address(request), 60) > settings.TOKEN_RATE_LIMIT:
        response = _oauth_response(
            {
                "error": "temporarily_unavailable",
                "error_description": "Too many token requests from this address; wait a minute.",
            },
            status=429,
        )
        response["Retry-After"] = "60"
        return response
    try:
        client, granted, issued, secret = exchange(request)
    except TokenRefused as refusal:
        if refusal.client is not None:
            # Only a known client is named; an unknown one is just an address.
            _as_client(request, refusal.client)
            audit.record(
                request, AuditAction.API_REFUSED, None, f"token: {refusal.error}: {refusal}"
            )
        return _oauth_response(
            {"error": refusal.error, "error_description": refusal.description}, refusal.status
        )
    _as_client(request, client)
    audit.record(request, AuditAction.API_TOKEN_ISSUED, None, f"token {issued.pk}: {granted}")
    return _oauth_response(
        {
            "access_token": secret,
            "token_type": "bearer",
            "expires_in": int((issued.expires_at - issued.issued_at).total_seconds()),
            "scope": granted,
        }
    )


def supported_scopes() -> list[str]:
    """The system scopes worth asking for: every served type's, and the wildcard's."""
    types = ["*", *sorted(REGISTRY)]
    return [f"system/{name}.{access}" for name in types for access in ("read", "write", "rs")]


def smart_configuration_of(request: HttpRequest) -> dict:
    return {
        "token_endpoint": token_url(request),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": supported_scopes(),
        "capabilities": ["client-confidential-asymmetric"],
    }


@require_GET
def smart_configuration(request: HttpRequest) -> JsonResponse:
    """``/fhir/.well-known/smart-configuration``: where and how to get a token (open)."""
    return JsonResponse(smart_configuration_of(request))
