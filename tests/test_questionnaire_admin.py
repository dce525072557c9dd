"""Instruments are data: a clinic adds one in the admin and it is asked, scored, banded and
charted with no change to the code; an asked version is never rewritten; what patients
answered is read there, not written, by whoever may see it."""

import copy
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from desk.score_chart import chart_of
from questionnaires.models import Instrument, QuestionnaireResponse
from questionnaires.scores import courses_for
from questionnaires.scoring import score
from scheduler.models import AuditAction, AuditEvent, Visit, VisitStatus
from tests.conftest import MONDAY, at
from tests.page_helpers import clinic_admin, front_desk, sign_in_verified
from tests.score_helpers import answered

ORDINAL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
OPTIONS = [("never", "Never", 0), ("sometimes", "Sometimes", 1), ("often", "Often", 2)]


def _item(link_id: str, text: str) -> dict:
    return {
        "linkId": link_id,
        "text": text,
        "type": "choice",
        "required": True,
        "answerOption": [
            {
                "valueCoding": {"system": "urn:example:rest", "code": code, "display": display},
                "extension": [{"url": ORDINAL, "valueDecimal": points}],
            }
            for code, display, points in OPTIONS
        ],
    }


# A synthetic three-item scale (not a validated instrument): enough to prove the shape.
REST_CHECK = {
    "resourceType": "Questionnaire",
    "version": "1",
    "title": "Rest check (synthetic, 3 items)",
    "status": "active",
    "item": [
        {"linkId": "stem", "type": "display", "text": "In the last week, how often..."},
        _item("r1", "did you wake up tired?"),
        _item("r2", "did you lie awake at night?"),
        _item("r3", "did you nap during the day?"),
    ],
}
REST_SCORING = {
    "total": {"items": ["r1", "r2", "r3"], "max": 6},
    "bands": [
        {"min": 0, "max": 1, "label": "Rested"},
        {"min": 2, "max": 3, "label": "Some trouble"},
        {"min": 4, "max": 6, "label": "Poor rest"},
    ],
    "safety": [],
    "response_drop": 0.5,
    "remission_below": 2,
}


def _form(questionnaire=REST_CHECK, scoring=REST_SCORING, **changes) -> dict:
    return {
        "code": "rest-check",
        "version": "1",
        "short_name": "Rest",
        "title": "Rest check",
        "questionnaire": json.dumps(questionnaire),
        "scoring": json.dumps(scoring),
        "source": "Written for the tests.",
        "is_active": "on",
    } | changes


