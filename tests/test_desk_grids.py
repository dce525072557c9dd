"""The desk's day and week and a clinician's week as time grids: what they show, booking from
a free quarter hour, and a fixed number of queries however many visits they hold.

The geometry itself (rows, spans, shading) is tests/test_time_grid.py's.
"""

import html
import re
from datetime import date, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from notifications.models import InboundMessage
from notifications.patient_links import ask_to_reschedule
from plans.models import MonitoringFormTask
from scheduler import booking
from scheduler.diary import forget_diaries
from scheduler.models import BusyBlock, Closure, TimeOff, Visit, VisitStatus, WorkingHours
from tests.conftest import MONDAY, SmallClinic, at
from tests.page_helpers import crowd, failed_message, front_desk, sign_in_verified
from tests.test_public_holidays import THANKSGIVING

pytestmark = pytest.mark.usefixtures("now")
TODAY = date(2030, 1, 2)  # the `now` fixture's day in New York (07:00, a Wednesday)


@pytest.fixture
def desk(client, clinic):
    client.force_login(front_desk())
    return client


def day_page(desk, day: date, **query) -> str:
    response = desk.get(reverse("desk_day", args=[day.isoformat()]), query)
    assert response.status_code == 200
    return response.text


def columns(page: str) -> dict[str, str]:
    """Each grid column's heading and its markup."""
    found = {}
    for part in page.split('<section class="tg-col"')[1:]:
        heading = re.search(r'<h3 class="tg-head"[^>]*>(.*?)</h3>', part, re.S).group(1)
        title = html.unescape(re.sub(r"<[^>]+>", "", heading.split('<span class="tg-note">')[0]))
        found[title.strip()] = part.split("</section>")[0]
    return found


def block(column: str, visit: Visit) -> str:
    """The block of ``visit`` in a column (the desk's: a link to the visit's page)."""
    href = reverse("desk_visit", args=[visit.pk])
    found = re.search(rf'<li class="(tg-block [^"]+)">\s*<a href="{href}">(.*?)</a>', column, re.S)
    assert found, f"no block of visit {visit.pk}"
    return found.group(1) + " | " + " ".join(re.sub(r"<[^>]+>", " ", found.group(2)).split())


def free_cells(column: str) -> dict[str, str]:
    """{accessible label: address} of a column's free quarter hours."""
    return {
        html.unescape(label): html.unescape(href)
        for href, label in re.findall(
            r'<li class="tg-free[^"]*"><a href="([^"]+)" aria-label="([^"]+)"', column
        )
    }


def test_the_day_grid_has_a_column_per_clinician_and_each_visit_a_block_as_long_as_it_lasts(
    desk, clinic
):
    visit = booking.book(
        patient=clinic.patient("Avery", "Applewood"),
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        room=clinic.room3,
        start=at(MONDAY, "10:00"),
    )
    page = day_page(desk, MONDAY)
    grid = columns(page)
    assert list(grid) == ["Dr. Alvarez", "Nurse Kim", "Sam Rivers"]
    # Rows from 08:00, a quarter hour each: 10:00 is row 9, an hour is four rows.
    assert block(grid["Dr. Alvarez"], visit).startswith("tg-block k-screening st-booked r9 s4 |")
    assert "10:00-11:00 Avery Applewood" in block(grid["Dr. Alvarez"], visit)
    assert 'class="tg-hour r9 s4">10:00<' in page
    assert "Avery Applewood" not in grid["Sam Rivers"]


def test_a_team_visit_is_in_each_participants_column_for_their_own_part(desk, clinic):
    clinic.add_to_team(clinic.iv, "therapist", stays_minutes=60)
    visit = booking.book(
        patient=clinic.patient("Avery", "Applewood"),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "09:00"),
    )
    grid = columns(day_page(desk, MONDAY))
    lead, guide = block(grid["Dr. Alvarez"], visit), block(grid["Sam Rivers"], visit)
    assert " r5 s8 |" in lead and "09:00-11:00" in lead
    assert " r5 s4 |" in guide and "09:00-10:00" in guide
    assert "As therapist; the visit runs 09:00-11:00" in guide
    # The therapist is free to book again from 10:00, the lead is not.
    assert "Book Sam Rivers at 10:00" in free_cells(grid["Sam Rivers"])
    assert "Book Dr. Alvarez at 10:00" not in free_cells(grid["Dr. Alvarez"])


