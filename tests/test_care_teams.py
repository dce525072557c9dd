"""A dosing session is a team: every person on it is held for their part, found together, seen by all.

docs/architecture.md invariant 1: no two active visits overlap for the same
participant (for the span they are needed). On PostgreSQL an exclusion
constraint on the participants refuses it; on SQLite the booking checks and
writes in one IMMEDIATE transaction.
"""

import json
import re
from datetime import timedelta
from io import StringIO
from itertools import pairwise

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from icalendar import Calendar

from notifications.models import Message, Purpose, Status
from scheduler import booking, tokens
from scheduler.availability import Availability, free_slots
from scheduler.booking import BookingError, SlotTaken
from scheduler.models import (
    InvitePreference,
    Modality,
    Patient,
    StaffingRequirement,
    Visit,
    VisitKind,
    VisitParticipant,
    VisitStatus,
)
from tests.conftest import MONDAY, SmallClinic, at, on_postgres
from tests.html_forms import as_post, page_forms
from tests.page_helpers import sign_in_verified
from tests.races import race


class TeamClinic(SmallClinic):
    """The small clinic with a lozenge session: a nurse monitors all 180 minutes, a
    therapist guides the first 60."""

    def __init__(self):
        super().__init__()
        self.second_therapist = self.clinician("Zoe Moss", "therapist")
        self.lozenge = self.visit_type(
            "lozenge",
            VisitKind.DOSING,
            180,
            "nurse",
            Modality.IN_PERSON,
            self.monitoring,
            dosing_route="lozenge",
            monitoring_minutes=120,
        )
        self.add_to_team(self.lozenge, "therapist", stays_minutes=60)

    def book_lozenge(self, patient=None, start="10:00", **options):
        options.setdefault("clinician", self.nurse)
        options.setdefault("room", self.room2)
        return booking.book(
            patient=patient or self.patient(screened=True),
            visit_type=self.lozenge,
            start=at(MONDAY, start),
            ride_home_arranged=True,
            **options,
        )


@pytest.fixture
def team(db, now) -> TeamClinic:
    return TeamClinic()


def people(visit: Visit) -> list[tuple[str, str, str, str]]:
    """(who, role, from, until) of everyone on the visit, lead first, local times."""
    tz = visit.patient.clinic.tz
    return [
        (
            str(p.clinician),
            p.role,
            f"{p.start.astimezone(tz):%H:%M}",
            f"{p.end.astimezone(tz):%H:%M}",
        )
        for p in VisitParticipant.objects.filter(visit=visit).order_by("position")
    ]


# -- the team a visit type needs -------------------------------------------------


def test_a_staffing_requirement_names_known_roles_and_fits_the_visit(team):
    for values, field in [
        ({"roles": ""}, "roles"),
        ({"roles": "therapist,healer"}, "roles"),
        ({"roles": "nurse", "joins_after_minutes": 180}, "joins_after_minutes"),
        ({"roles": "nurse", "joins_after_minutes": 150, "stays_minutes": 60}, "stays_minutes"),
        ({"roles": "nurse", "count": 0}, "count"),
    ]:
        row = StaffingRequirement(visit_type=team.lozenge, position=5, **values)
        with pytest.raises(ValidationError) as refused:
            row.full_clean()
        assert field in refused.value.message_dict, values
    StaffingRequirement(visit_type=team.lozenge, position=5, roles="nurse,prescriber").full_clean()
    assert team.lozenge.team_text == "nurse + therapist"


def test_the_admin_refuses_a_visit_type_without_a_team(team, admin_client):
    url = f"/admin/scheduler/visittype/{team.lozenge.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    # The page as a browser would send it back (its inlines' management forms
    # included), with every place on the team ticked for deletion.
    data = as_post(page_forms(page.text).forms["visittype_form"])
    for index in range(team.lozenge.staffing.count()):
        data[f"staffing-{index}-DELETE"] = ["on"]
    refused = admin_client.post(url, data)
    assert refused.status_code == 200
    assert "A visit type needs a team" in refused.content.decode()
    assert team.lozenge.staffing.count() == 2
    # Keeping the lead and making the therapist a prescriber-or-therapist saves.
    data.pop("staffing-0-DELETE")
    data.pop("staffing-1-DELETE")
    data["staffing-1-roles"] = ["prescriber", "therapist"]
    saved = admin_client.post(url, data)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert [row.roles for row in team.lozenge.staffing.all()] == ["nurse", "prescriber,therapist"]


