"""Practitioner, PractitionerRole, Location and HealthcareService: the clinic's people,
places and visit types read and searched as FHIR, each valid and faithful."""

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduler.models import AuditAction, AuditEvent, Room, TimeOff
from tests.conftest import SmallClinic
from tests.fhir_helpers import bearer, body, every_page, fhir_get, ids, search, validated

pytestmark = pytest.mark.django_db

EVERYTHING = "system/*.read"


def test_practitioner_reads_as_the_clinician(clinic):
    clinic.prescriber.mobile = "+12125550177"
    clinic.prescriber.save()
    token = bearer(clinic.clinic, "system/Practitioner.read")
    resource = body(fhir_get(f"/fhir/Practitioner/{clinic.prescriber.pk}", token))
    parsed = validated(resource)
    assert parsed.name[0].text == "Dr. Alvarez"
    assert parsed.active is True
    assert resource["identifier"] == [
        {"system": "urn:kap-scheduler:clinician", "value": str(clinic.prescriber.pk)}
    ]
    assert {"system": "phone", "value": "+12125550177", "use": "mobile"} in resource["telecom"]
    assert resource["meta"]["lastUpdated"].endswith("Z")


def test_practitioner_search_by_name_and_active(clinic):
    clinic.nurse.is_active = False
    clinic.nurse.save()
    token = bearer(clinic.clinic, "system/Practitioner.read")
    assert ids(search("/fhir/Practitioner?name=alv", token)) == [str(clinic.prescriber.pk)]
    assert ids(search("/fhir/Practitioner?name=rivers", token)) == [str(clinic.therapist.pk)]
    assert ids(search("/fhir/Practitioner?active=false", token)) == [str(clinic.nurse.pk)]
    assert str(clinic.nurse.pk) not in ids(search("/fhir/Practitioner?active=true", token))
    assert fhir_get("/fhir/Practitioner?active=maybe", token).status_code == 400


def test_practitioner_role_lists_roles_hours_and_time_off_ahead(clinic):
    now = timezone.now()
    TimeOff.objects.create(
        clinician=clinic.therapist, start=now - timedelta(days=3), end=now - timedelta(days=2)
    )
    TimeOff.objects.create(
        clinician=clinic.therapist,
        start=now + timedelta(days=10),
        end=now + timedelta(days=12),
        reason="Conference",
    )
    clinic.therapist.is_nurse = True
    clinic.therapist.save()
    token = bearer(clinic.clinic, "system/PractitionerRole.read")
    resource = body(fhir_get(f"/fhir/PractitionerRole/{clinic.therapist.pk}", token))
    parsed = validated(resource)
    assert parsed.practitioner.reference == f"Practitioner/{clinic.therapist.pk}"
    assert resource["location"][0]["reference"] == f"Location/clinic-{clinic.clinic.pk}"
    codes = {c["code"] for concept in resource["code"] for c in concept["coding"]}
    assert codes == {"therapist", "nurse"}  # ours, and HL7's "nurse"
    nurse = next(c for c in resource["code"] if c["coding"][0]["code"] == "nurse")
    assert nurse["coding"][1]["system"] == "http://terminology.hl7.org/CodeSystem/practitioner-role"
    assert resource["availableTime"] == [
        {
            "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
            "availableStartTime": "09:00:00",
            "availableEndTime": "17:00:00",
        }
    ]
    (away,) = resource["notAvailable"]  # the past time off is not shown
    assert away["description"] == "Conference"


def test_practitioner_role_search_by_role_practitioner_and_location(clinic):
    token = bearer(clinic.clinic, "system/PractitionerRole.read")
    everyone = {str(c.pk) for c in (clinic.prescriber, clinic.therapist, clinic.nurse)}
    assert ids(search("/fhir/PractitionerRole?role=therapist", token)) == [str(clinic.therapist.pk)]
    hl7_nurse = urlencode({"role": "http://terminology.hl7.org/CodeSystem/practitioner-role|nurse"})
    assert ids(search(f"/fhir/PractitionerRole?{hl7_nurse}", token)) == [str(clinic.nurse.pk)]
    assert ids(search("/fhir/PractitionerRole?role=surgeon", token)) == []
    assert ids(
        search(f"/fhir/PractitionerRole?practitioner=Practitioner/{clinic.nurse.pk}", token)
    ) == [str(clinic.nurse.pk)]
    at_clinic = search(f"/fhir/PractitionerRole?location=Location/clinic-{clinic.clinic.pk}", token)
    assert set(ids(at_clinic)) == everyone
    assert ids(search("/fhir/PractitionerRole?location=Location/clinic-0", token)) == []