def test_blocks_say_kind_and_status_in_words_and_carry_what_needs_acting_on(desk, clinic):
    avery = clinic.patient("Avery", "Applewood")
    dose = booking.book(
        patient=avery,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "09:00"),
    )
    failed_message(dose)
    unscreened = Visit.objects.create(  # the gate refuses it now; an older row can exist
        patient=clinic.patient("Blake", "Unscreened", screened=False),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room2,
        start=at(MONDAY, "13:00"),
        end=at(MONDAY, "15:00"),
        ride_home_arranged=True,
        status=VisitStatus.CONFIRMED,
    )
    talk = booking.book(
        patient=clinic.patient("Casey", "Confirmed"),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "11:00"),
    )
    booking.confirm(talk)
    ask_to_reschedule(talk.patient, talk)
    done = Visit.objects.create(
        patient=clinic.patient("Dana", "Done"),
        visit_type=clinic.iv,
        clinician=clinic.nurse,
        room=clinic.room3,
        start=at(MONDAY, "08:00"),
        end=at(MONDAY, "10:00"),
        status=VisitStatus.COMPLETED,
        ride_home_arranged=True,
    )
    MonitoringFormTask.objects.create(visit=done, due_on=MONDAY + timedelta(days=7))
    grid = columns(day_page(desk, MONDAY))
    dosing = block(grid["Dr. Alvarez"], dose)
    assert "k-dosing st-booked" in dosing and "Dosing session, booked" in dosing
    for flag in ("Not confirmed", "No ride home", "Message failed"):
        assert flag in dosing
    assert "Screening not cleared" not in dosing
    blocked = block(grid["Dr. Alvarez"], unscreened)
    assert "Dosing session, confirmed by patient" in blocked
    assert "Screening not cleared" in blocked and "Not confirmed" not in blocked
    asked = block(grid["Sam Rivers"], talk)
    assert "k-integration st-confirmed" in asked and "Asked to reschedule" in asked
    finished = block(grid["Nurse Kim"], done)
    assert "st-completed" in finished and "Dosing session, completed" in finished
    assert "REMS form due Mon 10 Jun" in finished


def test_by_room_shows_a_column_per_room_and_one_for_telehealth_with_nothing_to_book(desk, clinic):
    dose = booking.book(
        patient=clinic.patient("Avery", "Applewood"),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "09:00"),
        ride_home_arranged=True,
    )
    video = booking.book(
        patient=clinic.patient("Blake", "Birch"),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "09:00"),
    )
    page = day_page(desk, MONDAY, by="room")
    grid = columns(page)
    assert list(grid) == ["Room 1", "Room 2", "Room 3", "Telehealth"]
    assert "Room 1; Dr. Alvarez" in block(grid["Room 1"], dose)
    assert "Telehealth; Sam Rivers" in block(grid["Telehealth"], video)
    assert "Avery Applewood" not in grid["Telehealth"] + grid["Room 2"]
    assert not any(free_cells(column) for column in grid.values())
    assert '<a href="/desk/day/2030-06-03/?by=room" aria-current="page">By room</a>' in page
    # The switch back, and the pager keeps the choice.
    assert '<a href="/desk/day/2030-06-03/">By clinician</a>' in page
    assert "/desk/day/2030-06-04/?by=room" in page


