"""Free slots as local wall-clock times, across DST changes in the US and the EU."""

from datetime import UTC, date, datetime, time, timedelta

import pytest

from scheduler import booking
from scheduler.availability import Availability, free_slots
from scheduler.models import Closure, TimeOff
from scheduler.timezones import AmbiguousLocalTime, NonexistentLocalTime, local_datetime, zone
from tests.conftest import MONDAY, SmallClinic, at

pytestmark = pytest.mark.usefixtures("now")

ALL_WEEK = range(7)


def starts(slots, clinician=None):
    return [f"{s.start:%H:%M}" for s in slots if clinician is None or s.clinician == clinician]


def test_slots_are_local_times_inside_both_clinic_and_clinician_hours(clinic):
    slots = free_slots(clinic.integration, MONDAY, MONDAY, step=timedelta(minutes=30))
    assert starts(slots) == [f"{h:02d}:{m:02d}" for h in range(9, 16) for m in (0, 30)] + ["16:00"]
    assert all(s.clinician == clinic.therapist and s.room is None for s in slots)
    assert slots[0].start.tzinfo.key == "America/New_York"
    assert slots[0].start.astimezone(UTC) == datetime(2030, 6, 3, 13, 0, tzinfo=UTC)


def test_slots_skip_booked_visits_time_off_closures_and_the_patients_own_visits(clinic):
    patient = clinic.patient()
    booking.book(
        patient=clinic.patient("Blake", "Sample"),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    TimeOff.objects.create(
        clinician=clinic.therapist, start=at(MONDAY, "12:00"), end=at(MONDAY, "13:00")
    )
    Closure.objects.create(clinic=clinic.clinic, start=at(MONDAY, "15:00"), end=at(MONDAY, "18:00"))
    booking.book(
        patient=patient,
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        room=clinic.room3,
        start=at(MONDAY, "14:00"),
    )
    slots = free_slots(
        clinic.integration, MONDAY, MONDAY, patient=patient, step=timedelta(minutes=30)
    )
    # 13:00-13:50 would end ten minutes before the patient's screening here (travel gap).
    assert starts(slots) == ["09:00", "11:00"]


def test_slots_need_a_free_room_with_the_capability(clinic):
    second_chair = clinic.room("Room 4", clinic.infusion_chair)
    other = clinic.clinician("Dr. Osei", "prescriber")
    first = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "08:00"),
    )
    slots = free_slots(clinic.iv, MONDAY, MONDAY, clinicians=[other], step=timedelta(hours=1))
    at_eight = [s for s in slots if s.start == at(MONDAY, "08:00")]
    assert [s.room for s in at_eight] == [second_chair]
    assert {s.room for s in slots} <= {clinic.room1, second_chair}
    booking.book(
        patient=clinic.patient("Blake", "Sample"),
        visit_type=clinic.iv,
        clinician=clinic.nurse if clinic.nurse.is_prescriber else other,
        room=second_chair,
        start=at(MONDAY, "08:00"),
    )
    slots = free_slots(clinic.iv, MONDAY, MONDAY, clinicians=[other], step=timedelta(hours=1))
    assert starts(slots)[0] == "10:00"
    assert first.room == clinic.room1


def test_slots_run_over_a_range_of_days_and_skip_closed_days(clinic):
    friday = MONDAY + timedelta(days=4)
    slots = free_slots(
        clinic.integration, friday, friday + timedelta(days=3), step=timedelta(hours=4)
    )
    assert sorted({s.start.date() for s in slots}) == [friday, friday + timedelta(days=3)]


@pytest.mark.parametrize(
    ("tz_name", "friday_before", "monday_after", "offsets"),
    [
        ("America/New_York", date(2030, 3, 8), date(2030, 3, 11), (-5, -4)),  # US spring
        ("America/New_York", date(2030, 11, 1), date(2030, 11, 4), (-4, -5)),  # US autumn
        ("Europe/Berlin", date(2030, 3, 29), date(2030, 4, 1), (1, 2)),  # EU spring
        ("Europe/Berlin", date(2030, 10, 25), date(2030, 10, 28), (2, 1)),  # EU autumn
    ],
)
def test_visits_keep_their_wall_clock_time_across_a_dst_change(
    db, tz_name, friday_before, monday_after, offsets
):
    clinic = SmallClinic(tz_name)
    for day, offset in zip((friday_before, monday_after), offsets, strict=True):
        slots = free_slots(clinic.integration, day, day, step=timedelta(hours=1))
        assert starts(slots)[0] == "09:00"
        assert slots[0].start.utcoffset() == timedelta(hours=offset)
        visit = booking.book(
            patient=clinic.patient(),
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=slots[0].start,
        )
        assert visit.start.astimezone(zone(tz_name)).time() == time(9, 0)


@pytest.mark.parametrize(
    ("tz_name", "spring_day", "skipped"),
    [("America/New_York", date(2030, 3, 10), "02"), ("Europe/Berlin", date(2030, 3, 31), "02")],
)
def test_no_slot_starts_in_the_hour_a_spring_change_skips(db, tz_name, spring_day, skipped):
    clinic = SmallClinic(tz_name, hours=("00:00", "23:59"), days=ALL_WEEK)
    slots = free_slots(
        clinic.screening,
        spring_day,
        spring_day,
        clinicians=[clinic.nurse],
        step=timedelta(minutes=30),
    )
    # The nurse is no prescriber; use the prescriber with all-day hours instead.
    assert slots == []
    owl = clinic.clinician("Dr. Night", "prescriber", hours=("00:00", "23:59"), days=ALL_WEEK)
    slots = free_slots(
        clinic.screening, spring_day, spring_day, clinicians=[owl], step=timedelta(minutes=30)
    )
    times = starts(slots)
    assert f"{skipped}:00" not in times and f"{skipped}:30" not in times
    assert times[:5] == ["00:00", "00:30", "01:00", "01:30", "03:00"]
    # A visit starting 01:30 lasts its full hour: it ends at 03:30 by the clock.
    half_past_one = next(s for s in slots if s.start.time() == time(1, 30))
    assert half_past_one.end.astimezone(UTC) - half_past_one.start.astimezone(UTC) == timedelta(
        hours=1
    )
    assert f"{half_past_one.end:%H:%M}" == "03:30"


