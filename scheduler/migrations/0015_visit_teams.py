"""Visits are staffed by teams (docs/architecture.md invariant 1).

Each visit type's one clinician role becomes its first staffing requirement;
each visit's clinician becomes its lead participant, holding the visit's whole
span while the visit holds time. On PostgreSQL a person's overlapping
participations are refused by an exclusion constraint on the participants,
which replaces the one on the visit's clinician (the lead is a participant).
"""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

BLOCKING = ("booked", "confirmed", "checked_in", "completed")


def teams_from_clinicians(apps, schema_editor):
    VisitType = apps.get_model("scheduler", "VisitType")
    StaffingRequirement = apps.get_model("scheduler", "StaffingRequirement")
    Visit = apps.get_model("scheduler", "Visit")
    VisitParticipant = apps.get_model("scheduler", "VisitParticipant")
    StaffingRequirement.objects.bulk_create(
        StaffingRequirement(visit_type_id=pk, position=0, roles=role)
        for pk, role in VisitType.objects.values_list("pk", "clinician_role")
    )
    rows = Visit.objects.values_list(
        "pk", "clinician_id", "visit_type__clinician_role", "start", "end", "status"
    ).order_by("pk")
    VisitParticipant.objects.bulk_create(
        (
            VisitParticipant(
                visit_id=pk,
                clinician_id=clinician_id,
                role=role,
                position=0,
                start=start,
                end=end,
                holds_time=status in BLOCKING,
            )
            for pk, clinician_id, role, start, end, status in rows.iterator()
        ),
        batch_size=1000,
    )


def clinicians_from_teams(apps, schema_editor):
    VisitType = apps.get_model("scheduler", "VisitType")
    for visit_type in VisitType.objects.all():
        first = visit_type.staffing.order_by("position", "pk").first()
        visit_type.clinician_role = first.roles.split(",")[0] if first else "prescriber"
        visit_type.save(update_fields=["clinician_role"])


def participant_constraint(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE scheduler_visit DROP CONSTRAINT IF EXISTS visit_no_clinician_overlap"
    )
    schema_editor.execute(
        "ALTER TABLE scheduler_visitparticipant ADD CONSTRAINT participant_no_overlap "
        "EXCLUDE USING gist (clinician_id WITH =, tstzrange(start, \"end\", '[)') WITH &&) "
        "WHERE (holds_time)"
    )


def visit_clinician_constraint(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE scheduler_visitparticipant DROP CONSTRAINT IF EXISTS participant_no_overlap"
    )
    schema_editor.execute(
        "ALTER TABLE scheduler_visit ADD CONSTRAINT visit_no_clinician_overlap "
        "EXCLUDE USING gist (clinician_id WITH =, tstzrange(start, \"end\", '[)') WITH &&) "
        "WHERE (status IN ('booked', 'confirmed', 'checked_in', 'completed'))"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("scheduler", "0014_clinic_public_holidays"),
    ]

    operations = [
        migrations.CreateModel(
            name="StaffingRequirement",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "position",
                    models.PositiveSmallIntegerField(
                        default=0,
                        help_text="The lead comes first: the clinician patients are told about.",
                    ),
                ),
                (
                    "roles",
                    models.CharField(
                        help_text="Any one of these roles fills the place (e.g. nurse or prescriber).",
                        max_length=60,
                    ),
                ),
                (
                    "count",
                    models.PositiveSmallIntegerField(
                        default=1,
                        help_text="How many such people.",
                        validators=[django.core.validators.MaxValueValidator(4)],
                    ),
                ),
                (
                    "joins_after_minutes",
                    models.PositiveIntegerField(
                        default=0,
                        help_text="After the visit starts. 0: from the start.",
                        verbose_name="joins after (minutes)",
                    ),
                ),
                (
                    "stays_minutes",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="Empty: to the end of the visit.",
                        null=True,
                        verbose_name="stays (minutes)",
                    ),
                ),
                (
                    "optional",
                    models.BooleanField(
                        default=False,
                        help_text="Booked when someone is free; the visit goes ahead without them otherwise.",
                    ),
                ),
                (
                    "visit_type",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="staffing",
                        to="scheduler.visittype",
                    ),
                ),
            ],
            options={
                "verbose_name": "team member needed",
                "verbose_name_plural": "team",
                "ordering": ["visit_type", "position", "pk"],
            },
        ),
        migrations.CreateModel(
            name="VisitParticipant",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "role",
                    models.CharField(
                        choices=[
                            ("prescriber", "Prescriber"),
                            ("therapist", "Therapist"),
                            ("nurse", "Nurse"),
                        ],
                        max_length=20,
                    ),
                ),
                ("position", models.PositiveSmallIntegerField(default=0)),
                ("joins_after_minutes", models.PositiveIntegerField(default=0)),
                ("stays_minutes", models.PositiveIntegerField(blank=True, null=True)),
                ("start", models.DateTimeField()),
                ("end", models.DateTimeField()),
                ("holds_time", models.BooleanField(default=True)),
                (
                    "clinician",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="participations",
                        to="scheduler.clinician",
                    ),
                ),
                (
                    "visit",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="participants",
                        to="scheduler.visit",
                    ),
                ),
            ],
            options={
                "ordering": ["visit", "position"],
                "indexes": [
                    models.Index(fields=["clinician", "start"], name="participant_clinician_start")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("visit", "clinician"), name="participant_once_a_visit"
                    ),
                    models.UniqueConstraint(
                        fields=("visit", "position"), name="participant_position"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("end__gt", models.F("start"))),
                        name="participant_ends_after_start",
                    ),
                ],
            },
        ),
        migrations.RunPython(teams_from_clinicians, clinicians_from_teams),
        # A default, so that migrating back can add the column to existing rows.
        migrations.AlterField(
            model_name="visittype",
            name="clinician_role",
            field=models.CharField(
                choices=[
                    ("prescriber", "Prescriber"),
                    ("therapist", "Therapist"),
                    ("nurse", "Nurse"),
                ],
                default="prescriber",
                max_length=20,
            ),
        ),
        migrations.RemoveField(
            model_name="visittype",
            name="clinician_role",
        ),
        migrations.RunPython(participant_constraint, visit_clinician_constraint),
    ]
