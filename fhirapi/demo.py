"""The FHIR API's part of the demo: a client "Demo EHR" that may read everything served
and book appointments.

Its key pair is made here, at seed time: the public key goes in the client's
JWKS, the private key in a file under the gitignored VAR_DIR (never in the
repository), from which ``manage.py fhir_token "Demo EHR"`` signs its token
requests. Idempotent: a second run keeps the client, the file and the key; a
key file that no longer matches the client's keys (a fresh database, the same
var/) is registered again rather than replaced, and a missing one is made anew.
"""

from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.utils.text import slugify

from fhirapi.models import ApiClient
from scheduler.models import Clinic

DEMO_CLIENT = "Demo EHR"
# It reads everything served and books appointments (Appointment/$book).
DEMO_SCOPES = "system/*.read system/Appointment.write"
DEMO_KID = "demo-ehr-es384"


def key_path(client_name: str) -> Path:
    """Where the demo keeps a client's private key (VAR_DIR, gitignored)."""
    return settings.VAR_DIR / "fhir-keys" / f"{slugify(client_name)}.pem"


def load_private_key(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _public_jwk(private_key) -> dict:
    public = jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**public, "kid": DEMO_KID, "alg": "ES384", "use": "sig"}


def _new_key_file(path: Path):
    private_key = ec.generate_private_key(ec.SECP384R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Readable by its owner only, like any private key.
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(pem)
    return private_key


def seed(sender=None, *, clinic: Clinic, **kwargs) -> list[str]:
    """The demo client with a key pair; the lines ``seed_demo`` prints about it."""
    client, _ = ApiClient.objects.get_or_create(
        name=DEMO_CLIENT, defaults={"clinic": clinic, "scopes": DEMO_SCOPES}
    )
    path = key_path(client.name)
    private_key = load_private_key(path) if path.exists() else _new_key_file(path)
    jwks = {"keys": [_public_jwk(private_key)]}
    if client.jwks != jwks:
        client.jwks = jwks
        client.save(update_fields=["jwks"])
    return [
        f"FHIR API client {client.name!r} ({client.scopes}), client_id {client.client_id};",
        f"  its private key: {path} (never commit it). A bearer token for curl:",
        f"  python manage.py fhir_token {client.name!r}",
    ]