def test_the_week_shows_everyone_or_one_clinicians_part_with_their_free_times(desk, clinic):
    clinic.add_to_team(clinic.iv, "therapist", stays_minutes=60)
    dose = booking.book(
        patient=clinic.patient("Avery", "Applewood"),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "09:00"),
        ride_home_arranged=True,
    )
    screening = booking.book(
        patient=clinic.patient("Blake", "Birch"),
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        room=clinic.room3,
        start=at(MONDAY + timedelta(days=2), "14:00"),
    )
    url = reverse("desk_week", args=[MONDAY.isoformat()])
    everyone = columns(desk.get(url).text)
    assert next(iter(everyone)) == "Monday 3 June" and len(everyone) == 7
    assert " r5 s8 |" in block(everyone["Monday 3 June"], dose)  # the whole visit, once
    assert "14:00-15:00 Blake Birch" in block(everyone["Wednesday 5 June"], screening)
    assert not any(free_cells(column) for column in everyone.values())

    page = desk.get(url, {"clinician": clinic.therapist.pk}).text
    assert "Week of Monday 3 June 2030: Sam Rivers" in page
    theirs = columns(page)
    assert " r5 s4 |" in block(theirs["Monday 3 June"], dose)  # their first hour only
    assert "Blake Birch" not in page
    free = free_cells(theirs["Tuesday 4 June"])
    assert "Book Sam Rivers on Tue 4 Jun at 09:00" in free
    assert "Book Sam Rivers on Tue 4 Jun at 08:45" not in free  # Sam starts at 09:00
    # The pager and "this week" keep the clinician chosen.
    assert f"/desk/week/2030-06-10/?clinician={clinic.therapist.pk}" in page
    # Anything else is everyone's week, not an error.
    for value in ("abc", "99999999999999999999", str(clinic.therapist.pk + 999)):
        response = desk.get(url, {"clinician": value})
        assert response.status_code == 200 and "Everyone's visits" in response.text


def test_closed_days_closures_and_time_off_are_shaded_in_words_on_the_pages(desk, clinic):
    grid = columns(day_page(desk, THANKSGIVING))
    for column in grid.values():
        assert "Public holiday: Thanksgiving Day" in column and not free_cells(column)
    Closure.objects.create(
        clinic=clinic.clinic, start=at(MONDAY, "16:00"), end=at(MONDAY, "18:00"), reason="Inventory"
    )
    TimeOff.objects.create(
        clinician=clinic.therapist,
        start=at(MONDAY, "12:00"),
        end=at(MONDAY, "14:00"),
        reason="Course",
    )
    grid = columns(day_page(desk, MONDAY))
    assert 'tg-shade tg-off r17 s8">Time off: Course' in grid["Sam Rivers"]
    assert 'tg-shade tg-closed r33 s8">Closed: Inventory' in grid["Dr. Alvarez"]
    assert "Time off" not in grid["Dr. Alvarez"]
    free = free_cells(grid["Sam Rivers"])
    assert "Book Sam Rivers at 11:45" in free and "Book Sam Rivers at 12:00" not in free
    assert "Book Sam Rivers at 16:00" not in free


def test_the_grid_is_drawn_again_when_what_shades_it_changes_and_as_time_passes(desk, clinic, now):
    url = reverse("desk_day", args=[TODAY.isoformat()])
    first = columns(desk.get(url).text)["Sam Rivers"]
    assert "Book Sam Rivers at 10:00" in free_cells(first)
    with CaptureQueriesContext(connection) as again:
        desk.get(url)
    # From the cache: the visits themselves were not read again.
    assert not [q for q in again.captured_queries if '"scheduler_visit"."uid"' in q["sql"]]
    TimeOff.objects.create(
        clinician=clinic.therapist, start=at(TODAY, "09:00"), end=at(TODAY, "11:00")
    )
    assert "Book Sam Rivers at 10:00" not in free_cells(columns(desk.get(url).text)["Sam Rivers"])
    # Time passes: at 11:20 the quarter hours gone are not offered, and now is drawn there.
    now.move_to(at(TODAY, "11:20"))
    desk.force_login(front_desk())  # the morning's session ended, idle
    later = desk.get(url).text
    sam = columns(later)["Sam Rivers"]
    assert "Book Sam Rivers at 11:15" not in free_cells(sam)
    assert "Book Sam Rivers at 11:30" in free_cells(sam)
    # 11:15 is row 14: the line is drawn at the quarter hour's start (the page's
    # script moves it to the minute), and the grid is kept for the quarter hour.
    assert 'class="tg-now r14 m0"' in later
    now.move_to(at(TODAY, "11:29"))
    with CaptureQueriesContext(connection) as again:
        assert columns(desk.get(url).text) == columns(later)
    assert not [q for q in again.captured_queries if '"scheduler_visit"."uid"' in q["sql"]]
    now.move_to(at(TODAY, "11:30"))
    assert "Book Sam Rivers at 11:30" not in free_cells(columns(desk.get(url).text)["Sam Rivers"])


