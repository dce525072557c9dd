"""The FHIR API's ground rules: metadata open, everything else by token and scope,
answers that an independent FHIR library accepts, searches paged to the end."""

from datetime import date, timedelta
from urllib.parse import urlencode

import pytest
from django.test import Client

from scheduler.models import AuditAction, AuditEvent, Patient
from tests.conftest import ClinicBuilder
from tests.fhir_helpers import bearer, body, every_page, fhir_get, validated

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic():
    return ClinicBuilder().clinic


def add_patients(clinic, count):
    return [
        Patient.objects.create(
            clinic=clinic,
            first_name=f"Pat{n}",
            last_name="Rivera" if n % 2 else "Okafor",
            date_of_birth=date(1980 + n % 20, 1 + n % 12, 1 + n % 28),
            mobile=f"+1212555{n:04d}",
            email=f"pat{n}@example.org",
        )
        for n in range(count)
    ]


def test_metadata_is_open_and_lists_what_is_served(clinic):
    statement = body(fhir_get("/fhir/metadata"))
    validated(statement)
    served = {entry["type"] for entry in statement["rest"][0]["resource"]}
    assert "Patient" in served
    patient = next(e for e in statement["rest"][0]["resource"] if e["type"] == "Patient")
    assert {"name", "identifier", "telecom"} <= {p["name"] for p in patient["searchParam"]}


def test_no_token_no_data(clinic):
    (patient,) = add_patients(clinic, 1)
    response = fhir_get(f"/fhir/Patient/{patient.pk}")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    outcome = validated(body(response))
    assert outcome.issue[0].code == "login"
    response = fhir_get(f"/fhir/Patient/{patient.pk}", "not-a-token")
    assert response.status_code == 401


def test_a_token_without_the_scope_is_refused(clinic):
    (patient,) = add_patients(clinic, 1)
    token = bearer(clinic, "system/Appointment.read")
    response = fhir_get(f"/fhir/Patient/{patient.pk}", token)
    assert response.status_code == 403
    assert "system/Patient.read" in validated(body(response)).issue[0].diagnostics


def test_patient_read_is_valid_fhir_and_audited(clinic):
    (patient,) = add_patients(clinic, 1)
    token = bearer(clinic, "system/Patient.rs", name="Charting system")
    resource = body(fhir_get(f"/fhir/Patient/{patient.pk}", token))
    parsed = validated(resource)
    assert parsed.name[0].family == patient.last_name
    assert resource["meta"]["lastUpdated"].endswith("Z")
    event = AuditEvent.objects.get(action=AuditAction.API_READ)
    assert (event.patient_id, event.actor_label) == (patient.pk, "FHIR client Charting system")


def test_another_clinics_patient_is_not_found(clinic):
    other = ClinicBuilder().clinic
    (patient,) = add_patients(other, 1)
    token = bearer(clinic, "system/Patient.read")
    response = fhir_get(f"/fhir/Patient/{patient.pk}", token)
    assert response.status_code == 404
    assert validated(body(response)).issue[0].code == "not-found"


def test_patient_search_pages_to_the_end(clinic):
    patients = add_patients(clinic, 23)
    token = bearer(clinic, "system/Patient.read")
    entries = every_page("/fhir/Patient?family=rivera&_count=5", token)
    found = {entry["resource"]["id"] for entry in entries}
    assert found == {str(p.pk) for p in patients if p.last_name == "Rivera"}
    assert len(entries) == len(found)  # no page repeated an entry


def test_patient_search_by_telecom_and_identifier(clinic):
    first, second, *_ = add_patients(clinic, 3)
    token = bearer(clinic, "system/Patient.read")
    query = urlencode({"telecom": f"phone|{second.mobile}"})
    bundle = body(fhir_get(f"/fhir/Patient?{query}", token))
    assert [e["resource"]["id"] for e in bundle["entry"]] == [str(second.pk)]
    written = f"({second.mobile[2:5]}) {second.mobile[5:8]}-{second.mobile[8:]}"
    bundle = body(fhir_get(f"/fhir/Patient?{urlencode({'phone': written})}", token))
    assert [e["resource"]["id"] for e in bundle["entry"]] == [str(second.pk)]
    bundle = body(fhir_get(f"/fhir/Patient?identifier=urn:kap-scheduler:patient|{first.pk}", token))
    assert [e["resource"]["id"] for e in bundle["entry"]] == [str(first.pk)]


def test_unknown_parameters_are_ignored_unless_strict(clinic):
    add_patients(clinic, 2)
    token = bearer(clinic, "system/Patient.read")
    bundle = body(fhir_get("/fhir/Patient?shoe-size=12", token))
    assert bundle["total"] == 2
    assert "shoe-size" not in bundle["link"][0]["url"]
    response = fhir_get("/fhir/Patient?shoe-size=12", token, HTTP_PREFER="handling=strict")
    assert response.status_code == 400


def test_only_json_is_spoken(clinic):
    token = bearer(clinic, "system/Patient.read")
    assert fhir_get("/fhir/Patient?_format=xml", token).status_code == 406
    assert fhir_get("/fhir/Unicorn", token).status_code == 404


def test_a_date_without_a_time_is_the_clinics_own_day(now):
    """09:00 in Tokyo is 20:00 the evening before in New York (the installation's zone):
    a client of the Tokyo clinic asking for Monday means Tokyo's Monday."""
    from scheduler import booking
    from tests.conftest import MONDAY, SmallClinic, at

    tokyo = SmallClinic("Asia/Tokyo")
    visit = booking.book(
        patient=tokyo.patient(),
        visit_type=tokyo.integration,
        clinician=tokyo.therapist,
        start=at(MONDAY, "09:00", "Asia/Tokyo"),
    )
    token = bearer(tokyo.clinic, "system/Appointment.read")
    found = body(fhir_get(f"/fhir/Appointment?date={MONDAY}", token))
    assert [e["resource"]["id"] for e in found["entry"]] == [str(visit.pk)]
    day_before = MONDAY - timedelta(days=1)
    assert body(fhir_get(f"/fhir/Appointment?date={day_before}", token))["total"] == 0


def test_a_method_the_url_does_not_take_is_a_405_outcome(clinic):
    token = bearer(clinic, "system/Patient.read")
    response = Client().post(
        "/fhir/Patient",
        {},
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_ACCEPT="application/fhir+json",
    )
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert validated(body(response)).issue[0].code == "not-supported"
