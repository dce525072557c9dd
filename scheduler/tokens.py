"""Secret link tokens: issued once, stored as a hash, revocable.

A token is 256 random bits from ``secrets`` in URL-safe text. The database keeps
only its SHA-256, so neither a backup nor a read-only SQL account can open a
calendar; the person gets the URL once, when it is issued, and a lost URL is
replaced by issuing a new one (which revokes the old).

Looking a token up by its digest is safe against timing attacks: the digest of
a guess says nothing about the digests stored, so how long the indexed lookup
takes leaks nothing useful. The final comparison is constant-time anyway.
"""

import hashlib
import hmac
import re
import secrets

from django.db import transaction
from django.utils import timezone

from scheduler.models import AccessToken, Clinician, Patient, TokenPurpose

TOKEN_BYTES = 32
# What a token looks like in a URL: token_urlsafe's alphabet, with room to grow.
TOKEN_PATTERN = r"[A-Za-z0-9_-]{32,128}"
_TOKEN_RE = re.compile(TOKEN_PATTERN)


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("ascii")).hexdigest()


def _owner_fields(owner: Clinician | Patient) -> dict:
    if isinstance(owner, Clinician):
        return {"clinician": owner}
    if isinstance(owner, Patient):
        return {"patient": owner}
    raise TypeError(f"Tokens belong to a clinician or a patient, not {type(owner).__name__}.")


def issue(
    owner: Clinician | Patient, purpose: str = TokenPurpose.CALENDAR_FEED, *, created_by=None
) -> tuple[AccessToken, str]:
    """Revoke ``owner``'s live token for ``purpose`` and issue a new one.

    Returns the stored row and the raw token; the raw token exists nowhere
    else, so the caller shows it now or never.
    """
    raw = secrets.token_urlsafe(TOKEN_BYTES)
    with transaction.atomic():
        revoke(owner, purpose)
        token = AccessToken.objects.create(
            purpose=purpose, digest=digest(raw), created_by=created_by, **_owner_fields(owner)
        )
    return token, raw


def revoke(owner: Clinician | Patient, purpose: str = TokenPurpose.CALENDAR_FEED) -> int:
    """Revoke ``owner``'s live tokens for ``purpose``; how many there were."""
    return (
        AccessToken.objects.active()
        .filter(purpose=purpose, **_owner_fields(owner))
        .update(revoked_at=timezone.now())
    )


def active(owner: Clinician | Patient, purpose: str = TokenPurpose.CALENDAR_FEED):
    return AccessToken.objects.active().filter(purpose=purpose, **_owner_fields(owner)).first()


def verify(raw: str, purpose: str) -> AccessToken | None:
    """The live token ``raw`` stands for, with its owner and clinic loaded; None if not one.

    One query whatever the token's owner (a clinician or a patient).
    """
    if not _TOKEN_RE.fullmatch(raw or ""):
        return None
    wanted = digest(raw)
    token = (
        AccessToken.objects.active()
        .select_related("clinician__clinic", "patient__clinic")
        .filter(purpose=purpose, digest=wanted)
        .first()
    )
    if token is None or not hmac.compare_digest(token.digest, wanted):
        return None
    return token
