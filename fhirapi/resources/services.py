"""HealthcareService: each visit type the clinic books (screening, dosing, integration...).

A visit type's name may say which treatment it is ("IV ketamine infusion");
the API is for the clinic's own clinical systems, so it is given as it is.
"""

from django.db.models import Q

from fhirapi.http import FhirError
from fhirapi.resources import ResourceType, id_param, register
from fhirapi.resources.codes import (
    NOTHING,
    boolean,
    clinic_location,
    coding,
    extension_url,
    minutes,
)
from fhirapi.search import SearchParam
from scheduler.models import ClinicianRole, DosingRoute, Modality, VisitKind, VisitType

DURATION = extension_url("visit-duration")
MONITORING = extension_url("monitoring-duration")
TEAM = extension_url("team-member")
ROOM_CAPABILITY = extension_url("room-capability")


def _name(value: str, modifier: str | None) -> Q:
    if modifier == "exact":
        return Q(name=value)
    return Q(name__istartswith=value) | Q(name__icontains=f" {value}")


def _active(value: str, modifier: str | None) -> Q:
    # Visit types are not retired here: every one the clinic has is offered.
    wanted = boolean(value)
    if wanted is None:
        raise FhirError(400, "invalid", f"active takes true or false, not {value!r}.")
    return Q() if wanted else NOTHING


def kind_coding(visit_type: VisitType) -> dict:
    return coding("visit-kind", visit_type.kind, VisitKind(visit_type.kind).label)


def _team_member(requirement) -> dict:
    """One place on the visit type's team: who may fill it, how many, for which span."""
    parts = [
        {"url": "role", "valueCoding": coding("clinician-role", role, ClinicianRole(role).label)}
        for role in requirement.role_list
    ]
    parts.append({"url": "count", "valueInteger": requirement.count})
    if requirement.joins_after_minutes:
        parts.append(
            {"url": "joinsAfter", "valueDuration": minutes(requirement.joins_after_minutes)}
        )
    if requirement.stays_minutes is not None:
        parts.append({"url": "stays", "valueDuration": minutes(requirement.stays_minutes)})
    parts.append({"url": "optional", "valueBoolean": requirement.optional})
    return {"url": TEAM, "extension": parts}


@register
class HealthcareServiceType(ResourceType):
    name = "HealthcareService"
    profile = "http://hl7.org/fhir/StructureDefinition/HealthcareService"
    search_params = {
        "_id": id_param,
        "name": SearchParam("string", _name, "Start of any word of the visit type's name."),
        "active": SearchParam("token", _active, "true or false."),
    }

    def queryset(self, clinic):
        return VisitType.objects.filter(clinic=clinic).order_by("pk")

    def prepare(self, rows):
        return rows.select_related("clinic", "room_capability").prefetch_related("staffing")

    def to_fhir(self, visit_type: VisitType) -> dict:
        extensions = [{"url": DURATION, "valueDuration": minutes(visit_type.duration_minutes)}]
        if visit_type.monitoring_minutes:
            extensions.append(
                {"url": MONITORING, "valueDuration": minutes(visit_type.monitoring_minutes)}
            )
        extensions += [_team_member(row) for row in visit_type.staffing.all()]
        if capability := visit_type.room_capability:
            extensions.append(
                {
                    "url": ROOM_CAPABILITY,
                    "valueCoding": coding("room-capability", capability.slug, capability.name),
                }
            )
        # What kind of visit it is, and for a dose by which route: separate concepts.
        types = [{"coding": [kind_coding(visit_type)], "text": visit_type.name}]
        if route := visit_type.dosing_route:
            types.append({"coding": [coding("dosing-route", route, DosingRoute(route).label)]})
        resource = {
            "resourceType": "HealthcareService",
            "id": str(visit_type.pk),
            "meta": self.meta(visit_type),
            "extension": extensions,
            "active": True,
            "providedBy": {"display": visit_type.clinic.name},
            "category": [{"coding": [kind_coding(visit_type)]}],
            "type": types,
            "location": [clinic_location(visit_type.clinic)],
            "name": visit_type.name,
            "characteristic": [
                {
                    "coding": [
                        coding("modality", visit_type.modality, Modality(visit_type.modality).label)
                    ]
                }
            ],
            "appointmentRequired": True,
        }
        if team := visit_type.team_text:
            resource["comment"] = f"Team: {team}."
        return resource
