"""PlanDefinition (protocols, their steps and timing) and CarePlan (a patient's plan of
Appointments) read and searched as FHIR."""

from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from plans.models import PlanStatus, Protocol
from scheduler.models import AuditAction, AuditEvent
from tests.conftest import MONDAY, SmallClinic
from tests.fhir_helpers import (
    bearer,
    body,
    course_protocol,
    fhir_get,
    ids,
    planned_course,
    search,
    validated,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now")]

PLANS = "system/PlanDefinition.read system/CarePlan.read"


def extension(element: dict, name: str) -> dict:
    return next(
        e for e in element["extension"] if e["url"] == f"urn:kap-scheduler:extension:{name}"
    )


def test_plan_definition_has_each_step_as_an_action_with_its_timing(clinic):
    protocol = course_protocol(clinic, 4)
    token = bearer(clinic.clinic, PLANS)
    resource = body(fhir_get(f"/fhir/PlanDefinition/{protocol.pk}", token))
    parsed = validated(resource)
    assert parsed.title == "IV course of 4"
    assert parsed.status == "active"
    assert parsed.type.coding[0].code == "clinical-protocol"
    assert resource["url"].endswith(f"/fhir/PlanDefinition/{protocol.pk}")
    assert extension(resource, "min-hours-between-doses")["valueQuantity"]["value"] == 24
    assert extension(resource, "max-doses-per-week")["valueInteger"] == 3

    screening, infusions, integration = resource["action"]
    assert [a["id"] for a in resource["action"]] == ["step-1", "step-2", "step-3"]
    assert "relatedAction" not in screening  # timed from the plan's start
    assert screening["textEquivalent"].startswith("From the plan's start")
    assert extension(screening, "healthcare-service")["valueReference"]["reference"] == (
        f"HealthcareService/{clinic.screening.pk}"
    )

    (after,) = infusions["relatedAction"]
    assert (after["actionId"], after["relationship"]) == ("step-1", "after-end")
    assert after["offsetRange"]["low"] == {
        "value": 24,
        "unit": "h",
        "system": "http://unitsofmeasure.org",
        "code": "h",
    }
    assert after["offsetRange"]["high"]["value"] == 14 * 24
    assert infusions["timingTiming"]["repeat"] == {
        "count": 4,
        "period": 24,
        "periodMax": 96,
        "periodUnit": "h",
    }
    assert extension(infusions, "max-visits-per-week")["valueInteger"] == 3
    assert infusions["code"][0]["coding"][0]["code"] == "dosing"

    (each,) = integration["relatedAction"]
    assert each["actionId"] == "step-2"
    assert each["offsetRange"]["high"]["value"] == 72
    assert "after each visit of Infusions" in integration["textEquivalent"]


def test_plan_definition_search_by_name_and_status(clinic):
    active = course_protocol(clinic, 2, slug="a")
    retired = Protocol.objects.create(
        clinic=clinic.clinic, name="Old ketamine series", slug="old", is_active=False
    )
    token = bearer(clinic.clinic, PLANS)
    assert ids(search("/fhir/PlanDefinition?status=retired", token)) == [str(retired.pk)]
    assert ids(search("/fhir/PlanDefinition?status=active", token)) == [str(active.pk)]
    assert ids(search("/fhir/PlanDefinition?name=ketamine", token)) == [str(retired.pk)]
    assert ids(search(f"/fhir/PlanDefinition?_id={active.pk}", token)) == [str(active.pk)]
    assert fhir_get("/fhir/PlanDefinition?status=lost", token).status_code == 400


def test_care_plan_lists_its_visits_as_appointments(clinic):
    patient = clinic.patient()
    plan = planned_course(clinic, patient, 3, MONDAY)
    visits = sorted(
        (planned.visit for planned in plan.planned_visits.select_related("visit")),
        key=lambda visit: visit.start,
    )
    assert len(visits) == 7  # screening, 3 infusions, 3 integrations
    token = bearer(clinic.clinic, PLANS, name="Charting system")
    resource = body(fhir_get(f"/fhir/CarePlan/{plan.pk}", token))
    parsed = validated(resource)
    assert parsed.status == "active"
    assert parsed.intent == "plan"
    assert parsed.subject.reference == f"Patient/{patient.pk}"
    (canonical,) = resource["instantiatesCanonical"]
    assert canonical == f"{settings.SITE_URL}/fhir/PlanDefinition/{plan.protocol_id}"
    assert [a["reference"]["reference"] for a in resource["activity"]] == [
        f"Appointment/{visit.pk}" for visit in visits
    ]
    assert parsed.period.start == visits[0].start
    assert parsed.period.end == visits[-1].end
    event = AuditEvent.objects.get(action=AuditAction.API_READ)
    assert (event.patient_id, event.actor_label) == (patient.pk, "FHIR client Charting system")


@pytest.mark.parametrize(
    ("ours", "fhir"),
    [
        (PlanStatus.PROPOSED, "draft"),
        (PlanStatus.ACTIVE, "active"),
        (PlanStatus.COMPLETED, "completed"),
        (PlanStatus.CANCELLED, "revoked"),
    ],
)
def test_care_plan_status_is_mapped_and_searchable(clinic, ours, fhir):
    plan = planned_course(clinic, clinic.patient(), 1, MONDAY, confirmed=False)
    plan.status = ours
    plan.save()
    token = bearer(clinic.clinic, PLANS)
    assert body(fhir_get(f"/fhir/CarePlan/{plan.pk}", token))["status"] == fhir
    assert ids(search(f"/fhir/CarePlan?status={fhir}", token)) == [str(plan.pk)]


def test_care_plan_search_by_patient_subject_and_date(clinic):
    first, second = clinic.patient("Ada", "One"), clinic.patient("Bo", "Two")
    early = planned_course(clinic, first, 1, MONDAY)
    later = planned_course(clinic, second, 1, MONDAY.replace(month=9))
    token = bearer(clinic.clinic, PLANS)
    assert ids(search(f"/fhir/CarePlan?patient=Patient/{first.pk}", token)) == [str(early.pk)]
    assert ids(search(f"/fhir/CarePlan?subject={second.pk}", token)) == [str(later.pk)]
    assert ids(search("/fhir/CarePlan?date=ge2030-08-01", token)) == [str(later.pk)]
    assert ids(search("/fhir/CarePlan?date=lt2030-08-01", token)) == [str(early.pk)]
    assert ids(search(f"/fhir/CarePlan?date={MONDAY.isoformat()}", token)) == [str(early.pk)]
    canonical = urlencode(
        {"instantiates-canonical": f"{settings.SITE_URL}/fhir/PlanDefinition/{early.protocol_id}"}
    )
    assert ids(search(f"/fhir/CarePlan?{canonical}", token)) == [str(early.pk)]
    assert fhir_get("/fhir/CarePlan?date=soon", token).status_code == 400
    searched = AuditEvent.objects.filter(action=AuditAction.API_SEARCHED)
    assert {first.pk, second.pk} <= set(searched.values_list("patient_id", flat=True))


def test_another_clinics_plans_are_not_found(clinic):
    other = SmallClinic()
    plan = planned_course(other, other.patient(), 1, MONDAY)
    token = bearer(clinic.clinic, PLANS)
    assert fhir_get(f"/fhir/CarePlan/{plan.pk}", token).status_code == 404
    assert fhir_get(f"/fhir/PlanDefinition/{plan.protocol_id}", token).status_code == 404
    assert ids(search("/fhir/CarePlan", token)) == []
    assert ids(search("/fhir/PlanDefinition", token)) == []


def test_plans_need_their_scopes(clinic):
    plan = planned_course(clinic, clinic.patient(), 1, MONDAY, confirmed=False)
    token = bearer(clinic.clinic, "system/PlanDefinition.read")
    response = fhir_get(f"/fhir/CarePlan/{plan.pk}", token)
    assert response.status_code == 403
    assert "system/CarePlan.read" in validated(body(response)).issue[0].diagnostics
    token = bearer(clinic.clinic, "system/CarePlan.read")
    assert fhir_get(f"/fhir/PlanDefinition/{plan.protocol_id}", token).status_code == 403


def test_care_plan_search_takes_the_same_queries_for_a_short_and_a_long_course(
    clinic, django_assert_num_queries
):
    token = bearer(clinic.clinic, PLANS)
    short, long = clinic.patient("Ada", "One"), clinic.patient("Bo", "Two")
    planned_course(clinic, short, 1, MONDAY)
    planned_course(clinic, long, 8, MONDAY.replace(month=9))
    with CaptureQueriesContext(connection) as few:
        search(f"/fhir/CarePlan?patient={short.pk}", token)
    with django_assert_num_queries(len(few)):
        bundle = search(f"/fhir/CarePlan?patient={long.pk}", token)
    assert len(bundle["entry"][0]["resource"]["activity"]) == 17


def test_plan_definition_search_takes_the_same_queries_for_few_or_many_steps(
    clinic, django_assert_num_queries
):
    token = bearer(clinic.clinic, PLANS)
    course_protocol(clinic, 1, slug="one")
    with CaptureQueriesContext(connection) as few:
        search("/fhir/PlanDefinition", token)
    for n in range(4):
        course_protocol(clinic, 5, slug=f"more-{n}")
    with django_assert_num_queries(len(few)):
        bundle = search("/fhir/PlanDefinition", token)
    assert bundle["total"] == 5


@pytest.mark.parametrize("kind", ["CarePlan", "PlanDefinition"])
@pytest.mark.parametrize("bad", ["²", "x", "99999999999999999999"])
def test_an_id_that_is_no_row_id_is_not_found(clinic, kind, bad):
    token = bearer(clinic.clinic, PLANS)
    response = fhir_get(f"/fhir/{kind}/{bad}", token)
    assert response.status_code == 404
    assert validated(body(response)).issue[0].code == "not-found"
    assert ids(search(f"/fhir/{kind}?_id={bad}", token)) == []


def test_care_plans_include_their_patients(clinic):
    ada = clinic.patient("Ada", "One")
    plan = planned_course(clinic, ada, 1, MONDAY)
    token = bearer(clinic.clinic, f"{PLANS} system/Patient.read")
    bundle = search("/fhir/CarePlan?_include=CarePlan:subject", token)
    assert [(e["search"]["mode"], e["resource"]["id"]) for e in bundle["entry"]] == [
        ("match", str(plan.pk)),
        ("include", str(ada.pk)),
    ]
    without_patients = bearer(clinic.clinic, PLANS)
    assert fhir_get("/fhir/CarePlan?_include=CarePlan:subject", without_patients).status_code == 403
