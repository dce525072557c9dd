"""Appointment: one per visit, with every participant in their role (docs/fhir-scheduling.md).

The visit's status becomes FHIR's (``STATUS``); the patient, each clinician
on the team (the lead first, a partial place with its ``period``) and the room
are participants; a telehealth visit has no room and says so in
``serviceCategory``. Nothing beyond the visit type's name is said about the
treatment: no comment, no description.
"""

from collections.abc import Iterable
from typing import Any

from django.db.models import Model, Q

from fhirapi.http import FhirError, instant
from fhirapi.resources import REGISTRY, ResourceType, id_param, reference, register
from fhirapi.resources.codes import TIMEZONE_EXTENSION, system
from fhirapi.search import SearchParam, date_q, reference_id, token
from scheduler.models import (
    Clinic,
    Modality,
    Visit,
    VisitParticipant,
    VisitStatus,
    is_row_id,
)

# Our own code systems: a visit type by its id, its kind, how it is held, a clinician's role.
VISIT_TYPE_SYSTEM = system("visit-type")
VISIT_KIND_SYSTEM = system("visit-kind")
MODALITY_SYSTEM = system("modality")
ROLE_SYSTEM = system("clinician-role")
PARTICIPATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# $find and $book as the Argonaut Scheduling guide defines them (ours keep the protocol's rules too).
ARGONAUT = "http://fhir.org/guides/argonaut-scheduling/OperationDefinition"

# A visit's status as FHIR's AppointmentStatus. Booked and confirmed are both
# "booked": FHIR tells them apart by the patient's participant status
# (tentative until the patient confirms, then accepted).
STATUS = {
    VisitStatus.PROPOSED: "proposed",
    VisitStatus.BOOKED: "booked",
    VisitStatus.CONFIRMED: "booked",
    VisitStatus.CHECKED_IN: "arrived",
    VisitStatus.COMPLETED: "fulfilled",
    VisitStatus.CANCELLED: "cancelled",
    VisitStatus.NO_SHOW: "noshow",
}
# The other way, for ``status`` searches; FHIR codes we never use find nothing.
VISIT_STATUSES = {
    code: [status for status, fhir in STATUS.items() if fhir == code] for code in STATUS.values()
}
# The patient's ParticipationStatus: whether they have said they will come.
PATIENT_ACCEPTED = {VisitStatus.CONFIRMED, VisitStatus.CHECKED_IN, VisitStatus.COMPLETED}


def _nothing() -> Q:
    return Q(pk__in=[])


def _id_of(value: str, resource_type: str) -> int | None:
    found = reference_id(value, resource_type)
    return int(found) if is_row_id(found) else None


def _patient(value: str, modifier: str | None) -> Q:
    pk = _id_of(value, "Patient")
    return Q(patient_id=pk) if pk is not None else _nothing()


def _practitioner(value: str, modifier: str | None) -> Q:
    pk = _id_of(value, "Practitioner")
    if pk is None:
        return _nothing()
    # A subquery, not a join: two practitioners asked for at once must not repeat a visit.
    return Q(pk__in=VisitParticipant.objects.filter(clinician_id=pk).values("visit_id"))


def _location(value: str, modifier: str | None) -> Q:
    kind, _, pk = reference_id(value, "Location").partition("-")
    if not is_row_id(pk):
        return _nothing()
    if kind == "room":
        return Q(room_id=int(pk))
    if kind == "clinic":
        return Q(visit_type__clinic_id=int(pk), visit_type__modality=Modality.IN_PERSON)
    return _nothing()


_ACTORS = {"Patient": _patient, "Practitioner": _practitioner, "Location": _location}


def _actor(value: str, modifier: str | None) -> Q:
    kind = modifier or (value.rstrip("/").split("/")[-2] if "/" in value else None)
    if kind not in _ACTORS:
        raise FhirError(
            400,
            "invalid",
            "actor takes a typed reference: Patient/<id>, Practitioner/<id> or Location/<id>.",
        )
    return _ACTORS[kind](value, None)


def _date(value: str, modifier: str | None) -> Q:
    # Dates without a time are the clinic's days: the installation's zone.
    return date_q("start", value)


def _last_updated(value: str, modifier: str | None) -> Q:
    return date_q("updated_at", value)


def _status(value: str, modifier: str | None) -> Q:
    return Q(status__in=VISIT_STATUSES.get(value, []))


def _service_type(value: str, modifier: str | None) -> Q:
    system, code = token(value)
    if system not in (None, VISIT_TYPE_SYSTEM) or not is_row_id(code):
        return _nothing()
    return Q(visit_type_id=int(code))


def _rows_of(
    type_name: str, ids: Iterable[str], clinic: Clinic
) -> list[tuple[ResourceType, Model]]:
    kind = REGISTRY[type_name]
    return [(kind, row) for row in kind.rows_named(clinic, ids)]


def _clinic_of(visits: list[Visit]) -> Clinic | None:
    return visits[0].clinic if visits else None


def include_patients(visits: list[Visit]):
    return _rows_of("Patient", (str(v.patient_id) for v in visits), _clinic_of(visits))


def include_practitioners(visits: list[Visit]):
    ids = (str(p.clinician_id) for v in visits for p in v.participants.all())
    return _rows_of("Practitioner", ids, _clinic_of(visits))


def include_locations(visits: list[Visit]):
    ids = (f"room-{v.room_id}" for v in visits if v.room_id)
    return _rows_of("Location", ids, _clinic_of(visits))


def include_actors(visits: list[Visit]):
    return [*include_patients(visits), *include_practitioners(visits), *include_locations(visits)]


