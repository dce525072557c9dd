"""Costs on the desk and the patient page: estimates, payment schedules, the account, superbills.

The domain is ``billing`` (fees, estimates, schedules, the ledger, superbills);
these views only read it, take the desk's forms and render. Each page reads a
fixed number of queries however many plans, visits or ledger lines it shows.
"""

from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from billing import estimates, ledger, payments, superbill
from billing.models import ClinicBilling, Diagnosis, GoodFaithEstimate, LedgerEntry
from config.throttle import token_rate_limited
from desk.patient_page import link_patient, private
from plans.models import CarePlan, PlanStatus
from scheduler import audit
from scheduler.models import AuditAction, Clinic, Clinician, Patient
from scheduler.roles import DESK_ROLES, Role, role_required, roles_of, working_clinic
from scheduler.timezones import zone

HOW_GIVEN = dict(GoodFaithEstimate._meta.get_field("how").choices)
# Plans worth estimating: not those cancelled.
ESTIMATED = (PlanStatus.PROPOSED, PlanStatus.ACTIVE, PlanStatus.COMPLETED)


def plans_with_costs(patient: Patient, clinic: Clinic) -> list[CarePlan]:
    """The patient's plans, each with ``estimate``, ``instalments``, ``given`` (estimates
    given, newest first), ``changes`` since the newest and ``due_by``; a fixed number of queries."""
    plans = list(
        CarePlan.objects.filter(patient=patient, status__in=ESTIMATED)
        .select_related("protocol__clinic", "patient")
        .order_by("-start_date", "-pk")
    )
    if not plans:
        return []
    by_plan = estimates.for_plans(patient, plans)
    # Each plan is paid to the clinic that holds it (a plan may be at another location).
    billings = ClinicBilling.objects.in_bulk(
        {plan.protocol.clinic_id for plan in plans}, field_name="clinic_id"
    )
    given: dict[int, list[GoodFaithEstimate]] = {plan.pk: [] for plan in plans}
    for record in GoodFaithEstimate.objects.filter(care_plan__in=plans).select_related("given_by"):
        given[record.care_plan_id].append(record)
    for plan in plans:
        plan.estimate = by_plan[plan.pk]
        billing = billings.get(plan.protocol.clinic_id) or ClinicBilling(
            clinic=plan.protocol.clinic
        )
        plan.instalments = payments.for_care_plan(plan, estimate=plan.estimate, billing=billing)
        plan.given = given[plan.pk]
        plan.changes = estimates.changes_since(plan.given[0], plan.estimate) if plan.given else []
        plan.due_by = _estimate_due_by(plan, plan.estimate, clinic) if plan.estimate.lines else None
    return plans


def _estimate_due_by(plan: CarePlan, estimate, clinic: Clinic):
    """The last day to give ``plan``'s estimate (which has visits), by the clinic's calendar."""
    scheduled_on = timezone.localtime(plan.confirmed_at or plan.created_at, clinic.tz).date()
    first_on = timezone.localtime(estimate.lines[0].start, clinic.tz).date()
    return estimates.due_by(scheduled_on, first_on)


def _amount(text: str) -> Decimal | None:
    try:
        amount = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        return None
    return amount.quantize(Decimal("0.01")) if amount.is_finite() and amount > 0 else None


@require_http_methods(["GET", "POST"])
@role_required(*DESK_ROLES)
def costs(request: HttpRequest, pk: int) -> HttpResponse:
    """A patient's estimates, payment schedules and account; the desk records estimates
    given, payments and waivers here."""
    clinic = working_clinic(request)
    patient = get_object_or_404(Patient.objects.seen_at(clinic), pk=pk)
    if request.method == "POST":
        return _act(request, patient, clinic)
    entries = list(
        LedgerEntry.objects.filter(patient=patient).select_related("waiver", "recorded_by")
    )
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "patient": patient,
        "care_plans": plans_with_costs(patient, clinic),
        "billing": ClinicBilling.of(clinic),
        "entries": entries,
        "balance": LedgerEntry.objects.filter(patient=patient).balance(),
        "currency": settings.CURRENCY,
        "how_given": HOW_GIVEN,
        "today": timezone.localdate(timezone=clinic.tz),
        "may_bill": Role.ADMIN in roles_of(request.user),
    }
    audit.record(request, AuditAction.VIEWED_PATIENT, patient, "costs and account")
    return render(request, "desk/costs.html", context)


def _act(request: HttpRequest, patient: Patient, clinic: Clinic) -> HttpResponse:
    action = request.POST.get("action")
    try:
        if action == "give":
            plan = get_object_or_404(
                CarePlan.objects.select_related("protocol__clinic", "patient"),
                pk=request.POST.get("plan") or 0,
                patient=patient,
            )
            how = request.POST.get("how")
            if how not in HOW_GIVEN:
                raise ledger.LedgerError("Say how the estimate was given.")
            give_estimate(request, plan, how, clinic)
            messages.success(request, "The estimate as given is kept on record.")
        elif action == "payment":
            amount = _amount(request.POST.get("amount", ""))
            if amount is None:
                raise ledger.LedgerError("Give the amount paid, e.g. 150.00.")
            ledger.record_payment(request, patient, amount, request.POST.get("description", ""))
            messages.success(request, f"Payment of {amount} recorded.")
        elif action == "waive":
            charge = get_object_or_404(
                LedgerEntry, pk=request.POST.get("entry") or 0, patient=patient
            )
            ledger.waive(request, charge, request.POST.get("reason", ""))
            messages.success(request, "Fee waived.")
        else:
            raise ledger.LedgerError("Nothing to do.")
    except ledger.LedgerError as error:
        messages.error(request, str(error))
    return redirect("desk_costs", pk=patient.pk)


