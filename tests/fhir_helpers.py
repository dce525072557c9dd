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


def ids(bundle) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def search(path: str, token: str) -> dict:
    """A search that must answer 200: its Bundle, every entry validated."""
    response = fhir_get(path, token)
    assert response.status_code == 200, response.content
    bundle = body(response)
    validated(bundle)
    for entry in bundle.get("entry", []):
        validated(entry["resource"])
    return bundle


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


# SMART Backend Services, as a client does it: a key pair, a signed assertion, a token.

TOKEN_PATH = "/fhir/auth/token"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def key_pair(kid: str = "key-1", alg: str = "RS384"):
    """A new private key and its public JWK (RSA 2048 for RS384, EC P-384 for ES384)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    if alg == "RS384":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = ec.generate_private_key(ec.SECP384R1())
        public = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return private, {**public, "kid": kid, "alg": alg}


def signed_assertion(
    client_id: str,
    private_key,
    kid: str = "key-1",
    alg: str = "RS384",
    aud: str = f"http://testserver{TOKEN_PATH}",
    lifetime: timedelta = timedelta(minutes=4),
    **claims,
) -> str:
    """A client assertion as SMART asks for it; ``claims`` override or add claims."""
    import uuid

    import jwt
    from django.utils import timezone

    payload = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": int((timezone.now() + lifetime).timestamp()),
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(payload, private_key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


def token_form(assertion: str, scope: str) -> dict:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
        "scope": scope,
    }


def request_token(assertion: str, scope: str):
    """POST the token request; the response (JSON, an OAuth 2 answer)."""
    return Client().post(TOKEN_PATH, token_form(assertion, scope))