def _coding(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


@register
class AppointmentType(ResourceType):
    name = "Appointment"
    profile = "http://hl7.org/fhir/StructureDefinition/Appointment"
    search_params = {
        "_id": id_param,
        "_lastUpdated": SearchParam("date", _last_updated, "When the visit last changed."),
        "patient": SearchParam("reference", _patient, "Patient/<id>."),
        "practitioner": SearchParam(
            "reference", _practitioner, "Practitioner/<id>: any place on the team."
        ),
        "location": SearchParam(
            "reference", _location, "Location/room-<id>, or Location/clinic-<id> (in person)."
        ),
        "actor": SearchParam("reference", _actor, "Patient/, Practitioner/ or Location/<id>."),
        "date": SearchParam(
            "date", _date, "The start, with prefixes (ge, lt, ...); dates are the clinic's days."
        ),
        "status": SearchParam("token", _status, "FHIR's AppointmentStatus codes."),
        "service-type": SearchParam(
            "token", _service_type, f"The visit type: {VISIT_TYPE_SYSTEM}|<id>."
        ),
    }
    includes = {
        "Appointment:patient": include_patients,
        "Appointment:practitioner": include_practitioners,
        "Appointment:location": include_locations,
        "Appointment:actor": include_actors,
    }
    operations = [
        {
            "name": "find",
            "definition": f"{ARGONAUT}/appointment-find",
        },
        {
            "name": "book",
            "definition": f"{ARGONAUT}/appointment-book",
        },
    ]

    def queryset(self, clinic):
        # The visits held at the client's clinic (a patient's home may be another).
        return Visit.objects.at_clinic(clinic).order_by("start", "pk")

    def prepare(self, rows):
        return rows.select_related(
            "patient__clinic", "visit_type__clinic", "room"
        ).prefetch_related("participants__clinician", "visit_type__staffing")

    def patient_of(self, row):
        return row.patient_id

    def meta(self, row, last_updated=None):
        # The iCalendar SEQUENCE: a move or a cancellation raises it, as a new version.
        return {**super().meta(row, last_updated), "versionId": str(row.sequence)}

    def to_fhir(self, visit: Visit) -> dict[str, Any]:
        return appointment(visit, self.meta(visit))


def appointment(
    visit: Visit, meta: dict | None = None, team: list[VisitParticipant] | None = None
) -> dict[str, Any]:
    """``visit`` as an Appointment; an unsaved one (as ``$find`` proposes it) has no id
    and comes with its ``team`` (default: the visit's participants as stored)."""
    visit_type, clinic = visit.visit_type, visit.clinic
    resource: dict[str, Any] = {"resourceType": "Appointment"}
    if visit.pk:
        resource["id"] = str(visit.pk)
    if meta:
        resource["meta"] = meta
    resource["extension"] = [{"url": TIMEZONE_EXTENSION, "valueCode": clinic.time_zone}]
    resource["status"] = STATUS[visit.status]
    if visit.status == VisitStatus.CANCELLED and visit.cancellation_reason:
        resource["cancelationReason"] = {"text": visit.cancellation_reason}
    resource["serviceCategory"] = [
        _coding(MODALITY_SYSTEM, visit_type.modality, visit_type.get_modality_display())
    ]
    resource["serviceType"] = [_coding(VISIT_TYPE_SYSTEM, str(visit_type.pk), visit_type.name)]
    resource["appointmentType"] = _coding(
        VISIT_KIND_SYSTEM, visit_type.kind, visit_type.get_kind_display()
    )
    resource["supportingInformation"] = [
        reference("HealthcareService", visit_type.pk, visit_type.name)
    ]
    resource["start"] = instant(visit.start)
    resource["end"] = instant(visit.end)
    resource["minutesDuration"] = int((visit.end - visit.start).total_seconds() // 60)
    if visit.created_at:
        resource["created"] = instant(visit.created_at)
    resource["participant"] = participants(visit, team)
    return resource


def participants(visit: Visit, team: list[VisitParticipant] | None = None) -> list[dict]:
    """The patient, the team (lead first, in their roles and spans) and the room."""
    patient = visit.patient
    if visit.status == VisitStatus.PROPOSED:
        patient_status = "needs-action"
    else:
        patient_status = "accepted" if visit.status in PATIENT_ACCEPTED else "tentative"
    found = [
        {
            "type": [_coding(PARTICIPATION_SYSTEM, "SBJ", "subject")],
            "actor": reference("Patient", patient.pk, f"{patient.first_name} {patient.last_name}"),
            "required": "required",
            "status": patient_status,
        }
    ]
    seats = visit.visit_type.seats
    for part in team if team is not None else visit.staff:
        lead = part.is_lead
        entry = {
            "type": [
                _coding(
                    PARTICIPATION_SYSTEM,
                    "PPRF" if lead else "SPRF",
                    "primary performer" if lead else "secondary performer",
                ),
                _coding(ROLE_SYSTEM, part.role, part.get_role_display()),
            ],
            "actor": reference("Practitioner", part.clinician_id, part.clinician.display_name),
            "required": (
                "optional"
                if part.position < len(seats) and seats[part.position].optional
                else "required"
            ),
            "status": "needs-action" if visit.status == VisitStatus.PROPOSED else "accepted",
        }
        if part.is_partial:
            entry["period"] = {"start": instant(part.start), "end": instant(part.end)}
        found.append(entry)
    if visit.room_id:
        found.append(
            {
                "type": [_coding(PARTICIPATION_SYSTEM, "LOC", "location")],
                "actor": reference("Location", f"room-{visit.room_id}", visit.room.name),
                "required": "required",
                "status": "needs-action" if visit.status == VisitStatus.PROPOSED else "accepted",
            }
        )
    return found