# -- booking a team ------------------------------------------------------------


def test_booking_a_team_holds_each_person_for_their_part(team):
    visit = team.book_lozenge()
    assert people(visit) == [
        ("Nurse Kim", "nurse", "10:00", "13:00"),
        ("Sam Rivers", "therapist", "10:00", "11:00"),  # the first therapist free, by name
    ]
    # The therapist's afternoon is free after their hour: an integration at 11:00 fits.
    booking.book(
        patient=team.patient("Other", "Patient"),
        visit_type=team.integration,
        clinician=team.therapist,
        start=at(MONDAY, "11:00"),
    )
    # The nurse is held all three hours, whoever leads the other visit.
    with pytest.raises(SlotTaken, match="Nurse Kim is booked 10:00-13:00 by another visit"):
        team.book_lozenge(start="12:00", room=team.room1, staff=[team.second_therapist])


def test_booking_names_who_is_missing_or_out_of_place(team):
    with pytest.raises(BookingError, match="Lozenge needs a therapist as well"):
        team.book_lozenge(staff=[])
    with pytest.raises(BookingError, match="Dr. Alvarez has no place left on the team"):
        team.book_lozenge(staff=[team.therapist, team.prescriber])
    with pytest.raises(BookingError, match="Lozenge needs a nurse; Sam Rivers is not one"):
        team.book_lozenge(clinician=team.therapist, staff=[team.second_therapist])
    # No therapist free at all: the first-free search says which role is short.
    for therapist in (team.therapist, team.second_therapist):
        booking.book(
            patient=team.patient("Busy", therapist.display_name.split()[0]),
            visit_type=team.integration,
            clinician=therapist,
            start=at(MONDAY, "10:00"),
        )
    with pytest.raises(BookingError, match="No therapist is free Mon 2030-06-03 10:00-11:00"):
        team.book_lozenge()
    assert Visit.objects.filter(visit_type=team.lozenge).count() == 0


def test_postgresql_itself_refuses_one_person_on_two_overlapping_visits(team):
    if not on_postgres():
        pytest.skip("exclusion constraints exist only on PostgreSQL; SQLite: the tests above")
    team.book_lozenge()
    clash = Visit.objects.create(
        patient=team.patient("Blake", "Sample"),
        visit_type=team.lozenge,
        clinician=team.second_therapist,  # written past the booking's checks
        room=team.room1,
        start=at(MONDAY, "12:00"),
        end=at(MONDAY, "15:00"),
        status=VisitStatus.BOOKED,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        VisitParticipant.for_seat(clash, team.nurse, team.lozenge.seats[0], 1).save()
    # Past the therapist's hour, the same person is not held: no refusal.
    VisitParticipant.for_seat(clash, team.therapist, team.lozenge.seats[1], 1).save()


@pytest.mark.django_db(transaction=True)
def test_concurrent_bookings_of_one_monitor_through_different_visits_leave_exactly_one(now):
    clinic = TeamClinic()
    racers = 12
    leads = [clinic.clinician(f"Nurse {i}", "nurse") for i in range(racers)]
    therapists = [clinic.clinician(f"Guide {i}", "therapist") for i in range(racers)]
    rooms = [clinic.room(f"Room M{i}", clinic.monitoring) for i in range(racers)]
    patients = [clinic.patient(f"Racer{i}", "Example", screened=True) for i in range(racers)]
    # Everyone different but the monitor, who is the second member on each visit.
    clinic.add_to_team(clinic.lozenge, "nurse")

    def attempt(i):
        return lambda: booking.book(
            patient=patients[i],
            visit_type=clinic.lozenge,
            clinician=leads[i],
            room=rooms[i],
            start=at(MONDAY, "10:00") + timedelta(minutes=15 * (i % 4)),
            staff=[therapists[i], clinic.nurse],
            ride_home_arranged=True,
        )

    outcomes = race([attempt(i) for i in range(racers)])
    winners = [o for o in outcomes if isinstance(o, Visit)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, SlotTaken) for o in outcomes if o not in winners), outcomes
    assert all(
        any("Nurse Kim is booked" in p for p in o.problems)
        for o in outcomes
        if isinstance(o, SlotTaken)
    )
    assert VisitParticipant.objects.filter(clinician=clinic.nurse, holds_time=True).count() == 1


