"""Every FHIR call that shows patient data is audited with the client's name, a search
in one insert however many patients it shows; refusals of a known client and token
exchanges are audited too; a call without a valid token names nobody and is not."""

import math
from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduler import audit
from scheduler.models import AuditAction, AuditEvent, Patient
from tests.conftest import ClinicBuilder
from tests.fhir_helpers import bearer, body, fhir_get, validated

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic():
    return ClinicBuilder().clinic


def add_patients(clinic, count):
    return Patient.objects.bulk_create(
        Patient(
            clinic=clinic,
            first_name=f"Pat{n}",
            last_name="Rivera",
            date_of_birth=date(1980, 1, 1 + n % 28),
            mobile=f"+1212555{n:04d}",
            email=f"pat{n}@example.org",
        )
        for n in range(count)
    )


def audit_inserts(queries) -> list[str]:
    table = AuditEvent._meta.db_table
    return [q["sql"] for q in queries if q["sql"].startswith(f'INSERT INTO "{table}"')]


def test_a_search_of_200_patients_writes_their_200_audit_rows_in_one_bulk_insert(clinic):
    patients = add_patients(clinic, 200)
    token = bearer(clinic, "system/Patient.read", name="Charting system")
    with CaptureQueriesContext(connection) as queries:
        bundle = body(fhir_get("/fhir/Patient?_count=200", token))
    validated(bundle)
    assert len(bundle["entry"]) == 200
    # One statement on PostgreSQL; SQLite's limit on parameters splits it into batches.
    fields = [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]
    batch = connection.ops.bulk_batch_size(fields, [AuditEvent()] * 200)
    assert len(audit_inserts(queries.captured_queries)) == math.ceil(200 / batch) <= 2
    events = AuditEvent.objects.filter(action=AuditAction.API_SEARCHED)
    assert set(events.values_list("patient_id", flat=True)) == {p.pk for p in patients}
    assert set(events.values_list("actor_label", flat=True)) == {"FHIR client Charting system"}
    assert events.first().detail == "Patient?_count=200"


def test_a_search_that_finds_nobody_is_audited_once_without_a_patient(clinic):
    token = bearer(clinic, "system/Patient.read", name="Charting system")
    fhir_get("/fhir/Patient?name=nobody", token)
    (event,) = AuditEvent.objects.filter(action=AuditAction.API_SEARCHED)
    assert event.patient_id is None


def test_search_queries_do_not_grow_with_the_patients_shown(clinic, django_assert_num_queries):
    token = bearer(clinic, "system/Patient.read")
    add_patients(clinic, 5)
    with CaptureQueriesContext(connection) as few:
        fhir_get("/fhir/Patient?_count=100", token)
    add_patients(clinic, 60)
    with django_assert_num_queries(len(few.captured_queries)):
        fhir_get("/fhir/Patient?_count=100", token)


def test_a_refusal_for_want_of_a_scope_is_audited_with_the_client(clinic):
    (patient,) = add_patients(clinic, 1)
    token = bearer(clinic, "system/Appointment.read", name="Scheduling system")
    assert fhir_get(f"/fhir/Patient/{patient.pk}", token).status_code == 403
    event = AuditEvent.objects.get(action=AuditAction.API_REFUSED)
    assert event.actor_label == "FHIR client Scheduling system"
    assert event.detail == f"needs system/Patient.read: /fhir/Patient/{patient.pk}"
    assert not AuditEvent.objects.exclude(action=AuditAction.API_REFUSED).exists()


def test_a_call_without_a_valid_token_is_not_audited(clinic):
    (patient,) = add_patients(clinic, 1)
    assert fhir_get(f"/fhir/Patient/{patient.pk}", "guess").status_code == 401
    assert not AuditEvent.objects.exists()


def test_record_many_only_inserts_and_its_rows_stay_unchangeable(clinic):
    patients = add_patients(clinic, 3)
    events = audit.record_many(None, AuditAction.API_SEARCHED, patients, "batch")
    assert [e.actor_label for e in events] == ["system"] * 3
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(detail="batch").update(detail="changed")
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(detail="batch").delete()
    assert AuditEvent.objects.filter(detail="batch").count() == 3
