"""Location: the clinic itself ("clinic-<id>") and each of its rooms ("room-<id>").

One FHIR type over two tables: ``Locations`` answers the few queryset calls
the generic views and includes make (filter, count, slices, first, iterating)
by asking both. A
client sees only its own clinic, so the clinic part is at most one row and
comes first; rooms follow by id. Search conditions are written once against
the names in ``_FIELDS`` and translated for each table.
"""

from django.db.models import Q

from fhirapi.http import FhirError
from fhirapi.resources import ResourceType, register, row_id
from fhirapi.resources.codes import (
    NOTHING,
    TIMEZONE_EXTENSION,
    clinic_location,
    coding,
    our_code,
    weekly_hours,
)
from fhirapi.search import SearchParam, reference_id, token
from scheduler.models import Clinic, Room

PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
SITE = {"system": PHYSICAL_TYPE, "code": "si", "display": "Site"}
ROOM = {"system": PHYSICAL_TYPE, "code": "ro", "display": "Room"}

# The names search conditions use -> the field on each table (None: no such rows there).
_FIELDS = {
    "pk__in": {"clinic": "pk__in", "room": "pk__in"},  # NOTHING: no row of either
    "name": {"clinic": "name", "room": "name"},
    "name__istartswith": {"clinic": "name__istartswith", "room": "name__istartswith"},
    "name__icontains": {"clinic": "name__icontains", "room": "name__icontains"},
    "clinic_pk": {"clinic": "pk", "room": None},
    "room_pk": {"clinic": None, "room": "pk"},
    "part_of_clinic": {"clinic": None, "room": "clinic_id"},
    "physical_type": {"clinic": "physical_type", "room": "physical_type"},
    "capability": {"clinic": None, "room": "capabilities__slug"},
}
_PHYSICAL = {"clinic": "si", "room": "ro"}


def _for_table(condition: Q, table: str) -> Q:
    """``condition`` (in ``_FIELDS`` names) as a condition on ``table``'s rows."""
    translated = Q()
    translated.connector, translated.negated = condition.connector, condition.negated
    for child in condition.children:
        if isinstance(child, Q):
            translated.children.append(_for_table(child, table))
            continue
        key, value = child
        if key == "physical_type":
            translated.children.append(Q() if value == _PHYSICAL[table] else NOTHING)
        elif (field := _FIELDS[key][table]) is None:
            translated.children.append(NOTHING)
        else:
            translated.children.append(Q(**{field: value}))
    return translated


class Locations:
    """The clinic and its rooms as one sequence of rows, clinic first."""

    def __init__(self, clinic: Clinic, condition: Q | None = None, prepared: bool = False):
        self.clinic = clinic
        self.condition = condition or Q()
        self.prepared = prepared

    def filter(self, condition: Q) -> "Locations":
        return Locations(self.clinic, self.condition & condition, self.prepared)

    def _clinics(self):
        return Clinic.objects.filter(pk=self.clinic.pk).filter(_for_table(self.condition, "clinic"))

    def _rooms(self):
        rooms = (
            Room.objects.filter(clinic=self.clinic)
            .filter(_for_table(self.condition, "room"))
            .distinct()  # a capability search joins the capabilities
            .order_by("pk")
        )
        if self.prepared:
            rooms = rooms.select_related("clinic").prefetch_related("capabilities")
        return rooms

    def count(self) -> int:
        return self._clinics().count() + self._rooms().count()

    def __getitem__(self, window: slice) -> list:
        clinics = self._clinics()
        if self.prepared:
            clinics = clinics.prefetch_related("opening_hours")
        clinics = list(clinics)
        start, stop = window.start or 0, window.stop
        head = clinics[start:stop]
        room_start = max(start - len(clinics), 0)
        room_stop = None if stop is None else max(stop - len(clinics), 0)
        if room_stop is not None and room_stop <= room_start:
            return head
        return head + list(self._rooms()[room_start:room_stop])

    def __iter__(self):
        return iter(self[0:None])

    def first(self):
        found = self[0:1]
        return found[0] if found else None


def _name(value: str, modifier: str | None) -> Q:
    if modifier == "exact":
        return Q(name=value)
    if modifier == "contains":
        return Q(name__icontains=value)
    return Q(name__istartswith=value)


