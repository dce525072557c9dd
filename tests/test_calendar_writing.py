"""Events written by scheduler.calendars read back exactly: escaping, folding, zones, parameters."""

from datetime import timedelta

import pytest
import vobject

from scheduler import booking
from scheduler.calendars import Audience, Invitee, Method, _fold, build_calendar
from scheduler.models import CalendarDetail
from scheduler.timezones import zone
from tests.conftest import MONDAY, at
from tests.ical_checks import assert_valid_ics

pytestmark = pytest.mark.usefixtures("now")

AWKWARD_ADDRESS = 'Ünit 3; "Höfchen", Straße 7\\8\nZürich, Schweiz \u2013 ☕ ' + "é" * 40


@pytest.fixture
def visit(clinic):
    clinic.clinic.address = AWKWARD_ADDRESS
    clinic.clinic.name = 'Zoë\'s "Clinic"; Ångström, Nuñez & Co'
    clinic.clinic.calendar_detail = CalendarDetail.FULL
    clinic.clinic.save()
    patient = clinic.patient("Zoe", "Angstrom")
    patient.first_name, patient.last_name = "Zoë", "Ångström-Nuñez, Jr."
    patient.time_zone = "Europe/Berlin"
    patient.save()
    return booking.book(
        patient=patient,
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        room=clinic.room3,
        start=at(MONDAY, "09:00"),
    )


def test_text_with_every_special_character_reads_back_unchanged(clinic, visit):
    ics = build_calendar(
        [visit], audience=Audience.PATIENT, clinic=clinic.clinic, tz=zone("Europe/Berlin")
    ).decode()
    assert_valid_ics(ics)
    event = vobject.readOne(ics).vevent
    assert event.location.value == AWKWARD_ADDRESS.replace("\n", ", ")
    assert event.summary.value == f"Screening at {clinic.clinic.name}"
    # 09:00 in New York is 15:00 in Berlin, written in the patient's zone.
    assert "DTSTART;TZID=Europe/Berlin:20300603T150000" in ics


def test_parameters_with_commas_and_quotes_are_quoted(clinic, visit):
    who = Invitee('Zoë "Z" Ångström, Jr.', "zoe@example.com")
    ics = build_calendar(
        [visit],
        audience=Audience.PATIENT,
        clinic=clinic.clinic,
        tz=zone("Europe/Berlin"),
        method=Method.REQUEST,
        attendee=who,
        now=visit.updated_at,
    ).decode()
    assert_valid_ics(ics)
    event = vobject.readOne(ics).vevent
    assert event.attendee.params["CN"] == ["Zoë 'Z' Ångström, Jr."]
    assert event.attendee.value == "mailto:zoe@example.com"
    assert event.organizer.params["CN"] == [clinic.clinic.name.replace('"', "'")]


def test_a_patient_in_utc_gets_utc_times_and_no_vtimezone(clinic, visit):
    ics = build_calendar(
        [visit], audience=Audience.PATIENT, clinic=clinic.clinic, tz=zone("UTC")
    ).decode()
    assert_valid_ics(ics)
    assert "DTSTART:20300603T130000Z" in ics
    assert "VTIMEZONE" not in ics


@pytest.mark.parametrize("text", ["a" * 200, "é" * 100, "€☕" * 40 + "x", "x" * 74 + "é" * 3])
def test_folding_keeps_lines_within_75_octets_and_characters_whole(text):
    folded = _fold(f"DESCRIPTION:{text}")
    lines = folded.split(b"\r\n")[:-1]
    assert all(len(line) <= 75 for line in lines)
    assert all(line.startswith(b" ") for line in lines[1:])
    for line in lines:
        line.decode()  # each physical line is whole UTF-8: no character was split
    assert b"".join(line.removeprefix(b" ") for line in lines).decode() == f"DESCRIPTION:{text}"


def test_a_feed_of_many_visits_spans_its_zone_transitions(clinic):
    patient = clinic.patient()
    visits = [
        booking.book(
            patient=patient,
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=at(MONDAY + timedelta(weeks=week), "10:00"),
        )
        for week in range(0, 30, 3)  # June to December: across the autumn change
    ]
    ics = build_calendar(
        visits, audience=Audience.CLINICIAN, clinic=clinic.clinic, tz=clinic.clinic.tz
    ).decode()
    assert_valid_ics(ics)
    assert "BEGIN:DAYLIGHT" in ics and "BEGIN:STANDARD" in ics
    assert ics.count("DTSTART;TZID=America/New_York:") == len(visits)
    assert all("T100000" in line for line in ics.splitlines() if line.startswith("DTSTART;"))
