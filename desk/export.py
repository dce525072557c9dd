"""A patient's own data as JSON, for a request to see or take it (HIPAA right of access).

Everything stored about the patient, one list per kind of row, in Django's
serialisation (``model``, ``pk``, ``fields``); secrets are left out (link and
feed token digests, dispatch claim tokens). Each export is in the audit trail.
"""

import json

from django.core import serializers
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from notifications.models import InboundMessage, Message, MessagingPreferences
from plans.models import CarePlan, PlannedVisit, Screening
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
        # Who has seen the patient's data is the patient's to know, too.
        "access_log": _rows(AuditEvent.objects.filter(patient=patient).order_by("at", "pk")),
    }
    audit.record(request, AuditAction.EXPORTED, patient, by)
    return data


def export_json(patient: Patient, *, request=None, by: str = "") -> str:
    return json.dumps(
        export_patient(patient, request=request, by=by), cls=DjangoJSONEncoder, indent=2
    )
