"""The patient's account: policy fees for late cancellations and no-shows, payments, waivers.

A late cancellation (``Visit.cancelled_late``, judged by the clinic's notice
period where the visit is cancelled) or a no-show records the clinic's fee as
a charge, in the booking's transaction (a ``visit_saved`` receiver), once per
visit. The desk records payments taken with the clinic's own tools, and may
waive a charge with a reason; both are lines of their own, never edits, and
both go in the audit trail.
"""

from decimal import Decimal

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from billing.models import ClinicBilling, EntryKind, LedgerEntry
from scheduler import audit
from scheduler.booking import VisitChange
from scheduler.models import AuditAction, Patient, Visit


def policy_fee(visit: Visit, change: str) -> tuple[Decimal, str] | None:
    """The fee and its description the clinic's policy sets for this change, or None."""
    billing = ClinicBilling.of(visit.clinic)
    day = f"{timezone.localtime(visit.start, visit.clinic.tz):%Y-%m-%d}"
    if change == VisitChange.NO_SHOW and billing.no_show_fee:
        return billing.no_show_fee, f"Missed visit on {day} (no-show fee)"
    if change == VisitChange.CANCELLED and visit.cancelled_late and billing.late_cancellation_fee:
        return (
            billing.late_cancellation_fee,
            f"Visit on {day} cancelled late (late-cancellation fee)",
        )
    return None


def charge_policy_fee(sender, visit: Visit, change, previous=None, **kwargs) -> LedgerEntry | None:
    """``visit_saved`` receiver: the policy fee on the patient's account, once per visit."""
    if change not in (VisitChange.NO_SHOW, VisitChange.CANCELLED):
        return None
    fee = policy_fee(visit, change)
    if fee is None:
        return None
    amount, description = fee
    entry, _ = LedgerEntry.objects.get_or_create(
        visit=visit,
        kind=EntryKind.CHARGE,
        defaults={
            "patient_id": visit.patient_id,
            "amount": amount,
            "description": description,
            "on": timezone.localtime(visit.start, visit.clinic.tz).date(),
        },
    )
    return entry


class LedgerError(ValueError):
    pass


def record_payment(
    request: HttpRequest, patient: Patient, amount: Decimal, description: str
) -> LedgerEntry:
    if amount <= 0:
        raise LedgerError("A payment is more than zero.")
    with transaction.atomic():
        entry = LedgerEntry.objects.create(
            patient=patient,
            kind=EntryKind.PAYMENT,
            amount=amount,
            description=description.strip()[:200] or "Payment",
            recorded_by=request.user,
        )
        audit.record(request, AuditAction.CHANGED_PATIENT, patient, f"recorded payment {amount}")
    return entry


def waive(request: HttpRequest, charge: LedgerEntry, reason: str) -> LedgerEntry:
    """Waive ``charge`` with ``reason``: a waiver line of the same amount, audited."""
    reason = reason.strip()
    if not reason:
        raise LedgerError("Say why the fee is waived.")
    with transaction.atomic():
        charge = LedgerEntry.objects.select_for_update().get(pk=charge.pk)
        if charge.kind != EntryKind.CHARGE:
            raise LedgerError("Only a charge can be waived.")
        if LedgerEntry.objects.filter(waives=charge).exists():
            raise LedgerError("This charge is waived already.")
        waiver = LedgerEntry.objects.create(
            patient_id=charge.patient_id,
            kind=EntryKind.WAIVER,
            amount=charge.amount,
            description=f"Waived: {reason}"[:200],
            waives=charge,
            recorded_by=request.user,
        )
        audit.record(
            request,
            AuditAction.CHANGED_PATIENT,
            charge.patient_id,
            f"waived charge {charge.pk} ({charge.amount}): {reason}",
        )
    return waiver
