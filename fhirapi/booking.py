"""``Appointment/$find`` and ``Appointment/$book``: free times for a visit type, and booking one.

``$find`` looks for times as the desk's booking page does: free for a lead,
the rest of the visit type's team, a suitable room and the patient
(``scheduler.availability``), within the booking horizon, and allowed by the
registered booking rules (screening cleared, dose spacing, the Spravato REMS:
``scheduler.booking.rules_for_times``). Each time comes back as a proposed
Appointment. When none fits, the Bundle is empty but for an informational
OperationOutcome saying why (which place on the team had no one free, or
what the rules said), with status 200: finding nothing is an answer, not an
error.

``$book`` takes one of those Appointments back (as it is, or inside
Parameters) and books it through ``scheduler.booking.book``, which checks
everything again in one transaction, so the reminders and invites a desk
booking plans follow as well. Refusals: 400 for what cannot be read, 409
when the time was taken meanwhile (another visit holds someone of the team,
the room or the patient), 422 for a rule of the protocol or the clinic
(screening, dose spacing, REMS, hours). docs/fhir-scheduling.md has
examples.
"""

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from fhirapi import scopes
from fhirapi.http import FhirError, api_view, audit, body_json, fhir_response, require
from fhirapi.resources import REGISTRY
from fhirapi.resources.appointments import VISIT_TYPE_SYSTEM, appointment
from fhirapi.resources.schedules import checked_window
from fhirapi.search import date_range, reference_id, token
from fhirapi.views import base_url
from scheduler import booking
from scheduler.availability import Availability, Conflict, Slot
from scheduler.booking import BookingError, SlotTaken
from scheduler.models import (
    AuditAction,
    Clinic,
    Clinician,
    Patient,
    Room,
    Visit,
    VisitParticipant,
    VisitStatus,
    VisitType,
    is_row_id,
    lead_of,
)

MOST_FIND_DAYS = 14
STEP = timedelta(minutes=30)  # as the desk offers times
DEFAULT_PROPOSALS = 10
MOST_PROPOSALS = 50
REASONS_SHOWN = 3
PROPOSAL_NAMESPACE = uuid.UUID("6f1c1c2e-5a43-4f55-9e43-0d3c0a6f0b1d")


# -- reading the inputs ------------------------------------------------------


def _parameter_value(parameter: dict) -> str | None:
    """One Parameters.parameter's value as a search value would spell it."""
    for key, value in parameter.items():
        if not key.startswith("value"):
            continue
        if key in ("valueReference", "valueCoding") and not isinstance(value, dict):
            return None
        if key == "valueReference":
            return str(value.get("reference") or "")
        if key == "valueCoding":
            return f"{value.get('system', '')}|{value.get('code', '')}"
        return str(value)
    return None


def _inputs(request: HttpRequest) -> dict[str, list[str]]:
    """The operation's inputs: the query string's (GET), or a Parameters body's (POST)."""
    if request.method == "GET":
        return {name: request.GET.getlist(name) for name in request.GET}
    data = body_json(request)
    if data.get("resourceType") != "Parameters":
        raise FhirError(400, "structure", "Send the inputs as a Parameters resource.")
    found: dict[str, list[str]] = {}
    for parameter in _dicts(data.get("parameter")):
        value = _parameter_value(parameter)
        if value is not None:
            found.setdefault(str(parameter.get("name")), []).append(value)
    return found


def _one(inputs: dict[str, list[str]], name: str) -> str | None:
    values = [v for v in inputs.get(name, []) if v]
    if len(values) > 1:
        raise FhirError(400, "invalid", f"Give {name} once.", expression=name)
    return values[0] if values else None


def _required(inputs: dict[str, list[str]], name: str, example: str) -> str:
    value = _one(inputs, name)
    if value is None:
        raise FhirError(400, "required", f"$find needs {name} (e.g. {example}).", expression=name)
    return value


def _row_id(value: str, resource_type: str, what: str) -> int:
    found = reference_id(value, resource_type)
    if not is_row_id(found):
        raise FhirError(400, "invalid", f"{value!r} is not a {what} reference.")
    return int(found)


def _visit_type(inputs, clinic: Clinic) -> VisitType:
    service = _one(inputs, "service-type")
    healthcare = _one(inputs, "healthcare-service")
    if healthcare:
        pk = _row_id(healthcare, "HealthcareService", "HealthcareService")
    elif service:
        system, code = token(service)
        if system not in (None, VISIT_TYPE_SYSTEM) or not is_row_id(code):
            raise FhirError(
                400,
                "invalid",
                f"service-type is {VISIT_TYPE_SYSTEM}|<visit type id>, not {service!r}.",
            )
        pk = int(code)
    else:
        raise FhirError(
            400,
            "required",
            "$find needs the visit type: service-type or healthcare-service=HealthcareService/<id>.",
        )
    return _in_clinic(
        VisitType.objects.prefetch_related("staffing"), pk, clinic, "HealthcareService"
    )


