"""Patient: the people the clinic cares for."""

from datetime import date

from django.core.exceptions import ValidationError
from django.db.models import Q

from fhirapi.http import FhirError
from fhirapi.resources import ResourceType, id_param, register
from fhirapi.resources.codes import system
from fhirapi.search import DATE_PREFIXES, SearchParam, token
from scheduler.models import Patient, is_row_id
from scheduler.phones import normalize_mobile

# Our own identifier system for a patient's record number in this installation.
RECORD_NUMBER = system("patient")


def _name(value: str, modifier: str | None) -> Q:
    if modifier == "exact":
        return Q(first_name=value) | Q(last_name=value)
    # FHIR string search: case-insensitive, matching the start of any name part.
    return Q(first_name__istartswith=value) | Q(last_name__istartswith=value)


def _family(value: str, modifier: str | None) -> Q:
    return Q(last_name=value) if modifier == "exact" else Q(last_name__istartswith=value)


def _given(value: str, modifier: str | None) -> Q:
    return Q(first_name=value) if modifier == "exact" else Q(first_name__istartswith=value)


def _identifier(value: str, modifier: str | None) -> Q:
    system, code = token(value)
    if system not in (None, RECORD_NUMBER) or not is_row_id(code):
        return Q(pk__in=[])
    return Q(pk=int(code))


def _phone(value: str, modifier: str | None = None) -> Q:
    # Numbers are stored in E.164; a client may send them as people write them.
    try:
        return Q(mobile=normalize_mobile(value))
    except ValidationError:
        return Q(pk__in=[])


def _email(value: str, modifier: str | None = None) -> Q:
    return Q(email__iexact=value)


def _telecom(value: str, modifier: str | None) -> Q:
    system, code = token(value)
    if system == "phone":
        return _phone(code)
    if system == "email":
        return _email(code)
    if system is None:
        return _phone(code) | _email(code)
    return Q(pk__in=[])


_DATE_LOOKUPS = {
    "eq": "",
    "lt": "__lt",
    "eb": "__lt",
    "le": "__lte",
    "gt": "__gt",
    "sa": "__gt",
    "ge": "__gte",
}


def _birthdate(value: str, modifier: str | None) -> Q:
    prefix = value[:2] if value[:2] in DATE_PREFIXES else "eq"
    text = value[2:] if value[:2] in DATE_PREFIXES else value
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise FhirError(
            400, "invalid", f"birthdate takes a whole date (YYYY-MM-DD), not {value!r}."
        ) from None
    if prefix == "ne":
        return ~Q(date_of_birth=day)
    return Q(**{f"date_of_birth{_DATE_LOOKUPS[prefix]}": day})


@register
class PatientType(ResourceType):
    name = "Patient"
    profile = "http://hl7.org/fhir/StructureDefinition/Patient"
    search_params = {
        "_id": id_param,
        "name": SearchParam("string", _name, "Start of the given or family name."),
        "family": SearchParam("string", _family),
        "given": SearchParam("string", _given),
        "identifier": SearchParam("token", _identifier, f"The record number ({RECORD_NUMBER})."),
        "telecom": SearchParam("token", _telecom, "phone|+15555550123 or email|name@example.org."),
        "phone": SearchParam("token", _phone),
        "email": SearchParam("token", _email),
        "birthdate": SearchParam("date", _birthdate),
    }
    operations = [
        {
            "name": "everything",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        }
    ]

    def queryset(self, clinic):
        # Its own patients and those booked at it (a patient of another location).
        return Patient.objects.seen_at(clinic).order_by("pk")

    def patient_of(self, row):
        return row.pk

    def to_fhir(self, patient: Patient) -> dict:
        telecom = []
        if patient.mobile:
            telecom.append({"system": "phone", "value": patient.mobile, "use": "mobile"})
        if patient.email:
            telecom.append({"system": "email", "value": patient.email})
        resource = {
            "resourceType": "Patient",
            "id": str(patient.pk),
            "meta": self.meta(patient),
            "identifier": [{"system": RECORD_NUMBER, "value": str(patient.pk)}],
            "active": True,
            "name": [{"family": patient.last_name, "given": [patient.first_name]}],
            "birthDate": patient.date_of_birth.isoformat(),
            "managingOrganization": {"display": patient.clinic.name},
        }
        if telecom:
            resource["telecom"] = telecom
        return resource

    def prepare(self, rows):
        return rows.select_related("clinic")
