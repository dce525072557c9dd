"""Schedules and their Slots: free and busy times worked out from what decides bookings,
in the clinic's wall-clock hours across DST changes, each slot readable by its id."""

from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduler import booking
from scheduler.models import BusyBlock, Closure, ExternalCalendar, TimeOff, Visit
from tests.conftest import MONDAY, ClinicBuilder, at
from tests.fhir_helpers import bearer, body, every_page, fhir_get, validated

pytestmark = pytest.mark.django_db

SCOPES = "system/Schedule.rs system/Slot.rs"


def slots(path, token):
    entries = every_page(path, token)
    for entry in entries:
        validated(entry["resource"])
    return [entry["resource"] for entry in entries]


def spans(found, status=None):
    return [(s["start"], s["end"], s["status"]) for s in found if status in (None, s["status"])]


def week_of(schedule, first: date, days=1):
    last = first + timedelta(days=days)
    return f"/fhir/Slot?schedule=Schedule/{schedule}&start=ge{first}&start=lt{last}"


def test_schedules_are_each_clinicians_and_each_rooms(clinic):
    token = bearer(clinic.clinic, SCOPES)
    bundle = body(fhir_get("/fhir/Schedule", token))
    validated(bundle)
    found = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    expected = {f"practitioner-{c.pk}" for c in clinic.clinic.clinicians.all()} | {
        f"room-{r.pk}" for r in (clinic.room1, clinic.room2, clinic.room3)
    }
    assert set(found) == expected
    therapist = found[f"practitioner-{clinic.therapist.pk}"]
    assert therapist["actor"] == [
        {"reference": f"Practitioner/{clinic.therapist.pk}", "display": "Sam Rivers"}
    ]
    assert [s["text"] for s in therapist["serviceType"]] == [clinic.integration.name]
    # Room 1 has the infusion chair the IV needs; room 3 has nothing special.
    room1 = found[f"room-{clinic.room1.pk}"]
    assert clinic.iv.name in [s["text"] for s in room1["serviceType"]]
    room3 = found[f"room-{clinic.room3.pk}"]
    assert clinic.iv.name not in [s["text"] for s in room3["serviceType"]]
    assert therapist["planningHorizon"]["end"].endswith("Z")
    only = body(fhir_get(f"/fhir/Schedule?actor=Practitioner/{clinic.nurse.pk}", token))
    assert [e["resource"]["id"] for e in only["entry"]] == [f"practitioner-{clinic.nurse.pk}"]
    clinic.nurse.is_active = False
    clinic.nurse.save()
    inactive = body(fhir_get("/fhir/Schedule?active=false", token))
    assert [e["resource"]["id"] for e in inactive["entry"]] == [f"practitioner-{clinic.nurse.pk}"]
    read = fhir_get(f"/fhir/Schedule/room-{clinic.room2.pk}", token)
    assert validated(body(read)).id == f"room-{clinic.room2.pk}"


def test_a_clinicians_day_is_free_and_busy_around_visits_time_off_and_own_calendar(clinic, now):
    patient = clinic.patient()
    booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    TimeOff.objects.create(
        clinician=clinic.therapist, start=at(MONDAY, "15:00"), end=at(MONDAY, "17:00")
    )
    calendar = ExternalCalendar.objects.create(
        clinician=clinic.therapist, url="https://calendar.example.com/sam.ics"
    )
    BusyBlock.objects.create(
        clinician=clinic.therapist,
        external_calendar=calendar,
        start=at(MONDAY, "12:00"),
        end=at(MONDAY, "12:45"),
    )
    token = bearer(clinic.clinic, SCOPES)
    found = slots(week_of(f"practitioner-{clinic.therapist.pk}", MONDAY), token)
    # Sam works 09:00-17:00 New York time (13:00-21:00 UTC in June).
    assert spans(found, "busy") == [
        ("2030-06-03T14:00:00Z", "2030-06-03T14:50:00Z", "busy"),
        ("2030-06-03T16:00:00Z", "2030-06-03T16:45:00Z", "busy"),
    ]
    assert spans(found, "busy-unavailable") == [
        ("2030-06-03T19:00:00Z", "2030-06-03T21:00:00Z", "busy-unavailable")
    ]
    free_starts = [start[11:16] for start, _, _ in spans(found, "free")]
    assert free_starts == ["13:00", "13:30", "15:00", "15:30", "17:00", "17:30", "18:00", "18:30"]
    assert all(
        s["schedule"]["reference"] == f"Schedule/practitioner-{clinic.therapist.pk}" for s in found
    )


