"""QuestionnaireResponse (the answers, with the instruments' LOINC codes) and Observation
(one score per completed response) read and searched as FHIR."""

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from questionnaires.models import (
    Instrument,
    QuestionnaireRequest,
    QuestionnaireResponse,
)
from scheduler.models import AuditAction, AuditEvent
from tests.conftest import SmallClinic
from tests.fhir_helpers import bearer, body, fhir_get, ids, search, validated
from tests.score_helpers import answered

pytestmark = pytest.mark.django_db

SCORES = "system/QuestionnaireResponse.read system/Observation.read"
WHEN = datetime(2030, 6, 3, 14, 30, tzinfo=UTC)
PHQ9_TOTAL = "44261-6"
GAD7_TOTAL = "70274-6"
ITEM_9 = "44260-8"


def in_progress(patient, code: str = "phq-9") -> QuestionnaireResponse:
    instrument = Instrument.objects.current().get(code=code)
    request = QuestionnaireRequest.objects.create(
        patient=patient,
        instrument=instrument,
        opens_at=WHEN - timedelta(days=1),
        closes_at=WHEN + timedelta(days=1),
    )
    return QuestionnaireResponse.objects.create(
        request=request,
        patient=patient,
        instrument=instrument,
        answers={"44250-9": "LA6569-3"},
    )


def test_completed_response_has_every_answer_as_its_loinc_coding(clinic):
    patient = clinic.patient()
    response = answered(patient, "phq-9", 12, WHEN, i44260_8=1)
    token = bearer(clinic.clinic, SCORES, name="Charting system")
    resource = body(fhir_get(f"/fhir/QuestionnaireResponse/{response.pk}", token))
    parsed = validated(resource)
    assert parsed.status == "completed"
    assert resource["questionnaire"] == "http://loinc.org/q/44249-1|1.0.0"
    assert parsed.subject.reference == f"Patient/{patient.pk}"
    assert resource["authored"] == "2030-06-03T14:30:00Z"
    by_item = {item["linkId"]: item["answer"][0] for item in resource["item"]}
    assert by_item[ITEM_9]["valueCoding"] == {
        "system": "http://loinc.org",
        "code": "LA6569-3",
        "display": "Several days",
    }
    assert len([i for i in by_item if i != PHQ9_TOTAL]) == 9
    assert by_item[PHQ9_TOTAL] == {"valueInteger": 12}
    event = AuditEvent.objects.get(action=AuditAction.API_READ)
    assert (event.patient_id, event.actor_label) == (patient.pk, "FHIR client Charting system")


def test_response_in_progress_shows_what_is_answered_so_far(clinic):
    response = in_progress(clinic.patient())
    token = bearer(clinic.clinic, SCORES)
    resource = body(fhir_get(f"/fhir/QuestionnaireResponse/{response.pk}", token))
    validated(resource)
    assert resource["status"] == "in-progress"
    assert [item["linkId"] for item in resource["item"]] == ["44250-9"]
    assert fhir_get(f"/fhir/Observation/score-{response.pk}", token).status_code == 404


def test_observation_is_the_score_with_its_loinc_code_and_band(clinic):
    patient = clinic.patient()
    phq9 = answered(patient, "phq-9", 17, WHEN)
    gad7 = answered(patient, "gad-7", 8, WHEN + timedelta(minutes=5))
    token = bearer(clinic.clinic, SCORES)
    resource = body(fhir_get(f"/fhir/Observation/score-{phq9.pk}", token))
    parsed = validated(resource)
    assert parsed.status == "final"
    assert resource["code"] == {
        "coding": [{"system": "http://loinc.org", "code": PHQ9_TOTAL}],
        "text": "PHQ-9 total score",
    }
    assert resource["category"][0]["coding"][0]["code"] == "survey"
    assert resource["valueInteger"] == 17
    assert resource["interpretation"][0]["text"] == "Moderately severe"
    assert resource["effectiveDateTime"] == "2030-06-03T14:30:00Z"
    assert resource["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{phq9.pk}"}]
    assert parsed.subject.reference == f"Patient/{patient.pk}"
    gad = body(fhir_get(f"/fhir/Observation/score-{gad7.pk}", token))
    assert gad["code"]["coding"][0]["code"] == GAD7_TOTAL
    assert gad["interpretation"][0]["text"] == "Mild"


@pytest.mark.parametrize("bad", ["12", "score-", "score-x", "vitals-1", "score-²"])
def test_an_observation_id_that_does_not_parse_is_not_found(clinic, bad):
    token = bearer(clinic.clinic, SCORES)
    response = fhir_get(f"/fhir/Observation/{bad}", token)
    assert response.status_code == 404
    assert validated(body(response)).issue[0].code == "not-found"


