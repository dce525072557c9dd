"""Code systems, extensions and small shapes the resource modules share.

Our own codes (roles, visit kinds, capabilities...) live under URNs of this
installation, like Patient's record number: they are not published anywhere,
so they make no claim beyond "this is how this server names it". Where FHIR
or HL7 has an honest equivalent the coding carries it too (docs/fhir-mapping.md).
"""

from collections.abc import Iterable
from itertools import groupby
from typing import Any

from django.conf import settings
from django.db.models import Q

from fhirapi.resources import REGISTRY, ResourceType, reference
from fhirapi.search import token
from scheduler.models import Clinic, WeeklyHours

OURS = "urn:kap-scheduler"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"

NOTHING = Q(pk__in=[])  # the condition no row meets

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # WeeklyHours.weekday 0..6


def system(name: str) -> str:
    """Our code system for ``name`` (e.g. "clinician-role")."""
    return f"{OURS}:{name}"


def extension_url(name: str) -> str:
    """The URL of an extension this server defines (each documented in docs/fhir-mapping.md)."""
    return f"{OURS}:extension:{name}"


def coding(system_name: str, code: str, display: str) -> dict[str, str]:
    return {"system": system(system_name), "code": code, "display": display}


def hours(value: int) -> dict[str, Any]:
    """A UCUM duration in hours (Quantity and Duration share this shape)."""
    return {"value": value, "unit": "h", "system": UCUM, "code": "h"}


def minutes(value: int) -> dict[str, Any]:
    return {"value": value, "unit": "min", "system": UCUM, "code": "min"}


def canonical(resource_type: str, resource_id: Any) -> str:
    """The absolute URL of one of our resources, for canonical elements (``url``,
    ``instantiatesCanonical``), which must not be relative."""
    return f"{settings.SITE_URL}/fhir/{resource_type}/{resource_id}"


def clinic_location(clinic: Clinic) -> dict[str, str]:
    return reference("Location", f"clinic-{clinic.pk}", clinic.name)


def weekly_hours(
    rows: Iterable[WeeklyHours], opens_as: str, closes_as: str
) -> list[dict[str, Any]]:
    """Opening or working hours as FHIR's hoursOfOperation (``openingTime``...) or
    availableTime (``availableStartTime``...): one entry per span of time, listing
    the days it holds on."""
    spans = sorted(rows, key=lambda row: (row.opens, row.closes, row.weekday))
    found = []
    for (opens, closes), days in groupby(spans, key=lambda row: (row.opens, row.closes)):
        found.append(
            {
                "daysOfWeek": [_DAYS[row.weekday] for row in days],
                opens_as: opens.strftime("%H:%M:%S"),
                closes_as: closes.strftime("%H:%M:%S"),
            }
        )
    return found


def boolean(value: str) -> bool | None:
    """A FHIR token search value for a boolean (None when it is neither)."""
    return {"true": True, "false": False}.get(value.lower())


def our_code(value: str, system_name: str) -> str | None:
    """The code of a token search value in our ``system_name`` (or given without a system)."""
    given_system, code = token(value)
    if given_system not in (None, "", system(system_name)):
        return None
    return code


def their_patients(rows) -> list[tuple[ResourceType, Any]]:
    """``_include`` of the patients ``rows`` (loaded with ``patient__clinic``) are about."""
    patients = {row.patient_id: row.patient for row in rows}
    return [(REGISTRY["Patient"], patient) for patient in patients.values()]
