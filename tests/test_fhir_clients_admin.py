"""FHIR API clients are issued and revoked by clinic admins (the admin, or
``manage.py fhir_client``), with scopes and public keys checked, every change
audited; the demo registers one whose private key stays out of the repository."""

import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from fhirapi.demo import DEMO_CLIENT, key_path
from fhirapi.models import ApiClient, ApiToken
from scheduler.models import AuditAction, AuditEvent
from scheduler.roles import CLINIC_ADMINS_GROUP, FRONT_DESK_GROUP
from tests.conftest import ClinicBuilder
from tests.fhir_helpers import api_client, bearer, fhir_get, key_pair
from tests.page_helpers import sign_in_verified, staff_user

pytestmark = pytest.mark.django_db

ADD = reverse("admin:fhirapi_apiclient_add")
LIST = reverse("admin:fhirapi_apiclient_changelist")


@pytest.fixture
def clinic():
    return ClinicBuilder().clinic


@pytest.fixture
def admin_client():
    browser = Client()
    sign_in_verified(browser, staff_user(CLINIC_ADMINS_GROUP, is_staff=True))
    return browser


def public_jwks(alg="RS384", kid="key-1") -> dict:
    return {"keys": [key_pair(kid, alg)[1]]}


def form(clinic, **changes) -> dict:
    return {
        "name": "Charting system",
        "clinic": str(clinic.pk),
        "scopes": "system/Patient.read system/Appointment.read",
        "jwks": json.dumps(public_jwks()),
        **changes,
    }


def errors_of(response) -> str:
    assert response.status_code == 200, response.status_code  # the form again
    return " ".join(str(e) for e in response.context["adminform"].form.errors.values())


def test_a_clinic_admin_adds_a_client_and_gets_its_client_id(admin_client, clinic):
    response = admin_client.post(ADD, form(clinic), follow=True)
    client = ApiClient.objects.get()
    assert client.created_by is not None
    assert client.client_id in response.text  # shown in the message
    event = AuditEvent.objects.get(action=AuditAction.API_CLIENT_CHANGED)
    assert "Charting system: added" in event.detail


def test_unknown_scopes_are_named_in_the_error(admin_client, clinic):
    response = admin_client.post(
        ADD, form(clinic, scopes="system/Patient.read patient/*.read oops")
    )
    assert "patient/*.read, oops" in errors_of(response)
    assert not ApiClient.objects.exists()


def test_scopes_for_types_not_served_are_refused(admin_client, clinic):
    response = admin_client.post(
        ADD, form(clinic, scopes="system/Patient.read system/Appointmnt.rs")
    )
    assert "serves no Appointmnt resources" in errors_of(response)
    assert not ApiClient.objects.exists()


