"""Busy times and set-up kept between plans: the same plans as reading the database
afresh, through every kind of write, and no busy-time reads when nothing changed.

These run outside a test transaction (``transactional_db``): inside one, the
diary is not used at all (``current_diary`` returns None), which a test here
checks too.
"""

import threading
from datetime import date, datetime, time, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from plans.generator import PlanInfeasible, generate
from plans.models import Protocol, ProtocolStep
from scheduler import booking
from scheduler.diary import PARTICIPATIONS, current_diary, days_touched, forget_old_changes
from scheduler.models import (
    Clinic,
    DiaryChange,
    Patient,
    TimeOff,
    Visit,
    VisitParticipant,
    WorkingHours,
)
from tests.conftest import on_postgres

pytestmark = pytest.mark.usefixtures("now")

START = date(2030, 2, 4)
PROTOCOLS = ("iv-induction", "kap-lozenge", "spravato")


@pytest.fixture
def demo(transactional_db):
    call_command("seed_demo", stdout=StringIO())
    return Clinic.objects.get(slug="riverside")


def _plan(patient, protocol):
    """The plan's visits, or the reason none fits."""
    try:
        proposal = generate(patient, protocol, START)
    except PlanInfeasible as refusal:
        return str(refusal)
    return [
        (
            v.step.pk,
            v.start,
            v.clinician.pk,
            v.room.pk if v.room else None,
            tuple(m.clinician.pk for m in v.staff),
        )
        for v in proposal.visits
    ]


def _afresh(patient, protocol):
    """The plan from the database alone: inside a transaction no diary is used."""
    with transaction.atomic():
        assert current_diary() is None
        return _plan(patient, protocol)


def _busy_reads(queries) -> int:
    """Reads of people's and rooms' busy times (the patient's own visits are read each plan)."""
    return sum(
        'FROM "scheduler_visitparticipant" t' in q["sql"] or "t.room_id IN" in q["sql"]
        for q in queries
    )


def test_plans_from_the_kept_diary_match_plans_read_afresh_through_every_kind_of_write(demo):
    patient = Patient.objects.get(email="gray.goldfinch@example.org")
    protocols = {slug: Protocol.objects.get(clinic=demo, slug=slug) for slug in PROTOCOLS}
    other = Patient.objects.filter(clinic=demo).exclude(pk=patient.pk).order_by("pk")[3]

    def same_plans() -> dict[str, list]:
        plans = {}
        for slug, protocol in protocols.items():
            kept = _plan(patient, protocol)
            assert kept == _afresh(patient, protocol), slug
            plans[slug] = kept
        return plans

    first = same_plans()
    # Nothing changed: plans read no people's or rooms' busy times, and no set-up.
    with CaptureQueriesContext(connection) as again:
        for slug, protocol in protocols.items():
            assert _plan(patient, protocol) == first[slug]
    assert _busy_reads(again.captured_queries) == 0
    assert not [q for q in again.captured_queries if "scheduler_workinghours" in q["sql"]]
    with CaptureQueriesContext(connection) as afresh:
        _afresh(patient, protocols["kap-lozenge"])
    assert _busy_reads(afresh.captured_queries) > 0  # what the diary saved

    # A visit booked through booking takes the first dose's lead at its time.
    step, start, lead, room, staff = first["kap-lozenge"][0]
    lozenge = protocols["kap-lozenge"]
    visit_type = next(s.visit_type for s in lozenge.steps.all() if s.pk == step)
    taken = booking.book(
        patient=other,
        visit_type=visit_type,
        clinician=demo.clinicians.get(pk=lead),
        start=start,
        room=demo.rooms.get(pk=room) if room else None,
        staff=[demo.clinicians.get(pk=pk) for pk in staff],
    )
    moved_on = same_plans()
    assert moved_on["kap-lozenge"][0] != first["kap-lozenge"][0]

    # Cancelled: the time is free again.
    booking.cancel(taken, "Patient asked")
    assert same_plans() == first

    # A lead's part moved by a bare UPDATE (no model save, no signal) onto the first
    # dose's time: the plan moves off it.
    part = VisitParticipant.objects.filter(clinician_id=lead, holds_time=True).latest("start")
    VisitParticipant.objects.filter(pk=part.pk).update(
        start=start, end=start + timedelta(minutes=30)
    )
    assert same_plans()["kap-lozenge"][0] != first["kap-lozenge"][0]

    # The set-up: a lead's weekly hours deleted in bulk, time off, a room's equipment.
    WorkingHours.objects.filter(clinician_id=lead).delete()
    without_lead = same_plans()
    assert all(v[2] != lead for v in without_lead["kap-lozenge"])
    away = without_lead["kap-lozenge"][0][2]
    TimeOff.objects.create(
        clinician_id=away,
        start=datetime.combine(START, time(0), tzinfo=demo.tz),
        end=datetime.combine(START + timedelta(days=10), time(0), tzinfo=demo.tz),
        reason="Away",
    )
    assert same_plans()["kap-lozenge"][0] != without_lead["kap-lozenge"][0]  # after the time off
    # A protocol's step changed by a bare UPDATE: its steps are read again.
    later = ProtocolStep.objects.filter(protocol=lozenge).order_by("position")[1]
    ProtocolStep.objects.filter(pk=later.pk).update(min_gap_hours=later.min_gap_hours + 72)
    before_change = _afresh(patient, lozenge)
    assert same_plans()["kap-lozenge"] == before_change

    # The only room with what a screening needs loses it: no plan, the same refusal.
    demo.rooms.get(pk=first["kap-lozenge"][0][3]).capabilities.clear()
    assert "No slot for step 1" in same_plans()["kap-lozenge"]


