"""Care plans from the demo protocols: every rule holds, failures are clear, confirm is atomic."""

import json
from datetime import date, time, timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from plans.care_plans import PlanNotConfirmed, confirm, move_planned_visit, save_proposal
from plans.demo import SCREENED_PATIENTS
from plans.generator import PlanInfeasible, Preferences, generate
from plans.models import CONTRAINDICATIONS, Anchor, PlanStatus, Protocol, ProtocolStep, Screening
from scheduler import booking
from scheduler.availability import free_slots
from scheduler.booking import BookingError
from scheduler.models import Clinic, Closure, Patient, StaffingRequirement, Visit, VisitStatus
from tests.conftest import at
from tests.plan_rules import rule_violations

pytestmark = pytest.mark.usefixtures("now")
START = date(2030, 2, 4)  # a Monday, after the demo's own visits (booked from "now")


@pytest.fixture
def demo(demo_seeded, db, now):
    return Clinic.objects.get(slug="riverside")


def protocol(clinic, slug) -> Protocol:
    return Protocol.objects.get(clinic=clinic, slug=slug)


def patient(clinic, index=0) -> Patient:
    return Patient.objects.filter(clinic=clinic).order_by("pk")[index]


def clear_screening(patient_row, clinic):
    prescriber = clinic.clinicians.filter(is_prescriber=True).order_by("pk").first()
    screening = Screening.objects.create(
        patient=patient_row, answers=dict.fromkeys(CONTRAINDICATIONS, False), answered_by=prescriber
    )
    screening.clear(prescriber)
    return screening


@pytest.mark.parametrize("slug", ["iv-induction", "kap-lozenge", "spravato"])
def test_each_demo_protocol_gives_a_plan_in_which_every_rule_holds(demo, slug):
    proposal = generate(patient(demo), protocol(demo, slug), START)
    assert rule_violations(proposal) == []
    dosing = [v for v in proposal.visits if v.visit_type.is_dosing]
    assert len(dosing) == {"iv-induction": 6, "kap-lozenge": 6, "spravato": 16}[slug]
    assert proposal.total_cost == sum(v.visit_type.price for v in proposal.visits)
    assert proposal.currency == "USD"
    assert proposal.visits[0].start.astimezone(demo.tz).date() >= START


def test_iv_induction_follows_each_infusion_with_integration_within_one_to_three_days(demo):
    proposal = generate(patient(demo), protocol(demo, "iv-induction"), START)
    infusions = [v for v in proposal.visits if v.visit_type.slug == "iv-infusion"]
    integrations = [v for v in proposal.visits if v.visit_type.slug == "integration"]
    assert len(integrations) == len(infusions) == 6
    for integration in integrations:
        gap = integration.start - integration.follows.end
        assert timedelta(days=1) <= gap <= timedelta(days=3)
    span = infusions[-1].start - infusions[0].start
    assert timedelta(days=10) <= span <= timedelta(days=21)
    maintenance = [v for v in proposal.visits if v.visit_type.slug == "maintenance"]
    assert len(maintenance) == 3


def test_generation_is_deterministic(demo):
    first = generate(patient(demo), protocol(demo, "kap-lozenge"), START)
    second = generate(patient(demo), protocol(demo, "kap-lozenge"), START)
    assert [(v.start, v.clinician.pk, v.room) for v in first.visits] == [
        (v.start, v.clinician.pk, v.room) for v in second.visits
    ]


def test_a_plan_starting_in_a_dst_change_week_keeps_wall_clock_hours(demo):
    proposal = generate(patient(demo), protocol(demo, "spravato"), date(2030, 3, 7))
    assert rule_violations(proposal) == []
    local_hours = {v.start.astimezone(demo.tz).hour for v in proposal.visits}
    assert min(local_hours) >= 8 and max(local_hours) < 18
    offsets = {v.start.astimezone(demo.tz).utcoffset() for v in proposal.visits}
    assert offsets == {timedelta(hours=-5), timedelta(hours=-4)}


def test_preferences_are_honoured_where_a_slot_allows_and_warned_about_where_not(demo):
    therapist = demo.clinicians.get(display_name__startswith="Priya Fenwick")
    prefs = Preferences(
        weekdays=frozenset({0, 2, 4}),
        time_windows=((time(13), time(17)),),
        clinicians={"therapist": therapist.pk},
    )
    proposal = generate(patient(demo), protocol(demo, "kap-lozenge"), START, prefs)
    assert rule_violations(proposal) == []
    warned = " ".join(proposal.warnings)
    honoured = 0
    for visit in proposal.visits:
        local, local_end = visit.start.astimezone(demo.tz), visit.end.astimezone(demo.tz)
        if (
            local.weekday() in {0, 2, 4}
            and time(13) <= local.time()
            and local_end.time() <= time(17)
        ):
            honoured += 1
            if visit.visit_type.lead_seat.roles == ("therapist",):
                assert visit.clinician == therapist
        else:
            assert f"{visit.step} #{visit.occurrence}: no slot matched the preferences" in warned
    assert honoured >= len(proposal.visits) // 2


