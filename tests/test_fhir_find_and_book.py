"""Appointment/$find proposes times free for the whole team, a room and the patient, kept by
the protocol's rules; Appointment/$book books one through the same checks as the desk."""

import json
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from notifications.models import Message
from scheduler import booking
from scheduler.models import AuditAction, AuditEvent, TimeOff, Visit, VisitStatus
from tests.conftest import MONDAY, ClinicBuilder, at
from tests.fhir_helpers import FHIR_JSON, bearer, body, fhir_get, validated

pytestmark = pytest.mark.django_db

FIND = "system/Appointment.rs"
BOOK = "system/Appointment.rs system/Appointment.c"


@pytest.fixture
def team_iv(clinic):
    """The IV infusion led by a prescriber with a therapist for its first hour."""
    return clinic.add_to_team(clinic.iv, "therapist", stays_minutes=60)


def find_url(clinic, patient, first=MONDAY, days=1, **extra):
    params = {
        "service-type": f"urn:kap-scheduler:visit-type|{clinic.iv.pk}",
        "patient": f"Patient/{patient.pk}",
        "start": first.isoformat(),
        "end": (first + timedelta(days=days)).isoformat(),
        **extra,
    }
    return "/fhir/Appointment/$find?" + "&".join(f"{k}={v}" for k, v in params.items())


def found(response):
    assert response.status_code == 200, response.content
    bundle = body(response)
    validated(bundle)
    for entry in bundle["entry"]:
        validated(entry["resource"])
    return bundle


def proposals(bundle):
    return [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]


def outcome(bundle):
    (entry,) = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    return " ".join(issue["diagnostics"] for issue in entry["resource"]["issue"])


def post(path, data, token, content_type=FHIR_JSON):
    return Client().post(
        path,
        data if isinstance(data, str) else json.dumps(data),
        content_type=content_type,
        HTTP_ACCEPT=FHIR_JSON,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_find_proposes_times_with_the_whole_team_and_a_room(clinic, now, team_iv):
    patient = clinic.patient()
    token = bearer(clinic.clinic, FIND)
    bundle = found(fhir_get(find_url(clinic, patient, _count=5), token))
    times = proposals(bundle)
    assert bundle["total"] == len(times) == 5
    # Sam (the only therapist) works from 09:00: the first IV starts then, 13:00 UTC.
    assert [t["start"] for t in times][:2] == ["2030-06-03T13:00:00Z", "2030-06-03T13:30:00Z"]
    for time in times:
        assert time["status"] == "proposed" and "id" not in time
        actors = [p["actor"]["reference"] for p in time["participant"]]
        assert actors == [
            f"Patient/{patient.pk}",
            f"Practitioner/{clinic.prescriber.pk}",
            f"Practitioner/{clinic.therapist.pk}",
            f"Location/room-{clinic.room1.pk}",
        ]
        assert {p["status"] for p in time["participant"]} == {"needs-action"}
    # The same time is named the same way each time it is found.
    again = found(fhir_get(find_url(clinic, patient, _count=5), token))
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in bundle["entry"]]
    assert AuditEvent.objects.filter(action=AuditAction.API_SEARCHED, patient=patient).exists()


def test_find_with_a_parameters_body_and_a_practitioner(clinic, now):
    other = clinic.clinician("Dr. Baptiste", "prescriber")
    patient = clinic.patient()
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDate": MONDAY.isoformat()},
            {"name": "end", "valueDate": (MONDAY + timedelta(days=2)).isoformat()},
            {
                "name": "healthcare-service",
                "valueReference": {"reference": f"HealthcareService/{clinic.screening.pk}"},
            },
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient.pk}"}},
            {"name": "practitioner", "valueReference": {"reference": f"Practitioner/{other.pk}"}},
            {"name": "_count", "valueInteger": 3},
        ],
    }
    bundle = found(post("/fhir/Appointment/$find", parameters, bearer(clinic.clinic, FIND)))
    leads = {t["participant"][1]["actor"]["reference"] for t in proposals(bundle)}
    assert leads == {f"Practitioner/{other.pk}"}
    assert len(proposals(bundle)) == 3


def test_find_says_which_place_had_no_one_free(clinic, now, team_iv):
    TimeOff.objects.create(
        clinician=clinic.therapist, start=at(MONDAY, "00:00"), end=at(MONDAY, "23:59")
    )
    bundle = found(fhir_get(find_url(clinic, clinic.patient()), bearer(clinic.clinic, FIND)))
    assert proposals(bundle) == [] and bundle["total"] == 0
    assert "No therapist is free." in outcome(bundle)


