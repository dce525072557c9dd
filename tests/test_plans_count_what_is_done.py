"""A plan does not repeat what is done: visits the patient already has count for their steps.

A booked or completed visit of a step's visit type inside that step's window
is shown as the step's visit (``Proposal.satisfied``, ``existing_visit`` in
``plan --json``), is not booked again, and the steps timed from it are timed
from it; one too old for the rest of the plan to follow is not counted.
"""

import json
import re
from datetime import date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from plans.care_plans import confirm, save_proposal
from plans.generator import generate
from plans.models import CONTRAINDICATIONS, CarePlan, Protocol, Screening
from scheduler import booking
from scheduler.availability import free_slots
from scheduler.models import Clinic, Patient, Visit, VisitKind, VisitStatus, VisitType
from scheduler.timezones import zone
from tests.conftest import at
from tests.page_helpers import front_desk
from tests.plan_rules import rule_violations

pytestmark = pytest.mark.usefixtures("now")

NEW_PATIENT = 13  # a demo patient with no visits and no screening yet
SCREENING_DAY = date(2030, 1, 7)  # a Monday; the clock starts on 2030-01-02
PLAN_START = date(2030, 1, 8)


@pytest.fixture
def demo(demo_seeded, db, now):
    return Clinic.objects.get(slug="riverside")


def visit_type(clinic, slug) -> VisitType:
    return VisitType.objects.get(clinic=clinic, slug=slug)


def book_first_free(clinic, patient, slug, day) -> Visit:
    kind = visit_type(clinic, slug)
    slot = free_slots(kind, day, day + timedelta(days=7), patient=patient, limit=1)[0]
    return booking.book(
        patient=patient, visit_type=kind, clinician=slot.clinician, room=slot.room, start=slot.start
    )


@pytest.fixture
def patient(demo) -> Patient:
    return Patient.objects.filter(clinic=demo).order_by("pk")[NEW_PATIENT]


@pytest.fixture
def screened_and_prepared(demo, patient, now):
    """A screening visit done on SCREENING_DAY and cleared, a preparation booked two days later."""
    screening = book_first_free(demo, patient, "screening", SCREENING_DAY)
    now.move_to(screening.end)
    booking.check_in(screening)
    screening = booking.complete(screening)
    Screening.objects.create(
        patient=patient,
        answers=dict.fromkeys(CONTRAINDICATIONS, False),
        answered_by=screening.clinician,
    ).clear(screening.clinician)
    preparation = book_first_free(demo, patient, "preparation", SCREENING_DAY + timedelta(days=2))
    return screening, preparation


def protocol(clinic, slug) -> Protocol:
    return Protocol.objects.select_related("clinic").get(clinic=clinic, slug=slug)


def test_a_screening_done_and_a_preparation_booked_are_counted_not_booked_again(
    demo, patient, screened_and_prepared
):
    screening, preparation = screened_and_prepared
    proposal = generate(patient, protocol(demo, "iv-induction"), PLAN_START)

    kinds = [v.visit_type.kind for v in proposal.visits]
    assert VisitKind.SCREENING not in kinds and VisitKind.PREPARATION not in kinds
    assert kinds.count(VisitKind.DOSING) == 6
    assert [(v.step.position, v.existing) for v in proposal.satisfied] == [
        (1, screening),
        (2, preparation),
    ]
    assert rule_violations(proposal) == []
    assert proposal.total_cost == sum(v.visit_type.price for v in proposal.visits)
    assert any("not booked again" in warning for warning in proposal.warnings)

    first_infusion = min(
        (v for v in proposal.visits if v.visit_type.is_dosing), key=lambda v: v.start
    )
    assert first_infusion.follows.existing == preparation  # timed from the visit already booked
    assert timedelta(days=1) <= first_infusion.start - preparation.end <= timedelta(days=14)

    confirm(save_proposal(proposal))
    mine = Visit.objects.filter(patient=patient).exclude(status=VisitStatus.CANCELLED)
    assert mine.filter(visit_type__kind=VisitKind.SCREENING).count() == 1
    assert mine.filter(visit_type__kind=VisitKind.PREPARATION).count() == 1
    assert mine.filter(visit_type__kind=VisitKind.DOSING, status=VisitStatus.BOOKED).count() == 6
    preparation.refresh_from_db()
    assert (preparation.status, preparation.start) == (VisitStatus.BOOKED, preparation.start)


