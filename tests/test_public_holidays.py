"""Public holidays close the clinic unless it opens anyway, by its own country and state.

Holidays come from the ``holidays`` library (scheduler/public_holidays.py);
plans, free times and bookings all see them through ``scheduler.availability``,
and the desk's day page names them.
"""

from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from plans.generator import generate
from plans.models import Anchor, Protocol, ProtocolStep
from scheduler import booking
from scheduler.availability import Availability, free_slots
from scheduler.booking import BookingError
from scheduler.models import Closure, ClosureKind
from tests.conftest import SmallClinic, at
from tests.page_helpers import front_desk, sign_in_verified
from tests.plan_rules import rule_violations

pytestmark = pytest.mark.usefixtures("now")

WEDNESDAY = date(2030, 11, 27)
THANKSGIVING = date(2030, 11, 28)  # fourth Thursday of November 2030
FRIDAY = date(2030, 11, 29)


def book_integration(clinic, day, hh_mm="10:00", tz="America/New_York"):
    return booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(day, hh_mm, tz),
    )


def open_anyway(clinic, day, opens="00:00", closes="00:00", reason="", tz="America/New_York"):
    end_day = day + timedelta(days=1) if closes == "00:00" else day
    return Closure.objects.create(
        clinic=clinic.clinic,
        kind=ClosureKind.OPEN,
        start=at(day, opens, tz),
        end=at(end_day, closes, tz),
        reason=reason,
    )


def test_a_plan_spanning_thanksgiving_places_no_visit_on_it(clinic):
    protocol = Protocol.objects.create(clinic=clinic.clinic, name="Daily", slug="daily")
    ProtocolStep.objects.create(
        protocol=protocol,
        position=1,
        visit_type=clinic.integration,
        anchor=Anchor.START,
        count=4,
        min_spacing_hours=20,
        max_spacing_hours=72,
    )
    proposal = generate(clinic.patient(), protocol, WEDNESDAY)
    days = [v.start.astimezone(clinic.clinic.tz).date() for v in proposal.visits]
    assert days == [WEDNESDAY, FRIDAY, date(2030, 12, 2), date(2030, 12, 3)]
    assert rule_violations(proposal) == []


def test_booking_on_thanksgiving_is_refused_naming_the_holiday(clinic):
    with pytest.raises(BookingError) as refused:
        book_integration(clinic, THANKSGIVING)
    assert str(refused.value) == "Clinic closed: Thanksgiving Day."
    visit = book_integration(clinic, WEDNESDAY)
    with pytest.raises(BookingError, match="Clinic closed: Thanksgiving Day"):
        booking.move(visit, start=at(THANKSGIVING, "11:00"))


def test_free_times_skip_the_holiday(clinic):
    slots = free_slots(clinic.integration, WEDNESDAY, FRIDAY)
    assert {slot.start.date() for slot in slots} == {WEDNESDAY, FRIDAY}


def test_an_open_anyway_row_lets_the_clinic_work_its_hours_on_the_holiday(clinic):
    open_anyway(clinic, THANKSGIVING, "09:00", "13:00", reason="Infusions only")
    slots = free_slots(clinic.integration, THANKSGIVING, THANKSGIVING, step=timedelta(hours=1))
    assert [f"{s.start:%H:%M}" for s in slots] == ["09:00", "10:00", "11:00", "12:00"]
    book_integration(clinic, THANKSGIVING, "09:00")
    # Outside the span opened, the holiday still closes the clinic.
    with pytest.raises(BookingError, match=r"^Clinic closed: Thanksgiving Day\.$"):
        book_integration(clinic, THANKSGIVING, "13:00")


def test_opening_anyway_keeps_the_weekly_hours_and_the_clinics_own_closures(clinic):
    open_anyway(clinic, THANKSGIVING)
    Closure.objects.create(
        clinic=clinic.clinic,
        start=at(THANKSGIVING, "12:00"),
        end=at(THANKSGIVING, "18:00"),
        reason="Staff lunch",
    )
    book_integration(clinic, THANKSGIVING, "10:00")
    with pytest.raises(BookingError, match=r"closed 12:00-18:00 \(Staff lunch\)"):
        book_integration(clinic, THANKSGIVING, "12:00")