def give_estimate(
    request: HttpRequest, plan: CarePlan, how: str, clinic: Clinic
) -> GoodFaithEstimate:
    """Keep the plan's estimate as it is now, as given to the patient today."""
    estimate = estimates.for_plan(plan)
    if not estimate.lines:
        raise ledger.LedgerError("This plan has no visits to estimate.")
    record = GoodFaithEstimate.objects.create(
        care_plan=plan,
        patient=plan.patient,
        given_by=request.user,
        how=how,
        due_by=_estimate_due_by(plan, estimate, clinic),
        content=estimate.as_record(),
        total=estimate.total,
        currency=estimate.currency,
    )
    audit.record(
        request, AuditAction.CHANGED_PATIENT, plan.patient, f"gave Good Faith Estimate {record.pk}"
    )
    return record


@require_safe
@role_required(*DESK_ROLES)
def printable_estimate(request: HttpRequest, pk: int) -> HttpResponse:
    """The Good Faith Estimate of one plan, to print: itemised, coded, dated, with the disclaimer."""
    clinic = working_clinic(request)
    plan = get_object_or_404(
        CarePlan.objects.filter(patient__in=Patient.objects.seen_at(clinic)).select_related(
            "patient", "protocol__clinic"
        ),
        pk=pk,
        status__in=ESTIMATED,
    )
    plan = next(p for p in plans_with_costs(plan.patient, clinic) if p.pk == plan.pk)
    audit.record(request, AuditAction.VIEWED_PATIENT, plan.patient, "Good Faith Estimate")
    context = {
        "clinic": clinic,
        "billing": ClinicBilling.of(clinic),
        "tz": clinic.tz,
        "patient": plan.patient,
        "plan": plan,
        "today": timezone.localdate(timezone=clinic.tz),
        "disclaimer": estimates.DISCLAIMER,
    }
    return render(request, "desk/estimate_print.html", context)


def _range(request: HttpRequest, clinic: Clinic) -> tuple[date, date]:
    today = timezone.localdate(timezone=clinic.tz)
    try:
        first = date.fromisoformat(request.GET.get("from", ""))
    except ValueError:
        first = today - timedelta(days=90)
    try:
        last = date.fromisoformat(request.GET.get("to", ""))
    except ValueError:
        last = today
    if last < first:
        first, last = last, first
    # A superbill covers at most a few years: a bounded range, whatever the address says.
    return max(first, last - timedelta(days=3 * 366)), last


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN, Role.CLINICIAN)
def superbill_page(request: HttpRequest, pk: int) -> HttpResponse:
    """A superbill for a date range, as a page or (``?pdf=1``) a PDF. Clinic admins and the
    patient's prescribers only; each one produced is recorded in the audit trail. The
    patient's prescriber enters diagnosis codes here (POST)."""
    clinic = working_clinic(request)
    patient = get_object_or_404(Patient.objects.seen_at(clinic), pk=pk)
    is_admin = Role.ADMIN in roles_of(request.user)
    if not superbill.may_produce(request.user, patient, is_admin):
        raise PermissionDenied(
            "Only clinic admins and the patient's prescriber produce a superbill."
        )
    prescriber = _prescriber(request)
    if request.method == "POST":
        if prescriber is None:
            raise PermissionDenied("Only a prescriber enters diagnosis codes.")
        _add_diagnosis(request, patient, prescriber)
        return redirect(request.get_full_path())
    first, last = _range(request, clinic)
    bill = superbill.build(patient, clinic, first, last)
    as_pdf = request.GET.get("pdf") == "1"
    audit.record(
        request,
        AuditAction.EXPORTED,
        patient,
        f"superbill {first} to {last}{' (PDF)' if as_pdf else ''}",
    )
    if as_pdf:
        response = HttpResponse(superbill.pdf(bill), content_type="application/pdf")
        response["Content-Disposition"] = (
            f'attachment; filename="superbill-{patient.pk}-{first}-{last}.pdf"'
        )
        return response
    context = {"clinic": clinic, "bill": bill, "prescriber": prescriber}
    return render(request, "desk/superbill.html", context)


def _prescriber(request: HttpRequest) -> Clinician | None:
    clinician = getattr(request.user, "clinician", None)
    return clinician if clinician is not None and clinician.is_prescriber else None


def _add_diagnosis(request: HttpRequest, patient: Patient, prescriber: Clinician) -> None:
    diagnosis = Diagnosis(
        patient=patient,
        code=request.POST.get("code", "").strip().upper(),
        description=request.POST.get("description", "").strip(),
        entered_by=prescriber,
    )
    try:
        diagnosis.full_clean()
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return
    diagnosis.save()
    audit.record(
        request, AuditAction.CHANGED_PATIENT, patient, f"diagnosis code {diagnosis.code} entered"
    )
    messages.success(request, f"{diagnosis.code} added.")


@token_rate_limited
@never_cache
@require_safe
def patient_costs(request: HttpRequest, token: str) -> HttpResponse:
    """The patient's own estimates and payment schedules, under their private link."""
    patient = link_patient(request, token)
    clinic = patient.clinic
    balance = LedgerEntry.objects.filter(patient=patient).balance()
    context = {
        "clinic": clinic,
        "tz": zone(patient.time_zone),
        "patient": patient,
        "care_plans": [
            plan
            for plan in plans_with_costs(patient, clinic)
            if plan.status != PlanStatus.COMPLETED
        ],
        "balance": balance,
        "credit": -balance,
        "currency": settings.CURRENCY,
        # Read in the patient's language (docs/billing.md: the Spanish is ours).
        "disclaimer": gettext(estimates.DISCLAIMER),
        "token": token,
    }
    audit.record(request, AuditAction.VIEWED_PATIENT_LINK, patient, "costs")
    return private(render(request, "desk/patient_costs.html", context))