def test_a_rooms_slots_follow_the_clinics_hours_and_closures(clinic, now):
    booking.book(
        patient=clinic.patient(),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        start=at(MONDAY, "08:00"),
        room=clinic.room1,
    )
    Closure.objects.create(
        clinic=clinic.clinic, start=at(MONDAY, "16:00"), end=at(MONDAY, "18:00"), reason="Training"
    )
    found = slots(week_of(f"room-{clinic.room1.pk}", MONDAY), bearer(clinic.clinic, SCOPES))
    assert spans(found, "busy") == [("2030-06-03T12:00:00Z", "2030-06-03T14:00:00Z", "busy")]
    assert spans(found, "busy-unavailable") == [
        ("2030-06-03T20:00:00Z", "2030-06-03T22:00:00Z", "busy-unavailable")
    ]
    free = spans(found, "free")
    # Open 08:00-18:00: free from 10:00 to the closure at 16:00, half an hour at a time.
    assert (free[0][0], free[-1][1], len(free)) == (
        "2030-06-03T14:00:00Z",
        "2030-06-03T20:00:00Z",
        12,
    )


def test_slot_times_keep_the_wall_clock_across_the_us_fall_back(clinic):
    # DST ends in the US on Sunday 2030-11-03: 09:00 is 13:00Z on Friday, 14:00Z on Monday.
    found = slots(
        week_of(f"practitioner-{clinic.therapist.pk}", date(2030, 11, 1), days=4),
        bearer(clinic.clinic, SCOPES),
    )
    firsts = {}
    for start, _end, _status in spans(found, "free"):
        firsts.setdefault(start[:10], start[11:16])
    assert firsts == {"2030-11-01": "13:00", "2030-11-04": "14:00"}


def test_a_slot_reads_by_its_id_while_it_is_still_so(clinic, now):
    token = bearer(clinic.clinic, SCOPES)
    schedule = f"practitioner-{clinic.therapist.pk}"
    found = slots(week_of(schedule, MONDAY), token)
    first = found[0]
    assert first["id"] == f"{schedule}.20300603T1300Z.30"
    again = fhir_get(f"/fhir/Slot/{first['id']}", token)
    assert body(again) == first
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "09:00"),
    )
    gone = fhir_get(f"/fhir/Slot/{first['id']}", token)
    assert gone.status_code == 404
    assert validated(body(gone)).issue[0].code == "not-found"
    busy = fhir_get(f"/fhir/Slot/{schedule}.20300603T1300Z.50", token)
    assert body(busy)["status"] == "busy"
    booking.cancel(visit)
    assert fhir_get(f"/fhir/Slot/{first['id']}", token).status_code == 200
    for nonsense in [
        "nonsense",
        f"{schedule}.20300603T1300Z.99999999999",
        f"{schedule}.2030.30",
        f"{schedule}.00010101T0000Z.30",
    ]:
        assert fhir_get(f"/fhir/Slot/{nonsense}", token).status_code == 404


