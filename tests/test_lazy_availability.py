"""Loading visits on demand: the same answers as loading them all, in queries that do not grow."""

import random
from datetime import UTC, date, datetime, time, timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from plans.generator import generate
from plans.models import Protocol
from scheduler import booking
from scheduler.availability import Availability
from scheduler.models import Clinic, Clinician, Patient, Visit, VisitStatus, VisitType
from tests.conftest import MONDAY, at
from tests.plan_rules import rule_violations

pytestmark = pytest.mark.usefixtures("now")

SPILL_QUERIES = 3


def fill_diaries(clinic: Clinic, first: date, days: int, hours=(9, 10, 11)) -> int:
    """Telehealth visits for every clinician at ``hours`` on weekdays, one patient each."""
    integration = VisitType.objects.get(clinic=clinic, slug="integration")
    maintenance = VisitType.objects.get(clinic=clinic, slug="maintenance")
    rows = []
    for n, clinician in enumerate(Clinician.objects.filter(clinic=clinic).order_by("pk")):
        patient = Patient.objects.create(
            clinic=clinic,
            first_name="Busy",
            last_name=f"Diary {n}",
            date_of_birth=date(1980, 1, 1),
        )
        kind = integration if clinician.is_therapist else maintenance
        for offset in range(days):
            day = first + timedelta(days=offset)
            if day.weekday() >= 5:
                continue
            for hour in hours:
                start = datetime.combine(day, time(hour), tzinfo=clinic.tz)
                rows.append(
                    Visit(
                        patient=patient,
                        visit_type=kind,
                        clinician=clinician,
                        start=start,
                        end=start + kind.duration,
                        status=VisitStatus.BOOKED,
                    )
                )
    Visit.objects.bulk_create(rows)
    return len(rows)


@pytest.fixture
def demo(db):
    call_command("seed_demo", stdout=StringIO())
    return Clinic.objects.get(slug="riverside")


@pytest.mark.parametrize("slug", ["iv-induction", "kap-lozenge", "spravato"])
def test_plan_generation_queries_do_not_grow_with_the_visits_in_the_diaries(demo, slug):
    protocol = Protocol.objects.select_related("clinic").get(clinic=demo, slug=slug)
    patient = Patient.objects.filter(clinic=demo).order_by("pk").first()
    start = date(2030, 2, 4)

    with CaptureQueriesContext(connection) as empty:
        generate(patient, protocol, start)
    # Afternoons: with every morning taken, the IV plan has no room for the
    # integration after a Friday infusion before Monday's infusion (a telehealth
    # visit ends the travel gap before it), so the plan starts from a later day,
    # and trying later days costs queries of their own (test_plan_later_start.py).
    added = fill_diaries(demo, start - timedelta(days=7), 200, hours=(14, 15, 16))
    with CaptureQueriesContext(connection) as busy:
        proposal = generate(patient, protocol, start)

    assert added > 2_000
    # Visits are loaded by the blocks of days the search looks at: a fuller
    # diary can push the plan a week later, into one more block, never more
    # queries per visit in the diaries.
    assert len(busy.captured_queries) <= len(empty.captured_queries) + SPILL_QUERIES
    assert rule_violations(proposal) == []
    # The diaries were really consulted: nothing overlaps a visit already there.
    for visit in proposal.visits:
        assert not Visit.objects.filter(
            clinician=visit.clinician, start__lt=visit.end, end__gt=visit.start
        ).exists()


def test_a_lazy_availability_answers_exactly_as_an_eager_one(clinic):
    """Random visits over five weeks; hundreds of random candidates; the same problems either way."""
    rng = random.Random(7)
    people = [clinic.patient(f"P{n}", "Example") for n in range(6)]
    clinicians = [clinic.prescriber, clinic.therapist, clinic.nurse]
    rooms = [clinic.room1, clinic.room2, clinic.room3]
    held = []  # (holder, start, end) of the blocking visits so far
    for n in range(120):
        start = at(MONDAY + timedelta(days=rng.randrange(35)), f"{rng.randrange(8, 17):02d}:00")
        end = start + timedelta(minutes=rng.choice((30, 60, 90, 150)))
        patient, clinician = people[n % len(people)], rng.choice(clinicians)
        room = rng.choice([*rooms, None])
        holders = [h for h in (patient, clinician, room) if h is not None]
        status = rng.choice([VisitStatus.BOOKED, VisitStatus.CONFIRMED, VisitStatus.CANCELLED])
        if any(h in holders and s < end and start < e for h, s, e in held):
            status = VisitStatus.CANCELLED  # PostgreSQL refuses overlapping bookings
        Visit.objects.create(
            patient=patient,
            visit_type=clinic.screening,
            clinician=clinician,
            room=room,
            start=start,
            end=end,
            status=status,
        )
        if status != VisitStatus.CANCELLED:
            held += [(h, start, end) for h in holders]
    window = (at(MONDAY, "00:00"), at(MONDAY + timedelta(days=35), "00:00"))
    eager = Availability(clinic.clinic, *window, patients=people)
    lazy = Availability(clinic.clinic, *window, patients=people, lazy=True)
    compared = 0
    for _ in range(400):
        start = at(
            MONDAY + timedelta(days=rng.randrange(35)),
            f"{rng.randrange(7, 18):02d}:{rng.choice(('00', '15', '30', '45'))}",
        )
        args = (
            clinic.screening,
            rng.choice(clinicians),
            rng.choice(rooms),
            rng.choice(people),
            start.astimezone(UTC),
            start.astimezone(UTC) + timedelta(minutes=rng.choice((45, 60, 120))),
        )
        expected = eager.problems(*args)
        assert lazy.problems(*args) == expected
        compared += bool(expected)
    assert compared > 100  # many candidates did clash with something


def test_a_lazy_availability_loads_nothing_twice(clinic):
    patient = clinic.patient()
    booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    window = (at(MONDAY, "00:00"), at(MONDAY + timedelta(days=60), "00:00"))
    lazy = Availability(clinic.clinic, *window, lazy=True)
    day = (at(MONDAY, "00:00"), at(MONDAY + timedelta(days=1), "00:00"))
    with CaptureQueriesContext(connection) as first:
        lazy.load([clinic.therapist, clinic.prescriber], [clinic.room1], *day)
    with CaptureQueriesContext(connection) as again:
        lazy.load([clinic.therapist, clinic.prescriber], [clinic.room1], *day)
        clash = lazy.problems(
            clinic.integration, clinic.therapist, None, None, at(MONDAY, "10:30").astimezone(UTC)
        )
    # One query for the people's times on visits, one for the room's visits.
    assert len(first.captured_queries) == 2
    assert len(again.captured_queries) == 0
    assert any("is booked" in problem for problem in clash)


def test_visit_types_and_visits_last_at_most_a_day(clinic):
    clinic.integration.duration_minutes = 25 * 60
    with pytest.raises(ValidationError, match="at most 24 hours"):
        clinic.integration.full_clean()
    # A visit given its own end (the admin allows one) is held to the same.
    window = (at(MONDAY, "00:00"), at(MONDAY + timedelta(days=3), "00:00"))
    problems = Availability(clinic.clinic, *window).problems(
        clinic.screening,
        clinic.prescriber,
        clinic.room3,
        None,
        at(MONDAY, "09:00"),
        at(MONDAY + timedelta(days=1), "10:00"),
    )
    assert problems == ["A visit cannot last longer than 24 hours."]
