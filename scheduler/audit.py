"""The audit trail: who saw or changed which patient's data (``AuditEvent``).

Views call ``record(request, action, patient)``. Visit changes are recorded
where they happen (the ``visit_saved`` receiver below), inside the booking's
transaction, so the trail and the change commit or roll back together; the
actor comes from the request being served (``AuditMiddleware`` keeps it in a
context variable), or is "system" for the worker and the shell.
"""

from collections.abc import Iterable
from contextvars import ContextVar

from django.http import HttpRequest

from scheduler.models import AuditAction, AuditEvent, Patient

PATIENT_LINK = "patient link"
SYSTEM = "system"
USER_AGENT_CHARS = 200

_current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


class AuditMiddleware:
    """Remembers the request being served, for records made far from the view."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        reset = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(reset)


def act_as_patient_link(request: HttpRequest) -> None:
    """Mark ``request`` as made by whoever holds a patient link (not a signed-in user)."""
    request.audit_actor = PATIENT_LINK


def _actor(request: HttpRequest | None) -> tuple[object, str]:
    if request is None:
        return None, SYSTEM
    label = getattr(request, "audit_actor", None)
    if label:
        return None, label
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user, user.get_username()
    return None, "anonymous"


def _event(
    request: HttpRequest | None,
    action: AuditAction,
    patient: Patient | int | None,
    detail: str,
) -> AuditEvent:
    """An event not saved yet, for ``request`` (the one being served when None)."""
    request = request if request is not None else _current_request.get()
    user, label = _actor(request)
    meta = request.META if request is not None else {}
    return AuditEvent(
        actor=user,
        actor_label=label[:150],
        action=action,
        # An id is enough: visits' receivers need not load the patient.
        patient_id=patient.pk if isinstance(patient, Patient) else patient,
        detail=detail[:200],
        ip_address=meta.get("REMOTE_ADDR") or None,
        user_agent=(meta.get("HTTP_USER_AGENT") or "")[:USER_AGENT_CHARS],
    )


def record(
    request: HttpRequest | None,
    action: AuditAction,
    patient: Patient | int | None = None,
    detail: str = "",
) -> AuditEvent:
    event = _event(request, action, patient, detail)
    event.save()
    return event


def record_many(
    request: HttpRequest | None,
    action: AuditAction,
    patients: Iterable[Patient | int | None],
    detail: str = "",
) -> list[AuditEvent]:
    """One event per patient for one thing done (a search that showed them all), in one insert.

    Still append-only: ``bulk_create`` only inserts, it never changes a row.
    """
    return AuditEvent.objects.bulk_create(
        [_event(request, action, patient, detail) for patient in patients]
    )


def record_visit_change(sender, visit, change, **kwargs) -> None:
    record(None, AuditAction.CHANGED_VISIT, visit.patient_id, f"visit {visit.pk}: {change}")


def record_lockout(sender, request, username, ip_address, **kwargs) -> None:
    """axes' ``user_locked_out``: the failure that locked, or a try refused while locked.

    "Who" is whoever is signed in (someone at the second-factor step) or
    "anonymous"; the account the try named goes in the detail.
    """
    if getattr(request, "axes_failures_since_start", None) is not None:
        what = f"locked after {request.axes_failures_since_start} failed sign-ins"
    else:
        what = "sign-in refused while locked"
    record(request, AuditAction.SIGN_IN_LOCKED, detail=f"{what}; account {username or '-'!r}")
