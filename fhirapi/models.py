"""Who may use the FHIR API: clients and the short-lived tokens they hold.

A client is another system (an EHR, a reporting job) a clinic admin lets in,
with the SMART scopes it may use (``system/Appointment.read``). Only the
SHA-256 of a bearer token is stored, as with patient links and feed tokens.
"""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from scheduler.models import Clinic

TOKEN_BYTES = 32


def new_client_id() -> str:
    return secrets.token_urlsafe(16)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiClientQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiClient(models.Model):
    """A system allowed to read (and book) through the FHIR API, for one clinic."""

    name = models.CharField(max_length=120, unique=True)
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="api_clients")
    client_id = models.CharField(max_length=64, unique=True, default=new_client_id)
    scopes = models.TextField(
        help_text="SMART scopes separated by spaces, e.g. "
        "system/Appointment.read system/Patient.read system/Appointment.write."
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
            digest=token_digest(secret),
            scopes=scopes,
            issued_at=now,
            expires_at=now + lifetime,
        )
        return token, secret
