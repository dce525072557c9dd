"""The planner does not give up early: when a later step has no room, earlier steps move later.

The start date is the earliest a plan may start. With every therapist away
for the rest of December, a plan from 9 December cannot place its
preparation within 14 days of the screening, but a plan that starts later in
December can, and is also a plan from 9 December.
"""

import json
from datetime import date, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from plans.generator import generate
from plans.models import Protocol
from scheduler.models import Clinic, Patient, TimeOff, VisitKind
from tests.conftest import at
from tests.plan_rules import rule_violations

pytestmark = pytest.mark.usefixtures("now")

START = date(2030, 12, 9)  # a Monday
BACK = date(2031, 1, 1)  # the therapists' first day back


@pytest.fixture
def demo(demo_seeded, db, now):
    clinic = Clinic.objects.get(slug="riverside")
    for therapist in clinic.clinicians.filter(is_therapist=True):
        TimeOff.objects.create(
            clinician=therapist,
            start=at(START + timedelta(days=1), "00:00"),
            end=at(BACK, "00:00"),
            reason="Holidays",
        )
    return clinic


def plan(clinic, start):
    patient = Patient.objects.filter(clinic=clinic).order_by("pk")[7]
    return generate(patient, Protocol.objects.get(clinic=clinic, slug="iv-induction"), start)


def test_with_every_therapist_away_the_plan_moves_its_first_steps_later(demo):
    proposal = plan(demo, START)

    assert rule_violations(proposal) == []
    assert START < proposal.start_date < BACK
    assert min(v.start for v in proposal.visits) >= at(START, "00:00")
    preparation = next(v for v in proposal.visits if v.visit_type.kind == VisitKind.PREPARATION)
    assert preparation.start >= at(BACK, "00:00")
    assert f"No plan fits from {START:%a %Y-%m-%d}" in proposal.warnings[0]
    # No later than the plan from the day staff would otherwise have had to find by hand.
    later = plan(demo, START + timedelta(days=12))
    assert min(v.start for v in proposal.visits) <= min(v.start for v in later.visits)


def test_the_plan_command_gives_the_later_plan_and_the_day_it_starts_from(demo):
    patient = Patient.objects.filter(clinic=demo).order_by("pk")[7]
    out = StringIO()
    call_command(
        "plan",
        patient=str(patient.pk),
        protocol="iv-induction",
        start=START.isoformat(),
        json=True,
        stdout=out,
    )
    data = json.loads(out.getvalue())
    assert "error" not in data
    assert START.isoformat() < data["start_date"] < BACK.isoformat()
    assert len(data["visits"]) == 1 + 1 + 6 + 6 + 3