def test_a_fully_closed_clinic_fails_naming_the_step_and_rule(demo):
    Closure.objects.create(
        clinic=demo, start=at(START, "00:00"), end=at(START + timedelta(days=400), "00:00")
    )
    with pytest.raises(PlanInfeasible) as failed:
        generate(patient(demo), protocol(demo, "iv-induction"), START)
    assert "Screening" in str(failed.value.step)
    assert "from the plan's start" in failed.value.constraint
    assert failed.value.as_dict()["step"] == str(failed.value.step)


def test_an_integration_window_that_cannot_be_met_names_the_rule_and_the_nearest_slot(demo):
    # Therapists see patients on Mondays only: an integration 1-3 days after an
    # infusion (on a Tuesday at the earliest) never reaches one, from any start.
    # The infusions here go without their guiding therapist (see the next test).
    for therapist in demo.clinicians.filter(is_therapist=True):
        therapist.working_hours.exclude(weekday=0).delete()
    StaffingRequirement.objects.filter(visit_type__slug="iv-infusion", position__gt=0).delete()
    with pytest.raises(PlanInfeasible) as failed:
        # From March: in February, Presidents' Day (a Monday, the clinic closed)
        # stops the infusions' spacing first.
        generate(patient(demo), protocol(demo, "iv-induction"), date(2030, 3, 4))
    message = str(failed.value)
    assert "Integration" in message and "1 day to 3 days after" in message
    assert "Nearest free slot:" in message


def test_a_dosing_step_with_no_therapist_free_names_the_role(demo):
    # The prescriber and the chairs are free all week; the therapists who guide
    # infusions work Mondays only, and the infusions are 40 h to 4 days apart.
    for therapist in demo.clinicians.filter(is_therapist=True):
        therapist.working_hours.exclude(weekday=0).delete()
    with pytest.raises(PlanInfeasible) as failed:
        generate(patient(demo), protocol(demo, "iv-induction"), date(2030, 3, 4))
    assert "IV infusion" in str(failed.value.step)
    assert "no therapist was free when a lead and a room were" in failed.value.constraint


def test_confirm_is_refused_until_screening_is_cleared_then_books_everything(demo):
    person = patient(demo, SCREENED_PATIENTS)  # the first unscreened demo patient
    proposal = generate(person, protocol(demo, "iv-induction"), START)
    assert any("Screening is not cleared" in w for w in proposal.warnings)
    plan = save_proposal(proposal)
    with pytest.raises(PlanNotConfirmed) as refused:
        confirm(plan)
    assert any("screening has not been cleared" in p for p in refused.value.problems)
    plan.refresh_from_db()
    assert plan.status == PlanStatus.PROPOSED
    assert set(Visit.objects.filter(planned__care_plan=plan).values_list("status", flat=True)) == {
        VisitStatus.PROPOSED
    }

    clear_screening(person, demo)
    confirm(plan)
    plan.refresh_from_db()
    assert plan.status == PlanStatus.ACTIVE
    assert set(Visit.objects.filter(planned__care_plan=plan).values_list("status", flat=True)) == {
        VisitStatus.BOOKED
    }


def test_a_dosing_visit_cannot_be_booked_directly_without_cleared_screening(demo):
    person = patient(demo, SCREENED_PATIENTS + 1)
    iv = demo.visit_types.get(slug="iv-infusion")
    slot = free_slots(iv, START, START + timedelta(days=3), limit=1)[0]
    with pytest.raises(BookingError, match="screening has not been cleared"):
        booking.book(
            patient=person,
            visit_type=iv,
            clinician=slot.clinician,
            room=slot.room,
            start=slot.start,
        )
    assert not Visit.objects.filter(patient=person, visit_type=iv).exists()