def test_clinic_location_has_its_zone_hours_and_address(clinic):
    token = bearer(clinic.clinic, "system/Location.read")
    resource = body(fhir_get(f"/fhir/Location/clinic-{clinic.clinic.pk}", token))
    parsed = validated(resource)
    assert parsed.name == clinic.clinic.name
    assert resource["physicalType"]["coding"][0]["code"] == "si"
    assert resource["extension"] == [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/timezone",
            "valueCode": "America/New_York",
        }
    ]
    assert resource["address"]["text"] == "1 Example Street"
    assert resource["hoursOfOperation"][0]["openingTime"] == "08:00:00"
    assert resource["hoursOfOperation"][0]["daysOfWeek"] == ["mon", "tue", "wed", "thu", "fri"]


def test_room_location_is_part_of_the_clinic_with_its_capabilities(clinic):
    token = bearer(clinic.clinic, "system/Location.read")
    resource = body(fhir_get(f"/fhir/Location/room-{clinic.room1.pk}", token))
    validated(resource)
    assert resource["partOf"]["reference"] == f"Location/clinic-{clinic.clinic.pk}"
    assert resource["physicalType"]["coding"][0]["code"] == "ro"
    assert [t["coding"][0]["code"] for t in resource["type"]] == ["infusion-chair", "monitoring"]


@pytest.mark.parametrize("bad", ["12", "room-", "room-x", "ward-1", "clinic-1-2", "room-²"])
def test_a_location_id_that_does_not_parse_is_not_found(clinic, bad):
    token = bearer(clinic.clinic, "system/Location.read")
    response = fhir_get(f"/fhir/Location/{bad}", token)
    assert response.status_code == 404
    assert validated(body(response)).issue[0].code == "not-found"


def test_location_search_by_name_partof_and_type(clinic):
    token = bearer(clinic.clinic, "system/Location.read")
    clinic_id = f"clinic-{clinic.clinic.pk}"
    rooms = [f"room-{room.pk}" for room in (clinic.room1, clinic.room2, clinic.room3)]
    assert ids(search("/fhir/Location", token)) == [clinic_id, *rooms]
    assert ids(search(f"/fhir/Location?partof=Location/{clinic_id}", token)) == rooms
    assert ids(search("/fhir/Location?type=si", token)) == [clinic_id]
    assert ids(search("/fhir/Location?physical-type=ro", token)) == rooms
    assert ids(search("/fhir/Location?type=monitoring", token)) == rooms[:2]
    assert ids(search("/fhir/Location?name=room 2", token)) == [rooms[1]]
    assert ids(search("/fhir/Location?name=test clinic", token)) == [clinic_id]
    assert ids(search(f"/fhir/Location?_id={rooms[2]},{clinic_id}", token)) == [
        clinic_id,
        rooms[2],
    ]
    # Values that name no location of ours find nothing (and are no server error).
    for nothing in (
        f"partof=Location/{rooms[0]}",
        "partof=Location/clinic-x",
        "_id=ward-1",
        "type=http://example.org/types|si",
        "physical-type=bu",
        "name=zzz",
    ):
        assert ids(search(f"/fhir/Location?{nothing}", token)) == [], nothing


def test_location_search_pages_across_clinic_and_rooms(clinic):
    for n in range(7):
        clinic.room(f"Extra {n}")
    token = bearer(clinic.clinic, "system/Location.read")
    entries = every_page("/fhir/Location?_count=3", token)
    found = [entry["resource"]["id"] for entry in entries]
    expected = [f"clinic-{clinic.clinic.pk}"] + [
        f"room-{pk}"
        for pk in Room.objects.filter(clinic=clinic.clinic)
        .order_by("pk")
        .values_list("pk", flat=True)
    ]
    assert found == expected


def test_healthcare_service_describes_the_visit_type(clinic):
    clinic.add_to_team(clinic.iv, "therapist", "nurse", joins_after_minutes=15, stays_minutes=60)
    token = bearer(clinic.clinic, "system/HealthcareService.read")
    resource = body(fhir_get(f"/fhir/HealthcareService/{clinic.iv.pk}", token))
    parsed = validated(resource)
    assert parsed.name == "Iv Infusion"
    assert parsed.appointmentRequired is True
    assert resource["category"][0]["coding"][0]["code"] == "dosing"
    assert resource["type"][1]["coding"][0]["code"] == "iv"
    assert resource["characteristic"][0]["coding"][0]["code"] == "in_person"
    assert resource["location"][0]["reference"] == f"Location/clinic-{clinic.clinic.pk}"
    by_url = {}
    for extension in resource["extension"]:
        by_url.setdefault(extension["url"].rsplit(":", 1)[1], []).append(extension)
    assert by_url["visit-duration"][0]["valueDuration"]["value"] == 120
    assert by_url["monitoring-duration"][0]["valueDuration"]["value"] == 60
    assert by_url["room-capability"][0]["valueCoding"]["code"] == "infusion-chair"
    lead, second = by_url["team-member"]
    assert [p["valueCoding"]["code"] for p in lead["extension"] if p["url"] == "role"] == [
        "prescriber"
    ]
    assert [p["valueCoding"]["code"] for p in second["extension"] if p["url"] == "role"] == [
        "therapist",
        "nurse",
    ]
    joins = next(p for p in second["extension"] if p["url"] == "joinsAfter")
    assert joins["valueDuration"]["value"] == 15
    assert resource["comment"] == "Team: prescriber + therapist or nurse."


