"""The course of care as a picture: lanes by kind of step, marks by week, windows, moves.

The timeline (desk/plan_timeline.py) lays out a proposal before it is
confirmed and each saved plan on the patient's desk page; the pages draw it
as SVG with a table of the same facts. Plans here come from the demo's
protocols through the real generator, saving and moving.
"""

import re
from datetime import date, datetime, timedelta
from xml.etree import ElementTree

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from desk.plan_timeline import (
    COUNTED,
    LABEL_WIDTH,
    Mark,
    Timeline,
    for_care_plan,
    for_proposal,
    laid_out,
)
from plans import care_plans
from plans.generator import generate
from plans.models import CarePlan, PlannedVisit, Protocol
from scheduler.models import Clinic, Patient, TimeOff, VisitKind, VisitStatus
from tests.conftest import at
from tests.page_helpers import front_desk
from tests.test_frontdesk_pages import PAGE_BOUNDS
from tests.test_plans_count_what_is_done import NEW_PATIENT, PLAN_START, book_first_free

pytestmark = pytest.mark.usefixtures("now")
START = date(2030, 2, 4)  # a Monday, after the demo's own visits


@pytest.fixture
def demo(demo_seeded, db, now):
    return Clinic.objects.get(slug="riverside")


def patient(clinic, index=0) -> Patient:
    return Patient.objects.filter(clinic=clinic).order_by("pk")[index]


def proposal_of(clinic, slug, start=START, index=0):
    return generate(patient(clinic, index), Protocol.objects.get(clinic=clinic, slug=slug), start)


def saved_plan(plan: CarePlan) -> CarePlan:
    """The plan as the patient's desk page reads it (one query for its visits)."""
    return (
        CarePlan.objects.select_related("protocol")
        .prefetch_related("planned_visits__step__visit_type", "planned_visits__visit__visit_type")
        .get(pk=plan.pk)
    )


def test_each_kind_of_step_has_its_own_lane_in_the_order_of_the_course(demo):
    proposal = proposal_of(demo, "iv-induction")
    timeline = for_proposal(proposal, demo.tz)

    assert [lane.label for lane in timeline.lanes] == [
        "Screening",
        "Preparation",
        "Dosing",
        "Integration",
        "Maintenance",
    ]
    for lane in timeline.lanes:
        assert {mark.kind for mark in lane.marks} == {lane.kind}
        assert len(lane.marks) == sum(1 for v in proposal.visits if v.visit_type.kind == lane.kind)
        assert [m.start for m in lane.marks] == sorted(m.start for m in lane.marks)
    assert [len(lane.marks) for lane in timeline.lanes] == [1, 1, 6, 6, 3]
    assert {m.status for m in timeline.marks} == {VisitStatus.PROPOSED}
    last_day = timeline.first_day + timedelta(days=timeline.days - 1)
    assert timeline.summary == (
        f"IV induction series for {patient(demo)}: 17 visits over {len(timeline.weeks)} weeks, "
        f"{timeline.first_day:%a %Y-%m-%d} to {last_day:%a %Y-%m-%d}; screening (1), "
        "preparation (1), dosing (6), integration (6), maintenance (3)."
    )
    # Lanes stack without overlapping, each as tall as its rows of marks.
    for upper, lower in zip(timeline.lanes, timeline.lanes[1:], strict=False):
        assert lower.top == upper.top + upper.height
    assert timeline.plot_bottom == timeline.lanes[-1].top + timeline.lanes[-1].height

    spravato = for_proposal(proposal_of(demo, "spravato"), demo.tz)
    assert [lane.kind for lane in spravato.lanes] == [VisitKind.SCREENING, VisitKind.DOSING]


