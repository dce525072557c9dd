"""Moving a visit: the desk is offered free times around the visit's own date that keep its rules."""

from datetime import date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from desk import moves
from plans import care_plans
from plans.generator import generate
from plans.models import Protocol, within_weekly_limit
from scheduler import booking
from scheduler.diary import forget_diaries
from scheduler.models import (
    BLOCKING_STATUSES,
    Clinic,
    Closure,
    Patient,
    Visit,
    VisitKind,
    WorkingHours,
)
from tests.conftest import at
from tests.page_helpers import front_desk, offered_times

pytestmark = pytest.mark.usefixtures("now")  # Wednesday 2 January 2030


@pytest.fixture
def desk(client, db):
    client.force_login(front_desk())
    return client


def _starts(page_text: str) -> list[datetime]:
    return [datetime.fromisoformat(value.split(":", 3)[3]) for value in offered_times(page_text)]


def _local_days(starts, tz) -> set[date]:
    return {start.astimezone(tz).date() for start in starts}


def test_a_visit_months_away_is_offered_times_around_its_own_date(desk, clinic):
    # Two hours a day: every free time of a window fits on the page.
    mornings = clinic.clinician("Morgan Mornings", "therapist", hours=("09:00", "11:00"))
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=mornings,
        start=at(date(2030, 4, 10), "09:30"),  # a Wednesday
    )
    url = reverse("desk_visit", args=[visit.pk])
    page = desk.get(url).text
    starts = _starts(page)
    # A week before its date to a week after: Wednesday 3 to Tuesday 16 April.
    assert "Free times with Morgan Mornings from Wed 3 Apr to Tue 16 Apr 2030" in page
    assert _local_days(starts, clinic.clinic.tz) == {
        date(2030, 4, 3) + timedelta(days=n) for n in range(14) if n not in (3, 4, 10, 11)
    }
    # The visit does not stand in its own way: half an hour earlier or later is offered.
    assert at(date(2030, 4, 10), "09:00") in starts
    assert at(date(2030, 4, 10), "10:00") in starts
    assert visit.start not in starts

    assert f'href="{url}?from=2030-03-20">Earlier times' in page
    assert f'href="{url}?from=2030-04-17">Later times' in page
    later = desk.get(url, {"from": "2030-04-17"}).text
    assert "from Wed 17 Apr to Tue 30 Apr 2030" in later
    days = _local_days(_starts(later), clinic.clinic.tz)
    assert min(days) == date(2030, 4, 17) and max(days) == date(2030, 4, 30)


def test_a_window_with_more_free_times_than_a_page_holds_offers_those_nearest_the_visit(
    desk, clinic
):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,  # 09:00 to 17:00: fifteen times a day
        start=at(date(2030, 4, 10), "11:00"),
    )
    url = reverse("desk_visit", args=[visit.pk])
    page = desk.get(url).text
    starts = sorted(_starts(page))
    assert len(starts) == moves.SLOT_LIMIT
    # Every time within some distance of the visit's, on either side of it.
    reach = max(abs(start - visit.start) for start in starts)
    assert reach < timedelta(days=7)
    assert starts[0] < visit.start < starts[-1]
    first, last = (start.astimezone(clinic.clinic.tz).date() for start in (starts[0], starts[-1]))
    assert f"from {first:%a} {first.day} {first:%b} to {last:%a} {last.day} {last:%b %Y}" in page
    assert "the 80 nearest the visit's own time" in page
    # The windows either side start from its edges: no free time is skipped.
    assert f'href="{url}?from={last.isoformat()}">Later times' in page
    assert f'href="{url}?from={(first - timedelta(days=13)).isoformat()}">Earlier times' in page


def test_the_window_starts_no_earlier_than_today_and_keeps_the_choice_of_clinician(desk, clinic):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(date(2030, 1, 4), "11:00"),
    )
    # The prescriber's days are full but one: few enough times to fit the page.
    for day in (2, 3, 7, 8, 9, 10, 11, 14):
        Visit.objects.create(
            patient=clinic.patient(f"Busy{day}", "Example"),
            visit_type=clinic.screening,
            clinician=clinic.prescriber,
            room=clinic.room3,
            start=at(date(2030, 1, day), "08:00"),
            end=at(date(2030, 1, day), "18:00"),
        )
    url = reverse("desk_visit", args=[visit.pk])
    page = desk.get(url).text
    assert "Free times with Dr. Alvarez from Wed 2 Jan to Tue 15 Jan 2030" in page
    assert "Earlier times" not in page  # nothing before today to look at
    assert f'href="{url}?with=anyone&amp;from=2030-01-02">Any prescriber' in page
    clinic.clinician("Dr. Second", "prescriber", hours=("08:00", "10:00"))
    anyone = desk.get(url, {"with": "anyone", "from": "2029-12-01"}).text
    assert "Free times with any prescriber from Wed 2 Jan" in anyone
    assert "Dr. Second" in anyone
    assert f'href="{url}?with=anyone&amp;from=2030-01-16">Later times' in anyone
    assert f'href="{url}?from=2030-01-02">Only Dr. Alvarez' in anyone
    assert desk.get(url, {"from": "not-a-date"}).status_code == 404


