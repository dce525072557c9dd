"""manage.py plan: generate (and optionally confirm) a care plan from the shell.

    manage.py plan --patient 12 --protocol iv-induction --start 2026-12-01 --json
    manage.py plan --patient avery@example.com --protocol kap-lozenge --start 2026-12-01 \\
        --weekdays mon,wed,fri --times 09:00-13:00 --confirm

Infeasible plans exit with status 2 and, with --json, {"error", "step", "constraint"}.
Visits the patient already has that do for a step are listed with their
``existing_visit`` (id and status) and are not booked again.
"""

import json
import sys
from datetime import date, time

from django.core.management.base import BaseCommand, CommandError

from plans.care_plans import PlanNotConfirmed, confirm, save_proposal
from plans.generator import PlanInfeasible, Preferences, generate
from plans.models import Protocol
from scheduler.models import Clinician, Patient, is_row_id

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def parse_weekdays(text: str) -> frozenset[int]:
    days = set()
    for word in filter(None, (w.strip().lower()[:3] for w in text.split(","))):
        if word not in WEEKDAYS:
            raise CommandError(f"--weekdays: {word!r} is not a weekday (use mon,tue,...).")
        days.add(WEEKDAYS.index(word))
    return frozenset(days)


def parse_times(text: str) -> tuple[tuple[time, time], ...]:
    windows = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            start, end = (time.fromisoformat(t) for t in part.split("-"))
        except ValueError:
            raise CommandError(f"--times: {part!r} is not a window like 09:00-13:00.") from None
        if start >= end:
            raise CommandError(f"--times: {part!r} ends before it starts.")
        windows.append((start, end))
    return tuple(windows)


class Command(BaseCommand):
    help = "Generate a care plan for a patient from a protocol; --confirm books it."

    def add_arguments(self, parser):
        parser.add_argument("--patient", required=True, help="patient id or email")
        parser.add_argument("--protocol", required=True, help="protocol slug")
        parser.add_argument("--start", required=True, help="earliest start date, YYYY-MM-DD")
        parser.add_argument("--weekdays", default="", help="preferred weekdays, e.g. mon,wed,fri")
        parser.add_argument(
            "--times", default="", help="preferred local times, e.g. 09:00-12:00,14:00-17:00"
        )
        parser.add_argument(
            "--clinician",
            action="append",
            default=[],
            help="preferred clinician as role=email (repeatable)",
        )
        parser.add_argument("--confirm", action="store_true", help="book the plan's visits")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, **options):
        patient = self._patient(options["patient"])
        try:
            protocol = Protocol.objects.select_related("clinic").get(
                clinic=patient.clinic, slug=options["protocol"]
            )
        except Protocol.DoesNotExist:
            raise CommandError(
                f"No protocol {options['protocol']!r} at {patient.clinic}."
            ) from None
        try:
            start = date.fromisoformat(options["start"])
        except ValueError:
            raise CommandError(
                f"--start: {options['start']!r} is not a date like 2026-12-01."
            ) from None
        preferences = Preferences(
            weekdays=parse_weekdays(options["weekdays"]),
            time_windows=parse_times(options["times"]),
            clinicians=self._clinicians(patient, options["clinician"]),
        )
        try:
            proposal = generate(patient, protocol, start, preferences)
        except PlanInfeasible as error:
            self._fail(options, error.as_dict())
        if options["confirm"]:
            try:
                confirm(save_proposal(proposal))
            except PlanNotConfirmed as error:
                self._fail(
                    options,
                    {"error": str(error), "step": "", "constraint": "; ".join(error.problems)},
                )
        self._print(proposal, options)

    def _patient(self, key: str) -> Patient:
        patients = Patient.objects.select_related("clinic")
        found = (
            patients.filter(pk=int(key)) if is_row_id(key) else patients.filter(email__iexact=key)
        )
        if len(found) != 1:
            raise CommandError(f"No single patient with id or email {key!r}.")
        return found[0]

    def _clinicians(self, patient, pairs) -> dict[str, int]:
        chosen = {}
        for pair in pairs:
            role, _, email = pair.partition("=")
            clinician = Clinician.objects.filter(
                clinic=patient.clinic, user__email__iexact=email
            ).first()
            if clinician is None or not clinician.has_role(role):
                raise CommandError(
                    f"--clinician {pair}: no {role} with that email at {patient.clinic}."
                )
            chosen[role] = clinician.pk
        return chosen

    def _fail(self, options, error: dict):
        if options["json"]:
            self.stdout.write(json.dumps(error, indent=2))
        else:
            self.stderr.write(error["error"])
        sys.exit(2)

    def _print(self, proposal, options):
        tz = proposal.protocol.clinic.tz
        everything = sorted(proposal.visits + proposal.satisfied, key=lambda v: v.start)
        visits = [
            {
                "step": str(v.step),
                "kind": v.visit_type.kind,
                "start": v.start.astimezone(tz).isoformat(),
                "end": v.end.astimezone(tz).isoformat(),
                "clinician": v.clinician.display_name,
                "staff": [
                    {"name": clinician.display_name, "role": role} for clinician, role in v.team
                ],
                "room": v.room.name if v.room else None,
                "modality": v.visit_type.modality,
                # Already booked or done: counted by the plan, not booked again.
                "existing_visit": (
                    {"id": v.existing.pk, "status": v.existing.status} if v.existing else None
                ),
            }
            for v in everything
        ]
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "patient": str(proposal.patient),
                        "protocol": proposal.protocol.slug,
                        "start_date": proposal.start_date.isoformat(),
                        "visits": visits,
                        "total_cost": str(proposal.total_cost),
                        "currency": proposal.currency,
                        "warnings": proposal.warnings,
                    },
                    indent=2,
                )
            )
            return
        self.stdout.write(
            f"{proposal.protocol} for {proposal.patient}, from {proposal.start_date}:"
        )
        for v in everything:
            start = v.start.astimezone(tz)
            where = v.room.name if v.room else "telehealth"
            already = (
                f"  (already {v.existing.get_status_display().lower()}, not booked again)"
                if v.existing
                else ""
            )
            team = " + ".join(str(clinician) for clinician, _ in v.team)
            self.stdout.write(
                f"  {start:%a %Y-%m-%d %H:%M}  {v.step} ({v.visit_type})  {team}  {where}{already}"
            )
        self.stdout.write(f"Estimated total: {proposal.total_cost} {proposal.currency}")
        for warning in proposal.warnings:
            self.stdout.write(f"Warning: {warning}")
        if options["confirm"]:
            self.stdout.write(self.style.SUCCESS("Booked."))
