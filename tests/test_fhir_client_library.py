"""A real FHIR client library over real HTTP: SMART on FHIR's own Python client
(``fhirclient``) finds the token URL in the CapabilityStatement, exchanges a
client assertion signed with a key made here for a bearer token, reads a
Patient and searches Patients by name to the last page."""

import io
from datetime import date

import pytest
from cryptography.hazmat.primitives import serialization
from django.core.management import call_command
from fhirclient import client as fhir_client
from fhirclient.models.patient import Patient as FhirPatient

from fhirapi.models import ApiClient
from scheduler.models import AuditAction, AuditEvent, Patient
from tests.conftest import ClinicBuilder
from tests.fhir_helpers import body, fhir_get, key_pair, signed_assertion, validated

pytestmark = pytest.mark.django_db(transaction=True)

SCOPES = "system/Patient.read"


@pytest.fixture
def registered(live_server):
    """A clinic with 23 patients called Rivera (and one other), and a client with its key."""
    clinic = ClinicBuilder().clinic
    for n in range(24):
        Patient.objects.create(
            clinic=clinic,
            first_name=f"Pat{n}",
            last_name="Rivera" if n < 23 else "Okafor",
            date_of_birth=date(1980, 1, 1 + n),
            mobile=f"+1212555{n:04d}",
            email=f"pat{n}@example.org",
        )
    private, public = key_pair("ehr-1", "ES384")
    client = ApiClient.objects.create(
        name="Charting system", clinic=clinic, scopes=SCOPES, jwks={"keys": [public]}
    )
    return client, private


def connected(live_server, client: ApiClient, private_key) -> fhir_client.FHIRClient:
    token_url = f"{live_server.url}/fhir/auth/token"
    smart = fhir_client.FHIRClient(
        settings={
            "app_id": client.client_id,
            "api_base": f"{live_server.url}/fhir/",
            "scope": SCOPES,
            "jwt_token": signed_assertion(
                client.client_id, private_key, "ehr-1", "ES384", token_url
            ),
        }
    )
    smart.prepare()  # reads the CapabilityStatement: the token URL is in its security
    assert smart.server.auth._token_uri == token_url
    smart.authorize()  # the client_credentials exchange, with our assertion
    assert smart.ready
    return smart


def test_fhirclient_reads_and_searches_over_http_with_a_smart_backend_token(
    live_server, registered
):
    client, private_key = registered
    smart = connected(live_server, client, private_key)
    statement = smart.server.capabilityStatement
    assert statement.fhirVersion == "4.0.1"
    assert "Patient" in {entry.type for entry in statement.rest[0].resource}

    avery = Patient.objects.order_by("pk").first()
    read = FhirPatient.read(str(avery.pk), smart.server)
    assert (read.name[0].family, read.name[0].given) == ("Rivera", [avery.first_name])

    search = FhirPatient.where(struct={"name": "rivera", "_count": "5"})
    pages = list(search.perform_iter(smart.server))
    assert len(pages) == 5  # 23 patients, 5 a page: paging followed to the end
    found = [entry.resource.id for page in pages for entry in page.entry or []]
    expected = Patient.objects.filter(last_name="Rivera").values_list("pk", flat=True)
    assert sorted(found, key=int) == [str(pk) for pk in sorted(expected)]
    for page in pages:
        validated(page.as_json())
    labels = set(
        AuditEvent.objects.filter(action=AuditAction.API_SEARCHED).values_list(
            "actor_label", flat=True
        )
    )
    assert labels == {"FHIR client Charting system"}


def test_fhir_token_command_gets_a_token_over_http(live_server, registered, tmp_path):
    client, private_key = registered
    key_file = tmp_path / "ehr.pem"
    key_file.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    out = io.StringIO()
    call_command(
        "fhir_token", client.name, "--key", str(key_file), "--server", live_server.url, stdout=out
    )
    token = out.getvalue().strip()
    bundle = body(fhir_get("/fhir/Patient?name=okafor", token))
    assert validated(bundle).total == 1