def test_a_slot_search_needs_a_schedule_and_a_bounded_start_range(clinic):
    token = bearer(clinic.clinic, SCOPES)
    schedule = f"Schedule/practitioner-{clinic.therapist.pk}"
    for path, code in [
        ("/fhir/Slot?start=ge2030-06-03&start=lt2030-06-04", "required"),
        (f"/fhir/Slot?schedule={schedule}&start=ge2030-06-03", "required"),
        (f"/fhir/Slot?schedule={schedule}&start=ge2030-06-01&start=lt2030-08-01", "too-costly"),
        (f"/fhir/Slot?schedule={schedule}&start=ge2030-06-03&start=lt2030-06-03", "invalid"),
        (f"/fhir/Slot?schedule={schedule}&start=ge2030-06-xx&start=lt2030-06-04", "invalid"),
        (f"/fhir/Slot?schedule={schedule}&start=ge0001-01-01&start=lt0001-01-05", "invalid"),
    ]:
        response = fhir_get(path, token)
        assert response.status_code == 400, path
        assert validated(body(response)).issue[0].code == code, path


def test_scopes_and_clinics_hold(clinic):
    schedule = f"practitioner-{clinic.therapist.pk}"
    response = fhir_get(week_of(schedule, MONDAY), bearer(clinic.clinic, "system/Schedule.rs"))
    assert response.status_code == 403
    other = bearer(ClinicBuilder().clinic, SCOPES)
    assert fhir_get(f"/fhir/Schedule/{schedule}", other).status_code == 404
    assert body(fhir_get(week_of(schedule, MONDAY), other))["total"] == 0


def test_a_week_of_slots_takes_the_same_queries_for_few_or_many_visits(clinic):
    token = bearer(clinic.clinic, SCOPES)
    url = week_of(f"practitioner-{clinic.prescriber.pk}", MONDAY, days=7)
    patient = clinic.patient()

    def queries():
        with CaptureQueriesContext(connection) as captured:
            bundle = body(fhir_get(url, token))
        validated(bundle)
        return bundle, len(captured)

    clinic.doses_one_after_another([patient] * 2, at(MONDAY, "08:00"))
    few_bundle, few = queries()
    clinic.doses_one_after_another([patient] * 30, at(MONDAY, "08:00"))
    many_bundle, many = queries()
    assert Visit.objects.count() == 32
    assert many_bundle["total"] != few_bundle["total"]
    assert few == many <= 15


def test_slots_of_several_schedules_narrowed_to_free_ones(clinic, now):
    booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    token = bearer(clinic.clinic, SCOPES)
    therapist, nurse = f"practitioner-{clinic.therapist.pk}", f"practitioner-{clinic.nurse.pk}"
    found = slots(
        f"/fhir/Slot?schedule=Schedule/{therapist},Schedule/{nurse}"
        f"&start=ge{MONDAY}&start=lt{MONDAY + timedelta(days=1)}&status=free&_count=7",
        token,
    )
    assert {s["status"] for s in found} == {"free"}
    by_schedule = {}
    for slot in found:
        by_schedule.setdefault(slot["schedule"]["reference"], []).append(slot["start"])
    # The nurse works 08:00-18:00 (20 cells), Sam 09:00-17:00 less the visit's two.
    assert len(by_schedule[f"Schedule/{nurse}"]) == 20
    assert len(by_schedule[f"Schedule/{therapist}"]) == 14


def test_slot_times_keep_the_wall_clock_across_the_eu_spring_forward(db):
    # DST starts in the EU on Sunday 2030-03-31: 09:00 in Berlin is 08:00Z on the
    # Friday before and 07:00Z on the Monday after.
    berlin = ClinicBuilder("Europe/Berlin")
    therapist = berlin.clinician("Lena Vogel", "therapist", hours=("09:00", "17:00"))
    found = slots(
        week_of(f"practitioner-{therapist.pk}", date(2030, 3, 29), days=4),
        bearer(berlin.clinic, SCOPES),
    )
    firsts = {}
    for start, _end, _status in spans(found, "free"):
        firsts.setdefault(start[:10], start[11:16])
    assert firsts == {"2030-03-29": "08:00", "2030-04-01": "07:00"}
