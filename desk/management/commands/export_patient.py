"""``manage.py export_patient <id>``: a patient's data as JSON on stdout (or --output FILE)."""

from django.core.management.base import BaseCommand, CommandError

from desk.export import export_json
from scheduler.models import Patient


class Command(BaseCommand):
    help = "Export everything stored about one patient as JSON (the export is audited)."

    def add_arguments(self, parser):
        parser.add_argument("patient_id", type=int)
        parser.add_argument("--output", help="write to this file instead of stdout")
        parser.add_argument(
            "--requested-by", default="", help="who asked (kept in the audit trail)"
        )

    def handle(self, *args, patient_id: int, output: str | None, requested_by: str, **options):
        patient = Patient.objects.filter(pk=patient_id).first()
        if patient is None:
            raise CommandError(f"No patient with id {patient_id}.")
        text = export_json(patient, by=f"manage.py export_patient {requested_by}".strip())
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            self.stderr.write(f"Wrote {output}.")
        else:
            self.stdout.write(text)
