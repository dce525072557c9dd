"""What care costs and what was paid: fees, estimates given, discounts, the ledger, superbill data.

No money moves through the software: the clinic takes payments with its own
tools and the desk records them here. Amounts are ``Decimal`` in the
installation's currency (``settings.CURRENCY``); a visit type's self-pay price
is ``VisitType.price`` (what plans already total), and a ``Fee`` adds the
billing codes a superbill and an estimate show beside it.
"""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Case, DecimalField, Q, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from plans.models import CarePlan, Protocol
from scheduler.models import Clinic, Clinician, Patient, Visit, VisitType

ZERO = Decimal("0.00")
MONEY = {"max_digits": 10, "decimal_places": 2}

# CPT codes are five digits, HCPCS Level II a letter and four digits; an add-on
# code is written with its "+" (the way CPT prints it).
code_shape = RegexValidator(r"^\+?([0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})$", "Not a CPT or HCPCS code.")
modifier_shape = RegexValidator(r"^[0-9A-Z]{2}$", "A modifier is two letters or digits.")


class Fee(models.Model):
    """The billing codes of a visit type, and whether the clinic thinks insurers often repay it.

    ``typically_reimbursable`` is the clinic's own judgement, shown to patients
    as "may be reimbursable", never a promise of what an insurer pays.
    """

    visit_type = models.OneToOneField(VisitType, on_delete=models.CASCADE, related_name="fee")
    code = models.CharField(
        max_length=6, validators=[code_shape], help_text="CPT or HCPCS, e.g. 90837, G2083."
    )
    add_on_codes = models.CharField(
        max_length=60,
        blank=True,
        help_text="Add-on codes billed with it, space-separated, e.g. +90785.",
    )
    modifier = models.CharField(max_length=2, blank=True, validators=[modifier_shape])
    units = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    typically_reimbursable = models.BooleanField(
        default=False,
        help_text="The clinic finds insurers often repay it out of network (never a promise).",
    )

    class Meta:
        ordering = ["visit_type"]

    def __str__(self):
        return f"{self.visit_type}: {self.codes}"

    @property
    def codes(self) -> str:
        """'90837 +90785', or with a modifier '99214-95'."""
        main = f"{self.code}-{self.modifier}" if self.modifier else self.code
        return " ".join([main, *self.add_on_list])

    @property
    def add_on_list(self) -> list[str]:
        return self.add_on_codes.split()

    def clean(self):
        for code in self.add_on_list:
            try:
                code_shape(code)
            except ValidationError:
                raise ValidationError(
                    {"add_on_codes": f"{code} is not a CPT or HCPCS code."}
                ) from None


class PaymentOption(models.TextChoices):
    PER_VISIT = "per_visit", "Pay at each visit"
    DEPOSIT = "deposit", "A deposit when the plan is booked, then at each visit"
    INSTALMENTS = "instalments", "The plan's total in instalments on set dates"


class ClinicBilling(models.Model):
    """A clinic's billing identity and money policies (one row per clinic)."""

    clinic = models.OneToOneField(Clinic, on_delete=models.CASCADE, related_name="billing")
    legal_name = models.CharField(max_length=200, blank=True)
    npi = models.CharField(
        "organisation NPI",
        max_length=10,
        blank=True,
        validators=[RegexValidator(r"^[0-9]{10}$", "An NPI is ten digits.")],
    )
    tax_id = models.CharField(
        "tax id (EIN)",
        max_length=10,
        blank=True,
        validators=[RegexValidator(r"^[0-9]{2}-?[0-9]{7}$", "An EIN is nine digits (12-3456789).")],
    )
    payment_option = models.CharField(
        max_length=20, choices=PaymentOption.choices, default=PaymentOption.PER_VISIT
    )
    deposit = models.DecimalField(**MONEY, default=ZERO, validators=[MinValueValidator(ZERO)])
    instalments = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(24)]
    )
    instalment_reminders = models.BooleanField(
        "email a reminder before each instalment",
        default=False,
        help_text="By email only, never by text, and only to patients who take email.",
    )
    instalment_reminder_days = models.PositiveSmallIntegerField(default=3)
    late_cancellation_fee = models.DecimalField(
        **MONEY, default=ZERO, validators=[MinValueValidator(ZERO)]
    )
    no_show_fee = models.DecimalField(**MONEY, default=ZERO, validators=[MinValueValidator(ZERO)])

    def __str__(self):
        return f"Billing of {self.clinic}"

    def clean(self):
        if self.payment_option == PaymentOption.DEPOSIT and not self.deposit:
            raise ValidationError({"deposit": "Say how much the deposit is."})

    @classmethod
    def of(cls, clinic: Clinic) -> "ClinicBilling":
        """The clinic's row, or its defaults (nothing saved) before one is set up."""
        return cls.objects.filter(clinic=clinic).first() or cls(clinic=clinic)


