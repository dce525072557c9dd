"""Patients' private links (/p/<token>/): issue one, open one, ask to reschedule from it.

The link is a ``scheduler.tokens`` token with the ``patient_link`` purpose: 256
random bits, only the SHA-256 stored, one live link per patient (issuing a new
one revokes the old). Unlike a calendar feed, which a calendar app polls for
years, a patient link travels in texts and emails that get forwarded and kept,
so it also expires ``PATIENT_LINK_DAYS`` after it was issued.

To put a link in a text or email, call ``issue_patient_link(patient)`` where the
message is composed (or ``issue_patient_links`` for a batch of them) and use the
URL it returns; the raw token exists only in that URL, so it cannot be looked
up later.
"""

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications.models import InboundKind, InboundMessage
from scheduler import tokens
from scheduler.links import patient_page_url
from scheduler.models import AccessToken, Patient, TokenPurpose, Visit

PURPOSE = TokenPurpose.PATIENT_LINK


def issue_patient_link(patient: Patient, *, created_by=None) -> str:
    """A new private link for ``patient`` (the previous one stops working); the full URL."""
    _, raw = tokens.issue(patient, PURPOSE, created_by=created_by)
    return patient_page_url(raw)


def issue_patient_links(patients: list[Patient]) -> list[str]:
    """``issue_patient_link`` for each of ``patients`` in turn, in two statements; the URLs.

    For a dispatch batch's preparation texts, a fresh link each. As if issued
    one after the other: each patient's previous links stop working, and a
    patient listed twice gets two links of which only the later one works.
    """
    now = timezone.now()
    raws = [secrets.token_urlsafe(tokens.TOKEN_BYTES) for _ in patients]
    last = {patient.pk: index for index, patient in enumerate(patients)}
    with transaction.atomic():
        AccessToken.objects.active().filter(purpose=PURPOSE, patient__in=list(last)).update(
            revoked_at=now
        )
        AccessToken.objects.bulk_create(
            AccessToken(
                purpose=PURPOSE,
                patient=patient,
                digest=tokens.digest(raw),
                revoked_at=None if last[patient.pk] == index else now,
            )
            for index, (patient, raw) in enumerate(zip(patients, raws, strict=True))
        )
    return [patient_page_url(raw) for raw in raws]


def expires_at(token: AccessToken) -> datetime:
    return token.created_at + timedelta(days=settings.PATIENT_LINK_DAYS)


def patient_for_link(raw_token: str, *, now: datetime | None = None) -> Patient | None:
    """The patient a live, unexpired link belongs to (clinic loaded), or None. One query."""
    token = tokens.verify(raw_token, PURPOSE)
    if token is None or token.patient_id is None:
        return None
    if expires_at(token) <= (now or timezone.now()):
        return None
    return token.patient


def ask_to_reschedule(patient: Patient, visit: Visit, *, now: datetime | None = None) -> bool:
    """Put a reschedule request for ``visit`` in the front desk's inbox, like an "R" text.

    It is an ``InboundMessage`` so the desk works one inbox whatever the channel.
    A second click while the first request is still open adds nothing; returns
    whether a new request was recorded.
    """
    now = now or timezone.now()
    with transaction.atomic():
        open_request = (
            InboundMessage.objects.inbox()
            .filter(patient=patient, visit=visit, kind=InboundKind.RESCHEDULE)
            .exists()
        )
        if open_request:
            return False
        InboundMessage.objects.create(
            # provider_id is unique for Twilio's message ids; web requests get their own.
            provider_id=f"web-{secrets.token_hex(12)}",
            from_number=patient.mobile or "",
            patient=patient,
            body="Asked on the patient page to reschedule this visit.",
            kind=InboundKind.RESCHEDULE,
            visit=visit,
            outcome="Asked for a call back to reschedule (patient page).",
            needs_attention=True,
            received_at=now,
        )
    return True