def _in_clinic(rows, pk: int, clinic: Clinic, resource_type: str):
    found = rows.filter(pk=pk, clinic=clinic).first()
    if found is None:
        raise FhirError(400, "invalid", f"{resource_type}/{pk} is not one of this clinic's.")
    return found


def _window(inputs, clinic: Clinic) -> tuple[datetime, datetime]:
    """[start, end): both given; a date alone is the clinic's day (``end``: its midnight)."""
    _, low, _ = date_range(_required(inputs, "start", "2026-12-07"), clinic.tz)
    _, high, _ = date_range(_required(inputs, "end", "2026-12-14"), clinic.tz)
    return checked_window(
        low, high, most_days=MOST_FIND_DAYS, what="The $find window", expression="end"
    )


def _count(inputs) -> int:
    raw = _one(inputs, "_count")
    if raw is None:
        return DEFAULT_PROPOSALS
    if not is_row_id(raw) or int(raw) == 0:
        raise FhirError(400, "invalid", f"_count must be a whole number above 0, not {raw!r}.")
    return min(int(raw), MOST_PROPOSALS)


# -- $find -------------------------------------------------------------------


def _proposal(patient: Patient, visit_type: VisitType, slot: Slot) -> Visit:
    """The visit booking ``slot`` would make, not saved (what the rules judge and $find shows)."""
    return Visit(
        patient=patient,
        visit_type=visit_type,
        clinician=slot.clinician,
        room=slot.room,
        start=slot.start,
        end=slot.end,
        status=VisitStatus.BOOKED,
    )


def _proposed(visit: Visit, slot: Slot) -> dict:
    visit.status = VisitStatus.PROPOSED
    team = [
        VisitParticipant.for_seat(visit, *lead_of(visit.visit_type, visit.clinician), 0),
        *(
            VisitParticipant.for_seat(visit, member.clinician, member.seat, position)
            for position, member in enumerate(slot.staff, start=1)
        ),
    ]
    return appointment(visit, team=team)


def _no_one_free(
    availability: Availability,
    visit_type: VisitType,
    leads: list[Clinician],
    patient: Patient,
    days: list,
    bookable: Callable[[datetime], bool],
) -> list[str]:
    """Why no time was free, most frequent first: which place on the team, the room or
    the patient stood in the way at the bookable times the search tried."""
    reasons: Counter[str] = Counter()
    rooms = availability.rooms_for(visit_type)
    lead_seat = visit_type.lead_seat
    if not rooms:
        return [f"No room at the clinic can hold a {visit_type}."]
    for seat in visit_type.seats:
        if not seat.optional and not availability.qualified(seat):
            return [f"No active clinician at the clinic can be the {seat.label} of a {visit_type}."]
    for day in days:
        if availability.closed_all_day(day):
            reasons["The clinic is closed."] += 1
            continue
        starts = sorted(
            {s for lead in leads for s in availability.candidate_starts(lead, day, STEP)}
        )
        for start in starts:
            if not bookable(start):
                continue
            end = start + visit_type.duration
            free_leads = [
                lead
                for lead in leads
                if availability.person_free(lead, *lead_seat.span(start, end))
            ]
            if not free_leads:
                reasons[f"No {lead_seat.label} is free to lead."] += 1
                continue
            placed = [
                (lead, availability.first_room(visit_type, lead, rooms, patient, start, end))
                for lead in free_leads
            ]
            placed = [(lead, room) for lead, room in placed if room is not False]
            if not placed:
                reasons["No suitable room is free (or the patient is busy then)."] += 1
                continue
            lead, _room = placed[0]
            _, missing = availability.staff_for(visit_type, lead, start, end)
            if missing is not None:
                reasons[f"No {missing.label} is free."] += 1
    if not reasons:
        reasons[
            "Nothing in this window can be booked: it is past, beyond the booking horizon, "
            "or outside the clinic's and its clinicians' hours."
        ] += 1
    return [reason for reason, _ in reasons.most_common(REASONS_SHOWN)]


