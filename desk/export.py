"""A patient's own data as JSON, for a request to see or take it (HIPAA right of access).

Everything stored about the patient, one list per kind of row, in Django's
serialisation (``model``, ``pk``, ``fields``); secrets are left out (link and
feed token digests, dispatch claim tokens). Questionnaire answers come once
more in words (``questionnaire_answers``): each item's text and the answer's,
as the version answered worded them, so the export reads without the
instrument's definition. Each export is in the audit trail.
"""

import json

from django.core import serializers
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from notifications.models import InboundMessage, Message, MessagingPreferences
from plans.models import CarePlan, PlannedVisit, Screening
from questionnaires.models import (
    QuestionnaireRequest,
    QuestionnaireResponse,
    SafetyAlert,
)
from questionnaires.scoring import items
from scheduler import audit
from scheduler.models import AuditAction, AuditEvent, Patient, Visit

LEFT_OUT = {"notifications.message": {"claim_token"}}


def _rows(queryset) -> list[dict]:
    rows = serializers.serialize("python", queryset)
    left_out = LEFT_OUT.get(queryset.model._meta.label_lower, set())
    for row in rows:
        for name in left_out:
            row["fields"].pop(name, None)
    return rows


def questionnaire_answers(patient: Patient) -> list[dict]:
    """Each response of ``patient`` in words: instrument, version, dates, every item's text
    with the answer's text and points, the total and its band."""
    found = []
    responses = QuestionnaireResponse.objects.filter(patient=patient).select_related("instrument")
    for response in responses.order_by("started_at", "pk"):
        instrument = response.instrument
        answers = []
        for item in items(instrument.questionnaire):
            code = response.answers.get(item.link_id)
            option = item.option(code) if code is not None else None
            answers.append(
                {
                    "linkId": item.link_id,
                    "question": item.text,
                    "answer": option.display if option else None,
                    "code": code,
                    "points": option.points if option else None,
                }
            )
        found.append(
            {
                "instrument": instrument.short_name,
                "title": instrument.title,
                "code": instrument.code,
                "version": instrument.version,
                "status": response.status,
                "started_at": response.started_at,
                "completed_at": response.completed_at,
                "answers": answers,
                "total": response.total,
                "band": response.band,
            }
        )
    return found


def export_patient(patient: Patient, *, request=None, by: str = "") -> dict:
    """The patient's data as a JSON-ready dict; records the export in the audit trail."""
    data = {
        "exported_at": timezone.now().isoformat(),
        "patient": _rows(Patient.objects.filter(pk=patient.pk)),
        "messaging_preferences": _rows(MessagingPreferences.objects.filter(patient=patient)),
        "screenings": _rows(Screening.objects.filter(patient=patient)),
        "care_plans": _rows(CarePlan.objects.filter(patient=patient)),
        "planned_visits": _rows(PlannedVisit.objects.filter(care_plan__patient=patient)),
        "visits": _rows(Visit.objects.filter(patient=patient).order_by("start")),
        "messages": _rows(Message.objects.filter(patient=patient).order_by("send_at", "pk")),
        "inbound_messages": _rows(InboundMessage.objects.filter(patient=patient)),
        "questionnaire_requests": _rows(QuestionnaireRequest.objects.filter(patient=patient)),
        "questionnaire_responses": _rows(QuestionnaireResponse.objects.filter(patient=patient)),
        "questionnaire_answers": questionnaire_answers(patient),
        "safety_alerts": _rows(SafetyAlert.objects.filter(patient=patient)),
        # Who has seen the patient's data is the patient's to know, too.
        "access_log": _rows(AuditEvent.objects.filter(patient=patient).order_by("at", "pk")),
    }
    audit.record(request, AuditAction.EXPORTED, patient, by)
    return data


def export_json(patient: Patient, *, request=None, by: str = "") -> str:
    return json.dumps(
        export_patient(patient, request=request, by=by), cls=DjangoJSONEncoder, indent=2
    )
