"""Search and read of Schedule and Slot, whose rows are not one table (fhirapi/resources/schedules.py).

They answer as the generic views do (scopes, audit, searchset Bundles with
paging links), filtering lists instead of a queryset.
"""

from collections.abc import Callable
from datetime import datetime

from django.http import HttpRequest

from fhirapi import scopes
from fhirapi.http import FhirError, api_view, audit, fhir_response, require
from fhirapi.resources import REGISTRY
from fhirapi.resources.schedules import (
    MOST_SLOT_DAYS,
    Owner,
    SlotTime,
    checked_window,
    find_owner,
    owners,
    parse_slot_id,
    slot_times,
)
from fhirapi.search import date_range, parse_query, reference_id, searchset
from fhirapi.views import base_url
from scheduler.models import AuditAction, VisitType

SCHEDULE, SLOT = REGISTRY["Schedule"], REGISTRY["Slot"]


def _values(request: HttpRequest, name: str) -> list[list[str]]:
    """Each time ``name`` is given, its comma-separated alternatives."""
    return [value.split(",") for value in request.GET.getlist(name) if value]


def _holds(
    request: HttpRequest, tests: dict[str, Callable[[str, Owner], bool]]
) -> Callable[[Owner], bool]:
    """Whether an item passes every parameter given (AND), any of a parameter's values (OR)."""
    given = {name: _values(request, name) for name in tests}

    def passes(owner: Owner) -> bool:
        return all(
            any(tests[name](value, owner) for value in alternatives)
            for name, each in given.items()
            for alternatives in each
        )

    return passes


def _schedule_of_actor(value: str) -> str:
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Practitioner":
        return f"practitioner-{parts[-1]}"
    if len(parts) >= 2 and parts[-2] == "Location":
        return parts[-1]  # room-<pk>
    raise FhirError(400, "invalid", "actor takes Practitioner/<id> or Location/room-<id>.")


def _schedule_tests() -> dict[str, Callable[[str, Owner], bool]]:
    return {
        "_id": lambda value, owner: value == owner.schedule_id,
        "actor": lambda value, owner: _schedule_of_actor(value) == owner.schedule_id,
        "active": lambda value, owner: value.lower() == str(owner.active).lower(),
    }


def _visit_types(request: HttpRequest) -> list[VisitType]:
    clinic = request.api_client.clinic
    return list(VisitType.objects.filter(clinic=clinic).prefetch_related("staffing"))


@api_view
def schedule_search(request: HttpRequest):
    require(request, "Schedule", scopes.SEARCH)
    query = parse_query(request, SCHEDULE.search_params)
    passes = _holds(request, _schedule_tests())
    found = [owner for owner in owners(request.api_client.clinic) if passes(owner)]
    page = found[query.offset : query.offset + query.count]
    visit_types = _visit_types(request) if page else []
    audit(request, AuditAction.API_SEARCHED, None, f"Schedule?{request.META['QUERY_STRING']}")
    base = base_url(request)
    return fhir_response(
        searchset(
            base=base,
            type_url=f"{base}/Schedule",
            query=query,
            total=len(found),
            matches=[
                (f"{base}/Schedule/{owner.schedule_id}", SCHEDULE.to_fhir(owner, visit_types))
                for owner in page
            ],
            included=[],
        )
    )


@api_view
def schedule_read(request: HttpRequest, resource_id: str):
    require(request, "Schedule", scopes.READ)
    owner = find_owner(request.api_client.clinic, resource_id)
    audit(request, AuditAction.API_READ, None, f"Schedule/{resource_id}")
    return fhir_response(SCHEDULE.to_fhir(owner, _visit_types(request)))


def _start_window(request: HttpRequest, zone) -> tuple[datetime, datetime]:
    """[from, to) that the ``start`` parameters ask for: both ends required, a bounded span."""
    low = high = None
    for value in request.GET.getlist("start"):
        prefix, begins, ends = date_range(value, zone)
        if prefix in ("ge", "eq"):
            low = max(low or begins, begins)
        if prefix in ("gt", "sa"):
            low = max(low or ends, ends)
        if prefix in ("lt", "eb"):
            high = min(high or begins, begins)
        if prefix in ("le", "eq"):
            high = min(high or ends, ends)
        if prefix == "ne":
            raise FhirError(400, "not-supported", "Slot searches take start ranges, not start=ne.")
    if low is None or high is None:
        raise FhirError(
            400,
            "required",
            "A Slot search needs a start range both ways, e.g. "
            "start=ge2026-12-07&start=lt2026-12-14.",
            expression="start",
        )
    return checked_window(
        low, high, most_days=MOST_SLOT_DAYS, what="The start range", expression="start"
    )


@api_view
def slot_search(request: HttpRequest):
    require(request, "Slot", scopes.SEARCH)
    clinic = request.api_client.clinic
    query = parse_query(request, SLOT.search_params)
    asked = [reference_id(v, "Schedule") for each in _values(request, "schedule") for v in each]
    if not asked:
        raise FhirError(
            400,
            "required",
            "A Slot search needs a schedule, e.g. schedule=Schedule/practitioner-5.",
            expression="schedule",
        )
    low, high = _start_window(request, clinic.tz)
    statuses = {v for each in _values(request, "status") for v in each}
    found: list[SlotTime] = []
    for owner in owners(clinic, asked):
        found += [
            slot
            for slot in slot_times(clinic, owner, low, high)
            if not statuses or slot.status in statuses
        ]
    found.sort(key=lambda slot: (slot.start, slot.schedule_id, slot.end))
    page = found[query.offset : query.offset + query.count]
    audit(request, AuditAction.API_SEARCHED, None, f"Slot?{request.META['QUERY_STRING']}")
    base = base_url(request)
    return fhir_response(
        searchset(
            base=base,
            type_url=f"{base}/Slot",
            query=query,
            total=len(found),
            matches=[(f"{base}/Slot/{slot.slot_id}", slot.to_fhir()) for slot in page],
            included=[],
        )
    )


@api_view
def slot_read(request: HttpRequest, resource_id: str):
    require(request, "Slot", scopes.READ)
    clinic = request.api_client.clinic
    schedule_id, start, length = parse_slot_id(resource_id)
    owner: Owner | None = next(iter(owners(clinic, [schedule_id])), None)
    # Recomputed: the slot exists while that span is still free (or still busy) as it was.
    slot = next(
        (
            slot
            for slot in (slot_times(clinic, owner, start, start + length) if owner else [])
            if slot.slot_id == resource_id
        ),
        None,
    )
    if slot is None:
        raise FhirError(404, "not-found", f"There is no Slot/{resource_id} (any more).")
    audit(request, AuditAction.API_READ, None, f"Slot/{resource_id}")
    return fhir_response(slot.to_fhir())
