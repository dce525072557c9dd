"""Cost estimates: fees with codes, phase subtotals, package and sliding-scale discounts, the
Good Faith Estimate's timeline, and an estimate kept as given while the plan changes."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from billing import estimates
from billing.demo import DEMO_FEES, DISCOUNT, IV_PACKAGE
from billing.models import Fee, GoodFaithEstimate, PatientDiscount
from desk.moves import move_times
from plans.care_plans import confirm, move_planned_visit, save_proposal
from plans.generator import generate
from plans.models import Protocol
from scheduler.booking import BookingError
from scheduler.models import AuditAction, AuditEvent, Clinic, Patient, VisitKind
from tests.page_helpers import front_desk

pytestmark = pytest.mark.usefixtures("now")
START = date(2030, 2, 4)  # a Monday after the demo's own visits


@pytest.fixture
def demo(demo_seeded, db, now):
    return Clinic.objects.get(slug="riverside")


def iv_plan(clinic: Clinic, patient: Patient):
    return generate(patient, Protocol.objects.get(clinic=clinic, slug="iv-induction"), START)


def fresh_patient(clinic: Clinic, index: int = 0) -> Patient:
    """A screened demo patient with nothing counted towards the IV induction yet."""
    return Patient.objects.filter(clinic=clinic).order_by("pk")[index]


def test_fee_codes_must_look_like_cpt_or_hcpcs(demo):
    fee = Fee.objects.filter(visit_type__clinic=demo).first()
    fee.code, fee.add_on_codes = "9083", "+90785 banana"
    with pytest.raises(ValidationError) as error:
        fee.full_clean()
    assert set(error.value.message_dict) == {"code", "add_on_codes"}


def test_every_demo_visit_type_in_both_clinics_has_its_fee_and_code(demo):
    for slug in ("riverside", "riverside-denver"):
        fees = Fee.objects.filter(visit_type__clinic__slug=slug).select_related("visit_type")
        assert {fee.visit_type.slug: fee.code for fee in fees} == {
            visit_type: code for visit_type, (code, _, _) in DEMO_FEES.items()
        }


def test_a_proposed_iv_induction_is_itemised_by_phase_with_codes(demo):
    proposal = iv_plan(demo, fresh_patient(demo))
    estimate = estimates.for_proposal(proposal)
    assert len(estimate.lines) == len(proposal.visits)
    infusion = next(line for line in estimate.lines if line.phase == VisitKind.DOSING)
    assert infusion.codes == "96365 J3490" and infusion.fee == Decimal("475.00")
    assert not infusion.reimbursable
    phases = {label: (count, subtotal) for label, count, subtotal in estimate.phases}
    assert sum(subtotal for _, subtotal in phases.values()) == estimate.gross == proposal.total_cost
    dosing = [line for line in estimate.lines if line.phase == VisitKind.DOSING]
    assert phases["Dosing session"] == (len(dosing), sum(line.fee for line in dosing))
    # Integration sessions (90837) are flagged as possibly reimbursable, infusions not.
    assert estimate.reimbursable == sum(
        line.fee for line in estimate.lines if line.phase != VisitKind.DOSING
    )


def test_the_package_price_covers_a_full_infusion_series(demo):
    estimate = estimates.for_proposal(iv_plan(demo, fresh_patient(demo)))
    doses = [line.fee for line in estimate.lines if line.phase == VisitKind.DOSING]
    assert len(doses) == IV_PACKAGE["doses"]
    assert estimate.package_saving == sum(doses) - IV_PACKAGE["price"]
    assert estimate.total == estimate.gross - estimate.package_saving
    # A shorter series pays each dose.
    estimate.lines = [line for line in estimate.lines if line.phase != VisitKind.DOSING][:3]
    assert estimate.package_saving == 0


def test_a_sliding_scale_discount_comes_off_after_the_package(demo):
    dana = Patient.objects.get(clinic=demo, first_name="Dana", last_name="Driftwood")
    assert PatientDiscount.objects.get(patient=dana).reason == DISCOUNT["reason"]
    estimate = estimates.for_proposal(iv_plan(demo, dana))
    base = estimate.gross - estimate.package_saving
    assert estimate.discount_amount == (base * Decimal("0.20")).quantize(Decimal("0.01"))
    assert estimate.total == base - estimate.discount_amount


@pytest.mark.parametrize(
    ("scheduled", "first_visit", "due"),
    [
        # Monday, the visit 10 business days on: 3 business days (Thursday).
        (date(2030, 6, 3), date(2030, 6, 17), date(2030, 6, 6)),
        # Friday, the visit 3 business days on (Wednesday): 1 business day (Monday).
        (date(2030, 6, 7), date(2030, 6, 12), date(2030, 6, 10)),
        # Nine business days ahead: still 1 business day.
        (date(2030, 6, 3), date(2030, 6, 14), date(2030, 6, 4)),
        # Two business days ahead: the rule sets no day; by the visit.
        (date(2030, 6, 3), date(2030, 6, 5), date(2030, 6, 5)),
    ],
)
def test_the_good_faith_estimate_falls_due_on_the_rules_timeline(scheduled, first_visit, due):
    assert estimates.due_by(scheduled, first_visit) == due


def move_a_dose(visits, clinic: Clinic):
    """Move one of the plan's doses to another time the desk's move page offers (every rule
    holds there); the dose's time before."""
    for visit in (v for v in visits if v.visit_type.is_dosing):
        day = visit.start.astimezone(clinic.tz).date()
        times = move_times(visit, clinic, keep_team=True, first=day - timedelta(days=3), days=7)
        before = visit.start
        for slot in (slot for slot in times.slots if slot.start != before):
            try:  # its integration session moves along when it must, if it can
                move_planned_visit(visit, slot.start, room=slot.room)
            except BookingError:
                continue
            return before
    pytest.fail("no dose of the plan may move")