def test_each_mark_sits_in_the_week_of_its_visit_from_the_monday_the_picture_starts(demo):
    proposal = proposal_of(demo, "kap-lozenge")
    timeline = for_proposal(proposal, demo.tz)

    first_visit = min(v.start for v in proposal.visits).astimezone(demo.tz).date()
    assert timeline.first_day.weekday() == 0 and 0 <= (first_visit - timeline.first_day).days < 7
    assert timeline.days % 7 == 0 and len(timeline.weeks) == timeline.days // 7
    week_width = 7 * timeline.day_width
    for mark in timeline.marks:
        local = mark.start.astimezone(demo.tz)
        assert mark.week == (local.date() - timeline.first_day).days // 7 + 1
        week_x = timeline.weeks[mark.week - 1][0]
        assert week_x <= mark.x <= week_x + week_width
        # Within the week: its day, and the hour within the day.
        day_x = week_x + local.weekday() * timeline.day_width
        assert day_x <= mark.x <= day_x + timeline.day_width
        assert mark.when == f"{local:%a %Y-%m-%d %H:%M}"
    assert timeline.weeks[0] == (LABEL_WIDTH, "Week 1" if week_width >= 56 else "W1", "Feb 4")
    assert timeline.width >= LABEL_WIDTH + timeline.days * timeline.day_width


def test_each_visit_is_drawn_over_the_window_its_step_allowed_as_the_generator_searched_it(demo):
    proposal = proposal_of(demo, "iv-induction")
    timeline = for_proposal(proposal, demo.tz)

    by_start = {v.start: v for v in proposal.visits}
    for mark in timeline.marks:
        proposed = by_start[mark.start]
        assert mark.window == (proposed.window.earliest, proposed.window.latest)
        assert not mark.outside_window
        assert mark.window_x <= mark.x <= mark.window_x + mark.window_width
    # Integration: 1 to 3 days after the end of the infusion it follows.
    for proposed in proposal.visits:
        if proposed.visit_type.kind == VisitKind.INTEGRATION:
            assert proposed.window.earliest == proposed.follows.end + timedelta(days=1)
            assert proposed.window.latest == proposed.follows.end + timedelta(days=3)
    # The screening is timed from the plan's start with no latest: its window runs on.
    screening = timeline.lanes[0].marks[0]
    assert screening.window_open and screening.window[1] is None
    assert (
        screening.window_x + screening.window_width
        == LABEL_WIDTH + timeline.days * timeline.day_width
    )
    assert screening.window_text.startswith("from ") and screening.window_text.endswith("no latest")
    # Windows sharing a row never overlap: a lane takes as many rows as they need.
    for lane in timeline.lanes:
        for a in lane.marks:
            for b in lane.marks:
                if a is not b and a.track == b.track and a.window and b.window:
                    assert (
                        a.window_x + a.window_width < b.window_x
                        or b.window_x + b.window_width < a.window_x
                    ), (a.label, b.label)
        assert lane.tracks == 1 + max(m.track for m in lane.marks)
    assert max(lane.tracks for lane in timeline.lanes) > 1  # the infusions' windows overlap


def test_visits_already_there_are_marked_counted_in_the_window_they_counted_in(demo, now):
    new_patient = patient(demo, NEW_PATIENT)
    screening = book_first_free(demo, new_patient, "screening", PLAN_START - timedelta(days=1))
    preparation = book_first_free(demo, new_patient, "preparation", PLAN_START + timedelta(days=1))
    proposal = generate(
        new_patient, Protocol.objects.get(clinic__slug="riverside", slug="iv-induction"), PLAN_START
    )
    with CaptureQueriesContext(connection) as queries:
        timeline = for_proposal(proposal, demo.tz)
    assert len(queries) == 1  # where an earlier plan first put them: none here

    counted = [m for m in timeline.marks if m.status == COUNTED]
    assert [(m.visit_id, m.status_text) for m in counted] == [
        (screening.pk, "already booked, counted"),
        (preparation.pk, "already booked, counted"),
    ]
    # A step timed from the plan's start counts a visit however long ago.
    assert counted[0].window == (None, None) and counted[0].window_text == "any time"
    assert counted[0].window_x == LABEL_WIDTH
    assert counted[1].window[0] == screening.end + timedelta(days=1)
    assert not any(m.outside_window for m in counted)
    assert ("counted", "already there, counted") in timeline.statuses

    without = proposal_of(demo, "iv-induction")
    with CaptureQueriesContext(connection) as queries:
        for_proposal(without, demo.tz)
    assert len(queries) == 0


