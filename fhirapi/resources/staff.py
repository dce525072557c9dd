"""Practitioner and PractitionerRole: the clinic's clinicians and the roles they hold.

Both have the clinician's id: one role resource per clinician, listing every
role they hold (prescriber, therapist, nurse) at the clinic.
"""

from django.db.models import Prefetch, Q
from django.utils import timezone

from fhirapi.http import FhirError, instant
from fhirapi.resources import REGISTRY, ResourceType, id_param, reference, register, row_id
from fhirapi.resources.codes import (
    NOTHING,
    boolean,
    clinic_location,
    coding,
    our_code,
    system,
    weekly_hours,
)
from fhirapi.search import SearchParam, reference_id, token
from scheduler.models import Clinician, ClinicianRole, TimeOff

# Our identifier system for a clinician in this installation (as Patient's record number).
CLINICIAN_ID = system("clinician")

# HL7's practitioner-role codes (terminology.hl7.org/CodeSystem/practitioner-role)
# name only broad professions; "nurse" is the one of ours it names honestly. A
# prescriber may be a physician or a nurse practitioner, and "therapist" has no
# code there, so those carry our own coding only.
HL7_ROLE = "http://terminology.hl7.org/CodeSystem/practitioner-role"
HL7_ROLES = {ClinicianRole.NURSE: {"system": HL7_ROLE, "code": "nurse", "display": "Nurse"}}


def _name(value: str, modifier: str | None) -> Q:
    if modifier == "exact":
        return Q(display_name=value)
    # FHIR string search: the start of any part of the name ("alv" finds "Dr. Alvarez").
    return Q(display_name__istartswith=value) | Q(display_name__icontains=f" {value}")


def _active(value: str, modifier: str | None) -> Q:
    wanted = boolean(value)
    if wanted is None:
        raise FhirError(400, "invalid", f"active takes true or false, not {value!r}.")
    return Q(is_active=wanted)


def _by_identifier(value: str, modifier: str | None) -> Q:
    given_system, code = token(value)
    if given_system not in (None, CLINICIAN_ID) or row_id(code) is None:
        return NOTHING
    return Q(pk=int(code))


def _practitioner(value: str, modifier: str | None) -> Q:
    pk = row_id(reference_id(value, "Practitioner"))
    return NOTHING if pk is None else Q(pk=pk)


def _role(value: str, modifier: str | None) -> Q:
    given_system, code = token(value)
    if given_system == HL7_ROLE:
        code = next((role for role, hl7 in HL7_ROLES.items() if hl7["code"] == code), None)
    else:
        code = our_code(value, "clinician-role")
    if code not in ClinicianRole.values:
        return NOTHING
    return Q(**{f"is_{code}": True})


def _location(value: str, modifier: str | None) -> Q:
    found = reference_id(value, "Location")
    kind, _, pk = found.partition("-")
    if kind != "clinic" or row_id(pk) is None:
        return NOTHING
    return Q(clinic_id=int(pk))


def telecom(clinician: Clinician) -> list[dict]:
    found = []
    if clinician.mobile:
        found.append({"system": "phone", "value": clinician.mobile, "use": "mobile"})
    if clinician.user.email:
        found.append({"system": "email", "value": clinician.user.email, "use": "work"})
    return found


class _Clinicians(ResourceType):
    def queryset(self, clinic):
        return Clinician.objects.filter(clinic=clinic).order_by("pk")

    def prepare(self, rows):
        return rows.select_related("clinic", "user")


@register
class PractitionerType(_Clinicians):
    name = "Practitioner"
    profile = "http://hl7.org/fhir/StructureDefinition/Practitioner"
    search_params = {
        "_id": id_param,
        "name": SearchParam("string", _name, "Start of any part of the name as patients see it."),
        "identifier": SearchParam("token", _by_identifier, f"The clinician's id ({CLINICIAN_ID})."),
        "active": SearchParam("token", _active, "true or false."),
    }

    def to_fhir(self, clinician: Clinician) -> dict:
        resource = {
            "resourceType": "Practitioner",
            "id": str(clinician.pk),
            "meta": self.meta(clinician),
            "identifier": [{"system": CLINICIAN_ID, "value": str(clinician.pk)}],
            "active": clinician.is_active,
            # The name as patients see it ("Dr. Rivera"): we keep no family/given split.
            "name": [{"text": clinician.display_name}],
        }
        if found := telecom(clinician):
            resource["telecom"] = found
        return resource


def role_codes(clinician: Clinician) -> list[dict]:
    codes = []
    for role in clinician.roles:
        codings = [coding("clinician-role", role, ClinicianRole(role).label)]
        if role in HL7_ROLES:
            codings.append(HL7_ROLES[role])
        codes.append({"coding": codings, "text": ClinicianRole(role).label})
    return codes


@register
class PractitionerRoleType(_Clinicians):
    name = "PractitionerRole"
    profile = "http://hl7.org/fhir/StructureDefinition/PractitionerRole"
    search_params = {
        "_id": id_param,
        "practitioner": SearchParam("reference", _practitioner, "Practitioner/<id>."),
        "role": SearchParam(
            "token", _role, f"{system('clinician-role')}|prescriber, therapist or nurse."
        ),
        "location": SearchParam("reference", _location, "Location/clinic-<id>."),
        "active": SearchParam("token", _active, "true or false."),
    }

    # One role resource per clinician: its practitioner is the same row.
    includes = {
        "PractitionerRole:practitioner": lambda rows: [
            (REGISTRY["Practitioner"], row) for row in rows
        ]
    }

    def prepare(self, rows):
        # Time off still ahead is what a client can plan around; the past is not shown.
        ahead = TimeOff.objects.filter(end__gt=timezone.now()).order_by("start")
        return (
            super()
            .prepare(rows)
            .prefetch_related("working_hours", Prefetch("time_off", queryset=ahead))
        )

    def to_fhir(self, clinician: Clinician) -> dict:
        resource = {
            "resourceType": "PractitionerRole",
            "id": str(clinician.pk),
            "meta": self.meta(clinician),
            "active": clinician.is_active,
            "practitioner": reference("Practitioner", clinician.pk, clinician.display_name),
            "organization": {"display": clinician.clinic.name},
            "code": role_codes(clinician),
            "location": [clinic_location(clinician.clinic)],
        }
        if found := telecom(clinician):
            resource["telecom"] = found
        if available := weekly_hours(
            clinician.working_hours.all(), "availableStartTime", "availableEndTime"
        ):
            resource["availableTime"] = available
        if away := clinician.time_off.all():
            resource["notAvailable"] = [
                {
                    "description": off.reason or "Time off",
                    "during": {"start": instant(off.start), "end": instant(off.end)},
                }
                for off in away
            ]
        return resource
