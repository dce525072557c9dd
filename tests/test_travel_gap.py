"""A patient gets from a video visit to the clinic, and home again, in the clinic's travel gap.

A proposal once put a telehealth preparation at 10:00-10:50 and an infusion
at 11:00 the same morning: the patient would have had to leave home during
the call. ``Clinic.travel_gap_minutes`` (default 60) keeps a patient's
telehealth and in-clinic visits that far apart, either way round, in plans,
in the times offered and in bookings.
"""

from datetime import timedelta

import pytest

from plans.generator import generate
from plans.models import Anchor, Protocol, ProtocolStep
from scheduler import booking
from scheduler.availability import free_slots
from scheduler.booking import BookingError
from tests.conftest import MONDAY, at
from tests.plan_rules import rule_violations

pytestmark = pytest.mark.usefixtures("now")


def local(visit, tz) -> str:
    return f"{visit.start.astimezone(tz):%H:%M}-{visit.end.astimezone(tz):%H:%M}"


def video_then_infusion(clinic) -> Protocol:
    """A telehealth visit, then an infusion as soon after it as the rules allow."""
    protocol = Protocol.objects.create(clinic=clinic.clinic, name="Prepare, dose", slug="p-d")
    ProtocolStep.objects.create(
        protocol=protocol, position=1, visit_type=clinic.integration, anchor=Anchor.START
    )
    ProtocolStep.objects.create(protocol=protocol, position=2, visit_type=clinic.iv)
    return protocol


def busy_therapist_until_ten(clinic) -> None:
    """Another patient has the therapist 09:00-09:50, so the video visit starts at 10:00."""
    booking.book(
        patient=clinic.patient("Blake", "Other"),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "09:00"),
    )


def test_a_plan_puts_no_infusion_right_after_a_video_visit_the_same_day(clinic):
    busy_therapist_until_ten(clinic)
    patient = clinic.patient()
    proposal = generate(patient, video_then_infusion(clinic), MONDAY)
    video, infusion = sorted(proposal.visits, key=lambda v: v.start)
    tz = clinic.clinic.tz
    assert local(video, tz) == "10:00-10:50"
    # Without the travel gap the infusion was proposed for 11:00; 11:50 is off the half-hour grid.
    assert infusion.start - video.end >= timedelta(minutes=60)
    assert local(infusion, tz) == "12:00-14:00"
    assert rule_violations(proposal) == []


def test_a_plan_puts_no_video_visit_right_before_an_infusion_already_booked(clinic):
    busy_therapist_until_ten(clinic)
    patient = clinic.patient()
    booking.book(
        patient=patient,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "11:00"),
    )
    protocol = Protocol.objects.create(clinic=clinic.clinic, name="Video", slug="video")
    ProtocolStep.objects.create(
        protocol=protocol, position=1, visit_type=clinic.integration, anchor=Anchor.START
    )
    proposal = generate(patient, protocol, MONDAY)
    (video,) = proposal.visits
    # Not 10:00-10:50 (ten minutes before the infusion), nor 13:00 (as it ends).
    assert local(video, clinic.clinic.tz) == "14:00-14:50"
    assert rule_violations(proposal) == []


def test_a_plan_lets_the_patient_get_home_after_an_infusion_before_a_video_visit(clinic):
    protocol = Protocol.objects.create(clinic=clinic.clinic, name="Dose, video", slug="d-v")
    ProtocolStep.objects.create(
        protocol=protocol, position=1, visit_type=clinic.iv, anchor=Anchor.START
    )
    ProtocolStep.objects.create(protocol=protocol, position=2, visit_type=clinic.integration)
    proposal = generate(clinic.patient(), protocol, MONDAY)
    infusion, video = sorted(proposal.visits, key=lambda v: v.start)
    tz = clinic.clinic.tz
    assert local(infusion, tz) == "08:00-10:00"
    assert local(video, tz) == "11:00-11:50"  # not 10:00, as the infusion ends


def test_booking_a_video_visit_too_close_to_an_infusion_is_refused_saying_why(clinic):
    patient = clinic.patient()
    booking.book(
        patient=patient,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "11:00"),
    )
    with pytest.raises(BookingError) as refused:
        booking.book(
            patient=patient,
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=at(MONDAY, "10:00"),
        )
    assert str(refused.value) == (
        "Avery Example has an in-clinic visit 11:00-13:00; the clinic keeps 60 minutes "
        "between a telehealth visit and one at the clinic, for the journey."
    )
    late = booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "14:00"),
    )
    with pytest.raises(BookingError, match="has an in-clinic visit 11:00-13:00"):
        booking.move(late, start=at(MONDAY, "13:30"))


def test_free_times_for_a_patient_keep_the_gap_either_side_of_their_visit_here(clinic):
    patient = clinic.patient()
    booking.book(
        patient=patient,
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        room=clinic.room3,
        start=at(MONDAY, "12:00"),
    )
    slots = free_slots(
        clinic.integration, MONDAY, MONDAY, patient=patient, step=timedelta(minutes=30)
    )
    starts = [f"{slot.start:%H:%M}" for slot in slots]
    # 09:00-10:50 end by 11:00; the screening ends at 13:00, so video from 14:00.
    assert starts == ["09:00", "09:30", "10:00", "14:00", "14:30", "15:00", "15:30", "16:00"]


def test_visits_of_one_modality_may_follow_each_other_at_once(clinic):
    patient = clinic.patient()
    booking.book(
        patient=patient,
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        room=clinic.room3,
        start=at(MONDAY, "09:00"),
    )
    booking.book(
        patient=patient,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "10:00"),
    )
    booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY + timedelta(days=1), "09:00"),
    )
    booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY + timedelta(days=1), "09:50"),
    )


def test_a_clinic_sets_its_own_travel_gap_and_zero_turns_it_off(clinic):
    patient = clinic.patient()
    booking.book(
        patient=patient,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "11:00"),
    )
    clinic.clinic.travel_gap_minutes = 90
    clinic.clinic.save()
    patient.refresh_from_db()
    with pytest.raises(BookingError, match="keeps 90 minutes"):
        booking.book(
            patient=patient,
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=at(MONDAY, "14:00"),
        )
    clinic.clinic.travel_gap_minutes = 0
    clinic.clinic.save()
    patient.refresh_from_db()
    booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:10"),
    )
