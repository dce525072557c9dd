"""Many front desks booking one slot at once: exactly one wins (docs/architecture.md invariant 1).

Each thread has its own database connection, as separate web processes would.
On SQLite the IMMEDIATE transaction serialises check and write; on PostgreSQL
the exclusion constraints refuse whatever slipped past a concurrent check.
"""

import pytest
from django.db import IntegrityError, transaction

from scheduler import booking
from scheduler.booking import SlotTaken
from scheduler.models import Visit, VisitStatus
from tests.conftest import MONDAY, SmallClinic, at, on_postgres
from tests.races import race

RACERS = 24


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("contended", ["room and clinician", "patient"])
def test_concurrent_bookings_of_one_slot_leave_exactly_one_visit(now, contended):
    clinic = SmallClinic()
    patients = [clinic.patient(f"Racer{i}", "Example") for i in range(RACERS)]
    prescribers = [clinic.clinician(f"Dr. Racer {i}", "prescriber") for i in range(RACERS)]
    rooms = [clinic.room(f"Room R{i}") for i in range(RACERS)]

    def attempt(i):
        if contended == "patient":  # same patient, everyone else different
            kwargs = {"patient": patients[0], "clinician": prescribers[i], "room": rooms[i]}
        else:  # same clinician and room, different patients
            kwargs = {"patient": patients[i], "clinician": prescribers[0], "room": rooms[0]}
        return lambda: booking.book(
            visit_type=clinic.screening, start=at(MONDAY, "10:00"), **kwargs
        )

    outcomes = race([attempt(i) for i in range(RACERS)])

    winners = [o for o in outcomes if isinstance(o, Visit)]
    losers = [o for o in outcomes if isinstance(o, SlotTaken)]
    assert len(winners) == 1, outcomes
    assert len(losers) == RACERS - 1, [o for o in outcomes if not isinstance(o, SlotTaken | Visit)]
    for loser in losers:
        assert any("10:00-11:00" in problem for problem in loser.problems), loser.problems
    assert Visit.objects.count() == 1
    assert Visit.objects.get().pk == winners[0].pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_moves_into_one_slot_leave_exactly_one_there(now):
    clinic = SmallClinic()
    visits = [
        booking.book(
            patient=clinic.patient(f"Mover{i}", "Example"),
            visit_type=clinic.screening,
            clinician=clinic.prescriber,
            room=clinic.room3,
            start=at(MONDAY.replace(day=MONDAY.day + 1 + i // 8), f"{8 + i % 8:02d}:00"),
        )
        for i in range(20)
    ]

    outcomes = race([lambda v=v: booking.move(v, start=at(MONDAY, "10:00")) for v in visits])

    assert sum(isinstance(o, Visit) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, SlotTaken) for o in outcomes) == len(visits) - 1
    at_ten = Visit.objects.filter(start=at(MONDAY, "10:00"))
    assert at_ten.count() == 1
    assert at_ten.get().sequence == 1
    assert Visit.objects.filter(sequence=0).count() == len(visits) - 1


@pytest.mark.django_db
def test_postgresql_itself_refuses_overlapping_active_visits(now):
    if not on_postgres():
        pytest.skip("exclusion constraints exist only on PostgreSQL")
    clinic = SmallClinic()
    first = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        room=clinic.room3,
        start=at(MONDAY, "10:00"),
    )
    overlapping = {
        "visit_type": clinic.screening,
        "start": at(MONDAY, "10:30"),
        "end": at(MONDAY, "11:30"),
        "status": VisitStatus.BOOKED,
    }
    for clash in [
        {
            "patient": clinic.patient("Blake", "Sample"),
            "clinician": clinic.prescriber,
            "room": clinic.room2,
        },
        {
            "patient": clinic.patient("Casey", "Sample"),
            "clinician": clinic.nurse,
            "room": clinic.room3,
        },
        {"patient": first.patient, "clinician": clinic.nurse, "room": clinic.room2},
    ]:
        with pytest.raises(IntegrityError), transaction.atomic():
            Visit.objects.create(**overlapping, **clash)
    # Statuses that do not hold the slot are not refused.
    Visit.objects.create(
        **{**overlapping, "status": VisitStatus.CANCELLED},
        patient=first.patient,
        clinician=clinic.prescriber,
        room=clinic.room3,
    )
    assert Visit.objects.count() == 2
