"""Which visits are asked which questionnaires: the default rules (screening, the first dose and
every other one, each maintenance check-in), a protocol step's rule replacing the kind's, and a
changed series renumbering its doses; re-planning changes nothing, changed rules reach the
visits still to come."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from plans.models import CarePlan, PlannedVisit, Protocol, ProtocolStep
from questionnaires.asking import plan_patient, plan_upcoming
from questionnaires.models import AskingRule, Occasion, QuestionnaireRequest, RequestStatus
from scheduler import booking
from tests.conftest import MONDAY, at
from tests.questionnaire_helpers import BOTH, AskingClinic, asked

pytestmark = [pytest.mark.django_db, pytest.mark.questionnaires]


@pytest.fixture
def clinic(db, now):
    return AskingClinic()


def test_a_screening_asks_phq9_and_gad7_from_48_hours_before_until_the_visit_ends(clinic, now):
    patient = clinic.texting_patient()
    visit = clinic.book(patient, clinic.screening, at(MONDAY, "09:00"))
    assert asked(visit) == BOTH
    for request in QuestionnaireRequest.objects.filter(visit=visit):
        assert request.opens_at == visit.start - timedelta(hours=48)
        assert request.closes_at == visit.end
        assert request.instrument.is_active and request.patient == patient


def test_doses_1_3_and_5_of_a_series_are_asked_and_doses_2_and_4_are_not(clinic):
    doses = clinic.doses(clinic.texting_patient(), 5)
    assert [asked(dose) for dose in doses] == [BOTH, [], BOTH, [], BOTH]


def test_each_maintenance_check_in_is_asked_and_an_integration_is_not(clinic):
    patient = clinic.texting_patient()
    check_ins = [
        clinic.book(patient, clinic.check_in, at(MONDAY + timedelta(weeks=w), "11:00"))
        for w in (0, 4)
    ]
    integration = clinic.book(patient, clinic.integration, at(MONDAY, "14:00"))
    assert [asked(v) for v in check_ins] == [BOTH, BOTH]
    assert asked(integration) == []


def test_a_step_rule_replaces_the_kind_rule_for_its_instrument_only(clinic):
    """Before every dose of this protocol's series: PHQ-9 by the step's rule; GAD-7 keeps the
    kind's every other one."""
    protocol = Protocol.objects.create(clinic=clinic.clinic, name="Series", slug="series")
    step = ProtocolStep.objects.create(protocol=protocol, position=0, visit_type=clinic.iv, count=4)
    AskingRule.objects.create(
        instrument_code="phq-9", protocol_step=step, occasion=Occasion.EVERY, hours_before=24
    )
    patient = clinic.texting_patient()
    plan = CarePlan.objects.create(patient=patient, protocol=protocol, start_date=MONDAY)
    doses = clinic.doses(patient, 4)
    for number, dose in enumerate(doses, 1):
        PlannedVisit.objects.create(care_plan=plan, visit=dose, step=step, occurrence=number)
    plan_patient(patient)
    assert [asked(dose) for dose in doses] == [BOTH, ["phq-9"], BOTH, ["phq-9"]]
    phq9 = QuestionnaireRequest.objects.get(visit=doses[1])
    assert phq9.opens_at == doses[1].start - timedelta(hours=24)
    # The request names the rule that asked it.
    assert AskingRule.objects.get(pk=phq9.rule_id).protocol_step == step


def test_a_cancelled_dose_renumbers_the_later_ones(clinic):
    doses = clinic.doses(clinic.texting_patient(), 5)
    booking.cancel(doses[1], "Unwell")
    # Doses 3, 4 and 5 are now the 2nd, 3rd and 4th.
    assert [asked(dose) for dose in doses] == [BOTH, [], [], BOTH, []]
    assert asked(doses[2], RequestStatus.CANCELLED) == BOTH
    assert asked(doses[4], RequestStatus.CANCELLED) == BOTH


def test_an_answered_request_stands_when_its_dose_is_renumbered(clinic):
    doses = clinic.doses(clinic.texting_patient(), 3)
    QuestionnaireRequest.objects.filter(visit=doses[2]).update(status=RequestStatus.ANSWERED)
    booking.cancel(doses[1], "Unwell")
    assert asked(doses[2], RequestStatus.ANSWERED) == BOTH


def test_planning_again_changes_nothing(clinic):
    patient = clinic.texting_patient()
    clinic.doses(patient, 4)
    clinic.book(patient, clinic.screening, at(MONDAY - timedelta(days=5), "09:00"))
    before = list(QuestionnaireRequest.objects.values_list("pk", "opens_at", "closes_at", "status"))
    assert plan_patient(patient) == {"cancelled": 0, "messages": 0}
    assert plan_upcoming() == {"cancelled": 0, "messages": 0}
    after = list(QuestionnaireRequest.objects.values_list("pk", "opens_at", "closes_at", "status"))
    assert after == before


def test_changed_rules_reach_the_visits_still_to_come_through_the_command(clinic):
    doses = clinic.doses(clinic.texting_patient(), 4)
    AskingRule.objects.filter(visit_kind="dosing").update(occasion=Occasion.EVERY)
    out = StringIO()
    call_command("plan_questionnaires", stdout=out)
    assert "4 asked" in out.getvalue()
    assert [asked(dose) for dose in doses] == [BOTH, BOTH, BOTH, BOTH]
    AskingRule.objects.filter(visit_kind="dosing").update(is_active=False)
    call_command("plan_questionnaires", stdout=StringIO())
    assert [asked(dose) for dose in doses] == [[], [], [], []]
