"""The FHIR API's rate limits: per client for authenticated calls, per address for the
open ones and the token URL; over the limit, 429 with Retry-After and the reason."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from tests.conftest import ClinicBuilder
from tests.fhir_helpers import TOKEN_PATH, bearer, body, fhir_get, validated

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def clinic():
    return ClinicBuilder().clinic


def test_a_client_over_its_limit_is_told_to_wait_and_others_go_on(clinic, settings):
    settings.FHIR_RATE_LIMIT = 3
    busy = bearer(clinic, "system/Patient.read")
    quiet = bearer(clinic, "system/Patient.read")
    assert [fhir_get("/fhir/Patient", busy).status_code for _ in range(3)] == [200] * 3
    refused = fhir_get("/fhir/Patient", busy)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    outcome = validated(body(refused))
    assert outcome.issue[0].code == "throttled"
    assert "3 requests in a minute" in outcome.issue[0].diagnostics
    assert fhir_get("/fhir/Patient", quiet).status_code == 200


def test_the_limit_is_per_minute(clinic, settings):
    settings.FHIR_RATE_LIMIT = 1
    token = bearer(clinic, "system/Patient.read")
    with time_machine.travel(timezone.now(), tick=False) as clock:
        assert fhir_get("/fhir/Patient", token).status_code == 200
        assert fhir_get("/fhir/Patient", token).status_code == 429
        clock.shift(timedelta(seconds=61))
        assert fhir_get("/fhir/Patient", token).status_code == 200


def test_a_token_holder_is_counted_by_client_not_address(clinic, settings):
    """Two of one client's tokens share its count (a client cannot dodge it with more tokens)."""
    settings.FHIR_RATE_LIMIT = 2
    first = bearer(clinic, "system/Patient.read", name="Lab")
    from fhirapi.models import ApiClient, ApiToken

    _token, second = ApiToken.issue(
        ApiClient.objects.get(name="Lab"), "system/Patient.read", timedelta(minutes=5)
    )
    assert fhir_get("/fhir/Patient", first).status_code == 200
    assert fhir_get("/fhir/Patient", second).status_code == 200
    assert fhir_get("/fhir/Patient", second).status_code == 429


def test_the_open_capability_statement_is_counted_per_address(clinic, settings):
    settings.FHIR_RATE_LIMIT = 2
    assert fhir_get("/fhir/metadata").status_code == 200
    assert fhir_get("/fhir/metadata").status_code == 200
    assert fhir_get("/fhir/metadata").status_code == 429
    other = fhir_get("/fhir/metadata", REMOTE_ADDR="192.0.2.9")
    assert other.status_code == 200


def test_the_token_url_is_counted_per_address(clinic, settings):
    settings.TOKEN_RATE_LIMIT = 2
    client = Client()
    statuses = [client.post(TOKEN_PATH, {}).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]
    refused = client.post(TOKEN_PATH, {})
    assert refused["Retry-After"] == "60"
    assert json.loads(refused.content)["error"] == "temporarily_unavailable"