def test_moving_a_dose_updates_the_estimate_and_keeps_the_one_given(client, demo):
    patient = fresh_patient(demo, 1)
    plan = confirm(save_proposal(iv_plan(demo, patient)))
    desk = front_desk(clinics=[demo])
    client.force_login(desk)
    url = reverse("desk_costs", args=[patient.pk])
    response = client.post(url, {"action": "give", "plan": plan.pk, "how": "printed"})
    assert response.status_code == 302
    given = GoodFaithEstimate.objects.get(care_plan=plan)
    assert given.total == estimates.for_plan(plan).total
    assert given.due_by >= date(2030, 1, 2)
    assert AuditEvent.objects.filter(
        patient=patient, action=AuditAction.CHANGED_PATIENT, detail__contains="Good Faith"
    ).exists()
    before = move_a_dose(estimates.plan_visits(plan), demo)
    now = estimates.for_plan(plan)
    changes = estimates.changes_since(given, now)
    assert any(c.what == "moved" and c.before == before for c in changes)
    given.refresh_from_db()
    assert any(line["start"] == before.isoformat() for line in given.content["lines"])
    page = client.get(url).text
    assert "Changed since the estimate given" in page and "moved" in page
    was = before.astimezone(plan.protocol.clinic.tz).strftime("%a %Y-%m-%d %H:%M")
    assert f"(was {was})" in page  # in the clinic's time, as the desk reads it


def test_a_cancelled_visit_leaves_the_estimate(demo):
    from scheduler import booking

    patient = fresh_patient(demo, 2)
    plan = confirm(save_proposal(iv_plan(demo, patient)))
    first = estimates.for_plan(plan)
    maintenance = next(
        v for v in estimates.plan_visits(plan) if v.visit_type.kind == VisitKind.MAINTENANCE
    )
    booking.cancel(maintenance, "patient's request")
    after = estimates.for_plan(plan)
    assert after.gross == first.gross - maintenance.visit_type.price
    record = GoodFaithEstimate(content=first.as_record())
    assert [c.what for c in estimates.changes_since(record, after)] == ["cancelled"]
