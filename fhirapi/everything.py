"""``GET /fhir/Patient/<id>/$everything``: the patient and everything of theirs served here.

As FHIR's operation says (hl7.org/fhir/R4/patient-operation-everything.html):
a searchset Bundle with the Patient, the resources in their compartment that
this server serves (Appointments, CarePlans, QuestionnaireResponses,
Observations), and the resources those refer to (Practitioners, their roles,
Locations, HealthcareServices, the PlanDefinitions the plans instantiate).
Types the token may not read are left out silently, as the operation allows.

The bundle is returned whole, without paging: a course of care is tens of
visits, not thousands. It costs a fixed number of queries whatever the
course's length: one query (plus each type's ``prepare`` prefetches) per type.
"""

from collections.abc import Iterator

from django.db.models import Q
from django.http import HttpRequest

from fhirapi import scopes
from fhirapi.http import api_view, audit, fhir_response, require
from fhirapi.resources import REGISTRY, ResourceType
from fhirapi.search import Query, searchset
from fhirapi.views import base_url
from scheduler.models import AuditAction

# The types whose rows belong to one patient (each has a ``patient`` field);
# Appointment is served by its own module, and joins in when it is registered.
COMPARTMENT = ["Appointment", "CarePlan", "QuestionnaireResponse", "Observation"]
# The types those may refer to, added as "include" entries.
REFERRED = ["Practitioner", "PractitionerRole", "Location", "HealthcareService", "PlanDefinition"]


def _referred_ids(resource, found: dict[str, set[str]]) -> None:
    """Collect "Type/id" of the REFERRED types that ``resource`` points at, at any depth
    (references, and the canonical URLs of PlanDefinitions)."""
    if isinstance(resource, dict):
        for key, value in resource.items():
            if key in ("reference", "instantiatesCanonical"):
                for target in value if isinstance(value, list) else [value]:
                    parts = target.rstrip("/").split("/") if isinstance(target, str) else []
                    if len(parts) >= 2 and parts[-2] in found:
                        found[parts[-2]].add(parts[-1])
            else:
                _referred_ids(value, found)
    elif isinstance(resource, list):
        for value in resource:
            _referred_ids(value, found)


def _readable(request, names: list[str]) -> Iterator[ResourceType]:
    for name in names:
        kind = REGISTRY.get(name)
        if kind is not None and scopes.allows(request.api_token.scopes, name, scopes.READ):
            yield kind


@api_view
def patient_everything(request: HttpRequest, resource_id: str):
    patients = REGISTRY["Patient"]
    require(request, "Patient", scopes.READ)
    clinic = request.api_client.clinic
    patient = patients.read(clinic, resource_id)
    base = base_url(request)

    matches = [(patients, patient)]
    for kind in _readable(request, COMPARTMENT):
        rows = kind.queryset(clinic).filter(Q(patient_id=patient.pk))
        matches += [(kind, row) for row in kind.prepare(rows)[:]]
    resources = [(kind, row, kind.to_fhir(row)) for kind, row in matches]

    wanted: dict[str, set[str]] = {kind.name: set() for kind in _readable(request, REFERRED)}
    _referred_ids([resource for _, _, resource in resources], wanted)
    included = []
    for name, ids in wanted.items():
        kind = REGISTRY[name]
        included += [(kind, row, kind.to_fhir(row)) for row in kind.rows_named(clinic, ids)]

    audit(request, AuditAction.API_READ, patient.pk, f"Patient/{patient.pk}/$everything")

    def entries(found):
        return [
            (f"{base}/{kind.name}/{kind.resource_id(row)}", resource)
            for kind, row, resource in found
        ]

    everything = entries(resources)
    return fhir_response(
        searchset(
            base=base,
            type_url=f"{base}/Patient/{patient.pk}/$everything",
            query=Query(Q(), [], len(everything), 0, []),
            total=len(everything),
            matches=everything,
            included=entries(included),
        )
    )