def test_find_keeps_the_screening_gate_and_dose_spacing(clinic, now):
    unscreened = clinic.patient("Una", screened=False)
    token = bearer(clinic.clinic, FIND)
    bundle = found(fhir_get(find_url(clinic, unscreened), token))
    assert proposals(bundle) == []
    assert "screening has not been cleared" in outcome(bundle)

    patient = clinic.patient("Dee")
    dose = booking.book(
        patient=patient,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        start=at(MONDAY, "09:00"),
        room=clinic.room1,
    )
    gap = timedelta(hours=clinic.iv.dose_rule.min_hours)
    times = proposals(found(fhir_get(find_url(clinic, patient, days=3, _count=50), token)))
    assert times
    for time in times:
        assert abs(datetime.fromisoformat(time["start"]) - dose.start) >= gap


def test_find_refuses_what_it_cannot_read(clinic, now):
    token = bearer(clinic.clinic, FIND)
    patient = clinic.patient()
    other_patient = ClinicBuilder().patient()
    for url, code in [
        (find_url(clinic, patient, days=20), "too-costly"),
        (find_url(clinic, other_patient), "invalid"),
        (find_url(clinic, patient).replace("patient=", "nobody="), "required"),
        (find_url(clinic, patient).replace(f"|{clinic.iv.pk}", "|99999"), "invalid"),
        (find_url(clinic, patient, _count="lots"), "invalid"),
    ]:
        response = fhir_get(url, token)
        assert response.status_code == 400, url
        assert validated(body(response)).issue[0].code == code, url
    response = fhir_get(find_url(clinic, patient), bearer(clinic.clinic, "system/Patient.rs"))
    assert response.status_code == 403


def test_find_takes_the_same_queries_however_busy_the_days(clinic, now, team_iv):
    token = bearer(clinic.clinic, FIND)
    patient = clinic.patient()
    others = [clinic.patient(f"P{n}") for n in range(12)]

    def queries():
        with CaptureQueriesContext(connection) as captured:
            found(fhir_get(find_url(clinic, patient, days=5), token))
        return len(captured)

    clinic.doses_one_after_another(others[:2], at(MONDAY, "08:00"))
    few = queries()
    clinic.doses_one_after_another(others[2:], at(MONDAY, "08:00"))
    assert queries() == few <= 30


def test_book_books_the_time_found_as_the_desk_would(clinic, now, team_iv):
    patient = clinic.patient()
    token = bearer(clinic.clinic, BOOK, name="Charting system")
    first = proposals(found(fhir_get(find_url(clinic, patient), token)))[0]
    response = post("/fhir/Appointment/$book", first, token)
    assert response.status_code == 201, response.content
    booked = body(response)
    validated(booked)
    visit = Visit.objects.get(pk=booked["id"])
    assert response["Location"] == f"http://testserver/fhir/Appointment/{visit.pk}"
    assert (visit.status, visit.start, visit.clinician, visit.room) == (
        VisitStatus.BOOKED,
        at(MONDAY, "09:00"),
        clinic.prescriber,
        clinic.room1,
    )
    assert [p.clinician for p in visit.staff] == [clinic.prescriber, clinic.therapist]
    assert booked["status"] == "booked"
    event = AuditEvent.objects.get(action=AuditAction.API_BOOKED)
    assert (event.patient_id, event.actor_label) == (patient.pk, "FHIR client Charting system")
    # The reminders a desk booking plans.
    assert Message.objects.filter(visit=visit).exists()

    # The same time again: taken.
    again = post("/fhir/Appointment/$book", first, token)
    assert again.status_code == 409, again.content
    issue = validated(body(again)).issue[0]
    assert issue.code == "conflict" and "already has a visit" in issue.diagnostics


def test_book_as_parameters_and_the_rules_refuse_with_422(clinic, now):
    token = bearer(clinic.clinic, BOOK)
    patient = clinic.patient()
    proposal = proposals(found(fhir_get(find_url(clinic, patient), token)))[0]
    unscreened = clinic.patient("Una", screened=False)
    for participant in proposal["participant"]:
        if participant["actor"]["reference"].startswith("Patient/"):
            participant["actor"]["reference"] = f"Patient/{unscreened.pk}"
    wrapped = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appt-resource", "resource": proposal}],
    }
    response = post("/fhir/Appointment/$book", wrapped, token)
    assert response.status_code == 422
    issue = validated(body(response)).issue[0]
    assert issue.code == "business-rule" and "screening has not been cleared" in issue.diagnostics
    assert not Visit.objects.filter(patient=unscreened).exists()