def find_times(
    patient: Patient,
    visit_type: VisitType,
    low: datetime,
    high: datetime,
    count: int,
    practitioner: Clinician | None = None,
) -> tuple[list[tuple[Visit, Slot]], list[str]]:
    """Up to ``count`` bookable times in [low, high), earliest first, and when there are
    none, why. A fixed number of queries (plus what rules without ``for_times`` ask)."""
    clinic, tz, now = patient.clinic, patient.clinic.tz, timezone.now()
    first_day, last_day = (
        low.astimezone(tz).date(),
        (high - timedelta(seconds=1)).astimezone(tz).date(),
    )
    availability = Availability.for_days(clinic, first_day, last_day, patients=[patient])
    lead_seat = visit_type.lead_seat
    if lead_seat is None:
        return [], [f"{visit_type} has no team set up."]
    leads = availability.qualified(lead_seat)
    prefer = []
    if practitioner is not None:
        if lead_seat.role_of(practitioner):
            leads = [c for c in leads if c.pk == practitioner.pk]
        else:
            prefer = [practitioner]
    horizon = now + timedelta(days=settings.BOOKING_HORIZON_DAYS)

    def bookable(start: datetime) -> bool:
        return low <= start < high and now < start <= horizon

    free = [
        slot
        for slot in availability.free_slots(
            visit_type,
            first_day,
            last_day,
            clinicians=leads,
            patient=patient,
            step=STEP,
            prefer_staff=prefer,
        )
        if bookable(slot.start)
        and (not prefer or practitioner in [m.clinician for m in slot.staff])
    ]
    if not free:
        days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
        return [], _no_one_free(availability, visit_type, leads, patient, days, bookable)
    rules = booking.rules_for_times(
        _proposal(patient, visit_type, free[0]), free[0].start, free[-1].start
    )
    found, refusals = [], Counter()
    for slot in free:
        visit = _proposal(patient, visit_type, slot)
        problems = rules(visit)
        if problems:
            refusals.update(problems)
            continue
        found.append((visit, slot))
        if len(found) == count:
            break
    return found, [reason for reason, _ in refusals.most_common(REASONS_SHOWN)]


def _proposal_url(visit: Visit, slot: Slot) -> str:
    """A fullUrl for a proposal that names the same time the same way each time it is found."""
    key = "|".join(
        str(part)
        for part in (
            visit.patient_id,
            visit.visit_type_id,
            visit.start.isoformat(),
            visit.clinician_id,
            visit.room_id,
            *(member.clinician.pk for member in slot.staff),
        )
    )
    return f"urn:uuid:{uuid.uuid5(PROPOSAL_NAMESPACE, key)}"


@api_view(methods=("GET", "POST"))
def find(request: HttpRequest):
    require(request, "Appointment", scopes.SEARCH)
    clinic = request.api_client.clinic
    inputs = _inputs(request)
    low, high = _window(inputs, clinic)
    visit_type = _visit_type(inputs, clinic)
    patient_ref = _required(inputs, "patient", "Patient/12")
    patient = _in_clinic(
        Patient.objects.select_related("clinic"),
        _row_id(patient_ref, "Patient", "Patient"),
        clinic,
        "Patient",
    )
    practitioner = None
    if wanted := _one(inputs, "practitioner"):
        practitioner = _in_clinic(
            Clinician.objects.all(),
            _row_id(wanted, "Practitioner", "Practitioner"),
            clinic,
            "Practitioner",
        )
    found, reasons = find_times(patient, visit_type, low, high, _count(inputs), practitioner)
    audit(request, AuditAction.API_SEARCHED, patient, f"Appointment/$find {visit_type}")
    entries = [
        {
            "fullUrl": _proposal_url(visit, slot),
            "resource": _proposed(visit, slot),
            "search": {"mode": "match"},
        }
        for visit, slot in found
    ]
    if not found:
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "information",
                            "code": "not-found",
                            "diagnostics": f"No time fits a {visit_type} for {patient} "
                            f"from {low.astimezone(clinic.tz):%Y-%m-%d %H:%M} to "
                            f"{high.astimezone(clinic.tz):%Y-%m-%d %H:%M}: {reason}",
                        }
                        for reason in reasons or ["nothing is free."]
                    ],
                },
                "search": {"mode": "outcome"},
            }
        )
    return fhir_response(
        {"resourceType": "Bundle", "type": "searchset", "total": len(found), "entry": entries}
    )


# -- $book -------------------------------------------------------------------


def _appointment_in(data: dict) -> dict:
    if data.get("resourceType") == "Appointment":
        return data
    if data.get("resourceType") == "Parameters":
        for parameter in _dicts(data.get("parameter")):
            resource = parameter.get("resource")
            if isinstance(resource, dict) and resource.get("resourceType") == "Appointment":
                return resource
    raise FhirError(
        400, "structure", "Send the Appointment $find proposed, as is or inside Parameters."
    )


