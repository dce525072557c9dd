"""Many FHIR clients booking the one time $find offered, at once: exactly one booking,
every other client a 409 naming what holds the time.

Each thread has its own database connection (tests.races), as separate web
processes would; on PostgreSQL the exclusion constraints decide what slips
past concurrent checks, on SQLite the IMMEDIATE transaction.
"""

import json

import pytest
from django.test import Client

from scheduler.models import Visit
from tests.conftest import MONDAY, SmallClinic
from tests.fhir_helpers import FHIR_JSON, bearer, body, fhir_get, validated
from tests.races import race

RACERS = 12


def book(proposal: dict, token: str):
    return Client().post(
        "/fhir/Appointment/$book",
        json.dumps(proposal),
        content_type=FHIR_JSON,
        HTTP_ACCEPT=FHIR_JSON,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def for_patient(proposal: dict, patient) -> dict:
    return {
        **proposal,
        "participant": [
            {**p, "actor": {"reference": f"Patient/{patient.pk}"}}
            if p["actor"]["reference"].startswith("Patient/")
            else p
            for p in proposal["participant"]
        ],
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["one patient", "a patient each"])
def test_concurrent_books_of_one_found_time_leave_exactly_one_visit(now, who):
    clinic = SmallClinic()
    clinic.add_to_team(clinic.iv, "therapist", stays_minutes=60)
    patients = [clinic.patient(f"Racer{i}") for i in range(RACERS)]
    token = bearer(clinic.clinic, "system/Appointment.rs system/Appointment.c")
    found = body(
        fhir_get(
            f"/fhir/Appointment/$find?service-type={clinic.iv.pk}&patient=Patient/{patients[0].pk}"
            f"&start={MONDAY}&end={MONDAY}T12:00&_count=1",
            token,
        )
    )
    (entry,) = found["entry"]
    proposal = entry["resource"]
    bodies = [
        proposal if who == "one patient" else for_patient(proposal, patients[i])
        for i in range(RACERS)
    ]

    outcomes = race([lambda b=b: book(b, token) for b in bodies])

    statuses = sorted(response.status_code for response in outcomes)
    assert statuses == [201] + [409] * (RACERS - 1), [
        (r.status_code, r.content[:300]) for r in outcomes
    ]
    for response in outcomes:
        resource = body(response)
        validated(resource)
        if response.status_code == 409:
            assert resource["issue"][0]["code"] == "conflict"
            assert "09:00-11:00" in resource["issue"][0]["diagnostics"]
    (winner,) = [body(r) for r in outcomes if r.status_code == 201]
    assert list(Visit.objects.values_list("pk", flat=True)) == [int(winner["id"])]