@pytest.mark.parametrize(
    ("tz_name", "autumn_day"),
    [("America/New_York", date(2030, 11, 3)), ("Europe/Berlin", date(2030, 10, 27))],
)
def test_the_repeated_hour_of_an_autumn_change_offers_both_instants(db, tz_name, autumn_day):
    clinic = SmallClinic(tz_name, hours=("00:00", "23:59"), days=ALL_WEEK)
    owl = clinic.clinician("Dr. Night", "prescriber", hours=("00:00", "23:59"), days=ALL_WEEK)
    slots = free_slots(
        clinic.screening, autumn_day, autumn_day, clinicians=[owl], step=timedelta(hours=1)
    )
    repeated = "01:00" if tz_name.startswith("America") else "02:00"
    twice = [s.start for s in slots if f"{s.start:%H:%M}" == repeated]
    assert len(twice) == 2
    assert twice[1].astimezone(UTC) - twice[0].astimezone(UTC) == timedelta(hours=1)
    assert twice[0].utcoffset() - twice[1].utcoffset() == timedelta(hours=1)


def test_a_local_time_in_the_spring_gap_is_refused_clearly():
    with pytest.raises(
        NonexistentLocalTime, match="02:30 on 2030-03-10 does not exist in America/New_York"
    ):
        local_datetime(date(2030, 3, 10), time(2, 30), zone("America/New_York"))
    with pytest.raises(NonexistentLocalTime, match="Europe/Berlin"):
        local_datetime(date(2030, 3, 31), time(2, 15), zone("Europe/Berlin"))


def test_an_ambiguous_autumn_time_needs_an_explicit_choice():
    new_york = zone("America/New_York")
    with pytest.raises(AmbiguousLocalTime, match="01:30 on 2030-11-03 happens twice"):
        local_datetime(date(2030, 11, 3), time(1, 30), new_york)
    first = local_datetime(date(2030, 11, 3), time(1, 30), new_york, fold=0)
    second = local_datetime(date(2030, 11, 3), time(1, 30), new_york, fold=1)
    assert first.astimezone(UTC) == datetime(2030, 11, 3, 5, 30, tzinfo=UTC)
    assert second.astimezone(UTC) == datetime(2030, 11, 3, 6, 30, tzinfo=UTC)


def test_ordinary_local_times_convert_without_a_choice():
    nine = local_datetime(date(2030, 7, 1), time(9, 0), zone("Europe/Berlin"))
    assert nine.astimezone(UTC) == datetime(2030, 7, 1, 7, 0, tzinfo=UTC)


def test_slot_search_takes_a_fixed_number_of_queries(clinic, django_assert_max_num_queries):
    for day in range(5):
        booking.book(
            patient=clinic.patient(f"P{day}", "Example"),
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=at(MONDAY + timedelta(days=day), "10:00"),
        )
    # Hours, closures, clinicians, time off, rooms, the team, the visits
    # holding rooms and patients, and the people's times on visits.
    with django_assert_max_num_queries(10):
        slots = free_slots(clinic.iv, MONDAY, MONDAY + timedelta(days=13))
    assert len(slots) > 100


def test_first_room_skips_taken_and_unfit_rooms_and_gives_up_on_a_busy_clinician(clinic):
    patient, other = clinic.patient("P", "One"), clinic.patient("P", "Two")
    second = clinic.clinician("Dr. Second", "prescriber")
    booking.book(  # the prescriber infuses 08:00-10:00 in Room 1
        patient=other,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "08:00"),
    )
    booking.book(  # another prescriber holds Room 1 from 10:00
        patient=clinic.patient("P", "Three"),
        visit_type=clinic.screening,
        clinician=second,
        room=clinic.room1,
        start=at(MONDAY, "10:00"),
    )
    window = (at(MONDAY, "00:00"), at(MONDAY + timedelta(days=1), "00:00"))
    availability = Availability(clinic.clinic, *window, patients=[patient])
    rooms = [clinic.room1, clinic.room2, clinic.room3]
    nine, ten, noon = at(MONDAY, "09:00"), at(MONDAY, "10:00"), at(MONDAY, "12:00")

    def first(visit_type, clinician, start, among=rooms):
        return availability.first_room(visit_type, clinician, among, patient, start)

    assert first(clinic.screening, clinic.prescriber, ten) == clinic.room2  # Room 1 taken
    assert first(clinic.iv, clinic.prescriber, ten) is False  # only Room 1 has the chair
    assert first(clinic.iv, clinic.prescriber, noon) == clinic.room1
    assert first(clinic.screening, clinic.prescriber, nine, rooms[1:]) is False  # busy infusing
    assert first(clinic.iv, clinic.nurse, noon) is False  # not a prescriber: no room helps
    assert first(clinic.integration, clinic.therapist, ten) is None  # telehealth: no room
