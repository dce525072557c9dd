"""``manage.py feed_url``: print a clinician's or a patient's calendar feed address.

Only a hash of each token is stored, so an address can be printed only when it
is issued: the first time, or with ``--reissue`` (which revokes the old one).
"""

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from scheduler import tokens
from scheduler.links import feed_url
from scheduler.models import Clinician, Patient, is_row_id


def find_clinician(text: str) -> Clinician:
    matches = list(
        Clinician.objects.select_related("user").filter(
            Q(user__email__iexact=text) | Q(user__username=text)
        )
    )
    if len(matches) != 1:
        raise CommandError(
            f"No clinician has the email or username {text!r}."
            if not matches
            else f"{len(matches)} clinicians match {text!r}; use the username."
        )
    return matches[0]


def find_patient(text: str) -> Patient:
    query = Q(pk=int(text)) if is_row_id(text) else Q(email__iexact=text)
    matches = list(Patient.objects.filter(query))
    if len(matches) != 1:
        raise CommandError(
            f"No patient has the id or email {text!r}."
            if not matches
            else f"{len(matches)} patients have the email {text!r}; use the patient's id: "
            + ", ".join(f"{p.pk} ({p})" for p in matches)
        )
    return matches[0]


class Command(BaseCommand):
    help = (
        "Print the calendar feed address of a clinician or a patient, issuing one if they "
        "have none. --reissue revokes the current address and prints a new one."
    )

    def add_arguments(self, parser):
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--clinician", metavar="EMAIL", help="the clinician's email or username")
        who.add_argument("--patient", metavar="ID_OR_EMAIL", help="the patient's id or email")
        parser.add_argument(
            "--reissue",
            action="store_true",
            help="revoke the current address (subscribed calendars stop updating) and issue a new one",
        )

    def handle(self, *args, clinician=None, patient=None, reissue=False, **options):
        owner = find_clinician(clinician) if clinician else find_patient(patient)
        if tokens.active(owner) and not reissue:
            raise CommandError(
                f"{owner} already has a feed address. Only a hash of it is stored, so it "
                "cannot be printed again; run with --reissue to revoke it and print a new one."
            )
        _, raw = tokens.issue(owner)
        self.stdout.write(feed_url(raw))