def _dicts(value) -> list[dict]:
    """The JSON objects in ``value`` if it is a list (a hostile body may hold anything)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _instant(value, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise FhirError(400, "invalid", f"{name} must be an instant with a zone.", expression=name)
    return moment


def _actors(resource: dict) -> list[tuple[str, str, dict]]:
    """(resource type, id, participant) for each participant with an actor reference."""
    found = []
    for participant in _dicts(resource.get("participant")):
        actor = participant.get("actor")
        ref = actor.get("reference") if isinstance(actor, dict) else None
        kind, _, pk = str(ref or "").rstrip("/").rpartition("/")
        found.append((kind.rpartition("/")[2], pk, participant))
    return found


def _is_lead(participant: dict) -> bool:
    return any(
        coding.get("code") == "PPRF"
        for concept in _dicts(participant.get("type"))
        for coding in _dicts(concept.get("coding"))
    )


def _booking_of(resource: dict, clinic: Clinic) -> dict:
    """What ``booking.book`` takes, read from a proposed Appointment; 400 for what is missing."""
    start = _instant(resource.get("start"), "start")
    visit_type_id = next(
        (
            coding.get("code")
            for concept in _dicts(resource.get("serviceType"))
            for coding in _dicts(concept.get("coding"))
            if coding.get("system") == VISIT_TYPE_SYSTEM
        ),
        None,
    )
    if not is_row_id(str(visit_type_id or "")):
        raise FhirError(
            400,
            "required",
            f"The Appointment names no visit type ({VISIT_TYPE_SYSTEM}).",
            expression="Appointment.serviceType",
        )
    visit_type = _in_clinic(
        VisitType.objects.prefetch_related("staffing"),
        int(visit_type_id),
        clinic,
        "HealthcareService",
    )
    actors = _actors(resource)
    patients = [pk for kind, pk, _ in actors if kind == "Patient"]
    if len(patients) != 1 or not is_row_id(patients[0]):
        raise FhirError(400, "required", "The Appointment needs one Patient participant.")
    patient = _in_clinic(
        Patient.objects.select_related("clinic"), int(patients[0]), clinic, "Patient"
    )
    practitioners = [(pk, p) for kind, pk, p in actors if kind == "Practitioner"]
    if not practitioners or not all(is_row_id(pk) for pk, _ in practitioners):
        raise FhirError(400, "required", "The Appointment needs its Practitioner participants.")
    lead_at = next((i for i, (_, p) in enumerate(practitioners) if _is_lead(p)), 0)
    people = {
        c.pk: c
        for c in Clinician.objects.filter(
            clinic=clinic, pk__in=[int(pk) for pk, _ in practitioners]
        )
    }
    if len(people) != len({int(pk) for pk, _ in practitioners}):
        raise FhirError(400, "invalid", "A Practitioner participant is not one of this clinic's.")
    ordered = [people[int(pk)] for pk, _ in practitioners]
    lead = ordered.pop(lead_at)
    rooms = [pk for kind, pk, _ in actors if kind == "Location"]
    room = None
    if rooms:
        name, _, pk = rooms[0].partition("-")
        if name != "room" or not is_row_id(pk):
            raise FhirError(400, "invalid", f"Location/{rooms[0]} is not a room.")
        room = _in_clinic(Room.objects.all(), int(pk), clinic, "Location")
    if "end" in resource and _instant(resource["end"], "end") != start + visit_type.duration:
        raise FhirError(
            400,
            "invalid",
            f"A {visit_type} lasts {visit_type.duration_minutes} minutes; end does not match start.",
            expression="end",
        )
    return {
        "patient": patient,
        "visit_type": visit_type,
        "clinician": lead,
        "start": start,
        "room": room,
        "staff": ordered,
    }


@api_view(methods=("POST",))
def book(request: HttpRequest):
    require(request, "Appointment", scopes.CREATE)
    clinic = request.api_client.clinic
    wanted = _booking_of(_appointment_in(body_json(request)), clinic)
    try:
        with transaction.atomic():
            visit = booking.book(**wanted)
            audit(request, AuditAction.API_BOOKED, wanted["patient"], f"Appointment/{visit.pk}")
    except BookingError as refused:
        # Taken meanwhile (another visit holds someone, the room or the patient then) is
        # a conflict even when a rule objects as well: the time is gone either way.
        taken = isinstance(refused, SlotTaken) or any(
            isinstance(problem, Conflict) for problem in refused.problems
        )
        if taken:
            raise FhirError(409, "conflict", " ".join(refused.problems)) from None
        raise FhirError(422, "business-rule", " ".join(refused.problems)) from None
    kind = REGISTRY["Appointment"]
    stored = kind.read(clinic, str(visit.pk))
    response = fhir_response(kind.to_fhir(stored), status=201)
    response["Location"] = f"{base_url(request)}/Appointment/{visit.pk}"
    return response
