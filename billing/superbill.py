"""A superbill: the itemised receipt a patient sends their insurer to claim out of network.

For a date range: the clinic (legal name, address, NPI, tax id), each clinician
who saw the patient (NPI, licence), the patient, the diagnosis codes a
prescriber entered, every completed visit in the range with its date, code,
modifier, units and fee, and what the patient paid in the range. Read in a
fixed number of queries whatever the range. ``pdf`` draws the same with fpdf2.

Who may produce one (clinic admins and the patient's own prescribers) is
``may_produce``; the desk's views ask it and record each one in the audit trail.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from fpdf import FPDF

from billing.models import ZERO, ClinicBilling, ClinicianBilling, Diagnosis, LedgerEntry
from scheduler.models import Clinic, Clinician, Patient, Visit, VisitStatus


@dataclass(frozen=True)
class Item:
    day: date
    description: str
    code: str
    modifier: str
    add_ons: str
    units: int
    fee: Decimal
    clinician: str


@dataclass
class Superbill:
    clinic: Clinic
    billing: ClinicBilling
    patient: Patient
    first: date
    last: date
    items: list[Item]
    clinicians: list[tuple[Clinician, ClinicianBilling | None]]
    diagnoses: list[Diagnosis]
    payments: list[LedgerEntry]
    currency: str = settings.CURRENCY

    @property
    def total(self) -> Decimal:
        return sum((item.fee for item in self.items), ZERO)

    @property
    def paid(self) -> Decimal:
        return sum((entry.amount for entry in self.payments), ZERO)


def build(patient: Patient, clinic: Clinic, first: date, last: date) -> Superbill:
    """The superbill of ``patient``'s completed visits at ``clinic`` from ``first`` to ``last``."""
    tz = clinic.tz
    start = datetime.combine(first, time.min, tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=tz)
    visits = list(
        Visit.objects.at_clinic(clinic)
        .filter(patient=patient, status=VisitStatus.COMPLETED, start__gte=start, start__lt=end)
        .select_related("visit_type__fee", "clinician__billing")
        .order_by("start", "pk")
    )
    items, seen = [], {}
    for visit in visits:
        fee = getattr(visit.visit_type, "fee", None)
        items.append(
            Item(
                day=visit.start.astimezone(tz).date(),
                description=visit.visit_type.name,
                code=fee.code if fee else "",
                modifier=fee.modifier if fee else "",
                add_ons=fee.add_on_codes if fee else "",
                units=fee.units if fee else 1,
                fee=visit.visit_type.price,
                clinician=visit.clinician.display_name,
            )
        )
        seen.setdefault(visit.clinician.pk, visit.clinician)
    clinicians = [(c, getattr(c, "billing", None)) for c in seen.values()]
    return Superbill(
        clinic=clinic,
        billing=ClinicBilling.of(clinic),
        patient=patient,
        first=first,
        last=last,
        items=items,
        clinicians=clinicians,
        diagnoses=list(Diagnosis.objects.filter(patient=patient)),
        payments=list(
            LedgerEntry.objects.payments().filter(patient=patient, on__gte=first, on__lte=last)
        ),
    )


def may_produce(user, patient: Patient, is_admin: bool) -> bool:
    """Clinic admins, and prescribers who have seen the patient or will."""
    if is_admin:
        return True
    return (
        Visit.objects.filter(
            patient=patient, clinician__user=user, clinician__is_prescriber=True
        ).exists()
        or Visit.objects.filter(
            patient=patient,
            participants__clinician__user=user,
            participants__clinician__is_prescriber=True,
        ).exists()
    )


# -- the PDF ---------------------------------------------------------------------------


def _latin(text: str) -> str:
    """The core PDF fonts speak Latin-1: anything else becomes '?', never an error."""
    return str(text).encode("latin-1", "replace").decode("latin-1")


def pdf(bill: Superbill) -> bytes:
    doc = FPDF(format="Letter")
    doc.set_title(_latin(f"Superbill {bill.patient} {bill.first} to {bill.last}"))
    doc.set_auto_page_break(auto=True, margin=15)
    doc.add_page()

    def line(text: str = "", *, size: int = 10, bold: bool = False) -> None:
        doc.set_font("Helvetica", "B" if bold else "", size)
        doc.multi_cell(0, 5, _latin(text), new_x="LMARGIN", new_y="NEXT")

    clinic, billing = bill.clinic, bill.billing
    line("Superbill", size=16, bold=True)
    line(f"Services from {bill.first:%Y-%m-%d} to {bill.last:%Y-%m-%d}")
    line()
    line("Provider", bold=True)
    line(billing.legal_name or clinic.name)
    line(clinic.address)
    line(f"Phone {clinic.phone}")
    line(f"NPI (organisation): {billing.npi or '-'}   Tax id (EIN): {billing.tax_id or '-'}")
    for clinician, ids in bill.clinicians:
        credentials = f", {ids.credentials}" if ids and ids.credentials else ""
        if ids:
            line(f"{clinician.display_name}{credentials}: NPI {ids.npi}, licence {ids.licence}")
        else:
            line(f"{clinician.display_name}: no NPI on file")
    line()
    line("Patient", bold=True)
    patient = bill.patient
    line(f"{patient.first_name} {patient.last_name}")
    if getattr(patient, "date_of_birth", None):
        line(f"Date of birth {patient.date_of_birth:%Y-%m-%d}")
    line()
    line("Diagnoses (ICD-10-CM)", bold=True)
    for diagnosis in bill.diagnoses:
        line(f"{diagnosis.code}  {diagnosis.description}")
    if not bill.diagnoses:
        line("None entered.")
    line()
    line("Services", bold=True)
    doc.set_font("Helvetica", "", 9)
    with doc.table(col_widths=(22, 56, 18, 14, 22, 10, 24), text_align="LEFT") as table:
        table.row(["Date", "Service", "Code", "Mod.", "Add-on", "Units", f"Fee ({bill.currency})"])
        for item in bill.items:
            table.row(
                [
                    f"{item.day:%Y-%m-%d}",
                    _latin(item.description),
                    item.code,
                    item.modifier,
                    item.add_ons,
                    str(item.units),
                    f"{item.fee}",
                ]
            )
    line()
    line(f"Total charges: {bill.total} {bill.currency}", bold=True)
    line(f"Paid in this period: {bill.paid} {bill.currency}", bold=True)
    for entry in bill.payments:
        line(f"  {entry.on:%Y-%m-%d}  {entry.amount} {entry.currency}  {entry.description}")
    line()
    line(
        "Prepared for the patient to claim out-of-network reimbursement. The clinic does not "
        "submit claims; what an insurer repays is for the insurer to decide.",
        size=8,
    )
    return bytes(doc.output())