def test_book_refuses_what_it_cannot_read_and_needs_the_write_scope(clinic, now):
    token = bearer(clinic.clinic, BOOK)
    proposal = proposals(found(fhir_get(find_url(clinic, clinic.patient()), token)))[0]
    assert post("/fhir/Appointment/$book", proposal, bearer(clinic.clinic, FIND)).status_code == 403
    assert post("/fhir/Appointment/$book", "{not json", token).status_code == 400
    assert post("/fhir/Appointment/$book", {"resourceType": "Patient"}, token).status_code == 400
    for change in [
        {"start": "tomorrow"},
        {"start": "2030-06-03T09:00:00"},
        {"end": "2030-06-03T23:00:00Z"},
        {"serviceType": []},
        {
            "participant": [
                p for p in proposal["participant"] if "Patient/" not in p["actor"]["reference"]
            ]
        },
    ]:
        response = post("/fhir/Appointment/$book", {**proposal, **change}, token)
        assert response.status_code == 400, change
        validated(body(response))
    other = ClinicBuilder().patient()
    stranger = {
        **proposal,
        "participant": [
            {**p, "actor": {"reference": f"Patient/{other.pk}"}}
            if "Patient/" in p["actor"]["reference"]
            else p
            for p in proposal["participant"]
        ],
    }
    assert post("/fhir/Appointment/$book", stranger, token).status_code == 400
    assert not Visit.objects.exists()


def test_book_answers_hostile_bodies_with_400_not_500(clinic, now):
    token = bearer(clinic.clinic, BOOK)
    proposal = proposals(found(fhir_get(find_url(clinic, clinic.patient()), token)))[0]
    for change in [
        {"participant": "everyone"},
        {"participant": [1, None, {"actor": "Patient/1"}]},
        {"serviceType": [{"coding": "iv"}]},
        {"end": "later"},
        {"start": 20300603},
    ]:
        response = post("/fhir/Appointment/$book", {**proposal, **change}, token)
        assert response.status_code == 400, (change, response.content)
        validated(body(response))
    broken = {"resourceType": "Parameters", "parameter": [{"name": "x", "valueCoding": "iv"}, 7]}
    assert post("/fhir/Appointment/$find", broken, token).status_code == 400
    assert post("/fhir/Appointment/$book", broken, token).status_code == 400


def test_find_keeps_the_wall_clock_across_the_us_spring_forward(clinic, now):
    # DST starts in the US on Sunday 2030-03-10: Sam's 09:00 is 14:00Z on the
    # Friday before and 13:00Z on the Monday after.
    token = bearer(clinic.clinic, FIND)
    patient = clinic.patient()
    url = find_url(clinic, patient, first=MONDAY.replace(month=3, day=8), days=4)
    url = url.replace(f"|{clinic.iv.pk}", f"|{clinic.integration.pk}") + "&_count=50"
    starts = [t["start"] for t in proposals(found(fhir_get(url, token)))]
    firsts = {}
    for start in starts:
        firsts.setdefault(start[:10], start[11:16])
    assert firsts == {"2030-03-08": "14:00", "2030-03-11": "13:00"}


def test_book_takes_the_same_queries_however_busy_the_diary(clinic, now, team_iv):
    token = bearer(clinic.clinic, BOOK)
    others = [clinic.patient(f"P{n}") for n in range(12)]

    def queries_to_book(day):
        patient = clinic.patient(f"Booker{day}")
        url = find_url(clinic, patient, first=MONDAY + timedelta(days=day))
        proposal = proposals(found(fhir_get(url, token)))[0]
        with CaptureQueriesContext(connection) as captured:
            assert post("/fhir/Appointment/$book", proposal, token).status_code == 201
        return len(captured)

    clinic.doses_one_after_another(others[:2], at(MONDAY, "12:00"))
    few = queries_to_book(0)
    clinic.doses_one_after_another(others[2:], at(MONDAY + timedelta(days=1), "12:00"))
    # The booking itself, its audit row and what it plans (reminders, invites): about 50.
    assert queries_to_book(1) == few <= 55


def test_find_in_a_past_window_says_nothing_there_can_be_booked(clinic, now):
    url = find_url(clinic, clinic.patient(), first=MONDAY.replace(year=2029))
    bundle = found(fhir_get(url, bearer(clinic.clinic, FIND)))
    assert proposals(bundle) == []
    assert "Nothing in this window can be booked" in outcome(bundle)


def test_find_with_a_practitioner_who_does_not_lead_puts_them_on_the_team(clinic, now, team_iv):
    other = clinic.clinician("Jo Park", "therapist")
    url = find_url(clinic, clinic.patient(), practitioner=f"Practitioner/{other.pk}", _count=5)
    times = proposals(found(fhir_get(url, bearer(clinic.clinic, FIND))))
    assert len(times) == 5
    for time in times:
        actors = [p["actor"]["reference"] for p in time["participant"]]
        assert f"Practitioner/{other.pk}" in actors
        assert f"Practitioner/{clinic.therapist.pk}" not in actors
