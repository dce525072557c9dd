"""PostgreSQL refuses overlapping active visits itself (docs/architecture.md invariant 1).

Exclusion constraints over a tstzrange, one each for clinician, room and
patient, limited to the statuses that hold a slot. SQLite has no such
constraints; there the booking code checks and writes inside one IMMEDIATE
transaction instead.
"""

from django.db import migrations

BLOCKING = "('booked', 'confirmed', 'checked_in', 'completed')"
RESOURCES = ("clinician", "room", "patient")


def add_constraints(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    for resource in RESOURCES:
        schema_editor.execute(
            f"ALTER TABLE scheduler_visit ADD CONSTRAINT visit_no_{resource}_overlap "
            f"EXCLUDE USING gist ({resource}_id WITH =, "
            f"tstzrange(start, \"end\", '[)') WITH &&) "
            f"WHERE (status IN {BLOCKING})"
        )


def drop_constraints(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for resource in RESOURCES:
        schema_editor.execute(
            f"ALTER TABLE scheduler_visit DROP CONSTRAINT IF EXISTS visit_no_{resource}_overlap"
        )


class Migration(migrations.Migration):
    dependencies = [("scheduler", "0001_initial")]

    operations = [migrations.RunPython(add_constraints, drop_constraints)]
