"""PlanDefinition: each protocol, its steps as actions in order with their timing.

How a step's timing reads in FHIR (docs/fhir-mapping.md has the table):

- a step timed from an earlier step (``after_step`` / ``after_each``): a
  ``relatedAction`` to that step's action, relationship ``after-end`` (the gap
  runs from the end of the anchor visit), ``offsetRange`` min..max gap in hours;
- a step timed from the plan's start: no related action; the gap is said in
  ``textEquivalent`` (FHIR has no "offset from the plan's start" element);
- how many visits, and how far apart (start to start): ``timingTiming.repeat``
  (``count``; ``period``..``periodMax`` in hours);
- the rest (after *each* earlier visit, at most N a week, a recurrence rule) is
  said in ``textEquivalent`` and, for the RRULE, an extension.
"""

from django.db.models import Prefetch, Q

from fhirapi.http import FhirError
from fhirapi.resources import ResourceType, id_param, reference, register
from fhirapi.resources.codes import canonical, extension_url, hours, system
from fhirapi.resources.services import kind_coding
from fhirapi.search import SearchParam, token
from plans.models import Anchor, Protocol, ProtocolStep

PLAN_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
MIN_HOURS_BETWEEN_DOSES = extension_url("min-hours-between-doses")
MAX_DOSES_PER_WEEK = extension_url("max-doses-per-week")
MAX_PER_WEEK = extension_url("max-visits-per-week")
RECURRENCE = extension_url("recurrence-rule")
HEALTHCARE_SERVICE = extension_url("healthcare-service")

STATUS = {True: "active", False: "retired"}


def _name(value: str, modifier: str | None) -> Q:
    if modifier == "exact":
        return Q(name=value)
    return Q(name__istartswith=value) | Q(name__icontains=f" {value}")


def _status(value: str, modifier: str | None) -> Q:
    _system, code = token(value)
    if code == "draft":
        return Q(pk__in=[])
    found = [active for active, name in STATUS.items() if name == code]
    if not found:
        raise FhirError(400, "invalid", f"status takes active, retired or draft, not {value!r}.")
    return Q(is_active=found[0])


def action_id(step: ProtocolStep) -> str:
    return f"step-{step.position}"


def _anchor_of(step: ProtocolStep, steps: list[ProtocolStep]) -> ProtocolStep | None:
    """The step this one is timed from (the one before when it names none), read from
    ``steps``, the protocol's steps in order, already loaded."""
    if step.anchor == Anchor.START:
        return None
    if step.after_step_id:
        return next(other for other in steps if other.pk == step.after_step_id)
    earlier = [other for other in steps if other.position < step.position]
    return earlier[-1] if earlier else None


def _timing_words(step: ProtocolStep, anchor: ProtocolStep | None) -> str:
    if anchor is None:
        words = f"From the plan's start: {step.gap_text}."
    elif step.anchor == Anchor.AFTER_EACH:
        words = f"{step.count} after each visit of {anchor}: {step.gap_text} after it ends."
    else:
        words = f"After the last visit of {anchor} ends: {step.gap_text}."
    if step.min_spacing_hours or step.max_spacing_hours is not None:
        words += f" Visits {step.spacing_text} apart."
    if step.max_per_week:
        words += f" At most {step.max_per_week} in any 7 days."
    if step.recurrence:
        words += f" Recurring: {step.recurrence} (within {step.recurrence_tolerance_days} days)."
    return words


def action(step: ProtocolStep, steps: list[ProtocolStep]) -> dict:
    anchor = _anchor_of(step, steps)
    visit_type = step.visit_type
    extensions = [
        {
            "url": HEALTHCARE_SERVICE,
            "valueReference": reference("HealthcareService", visit_type.pk, visit_type.name),
        }
    ]
    if step.max_per_week:
        extensions.append({"url": MAX_PER_WEEK, "valueInteger": step.max_per_week})
    if step.recurrence:
        extensions.append({"url": RECURRENCE, "valueString": step.recurrence})
    repeat: dict = {}
    if not step.recurrence:
        repeat["count"] = step.count
    if step.min_spacing_hours or step.max_spacing_hours is not None:
        repeat["period"] = step.min_spacing_hours
        if step.max_spacing_hours is not None:
            repeat["periodMax"] = step.max_spacing_hours
        repeat["periodUnit"] = "h"
    found = {
        "extension": extensions,
        "id": action_id(step),
        "title": str(step),
        "textEquivalent": _timing_words(step, anchor),
        "code": [{"coding": [kind_coding(visit_type)]}],
    }
    if anchor is not None:
        gap = {"low": hours(step.min_gap_hours)}
        if step.max_gap_hours is not None:
            gap["high"] = hours(step.max_gap_hours)
        found["relatedAction"] = [
            {"actionId": action_id(anchor), "relationship": "after-end", "offsetRange": gap}
        ]
    if repeat:
        found["timingTiming"] = {"repeat": repeat}
    return found


@register
class PlanDefinitionType(ResourceType):
    name = "PlanDefinition"
    profile = "http://hl7.org/fhir/StructureDefinition/PlanDefinition"
    search_params = {
        "_id": id_param,
        "name": SearchParam("string", _name, "Start of any word of the protocol's name."),
        "title": SearchParam("string", _name, "As name."),
        "status": SearchParam("token", _status, "active or retired."),
    }

    def queryset(self, clinic):
        return Protocol.objects.filter(clinic=clinic).order_by("pk")

    def prepare(self, rows):
        steps = ProtocolStep.objects.select_related("visit_type")
        return rows.prefetch_related(Prefetch("steps", queryset=steps.order_by("position")))

    def to_fhir(self, protocol: Protocol) -> dict:
        steps = list(protocol.steps.all())
        resource = {
            "resourceType": "PlanDefinition",
            "id": str(protocol.pk),
            "meta": self.meta(protocol),
            "extension": [
                {
                    "url": MIN_HOURS_BETWEEN_DOSES,
                    "valueQuantity": hours(protocol.min_hours_between_doses),
                },
                {"url": MAX_DOSES_PER_WEEK, "valueInteger": protocol.max_doses_per_week},
            ],
            "url": canonical("PlanDefinition", protocol.pk),
            "identifier": [{"system": system("protocol"), "value": protocol.slug}],
            "title": protocol.name,
            "type": {
                "coding": [
                    {
                        "system": PLAN_TYPE,
                        "code": "clinical-protocol",
                        "display": "Clinical Protocol",
                    }
                ]
            },
            "status": STATUS[protocol.is_active],
            "usage": (
                f"Doses at least {protocol.min_hours_between_doses} h apart and at most "
                f"{protocol.max_doses_per_week} in any 7 days."
            ),
            "action": [action(step, steps) for step in steps],
        }
        if protocol.description:
            resource["description"] = protocol.description
        return resource
