"""Writes to protocols and their steps log a set-up change (scheduler.DiaryChange naming
no visit), as scheduler's migration 0018 does for the clinic's own set-up: plan
generation keeps a protocol's steps between plans (plans/generator.py)."""

from django.db import migrations

LOG = "scheduler_diarychange"
TABLES = ("plans_protocol", "plans_protocolstep")
EVENTS = ("insert", "update", "delete")


def create_triggers(apps, schema_editor):
    for table in TABLES:
        if schema_editor.connection.vendor == "postgresql":
            # scheduler_setup_changed() comes from scheduler's migration 0018.
            schema_editor.execute(
                f"CREATE TRIGGER {table}_diary_setup AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION scheduler_setup_changed()"
            )
            continue
        for event in EVENTS:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_diary_{event} AFTER {event.upper()} ON {table} "
                f"BEGIN INSERT INTO {LOG} (visit_id) VALUES (NULL); END"
            )


def drop_triggers(apps, schema_editor):
    for table in TABLES:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_diary_setup ON {table}")
            continue
        for event in EVENTS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_diary_{event}")


class Migration(migrations.Migration):
    dependencies = [
        ("plans", "0003_planned_visit_as_proposed"),
        ("scheduler", "0018_diary_changes"),
    ]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