# -- searching for a team ------------------------------------------------------


def test_free_slots_come_with_a_team_and_skip_times_nobody_can_guide(team):
    booking.book(  # the only therapists are busy 09:00-12:00
        patient=team.patient("Busy", "One"),
        visit_type=team.integration,
        clinician=team.therapist,
        start=at(MONDAY, "09:00"),
    )
    team.second_therapist.working_hours.update(opens="12:00")
    slots = free_slots(team.lozenge, MONDAY, MONDAY, step=timedelta(hours=1))
    assert slots and all(len(slot.staff) == 1 for slot in slots)
    by_time = {f"{slot.start:%H:%M}": slot for slot in slots}
    assert "09:00" not in by_time  # Sam Rivers is busy, Zoe Moss not yet at work
    assert {slot.staff[0].clinician for slot in slots} == {team.therapist}  # first by name
    assert by_time["10:00"].staff[0].clinician == team.therapist
    # Asked for Zoe Moss first, she guides whenever she can.
    preferred = free_slots(
        team.lozenge, MONDAY, MONDAY, step=timedelta(hours=1), prefer_staff=[team.second_therapist]
    )
    assert {f"{s.start:%H:%M}": s.staff[0].clinician for s in preferred}["13:00"] == (
        team.second_therapist
    )


def test_an_optional_place_is_filled_when_someone_is_free_and_skipped_otherwise(team):
    StaffingRequirement.objects.filter(visit_type=team.lozenge, position=1).update(optional=True)
    team.lozenge.__dict__.pop("seats", None)
    for therapist in (team.therapist, team.second_therapist):
        booking.book(
            patient=team.patient("Busy", therapist.display_name.split()[0]),
            visit_type=team.integration,
            clinician=therapist,
            start=at(MONDAY, "10:00"),
        )
    alone = team.book_lozenge()
    assert [who for who, *_ in people(alone)] == ["Nurse Kim"]
    guided = team.book_lozenge(start="14:00", clinician=team.nurse, room=team.room1)
    assert [who for who, *_ in people(guided)] == ["Nurse Kim", "Sam Rivers"]


# -- changing a team -----------------------------------------------------------


def test_a_move_keeps_the_team_and_refuses_when_one_of_them_is_busy(team):
    visit = team.book_lozenge()
    booking.move(visit, start=at(MONDAY, "13:00"))
    assert people(visit) == [
        ("Nurse Kim", "nurse", "13:00", "16:00"),
        ("Sam Rivers", "therapist", "13:00", "14:00"),
    ]
    booking.book(
        patient=team.patient("Other", "Patient"),
        visit_type=team.integration,
        clinician=team.therapist,
        start=at(MONDAY, "09:00"),
    )
    with pytest.raises(SlotTaken, match="Sam Rivers is booked 09:00-09:50"):
        booking.move(visit, start=at(MONDAY, "09:00"))
    # With another guide the same time is fine.
    booking.move(visit, start=at(MONDAY, "09:00"), staff=[team.second_therapist])
    assert people(visit)[1] == ("Zoe Moss", "therapist", "09:00", "10:00")


