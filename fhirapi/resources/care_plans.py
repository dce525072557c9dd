"""CarePlan: a patient's plan, generated from a protocol, its visits as Appointments."""

from django.db.models import Prefetch, Q

from fhirapi.http import FhirError, instant
from fhirapi.resources import ResourceType, id_param, reference, register, row_id
from fhirapi.resources.codes import NOTHING, canonical, their_patients
from fhirapi.search import SearchParam, date_q, reference_id, token
from plans.models import CarePlan, PlannedVisit, PlanStatus

# PlanStatus -> FHIR request-status. A proposal under review is a draft; a
# booked plan is active; a cancelled plan was stopped: "revoked".
STATUS = {
    PlanStatus.PROPOSED: "draft",
    PlanStatus.ACTIVE: "active",
    PlanStatus.COMPLETED: "completed",
    PlanStatus.CANCELLED: "revoked",
}


def _patient(value: str, modifier: str | None) -> Q:
    pk = row_id(reference_id(value, "Patient"))
    return NOTHING if pk is None else Q(patient_id=pk)


def _status(value: str, modifier: str | None) -> Q:
    _system, code = token(value)
    ours = [plan_status for plan_status, fhir in STATUS.items() if fhir == code]
    if code not in ("on-hold", "entered-in-error", "unknown") and not ours:
        raise FhirError(
            400, "invalid", f"status takes draft, active, completed or revoked, not {value!r}."
        )
    return Q(status__in=ours)


def _date(value: str, modifier: str | None) -> Q:
    # The period a plan covers is its visits' span: a plan matches when one of its
    # visits starts within the date asked (in the installation's time zone).
    visits = PlannedVisit.objects.filter(date_q("visit__start", value)).values("care_plan")
    return Q(pk__in=visits)


def _instantiates(value: str, modifier: str | None) -> Q:
    pk = row_id(reference_id(value, "PlanDefinition"))
    return NOTHING if pk is None else Q(protocol_id=pk)


@register
class CarePlanType(ResourceType):
    name = "CarePlan"
    profile = "http://hl7.org/fhir/StructureDefinition/CarePlan"
    search_params = {
        "_id": id_param,
        "patient": SearchParam("reference", _patient, "Patient/<id>."),
        "subject": SearchParam("reference", _patient, "Patient/<id>."),
        "status": SearchParam("token", _status, "draft, active, completed or revoked."),
        "date": SearchParam(
            "date", _date, "When one of the plan's visits starts (prefixes ge, lt...)."
        ),
        "instantiates-canonical": SearchParam(
            "reference", _instantiates, "The PlanDefinition's canonical URL."
        ),
    }

    includes = {"CarePlan:patient": their_patients, "CarePlan:subject": their_patients}

    def queryset(self, clinic):
        return CarePlan.objects.filter(patient__clinic=clinic).order_by("pk")

    def prepare(self, rows):
        visits = PlannedVisit.objects.select_related("visit").order_by("visit__start", "pk")
        return rows.select_related("patient__clinic", "protocol").prefetch_related(
            Prefetch("planned_visits", queryset=visits)
        )

    def patient_of(self, plan):
        return plan.patient_id

    def to_fhir(self, plan: CarePlan) -> dict:
        visits = [planned.visit for planned in plan.planned_visits.all()]
        patient = plan.patient
        resource = {
            "resourceType": "CarePlan",
            "id": str(plan.pk),
            "meta": self.meta(plan),
            "instantiatesCanonical": [canonical("PlanDefinition", plan.protocol_id)],
            "status": STATUS[plan.status],
            "intent": "plan",
            "title": plan.protocol.name,
            "subject": reference(
                "Patient", patient.pk, f"{patient.first_name} {patient.last_name}"
            ),
            "created": instant(plan.created_at),
        }
        if visits:
            resource["period"] = {
                "start": instant(min(visit.start for visit in visits)),
                "end": instant(max(visit.end for visit in visits)),
            }
            resource["activity"] = [
                {"reference": reference("Appointment", visit.pk)} for visit in visits
            ]
        return resource
