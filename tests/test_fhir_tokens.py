"""SMART Backend Services: a signed client assertion is exchanged for a short-lived
bearer token, and every assertion that is not exactly right is refused."""

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.test import Client
from django.utils import timezone

from fhirapi.models import ApiClient, ApiToken, UsedAssertion
from scheduler.models import AuditAction, AuditEvent
from tests.conftest import ClinicBuilder
from tests.fhir_helpers import (
    TOKEN_PATH,
    fhir_get,
    key_pair,
    request_token,
    signed_assertion,
    token_form,
    validated,
)

pytestmark = pytest.mark.django_db

HELD = "system/Patient.read system/Appointment.read"


@pytest.fixture
def clinic():
    return ClinicBuilder().clinic


@pytest.fixture
def rsa_key():
    return key_pair("rsa-1", "RS384")


@pytest.fixture
def client(clinic, rsa_key):
    _private, public = rsa_key
    return ApiClient.objects.create(
        name="Charting system", clinic=clinic, scopes=HELD, jwks={"keys": [public]}
    )


def answer(response) -> dict:
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    return json.loads(response.content)


def refused(response, status: int, error: str) -> str:
    data = answer(response)
    assert (response.status_code, data["error"]) == (status, error), data
    assert ApiToken.objects.count() == 0
    return data["error_description"]


def test_a_signed_assertion_gets_a_five_minute_token_for_the_scopes_asked(client, rsa_key):
    private, _public = rsa_key
    response = request_token(signed_assertion(client.client_id, private, "rsa-1"), HELD)
    data = answer(response)
    assert response.status_code == 200
    assert (data["token_type"], data["expires_in"], data["scope"]) == ("bearer", 300, HELD)
    token = ApiToken.objects.get()
    assert token.digest != data["access_token"]  # only its hash is kept
    assert token.expires_at - token.issued_at == timedelta(minutes=5)
    event = AuditEvent.objects.get(action=AuditAction.API_TOKEN_ISSUED)
    assert event.actor_label == "FHIR client Charting system"
    # The token opens the API.
    assert fhir_get("/fhir/Patient", data["access_token"]).status_code == 200


def test_an_es384_key_works_as_well(clinic):
    private, public = key_pair("ec-1", "ES384")
    client = ApiClient.objects.create(
        name="Lab", clinic=clinic, scopes=HELD, jwks={"keys": [public]}
    )
    response = request_token(signed_assertion(client.client_id, private, "ec-1", "ES384"), HELD)
    assert answer(response)["token_type"] == "bearer"


def test_only_the_scopes_the_client_holds_are_granted(client, rsa_key):
    private, _public = rsa_key
    asked = "system/Patient.rs system/Appointment.write system/*.read"
    data = answer(request_token(signed_assertion(client.client_id, private, "rsa-1"), asked))
    assert data["scope"] == "system/Patient.rs"
    assert ApiToken.objects.get().scopes == "system/Patient.rs"


def test_no_scope_held_is_invalid_scope(client, rsa_key):
    private, _public = rsa_key
    response = request_token(
        signed_assertion(client.client_id, private, "rsa-1"), "system/Appointment.write"
    )
    assert "holds" in refused(response, 400, "invalid_scope")


def test_the_token_expires_and_is_then_refused(client, rsa_key):
    private, _public = rsa_key
    secret = answer(request_token(signed_assertion(client.client_id, private, "rsa-1"), HELD))[
        "access_token"
    ]
    with time_machine.travel(timezone.now() + timedelta(minutes=5, seconds=1)):
        response = fhir_get("/fhir/Patient", secret)
    assert response.status_code == 401
    assert validated(json.loads(response.content)).issue[0].code == "login"


def test_revoking_the_client_kills_its_tokens_and_its_assertions(client, rsa_key):
    private, _public = rsa_key
    secret = answer(request_token(signed_assertion(client.client_id, private, "rsa-1"), HELD))[
        "access_token"
    ]
    client.revoked_at = timezone.now()
    client.save()
    assert fhir_get("/fhir/Patient", secret).status_code == 401
    ApiToken.objects.all().delete()
    response = request_token(signed_assertion(client.client_id, private, "rsa-1"), HELD)
    assert "revoked" in refused(response, 401, "invalid_client")


def test_an_assertion_for_another_audience_is_refused(client, rsa_key):
    private, _public = rsa_key
    assertion = signed_assertion(
        client.client_id, private, "rsa-1", aud="https://elsewhere.example/token"
    )
    assert "aud" in refused(request_token(assertion, HELD), 401, "invalid_client")


def test_an_expired_assertion_is_refused(client, rsa_key):
    private, _public = rsa_key
    assertion = signed_assertion(client.client_id, private, "rsa-1", lifetime=timedelta(minutes=-2))
    assert "expired" in refused(request_token(assertion, HELD), 401, "invalid_client")


def test_an_assertion_living_longer_than_five_minutes_is_refused(client, rsa_key):
    private, _public = rsa_key
    assertion = signed_assertion(client.client_id, private, "rsa-1", lifetime=timedelta(hours=1))
    assert "five minutes" in refused(request_token(assertion, HELD), 401, "invalid_client")


def test_an_exp_past_any_calendar_is_refused_not_an_error(client, rsa_key):
    private, _public = rsa_key
    assertion = signed_assertion(client.client_id, private, "rsa-1", exp=10**15)
    assert "five minutes" in refused(request_token(assertion, HELD), 401, "invalid_client")


