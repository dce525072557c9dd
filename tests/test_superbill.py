"""Superbills: every completed visit of the range with its code and fee, the identifiers a claim
needs, as a page and a PDF (read back with a PDF parser); only clinic admins and the
patient's prescriber produce one, and each is in the audit trail."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from pypdf import PdfReader

from billing.models import ClinicBilling, ClinicianBilling, Diagnosis, Fee, LedgerEntry
from scheduler.models import AuditAction, AuditEvent, Visit, VisitStatus
from tests.conftest import MONDAY, at
from tests.page_helpers import clinic_admin, sign_in_verified

pytestmark = pytest.mark.usefixtures("now")


@pytest.fixture
def course(clinic):
    """Three completed infusions and integrations, one cancelled; a payment; identifiers."""
    ClinicBilling.objects.create(
        clinic=clinic.clinic, legal_name="Test Clinic PLLC", npi="1000000004", tax_id="99-0000001"
    )
    clinic.iv.price, clinic.integration.price = Decimal("475.00"), Decimal("175.00")
    clinic.iv.save(), clinic.integration.save()
    Fee.objects.create(visit_type=clinic.iv, code="96365", add_on_codes="J3490")
    Fee.objects.create(visit_type=clinic.integration, code="90837", modifier="95")
    ClinicianBilling.objects.create(
        clinician=clinic.prescriber, npi="2000100001", licence="NY MD DEMO-1", credentials="MD"
    )
    patient = clinic.patient("Avery", "Applewood")
    Diagnosis.objects.create(
        patient=patient,
        code="F33.2",
        description="Major depressive disorder, recurrent severe",
        entered_by=clinic.prescriber,
    )
    for week in range(3):
        day = MONDAY + timedelta(weeks=week)
        Visit.objects.create(
            patient=patient,
            visit_type=clinic.iv,
            clinician=clinic.prescriber,
            room=clinic.room1,
            start=at(day, "09:00"),
            end=at(day, "11:00"),
            status=VisitStatus.COMPLETED,
        )
        Visit.objects.create(
            patient=patient,
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=at(day + timedelta(days=1), "10:00"),
            end=at(day + timedelta(days=1), "10:50"),
            status=VisitStatus.COMPLETED,
        )
    Visit.objects.create(
        patient=patient,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY + timedelta(days=2), "09:00"),
        end=at(MONDAY + timedelta(days=2), "11:00"),
        status=VisitStatus.CANCELLED,
    )
    LedgerEntry.objects.create(
        patient=patient, kind="payment", amount=Decimal("650.00"), on=MONDAY, description="card"
    )
    return patient


def superbill_url(patient, **params) -> str:
    query = {"from": MONDAY.isoformat(), "to": (MONDAY + timedelta(weeks=3)).isoformat(), **params}
    return (
        reverse("desk_superbill", args=[patient.pk])
        + "?"
        + "&".join(f"{k}={v}" for k, v in query.items())
    )


def test_the_pdf_lists_every_completed_visit_with_code_and_fee(client, clinic, course):
    sign_in_verified(client, clinic_admin(clinics=[clinic.clinic]))
    response = client.get(superbill_url(course, pdf=1))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    for week in range(3):
        assert (MONDAY + timedelta(weeks=week)).isoformat() in text
        assert (MONDAY + timedelta(weeks=week, days=1)).isoformat() in text
    assert (MONDAY + timedelta(days=2)).isoformat() not in text  # the cancelled one
    assert text.count("96365") == 3 and text.count("90837") == 3 and "J3490" in text
    assert text.count("475.00") == 3 and text.count("175.00") == 3
    assert "Total charges: 1950.00 USD" in text and "Paid in this period: 650.00 USD" in text
    for identifier in ("1000000004", "99-0000001", "2000100001", "NY MD DEMO-1", "F33.2"):
        assert identifier in text
    assert "Applewood" in text
    event = AuditEvent.objects.get(patient=course, action=AuditAction.EXPORTED)
    assert "superbill" in event.detail and "PDF" in event.detail


def test_the_patients_prescriber_may_produce_one(client, clinic, course):
    sign_in_verified(client, clinic.prescriber.user)
    page = client.get(superbill_url(course))
    assert page.status_code == 200 and "96365" in page.text and "F33.2" in page.text
    sign_in_verified(client, clinic.therapist.user)
    assert client.get(superbill_url(course)).status_code == 403


def test_the_page_reads_a_fixed_number_of_queries(
    client, clinic, course, django_assert_max_num_queries
):
    sign_in_verified(client, clinic_admin(clinics=[clinic.clinic]))
    client.get(superbill_url(course))
    with django_assert_max_num_queries(16):
        page = client.get(superbill_url(course, to=(MONDAY + timedelta(weeks=9)).isoformat()))
    assert page.text.count("96365") == 3


def test_a_range_backwards_or_malformed_still_answers(client, clinic, course):
    sign_in_verified(client, clinic_admin(clinics=[clinic.clinic]))
    url = reverse("desk_superbill", args=[course.pk])
    assert client.get(url + "?from=garbage&to=2030-13-45").status_code == 200
    backwards = superbill_url(course, **{"from": "2030-07-01", "to": "2030-06-01"})
    assert client.get(backwards).text.count("96365") == 3


def test_the_prescriber_enters_diagnosis_codes_and_a_bad_one_is_refused(client, clinic, course):
    sign_in_verified(client, clinic.prescriber.user)
    url = superbill_url(course)
    client.post(url, {"code": "not a code", "description": "x"})
    client.post(url, {"code": "f43.10", "description": "Post-traumatic stress disorder"})
    assert list(Diagnosis.objects.filter(patient=course).values_list("code", flat=True)) == [
        "F33.2",
        "F43.10",
    ]
    assert AuditEvent.objects.filter(patient=course, detail__contains="F43.10").exists()
    # An admin produces superbills but enters no diagnosis (that is the prescriber's).
    sign_in_verified(client, clinic_admin(clinics=[clinic.clinic]))
    assert client.post(url, {"code": "F32.9", "description": "x"}).status_code == 403
