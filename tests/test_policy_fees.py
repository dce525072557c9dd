"""Late cancellations and no-shows put the clinic's fee on the patient's account; the desk
records payments and waives a fee only with a reason, each in the audit trail."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from billing.models import ClinicBilling, EntryKind, LedgerEntry
from scheduler import booking
from scheduler.models import AuditAction, AuditEvent
from tests.conftest import MONDAY, at
from tests.page_helpers import front_desk

pytestmark = pytest.mark.usefixtures("now")


@pytest.fixture
def policy(clinic):
    return ClinicBilling.objects.create(
        clinic=clinic.clinic,
        late_cancellation_fee=Decimal("100.00"),
        no_show_fee=Decimal("150.00"),
    )


def book_integration(clinic, patient, when=None):
    return booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=when or at(MONDAY, "10:00"),
    )


def test_a_no_show_records_the_policy_fee_once(clinic, policy):
    patient = clinic.patient()
    visit = book_integration(clinic, patient)
    booking.mark_no_show(visit, now=visit.start + timedelta(minutes=20))
    (charge,) = LedgerEntry.objects.filter(patient=patient)
    assert (charge.kind, charge.amount, charge.visit) == (
        EntryKind.CHARGE,
        policy.no_show_fee,
        visit,
    )
    assert "no-show" in charge.description
    assert LedgerEntry.objects.filter(patient=patient).balance() == Decimal("150.00")


def test_a_late_cancellation_records_its_fee_and_an_early_one_nothing(clinic, policy):
    patient = clinic.patient()
    early = book_integration(clinic, patient)
    booking.cancel(early, "moving away")
    late = book_integration(clinic, patient, at(MONDAY, "14:00"))
    booking.cancel(late, "unwell", late=True)
    assert [(e.visit, e.amount) for e in LedgerEntry.objects.filter(patient=patient)] == [
        (late, policy.late_cancellation_fee)
    ]


def test_no_fee_when_the_clinic_sets_none(clinic):
    patient = clinic.patient()
    visit = book_integration(clinic, patient)
    booking.mark_no_show(visit, now=visit.start + timedelta(minutes=20))
    assert not LedgerEntry.objects.exists()


@pytest.fixture
def charged(clinic, policy):
    patient = clinic.patient()
    visit = book_integration(clinic, patient)
    booking.mark_no_show(visit, now=visit.start + timedelta(minutes=20))
    return LedgerEntry.objects.get(patient=patient)


def test_the_desk_waives_a_fee_only_with_a_reason_and_the_trail_says_why(client, clinic, charged):
    client.force_login(front_desk(clinics=[clinic.clinic]))
    url = reverse("desk_costs", args=[charged.patient_id])
    response = client.post(url, {"action": "waive", "entry": charged.pk, "reason": "  "})
    assert response.status_code == 302
    (note,) = get_messages(response.wsgi_request)
    assert "Say why" in str(note)
    assert not LedgerEntry.objects.filter(kind=EntryKind.WAIVER).exists()
    client.post(url, {"action": "waive", "entry": charged.pk, "reason": "car broke down"})
    waiver = LedgerEntry.objects.get(kind=EntryKind.WAIVER)
    assert (waiver.waives, waiver.amount) == (charged, charged.amount)
    assert LedgerEntry.objects.filter(patient=charged.patient).balance() == 0
    event = AuditEvent.objects.get(patient=charged.patient, action=AuditAction.CHANGED_PATIENT)
    assert "car broke down" in event.detail
    # Once only.
    client.post(url, {"action": "waive", "entry": charged.pk, "reason": "again"})
    assert LedgerEntry.objects.filter(kind=EntryKind.WAIVER).count() == 1


def test_payments_recorded_by_the_desk_bring_the_balance_down(client, clinic, charged):
    client.force_login(front_desk(clinics=[clinic.clinic]))
    url = reverse("desk_costs", args=[charged.patient_id])
    for amount in ("abc", "-5", "NaN", "0"):
        client.post(url, {"action": "payment", "amount": amount})
    assert not LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).exists()
    client.post(url, {"action": "payment", "amount": "100", "description": "card at the desk"})
    assert LedgerEntry.objects.filter(patient=charged.patient).balance() == Decimal("50.00")
    page = client.get(url).text
    assert "no-show fee" in page and "card at the desk" in page and "50.00" in page


def test_the_costs_page_reads_a_fixed_number_of_queries(
    client, clinic, charged, django_assert_max_num_queries
):
    client.force_login(front_desk(clinics=[clinic.clinic]))
    url = reverse("desk_costs", args=[charged.patient_id])
    client.get(url)
    for hour in range(11, 16):
        visit = book_integration(clinic, charged.patient, at(MONDAY, f"{hour}:00"))
        booking.mark_no_show(visit, now=visit.start + timedelta(minutes=20))
    with django_assert_max_num_queries(20):
        response = client.get(url)
    assert response.text.count("(no-show fee)") == 6