@pytest.mark.parametrize(
    ("jwks", "says"),
    [
        (lambda: {"keys": [{**key_pair("k", "RS384")[1], "d": "secret"}]}, "private parts (d)"),
        (lambda: {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k"}]}, "private parts (k)"),
        (lambda: {"keys": [{**key_pair("k", "RS384")[1], "alg": "RS256"}]}, "cannot sign"),
        (lambda: {"keys": [{k: v for k, v in key_pair()[1].items() if k != "kid"}]}, "no kid"),
        (lambda: {"keys": [key_pair("a")[1], key_pair("a")[1]]}, "share a kid"),
        (lambda: {"keys": [{"kty": "RSA", "kid": "k", "n": "!!", "e": "AQAB"}]}, "not a usable"),
        (
            lambda: {"keys": [{"kty": "EC", "crv": "P-384", "x": "no", "y": "no", "kid": "k"}]},
            "is not a usable public key: check its numbers",
        ),
        (lambda: [1, 2], "JWK Set"),
    ],
)
def test_a_key_set_that_is_not_public_rs384_or_es384_keys_is_refused(
    admin_client, clinic, jwks, says
):
    response = admin_client.post(ADD, form(clinic, jwks=json.dumps(jwks())))
    assert says in errors_of(response)
    assert not ApiClient.objects.exists()


def test_an_es384_key_is_taken(admin_client, clinic):
    admin_client.post(ADD, form(clinic, jwks=json.dumps(public_jwks("ES384"))))
    assert ApiClient.objects.get().jwks["keys"][0]["crv"] == "P-384"


def test_the_client_id_cannot_be_changed_and_tokens_are_shown_read_only(admin_client, clinic):
    bearer(clinic, "system/Patient.read", name="Lab")
    client = ApiClient.objects.get()
    client.jwks = public_jwks()
    client.save()
    change = reverse("admin:fhirapi_apiclient_change", args=[client.pk])
    page = admin_client.get(change)
    assert "Latest tokens" in page.text and "system/Patient.read" in page.text
    before = client.client_id
    data = form(
        clinic,
        name="Lab",
        client_id="chosen-by-me",
        scopes="system/Patient.rs",
        jwks=json.dumps(client.jwks),
    )
    # As the page sends it: a field with a callable default posts its initial value too.
    data["initial-jwks"] = data["jwks"]
    admin_client.post(change, data)
    client.refresh_from_db()
    assert (client.client_id, client.scopes) == (before, "system/Patient.rs")
    event = AuditEvent.objects.get(action=AuditAction.API_CLIENT_CHANGED)
    assert event.detail == "Lab: changed scopes"


def test_revoking_a_client_is_audited_and_its_tokens_stop_working(admin_client, clinic):
    secret = bearer(clinic, "system/Patient.read", name="Lab")
    client = ApiClient.objects.get()
    admin_client.post(LIST, {"action": "revoke_clients", "_selected_action": [str(client.pk)]})
    client.refresh_from_db()
    assert client.revoked_at is not None
    assert AuditEvent.objects.get(action=AuditAction.API_CLIENT_CHANGED).detail == "Lab: revoked"
    assert fhir_get("/fhir/Patient", secret).status_code == 401
    assert ApiToken.objects.live().count() == 0


def test_clients_are_not_deleted(admin_client, clinic):
    bearer(clinic, "system/Patient.read")
    client = ApiClient.objects.get()
    page = admin_client.get(reverse("admin:fhirapi_apiclient_delete", args=[client.pk]))
    assert page.status_code == 403
    assert ApiClient.objects.exists()


def test_the_front_desk_does_not_see_or_issue_clients(clinic):
    desk = Client()
    desk.force_login(staff_user(FRONT_DESK_GROUP, is_staff=True))
    assert desk.get(LIST).status_code == 403
    assert desk.post(ADD, form(clinic)).status_code == 403
    assert not ApiClient.objects.exists()


def test_a_superuser_may_issue_clients(client, clinic, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    sign_in_verified(client, get_user_model().objects.create_superuser("root", password=None))
    client.post(ADD, form(clinic))
    assert ApiClient.objects.count() == 1


def command(*args) -> str:
    out = io.StringIO()
    call_command("fhir_client", *args, stdout=out)
    return out.getvalue()


def test_the_command_adds_lists_and_revokes_clients(clinic, tmp_path):
    jwks = tmp_path / "public.jwks.json"
    jwks.write_text(json.dumps(public_jwks()))
    client_id = command("add", "Charting system", "--scopes", "system/Patient.read", "--jwks", jwks)
    client = ApiClient.objects.get()
    assert client_id.strip() == client.client_id
    assert f"Charting system\t{client.client_id}" in command("list")
    assert "revoked" in command("revoke", "Charting system")
    client.refresh_from_db()
    assert client.revoked_at is not None
    assert "revoked" in command("list")
    details = AuditEvent.objects.filter(action=AuditAction.API_CLIENT_CHANGED)
    assert sorted(details.values_list("detail", flat=True)) == [
        "Charting system: added (command)",
        "Charting system: revoked (command)",
    ]


def test_the_command_refuses_bad_scopes_and_private_keys(clinic, tmp_path):
    private = tmp_path / "private.jwks.json"
    private.write_text(json.dumps({"keys": [{**key_pair()[1], "d": "x"}]}))
    with pytest.raises(CommandError, match="private parts"):
        command("add", "X", "--scopes", "system/Patient.read", "--jwks", private)
    public = tmp_path / "public.jwks.json"
    public.write_text(json.dumps(public_jwks()))
    with pytest.raises(CommandError, match="user/Patient.read"):
        command("add", "X", "--scopes", "user/Patient.read", "--jwks", public)
    assert not ApiClient.objects.exists()


def test_seed_demo_registers_a_demo_client_with_a_key_outside_the_repository(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    client = ApiClient.objects.get(name=DEMO_CLIENT)
    path = key_path(DEMO_CLIENT)
    assert path.is_relative_to(tmp_path) and path.stat().st_mode & 0o077 == 0
    assert "BEGIN PRIVATE KEY" in path.read_text()
    assert "d" not in client.jwks["keys"][0]
    assert "fhir_token 'Demo EHR'" in out.getvalue()
    keys = client.jwks
    call_command("seed_demo", stdout=io.StringIO())  # idempotent: the same client and key
    assert ApiClient.objects.get(name=DEMO_CLIENT).jwks == keys
    assert ApiClient.objects.count() == 1


def test_the_client_list_and_page_take_the_same_queries_however_many_rows(
    admin_client, clinic, django_assert_max_num_queries
):
    bearer(clinic, "system/Patient.read", name="Lab")
    client = ApiClient.objects.get()
    change = reverse("admin:fhirapi_apiclient_change", args=[client.pk])
    with CaptureQueriesContext(connection) as few_clients:
        admin_client.get(LIST)
    with CaptureQueriesContext(connection) as few_tokens:
        admin_client.get(change)
    for n in range(8):
        bearer(clinic, "system/Patient.read", name=f"Lab {n}")
        ApiToken.issue(client, "system/Patient.read", timedelta(minutes=5))
    # At most as many (the session's first pages may save it once more).
    with django_assert_max_num_queries(len(few_clients.captured_queries)):
        admin_client.get(LIST)
    with django_assert_max_num_queries(len(few_tokens.captured_queries)):
        admin_client.get(change)


def test_the_list_shows_active_or_revoked_clients(admin_client, clinic):
    from django.utils import timezone

    api_client(clinic, "system/Patient.read", name="Lab")
    ApiClient.objects.filter(
        pk=api_client(clinic, "system/Patient.read", name="Old EHR").pk
    ).update(revoked_at=timezone.now())
    active = admin_client.get(LIST, {"status": "active"}).text
    revoked = admin_client.get(LIST, {"status": "revoked"}).text
    assert "Lab" in active and "Old EHR" not in active
    assert "Old EHR" in revoked and ">Lab<" not in revoked
