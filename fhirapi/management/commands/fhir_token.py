"""``manage.py fhir_token "Demo EHR"``: a bearer token, got as a SMART backend client gets it.

It signs a client assertion with the client's private key (the one seed_demo
wrote under VAR_DIR, or ``--key``) and posts it to the running server's token
URL (``--server``, SITE_URL unless given), then prints the access token alone,
so that ``curl -H "Authorization: Bearer $(python manage.py fhir_token 'Demo EHR')"``
works. The exchange goes over HTTP on purpose: this is what any other client does.
"""

import json
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import jwt
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from fhirapi.demo import key_path, load_private_key
from fhirapi.models import ApiClient, key_algorithms
from fhirapi.tokens import JWT_BEARER

ASSERTION_LIFETIME = timedelta(minutes=4)


def client_assertion(client: ApiClient, private_key, token_url: str) -> str:
    """A SMART client assertion for ``client``, naming its first registered key."""
    jwk = client.jwks["keys"][0]
    now = timezone.now()
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": token_url,
        "exp": int((now + ASSERTION_LIFETIME).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    algorithm = key_algorithms(jwk)[0]
    return jwt.encode(claims, private_key, algorithm=algorithm, headers={"kid": jwk["kid"]})


class Command(BaseCommand):
    help = "Print a bearer token for a FHIR API client whose private key is at hand."

    def add_arguments(self, parser):
        parser.add_argument("client", help="the client's name or client_id")
        parser.add_argument("--key", help="its private key (PEM); default: where seed_demo put it")
        parser.add_argument("--server", default=None, help="base URL (default: SITE_URL)")
        parser.add_argument("--scope", default=None, help="scopes to ask for (default: all held)")

    def handle(self, *args, client, key, server, scope, **options):
        found = (
            ApiClient.objects.active().filter(name=client).first()
            or ApiClient.objects.active().filter(client_id=client).first()
        )
        if found is None or not found.jwks.get("keys"):
            raise CommandError(f"No active client {client!r} with registered keys.")
        path = Path(key) if key else key_path(found.name)
        if not path.exists():
            raise CommandError(f"No private key at {path} (run seed_demo, or give --key).")
        token_url = f"{(server or settings.SITE_URL).rstrip('/')}/fhir/auth/token"
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": client_assertion(found, load_private_key(path), token_url),
            "scope": scope or found.scopes,
        }
        request = Request(token_url, data=urlencode(form).encode(), method="POST")
        try:
            with urlopen(request, timeout=30) as response:
                answer = json.load(response)
        except HTTPError as error:
            raise CommandError(f"{token_url} refused: {error.read().decode()[:500]}") from None
        except URLError as error:
            raise CommandError(
                f"Cannot reach {token_url} (is the server running?): {error}"
            ) from None
        self.stdout.write(answer["access_token"])
