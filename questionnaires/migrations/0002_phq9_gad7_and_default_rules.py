"""PHQ-9 and GAD-7 (docs/questionnaires.md gives the sources), and when they are asked by default:
at screening, before the first dose and every other one after, at each maintenance check-in."""

import json
from pathlib import Path

from django.db import migrations

INSTRUMENTS = Path(__file__).resolve().parent.parent / "instruments"
SOURCES = {
    "phq-9": "Kroenke K, Spitzer RL, Williams JBW. The PHQ-9: validity of a brief depression "
    "severity measure. J Gen Intern Med 2001;16(9):606-613. Wording as on the Pfizer PHQ-9 form "
    "(phqscreeners.com); LOINC panel 44249-1.",
    "gad-7": "Spitzer RL, Kroenke K, Williams JBW, Lowe B. A brief measure for assessing "
    "generalized anxiety disorder: the GAD-7. Arch Intern Med 2006;166(10):1092-1097. Wording as "
    "on the Pfizer GAD-7 form (phqscreeners.com); LOINC panel 69737-5.",
}
DEFAULT_RULES = [("screening", "every"), ("dosing", "every_other"), ("maintenance", "every")]


def add_instruments(apps, schema_editor):
    Instrument = apps.get_model("questionnaires", "Instrument")
    AskingRule = apps.get_model("questionnaires", "AskingRule")
    for code, source in SOURCES.items():
        data = json.loads((INSTRUMENTS / f"{code}.json").read_text())
        questionnaire = data["questionnaire"]
        Instrument.objects.get_or_create(
            code=code,
            version=questionnaire["version"],
            defaults={
                "short_name": data["short_name"],
                "title": questionnaire["title"],
                "questionnaire": questionnaire,
                "scoring": data["scoring"],
                "source": source,
            },
        )
        for kind, occasion in DEFAULT_RULES:
            AskingRule.objects.get_or_create(
                instrument_code=code, visit_kind=kind, visit_type=None, protocol_step=None,
                defaults={"occasion": occasion},
            )


class Migration(migrations.Migration):
    dependencies = [("questionnaires", "0001_instruments_requests_responses_alerts")]

    operations = [migrations.RunPython(add_instruments, migrations.RunPython.noop)]