def _partof(value: str, modifier: str | None) -> Q:
    kind, _, pk = reference_id(value, "Location").partition("-")
    return Q(part_of_clinic=int(pk)) if kind == "clinic" and row_id(pk) is not None else NOTHING


def _type(value: str, modifier: str | None) -> Q:
    given_system, code = token(value)
    if given_system == PHYSICAL_TYPE or (given_system is None and code in _PHYSICAL.values()):
        return Q(physical_type=code)
    capability = our_code(value, "room-capability")
    return NOTHING if capability is None else Q(capability=capability)


def _physical_type(value: str, modifier: str | None) -> Q:
    given_system, code = token(value)
    return Q(physical_type=code) if given_system in (None, PHYSICAL_TYPE) else NOTHING


def location_id(resource_id: str) -> Q:
    """The condition for a Location id ("clinic-3", "room-12"); 404 for any other id."""
    kind, _, pk = resource_id.partition("-")
    if kind in ("clinic", "room") and row_id(pk) is not None:
        return Q(**{f"{kind}_pk": int(pk)})
    raise FhirError(404, "not-found", f"There is no Location/{resource_id}.")


def _by_id(value: str, modifier: str | None) -> Q:
    try:
        return location_id(value)
    except FhirError:
        return NOTHING


@register
class LocationType(ResourceType):
    name = "Location"
    profile = "http://hl7.org/fhir/StructureDefinition/Location"
    search_params = {
        "_id": SearchParam("token", _by_id, "clinic-<id> or room-<id>."),
        "name": SearchParam("string", _name, "Start of the clinic's or room's name."),
        "partof": SearchParam("reference", _partof, "Location/clinic-<id>: the clinic's rooms."),
        "type": SearchParam(
            "token", _type, "si or ro (the physical type), or a room capability's code."
        ),
        "physical-type": SearchParam("token", _physical_type, "si (the clinic) or ro (rooms)."),
    }

    def queryset(self, clinic):
        return Locations(clinic)

    def prepare(self, rows: Locations) -> Locations:
        return Locations(rows.clinic, rows.condition, prepared=True)

    def lookup(self, resource_id):
        return location_id(resource_id)

    def resource_id(self, row) -> str:
        return f"{'clinic' if isinstance(row, Clinic) else 'room'}-{row.pk}"

    def to_fhir(self, row) -> dict:
        if isinstance(row, Clinic):
            return self.clinic_to_fhir(row)
        return self.room_to_fhir(row)

    def clinic_to_fhir(self, clinic: Clinic) -> dict:
        resource = {
            "resourceType": "Location",
            "id": f"clinic-{clinic.pk}",
            "meta": self.meta(clinic),
            "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": clinic.time_zone}],
            "status": "active",
            "name": clinic.name,
            "mode": "instance",
            "physicalType": {"coding": [SITE]},
        }
        if clinic.phone:
            resource["telecom"] = [{"system": "phone", "value": clinic.phone, "use": "work"}]
        if clinic.address:
            resource["address"] = {"text": clinic.address}
            if clinic.subdivision:
                resource["address"]["state"] = clinic.subdivision
            if clinic.country:
                resource["address"]["country"] = clinic.country
        if hours := weekly_hours(clinic.opening_hours.all(), "openingTime", "closingTime"):
            resource["hoursOfOperation"] = hours
        return resource

    def room_to_fhir(self, room: Room) -> dict:
        resource = {
            "resourceType": "Location",
            "id": f"room-{room.pk}",
            "meta": self.meta(room),
            "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": room.clinic.time_zone}],
            "status": "active",
            "name": room.name,
            "mode": "instance",
            "physicalType": {"coding": [ROOM]},
            "partOf": clinic_location(room.clinic),
        }
        capabilities = sorted(room.capabilities.all(), key=lambda c: c.slug)
        if capabilities:
            # What the room offers (an infusion chair, vital-signs monitoring) is what
            # a visit type asks of its room: the function the room can serve.
            resource["type"] = [
                {"coding": [coding("room-capability", c.slug, c.name)], "text": c.name}
                for c in capabilities
            ]
        return resource
