"""A new visit whose followers find no time moves to a later day; the plan keeps its start.

The generator places each visit at the first time it fits. An infusion on a
Friday whose integration must follow within three days, over a weekend the
clinic is closed and a Monday morning the therapist is away, leaves that
integration no time: the infusion moves to Monday rather than the whole plan
starting a day later (``plans.generator.Generator._plan_from``).
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from plans.generator import generate
from scheduler.models import TimeOff
from tests.conftest import MONDAY, at
from tests.fhir_helpers import course_protocol
from tests.plan_rules import rule_violations

pytestmark = pytest.mark.usefixtures("now")


def test_a_dose_whose_integration_finds_no_time_moves_to_a_later_day_not_the_whole_plan(clinic):
    """Friday's dose leaves its integration (1-3 days after) only a Monday morning the
    therapist is away: the dose goes on Monday, and the plan still starts when asked."""
    wednesday = MONDAY + timedelta(days=2)
    following_monday = MONDAY + timedelta(days=7)
    TimeOff.objects.create(
        clinician=clinic.therapist,
        start=at(following_monday, "00:00"),
        end=at(following_monday, "13:00"),
        reason="Dentist",
    )
    patient = clinic.patient()
    proposal = generate(patient, course_protocol(clinic, doses=2), wednesday)

    assert rule_violations(proposal) == []
    assert proposal.start_date == wednesday
    assert not any("No plan fits" in warning for warning in proposal.warnings)

    def day_of(visit):
        return timezone.localtime(visit.start, clinic.clinic.tz).date()

    by_type = {
        kind: [day_of(v) for v in proposal.visits if v.visit_type == kind]
        for kind in (clinic.screening, clinic.iv)
    }
    local = [*by_type[clinic.screening], *sorted(by_type[clinic.iv])]
    assert local == [wednesday, wednesday + timedelta(days=1), following_monday]