def test_searches_by_patient_code_date_and_status(clinic):
    ada, bo = clinic.patient("Ada", "One"), clinic.patient("Bo", "Two")
    early = answered(ada, "phq-9", 15, WHEN)
    anxious = answered(ada, "gad-7", 9, WHEN)
    later = answered(bo, "phq-9", 6, WHEN + timedelta(days=30))
    unfinished = in_progress(bo)
    token = bearer(clinic.clinic, SCORES)

    assert ids(search(f"/fhir/Observation?patient=Patient/{ada.pk}", token)) == [
        f"score-{early.pk}",
        f"score-{anxious.pk}",
    ]
    loinc = urlencode({"code": f"http://loinc.org|{PHQ9_TOTAL}"})
    assert ids(search(f"/fhir/Observation?{loinc}", token)) == [
        f"score-{early.pk}",
        f"score-{later.pk}",
    ]
    assert ids(search(f"/fhir/Observation?code={GAD7_TOTAL}", token)) == [f"score-{anxious.pk}"]
    assert ids(search("/fhir/Observation?code=other|44261-6", token)) == []
    assert ids(search("/fhir/Observation?date=ge2030-06-10", token)) == [f"score-{later.pk}"]
    assert ids(search(f"/fhir/Observation?_id=score-{later.pk}", token)) == [f"score-{later.pk}"]
    assert len(ids(search("/fhir/Observation?status=final&category=survey", token))) == 3

    assert ids(search(f"/fhir/QuestionnaireResponse?subject={bo.pk}", token)) == [
        str(later.pk),
        str(unfinished.pk),
    ]
    assert ids(search("/fhir/QuestionnaireResponse?status=in-progress", token)) == [
        str(unfinished.pk)
    ]
    assert ids(search("/fhir/QuestionnaireResponse?authored=2030-06-03", token)) == [
        str(early.pk),
        str(anxious.pk),
    ]
    gad7 = urlencode({"questionnaire": "http://loinc.org/q/69737-5"})
    assert ids(search(f"/fhir/QuestionnaireResponse?{gad7}", token)) == [str(anxious.pk)]
    assert fhir_get("/fhir/QuestionnaireResponse?status=lost", token).status_code == 400
    assert fhir_get("/fhir/Observation?date=yesterday", token).status_code == 400


def test_another_clinics_answers_are_not_found(clinic):
    other = SmallClinic()
    response = answered(other.patient(), "phq-9", 10, WHEN)
    token = bearer(clinic.clinic, SCORES)
    assert fhir_get(f"/fhir/QuestionnaireResponse/{response.pk}", token).status_code == 404
    assert fhir_get(f"/fhir/Observation/score-{response.pk}", token).status_code == 404
    assert ids(search("/fhir/Observation", token)) == []
    assert ids(search("/fhir/QuestionnaireResponse", token)) == []


def test_answers_and_scores_need_their_own_scopes(clinic):
    response = answered(clinic.patient(), "phq-9", 10, WHEN)
    token = bearer(clinic.clinic, "system/QuestionnaireResponse.read")
    assert fhir_get(f"/fhir/QuestionnaireResponse/{response.pk}", token).status_code == 200
    refused = fhir_get(f"/fhir/Observation/score-{response.pk}", token)
    assert refused.status_code == 403
    assert "system/Observation.read" in validated(body(refused)).issue[0].diagnostics


@pytest.mark.parametrize("kind", ["QuestionnaireResponse", "Observation"])
def test_searches_take_the_same_queries_for_one_or_many_answers(
    clinic, kind, django_assert_num_queries
):
    patient = clinic.patient()
    answered(patient, "phq-9", 10, WHEN)
    token = bearer(clinic.clinic, SCORES)
    with CaptureQueriesContext(connection) as few:
        search(f"/fhir/{kind}?patient={patient.pk}", token)
    for week in range(1, 9):
        answered(patient, "phq-9", 10 - week, WHEN + timedelta(weeks=week))
        answered(patient, "gad-7", 9 - week, WHEN + timedelta(weeks=week))
    with django_assert_num_queries(len(few)):
        bundle = search(f"/fhir/{kind}?patient={patient.pk}", token)
    assert bundle["total"] == 17


@pytest.mark.parametrize("bad", ["²", "x", "99999999999999999999"])
def test_a_response_id_that_is_no_row_id_is_not_found(clinic, bad):
    token = bearer(clinic.clinic, SCORES)
    response = fhir_get(f"/fhir/QuestionnaireResponse/{bad}", token)
    assert response.status_code == 404
    assert validated(body(response)).issue[0].code == "not-found"
    assert ids(search(f"/fhir/QuestionnaireResponse?_id={bad}", token)) == []


def test_scores_include_their_answers_and_patient_in_bounded_queries(
    clinic, django_assert_num_queries
):
    patient = clinic.patient()
    first = answered(patient, "phq-9", 12, WHEN)
    token = bearer(clinic.clinic, "system/*.read")
    path = (
        f"/fhir/Observation?patient={patient.pk}"
        "&_include=Observation:derived-from&_include=Observation:patient"
    )
    with CaptureQueriesContext(connection) as few:
        bundle = search(path, token)
    included = {
        (e["resource"]["resourceType"], e["resource"]["id"])
        for e in bundle["entry"]
        if e["search"]["mode"] == "include"
    }
    assert included == {("QuestionnaireResponse", str(first.pk)), ("Patient", str(patient.pk))}
    for week in range(1, 6):
        answered(patient, "phq-9", 12 - week, WHEN + timedelta(weeks=week))
    with django_assert_num_queries(len(few)):
        bundle = search(path, token)
    assert len([e for e in bundle["entry"] if e["search"]["mode"] == "include"]) == 7
