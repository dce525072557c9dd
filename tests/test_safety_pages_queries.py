"""The pages that show safety alerts run a fixed number of queries however many alerts there
are, and however many people an alert told."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from questionnaires.escalation import escalate_due
from questionnaires.models import SafetyAlert
from tests.conftest import at
from tests.page_helpers import clinic_admin, front_desk, sign_in_verified
from tests.safety_helpers import DOSE_DAY, OPEN_MORNING, SEVERAL_DAYS, answer_phq9, request_before

LATER = OPEN_MORNING + timedelta(hours=3)
# Session, user, their second factor, roles, clinic, the alert, the safety policy, who was
# told, the audit row; while the alert waits, the opening hours and the closures that say
# when it escalates; for a clinician, their clinician row and their tie to the patient.
ALERT_PAGE_BOUNDS = {"desk": 11, "admin": 11, "prescriber": 13}


def alerts_for(safety_clinic, n: int, first: int = 0) -> list[SafetyAlert]:
    alerts = []
    with time_machine.travel(OPEN_MORNING, tick=False):
        for i in range(first, first + n):
            patient = safety_clinic.patient(f"Pat{i}", f"Person{i}")
            visit = safety_clinic.dose(patient, at(DOSE_DAY + timedelta(days=i), "10:00"))
            answer_phq9(request_before(visit, OPEN_MORNING), item_9=SEVERAL_DAYS)
            alerts.append(SafetyAlert.objects.get(patient=patient))
    return alerts


def count(client: Client, url: str) -> int:
    client.get(url)  # the first page after signing in refreshes the session
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize("who", sorted(ALERT_PAGE_BOUNDS))
def test_the_alert_page_runs_a_fixed_number_of_queries(safety_clinic, who):
    (alert,) = alerts_for(safety_clinic, 1)
    url = reverse("desk_alert", args=[alert.pk])
    with time_machine.travel(LATER, tick=False):
        client = Client()
        user = {
            "desk": front_desk,
            "admin": clinic_admin,
            "prescriber": lambda: safety_clinic.prescriber.user,
        }[who]()
        sign_in_verified(client, user)
        waiting = count(client, url)
        escalate_due()  # the lead is told too: more rows of who was told, no wait to compute
        escalated = count(client, url)
    assert escalated <= waiting <= ALERT_PAGE_BOUNDS[who]
    assert waiting - escalated == 2


def test_the_desks_day_and_the_clinicians_calendar_take_the_same_queries_for_one_alert_or_many(
    safety_clinic,
):
    counts = []
    for n in (1, 4):
        alerts_for(safety_clinic, n - len(counts), first=len(counts))
        with time_machine.travel(LATER, tick=False):
            desk, prescriber = Client(), Client()
            desk.force_login(front_desk())
            sign_in_verified(prescriber, safety_clinic.prescriber.user)
            counts.append(
                (count(desk, reverse("desk_today")), count(prescriber, "/calendars/mine/"))
            )
    assert SafetyAlert.objects.count() == 4
    assert counts[0] == counts[1], counts