def test_a_clinic_in_another_country_and_state_gets_its_own_holidays(db):
    bavaria = SmallClinic("Europe/Berlin")
    bavaria.clinic.country, bavaria.clinic.subdivision = "DE", "BY"
    bavaria.clinic.full_clean()
    bavaria.clinic.save()
    corpus_christi = date(2030, 6, 20)  # a holiday in Bavaria, not in Berlin
    with pytest.raises(BookingError, match="Clinic closed: Corpus Christi"):
        book_integration(bavaria, corpus_christi, tz="Europe/Berlin")
    book_integration(bavaria, THANKSGIVING, tz="Europe/Berlin")

    berlin = SmallClinic("Europe/Berlin")
    berlin.clinic.country, berlin.clinic.subdivision = "DE", "BE"
    berlin.clinic.save()
    book_integration(berlin, corpus_christi, tz="Europe/Berlin")

    california = SmallClinic()
    california.clinic.subdivision = "CA"
    california.clinic.save()
    cesar_chavez_observed = date(2030, 4, 1)
    with pytest.raises(BookingError, match=r"Cesar Chavez Day \(observed\)"):
        book_integration(california, cesar_chavez_observed)
    book_integration(SmallClinic(), cesar_chavez_observed)  # the default: US, no state


def test_country_and_state_must_be_ones_the_holiday_calendar_knows(clinic):
    clinic.clinic.country = "XX"
    with pytest.raises(ValidationError, match="not a country code"):
        clinic.clinic.full_clean()
    clinic.clinic.country, clinic.clinic.subdivision = "US", "ZZ"
    with pytest.raises(ValidationError, match="'ZZ' is not a state or region of US"):
        clinic.clinic.full_clean()


def test_new_clinics_take_their_country_from_the_settings(db, settings):
    assert SmallClinic().clinic.country == "US"
    settings.CLINIC_COUNTRY, settings.CLINIC_SUBDIVISION = "CA", "ON"
    clinic = SmallClinic("America/Toronto").clinic
    assert (clinic.country, clinic.subdivision) == ("CA", "ON")


def test_holidays_cost_no_query(clinic):
    window = (at(WEDNESDAY, "00:00"), at(FRIDAY, "00:00"))
    with CaptureQueriesContext(connection) as quiet:
        Availability(clinic.clinic, *window)
    clinic.clinic.country = "GB"  # no holiday in that window: the same queries
    with CaptureQueriesContext(connection) as over_thanksgiving:
        Availability(clinic.clinic, *window)
    assert len(quiet.captured_queries) == len(over_thanksgiving.captured_queries)


def test_the_desk_day_page_names_the_holiday_and_an_opening(client, clinic):
    client.force_login(front_desk())
    page = client.get(reverse("desk_day", args=[THANKSGIVING.isoformat()])).text
    assert "Public holiday: Thanksgiving Day. The clinic is closed." in page
    open_anyway(clinic, THANKSGIVING, "09:00", "13:00", reason="Infusions only")
    page = client.get(reverse("desk_day", args=[THANKSGIVING.isoformat()])).text
    assert "Public holiday: Thanksgiving Day. Open anyway 09:00-13:00 (Infusions only)." in page
    assert "Public holiday" not in client.get(reverse("desk_day", args=["2030-11-27"])).text


def test_the_clinic_admin_page_lists_the_holidays_ahead_and_which_are_opened(
    client, clinic, django_user_model
):
    sign_in_verified(client, django_user_model.objects.create_superuser("root", password=None))
    open_anyway(clinic, date(2030, 1, 21))
    page = client.get(reverse("admin:scheduler_clinic_change", args=[clinic.clinic.pk])).text
    assert "Mon 2030-01-21 Martin Luther King Jr. Day (open anyway)" in page
    assert "Thu 2030-11-28 Thanksgiving Day (closed)" in page
