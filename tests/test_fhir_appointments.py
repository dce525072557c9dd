"""Appointments through the FHIR API: each visit as FHIR says it, with its whole team,
found by patient, practitioner, place, dates, status and visit type, in bounded queries."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduler import booking
from scheduler.models import AuditAction, AuditEvent, Visit, VisitStatus
from tests.conftest import MONDAY, ClinicBuilder, at
from tests.fhir_helpers import bearer, body, every_page, fhir_get, validated

pytestmark = pytest.mark.django_db

READ_ALL = "system/Appointment.rs system/Patient.rs system/Practitioner.rs system/Location.rs"


@pytest.fixture
def team_iv(clinic):
    """The IV infusion with a therapist joining 30 minutes in for an hour."""
    return clinic.add_to_team(clinic.iv, "therapist", joins_after_minutes=30, stays_minutes=60)


def book_iv(clinic, patient, day=MONDAY, hh_mm="09:00"):
    return booking.book(
        patient=patient,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        start=at(day, hh_mm),
        room=clinic.room1,
        staff=[clinic.therapist],
    )


def read(visit, token):
    response = fhir_get(f"/fhir/Appointment/{visit.pk}", token)
    assert response.status_code == 200, response.content
    resource = body(response)
    validated(resource)
    return resource


def by_actor(resource):
    return {p["actor"]["reference"]: p for p in resource["participant"]}


def test_a_booked_visit_reads_as_an_appointment_with_its_team_and_room(clinic, now, team_iv):
    patient = clinic.patient()
    visit = book_iv(clinic, patient)
    resource = read(visit, bearer(clinic.clinic, READ_ALL))
    assert resource["id"] == str(visit.pk)
    assert resource["status"] == "booked"
    # 09:00 in New York in June is 13:00 UTC.
    assert (resource["start"], resource["end"]) == ("2030-06-03T13:00:00Z", "2030-06-03T15:00:00Z")
    assert resource["minutesDuration"] == 120
    assert resource["extension"] == [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/timezone",
            "valueCode": "America/New_York",
        }
    ]
    assert resource["serviceType"][0]["coding"][0]["code"] == str(clinic.iv.pk)
    assert resource["supportingInformation"] == [
        {"reference": f"HealthcareService/{clinic.iv.pk}", "display": clinic.iv.name}
    ]
    assert resource["meta"]["versionId"] == "0"
    assert "comment" not in resource and "description" not in resource
    people = by_actor(resource)
    assert list(people) == [
        f"Patient/{patient.pk}",
        f"Practitioner/{clinic.prescriber.pk}",
        f"Practitioner/{clinic.therapist.pk}",
        f"Location/room-{clinic.room1.pk}",
    ]
    assert people[f"Patient/{patient.pk}"]["status"] == "tentative"
    lead = people[f"Practitioner/{clinic.prescriber.pk}"]
    assert [t["coding"][0]["code"] for t in lead["type"]] == ["PPRF", "prescriber"]
    assert "period" not in lead
    therapist = people[f"Practitioner/{clinic.therapist.pk}"]
    assert [t["coding"][0]["code"] for t in therapist["type"]] == ["SPRF", "therapist"]
    assert therapist["period"] == {"start": "2030-06-03T13:30:00Z", "end": "2030-06-03T14:30:00Z"}
    event = AuditEvent.objects.get(action=AuditAction.API_READ)
    assert event.patient_id == patient.pk


def test_confirming_accepts_for_the_patient_and_a_move_is_a_new_version(clinic, now, team_iv):
    patient = clinic.patient()
    visit = book_iv(clinic, patient)
    token = bearer(clinic.clinic, READ_ALL)
    booking.confirm(visit)
    resource = read(visit, token)
    assert (resource["status"], by_actor(resource)[f"Patient/{patient.pk}"]["status"]) == (
        "booked",
        "accepted",
    )
    booking.move(visit, start=at(MONDAY + timedelta(days=1), "10:00"))
    moved = read(visit, token)
    assert moved["meta"]["versionId"] == "1"
    assert moved["start"] == "2030-06-04T14:00:00Z"
    assert by_actor(moved)[f"Patient/{patient.pk}"]["status"] == "tentative"


def test_a_telehealth_visit_has_no_room_and_says_it_is_telehealth(clinic, now):
    patient = clinic.patient()
    visit = booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    resource = read(visit, bearer(clinic.clinic, READ_ALL))
    assert resource["serviceCategory"][0]["coding"][0]["code"] == "telehealth"
    assert not [ref for ref in by_actor(resource) if ref.startswith("Location/")]


@pytest.mark.parametrize(
    ("status", "fhir"),
    [
        (VisitStatus.PROPOSED, "proposed"),
        (VisitStatus.CHECKED_IN, "arrived"),
        (VisitStatus.COMPLETED, "fulfilled"),
        (VisitStatus.NO_SHOW, "noshow"),
        (VisitStatus.CANCELLED, "cancelled"),
    ],
)
def test_each_visit_status_maps_to_fhirs(clinic, now, status, fhir):
    patient = clinic.patient()
    visit = booking.book(
        patient=patient,
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        start=at(MONDAY, "10:00"),
        room=clinic.room3,
    )
    Visit.objects.filter(pk=visit.pk).update(status=status, cancellation_reason="Car broke down")
    resource = read(visit, bearer(clinic.clinic, READ_ALL))
    assert resource["status"] == fhir
    if fhir == "cancelled":
        assert resource["cancelationReason"] == {"text": "Car broke down"}
    else:
        assert "cancelationReason" not in resource


def test_a_cancelled_visit_gives_its_reason(clinic, now):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        start=at(MONDAY, "10:00"),
        room=clinic.room3,
    )
    booking.cancel(visit, "Patient asked to pause")
    resource = read(visit, bearer(clinic.clinic, READ_ALL))
    assert (resource["status"], resource["cancelationReason"]["text"]) == (
        "cancelled",
        "Patient asked to pause",
    )
    assert resource["meta"]["versionId"] == "1"


def test_another_clinics_appointment_is_not_found_and_scopes_hold(clinic, now):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        start=at(MONDAY, "10:00"),
        room=clinic.room3,
    )
    other = ClinicBuilder().clinic
    response = fhir_get(f"/fhir/Appointment/{visit.pk}", bearer(other, READ_ALL))
    assert response.status_code == 404
    assert validated(body(response)).issue[0].code == "not-found"
    response = fhir_get(f"/fhir/Appointment/{visit.pk}", bearer(clinic.clinic, "system/Patient.rs"))
    assert response.status_code == 403
    assert "system/Appointment.read" in validated(body(response)).issue[0].diagnostics
    search = fhir_get("/fhir/Appointment?patient=1", bearer(other, READ_ALL))
    assert body(search)["total"] == 0


def ids(path, token):
    entries = every_page(path, token)
    for entry in entries:
        validated(entry["resource"])
    return [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"]


def test_search_by_patient_practitioner_place_dates_status_and_type(clinic, now, team_iv):
    first, second = clinic.patient("Avery"), clinic.patient("Blake")
    dose = book_iv(clinic, first)
    december = book_iv(clinic, second, MONDAY.replace(month=12, day=2), "13:00")
    talk = booking.book(
        patient=first,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY + timedelta(days=1), "11:00"),
    )
    booking.confirm(talk)
    cancelled = booking.book(
        patient=second,
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        start=at(MONDAY + timedelta(days=2), "10:00"),
        room=clinic.room3,
    )
    booking.cancel(cancelled)
    token = bearer(clinic.clinic, READ_ALL)
    assert ids(f"/fhir/Appointment?patient=Patient/{first.pk}", token) == [
        str(dose.pk),
        str(talk.pk),
    ]
    # The therapist is on the dose (not leading) and leads the talk.
    therapist = f"Practitioner/{clinic.therapist.pk}"
    assert ids(f"/fhir/Appointment?practitioner={therapist}", token) == [
        str(dose.pk),
        str(talk.pk),
        str(december.pk),
    ]
    assert ids(f"/fhir/Appointment?actor={therapist}&date=ge2030-12-01", token) == [
        str(december.pk)
    ]
    assert ids("/fhir/Appointment?date=ge2030-06-01&date=lt2030-07-01", token) == [
        str(dose.pk),
        str(talk.pk),
        str(cancelled.pk),
    ]
    # A date alone is the clinic's day: 2030-06-04 in New York.
    assert ids("/fhir/Appointment?date=2030-06-04", token) == [str(talk.pk)]
    assert ids("/fhir/Appointment?status=cancelled,fulfilled", token) == [str(cancelled.pk)]
    assert ids("/fhir/Appointment?status=booked", token) == [
        str(dose.pk),
        str(talk.pk),
        str(december.pk),
    ]
    assert ids(f"/fhir/Appointment?location=Location/room-{clinic.room1.pk}", token) == [
        str(dose.pk),
        str(december.pk),
    ]
    assert ids(
        f"/fhir/Appointment?service-type=urn:kap-scheduler:visit-type|{clinic.integration.pk}",
        token,
    ) == [str(talk.pk)]
    assert ids(f"/fhir/Appointment?_id={talk.pk}", token) == [str(talk.pk)]
    response = fhir_get("/fhir/Appointment?actor=12", token)
    assert response.status_code == 400
    assert validated(body(response)).issue[0].code == "invalid"
    response = fhir_get("/fhir/Appointment?date=ge2030-13-45", token)
    assert response.status_code == 400


def test_include_adds_the_patient_and_the_room_once(clinic, now, team_iv):
    patient = clinic.patient()
    book_iv(clinic, patient)
    book_iv(clinic, patient, MONDAY + timedelta(days=3))
    token = bearer(clinic.clinic, READ_ALL)
    bundle = body(
        fhir_get(
            f"/fhir/Appointment?patient={patient.pk}&_include=Appointment:patient"
            "&_include=Appointment:location",
            token,
        )
    )
    validated(bundle)
    included = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    rooms = {f"room-{visit.room_id}" for visit in patient.visits.all()}
    assert len(rooms) == 1
    assert sorted((r["resourceType"], r["id"]) for r in included) == [
        ("Location", *rooms),
        ("Patient", str(patient.pk)),
    ]
    # Including something needs its scope too.
    response = fhir_get(
        f"/fhir/Appointment?patient={patient.pk}&_include=Appointment:patient",
        bearer(clinic.clinic, "system/Appointment.rs"),
    )
    assert response.status_code == 403


def queries_for(url, token):
    with CaptureQueriesContext(connection) as captured:
        bundle = body(fhir_get(url, token))
    validated(bundle)
    return bundle, len(captured)


def test_a_practitioners_month_is_searched_in_the_same_queries_for_2_or_40_visits(clinic):
    token = bearer(clinic.clinic, READ_ALL)
    patient = clinic.patient()
    url = (
        f"/fhir/Appointment?practitioner=Practitioner/{clinic.prescriber.pk}"
        "&date=ge2030-06-01&date=lt2030-07-01&_include=Appointment:patient"
        "&_include=Appointment:practitioner&_include=Appointment:location"
    )
    clinic.doses_one_after_another([patient] * 2, at(MONDAY, "08:00"))
    bundle, two = queries_for(url, token)
    assert bundle["total"] == 2
    clinic.doses_one_after_another([patient] * 38, at(MONDAY, "08:00"))
    bundle, forty = queries_for(url, token)
    assert bundle["total"] == 40
    assert two == forty <= 12


def test_each_patient_found_is_audited_with_one_row_in_one_insert(clinic):
    """One audit row per patient on the page, all written in one insert: a page of
    ten patients costs the queries a page of one does."""
    token = bearer(clinic.clinic, READ_ALL)
    url = f"/fhir/Appointment?practitioner=Practitioner/{clinic.prescriber.pk}&_count=10"
    clinic.doses_one_after_another([clinic.patient("Solo")], at(MONDAY, "08:00"))
    _, one_patient = queries_for(url, token)
    patients = [clinic.patient(f"P{n}") for n in range(11)]
    clinic.doses_one_after_another(patients, at(MONDAY, "08:00"))
    before = AuditEvent.objects.filter(action=AuditAction.API_SEARCHED).count()
    bundle, ten_patients = queries_for(url, token)
    assert len(bundle["entry"]) == 10
    assert ten_patients == one_patient
    assert AuditEvent.objects.filter(action=AuditAction.API_SEARCHED).count() - before == 10


def test_the_capability_statement_lists_appointments_with_find_and_book(clinic):
    statement = body(fhir_get("/fhir/metadata"))
    validated(statement)
    served = {entry["type"]: entry for entry in statement["rest"][0]["resource"]}
    appointment = served["Appointment"]
    assert {"patient", "practitioner", "date", "status", "actor"} <= {
        p["name"] for p in appointment["searchParam"]
    }
    assert {o["name"] for o in appointment["operation"]} == {"find", "book"}
    assert "Appointment:patient" in appointment["searchInclude"]
    assert {"schedule", "start"} <= {p["name"] for p in served["Slot"]["searchParam"]}
    assert "Schedule" in served