def test_the_grid_is_drawn_again_when_a_flag_comes_or_goes(desk, clinic):
    talk = booking.book(
        patient=clinic.patient("Avery", "Applewood"),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "11:00"),
    )
    done = Visit.objects.create(
        patient=clinic.patient("Dana", "Done"),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "08:00"),
        end=at(MONDAY, "10:00"),
        status=VisitStatus.COMPLETED,
        ride_home_arranged=True,
    )
    task = MonitoringFormTask.objects.create(visit=done, due_on=MONDAY + timedelta(days=7))

    def flags() -> tuple[str, str]:
        grid = columns(day_page(desk, MONDAY))
        return block(grid["Sam Rivers"], talk), block(grid["Dr. Alvarez"], done)

    asked, form = flags()
    assert "Asked to reschedule" not in asked and "REMS form due" in form
    ask_to_reschedule(talk.patient, talk)
    assert "Asked to reschedule" in flags()[0]
    InboundMessage.objects.update(handled_at=timezone.now())
    assert "Asked to reschedule" not in flags()[0]
    MonitoringFormTask.objects.filter(pk=task.pk).update(submitted_on=MONDAY)
    assert "REMS form" not in flags()[1]


def test_the_grid_is_drawn_again_when_a_name_it_shows_changes(desk, clinic, now):
    dose = booking.book(
        patient=clinic.patient("Avery", "Applewood"),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        start=at(MONDAY, "09:00"),
        room=clinic.room1,
    )

    def shown(view: str = "desk_day") -> str:
        response = desk.get(reverse(view, args=[MONDAY.isoformat()]))
        return (
            block(columns(response.text)["Dr. Alvarez"], dose)
            if view == "desk_day"
            else (response.text)
        )

    assert "Avery Applewood" in shown()
    # Each change a minute later (the fixture stops the clock; the digest reads when rows changed).
    now.shift(timedelta(minutes=1))
    dose.patient.first_name = "Ava"
    dose.patient.save()
    assert "Ava Applewood" in shown() and "Ava Applewood" in shown("desk_week")
    now.shift(timedelta(minutes=1))
    clinic.iv.name = "Infusion, renamed"
    clinic.iv.save()
    assert "Infusion, renamed" in shown()
    now.shift(timedelta(minutes=1))
    clinic.room1.name = "Garden room"
    clinic.room1.save()
    assert "Garden room" in day_page(desk, MONDAY, by="room")


def test_the_clinicians_week_is_a_grid_of_their_part_with_busy_times_and_video_links(
    client, clinic
):
    clinic.add_to_team(clinic.iv, "therapist", stays_minutes=60)
    dose = booking.book(
        patient=clinic.patient("Avery", "Applewood"),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "09:00"),
        ride_home_arranged=True,
    )
    video = booking.book(
        patient=clinic.patient("Blake", "Birch"),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "14:00"),
    )
    calendar = clinic.therapist.external_calendars.create(url="https://calendar.example.com/a.ics")
    BusyBlock.objects.create(
        clinician=clinic.therapist,
        external_calendar=calendar,
        start=at(MONDAY + timedelta(days=1), "10:00"),
        end=at(MONDAY + timedelta(days=1), "11:30"),
    )
    sign_in_verified(client, clinic.therapist.user)
    page = client.get(reverse("my_calendar"), {"week": MONDAY.isoformat()}).text
    grid = columns(page)
    mine = re.search(rf'<li id="visit-{dose.pk}" class="([^"]+)">(.*?)</li>', page, re.S)
    assert "k-dosing st-booked r5 s4" in mine.group(1)  # their hour of the dose
    assert '<span class="time">09:00-10:00</span>' in mine.group(2)
    assert "Dosing session (AA)" in mine.group(2) and "Applewood" not in page
    talk = re.search(rf'<li id="visit-{video.pk}" class="[^"]+">(.*?)</li>', page, re.S).group(1)
    assert '<a href="https://video.example.com/room">video link</a>' in talk
    assert 'tg-shade tg-busy r9 s6">Busy (own calendar)' in grid["Tuesday 4 June"]
    # Clinicians book nothing from here, and see nobody else's visits.
    assert not any(free_cells(column) for column in grid.values())
    assert reverse("desk_visit", args=[dose.pk]) not in page