def test_confirm_books_all_or_nothing_when_a_conflict_appeared_since_the_proposal(demo):
    person = patient(demo)
    clear_screening(person, demo)
    plan = save_proposal(generate(person, protocol(demo, "iv-induction"), START))
    taken = plan.planned_visits.select_related("visit").order_by("visit__start")[4].visit
    booking.book(
        patient=patient(demo, 5),
        visit_type=demo.visit_types.get(slug="maintenance" if taken.room is None else "screening"),
        clinician=taken.clinician,
        room=None if taken.room is None else demo.rooms.get(name__icontains="consult"),
        start=taken.start,
    )
    with pytest.raises(PlanNotConfirmed) as refused:
        confirm(plan)
    assert any("is booked" in p for p in refused.value.problems)
    assert (
        not Visit.objects.filter(planned__care_plan=plan)
        .exclude(status=VisitStatus.PROPOSED)
        .exists()
    )


def test_moving_a_dosing_visit_moves_its_integration_when_the_window_would_break(demo):
    person = patient(demo)
    clear_screening(person, demo)
    plan = confirm(save_proposal(generate(person, protocol(demo, "kap-lozenge"), START)))
    dosing = (
        plan.planned_visits.filter(step__visit_type__slug="lozenge-dosing")
        .order_by("visit__start")
        .last()
    )
    integration = dosing.followers.get(step__visit_type__slug="integration").visit
    old_integration_start = integration.start
    old_gap = integration.start - dosing.visit.end
    for days in range(2, 6):
        try:
            moved = move_planned_visit(dosing.visit, dosing.visit.start + timedelta(days=days))
        except BookingError:
            continue
        break
    else:
        pytest.fail("no later day was free for the last dosing visit")
    integration.refresh_from_db()
    must_follow = old_gap - timedelta(days=days) < timedelta(days=1)
    assert (integration in moved) == must_follow
    if must_follow:
        assert integration.start == old_integration_start + timedelta(days=days)
        assert integration.sequence == 1
    else:
        assert integration.start == old_integration_start
    gap = integration.start - moved[0].end
    assert timedelta(days=1) <= gap <= timedelta(days=7)
    for follower in dosing.followers.select_related("visit", "step"):
        assert follower.visit.start - moved[0].end >= follower.step.min_gap


def test_a_saved_plan_keeps_where_each_visit_was_proposed_and_the_window_it_was_allowed_in(demo):
    person = patient(demo)
    clear_screening(person, demo)
    proposal = generate(person, protocol(demo, "iv-induction"), START)
    plan = confirm(save_proposal(proposal))
    kept = {item.visit.start: item for item in plan.planned_visits.select_related("visit")}
    for proposed in proposal.visits:
        item = kept[proposed.start]
        assert item.proposed_start == proposed.start
        assert (item.window_earliest, item.window_latest) == (
            proposed.window.earliest,
            proposed.window.latest,
        )
        assert item.window_earliest <= proposed.start
        assert item.window_latest is None or proposed.start <= item.window_latest
    # The rule's own bounds, not the search's horizon: the screening, timed from
    # the plan's start with no latest, keeps no latest.
    screening = kept[proposal.visits[0].start]
    assert (screening.window_earliest, screening.window_latest) == (at(START, "00:00"), None)
    # A move changes where the visit is, not what the proposal said.
    last = plan.planned_visits.filter(step__visit_type__slug="maintenance").latest("visit__start")
    for days in range(1, 6):
        try:
            move_planned_visit(last.visit, last.visit.start + timedelta(days=days))
        except BookingError:
            continue
        break
    else:
        pytest.fail("no later day was free for the last check-in")
    before = (last.proposed_start, last.window_earliest, last.window_latest)
    last.refresh_from_db()
    assert (last.proposed_start, last.window_earliest, last.window_latest) == before
    assert last.visit.start == last.proposed_start + timedelta(days=days)


def test_moves_that_break_dose_spacing_or_the_anchor_window_are_refused(demo):
    person = patient(demo)
    clear_screening(person, demo)
    plan = confirm(save_proposal(generate(person, protocol(demo, "iv-induction"), START)))
    infusions = list(
        plan.planned_visits.filter(step__visit_type__slug="iv-infusion").order_by("visit__start")
    )
    second = infusions[1].visit
    with pytest.raises(BookingError, match="Doses must be at least 40 h apart"):
        booking.move(second, start=infusions[0].visit.start + timedelta(hours=24))
    integration = infusions[0].followers.get(step__visit_type__slug="integration").visit
    with pytest.raises(BookingError, match="must start 1 day to 3 days after"):
        move_planned_visit(integration, infusions[0].visit.end + timedelta(days=5))
    second.refresh_from_db()
    assert second.sequence == 0