def test_the_page_says_plainly_when_no_free_time_is_in_the_window(desk, clinic):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(date(2030, 6, 5), "11:00"),
    )
    Closure.objects.create(
        clinic=clinic.clinic,
        start=at(date(2030, 5, 29), "00:00"),
        end=at(date(2030, 6, 12), "00:00"),
        reason="Renovation",
    )
    url = reverse("desk_visit", args=[visit.pk])
    page = desk.get(url).text
    assert offered_times(page) == []
    assert "No free time with Sam Rivers from Wed 29 May to Tue 11 Jun 2030." in page
    assert f'href="{url}?from=2030-06-12"' in page
    assert offered_times(desk.get(url, {"from": "2030-06-12"}).text)


def test_a_dosing_visit_is_not_offered_times_the_booking_rules_refuse(desk, clinic):
    unscreened = clinic.patient("Blake", "Unscreened", screened=False)
    # Written directly: the screening gate would refuse to book it.
    start = at(date(2030, 1, 9), "10:00")
    visit = Visit.objects.create(
        patient=unscreened,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=start,
        end=start + clinic.iv.duration,
    )
    page = desk.get(reverse("desk_visit", args=[visit.pk])).text
    assert offered_times(page) == []
    assert "No time with Dr. Alvarez from Wed 2 Jan to Tue 15 Jan 2030 keeps the rules:" in page
    assert "screening has not been cleared by a prescriber" in page


@pytest.fixture
def iv_plan(db):
    call_command("seed_demo", stdout=StringIO())
    clinic = Clinic.objects.get(slug="riverside")
    patient = Patient.objects.filter(clinic=clinic).order_by("pk")[0]  # screening cleared
    protocol = Protocol.objects.get(clinic=clinic, slug="iv-induction")
    # March has no public holiday: Presidents' Day (18 February) beside the
    # last infusion would leave it no time its spacing allows to move to.
    plan = care_plans.save_proposal(generate(patient, protocol, date(2030, 3, 4)))
    return care_plans.confirm(plan)


def test_a_dosing_visit_of_a_plan_is_offered_only_times_its_protocol_allows(desk, iv_plan):
    protocol = iv_plan.protocol
    infusions = [
        p.visit
        for p in iv_plan.planned_visits.filter(visit__visit_type__slug="iv-infusion")
        .select_related("visit")
        .order_by("visit__start")
    ]
    before, moving = infusions[-2:]  # the last infusion: spaced from the one before it
    other_doses = list(
        Visit.objects.filter(
            patient=iv_plan.patient,
            visit_type__kind=VisitKind.DOSING,
            status__in=BLOCKING_STATUSES,
        )
        .exclude(pk=moving.pk)
        .values_list("start", flat=True)
    )
    page = desk.get(reverse("desk_visit", args=[moving.pk])).text
    starts = _starts(page)
    assert starts, page
    step = 40, 4 * 24  # the infusions' spacing in hours (plans/demo.py)
    for start in starts:
        assert timedelta(hours=step[0]) <= start - before.start <= timedelta(hours=step[1])
        assert protocol.dose_too_near(other_doses, start) is None, start
        assert within_weekly_limit(other_doses, start, protocol.max_doses_per_week), start