def test_visits_written_in_bulk_are_in_the_next_plans(demo):
    patient = Patient.objects.get(email="gray.goldfinch@example.org")
    protocol = Protocol.objects.get(clinic=demo, slug="iv-induction")
    before = _plan(patient, protocol)
    start, room = before[0][1], before[0][3]
    visit = Visit.objects.filter(patient__clinic=demo).order_by("pk")[0]
    # bulk_create saves no participants and sends no signal: the room is what it holds.
    Visit.objects.bulk_create(
        [
            Visit(
                patient=visit.patient,
                visit_type=visit.visit_type,
                clinician=visit.clinician,
                room_id=room,
                start=start,
                end=start + timedelta(hours=3),
                status="booked",
            )
        ]
    )
    after = _plan(patient, protocol)
    assert after == _afresh(patient, protocol)
    assert (after[0][1], after[0][3]) != (start, room)


def test_no_diary_inside_a_transaction_and_one_kept_outside(demo):
    outside = current_diary()
    assert outside is not None and current_diary() is outside
    with transaction.atomic():
        assert current_diary() is None


def test_the_database_logs_every_write_and_old_rows_are_forgotten(demo):
    visit = Visit.objects.filter(patient__clinic=demo).order_by("pk")[0]
    logged = DiaryChange.objects.count()
    assert logged > Visit.objects.count()  # the demo's visits and their teams, by the triggers
    Visit.objects.filter(pk=visit.pk).update(cancellation_reason="Not held")  # holds nothing
    assert DiaryChange.objects.count() == logged
    Visit.objects.filter(pk=visit.pk).update(status="cancelled")
    assert DiaryChange.objects.filter(visit_id=visit.pk).count() >= 2
    WorkingHours.objects.filter(clinician=visit.clinician).update(opens=time(8))
    assert DiaryChange.objects.filter(visit_id=None).exists()  # the set-up changed
    old = DiaryChange.objects.order_by("pk")[:5]
    DiaryChange.objects.filter(pk__in=[row.pk for row in old]).update(
        at=datetime(2020, 1, 1, tzinfo=demo.tz)
    )
    before = DiaryChange.objects.count()
    assert forget_old_changes() == 5
    assert DiaryChange.objects.count() == before - 5  # the recent ones stay


@pytest.mark.skipif(not on_postgres(), reason="concurrent writers: PostgreSQL only")
def test_a_change_committed_after_a_later_one_is_still_seen(demo):
    """PostgreSQL numbers log rows when written, not when committed: a reader that has
    seen a later-numbered change must still find an earlier one that commits after it."""
    patient = Patient.objects.get(email="gray.goldfinch@example.org")
    protocol = Protocol.objects.get(clinic=demo, slug="iv-induction")
    _plan(patient, protocol)  # a diary with days kept
    therapist = demo.clinicians.filter(is_therapist=True).order_by("pk")[0]
    participation = VisitParticipant.objects.filter(clinician=therapist).order_by("start")[0]
    day = days_touched(participation.start, participation.end)
    written, go = threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                VisitParticipant.objects.filter(pk=participation.pk).update(
                    start=participation.start + timedelta(minutes=30)
                )
                written.set()
                go.wait(10)
        finally:
            connections.close_all()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert written.wait(10)
    # A later change, committed first; the diary reads the log past it.
    other = VisitParticipant.objects.exclude(clinician=therapist).order_by("pk")[0]
    VisitParticipant.objects.filter(pk=other.pk).update(end=other.end - timedelta(minutes=5))
    diary = current_diary()
    before = [b for *_, busy in diary.busy(PARTICIPATIONS, [therapist.pk], day) for b in busy]
    assert participation.start in [b.start for b in before]
    go.set()
    writer.join()
    after = [
        b for *_, busy in current_diary().busy(PARTICIPATIONS, [therapist.pk], day) for b in busy
    ]
    starts = [b.start for b in after]
    assert participation.start not in starts
    assert participation.start + timedelta(minutes=30) in starts
