"""Booking, moving, cancelling and the visit's life cycle (check in, complete, no-show)."""

from datetime import UTC, datetime, timedelta

import pytest

from scheduler import booking
from scheduler.booking import BookingError, InvalidTransition, SlotTaken
from scheduler.models import Closure, TimeOff, Visit, VisitStatus
from tests.conftest import MONDAY, at

pytestmark = pytest.mark.usefixtures("now")


def book_screening(clinic, patient, hh_mm="10:00", **kwargs):
    kwargs.setdefault("room", clinic.room3)
    kwargs.setdefault("clinician", clinic.prescriber)
    return booking.book(
        patient=patient, visit_type=clinic.screening, start=at(MONDAY, hh_mm), **kwargs
    )


def test_booking_inside_hours_creates_one_booked_visit_with_stable_uid(clinic):
    patient = clinic.patient()
    visit = book_screening(clinic, patient)
    assert visit.status == VisitStatus.BOOKED
    assert visit.end - visit.start == timedelta(minutes=60)
    assert visit.start.astimezone(UTC) == datetime(2030, 6, 3, 14, 0, tzinfo=UTC)
    assert visit.uid.endswith("@kap-scheduler") and len(visit.uid) > 30
    assert visit.sequence == 0
    assert Visit.objects.count() == 1


def test_naive_start_is_refused(clinic):
    with pytest.raises(ValueError, match="no time zone"):
        booking.book(
            patient=clinic.patient(),
            visit_type=clinic.screening,
            clinician=clinic.prescriber,
            room=clinic.room3,
            start=datetime(2030, 6, 3, 10, 0),
        )


def test_booking_in_the_past_or_beyond_the_horizon_is_refused(clinic):
    patient = clinic.patient()
    with pytest.raises(BookingError, match="in the past"):
        booking.book(
            patient=patient,
            visit_type=clinic.screening,
            clinician=clinic.prescriber,
            room=clinic.room3,
            start=at(MONDAY.replace(year=2029), "10:00"),
        )
    with pytest.raises(BookingError, match="at most 730 days ahead"):
        booking.book(
            patient=patient,
            visit_type=clinic.screening,
            clinician=clinic.prescriber,
            room=clinic.room3,
            start=at(MONDAY.replace(year=2033), "10:00"),
        )
    assert not Visit.objects.exists()


def test_booking_outside_clinic_hours_names_the_hours(clinic):
    with pytest.raises(BookingError) as refused:
        book_screening(clinic, clinic.patient(), "17:30")
    assert (
        "The clinic is open 08:00-18:00 on Mondays; the visit runs 17:30-18:30."
        in refused.value.problems
    )
    assert not Visit.objects.exists()


def test_booking_on_a_closed_weekday_is_refused(clinic):
    sunday = MONDAY - timedelta(days=1)
    with pytest.raises(BookingError, match="The clinic is closed on Sundays."):
        booking.book(
            patient=clinic.patient(),
            visit_type=clinic.screening,
            clinician=clinic.prescriber,
            room=clinic.room3,
            start=at(sunday, "10:00"),
        )


def test_booking_outside_the_clinicians_hours_is_refused(clinic):
    with pytest.raises(
        BookingError, match=r"Sam Rivers works 09:00-17:00 on Mondays; the visit runs 08:00-08:50"
    ):
        booking.book(
            patient=clinic.patient(),
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=at(MONDAY, "08:00"),
        )


def test_booking_during_time_off_and_closures_is_refused(clinic):
    TimeOff.objects.create(
        clinician=clinic.prescriber,
        start=at(MONDAY, "09:00"),
        end=at(MONDAY, "12:00"),
        reason="Training",
    )
    Closure.objects.create(
        clinic=clinic.clinic,
        start=at(MONDAY, "11:00"),
        end=at(MONDAY, "13:00"),
        reason="Fire drill",
    )
    with pytest.raises(BookingError) as refused:
        book_screening(clinic, clinic.patient(), "11:00")
    assert refused.value.problems == [
        "The clinic is closed 11:00-13:00 (Fire drill).",
        "Dr. Alvarez is off 09:00-12:00.",
    ]