def test_a_series_counts_the_visit_done_and_books_the_rest_spaced_from_it(demo, patient, now):
    screening = book_first_free(demo, patient, "screening", SCREENING_DAY)
    preparation = book_first_free(demo, patient, "preparation", SCREENING_DAY + timedelta(days=2))
    proposal = generate(patient, protocol(demo, "kap-lozenge"), PLAN_START)

    preparations = [v for v in proposal.visits if v.visit_type.kind == VisitKind.PREPARATION]
    assert [v.occurrence for v in preparations] == [2]
    assert [v.existing for v in proposal.satisfied] == [screening, preparation]
    spacing = preparations[0].start - preparation.start
    assert timedelta(days=2) <= spacing <= timedelta(days=10)
    assert rule_violations(proposal) == []


def test_a_screening_too_long_ago_for_the_plan_to_follow_is_not_counted(demo, patient, now):
    old = book_first_free(demo, patient, "screening", SCREENING_DAY)
    now.move_to(old.end)
    booking.check_in(old)
    booking.complete(old)
    start = SCREENING_DAY + timedelta(days=30)  # the preparation must be within 14 days of it

    proposal = generate(patient, protocol(demo, "iv-induction"), start)

    assert proposal.satisfied == []
    screenings = [v for v in proposal.visits if v.visit_type.kind == VisitKind.SCREENING]
    assert len(screenings) == 1 and screenings[0].start >= at(start, "00:00")
    assert rule_violations(proposal) == []


def test_the_plan_command_marks_the_visits_already_there(demo, patient, screened_and_prepared):
    screening, preparation = screened_and_prepared
    out = StringIO()
    call_command(
        "plan",
        patient=str(patient.pk),
        protocol="iv-induction",
        start=PLAN_START.isoformat(),
        json=True,
        stdout=out,
    )
    data = json.loads(out.getvalue())
    marked = [v["existing_visit"] for v in data["visits"] if v["existing_visit"]]
    assert marked == [
        {"id": screening.pk, "status": "completed"},
        {"id": preparation.pk, "status": "booked"},
    ]
    assert len(data["visits"]) == 2 + 6 + 6 + 3
    starts = [datetime.fromisoformat(v["start"]) for v in data["visits"]]
    assert starts == sorted(starts)
    assert starts[0].astimezone(zone("UTC")) == screening.start

    text = StringIO()
    call_command(
        "plan",
        patient=str(patient.pk),
        protocol="iv-induction",
        start=PLAN_START.isoformat(),
        stdout=text,
    )
    lines = text.getvalue().splitlines()
    assert "already completed, not booked again" in lines[1]
    assert "already booked, not booked again" in lines[2]


def test_the_desk_shows_the_visits_already_there_and_books_only_the_new_ones(
    client, demo, patient, screened_and_prepared
):
    screening, preparation = screened_and_prepared
    client.force_login(front_desk())
    form = {
        "patient": patient.pk,
        "protocol": protocol(demo, "iv-induction").pk,
        "start_date": PLAN_START.isoformat(),
        "time_from": "08:00",
        "time_to": "18:00",
        "weekdays": [str(day) for day in range(7)],
    }
    page = client.post(reverse("desk_new_plan"), {**form, "action": "propose"})
    rows = re.findall(r"<td>(Already [a-z]+), not booked again</td>", page.text)
    assert rows == ["Already completed", "Already booked"]
    shown = re.search(r'name="shown" value="([^"]*)"', page.text).group(1)
    new = len(page.context["proposal"].visits)

    client.post(reverse("desk_new_plan"), {**form, "action": "confirm", "shown": shown})
    plan = CarePlan.objects.get(patient=patient)
    assert plan.planned_visits.filter(visit__status=VisitStatus.BOOKED).count() == new
    assert Visit.objects.filter(patient=patient).count() == 2 + new
    kept = Visit.objects.filter(pk__in=[screening.pk, preparation.pk])
    assert sorted(kept.values_list("status", flat=True)) == ["booked", "completed"]
