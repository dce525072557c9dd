"""The billing part of the demo: fees and codes for every demo visit type in both
clinics, each clinic's identifiers and money policies, a package price for the IV
induction series, superbill identifiers for the clinicians, one patient with
a sliding-scale discount, a diagnosis and a deposit paid, and the estimate of
each booked demo plan as given when it was booked. Synthetic identifiers only (NPIs and tax ids that
belong to nobody). Idempotent; ``seed_demo`` reaches it through
``scheduler.demo.demo_seeded``.

Codes as public CMS and payer pages describe them (docs/billing.md); whether a
visit is "typically reimbursable" is the demo clinic's own judgement.
"""

from decimal import Decimal

from billing import estimates
from billing.models import (
    ClinicBilling,
    ClinicianBilling,
    Diagnosis,
    EntryKind,
    Fee,
    GoodFaithEstimate,
    LedgerEntry,
    PackagePrice,
    PatientDiscount,
    PaymentOption,
)
from plans.models import CarePlan, PlanStatus, Protocol
from scheduler.models import Clinic, Clinician, Patient, VisitType

# visit type slug: (code, add-on codes, typically reimbursable)
DEMO_FEES = {
    # Psychiatric diagnostic evaluation with medical services (a prescriber).
    "screening": ("90792", "", True),
    # Psychotherapy, 60 minutes.
    "preparation": ("90837", "", True),
    "integration": ("90837", "", True),
    # IV infusion, first hour, and the drug as an unclassified drug; off-label, rarely repaid.
    "iv-infusion": ("96365", "J3490", False),
    # Intramuscular injection and the drug.
    "im-dosing": ("96372", "J3490", False),
    # The prescriber's E/M visit with 60 minutes of psychotherapy as the add-on.
    "lozenge-dosing": ("99214", "+90838", True),
    # Esketamine up to 56 mg with 2 hours' observation (G2083 above 56 mg).
    "intranasal-dosing": ("G2082", "", True),
    "maintenance": ("99214", "", True),
}

# By clinic slug: identifiers and policies.
DEMO_BILLING = {
    "riverside": {
        "legal_name": "Riverside Wellness PLLC (demo)",
        "npi": "1000000004",
        "tax_id": "99-0000001",
        "payment_option": PaymentOption.INSTALMENTS,
        "instalments": 3,
        "instalment_reminders": True,
        "late_cancellation_fee": Decimal("100.00"),
        "no_show_fee": Decimal("150.00"),
    },
    "riverside-denver": {
        "legal_name": "Riverside Wellness Denver PLLC (demo)",
        "npi": "1000000012",
        "tax_id": "99-0000002",
        "payment_option": PaymentOption.DEPOSIT,
        "deposit": Decimal("500.00"),
        "late_cancellation_fee": Decimal("75.00"),
        "no_show_fee": Decimal("125.00"),
    },
}

# Six infusions for the price of five and a bit.
IV_PACKAGE = {"protocol": "iv-induction", "doses": 6, "price": Decimal("2500.00")}
DISCOUNTED = ("Dana", "Driftwood")
DISCOUNT = {"percent": Decimal("20.00"), "reason": "Sliding scale, income band B"}


def seed(sender=None, *, clinic: Clinic | None = None, **kwargs) -> list[str]:
    """Every demo clinic's billing rows; the line ``seed_demo`` prints about them."""
    clinics = list(Clinic.objects.filter(slug__in=DEMO_BILLING))
    for each in clinics:
        ClinicBilling.objects.update_or_create(clinic=each, defaults=DEMO_BILLING[each.slug])
        for visit_type in VisitType.objects.filter(clinic=each, slug__in=DEMO_FEES):
            code, add_ons, reimbursable = DEMO_FEES[visit_type.slug]
            Fee.objects.update_or_create(
                visit_type=visit_type,
                defaults={
                    "code": code,
                    "add_on_codes": add_ons,
                    "typically_reimbursable": reimbursable,
                },
            )
        for protocol in Protocol.objects.filter(clinic=each, slug=IV_PACKAGE["protocol"]):
            PackagePrice.objects.update_or_create(
                protocol=protocol,
                defaults={"doses": IV_PACKAGE["doses"], "price": IV_PACKAGE["price"]},
            )
        for number, clinician in enumerate(
            Clinician.objects.filter(clinic=each).order_by("pk"), start=1
        ):
            ClinicianBilling.objects.get_or_create(
                clinician=clinician,
                defaults={
                    # Synthetic: 2 then the clinic's and the clinician's numbers, 10 digits.
                    "npi": f"2{each.pk:04d}{number:05d}",
                    "licence": f"{'CO' if 'denver' in each.slug else 'NY'} DEMO-{number:04d}",
                    "credentials": "MD" if clinician.is_prescriber else "LCSW",
                },
            )
    first, last = DISCOUNTED
    for patient in Patient.objects.filter(first_name=first, last_name=last):
        PatientDiscount.objects.get_or_create(patient=patient, defaults=DISCOUNT)
        seed_account(patient)
    for plan in CarePlan.objects.filter(
        protocol__clinic__in=clinics, status=PlanStatus.ACTIVE
    ).select_related("patient", "protocol__clinic"):
        seed_estimate_given(plan)
    return [
        f"Billing: fees and codes for {Fee.objects.count()} visit types; "
        f"{first} {last} has a {DISCOUNT['percent']:g}% sliding-scale discount."
    ]


def seed_account(patient: Patient) -> None:
    """A diagnosis their prescriber entered and a deposit the desk recorded."""
    prescriber = Clinician.objects.filter(clinic=patient.clinic, is_prescriber=True).first()
    if prescriber is not None:
        Diagnosis.objects.get_or_create(
            patient=patient,
            code="F33.1",
            defaults={
                "description": "Major depressive disorder, recurrent, moderate",
                "entered_by": prescriber,
            },
        )
    LedgerEntry.objects.get_or_create(
        patient=patient,
        kind=EntryKind.PAYMENT,
        description="Deposit, card at the desk (demo)",
        defaults={"amount": Decimal("300.00")},
    )


def seed_estimate_given(plan: CarePlan) -> None:
    """The plan's estimate as given when it was booked (printed at the desk)."""
    if GoodFaithEstimate.objects.filter(care_plan=plan).exists():
        return
    estimate = estimates.for_plan(plan)
    if not estimate.lines:
        return
    tz = plan.protocol.clinic.tz
    booked_on = (plan.confirmed_at or plan.created_at).astimezone(tz).date()
    GoodFaithEstimate.objects.create(
        care_plan=plan,
        patient=plan.patient,
        given_at=plan.confirmed_at or plan.created_at,
        how="printed",
        due_by=estimates.due_by(booked_on, estimate.lines[0].start.astimezone(tz).date()),
        content=estimate.as_record(),
        total=estimate.total,
        currency=estimate.currency,
    )