@pytest.fixture
def therapists_away(demo):
    """Every therapist away from the day after ``START`` to ``BACK``: the plan starts later."""
    for therapist in demo.clinicians.filter(is_therapist=True):
        TimeOff.objects.create(
            clinician=therapist,
            start=at(START + timedelta(days=1), "00:00"),
            end=at(START + timedelta(days=21), "00:00"),
            reason="Holidays",
        )
    return demo


def test_a_plan_that_must_start_later_than_asked_marks_the_day_asked_and_the_day_it_starts(
    therapists_away,
):
    demo = therapists_away
    proposal = proposal_of(demo, "iv-induction", index=7)
    assert proposal.start_date > START
    timeline = for_proposal(proposal, demo.tz, asked_from=START)

    asked, starts = timeline.lines
    assert (asked.kind, asked.day, starts.kind, starts.day) == (
        "asked",
        START,
        "start",
        proposal.start_date,
    )
    assert asked.x < starts.x and timeline.first_day <= START
    assert f"asked for {START:%a %Y-%m-%d}" in timeline.summary
    # Labels in rows of their own under the lanes.
    assert timeline.plot_bottom < asked.label_y < starts.label_y < timeline.height
    # As asked: nothing to mark.
    assert for_proposal(proposal, demo.tz, asked_from=proposal.start_date).lines == []


def test_a_moved_visit_is_drawn_where_it_is_with_a_ghost_where_the_plan_first_put_it(demo):
    proposal = proposal_of(demo, "kap-lozenge")
    plan = care_plans.confirm(care_plans.save_proposal(proposal))
    planned = list(plan.planned_visits.select_related("visit__visit_type").order_by("visit__start"))
    dose = next(p for p in planned if p.visit.visit_type.is_dosing)
    first_time = dose.visit.start
    moved = care_plans.move_planned_visit(dose.visit, first_time + timedelta(days=2))
    assert len(moved) == 2  # its integration moved along

    timeline = for_care_plan(saved_plan(plan), demo.tz)
    moved_marks = timeline.moved
    assert sorted(m.visit_id for m in moved_marks) == sorted(v.pk for v in moved)
    dose_mark = next(m for m in moved_marks if m.visit_id == dose.visit_id)
    assert dose_mark.moved_from == first_time and dose_mark.start == first_time + timedelta(days=2)
    assert dose_mark.moved_text == f"{first_time.astimezone(demo.tz):%a %Y-%m-%d %H:%M}"
    assert dose_mark.ghost_x < dose_mark.x
    # Everything else is where the proposal put it: no ghost.
    assert all(m.ghost_x is None for m in timeline.marks if m not in moved_marks)
    assert {m.status for m in timeline.marks} == {VisitStatus.BOOKED}
    assert "2 moved from where the plan first put them" in timeline.summary
    # The windows stay those the plan was proposed with.
    for mark, item in zip(
        sorted(timeline.marks, key=lambda m: m.visit_id),
        PlannedVisit.objects.filter(care_plan=plan).order_by("visit_id"),
        strict=True,
    ):
        assert mark.window == (item.window_earliest, item.window_latest)


def test_a_visit_outside_the_window_it_was_proposed_with_is_marked_and_said_so():
    earliest = datetime(2030, 2, 5, 14, 0, tzinfo=at(START, "00:00").tzinfo)
    latest = earliest + timedelta(days=2)

    def mark(start, status=VisitStatus.BOOKED, window=(earliest, latest)):
        return Mark("integration", "Integration", start, status, status, window)

    assert not mark(earliest).outside_window and not mark(latest).outside_window
    assert mark(latest + timedelta(minutes=1)).outside_window
    assert mark(earliest - timedelta(minutes=1)).outside_window
    assert not mark(latest + timedelta(days=1), window=(earliest, None)).outside_window
    assert not mark(latest + timedelta(days=1), window=None).outside_window
    # A cancelled visit keeps its place but no longer needs to keep its window.
    assert not mark(latest + timedelta(days=1), status=VisitStatus.CANCELLED).outside_window