def test_room_needs_the_capability_and_clinician_the_role(clinic):
    with pytest.raises(BookingError) as refused:
        booking.book(
            patient=clinic.patient(),
            visit_type=clinic.iv,
            clinician=clinic.therapist,
            room=clinic.room2,
            start=at(MONDAY, "10:00"),
        )
    assert refused.value.problems[:2] == [
        "Iv Infusion needs a prescriber; Sam Rivers is not one.",
        "Room 2 has no infusion chair, which Iv Infusion needs.",
    ]


def test_in_person_visits_need_a_room_and_telehealth_visits_take_none(clinic):
    patient = clinic.patient()
    with pytest.raises(BookingError, match="is in person and needs a room"):
        book_screening(clinic, patient, room=None)
    with pytest.raises(BookingError, match="is a telehealth visit and takes no room"):
        booking.book(
            patient=patient,
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            room=clinic.room3,
            start=at(MONDAY, "10:00"),
        )


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (
            {"room": "room3", "clinician": "nurse_as_prescriber", "patient": "other"},
            "Room 3 is booked 10:00-11:00 by another visit.",
        ),
        (
            {"room": "room2", "clinician": "prescriber", "patient": "other"},
            "Dr. Alvarez is booked 10:00-11:00 by another visit.",
        ),
        (
            {"room": "room2", "clinician": "nurse_as_prescriber", "patient": "same"},
            "Avery Example already has a visit 10:00-11:00.",
        ),
    ],
    ids=["room", "clinician", "patient"],
)
def test_overlap_with_an_active_visit_names_the_resource_and_times(clinic, second, message):
    patient = clinic.patient()
    other_prescriber = clinic.clinician("Dr. Osei", "prescriber")
    book_screening(clinic, patient, "10:00")
    with pytest.raises(SlotTaken) as refused:
        booking.book(
            patient=patient if second["patient"] == "same" else clinic.patient("Blake", "Sample"),
            visit_type=clinic.screening,
            clinician=clinic.prescriber
            if second["clinician"] == "prescriber"
            else other_prescriber,
            room=getattr(clinic, second["room"]),
            start=at(MONDAY, "10:30"),
        )
    assert refused.value.problems == [message]
    assert Visit.objects.count() == 1


def test_back_to_back_visits_do_not_overlap(clinic):
    patient = clinic.patient()
    book_screening(clinic, patient, "10:00")
    book_screening(clinic, patient, "11:00")
    assert Visit.objects.count() == 2


def test_a_cancelled_visit_frees_its_slot(clinic):
    visit = book_screening(clinic, clinic.patient())
    booking.cancel(visit, "Patient asked")
    book_screening(clinic, clinic.patient("Blake", "Sample"))
    assert Visit.objects.blocking().count() == 1


def test_moving_keeps_the_uid_and_raises_the_sequence(clinic):
    visit = book_screening(clinic, clinic.patient())
    uid = visit.uid
    booking.move(visit, start=at(MONDAY, "14:00"))
    assert visit.uid == uid
    assert visit.sequence == 1
    assert visit.start == at(MONDAY, "14:00")
    assert visit.end == at(MONDAY, "15:00")


def test_a_refused_move_changes_nothing(clinic):
    blocker = book_screening(clinic, clinic.patient("Blake", "Sample"), "14:00")
    visit = book_screening(clinic, clinic.patient(), "10:00", room=clinic.room2)
    with pytest.raises(SlotTaken, match="Dr. Alvarez is booked 14:00-15:00"):
        booking.move(visit, start=at(MONDAY, "14:30"))
    visit.refresh_from_db()
    assert (visit.start, visit.sequence, visit.status) == (
        at(MONDAY, "10:00"),
        0,
        VisitStatus.BOOKED,
    )
    blocker.refresh_from_db()
    assert blocker.start == at(MONDAY, "14:00")


def test_a_visit_can_move_onto_its_own_old_time_range(clinic):
    visit = book_screening(clinic, clinic.patient(), "10:00")
    booking.move(visit, start=at(MONDAY, "10:30"))
    assert visit.start == at(MONDAY, "10:30")


def test_moving_a_confirmed_visit_asks_for_confirmation_again(clinic):
    visit = booking.confirm(book_screening(clinic, clinic.patient()))
    assert visit.status == VisitStatus.CONFIRMED
    booking.move(visit, start=at(MONDAY, "15:00"))
    assert visit.status == VisitStatus.BOOKED


