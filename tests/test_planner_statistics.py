"""SQLite's planner statistics, refreshed by the worker once a day (scheduler/statistics.py):
without them SQLite reads the desk's "changed by patients" list through every patient's
visits; with them, through the few rows of the list's own index."""

from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule

from desk.frontdesk import changed_by_patients
from scheduler import statistics
from scheduler.models import Patient, Visit, VisitStatus
from tests.conftest import MONDAY, at, on_postgres


def test_the_worker_refreshes_the_statistics_every_day(db):
    schedule = Schedule.objects.get(name=statistics.SCHEDULE_NAME)
    assert (schedule.func, schedule.minutes, schedule.repeats) == (
        "scheduler.statistics.refresh",
        24 * 60,
        -1,
    )


@pytest.mark.skipif(on_postgres(), reason="PostgreSQL's autovacuum keeps its own statistics")
def test_with_fresh_statistics_the_desks_list_of_changes_reads_its_own_index(clinic):
    patients = Patient.objects.bulk_create(
        Patient(
            clinic=clinic.clinic,
            first_name=f"P{n}",
            last_name="Example",
            date_of_birth=date(1985, 4, 12),
        )
        for n in range(300)
    )
    start = at(MONDAY, "09:00")
    Visit.objects.bulk_create(
        Visit(
            patient=patient,
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=start + timedelta(days=week * 7),
            end=start + timedelta(days=week * 7, minutes=50),
            status=VisitStatus.BOOKED,
            changed_by_patient_at=timezone.now() if patient == patients[0] and week == 0 else None,
        )
        for patient in patients
        for week in range(10)
    )

    def plan() -> str:
        with CaptureQueriesContext(connection) as read:
            assert len(changed_by_patients(clinic.clinic)) == 1
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + read.captured_queries[-1]["sql"])
            return " | ".join(row[-1] for row in cursor.fetchall())

    assert "visit_changed_by_patient" not in plan()  # SQLite's guess: patient by patient
    assert statistics.refresh()
    assert "USING INDEX visit_changed_by_patient" in plan()