def test_swapping_the_monitor_tells_both_calendars(team):
    for clinician in (team.nurse, team.therapist, team.prescriber):
        clinician.user.email = f"{clinician.user.username}@example.com"
        clinician.user.save()
        InvitePreference.objects.create(clinician=clinician, email_invites=True)
    team.add_to_team(team.lozenge, "prescriber", "nurse")  # a second monitor: the prescriber
    visit = team.book_lozenge(staff=[team.therapist, team.prescriber])
    invited = set(
        Message.objects.filter(visit=visit, purpose=Purpose.INVITE).values_list(
            "clinician__display_name", flat=True
        )
    )
    assert {"Nurse Kim", "Sam Rivers", "Dr. Alvarez"} <= invited
    # The invites went: every calendar holds the visit now.
    Message.objects.filter(visit=visit).update(status=Status.SENT)
    other_nurse = team.clinician("Nurse Lee", "nurse")
    booking.replace_participant(visit, team.prescriber, other_nurse)
    visit.refresh_from_db()
    assert [who for who, *_ in people(visit)] == ["Nurse Kim", "Sam Rivers", "Nurse Lee"]
    assert visit.sequence == 1
    cancels = Message.objects.filter(visit=visit, purpose=Purpose.INVITE_CANCEL)
    assert list(cancels.values_list("clinician__display_name", flat=True)) == ["Dr. Alvarez"]
    # The prescriber is free again at that time.
    booking.book(
        patient=team.patient("Next", "Patient"),
        visit_type=team.screening,
        clinician=team.prescriber,
        room=team.room3,
        start=at(MONDAY, "10:00"),
    )
    with pytest.raises(BookingError, match="Zoe Moss is not on this visit"):
        booking.replace_participant(visit, team.second_therapist, team.therapist)


def test_cancelling_frees_everyone(team):
    visit = team.book_lozenge()
    booking.cancel(visit, "Unwell")
    assert not VisitParticipant.objects.filter(visit=visit, holds_time=True).exists()
    assert team.book_lozenge(start="10:00", room=team.room1).pk != visit.pk


# -- everyone sees their part --------------------------------------------------


def test_both_peoples_feeds_hold_the_session_each_for_their_part(team):
    visit = team.book_lozenge()
    client = Client()
    spans = {}
    for clinician in (team.nurse, team.therapist):
        _, raw = tokens.issue(clinician)
        response = client.get(f"/calendars/{raw}.ics")
        assert response.status_code == 200
        events = [
            event
            for event in Calendar.from_ical(response.content).walk("VEVENT")
            if str(event["UID"]) == visit.uid
        ]
        assert len(events) == 1, clinician
        spans[str(clinician)] = (
            f"{events[0].decoded('DTSTART').astimezone(team.clinic.tz):%H:%M}",
            f"{events[0].decoded('DTEND').astimezone(team.clinic.tz):%H:%M}",
        )
        assert "Team: Nurse Kim (nurse, leads); Sam Rivers (therapist, 10:00-11:00)" in str(
            events[0]["DESCRIPTION"]
        ).replace("\n", "")
    assert spans == {"Nurse Kim": ("10:00", "13:00"), "Sam Rivers": ("10:00", "11:00")}


def test_the_availability_of_a_person_counts_only_their_part(team):
    team.book_lozenge()
    availability = Availability(team.clinic, at(MONDAY, "00:00"), at(MONDAY, "23:00"))
    assert not availability.person_free(team.therapist, at(MONDAY, "10:30"), at(MONDAY, "11:30"))
    assert availability.person_free(team.therapist, at(MONDAY, "11:00"), at(MONDAY, "12:00"))
    assert not availability.person_free(team.nurse, at(MONDAY, "12:30"), at(MONDAY, "13:30"))


