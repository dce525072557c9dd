"""Who may use the FHIR API: clients, the keys they sign with, and the short-lived tokens they hold.

A client is another system (an EHR, a reporting job) a clinic admin lets in,
with the SMART scopes it may use (``system/Appointment.read``) and the public
keys (a JWKS) its token requests are signed with (fhirapi/tokens.py). Only the
SHA-256 of a bearer token is stored, as with patient links and feed tokens.
"""

import secrets
from datetime import timedelta

import jwt
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from fhirapi import scopes as smart_scopes
from scheduler.models import Clinic
from scheduler.tokens import TOKEN_BYTES, digest


def new_client_id() -> str:
    return secrets.token_urlsafe(16)


# SMART Backend Services asks servers for RS384 and ES384; nothing else is taken.
# Each algorithm with the key type (and curve) it is made with.
SIGNING_ALGORITHMS = {"RS384": ("RSA", None), "ES384": ("EC", "P-384")}
# Members of a JWK that only a private (or a shared, symmetric) key has.
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def key_algorithms(jwk: dict) -> list[str]:
    """The accepted algorithms this public key can verify (none: it is of no use here)."""
    kty, crv, alg = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
    return [
        name
        for name, (key_type, curve) in SIGNING_ALGORITHMS.items()
        if kty == key_type and crv == curve and alg in (None, name)
    ]


def validate_scopes(text: str) -> None:
    unknown = smart_scopes.unknown_scopes(text)
    if unknown:
        raise ValidationError(
            "Not a system scope this server understands: %(words)s. Write them as "
            "system/<Type>.read, .write, .* or SMART v2 letters (system/<Type>.rs).",
            params={"words": ", ".join(unknown)},
            code="unknown_scope",
        )
    if not text.split():
        raise ValidationError("Give the client at least one scope.", code="no_scope")
    # Lazily: the registry imports the resource modules, which import this one.
    from fhirapi.resources import REGISTRY

    unserved = sorted(
        {scope.resource_type for scope in smart_scopes.parse_scopes(text)} - {*REGISTRY, "*"}
    )
    if unserved:
        raise ValidationError(
            "This server serves no %(types)s resources (it serves %(served)s).",
            params={"types": ", ".join(unserved), "served": ", ".join(REGISTRY)},
            code="unserved_type",
        )


def validate_public_jwks(jwks) -> None:
    """A JWK Set of public RS384/ES384 keys, each with its own ``kid``; never a private key."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValidationError('A JWK Set is an object with a list of keys: {"keys": [...]}.')
    kids = []
    for number, jwk in enumerate(jwks["keys"], start=1):
        if not isinstance(jwk, dict):
            raise ValidationError(f"Key {number} is not a JSON object.")
        private = sorted(_PRIVATE_MEMBERS & jwk.keys())
        if private:
            raise ValidationError(
                f"Key {number} holds private parts ({', '.join(private)}): register the "
                "public key only; the private key never leaves the client."
            )
        if not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
            raise ValidationError(f"Key {number} has no kid: a token request names its key by it.")
        if not key_algorithms(jwk):
            raise ValidationError(
                f"Key {jwk['kid']!r} cannot sign with RS384 or ES384 (an RSA key, or an EC "
                "key on curve P-384, with no other alg)."
            )
        kids.append(jwk["kid"])
    if len(set(kids)) != len(kids):
        raise ValidationError("Two keys share a kid: each key needs its own.")
    for jwk in jwks["keys"]:
        try:
            jwt.PyJWK(jwk)
        except (jwt.PyJWTError, ValueError, TypeError):
            # PyJWT's own words guess at a missing library; the key's numbers are what is wrong.
            raise ValidationError(
                f"Key {jwk['kid']!r} is not a usable public key: check its numbers "
                "(n and e for RSA, x and y for EC), as the client's tooling exported them."
            ) from None


class ApiClientQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiClient(models.Model):
    """A system allowed to read (and book) through the FHIR API, for one clinic."""

    name = models.CharField(max_length=120, unique=True)
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="api_clients")
    client_id = models.CharField(max_length=64, unique=True, default=new_client_id)
    scopes = models.TextField(
        validators=[validate_scopes],
        help_text="SMART scopes separated by spaces, e.g. "
        "system/Appointment.read system/Patient.read system/Appointment.write.",
    )
    jwks = models.JSONField(
        "public keys (JWKS)",
        default=dict,
        validators=[validate_public_jwks],
        help_text='The client\'s public keys as a JWK Set ({"keys": [...]}), RS384 or ES384, '
        "each with a kid. It signs its token requests with the private key, which stays with it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiClientQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "FHIR API client"

    def __str__(self):
        return self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiTokenQuerySet(models.QuerySet):
    def live(self):
        return self.filter(
            expires_at__gt=timezone.now(),
            revoked_at__isnull=True,
            client__revoked_at__isnull=True,
        )


class ApiToken(models.Model):
    """A bearer token issued to a client: its scopes (at most the client's) and expiry."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="tokens")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.TextField()
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-issued_at"]

    def __str__(self):
        return f"Token of {self.client} until {self.expires_at:%Y-%m-%d %H:%M}"

    @classmethod
    def issue(cls, client: ApiClient, scopes: str, lifetime: timedelta) -> tuple["ApiToken", str]:
        """A new token for ``client``; the secret is returned once and never stored."""
        secret = secrets.token_urlsafe(TOKEN_BYTES)
        now = timezone.now()
        token = cls.objects.create(
            client=client,
            digest=digest(secret),
            scopes=scopes,
            issued_at=now,
            expires_at=now + lifetime,
        )
        return token, secret


class UsedAssertion(models.Model):
    """A client assertion's ``jti`` already exchanged: refused again until the assertion expires.

    The unique constraint makes every web process agree: of two requests with
    the same assertion, one insert wins and the other is a replay.
    """

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "jti"], name="assertion_used_once")
        ]

    def __str__(self):
        return f"{self.jti} of {self.client_id}"
