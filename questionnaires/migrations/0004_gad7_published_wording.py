"""GAD-7 items 1 and 7 punctuated as on the published form ("Feeling nervous, anxious, or on
edge"; "Feeling afraid, as if something awful might happen"), as version 1.0.1.

A database made before this has version 1.0.0 with the earlier punctuation; it is kept as it
was (answers name the version they answered) and no longer asked. A new database gets 1.0.1
from 0002 already, and this does nothing.
"""

import json
from pathlib import Path

from django.db import migrations

GAD7 = Path(__file__).resolve().parent.parent / "instruments" / "gad-7.json"


def add_version(apps, schema_editor):
    Instrument = apps.get_model("questionnaires", "Instrument")
    data = json.loads(GAD7.read_text())
    questionnaire = data["questionnaire"]
    earlier = Instrument.objects.filter(code="gad-7").exclude(version=questionnaire["version"])
    if not earlier.exists():
        return
    source = earlier.order_by("-pk").first().source
    Instrument.objects.get_or_create(
        code="gad-7",
        version=questionnaire["version"],
        defaults={
            "short_name": data["short_name"],
            "title": questionnaire["title"],
            "questionnaire": questionnaire,
            "scoring": data["scoring"],
            "source": source,
        },
    )
    earlier.update(is_active=False)


class Migration(migrations.Migration):
    dependencies = [("questionnaires", "0003_safety_notices")]

    operations = [migrations.RunPython(add_version, migrations.RunPython.noop)]