def test_a_plan_visit_moves_to_the_room_its_offered_time_names(desk, db):
    call_command("seed_demo", stdout=StringIO())
    clinic = Clinic.objects.get(slug="riverside")
    patients = Patient.objects.filter(clinic=clinic).order_by("pk")
    protocol = Protocol.objects.get(clinic=clinic, slug="kap-lozenge")
    plan = care_plans.confirm(
        care_plans.save_proposal(generate(patients[0], protocol, date(2030, 2, 4)))
    )
    dose = (
        plan.planned_visits.filter(visit__visit_type__kind=VisitKind.DOSING)
        .select_related("visit__room")
        .order_by("visit__start")
        .last()
        .visit
    )
    url = reverse("desk_visit", args=[dose.pk])
    own_room = f":{dose.room_id}:"
    # A time in the dose's own room that does not overlap the dose itself, so
    # that another visit can take it (PostgreSQL's exclusion constraint
    # refuses an overlap in one room).
    start = next(
        moment
        for value in offered_times(desk.get(url).text)
        if own_room in value
        and not (
            dose.start - dose.visit_type.duration
            < (moment := datetime.fromisoformat(value.split(":", 3)[3]))
            < dose.end
        )
    )
    # Another visit takes the dose's room then; another room is free.
    Visit.objects.create(
        patient=patients[1],
        visit_type=dose.visit_type,
        clinician=clinic.clinicians.exclude(pk=dose.clinician_id).filter(is_prescriber=True)[0],
        room=dose.room,
        start=start,
        end=start + dose.visit_type.duration,
    )
    elsewhere = next(
        value for value in offered_times(desk.get(url).text) if value.endswith(start.isoformat())
    )
    room_pk = int(elsewhere.split(":")[1])
    assert room_pk != dose.room_id

    page = desk.post(url, {"action": "move", "slot": elsewhere}, follow=True).text
    assert "Moved." in page
    dose.refresh_from_db()
    assert (dose.start, dose.room_id) == (start, room_pk)


class NoMondays:
    """A registered rule that judges a whole window of times with one read of the database."""

    def __call__(self, visit):
        tz = Clinic.objects.get(pk=visit.patient.clinic_id).tz
        return ["Not on Mondays."] if visit.start.astimezone(tz).weekday() == 0 else []

    def for_times(self, visit, start, end):
        tz = Clinic.objects.get(pk=visit.patient.clinic_id).tz
        return lambda moved: (
            ["Not on Mondays."] if moved.start.astimezone(tz).weekday() == 0 else []
        )


@pytest.fixture
def no_mondays():
    rule = NoMondays()
    booking.booking_checks.append(rule)
    yield rule
    booking.booking_checks.remove(rule)


def test_a_rule_that_judges_a_window_at_once_costs_the_page_one_query(desk, clinic, no_mondays):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(date(2030, 4, 10), "11:00"),
    )
    # A closed week leaves the second window fewer times to judge.
    Closure.objects.create(
        clinic=clinic.clinic,
        start=at(date(2030, 4, 22), "00:00"),
        end=at(date(2030, 4, 27), "00:00"),
    )
    url = reverse("desk_visit", args=[visit.pk])
    desk.get(url)
    counts = []
    for first in ("2030-04-03", "2030-04-17"):
        with CaptureQueriesContext(connection) as queries:
            page = desk.get(url, {"from": first}).text
        counts.append(len(queries))
        starts = _starts(page)
        assert starts and all(s.astimezone(clinic.clinic.tz).weekday() != 0 for s in starts)
    assert counts[0] == counts[1], counts
    assert counts[0] <= VISIT_PAGE_QUERIES


# Signing in (3), the clinic, the visit with its team and its type's team (3),
# what decides free times (10: the set-up, the patient's visits, then the
# window's visits of the visit's own people and of the rooms, apart), the
# visit's messages, the audit event, and one read for the rule above.
VISIT_PAGE_QUERIES = 21


@pytest.mark.django_db(transaction=True)
def test_the_visit_page_takes_the_clinics_set_up_from_the_kept_diary(desk, clinic):
    """Outside a transaction the clinic's hours, staff and rooms come from the process's
    diary (scheduler.diary), read again only when the set-up change log says so; the
    visits of the window are read afresh all the same (the visit must not block itself)."""
    mornings = clinic.clinician("Morgan Mornings", "therapist", hours=("09:00", "11:00"))
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=mornings,
        start=at(date(2030, 4, 10), "09:30"),
    )
    url = reverse("desk_visit", args=[visit.pk])
    desk.get(url)  # the first page after signing in refreshes the session
    forget_diaries()
    with CaptureQueriesContext(connection) as first:
        desk.get(url)
    with CaptureQueriesContext(connection) as kept:
        page = desk.get(url).text
    assert len(kept) < len(first), (len(first), len(kept))
    assert at(date(2030, 4, 10), "10:00") in _starts(page)
    # Morgan now starts at 10:00 (a bare UPDATE: the log's trigger sees it).
    WorkingHours.objects.filter(clinician=mornings).update(opens="10:00")
    starts = _starts(desk.get(url).text)
    assert at(date(2030, 4, 10), "09:00") not in starts
    assert at(date(2030, 4, 10), "10:00") in starts
    forget_diaries()