def test_a_long_move_gets_an_arrow_from_the_ghost_and_a_short_one_only_the_ghost_beside_it():
    tz = at(START, "00:00").tzinfo
    now_at = datetime(2030, 2, 13, 10, 0, tzinfo=tz)  # a Wednesday
    far = Mark(
        "dosing", "Dose", now_at, VisitStatus.BOOKED, "booked", None, now_at - timedelta(days=5)
    )
    near = Mark(
        "integration",
        "Talk",
        now_at,
        VisitStatus.BOOKED,
        "booked",
        None,
        now_at - timedelta(hours=2),
    )
    timeline = laid_out(Timeline("t", "A test", tz, [far, near]))

    assert timeline.first_day == date(2030, 2, 4) and len(timeline.weeks) == 2
    assert far.ghost_x == LABEL_WIDTH + 4 * timeline.day_width + round(10 / 24 * timeline.day_width)
    assert far.arrow is not None and far.ghost_x < far.arrow[0] < far.arrow[1] < far.x
    assert near.ghost_x < near.x and near.arrow is None
    # Each in its own lane; a ghost shares its mark's row.
    assert [lane.kind for lane in timeline.lanes] == ["dosing", "integration"]
    assert far.y == timeline.lanes[0].top + timeline.lanes[0].height // 2


def test_today_is_marked_only_when_it_falls_inside_a_saved_plans_picture(demo):
    plan = care_plans.save_proposal(proposal_of(demo, "iv-induction"))
    saved = saved_plan(plan)
    inside = for_care_plan(saved, demo.tz, today=START + timedelta(days=9))
    (line,) = inside.lines
    assert (line.kind, line.text) == ("today", f"today, {START + timedelta(days=9):%a %Y-%m-%d}")
    assert (
        line.x
        == LABEL_WIDTH + (START + timedelta(days=9) - inside.first_day).days * inside.day_width
    )
    # A plan months ahead is not stretched back to today.
    ahead = for_care_plan(saved_plan(plan), demo.tz, today=START - timedelta(days=60))
    assert ahead.lines == [] and ahead.first_day == inside.first_day
    assert {m.status for m in ahead.marks} == {VisitStatus.PROPOSED}


# -- the pages -------------------------------------------------------------------


def _plan_form(patient_row, slug, start=START, action="propose"):
    return {
        "patient": patient_row.pk,
        "protocol": Protocol.objects.get(clinic__slug="riverside", slug=slug).pk,
        "start_date": start.isoformat(),
        "action": action,
    }


def _table_rows(page: str) -> list[str]:
    table = page.split('<details class="tl-facts">', 1)[1].split("</details>", 1)[0]
    return table.split("<tbody>", 1)[1].split("<tr>")[1:]