def test_an_assertion_is_taken_once(client, rsa_key):
    private, _public = rsa_key
    assertion = signed_assertion(client.client_id, private, "rsa-1")
    assert request_token(assertion, HELD).status_code == 200
    again = request_token(assertion, HELD)
    assert json.loads(again.content)["error"] == "invalid_client"
    assert "used already" in json.loads(again.content)["error_description"]
    assert ApiToken.objects.count() == 1


def test_a_jti_is_forgotten_only_after_its_assertion_expired(client, rsa_key):
    private, _public = rsa_key
    first = signed_assertion(client.client_id, private, "rsa-1", jti="same")
    assert request_token(first, HELD).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(minutes=10)):
        later = signed_assertion(client.client_id, private, "rsa-1", jti="same")
        assert request_token(later, HELD).status_code == 200
    assert UsedAssertion.objects.filter(jti="same").count() == 1


def test_an_unknown_kid_is_refused(client, rsa_key):
    private, _public = rsa_key
    assertion = signed_assertion(client.client_id, private, "rsa-2")
    assert "kid" in refused(request_token(assertion, HELD), 401, "invalid_client")


def test_a_signature_by_another_key_is_refused(client):
    stranger, _public = key_pair("rsa-1", "RS384")
    assertion = signed_assertion(client.client_id, stranger, "rsa-1")
    assert "Signature" in refused(request_token(assertion, HELD), 401, "invalid_client")


def test_hs256_with_the_public_key_as_secret_is_refused(client, rsa_key):
    """The classic confusion: the public key (known to all) used as an HMAC secret."""
    _private, public = rsa_key
    public_pem = jwt.PyJWK(public, "RS384").key.public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    payload = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": "http://testserver/fhir/auth/token",
        "exp": int((timezone.now() + timedelta(minutes=4)).timestamp()),
        "jti": "confused",
    }
    # PyJWT itself refuses to sign HMAC with a PEM key, so the JWT is put together by hand.
    header = {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}

    def part(data: dict) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signing_input = part(header) + b"." + part(payload)
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    assertion = (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()
    assert "HS256" in refused(request_token(assertion, HELD), 401, "invalid_client")


def test_alg_none_is_refused(client):
    assertion = jwt.encode(
        {"iss": client.client_id, "sub": client.client_id, "jti": "x"},
        None,
        algorithm="none",
        headers={"kid": "rsa-1"},
    )
    refused(request_token(assertion, HELD), 401, "invalid_client")


def test_an_unknown_client_is_refused(client):
    private, _public = key_pair("rsa-1")
    assertion = signed_assertion("no-such-client", private, "rsa-1")
    assert "No client" in refused(request_token(assertion, HELD), 401, "invalid_client")


def test_sub_must_be_the_client_too(client, rsa_key):
    private, _public = rsa_key
    assertion = signed_assertion(client.client_id, private, "rsa-1", sub="someone-else")
    refused(request_token(assertion, HELD), 401, "invalid_client")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"client_assertion_type": "urn:something:else"}, "invalid_request"),
        ({"client_assertion": ""}, "invalid_request"),
        ({"client_assertion": "not.a.jwt"}, "invalid_client"),
        ({"scope": ""}, "invalid_request"),
    ],
)
def test_a_malformed_request_gets_an_oauth_error(client, rsa_key, change, error):
    private, _public = rsa_key
    form = token_form(signed_assertion(client.client_id, private, "rsa-1"), HELD)
    response = Client().post(TOKEN_PATH, {**form, **change})
    refused(response, 401 if error == "invalid_client" else 400, error)


def test_a_refusal_for_a_known_client_is_audited(client, rsa_key):
    private, _public = rsa_key
    request_token(signed_assertion(client.client_id, private, "rsa-9"), HELD)
    event = AuditEvent.objects.get(action=AuditAction.API_REFUSED)
    assert event.actor_label == "FHIR client Charting system"
    assert "invalid_client" in event.detail


def test_the_token_url_takes_only_post():
    assert Client().get("/fhir/auth/token").status_code == 405


def test_smart_configuration_says_where_and_how(clinic):
    response = Client().get("/fhir/.well-known/smart-configuration")
    data = json.loads(response.content)
    assert response.status_code == 200
    assert data["token_endpoint"] == "http://testserver/fhir/auth/token"
    assert data["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert data["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert data["grant_types_supported"] == ["client_credentials"]
    assert data["capabilities"] == ["client-confidential-asymmetric"]
    assert "system/Patient.read" in data["scopes_supported"]


def test_the_capability_statement_names_the_token_url(clinic):
    statement = json.loads(fhir_get("/fhir/metadata").content)
    validated(statement)
    (extension,) = statement["rest"][0]["security"]["extension"]
    assert extension["url"].endswith("/oauth-uris")
    assert extension["extension"] == [
        {"url": "token", "valueUri": "http://testserver/fhir/auth/token"}
    ]


@pytest.mark.django_db(transaction=True)
def test_one_assertion_sent_twice_at_once_gets_one_token():
    """Two web processes agree on a replay: the unique (client, jti) lets one insert win."""
    from tests.races import race

    private, public = key_pair("rsa-1", "RS384")
    client = ApiClient.objects.create(
        name="Racer", clinic=ClinicBuilder().clinic, scopes=HELD, jwks={"keys": [public]}
    )
    assertion = signed_assertion(client.client_id, private, "rsa-1")
    statuses = race([lambda: request_token(assertion, HELD).status_code] * 2)
    assert sorted(statuses) == [200, 401]
    assert ApiToken.objects.count() == 1