# -- booking from a free quarter hour -------------------------------------------------------


def test_a_free_quarter_hour_books_that_clinician_then_for_the_patient_chosen(desk, clinic):
    avery = clinic.patient("Avery", "Applewood")
    grid = columns(day_page(desk, MONDAY))
    start = desk.get(free_cells(grid["Sam Rivers"])["Book Sam Rivers at 10:15"])
    assert "Book Sam Rivers on Monday 3 June at 10:15" in start.text
    found = desk.get(
        reverse("desk_patients"),
        {"q": "Applewood", "with": clinic.therapist.pk, "at": "2030-06-03T10:15:00-04:00"},
    )
    link = html.unescape(
        re.search(r'<a href="(/desk/patients/\d+/book/\?[^"]+)">Applewood', found.text).group(1)
    )
    chooser = desk.get(link).text
    # Only what Sam Rivers may lead (a therapist: integration).
    assert re.findall(r'<option value="(\d+)"', chooser) == [str(clinic.integration.pk)]
    times = desk.get(link + f"&type={clinic.integration.pk}").text
    assert "10:15 with Sam Rivers is free for Integration" in times
    chosen = re.search(r'<option value="([^"]+)" selected>10:15-11:05 Sam Rivers', times).group(1)
    response = desk.post(link + f"&type={clinic.integration.pk}", {"slot": html.unescape(chosen)})
    assert response.status_code == 302
    assert response["Location"] == reverse("desk_day", args=[MONDAY.isoformat()])
    visit = Visit.objects.get(patient=avery)
    assert (visit.clinician, visit.start) == (clinic.therapist, at(MONDAY, "10:15"))
    back = desk.get(response["Location"]).text
    assert "Booked: Integration, Mon 2030-06-03 10:15, with Sam Rivers." in back
    assert "10:15-11:05 Avery Applewood" in block(columns(back)["Sam Rivers"], visit)


def test_a_quarter_hour_too_short_for_the_visit_type_says_so_and_offers_the_days_other_times(
    desk, clinic
):
    avery = clinic.patient("Avery", "Applewood")
    booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "11:00"),
    )
    # 10:30 is free, but a 50-minute integration from 10:30 runs into the 11:00 one.
    query = {
        "with": clinic.therapist.pk,
        "at": "2030-06-03T10:30:00-04:00",
        "type": clinic.integration.pk,
    }
    page = desk.get(reverse("desk_book_visit", args=[avery.pk]), query).text
    assert "10:30 with Sam Rivers is not free for Integration" in page
    offered = re.findall(r'<option value="[^"]+">(\d\d:\d\d)-', page)
    assert offered[0] == "09:00" and "10:00" in offered and "10:30" not in offered
    assert "Other days and clinicians" in page
    # A choice naming no clinician of the clinic, or no instant, is no choice: the usual page.
    for bad in (
        {"with": "x", "at": "2030-06-03T10:30"},
        {"with": clinic.therapist.pk, "at": "soon"},
    ):
        response = desk.get(reverse("desk_book_visit", args=[avery.pk]), bad)
        assert response.status_code == 200 and "chosen on the" not in response.text
        response = desk.get(reverse("desk_patients"), bad)
        assert response.status_code == 200 and "<h1>Patients</h1>" in response.text


def test_a_free_quarter_hour_keeps_its_instant_in_a_clinic_east_of_utc(client, db):
    berlin = SmallClinic("Europe/Berlin")
    client.force_login(front_desk())
    grid = columns(day_page(client, MONDAY))
    link = free_cells(grid["Sam Rivers"])["Book Sam Rivers at 10:15"]
    assert "at=2030-06-03T10:15:00%2B02:00" in link  # "+" would read as a space
    page = client.get(link).text
    assert "Book Sam Rivers on Monday 3 June at 10:15" in page
    assert berlin.clinic.time_zone == "Europe/Berlin"


# -- queries: fixed, however many visits -----------------------------------------------------


def _queries(client, url, query=None, *, drawn: bool) -> int:
    if drawn:
        cache.clear()  # the schedule as first drawn after a change
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, query or {}).status_code == 200
    return len(queries)