@pytest.mark.parametrize("slug", ["iv-induction", "kap-lozenge", "spravato"])
def test_every_demo_protocol_books_its_doses_with_a_monitor_and_a_therapist(db, now, slug):
    call_command("seed_demo", stdout=StringIO())
    # Patient 7 of the demo is screened and enrolled in the REMS.
    patient = Patient.objects.get(email="gray.goldfinch@example.org")
    out = StringIO()
    call_command(
        "plan",
        patient=patient.email,
        protocol=slug,
        start="2030-02-04",
        json=True,
        confirm=True,
        stdout=out,
    )
    doses = [v for v in json.loads(out.getvalue())["visits"] if v["kind"] == "dosing"]
    booked = Visit.objects.filter(
        patient=patient, visit_type__kind=VisitKind.DOSING, start__year=2030
    )
    assert len(doses) >= 6 and booked.count() == len(doses)
    for visit in booked:
        roles = [part.role for part in visit.staff]
        assert roles[0] in ("nurse", "prescriber") and roles[1:] == ["therapist"], visit
        assert [
            p["role"]
            for p in next(
                v
                for v in doses
                if v["start"] == visit.start.astimezone(visit.patient.clinic.tz).isoformat()
            )["staff"]
        ] == roles
    # Nobody is on two of these at once, each for their part.
    parts = VisitParticipant.objects.filter(visit__in=booked).order_by("clinician", "start")
    for earlier, later in pairwise(parts):
        if earlier.clinician_id == later.clinician_id:
            assert earlier.end <= later.start


def test_the_clinicians_calendar_page_shows_each_their_own_part(team, client):
    visit = team.book_lozenge()
    for clinician, part in ((team.therapist, "10:00-11:00"), (team.nurse, "10:00-13:00")):
        sign_in_verified(client, clinician.user)
        page = client.get(reverse("my_calendar"), {"week": MONDAY.isoformat()}).text
        entry = re.search(rf'<li id="visit-{visit.pk}"[^>]*>(.*?)</li>', page, re.S).group(1)
        assert f'<span class="time">{part}</span>' in entry, clinician
        assert "Nurse Kim" in entry and "Sam Rivers" in entry
        client.logout()


def test_a_place_nobody_can_fill_says_until_when_whoever_leads(team):
    """A search skips to the time a place can next be filled: the earliest any candidate's
    visit ends, and only when that holds for every lead (plans/generator.py)."""
    for therapist, until in ((team.therapist, "11:30"), (team.second_therapist, "11:00")):
        booking.book(
            patient=team.patient(screened=True),
            visit_type=team.integration,
            clinician=therapist,
            start=at(MONDAY, until) - team.integration.duration,
        )
    window = (at(MONDAY, "00:00"), at(MONDAY + timedelta(days=1), "00:00"))
    availability = Availability(team.clinic, *window, lazy=True)
    start = at(MONDAY, "10:30")
    end = start + team.lozenge.duration

    members, missing, until = availability.staff_or_wait(team.lozenge, team.nurse, start, end)
    assert (members, missing.label, until) == ((), "therapist", at(MONDAY, "11:00"))
    # Only the preferred therapist asked, and nobody who could lead among them: their end.
    *_, until = availability.staff_or_wait(
        team.lozenge, team.nurse, start, end, prefer=[team.therapist], only_preferred=True
    )
    assert until == at(MONDAY, "11:30")

    # A nurse who is a therapist too: leading, she is taken for the therapist's place,
    # and with another lead she could take it. Nothing is known then.
    both = team.clinician("Ada Ray", "nurse", "therapist")
    availability = Availability(team.clinic, *window, lazy=True)
    _, missing, until = availability.staff_or_wait(team.lozenge, both, start, end)
    assert (missing.label, until) == ("therapist", None)
    # Busy herself and the only one preferred: another lead (she) would make everyone asked.
    booking.book(
        patient=team.patient(screened=True),
        visit_type=team.integration,
        clinician=both,
        start=at(MONDAY, "10:10"),
    )
    availability = Availability(team.clinic, *window, lazy=True)
    _, missing, until = availability.staff_or_wait(
        team.lozenge, team.nurse, start, end, prefer=[both], only_preferred=True
    )
    assert (missing.label, until) == ("therapist", None)