def test_contradictory_protocol_rules_are_refused(demo):
    step = ProtocolStep(
        protocol=protocol(demo, "iv-induction"),
        position=9,
        visit_type=demo.visit_types.get(slug="integration"),
        anchor=Anchor.AFTER_EACH,
        min_gap_hours=72,
        max_gap_hours=24,
        max_per_week=0,
        recurrence="FREQ=WEEKLY",
    )
    with pytest.raises(ValidationError) as refused:
        step.full_clean()
    errors = refused.value.message_dict
    assert "shorter than the minimum" in errors["max_gap_hours"][0]
    assert "Zero visits a week" in errors["max_per_week"][0]
    assert "COUNT or UNTIL" in errors["recurrence"][0]
    assert "which earlier step" in errors["after_step"][0]


def test_plan_command_prints_the_documented_json(demo):
    out = StringIO()
    call_command(
        "plan",
        patient=str(patient(demo).pk),
        protocol="iv-induction",
        start=START.isoformat(),
        json=True,
        stdout=out,
    )
    data = json.loads(out.getvalue())
    assert set(data) == {
        "patient",
        "protocol",
        "start_date",
        "visits",
        "total_cost",
        "currency",
        "warnings",
    }
    assert data["protocol"] == "iv-induction" and data["currency"] == "USD"
    assert data["start_date"] == START.isoformat()
    first = data["visits"][0]
    assert set(first) == {
        "staff",
        "step",
        "kind",
        "start",
        "end",
        "clinician",
        "room",
        "modality",
        "existing_visit",
    }
    assert first["existing_visit"] is None
    assert first["staff"] == [{"name": first["clinician"], "role": "prescriber"}]
    for visit in data["visits"]:
        if visit["kind"] == "dosing":
            roles = [member["role"] for member in visit["staff"]]
            assert roles[0] in ("prescriber", "nurse") and roles[1:] == ["therapist"]
            assert visit["staff"][0]["name"] == visit["clinician"]
    assert first["start"].endswith(("-05:00", "-04:00"))
    assert len(data["visits"]) == 1 + 1 + 6 + 6 + 3


def test_plan_command_exits_2_with_a_json_error_when_no_plan_fits(demo, tmp_path):
    Closure.objects.create(
        clinic=demo, start=at(START, "00:00"), end=at(START + timedelta(days=400), "00:00")
    )
    with pytest.raises(SystemExit) as exited:
        out = StringIO()
        call_command(
            "plan",
            patient=str(patient(demo).pk),
            protocol="spravato",
            start=START.isoformat(),
            json=True,
            stdout=out,
        )
    assert exited.value.code == 2
    assert set(json.loads(out.getvalue())) == {"error", "step", "constraint"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"patient": "nobody@example.com", "protocol": "spravato", "start": "2030-02-04"},
            "No single patient",
        ),
        ({"patient": "1", "protocol": "no-such", "start": "2030-02-04"}, "No protocol 'no-such'"),
        ({"patient": "1", "protocol": "spravato", "start": "2030-13-01"}, "is not a date"),
        (
            {"patient": "1", "protocol": "spravato", "start": "2030-02-04", "weekdays": "funday"},
            "is not a weekday",
        ),
        (
            {"patient": "1", "protocol": "spravato", "start": "2030-02-04", "times": "17:00-09:00"},
            "ends before it starts",
        ),
    ],
)
def test_plan_command_refuses_bad_input_clearly(demo, arguments, message):
    arguments = {
        **arguments,
        "patient": str(patient(demo).pk) if arguments["patient"] == "1" else arguments["patient"],
    }
    with pytest.raises(CommandError, match=message):
        call_command("plan", **arguments, stdout=StringIO())


def test_dose_spacing_longer_than_a_week_holds_for_manual_moves(demo):
    person = patient(demo)
    plan = confirm(save_proposal(generate(person, protocol(demo, "kap-lozenge"), START)))
    Protocol.objects.filter(pk=plan.protocol_id).update(min_hours_between_doses=12 * 24)
    doses = list(
        plan.planned_visits.filter(step__visit_type__slug="lozenge-dosing").order_by("visit__start")
    )
    last, before = doses[-1].visit, doses[-2].visit
    target = last.start + timedelta(days=1)
    # Further than the 7-day window of the weekly maximum, closer than the spacing.
    assert timedelta(days=7) < target - before.start < timedelta(days=12)
    with pytest.raises(BookingError, match="Doses must be at least 12 days apart"):
        booking.move(last, start=target)


def test_a_recurrence_by_until_is_held_to_the_visit_cap(demo):
    step = ProtocolStep(
        protocol=protocol(demo, "iv-induction"),
        position=9,
        visit_type=demo.visit_types.get(slug="maintenance"),
        recurrence="FREQ=DAILY;UNTIL=20400101T000000Z",
    )
    with pytest.raises(ValidationError, match="At most 52 recurring visits"):
        step.full_clean()