# The session, the user and their roles (3), the clinic (1), the schedule's version
# (1), what shades the grid (4: opening hours, closures and holidays, clinicians with
# their working hours, time off with busy times; read afresh here, inside the
# test's transaction: outside one a process keeps it, see below), the day's closures
# in words (1). Drawing adds the visits with their flags and their teams (2).
GRID_PAGES = {
    "day": ("desk_day", {}, 10, 12),
    "day by room": ("desk_day", {"by": "room"}, 11, 13),  # the rooms (1)
    "week": ("desk_week", {}, 9, 11),
    "week of one clinician": ("desk_week", {"clinician": "therapist"}, 9, 11),
}


@pytest.mark.parametrize("page", sorted(GRID_PAGES))
def test_each_grid_page_runs_a_fixed_number_of_queries_however_many_visits(
    desk, clinic, page, django_assert_max_num_queries
):
    name, query, cached_bound, drawn_bound = GRID_PAGES[page]
    if query.get("clinician"):
        query = {"clinician": clinic.therapist.pk}
    clinic.add_to_team(clinic.iv, "therapist", stays_minutes=30)
    url = reverse(name, args=[MONDAY.isoformat()])
    desk.get(url)  # the first page after signing in refreshes the session
    counts = []
    for n in (3, 15):
        crowd(clinic, MONDAY, n - len(counts) * 3, after=len(counts) * 3)
        drawn = _queries(desk, url, query, drawn=True)
        cached = _queries(desk, url, query, drawn=False)
        counts.append((cached, drawn))
        with django_assert_max_num_queries(drawn_bound):
            _queries(desk, url, query, drawn=True)
        with django_assert_max_num_queries(cached_bound):
            _queries(desk, url, query, drawn=False)
    assert counts[0] == counts[1], f"{page}: {counts}"
    print(f"{page}: {counts[0][0]} queries from the cache, {counts[0][1]} drawn")


def test_the_desks_home_draws_todays_grid_in_at_most_16_queries(desk, clinic):
    """The busiest page: today's, with its lists of what needs attention. The benchmark's
    target of 15, and one for the patients whose answers need a clinician today."""
    url = reverse("desk_today")
    desk.get(url)
    counts = []
    for n in (3, 15):
        crowd(clinic, TODAY, n - len(counts) * 3, after=len(counts) * 3)
        counts.append(_queries(desk, url, drawn=True))
    assert counts[0] == counts[1] <= 16, counts


def test_the_clinicians_week_runs_a_fixed_number_of_queries_however_many_visits(client, clinic):
    clinic.add_to_team(clinic.iv, "therapist", stays_minutes=30)
    sign_in_verified(client, clinic.therapist.user)
    url = reverse("my_calendar")
    client.get(url, {"week": MONDAY.isoformat()})
    counts = []
    for n in (2, 12):
        # Every other crowd visit is the therapist's: integrations, and part of each dose.
        crowd(clinic, MONDAY + timedelta(days=len(counts)), n, failing=False)
        counts.append(_queries(client, url, {"week": MONDAY.isoformat()}, drawn=False))
    assert counts[0] == counts[1], counts
    print(f"my calendar: {counts[0]} queries")


@pytest.mark.django_db(transaction=True)
def test_what_shades_the_grid_is_kept_between_pages_until_the_set_up_changes(desk, clinic):
    """Twenty desks on one day read its backdrop once: the change log (scheduler.diary)
    says when a clinician's hours, time off or the clinic's closures change."""
    url = reverse("desk_day", args=[MONDAY.isoformat()])
    desk.get(url)  # the first page after signing in refreshes the session
    forget_diaries()
    first = _queries(desk, url, drawn=False)
    kept = _queries(desk, url, drawn=False)
    assert kept == first - 4, (first, kept)  # the four reads of the backdrop
    assert "Book Sam Rivers at 12:00" in free_cells(columns(desk.get(url).text)["Sam Rivers"])
    # A bare UPDATE, as the admin's or a script's: the log's trigger sees it.
    WorkingHours.objects.filter(clinician=clinic.therapist).update(opens="13:00")
    grid = columns(desk.get(url).text)
    assert "Book Sam Rivers at 12:00" not in free_cells(grid["Sam Rivers"])
    assert "Book Sam Rivers at 13:00" in free_cells(grid["Sam Rivers"])
    forget_diaries()
