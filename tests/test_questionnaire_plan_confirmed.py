"""A care plan confirmed through the desk puts its questions on its timeline: before the
screening and every other dose among the patient's doses, each from 48 hours before the visit
until it ends, with its text and email planned in the outbox."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from notifications.models import Message, Purpose
from plans.models import CarePlan, PlanStatus
from questionnaires.models import QuestionnaireRequest
from scheduler.models import BLOCKING_STATUSES, Clinic, Patient, Visit, VisitKind
from tests.page_helpers import front_desk
from tests.test_frontdesk_pages import _plan_form, _shown

pytestmark = [pytest.mark.questionnaires, pytest.mark.usefixtures("now")]


@pytest.fixture
def demo(db, now):
    call_command("seed_demo", stdout=StringIO())
    return Clinic.objects.get(slug="riverside")


def test_a_plan_confirmed_at_the_desk_asks_its_questions_on_its_timeline(client, demo):
    patient = Patient.objects.filter(clinic=demo).order_by("pk")[0]
    client.force_login(front_desk())
    page = client.post(reverse("desk_new_plan"), _plan_form(patient, action="propose"))
    done = client.post(
        reverse("desk_new_plan"), _plan_form(patient, action="confirm", shown=_shown(page))
    )
    assert done.status_code == 302
    plan = CarePlan.objects.get(patient=patient, status=PlanStatus.ACTIVE)
    planned = list(Visit.objects.filter(planned__care_plan=plan).order_by("start"))
    doses = list(
        Visit.objects.filter(
            patient=patient, status__in=BLOCKING_STATUSES, visit_type__kind=VisitKind.DOSING
        ).order_by("start", "pk")
    )
    plan_doses = [visit for visit in planned if visit.visit_type.kind == VisitKind.DOSING]
    assert len(plan_doses) >= 4
    for number, dose in enumerate(doses, 1):
        asked = QuestionnaireRequest.objects.filter(visit=dose).exclude(status="cancelled")
        codes = sorted(asked.values_list("instrument__code", flat=True))
        assert codes == (["gad-7", "phq-9"] if number % 2 else []), (number, dose)
    asked_in_plan = [d for n, d in enumerate(doses, 1) if n % 2 and d in plan_doses]
    assert len(asked_in_plan) >= 2
    for visit in asked_in_plan:
        for request in QuestionnaireRequest.objects.filter(visit=visit):
            assert request.opens_at == visit.start - timedelta(hours=48)
            assert request.closes_at == visit.end
        purposes = set(
            Message.objects.filter(visit=visit, patient=patient).values_list("purpose", flat=True)
        )
        assert {Purpose.QUESTIONNAIRE, Purpose.QUESTIONNAIRE_REMINDER} <= purposes
    # Integration sessions are not asked.
    others = [visit for visit in planned if visit.visit_type.kind == VisitKind.INTEGRATION]
    assert others and not QuestionnaireRequest.objects.filter(visit__in=others).exists()