def test_healthcare_service_search(clinic):
    token = bearer(clinic.clinic, "system/HealthcareService.read")
    assert ids(search("/fhir/HealthcareService?name=infusion", token)) == [str(clinic.iv.pk)]
    assert len(ids(search("/fhir/HealthcareService?active=true", token))) == 3
    assert ids(search("/fhir/HealthcareService?active=false", token)) == []
    assert ids(search(f"/fhir/HealthcareService?_id={clinic.integration.pk}", token)) == [
        str(clinic.integration.pk)
    ]


@pytest.mark.parametrize(
    "path",
    [
        "Practitioner/{clinician}",
        "PractitionerRole/{clinician}",
        "Location/clinic-{clinic}",
        "Location/room-{room}",
        "HealthcareService/{visit_type}",
    ],
)
def test_another_clinics_rows_are_not_found(clinic, path):
    other = SmallClinic()
    token = bearer(clinic.clinic, EVERYTHING)
    url = "/fhir/" + path.format(
        clinician=other.prescriber.pk,
        clinic=other.clinic.pk,
        room=other.room1.pk,
        visit_type=other.iv.pk,
    )
    assert fhir_get(url, token).status_code == 404
    kind, resource_id = path.split("/")[0], url.rsplit("/", 1)[1]
    found = ids(search(f"/fhir/{kind}", token))
    assert found and resource_id not in found


@pytest.mark.parametrize(
    "kind", ["Practitioner", "PractitionerRole", "Location", "HealthcareService"]
)
def test_each_type_needs_its_scope(clinic, kind):
    token = bearer(clinic.clinic, "system/Patient.read")
    response = fhir_get(f"/fhir/{kind}", token)
    assert response.status_code == 403
    assert f"system/{kind}.read" in validated(body(response)).issue[0].diagnostics


def test_staff_and_places_are_not_patient_data_in_the_audit(clinic):
    token = bearer(clinic.clinic, EVERYTHING)
    search("/fhir/Practitioner", token)
    event = AuditEvent.objects.get(action=AuditAction.API_SEARCHED)
    assert event.patient_id is None


@pytest.mark.parametrize(
    "kind", ["Practitioner", "PractitionerRole", "Location", "HealthcareService"]
)
def test_searches_take_the_same_queries_for_few_or_many_rows(
    clinic, kind, django_assert_num_queries
):
    token = bearer(clinic.clinic, EVERYTHING)
    with CaptureQueriesContext(connection) as few:
        search(f"/fhir/{kind}", token)
    grow(clinic, 6)
    with django_assert_num_queries(len(few)):
        bundle = search(f"/fhir/{kind}", token)
    assert bundle["total"] > 6


def grow(clinic, n: int) -> None:
    now = timezone.now()
    for i in range(n):
        clinician = clinic.clinician(f"Extra {i}", "therapist", "nurse")
        TimeOff.objects.create(
            clinician=clinician, start=now + timedelta(days=i + 1), end=now + timedelta(days=i + 2)
        )
        clinic.room(f"Extra room {i}", clinic.monitoring, clinic.infusion_chair)
        visit_type = clinic.visit_type(f"extra-{i}", "integration", 50, "therapist", "telehealth")
        clinic.add_to_team(visit_type, "nurse")


def test_metadata_lists_these_types_and_their_parameters(clinic):
    statement = body(fhir_get("/fhir/metadata"))
    validated(statement)
    served = {entry["type"]: entry for entry in statement["rest"][0]["resource"]}
    assert {"name", "partof", "type"} <= {p["name"] for p in served["Location"]["searchParam"]}
    assert {"role", "practitioner", "location"} <= {
        p["name"] for p in served["PractitionerRole"]["searchParam"]
    }
    assert {"Practitioner", "HealthcareService"} <= set(served)


@pytest.mark.parametrize("kind", ["Practitioner", "PractitionerRole", "HealthcareService"])
@pytest.mark.parametrize("bad", ["²", "x", "99999999999999999999"])
def test_an_id_that_is_no_row_id_is_not_found(clinic, kind, bad):
    token = bearer(clinic.clinic, EVERYTHING)
    response = fhir_get(f"/fhir/{kind}/{bad}", token)
    assert response.status_code == 404
    assert validated(body(response)).issue[0].code == "not-found"
    assert ids(search(f"/fhir/{kind}?_id={bad}", token)) == []


def test_practitioner_roles_include_their_practitioners(clinic):
    token = bearer(clinic.clinic, EVERYTHING)
    bundle = search(
        "/fhir/PractitionerRole?role=nurse&_include=PractitionerRole:practitioner", token
    )
    assert [(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]] == [
        ("PractitionerRole", "match"),
        ("Practitioner", "include"),
    ]
    assert bundle["entry"][1]["resource"]["id"] == str(clinic.nurse.pk)