class PackagePrice(models.Model):
    """A price for a protocol's whole dosing series booked together (e.g. six infusions)."""

    protocol = models.OneToOneField(Protocol, on_delete=models.CASCADE, related_name="package")
    doses = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1)], help_text="How many dosing visits the package covers."
    )
    price = models.DecimalField(**MONEY, validators=[MinValueValidator(ZERO)])

    def __str__(self):
        return f"{self.protocol}: {self.doses} doses for {self.price}"


class PatientDiscount(models.Model):
    """A sliding-scale or financial-assistance discount the clinic gives one patient."""

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, related_name="discount")
    percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("100"))],
    )
    reason = models.CharField(max_length=200, help_text="E.g. sliding scale, income band B.")
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    set_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"{self.percent}% for {self.patient} ({self.reason})"


class GoodFaithEstimate(models.Model):
    """An estimate as it was given to the patient, kept as given: later changes show beside it.

    ``lines`` and the totals are a copy of ``billing.estimates.Estimate.as_record``
    at ``given_at``; rows are never changed, a new estimate is a new row.
    """

    care_plan = models.ForeignKey(CarePlan, on_delete=models.PROTECT, related_name="estimates")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="estimates")
    given_at = models.DateTimeField(default=timezone.now)
    given_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    how = models.CharField(
        max_length=20,
        choices=[
            ("printed", "Printed, in person"),
            ("email", "By email"),
            ("page", "On the patient page"),
        ],
    )
    due_by = models.DateField(help_text="The last day the rule allowed for giving it.")
    content = models.JSONField()
    total = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)

    class Meta:
        ordering = ["-given_at", "-pk"]

    def __str__(self):
        return f"Good Faith Estimate for {self.patient}, {self.given_at:%Y-%m-%d}"


class EntryKind(models.TextChoices):
    CHARGE = "charge", "Charge"
    PAYMENT = "payment", "Payment"
    WAIVER = "waiver", "Waived"


class LedgerQuerySet(models.QuerySet):
    def balance(self) -> Decimal:
        """What the patient owes: charges less payments and waivers (negative: in credit)."""
        signed = Case(
            When(kind=EntryKind.CHARGE, then="amount"),
            default=-1 * models.F("amount"),
            output_field=DecimalField(**MONEY),
        )
        return self.aggregate(
            balance=Coalesce(Sum(signed), Value(ZERO), output_field=DecimalField(**MONEY))
        )["balance"]

    def payments(self):
        return self.filter(kind=EntryKind.PAYMENT)


class LedgerEntry(models.Model):
    """One line of a patient's account. Never edited: a waiver is a line of its own."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=10, choices=EntryKind.choices)
    amount = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal("0.01"))])
    currency = models.CharField(max_length=3, default=settings.CURRENCY)
    on = models.DateField(default=timezone.localdate)
    description = models.CharField(max_length=200)
    visit = models.ForeignKey(
        Visit, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    waives = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="waiver"
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recorded_at = models.DateTimeField(default=timezone.now)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        ordering = ["on", "pk"]
        constraints = [
            # A policy fee once per visit and kind of miss, however often a receiver runs.
            models.UniqueConstraint(
                fields=["visit"],
                condition=Q(kind="charge"),
                name="one_policy_charge_per_visit",
            ),
            models.CheckConstraint(
                condition=Q(waives__isnull=True) | Q(kind="waiver"),
                name="only_waivers_waive",
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.amount} {self.currency}: {self.description}"


class ClinicianBilling(models.Model):
    """What a superbill names of the clinician who saw the patient."""

    clinician = models.OneToOneField(Clinician, on_delete=models.CASCADE, related_name="billing")
    npi = models.CharField(
        "individual NPI",
        max_length=10,
        validators=[RegexValidator(r"^[0-9]{10}$", "An NPI is ten digits.")],
    )
    licence = models.CharField(max_length=60, help_text="E.g. NY MD 123456 (state, kind, number).")
    credentials = models.CharField(max_length=40, blank=True, help_text="E.g. MD, LCSW, PMHNP.")

    def __str__(self):
        return f"{self.clinician}: NPI {self.npi}"


class Diagnosis(models.Model):
    """An ICD-10-CM code a prescriber entered for the patient's superbills."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="diagnoses")
    code = models.CharField(
        max_length=8,
        validators=[
            RegexValidator(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$", "Not an ICD-10 code.")
        ],
    )
    description = models.CharField(max_length=200)
    entered_by = models.ForeignKey(Clinician, on_delete=models.PROTECT, related_name="+")
    entered_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["entered_at", "pk"]
        verbose_name_plural = "diagnoses"

    def __str__(self):
        return f"{self.code} {self.description}"

    def clean(self):
        if self.entered_by_id and not self.entered_by.is_prescriber:
            raise ValidationError({"entered_by": "Only a prescriber enters diagnosis codes."})
