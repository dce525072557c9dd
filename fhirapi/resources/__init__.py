"""The resource types the API serves, each mapped from our models.

A ``ResourceType`` says how to find its rows for a client's clinic, how one
row reads as FHIR JSON, and which search parameters and ``_include``s it
takes; the generic read and search views (fhirapi/views.py) and the
CapabilityStatement (fhirapi/capability.py) are built from this registry, so
the statement lists exactly what is served. ``prepare`` loads whatever
``to_fhir`` reads, in a fixed number of queries for any number of rows.
"""

from collections.abc import Callable, Iterable
from functools import reduce
from importlib import import_module
from operator import or_
from typing import Any

from django.db.models import Model, Q, QuerySet

from fhirapi.http import FhirError, instant
from fhirapi.search import SearchParam
from scheduler.models import Clinic, is_row_id

# The modules that register resource types, in the order the statement lists them.
MODULES = [
    "fhirapi.resources.patients",
    "fhirapi.resources.staff",
    "fhirapi.resources.places",
    "fhirapi.resources.services",
    "fhirapi.resources.protocols",
    "fhirapi.resources.care_plans",
    "fhirapi.resources.questionnaires",
    "fhirapi.resources.appointments",
    "fhirapi.resources.schedules",
]

REGISTRY: dict[str, "ResourceType"] = {}


class ResourceType:
    name: str = ""
    profile: str = ""  # the FHIR base definition, for the CapabilityStatement
    search_params: dict[str, SearchParam] = {}
    # "_include" names (e.g. "Appointment:patient") -> rows to add for the matches.
    includes: dict[str, Callable[[list[Model]], Iterable[tuple["ResourceType", Model]]]] = {}
    operations: list[dict[str, str]] = []  # {"name": "everything", "definition": url}

    def queryset(self, clinic: Clinic) -> QuerySet:
        """Every row of this type the clinic's clients may see."""
        raise NotImplementedError

    def prepare(self, rows: QuerySet) -> QuerySet:
        """``rows`` with whatever ``to_fhir`` reads loaded in bulk."""
        return rows

    def to_fhir(self, row: Model) -> dict[str, Any]:
        raise NotImplementedError

    def resource_id(self, row: Model) -> str:
        return str(row.pk)

    def lookup(self, resource_id: str) -> Q:
        """The condition finding the row a resource id names (404 if it cannot name one)."""
        pk = row_id(resource_id)
        if pk is None:
            raise FhirError(404, "not-found", f"There is no {self.name}/{resource_id}.")
        return Q(pk=pk)

    def rows_named(self, clinic: Clinic, resource_ids: Iterable[str]) -> list[Model]:
        """The rows these resource ids name, loaded for ``to_fhir`` in one go; ids
        that name nothing of ours (another server's references) are passed over."""
        conditions = []
        for resource_id in sorted(set(resource_ids)):
            try:
                conditions.append(self.lookup(resource_id))
            except FhirError:
                continue
        if not conditions:
            return []
        return list(self.prepare(self.queryset(clinic).filter(reduce(or_, conditions))))

    def patient_of(self, row: Model) -> int | None:
        """The patient a row is about, for the audit trail (None: nobody's)."""
        return None

    def read(self, clinic: Clinic, resource_id: str) -> Model:
        row = self.prepare(self.queryset(clinic).filter(self.lookup(resource_id))).first()
        if row is None:
            raise FhirError(404, "not-found", f"There is no {self.name}/{resource_id}.")
        return row

    def meta(self, row: Model, last_updated=None) -> dict[str, str]:
        moment = last_updated or getattr(row, "updated_at", None)
        return {"lastUpdated": instant(moment)} if moment else {}


def row_id(value: str) -> int | None:
    """The database id ``value`` names, or None ("²" and "1e9" name none)."""
    return int(value) if is_row_id(value) else None


def _by_id(value: str, modifier: str | None) -> Q:
    pk = row_id(value)
    return Q(pk__in=[]) if pk is None else Q(pk=pk)


# ``_id`` for types whose ids are their primary keys.
id_param = SearchParam("token", _by_id, "The resource's id.")


def register(cls: type[ResourceType]) -> type[ResourceType]:
    REGISTRY[cls.name] = cls()
    return cls


def load_all() -> None:
    for module in MODULES:
        import_module(module)


def reference(resource_type: str, resource_id: Any, display: str | None = None) -> dict:
    ref = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        ref["display"] = display
    return ref
