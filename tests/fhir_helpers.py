"""Calling the FHIR API as a client would: a client with scopes, its token, JSON back.

``validated`` parses a resource with fhir.resources (R4B models, pydantic):
an independent reading of the specification, not ours.
"""

import json
from datetime import timedelta
from importlib import import_module

from django.test import Client

from fhirapi.models import ApiClient, ApiToken

FHIR_JSON = "application/fhir+json"


def api_client(clinic, scopes: str, name: str | None = None) -> ApiClient:
    return ApiClient.objects.create(
        name=name or f"EHR {ApiClient.objects.count() + 1}", clinic=clinic, scopes=scopes
    )


def bearer(clinic, scopes: str, name: str | None = None) -> str:
    """A live token for a new client of ``clinic`` holding ``scopes``."""
    client = api_client(clinic, scopes, name)
    _token, secret = ApiToken.issue(client, scopes, timedelta(minutes=5))
    return secret


def fhir_get(path: str, token: str | None = None, **headers):
    if token:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    response = Client().get(path, HTTP_ACCEPT=FHIR_JSON, **headers)
    assert response["Content-Type"].startswith(FHIR_JSON), response["Content-Type"]
    return response


def body(response) -> dict:
    return json.loads(response.content)


def validated(resource: dict):
    """The resource parsed by fhir.resources' R4B model of its type (raises if invalid)."""
    kind = resource["resourceType"]
    module = import_module(f"fhir.resources.R4B.{kind.lower()}")
    return getattr(module, kind).model_validate(resource)


def every_page(path: str, token: str) -> list[dict]:
    """Every entry of a search, following ``next`` links to the end."""
    entries = []
    url = path
    for _page in range(1000):
        bundle = body(fhir_get(url, token))
        validated(bundle)
        entries += bundle.get("entry", [])
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            return entries
        url = following[0].removeprefix("http://testserver")
    raise AssertionError("the search never ended")


def course_protocol(clinic, doses: int, slug: str = "fhir-course"):
    """A protocol on a SmallClinic: a screening, ``doses`` IV infusions at least a day
    apart (at most three a week), an integration 1-3 days after each."""
    from plans.models import Anchor, Protocol, ProtocolStep

    protocol = Protocol.objects.create(
        clinic=clinic.clinic, name=f"IV course of {doses}", slug=slug, description="Synthetic."
    )
    screening = ProtocolStep.objects.create(
        protocol=protocol, position=1, visit_type=clinic.screening, anchor=Anchor.START
    )
    infusions = ProtocolStep.objects.create(
        protocol=protocol,
        position=2,
        name="Infusions",
        visit_type=clinic.iv,
        count=doses,
        after_step=screening,
        min_gap_hours=24,
        max_gap_hours=14 * 24,
        min_spacing_hours=24,
        max_spacing_hours=96,
        max_per_week=3,
    )
    ProtocolStep.objects.create(
        protocol=protocol,
        position=3,
        name="Integration",
        visit_type=clinic.integration,
        anchor=Anchor.AFTER_EACH,
        after_step=infusions,
        min_gap_hours=24,
        max_gap_hours=72,
    )
    return protocol


def planned_course(clinic, patient, doses: int, start, *, confirmed: bool = True):
    """``patient``'s care plan of ``course_protocol(doses)`` from ``start``, generated and
    (by default) confirmed through the project's own generator and booking."""
    from plans.care_plans import confirm, save_proposal
    from plans.generator import generate

    protocol = course_protocol(clinic, doses, slug=f"fhir-course-{patient.pk}")
    plan = save_proposal(generate(patient, protocol, start))
    return confirm(plan) if confirmed else plan