def test_a_clinic_adds_an_instrument_in_the_admin_and_it_scores_bands_and_charts(
    admin_client, clinic
):
    response = admin_client.post(reverse("admin:questionnaires_instrument_add"), _form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    rest = Instrument.objects.get(code="rest-check")
    result = score(rest.questionnaire, rest.scoring, {"r1": "often", "r2": "often", "r3": "never"})
    assert (result.total, result.band) == (4, "Poor rest")
    # Its preview reads as patients and staff do.
    page = admin_client.get(reverse("admin:questionnaires_instrument_change", args=[rest.pk])).text
    assert "did you lie awake at night?" in page and "Sometimes (1)" in page
    assert "4-6: Poor rest" in page

    patient = clinic.patient("Avery", "Applewood")
    dose = clinic.doses_one_after_another([patient], at(MONDAY, "09:00"))[0]
    Visit.objects.filter(pk=dose.pk).update(status=VisitStatus.COMPLETED)
    answered(patient, "rest-check", 5, dose.start - timedelta(days=1))
    answered(patient, "rest-check", 1, dose.start + timedelta(days=7))
    (course,) = courses_for(patient)
    assert (course.short_name, course.response, course.remission) == ("Rest", True, True)
    chart = chart_of(course, [dose], clinic.clinic.tz)
    assert [band.label for band in chart.bands] == ["Rested", "Some trouble", "Poor rest"]
    assert "Remission (below 2): yes." in chart.summary
    desk_page = admin_client.get(reverse("desk_patient", args=[patient.pk])).text
    assert "Rest check: scores over time" in desk_page


@pytest.mark.parametrize(
    ("questionnaire", "scoring", "says"),
    [
        (REST_CHECK, {**REST_SCORING, "total": {"items": ["r1", "r2"], "max": 6}}, "add up to 4"),
        (
            REST_CHECK,
            {**REST_SCORING, "bands": REST_SCORING["bands"][:2]},
            "cover 0 to 6 without gaps",
        ),
        ({**REST_CHECK, "resourceType": "Bundle"}, REST_SCORING, "must be a FHIR Questionnaire"),
    ],
    ids=["total", "bands", "resource type"],
)
def test_a_definition_that_cannot_be_scored_is_refused_with_the_reason_on_the_form(
    admin_client, db, questionnaire, scoring, says
):
    response = admin_client.post(
        reverse("admin:questionnaires_instrument_add"), _form(questionnaire, scoring)
    )
    assert response.status_code == 200
    assert says in str(response.context["adminform"].form.non_field_errors())
    assert not Instrument.objects.filter(code="rest-check").exists()


def test_json_that_does_not_parse_is_refused_on_its_field(admin_client, db):
    response = admin_client.post(
        reverse("admin:questionnaires_instrument_add"), _form() | {"scoring": "{bands: "}
    )
    assert "scoring" in response.context["adminform"].form.errors


def test_an_asked_version_is_never_rewritten_a_changed_definition_becomes_a_new_version(
    admin_client, clinic
):
    phq = Instrument.objects.get(code="phq-9")
    before = copy.deepcopy(phq.questionnaire)
    answered(clinic.patient(), "phq-9", 10, at(MONDAY, "09:00"))
    changed = copy.deepcopy(phq.questionnaire)
    changed["item"][1]["text"] = "Little interest or pleasure in doing things (reworded)"
    url = reverse("admin:questionnaires_instrument_change", args=[phq.pk])
    fields = {
        "code": "phq-9",
        "version": phq.version,
        "short_name": phq.short_name,
        "title": phq.title,
        "questionnaire": json.dumps(changed),
        "scoring": json.dumps(phq.scoring),
        "source": phq.source,
        "is_active": "on",
    }
    refused = admin_client.post(url, fields)
    assert refused.status_code == 200
    assert "give the changed definition a new version number" in refused.text
    assert admin_client.post(url, fields | {"version": "1.0.1"}).status_code == 302
    versions = Instrument.objects.filter(code="phq-9").order_by("pk")
    assert [(v.version, v.is_active) for v in versions] == [("1.0.0", False), ("1.0.1", True)]
    assert Instrument.objects.current().get(code="phq-9") == versions[1]  # the one asked
    assert versions[0].questionnaire == before  # what the response answered
    assert "(reworded)" in versions[1].questionnaire["item"][1]["text"]
    assert QuestionnaireResponse.objects.get().instrument == versions[0]


def test_a_version_nobody_was_asked_may_be_corrected_in_place(admin_client, db):
    admin_client.post(reverse("admin:questionnaires_instrument_add"), _form())
    rest = Instrument.objects.get(code="rest-check")
    url = reverse("admin:questionnaires_instrument_change", args=[rest.pk])
    assert admin_client.post(url, _form(title="Rest check, corrected")).status_code == 302
    assert Instrument.objects.get(code="rest-check").title == "Rest check, corrected"


@pytest.fixture
def two_patients(clinic):
    avery = clinic.patient("Avery", "Applewood")
    blake = clinic.patient("Blake", "Birchwood")
    Visit.objects.create(
        patient=avery,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
        end=at(MONDAY, "10:50"),
        status=VisitStatus.BOOKED,
    )
    return (
        answered(avery, "phq-9", 11, at(MONDAY, "09:00"), i44260_8=1),
        answered(blake, "phq-9", 6, at(MONDAY, "09:00")),
    )


def _staff_with_view_permissions(user):
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return user


def test_answers_are_read_in_the_admin_in_words_never_written(admin_client, two_patients):
    response = two_patients[0]
    url = reverse("admin:questionnaires_questionnaireresponse_change", args=[response.pk])
    page = admin_client.get(url).text
    assert "Thoughts that you would be better off dead" in page
    assert "<strong>Several days</strong>" in page
    assert 'name="_save"' not in page
    assert (
        admin_client.get(reverse("admin:questionnaires_questionnaireresponse_add")).status_code
        == 403
    )
    for model in ("questionnairerequest", "safetyalert"):
        assert admin_client.get(reverse(f"admin:questionnaires_{model}_add")).status_code == 403
    event = AuditEvent.objects.filter(action=AuditAction.VIEWED_PATIENT).latest("pk")
    assert (event.patient_id, event.detail) == (
        response.patient_id,
        f"questionnaire response {response.pk} (admin)",
    )


def test_in_the_admin_a_clinician_reads_only_their_patients_answers_and_the_desk_none(
    client, clinic, two_patients
):
    avery, blake = two_patients
    sign_in_verified(client, _staff_with_view_permissions(clinic.therapist.user))
    listing = client.get(reverse("admin:questionnaires_questionnaireresponse_changelist")).text
    assert "Applewood" in listing and "Birchwood" not in listing
    blakes = reverse("admin:questionnaires_questionnaireresponse_change", args=[blake.pk])
    assert client.get(blakes).status_code == 302  # the admin's answer to "no such row"

    client.force_login(_staff_with_view_permissions(front_desk()))
    changelist = reverse("admin:questionnaires_questionnaireresponse_changelist")
    assert client.get(changelist).status_code == 403
    avery_url = reverse("admin:questionnaires_questionnaireresponse_change", args=[avery.pk])
    assert client.get(avery_url).status_code in (302, 403)
    assert "Questionnaire responses" not in client.get(reverse("admin:index")).text


def test_clinic_admins_edit_asking_rules_and_safety_policies(client, db):
    sign_in_verified(client, _staff_with_view_permissions(clinic_admin()))
    for model in ("askingrule", "safetypolicy", "instrument"):
        assert client.get(reverse(f"admin:questionnaires_{model}_changelist")).status_code == 200


def test_the_demo_groups_give_answers_to_clinicians_and_admins_and_none_to_the_desk(db):
    from desk.demo import seed
    from scheduler.demo import CLINIC_ADMINS, CLINICIANS, FRONT_DESK

    groups = seed()

    def questionnaire_codenames(name):
        return set(
            groups[name]
            .permissions.filter(content_type__app_label="questionnaires")
            .values_list("codename", flat=True)
        )

    assert questionnaire_codenames(FRONT_DESK) == set()
    assert "view_questionnaireresponse" in questionnaire_codenames(CLINICIANS)
    assert {"change_instrument", "add_instrument", "view_questionnaireresponse"} <= (
        questionnaire_codenames(CLINIC_ADMINS)
    )
    assert "change_questionnaireresponse" not in questionnaire_codenames(CLINIC_ADMINS)
