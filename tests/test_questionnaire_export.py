"""A patient's export holds their questionnaire answers and scores, in words as well as codes."""

import io
import json
from datetime import timedelta

from django.core.management import call_command

from questionnaires.models import QuestionnaireResponse
from tests.conftest import MONDAY, at
from tests.score_helpers import answered


def _export(patient, tmp_path) -> dict:
    target = tmp_path / "export.json"
    call_command("export_patient", str(patient.pk), "--output", str(target), stderr=io.StringIO())
    return json.loads(target.read_text())


def test_the_export_has_each_response_with_every_items_text_and_the_answers_text(clinic, tmp_path):
    avery = clinic.patient("Avery", "Applewood")
    blake = clinic.patient("Blake", "Birchwood")
    answered(avery, "phq-9", 12, at(MONDAY, "09:00"), i44260_8=1)
    answered(avery, "gad-7", 5, at(MONDAY, "09:10"))
    answered(blake, "phq-9", 3, at(MONDAY, "10:00"))
    data = _export(avery, tmp_path)

    phq, gad = data["questionnaire_answers"]
    assert (phq["instrument"], phq["code"], phq["version"]) == ("PHQ-9", "phq-9", "1.0.0")
    assert (phq["total"], phq["band"], phq["status"]) == (12, "Moderate", "completed")
    assert phq["completed_at"] == "2030-06-03T13:00:00Z"  # UTC, as every time in the export
    item9 = next(a for a in phq["answers"] if a["linkId"] == "44260-8")
    assert item9 == {
        "linkId": "44260-8",
        "question": "Thoughts that you would be better off dead or of hurting yourself in some way",
        "answer": "Several days",
        "code": "LA6569-3",
        "points": 1,
    }
    # The difficulty question was not answered: it is there, with no answer.
    assert phq["answers"][-1]["answer"] is None and len(phq["answers"]) == 10
    assert (gad["instrument"], gad["total"], gad["band"]) == ("GAD-7", 5, "Mild")
    # The rows as stored, too, and only this patient's.
    assert len(data["questionnaire_responses"]) == 2 == len(data["questionnaire_requests"])
    assert {row["fields"]["patient"] for row in data["questionnaire_responses"]} == {avery.pk}
    assert data["safety_alerts"] == []


def test_a_half_answered_questionnaire_is_exported_as_it_stands(clinic, tmp_path):
    avery = clinic.patient("Avery", "Applewood")
    response = answered(avery, "phq-9", 0, at(MONDAY, "09:00") - timedelta(days=1))
    QuestionnaireResponse.objects.filter(pk=response.pk).update(
        status="in-progress",
        total=None,
        band="",
        completed_at=None,
        answers={"44250-9": "LA6570-1"},
    )
    (entry,) = _export(avery, tmp_path)["questionnaire_answers"]
    assert (entry["status"], entry["total"], entry["completed_at"]) == ("in-progress", None, None)
    assert [a["answer"] for a in entry["answers"]][:2] == ["More than half the days", None]
