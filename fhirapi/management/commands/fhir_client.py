"""``manage.py fhir_client add|list|revoke``: FHIR API clients from scripts, as the admin issues them.

    manage.py fhir_client add "Charting system" \\
        --scopes "system/Appointment.read system/Patient.read" --jwks public.jwks.json
    manage.py fhir_client list
    manage.py fhir_client revoke "Charting system"

``add`` prints the new client_id (the only output, for scripts to capture).
Every change is audited as the admin's are.
"""

import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone

from fhirapi.models import ApiClient
from scheduler import audit
from scheduler.models import AuditAction, Clinic


def _clinic(named: str | None) -> Clinic:
    clinics = Clinic.objects.order_by("pk")
    if named:
        found = clinics.filter(slug=named).first()
        if found is None:
            raise CommandError(f"No clinic with slug {named!r}.")
        return found
    if clinics.count() != 1:
        raise CommandError("Name the clinic with --clinic SLUG (there is not exactly one).")
    return clinics.get()


def _jwks(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as problem:
        raise CommandError(f"Cannot read the JWKS {path}: {problem}") from None


class Command(BaseCommand):
    help = "Add, list or revoke FHIR API clients (SMART Backend Services)."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="register a client; prints its client_id")
        add.add_argument("name")
        add.add_argument("--scopes", required=True, help='e.g. "system/Patient.read"')
        add.add_argument("--jwks", required=True, help="a file with the client's public JWKS")
        add.add_argument("--clinic", help="the clinic's slug (needed with several clinics)")
        actions.add_parser("list", help="every client: name, client_id, clinic, scopes, state")
        revoke = actions.add_parser("revoke", help="revoke a client (its tokens stop working)")
        revoke.add_argument("client", help="its name or client_id")

    def handle(self, *args, action, **options):
        getattr(self, action)(**options)

    def add(self, name, scopes, jwks, clinic, **options):
        client = ApiClient(name=name, clinic=_clinic(clinic), scopes=scopes, jwks=_jwks(jwks))
        try:
            client.full_clean()
        except ValidationError as error:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items()
            )
            raise CommandError(problems) from None
        client.save()
        audit.record(None, AuditAction.API_CLIENT_CHANGED, None, f"{name}: added (command)")
        self.stdout.write(client.client_id)

    def list(self, **options):
        for client in ApiClient.objects.select_related("clinic"):
            state = f"revoked {client.revoked_at:%Y-%m-%d}" if client.revoked_at else "active"
            self.stdout.write(
                f"{client.name}\t{client.client_id}\t{client.clinic.slug}\t{client.scopes}\t{state}"
            )

    def revoke(self, client, **options):
        found = ApiClient.objects.filter(Q(name=client) | Q(client_id=client)).first()
        if found is None:
            raise CommandError(f"No client named {client!r} or with that client_id.")
        if found.revoked_at:
            self.stdout.write(f"{found.name} was revoked already.")
            return
        found.revoked_at = timezone.now()
        found.save(update_fields=["revoked_at"])
        audit.record(None, AuditAction.API_CLIENT_CHANGED, None, f"{found.name}: revoked (command)")
        self.stdout.write(f"{found.name} revoked.")
