"""The generic interactions: capabilities, read and search of any registered type.

Operations (``$everything``, ``$find``, ``$book``) live beside the types
they belong to; the token endpoint in fhirapi/tokens.py.
"""

from django.http import HttpRequest

from fhirapi import scopes
from fhirapi.capability import capability_statement
from fhirapi.http import FhirError, api_view, audit, audit_each, fhir_response, require
from fhirapi.resources import REGISTRY, ResourceType
from fhirapi.search import parse_query, searchset
from scheduler.models import AuditAction


def base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/fhir").rstrip("/")


def resource_type(name: str) -> ResourceType:
    found = REGISTRY.get(name)
    if found is None:
        raise FhirError(404, "not-supported", f"This server does not serve {name} resources.")
    return found


@api_view(public=True)
def metadata(request: HttpRequest):
    return fhir_response(capability_statement(base_url(request)))


@api_view
def read(request: HttpRequest, type_name: str, resource_id: str):
    kind = resource_type(type_name)
    require(request, kind.name, scopes.READ)
    row = kind.read(request.api_client.clinic, resource_id)
    audit(request, AuditAction.API_READ, kind.patient_of(row), f"{kind.name}/{resource_id}")
    return fhir_response(kind.to_fhir(row))


@api_view
def search(request: HttpRequest, type_name: str):
    kind = resource_type(type_name)
    require(request, kind.name, scopes.SEARCH)
    query = parse_query(request, kind.search_params)
    for name in query.includes:
        if name not in kind.includes:
            raise FhirError(400, "not-supported", f"_include={name} is not supported here.")
    rows = kind.queryset(request.api_client.clinic).filter(query.condition)
    total = rows.count()
    page = list(kind.prepare(rows)[query.offset : query.offset + query.count])
    base = base_url(request)
    included: dict[str, dict] = {}
    for name in query.includes:
        for other, row in kind.includes[name](page):
            require(request, other.name, scopes.READ)
            url = f"{base}/{other.name}/{other.resource_id(row)}"
            included.setdefault(url, other.to_fhir(row))
    patients = {kind.patient_of(row) for row in page} - {None}
    detail = f"{kind.name}?{request.META.get('QUERY_STRING', '')}"
    audit_each(request, AuditAction.API_SEARCHED, sorted(patients), detail)
    bundle = searchset(
        base=base,
        type_url=f"{base}/{kind.name}",
        query=query,
        total=total,
        matches=[
            (f"{base}/{kind.name}/{kind.resource_id(row)}", kind.to_fhir(row)) for row in page
        ],
        included=list(included.items()),
    )
    return fhir_response(bundle)
