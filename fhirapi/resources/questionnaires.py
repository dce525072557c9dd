"""QuestionnaireResponse (each patient's answers) and Observation (each completed total).

The instruments are FHIR Questionnaires already (``Instrument.questionnaire``),
so a response names its instrument by that Questionnaire's ``url|version`` and
each answer is the answer option's own coding (LOINC answer codes for PHQ-9
and GAD-7). The total's code is the code of the instrument's total item
(``scoring.total.linkId``): LOINC 44261-6 for PHQ-9, 70274-6 for GAD-7.
"""

from django.db.models import Q

from fhirapi.http import FhirError, instant
from fhirapi.resources import REGISTRY, ResourceType, id_param, reference, register, row_id
from fhirapi.resources.codes import NOTHING, their_patients
from fhirapi.search import SearchParam, date_q, reference_id, token
from questionnaires import scoring
from questionnaires.models import Instrument, QuestionnaireResponse, ResponseStatus

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SURVEY = {"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}
SCORE_PREFIX = "score-"  # Observation ids: "score-<response id>"


def _patient(value: str, modifier: str | None) -> Q:
    pk = row_id(reference_id(value, "Patient"))
    return NOTHING if pk is None else Q(patient_id=pk)


def _response_status(value: str, modifier: str | None) -> Q:
    _system, code = token(value)
    if code in ResponseStatus.values:
        return Q(status=code)
    if code in ("amended", "entered-in-error", "stopped"):
        return NOTHING
    raise FhirError(400, "invalid", f"status takes completed or in-progress, not {value!r}.")


def _authored(value: str, modifier: str | None) -> Q:
    # Authored is when the answers were completed, or last saved while in progress.
    return (Q(status=ResponseStatus.COMPLETED) & date_q("completed_at", value)) | (
        Q(status=ResponseStatus.IN_PROGRESS) & date_q("updated_at", value)
    )


def _questionnaire(value: str, modifier: str | None) -> Q:
    url, _, version = value.partition("|")
    wanted = [
        instrument.pk
        for instrument in Instrument.objects.only("questionnaire", "version")
        if instrument.questionnaire.get("url") == url
        and (not version or instrument.questionnaire.get("version") == version)
    ]
    return Q(instrument__in=wanted)


def total_code(instrument: Instrument) -> dict | None:
    """The coding of the instrument's total item (its LOINC code for PHQ-9 and GAD-7)."""
    link_id = instrument.scoring["total"].get("linkId")
    item = next(
        (i for i in instrument.questionnaire.get("item", []) if i.get("linkId") == link_id), None
    )
    if item is None or not item.get("code"):
        return None
    # As the instrument gives it: a display of our own wording would not be LOINC's
    # (validators warn on that); our words go in the concept's text.
    return dict(item["code"][0])


def _score_code(value: str, modifier: str | None) -> Q:
    given_system, code = token(value)
    wanted = [
        instrument.pk
        for instrument in Instrument.objects.only("questionnaire", "scoring", "short_name")
        if (found := total_code(instrument))
        and found["code"] == code
        and given_system in (None, "", found.get("system"))
    ]
    return Q(instrument__in=wanted)


def _observation_status(value: str, modifier: str | None) -> Q:
    _system, code = token(value)
    return Q() if code == "final" else NOTHING


def _effective(value: str, modifier: str | None) -> Q:
    return date_q("completed_at", value)


def _score_pk(resource_id: str) -> int | None:
    return (
        row_id(resource_id.removeprefix(SCORE_PREFIX))
        if resource_id.startswith(SCORE_PREFIX)
        else None
    )


def _score_id(value: str, modifier: str | None) -> Q:
    pk = _score_pk(value)
    return NOTHING if pk is None else Q(pk=pk)


def _survey(value: str, modifier: str | None) -> Q:
    given_system, code = token(value)
    return Q() if code == "survey" and given_system in (None, "", OBSERVATION_CATEGORY) else NOTHING


def _subject(patient) -> dict:
    return reference("Patient", patient.pk, f"{patient.first_name} {patient.last_name}")


def answer_codings(questionnaire: dict) -> dict[tuple[str, str], dict]:
    """(linkId, answer code) -> the answer option's coding, as the instrument gives it (its
    translations left to the Questionnaire: an answer is the code, its display the English)."""
    return {
        (item["linkId"], option["valueCoding"]["code"]): {
            key: value for key, value in option["valueCoding"].items() if not key.startswith("_")
        }
        for item in questionnaire.get("item", [])
        for option in item.get("answerOption", [])
        if "valueCoding" in option
    }


def questionnaire_canonical(instrument: Instrument) -> str:
    url = instrument.questionnaire.get("url", "")
    version = instrument.questionnaire.get("version")
    return f"{url}|{version}" if version else url


@register
class QuestionnaireResponseType(ResourceType):
    name = "QuestionnaireResponse"
    profile = "http://hl7.org/fhir/StructureDefinition/QuestionnaireResponse"
    search_params = {
        "_id": id_param,
        "patient": SearchParam("reference", _patient, "Patient/<id>."),
        "subject": SearchParam("reference", _patient, "Patient/<id>."),
        "status": SearchParam("token", _response_status, "completed or in-progress."),
        "authored": SearchParam("date", _authored, "When completed (or last saved)."),
        "questionnaire": SearchParam(
            "reference", _questionnaire, "The instrument's Questionnaire url (|version)."
        ),
    }

    includes = {
        "QuestionnaireResponse:patient": their_patients,
        "QuestionnaireResponse:subject": their_patients,
    }

    def queryset(self, clinic):
        return QuestionnaireResponse.objects.filter(patient__clinic=clinic).order_by("pk")

    def prepare(self, rows):
        return rows.select_related("patient__clinic", "instrument")

    def patient_of(self, response):
        return response.patient_id

    def to_fhir(self, response: QuestionnaireResponse) -> dict:
        instrument = response.instrument
        codings = answer_codings(instrument.questionnaire)
        items = [
            {
                "linkId": item.link_id,
                "text": item.text,
                "answer": [{"valueCoding": codings[item.link_id, response.answers[item.link_id]]}],
            }
            for item in scoring.items(instrument.questionnaire)
            if (item.link_id, response.answers.get(item.link_id)) in codings
        ]
        total_item = instrument.scoring["total"].get("linkId")
        if response.total is not None and total_item:
            items.append(
                {
                    "linkId": total_item,
                    "text": "Total score",
                    "answer": [{"valueInteger": response.total}],
                }
            )
        authored = response.completed_at or response.updated_at
        resource = {
            "resourceType": "QuestionnaireResponse",
            "id": str(response.pk),
            "meta": self.meta(response),
            "questionnaire": questionnaire_canonical(instrument),
            "status": response.status,
            "subject": _subject(response.patient),
            "authored": instant(authored),
            "author": _subject(response.patient),
        }
        if items:
            resource["item"] = items
        return resource


@register
class ObservationType(ResourceType):
    """The total of each completed, scored response: one Observation per response."""

    name = "Observation"
    profile = "http://hl7.org/fhir/StructureDefinition/Observation"
    search_params = {
        "_id": SearchParam("token", _score_id, "score-<QuestionnaireResponse id>."),
        "patient": SearchParam("reference", _patient, "Patient/<id>."),
        "subject": SearchParam("reference", _patient, "Patient/<id>."),
        "code": SearchParam("token", _score_code, "http://loinc.org|44261-6 (PHQ-9 total)..."),
        "date": SearchParam("date", _effective, "When the answers were completed."),
        "status": SearchParam("token", _observation_status, "final (every score is)."),
        "category": SearchParam("token", _survey, "survey (every score is)."),
    }

    includes = {
        "Observation:patient": their_patients,
        "Observation:subject": their_patients,
        # The score and its answers are one row: the answers come at no cost.
        "Observation:derived-from": lambda rows: [
            (REGISTRY["QuestionnaireResponse"], row) for row in rows
        ],
    }

    def queryset(self, clinic):
        return (
            QuestionnaireResponse.objects.completed()
            .filter(patient__clinic=clinic, total__isnull=False)
            .order_by("pk")
        )

    def prepare(self, rows):
        return rows.select_related("patient__clinic", "instrument")

    def resource_id(self, response) -> str:
        return f"{SCORE_PREFIX}{response.pk}"

    def lookup(self, resource_id):
        pk = _score_pk(resource_id)
        if pk is None:
            raise FhirError(404, "not-found", f"There is no Observation/{resource_id}.")
        return Q(pk=pk)

    def patient_of(self, response):
        return response.patient_id

    def to_fhir(self, response: QuestionnaireResponse) -> dict:
        instrument = response.instrument
        code = total_code(instrument)
        resource = {
            "resourceType": "Observation",
            "id": self.resource_id(response),
            "meta": self.meta(response),
            "status": "final",
            "category": [{"coding": [SURVEY]}],
            "code": {"coding": [code], "text": f"{instrument.short_name} total score"}
            if code
            else {"text": f"{instrument.short_name} total score"},
            "subject": _subject(response.patient),
            "effectiveDateTime": instant(response.completed_at),
            "issued": instant(response.completed_at),
            "valueInteger": response.total,
            "derivedFrom": [reference("QuestionnaireResponse", response.pk)],
        }
        if response.band:
            # The band as the instrument's scoring names it ("Moderately severe").
            resource["interpretation"] = [{"text": response.band}]
        return resource
