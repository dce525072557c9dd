"""``manage.py dispatch_reminders``: one dispatch pass, as the schedule runs every minute.

``--now`` runs the pass as if it were that moment, and ``--until`` keeps going,
jumping from one due message to the next, so a month of reminders can be
rehearsed in seconds:

    manage.py dispatch_reminders --now 2030-02-01T00:00 --until 2030-03-01T00:00
"""

import json
from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from notifications.dispatch import PassResult, dispatch, next_due
from notifications.models import Message, Status
from scheduler.timezones import LocalTimeError, local_datetime, zone


def moment(text: str) -> datetime:
    """An ISO 8601 date-time; without an offset it is wall-clock time in CLINIC_TIME_ZONE."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"{text!r} is not an ISO date-time, e.g. 2030-02-04T09:00 or 2030-02-04T14:00Z."
        ) from None
    if value.tzinfo is not None:
        return value
    try:
        return local_datetime(value.date(), value.time(), zone(settings.CLINIC_TIME_ZONE))
    except LocalTimeError as error:
        raise CommandError(f"{error} Or give a UTC offset.") from None


class Command(BaseCommand):
    help = "Send the reminders that are due (one pass); --now/--until rehearse other moments."

    def add_arguments(self, parser):
        parser.add_argument("--now", type=moment, help="act as if it were this moment (ISO 8601)")
        parser.add_argument(
            "--until",
            type=moment,
            help="rehearsal: repeat passes at each moment a message falls due, up to this one",
        )
        parser.add_argument(
            "--no-pace", action="store_true", help="do not pace sends (rehearsals against fakes)"
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the counts as JSON"
        )

    def handle(self, *args, now=None, until=None, no_pace=False, as_json=False, **options):
        if until and not now:
            now = timezone.now()
        if until and until < now:
            raise CommandError("--until must come after --now.")
        total, passes = PassResult(), 0
        moment_ = now
        while True:
            result = dispatch(moment_, pace=not no_pace)
            passes += 1
            for name, count in result.as_dict().items():
                setattr(total, name, getattr(total, name) + count)
            if options["verbosity"] >= 2 or (
                until and options["verbosity"] >= 1 and any(result.as_dict().values())
            ):
                when = timezone.localtime(moment_ or timezone.now()).strftime(
                    "%a %Y-%m-%d %H:%M %Z"
                )
                self.stdout.write(f"{when}: {result}")
            if not until:
                break
            if Message.objects.due(moment_).exists():
                continue  # the pass ran out of time or hit its batch limit: same moment again
            moment_ = next_due(moment_)
            if moment_ is None or moment_ > until:
                break
        if as_json:
            self.stdout.write(json.dumps({"passes": passes, **total.as_dict()}, sort_keys=True))
        elif options["verbosity"] >= 1:
            self.stdout.write(f"{passes} pass{'es' if passes != 1 else ''}: {total}")
            failed = Message.objects.filter(status=Status.FAILED).count()
            if failed:
                self.stdout.write(
                    self.style.WARNING(f"{failed} failed messages need attention (admin).")
                )
