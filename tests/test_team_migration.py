"""The migration to care teams loses nothing: each visit keeps its clinician as its lead.

Run on the demo clinic's database as it stood before teams (the test database,
seeded, then migrated back to scheduler 0014), then forward again.
"""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from scheduler.models import BLOCKING_STATUSES, StaffingRequirement, Visit, VisitParticipant


def rows(sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return sorted(cursor.fetchall())


@pytest.mark.django_db(transaction=True)
def test_every_visit_keeps_its_clinician_as_lead_through_the_team_migration():
    call_command("seed_demo", stdout=StringIO())
    call_command("migrate", "scheduler", "0014", verbosity=0)
    before_visits = rows(
        'SELECT id, uid, patient_id, clinician_id, room_id, start, "end", status, sequence '
        "FROM scheduler_visit"
    )
    roles = dict(rows("SELECT id, clinician_role FROM scheduler_visittype"))
    assert len(before_visits) >= 20 and set(roles.values()) == {"prescriber", "therapist", "nurse"}

    call_command("migrate", verbosity=0)

    after_visits = rows(
        'SELECT id, uid, patient_id, clinician_id, room_id, start, "end", status, sequence '
        "FROM scheduler_visit"
    )
    assert after_visits == before_visits
    for visit in Visit.objects.select_related("visit_type"):
        [lead] = VisitParticipant.objects.filter(visit=visit)
        assert (lead.clinician_id, lead.position) == (visit.clinician_id, 0)
        assert lead.role == roles[visit.visit_type_id]
        assert (lead.start, lead.end) == (visit.start, visit.end)
        assert lead.holds_time == (visit.status in BLOCKING_STATUSES)
    for type_id, role in roles.items():
        assert list(
            StaffingRequirement.objects.filter(visit_type_id=type_id).values_list(
                "position", "roles", "count", "stays_minutes", "optional"
            )
        ) == [(0, role, 1, None, False)]
