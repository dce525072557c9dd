"""The published Spanish wording of the PHQ-9 and GAD-7 (docs/questionnaires.md), beside the
English, as FHIR translation extensions.

A new database has them from 0002 already. In one made before, each version of the two
instruments gets the Spanish of every item, answer and instruction whose English is still
the published one; wording a clinic changed keeps no translation (it would no longer say
the same) and is shown in English.
"""

import json
from pathlib import Path

from django.db import migrations

INSTRUMENTS = Path(__file__).resolve().parent.parent / "instruments"


def _translated(current: dict, published: dict, name: str) -> None:
    if current.get(name) == published.get(name) and f"_{name}" in published:
        current[f"_{name}"] = published[f"_{name}"]


def add_spanish(apps, schema_editor):
    Instrument = apps.get_model("questionnaires", "Instrument")
    for code in ("phq-9", "gad-7"):
        published = json.loads((INSTRUMENTS / f"{code}.json").read_text())["questionnaire"]
        items = {item["linkId"]: item for item in published["item"]}
        for instrument in Instrument.objects.filter(code=code):
            questionnaire = instrument.questionnaire
            _translated(questionnaire, published, "title")
            for item in questionnaire.get("item", []):
                source = items.get(item.get("linkId"))
                if source is None:
                    continue
                _translated(item, source, "text")
                options = {o["valueCoding"]["code"]: o for o in source.get("answerOption", [])}
                for option in item.get("answerOption", []):
                    coding = option["valueCoding"]
                    if coding.get("code") in options:
                        _translated(coding, options[coding["code"]]["valueCoding"], "display")
            instrument.save(update_fields=["questionnaire"])


class Migration(migrations.Migration):
    dependencies = [("questionnaires", "0004_gad7_published_wording")]

    operations = [migrations.RunPython(add_spanish, migrations.RunPython.noop)]
