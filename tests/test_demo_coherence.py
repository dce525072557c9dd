"""The demo clinic tells a story that could be true, on whatever day it is seeded.

A screening is cleared at or after the visit it was done in, never before;
preparation follows a screening; every dose has a cleared screening and a ride
home; every integration follows a dose; nothing lands on a public holiday the
clinic is closed on; no patient rushes between a video visit and the clinic.
Checked from the rows themselves (the holiday calendar straight from the
``holidays`` library), not through the code that seeded them.
"""

from datetime import UTC, datetime, timedelta
from io import StringIO

import holidays
import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command

from plans.models import Screening
from scheduler.models import (
    BLOCKING_STATUSES,
    Clinic,
    ClosureKind,
    Modality,
    Visit,
    VisitKind,
    VisitStatus,
)
from scheduler.roles import access_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

# The test clock's day, and the Friday before Thanksgiving 2030: the demo's
# bookings then span Thanksgiving, and its past visits Veterans Day and New
# York's Election Day (a state holiday the demo clinic works on).
CLOCKS = {
    "new-year": datetime(2030, 1, 2, 12, tzinfo=UTC),
    "thanksgiving": datetime(2030, 11, 22, 15, tzinfo=UTC),
}


@pytest.fixture
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(params=sorted(CLOCKS))
def demo(request, db):
    with time_machine.travel(CLOCKS[request.param], tick=False):
        call_command("seed_demo", stdout=StringIO())
        yield Clinic.objects.get(slug="riverside")


def visits(**filters) -> list[Visit]:
    return list(
        Visit.objects.filter(status__in=BLOCKING_STATUSES, **filters)
        .select_related("visit_type", "patient")
        .order_by("start")
    )


def test_a_screening_is_cleared_only_after_the_visit_it_was_done_in(demo):
    cleared = Screening.objects.filter(cleared=True).select_related("patient")
    assert cleared.count() >= 5
    for screening in cleared:
        own = visits(patient=screening.patient, visit_type__kind=VisitKind.SCREENING)
        assert own, f"{screening.patient}: cleared without a screening visit"
        done = [v for v in own if v.status == VisitStatus.COMPLETED]
        assert done, f"{screening.patient}: cleared, but no screening visit was completed"
        assert all(v.end <= screening.cleared_at for v in own), (
            f"{screening.patient}: cleared {screening.cleared_at}, before a screening visit"
        )
        assert done[0].start <= screening.answered_at <= screening.cleared_at


def test_preparation_follows_a_screening(demo):
    for preparation in visits(visit_type__kind=VisitKind.PREPARATION):
        screenings = visits(patient=preparation.patient, visit_type__kind=VisitKind.SCREENING)
        assert any(s.end <= preparation.start for s in screenings), preparation.patient


def test_every_dose_has_a_cleared_screening_and_a_ride_home(demo):
    doses = visits(visit_type__kind=VisitKind.DOSING)
    assert doses
    for dose in doses:
        assert Screening.objects.filter(
            patient=dose.patient, cleared=True, cleared_at__lte=dose.start
        ).exists(), dose.patient
        assert dose.ride_home_arranged, dose.patient


def test_every_integration_follows_a_dose_of_the_same_patient(demo):
    integrations = visits(visit_type__kind=VisitKind.INTEGRATION)
    assert integrations
    for integration in integrations:
        doses = visits(patient=integration.patient, visit_type__kind=VisitKind.DOSING)
        assert any(d.end <= integration.start for d in doses), (
            f"{integration.patient}: integration {integration.start} with no dose before it"
        )


def test_no_demo_visit_is_on_a_public_holiday_the_clinic_is_closed_on(demo):
    tz = demo.tz
    everything = visits(patient__clinic=demo)
    calendar = holidays.country_holidays(
        demo.country,
        subdiv=demo.subdivision or None,
        years={v.start.astimezone(tz).year for v in everything},
    )
    opened = list(demo.closures.filter(kind=ClosureKind.OPEN).values_list("start", "end"))
    for visit in everything:
        day = visit.start.astimezone(tz).date()
        if day in calendar:
            assert any(start <= visit.start and visit.end <= end for start, end in opened), (
                f"{visit.visit_type} of {visit.patient} on {day}, {calendar[day]}"
            )


def test_no_patient_goes_between_a_video_visit_and_the_clinic_within_the_travel_gap(demo):
    gap = demo.travel_gap
    everything = visits(patient__clinic=demo)
    for visit in everything:
        for other in everything:
            if other.patient_id != visit.patient_id or other.start < visit.end:
                continue
            if visit.visit_type.modality != other.visit_type.modality:
                assert other.start - visit.end >= gap, (visit, other)


def test_visits_in_the_past_are_completed_and_those_ahead_are_booked(demo):
    now = datetime.now(UTC)
    for visit in visits(patient__clinic=demo):
        expected = VisitStatus.COMPLETED if visit.end <= now else VisitStatus.BOOKED
        assert visit.status == expected, visit
    assert Visit.objects.filter(start__gt=now + timedelta(days=15)).count() == 0
    assert not visits(visit_type__modality=Modality.TELEHEALTH, room__isnull=False)


def test_two_locations_a_desk_user_of_both_and_one_of_denver_only(demo):
    denver = Clinic.objects.get(slug="riverside-denver")
    assert (demo.time_zone, denver.time_zone) == ("America/New_York", "America/Denver")
    users = get_user_model().objects
    assert access_of(users.get(username="frontdesk")).clinics == (demo, denver)
    assert access_of(users.get(username="denverdesk")).clinics == (denver,)
    # Each location has its own team, rooms, visit types, protocols and patients.
    for clinic in (demo, denver):
        assert clinic.clinicians.exists() and clinic.rooms.exists()
        assert clinic.visit_types.exists() and clinic.protocols.exists()
        assert Visit.objects.at_clinic(clinic).filter(patient__clinic=clinic).exists()


def test_a_new_york_patient_is_seen_in_denver_through_a_protocol_open_to_other_clinics(demo):
    denver = Clinic.objects.get(slug="riverside-denver")
    travelling = list(
        Visit.objects.at_clinic(denver)
        .filter(patient__clinic=demo)
        .select_related("planned__care_plan__protocol")
    )
    assert travelling
    for visit in travelling:
        protocol = visit.planned.care_plan.protocol
        assert protocol.clinic == denver and protocol.open_to_other_clinics