def test_cancelling_records_the_reason_raises_the_sequence_and_is_final(clinic):
    visit = book_screening(clinic, clinic.patient())
    booking.cancel(visit, "  Feeling unwell  ")
    assert (visit.status, visit.sequence, visit.cancellation_reason) == (
        VisitStatus.CANCELLED,
        1,
        "Feeling unwell",
    )
    with pytest.raises(InvalidTransition, match="A cancelled visit cannot be cancelled."):
        booking.cancel(visit)
    with pytest.raises(InvalidTransition, match="cannot be moved"):
        booking.move(visit, start=at(MONDAY, "15:00"))


def test_check_in_complete_and_no_show_follow_the_visit_life_cycle(clinic, now):
    patient = clinic.patient()
    first = book_screening(clinic, patient, "10:00")
    second = book_screening(clinic, patient, "12:00")
    with pytest.raises(InvalidTransition, match="only on its own day"):
        booking.check_in(first)
    with pytest.raises(InvalidTransition, match="not started yet"):
        booking.mark_no_show(second)
    with pytest.raises(InvalidTransition, match="A booked visit cannot be completed."):
        booking.complete(first)

    now.move_to(at(MONDAY, "09:55"))
    booking.check_in(first)
    booking.complete(first)
    assert first.status == VisitStatus.COMPLETED

    now.move_to(at(MONDAY, "12:20"))
    booking.mark_no_show(second)
    assert second.status == VisitStatus.NO_SHOW
    with pytest.raises(InvalidTransition):
        booking.check_in(second)


def test_a_dosing_visit_cannot_be_checked_in_without_a_ride_home(clinic, now):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "10:00"),
    )
    assert visit.lacks_ride_home
    now.move_to(at(MONDAY, "09:50"))
    with pytest.raises(BookingError, match="Record a ride home"):
        booking.check_in(visit)
    booking.arrange_ride_home(visit)
    booking.check_in(visit)
    assert visit.status == VisitStatus.CHECKED_IN and not visit.lacks_ride_home


def test_confirming_twice_is_harmless(clinic):
    visit = book_screening(clinic, clinic.patient())
    booking.confirm(visit)
    booking.confirm(visit)
    assert visit.status == VisitStatus.CONFIRMED


def test_registered_booking_checks_can_refuse_a_booking_or_confirmation(clinic):
    def no_mondays(visit):
        return (
            ["No visits for this patient on Mondays."]
            if visit.patient.last_name == "Mondayless"
            else []
        )

    booking.booking_checks.append(no_mondays)
    try:
        with pytest.raises(BookingError, match="No visits for this patient on Mondays"):
            book_screening(clinic, clinic.patient("Casey", "Mondayless"))
        assert not Visit.objects.exists()
        book_screening(clinic, clinic.patient())
    finally:
        booking.booking_checks.remove(no_mondays)


@pytest.mark.django_db(transaction=True)
def test_each_change_is_announced_once_after_commit_and_never_for_a_rollback(now):
    from django.db import transaction

    from scheduler.booking import visit_changed, visit_saved
    from tests.conftest import SmallClinic

    clinic = SmallClinic()
    heard, saved = [], []

    def listener(sender, visit, change, **kwargs):
        heard.append((visit.pk, str(change), visit.sequence))

    def in_transaction(sender, visit, change, **kwargs):
        saved.append((str(change), transaction.get_connection().in_atomic_block))

    visit_changed.connect(listener)
    visit_saved.connect(in_transaction)
    try:
        visit = book_screening(clinic, clinic.patient())
        booking.move(visit, start=at(MONDAY, "13:00"))
        with pytest.raises(RuntimeError), transaction.atomic():
            booking.cancel(visit, "rolled back")
            raise RuntimeError("the surrounding work failed")
        booking.confirm(visit)
        booking.cancel(visit, "Patient asked")
    finally:
        visit_changed.disconnect(listener)
        visit_saved.disconnect(in_transaction)
    assert saved == [
        (change, True) for change in ("booked", "moved", "cancelled", "confirmed", "cancelled")
    ]
    assert heard == [
        (visit.pk, "booked", 0),
        (visit.pk, "moved", 1),
        (visit.pk, "confirmed", 1),
        (visit.pk, "cancelled", 2),
    ]


def test_a_dosing_visit_type_leaves_time_to_give_the_dose_before_its_monitoring(clinic):
    from django.core.exceptions import ValidationError

    clinic.iv.monitoring_minutes = clinic.iv.duration_minutes
    with pytest.raises(ValidationError, match="Leave time before the monitoring"):
        clinic.iv.full_clean()
