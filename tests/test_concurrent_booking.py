"""Many front desks booking one slot at once: exactly one wins (docs/architecture.md invariant 1),
and a desk that loses is told why in the booking rules' words.

Each thread has its own database connection, as separate web processes would.
On SQLite the IMMEDIATE transaction serialises check and write; on PostgreSQL
the exclusion constraints refuse whatever slipped past a concurrent check.
"""

import threading
import time
from datetime import date, timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse

from scheduler import booking
from scheduler.booking import SlotTaken
from scheduler.models import Visit, VisitStatus
from tests.conftest import MONDAY, SmallClinic, at, on_postgres
from tests.page_helpers import front_desk, offered_times
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


def _backend_waits_for_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        (wait,) = cursor.fetchone()
    return wait == "Lock"


@pytest.mark.django_db(transaction=True)
def test_a_booking_cancelled_in_a_deadlock_starts_over_and_names_what_holds_the_time(now):
    """Two writers each wait for the other's row while checking the overlap constraints.

    PostgreSQL cancels one of them (here the booking, which waited first); the
    booking starts over and loses to the other writer like any taken time.
    """
    if not on_postgres():
        pytest.skip("SQLite's IMMEDIATE transactions never deadlock")
    clinic = SmallClinic()
    booker, other = clinic.patient("Booker", "Example"), clinic.patient("Other", "Example")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (booking_pid,) = cursor.fetchone()

    def other_writer():
        """Holds the booker at 10:00, then Room 3 at 11:00 once the booking waits for the first.

        PostgreSQL checks the room's constraint before the patient's, so the
        booking has already put its claim on Room 3 when it starts to wait.
        """

        def screening(patient, clinician, room, hour: int) -> None:
            Visit.objects.create(
                patient=patient,
                visit_type=clinic.screening,
                clinician=clinician,
                room=room,
                start=at(MONDAY, f"{hour}:00"),
                end=at(MONDAY, f"{hour + 1}:00"),
            )

        try:
            with transaction.atomic():
                screening(booker, clinic.nurse, clinic.room2, 10)
                deadline = time.monotonic() + 30
                while not _backend_waits_for_a_lock(booking_pid):
                    assert time.monotonic() < deadline, "the booking never waited"
                    time.sleep(0.02)
                screening(other, clinic.therapist, clinic.room3, 11)
        finally:
            connection.close()

    writer = threading.Thread(target=other_writer)
    writer.start()
    with pytest.raises(SlotTaken) as refused:
        booking.book(
            patient=booker,
            visit_type=clinic.screening,
            clinician=clinic.prescriber,
            room=clinic.room3,
            start=at(MONDAY, "10:30"),
        )
    writer.join(timeout=60)

    assert any("10:00-11:00" in problem for problem in refused.value.problems)
    assert any("11:00-12:00" in problem for problem in refused.value.problems)
    assert Visit.objects.filter(clinician=clinic.prescriber).count() == 0
    assert Visit.objects.count() == 2


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


def _desk() -> Client:
    desk = Client()
    desk.force_login(front_desk())
    return desk


def _move(desk: Client, url: str, slot: str, pause: float) -> str:
    time.sleep(pause)
    return desk.post(url, {"action": "move", "slot": slot}, follow=True).text


# The Monday after the `now` fixture's day (Wednesday 2 January 2030).
RACE_DAY = date(2030, 1, 7)


@pytest.mark.django_db(transaction=True)
def test_two_desks_moving_visits_into_one_slot_the_loser_sees_the_conflict_and_fresh_slots(now):
    clinic = SmallClinic()
    desks = [_desk(), _desk()]
    for round_ in range(8):
        target = at(RACE_DAY, f"{10 + round_:02d}:00")
        visits = [
            booking.book(
                patient=clinic.patient(f"Mover{round_}{i}", "Example"),
                visit_type=clinic.screening,
                clinician=clinic.prescriber,
                room=clinic.room3,
                start=at(RACE_DAY + timedelta(days=1 + i), f"{10 + round_:02d}:00"),
            )
            for i in range(2)
        ]
        urls = [reverse("desk_visit", args=[v.pk]) for v in visits]
        # Both desks open their visit and choose the same free time.
        chosen = [
            next(v for v in offered_times(d.get(u).text) if v.endswith(target.isoformat()))
            for d, u in zip(desks, urls, strict=True)
        ]
        assert chosen[0] == chosen[1]

        # Desks are never exactly together: the second presses a little later
        # each round, from the same instant to after the first move is done,
        # so the loser meets the winner at every step of a move.
        pages = race(
            [
                lambda d=d, u=u, c=c, pause=i * round_ * 0.01: _move(d, u, c, pause)
                for i, (d, u, c) in enumerate(zip(desks, urls, chosen, strict=True))
            ]
        )

        assert sum("Moved." in page for page in pages) == 1, pages
        [loser] = [page for page in pages if "Moved." not in page]
        assert "Select a valid choice" not in loser
        # The winner's visit holds the prescriber and the room: the loser is told
        # of one or both. (On PostgreSQL each read sees what has committed when it
        # runs; a winner committing between the people's and the rooms' reads
        # shows only the room.)
        [winner] = Visit.objects.filter(start=target).select_related("room")
        span = f"is booked {target:%H:%M}-{target.hour + 1:02d}:00 by another visit."
        assert f"{clinic.prescriber} {span}" in loser or f"{winner.room} {span}" in loser
        fresh = offered_times(loser)
        assert fresh and chosen[0] not in fresh


@pytest.mark.django_db
def test_a_desk_moving_to_a_time_taken_since_its_page_loaded_sees_the_conflict(now):
    clinic = SmallClinic()
    target = at(RACE_DAY, "10:00")
    late, early = (
        booking.book(
            patient=clinic.patient(f"Mover{i}", "Example"),
            visit_type=clinic.screening,
            clinician=clinic.prescriber,
            room=clinic.room3,
            start=at(RACE_DAY + timedelta(days=1 + i), "10:00"),
        )
        for i in range(2)
    )
    desk, other = _desk(), _desk()
    url = reverse("desk_visit", args=[late.pk])
    chosen = next(v for v in offered_times(desk.get(url).text) if v.endswith(target.isoformat()))
    other.post(reverse("desk_visit", args=[early.pk]), {"action": "move", "slot": chosen})
    early.refresh_from_db()
    assert early.start == target

    page = desk.post(url, {"action": "move", "slot": chosen}, follow=True).text
    assert "Select a valid choice" not in page and "Moved." not in page
    assert f"{clinic.prescriber} is booked 10:00-11:00 by another visit." in page
    assert offered_times(page) and chosen not in offered_times(page)
    late.refresh_from_db()
    assert late.sequence == 0


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