def test_the_proposal_page_draws_the_plan_before_confirming_with_its_text_alternative(client, demo):
    client.force_login(front_desk())
    page = client.post(reverse("desk_new_plan"), _plan_form(patient(demo), "iv-induction"))
    text = page.text
    timeline = page.context["timeline"]
    assert "Confirm and book" in text
    assert not CarePlan.objects.filter(patient=patient(demo)).exists()
    assert '<svg class="tl" role="img" aria-labelledby="proposal-name"' in text
    assert '<title id="proposal-name">Timeline of IV induction series for' in text
    assert f"<figcaption>{timeline.summary}</figcaption>" in text
    assert text.count('class="tl-mark tl-proposed"') == len(timeline.marks) + 1  # and the key
    # The picture is well-formed: one mark a visit where the layout put it, windows behind.
    svg = ElementTree.fromstring(text[text.index('<svg class="tl"') : text.index("</svg>") + 6])
    uses = [u for u in svg.iter("use") if "tl-mark" in u.get("class", "")]
    assert [(int(u.get("x")) + 8, int(u.get("y")) + 8) for u in uses] == [
        (m.x, m.y) for lane in timeline.lanes for m in lane.marks
    ]
    windows = [r for r in svg.findall("rect") if "tl-window" in r.get("class", "")]
    assert len(windows) == sum(1 for m in timeline.marks if m.window)
    # The same facts in words: a row a visit, with its lane, week, time, status and window.
    rows = _table_rows(text)
    assert len(rows) == len(timeline.marks) == len(page.context["proposal"].visits)
    for row, mark in zip(rows, [m for lane in timeline.lanes for m in lane.marks], strict=True):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert cells[0] in {lane.label for lane in timeline.lanes}
        assert cells[1:6] == [
            mark.label,
            str(mark.week),
            mark.when,
            "proposed, to book",
            mark.window_text,
        ]
    assert "</svg> Proposed</li>" in text and "Window its step allowed" in text


def test_the_proposal_page_asks_the_database_nothing_more_for_its_picture(client, demo):
    """The page's queries beyond the generator's own are the same for a short and a long plan,
    and the picture adds none (one when the plan counts visits already there)."""
    client.force_login(front_desk())
    extra = []
    for slug in ("iv-induction", "spravato"):
        form = _plan_form(patient(demo), slug)
        client.post(reverse("desk_new_plan"), form)  # the session's first request refreshes it
        with CaptureQueriesContext(connection) as page_queries:
            page = client.post(reverse("desk_new_plan"), form)
        with CaptureQueriesContext(connection) as plan_queries:
            generate(
                patient(demo), Protocol.objects.get(clinic__slug="riverside", slug=slug), START
            )
        assert page.context["timeline"].marks
        extra.append(len(page_queries) - len(plan_queries))
    assert extra[0] == extra[1], extra
    print(f"proposal page: the generator's queries + {extra[0]}")


def test_the_patient_desk_page_draws_each_plan_with_its_moves_in_a_fixed_number_of_queries(
    client, demo, django_assert_max_num_queries
):
    person = Patient.objects.filter(clinic=demo, care_plans__isnull=True).order_by("pk")[0]
    proposal = generate(
        person, Protocol.objects.get(clinic__slug="riverside", slug="kap-lozenge"), START
    )
    plan = care_plans.confirm(care_plans.save_proposal(proposal))
    dose = plan.planned_visits.filter(visit__visit_type__kind=VisitKind.DOSING).earliest(
        "visit__start"
    )
    care_plans.move_planned_visit(dose.visit, dose.visit.start + timedelta(days=2))
    client.force_login(front_desk())
    url = reverse("desk_patient", args=[person.pk])
    client.get(url)  # the session's first request refreshes it
    # As many as with plans and no picture (tests/test_frontdesk_pages.py): it asks nothing.
    with django_assert_max_num_queries(PAGE_BOUNDS["patient"] + 2):
        page = client.get(url)
    (shown,) = page.context["care_plans"]
    timeline = shown.timeline
    assert len(timeline.marks) == len(shown.planned_visits.all())
    assert f'<svg class="tl" role="img" aria-labelledby="plan-{plan.pk}-name"' in page.text
    assert f"<figcaption>{timeline.summary}</figcaption>" in page.text
    assert "moved from where the plan first put them" in timeline.summary
    rows = _table_rows(page.text)
    assert len(rows) == len(timeline.marks)
    moved_row = next(r for r in rows if f"/desk/visits/{dose.visit_id}/" in r)
    assert f"{dose.proposed_start.astimezone(demo.tz):%a %Y-%m-%d %H:%M}" in moved_row
    assert 'class="tl-ghost"' in page.text and "Where the plan first put a visit" in page.text
