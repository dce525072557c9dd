"""Booking, moving and cancelling a visit plans its messages in the outbox, in the same
transaction: each rule at its time, out of quiet hours, short notice handled, stale ones
cancelled and a change notice queued (docs/architecture.md, invariant 5)."""

from datetime import date, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils.timezone import now as now_

from notifications.models import Channel, Message, Purpose, Status
from notifications.planning import plan_upcoming
from plans.care_plans import confirm, save_proposal
from plans.generator import generate
from plans.models import Anchor, Protocol, ProtocolStep
from scheduler import booking
from scheduler.timezones import zone
from tests.conftest import MONDAY, at
from tests.reminder_helpers import (
    HOUR,
    ReminderClinic,
    messages_of,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging")]


@pytest.fixture
def clinic(db):
    return ReminderClinic()


def plan_of(visit) -> list[tuple[str, str, str, str]]:
    """(purpose, channel, local send time, status) of each of the visit's messages."""
    tz = visit.patient.clinic.tz
    return [
        (m.purpose, m.channel, f"{m.send_at.astimezone(tz):%a %m-%d %H:%M}", m.status)
        for m in messages_of(visit)
    ]


def test_booking_an_in_person_visit_plans_72_24_and_2_hour_reminders(clinic):
    visit = clinic.book(clinic.texting_patient(), clinic.screening, at(MONDAY, "10:00"))
    assert plan_of(visit) == [
        # The calendar invite, at once: 07:00 is in quiet hours, so at 08:00.
        ("invite", "email", "Wed 01-02 08:00", "pending"),
        ("reminder", "email", "Fri 05-31 10:00", "pending"),
        ("reminder", "sms", "Fri 05-31 10:00", "pending"),
        ("reminder", "email", "Sun 06-02 10:00", "pending"),
        ("reminder", "sms", "Sun 06-02 10:00", "pending"),
        ("reminder", "sms", "Mon 06-03 08:00", "pending"),
    ]
    assert {m.visit_sequence for m in messages_of(visit)} == {0}
    assert {m.recipient for m in messages_of(visit, channel=Channel.SMS)} == {visit.patient.mobile}


def test_a_dosing_visit_adds_preparation_48_hours_before_and_aftercare_when_it_ends(clinic):
    visit = clinic.book(clinic.texting_patient(), clinic.iv, at(MONDAY, "10:00"))
    planned = plan_of(visit)
    assert ("preparation", "sms", "Sat 06-01 10:00", "pending") in planned
    assert ("preparation", "email", "Sat 06-01 10:00", "pending") in planned
    assert ("aftercare", "email", "Mon 06-03 12:00", "pending") in planned
    assert not [p for p in planned if p[0] == "aftercare" and p[1] == "sms"]
    assert len(planned) == 9  # with the calendar invite


def test_a_telehealth_visit_gets_its_video_link_an_hour_before(clinic):
    visit = clinic.book(clinic.texting_patient(), clinic.integration, at(MONDAY, "10:00"))
    planned = plan_of(visit)
    assert ("video_link", "sms", "Mon 06-03 09:00", "pending") in planned
    assert ("video_link", "email", "Mon 06-03 09:00", "pending") in planned
    assert not [p for p in planned if p[2] == "Mon 06-03 08:00"]  # no 2 h reminder as well


def test_a_reminder_due_in_quiet_hours_goes_the_evening_before(clinic):
    visit = clinic.book(clinic.texting_patient(), clinic.screening, at(MONDAY, "08:00"))
    planned = plan_of(visit)
    # 2 h before 08:00 is 06:00, in quiet hours: 15 minutes before they begin instead.
    assert ("reminder", "sms", "Sun 06-02 20:45", "pending") in planned
    # 72 h before is 08:00 on Friday, the first allowed minute.
    assert ("reminder", "sms", "Fri 05-31 08:00", "pending") in planned


def test_quiet_hours_are_the_patients_own(clinic):
    patient = clinic.texting_patient(time_zone="America/Los_Angeles")
    visit = clinic.book(patient, clinic.screening, at(MONDAY, "10:00"))  # 07:00 in Los Angeles
    los_angeles = zone("America/Los_Angeles")
    in_la = [
        f"{m.send_at.astimezone(los_angeles):%a %H:%M}"
        for m in messages_of(visit, channel=Channel.SMS)
    ]
    # 72 h, 24 h and 2 h before 07:00 all fall in quiet hours there.
    assert in_la == ["Thu 20:45", "Sat 20:45", "Sun 20:45"]


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        # US clocks spring forward on Sun 2030-03-10: 72 h before Mon 08:30 EDT
        # is Fri 07:30 EST, quiet, so Thursday evening in standard time.
        (
            "America/New_York",
            date(2030, 3, 11),
            ["Thu 03-07 20:45 EST", "Sun 03-10 08:30 EDT", "Sun 03-10 20:45 EDT"],
        ),
        # EU clocks spring forward on Sun 2030-03-31.
        (
            "Europe/Berlin",
            date(2030, 4, 1),
            ["Thu 03-28 20:45 CET", "Sun 03-31 08:30 CEST", "Sun 03-31 20:45 CEST"],
        ),
    ],
)
def test_quiet_hours_hold_in_a_dst_change_week(db, zone, day, expected):
    clinic = ReminderClinic(time_zone=zone)
    visit = clinic.book(clinic.texting_patient(), clinic.screening, at(day, "08:30", zone))
    times = [
        f"{m.send_at.astimezone(clinic.clinic.tz):%a %m-%d %H:%M %Z}"
        for m in messages_of(visit, channel=Channel.SMS)
    ]
    assert times == expected


def test_booked_20_hours_ahead_the_24_hour_reminder_goes_now_and_the_72_hour_one_is_skipped(
    clinic, now
):
    now.move_to(at(MONDAY - timedelta(days=1), "14:00"))
    visit = clinic.book(clinic.texting_patient(), clinic.screening, at(MONDAY, "10:00"))
    sms = messages_of(visit, channel=Channel.SMS)
    by_offset = {m.rule.offset: m for m in sms}
    assert by_offset[72 * HOUR].status == Status.SKIPPED
    assert "short notice" in by_offset[72 * HOUR].reason
    assert by_offset[24 * HOUR].status == Status.PENDING
    assert by_offset[24 * HOUR].send_at == at(MONDAY - timedelta(days=1), "14:00")
    assert by_offset[2 * HOUR].send_at == at(MONDAY, "08:00")
    due_now = Message.objects.due(at(MONDAY - timedelta(days=1), "14:00"))
    assert sorted(due_now.values_list("purpose", "channel")) == [
        ("invite", "email"),
        ("reminder", "email"),
        ("reminder", "sms"),
    ]


def test_booked_3_hours_ahead_only_the_2_hour_reminder_goes_by_text(clinic, now):
    now.move_to(at(MONDAY, "09:00"))
    visit = clinic.book(clinic.texting_patient(), clinic.screening, at(MONDAY, "12:00"))
    pending = messages_of(visit, channel=Channel.SMS, status=Status.PENDING)
    assert [m.send_at for m in pending] == [at(MONDAY, "10:00")]
    skipped = messages_of(visit, channel=Channel.SMS, status=Status.SKIPPED)
    assert len(skipped) == 2
    assert any("covers it" in m.reason for m in skipped)
    # By email (no 2 h rule) one reminder still goes, at once.
    assert [
        m.send_at
        for m in messages_of(
            visit, channel=Channel.EMAIL, status=Status.PENDING, purpose=Purpose.REMINDER
        )
    ] == [at(MONDAY, "09:00")]


def test_a_dosing_visit_booked_late_gets_its_preparation_now_not_a_plain_reminder(clinic, now):
    now.move_to(at(MONDAY - timedelta(days=2), "16:00"))  # 42 h ahead
    visit = clinic.book(clinic.texting_patient(), clinic.iv, at(MONDAY, "10:00"))
    due = Message.objects.due(at(MONDAY - timedelta(days=2), "16:00")).filter(visit=visit)
    assert sorted(due.values_list("purpose", "channel")) == [
        ("invite", "email"),
        ("preparation", "email"),
        ("preparation", "sms"),
    ]
    assert (
        Message.objects.filter(visit=visit, status=Status.SKIPPED).count() == 2
    )  # 72 h, both channels


def test_booked_late_at_night_the_catch_up_waits_for_the_morning(clinic, now):
    now.move_to(at(MONDAY - timedelta(days=1), "22:00"))
    visit = clinic.book(clinic.texting_patient(), clinic.screening, at(MONDAY, "11:00"))
    pending = messages_of(visit, status=Status.PENDING)
    assert {m.send_at for m in pending} == {at(MONDAY, "08:00"), at(MONDAY, "09:00")}
    for message in pending:
        local = message.send_at.astimezone(clinic.clinic.tz).time()
        assert local.hour >= 8


def test_moving_a_visit_cancels_its_pending_messages_and_queues_a_notice(clinic):
    visit = clinic.book(clinic.texting_patient(), clinic.screening, at(MONDAY, "10:00"))
    old = {m.pk for m in messages_of(visit)}
    booking.move(visit, start=at(MONDAY + timedelta(days=1), "10:00"))
    visit.refresh_from_db()
    assert visit.sequence == 1
    stale = Message.objects.filter(pk__in=old)
    assert set(stale.values_list("status", flat=True)) == {Status.CANCELLED}
    assert "moved" in stale.first().reason
    notices = messages_of(visit, purpose=Purpose.MOVED)
    assert sorted(m.channel for m in notices) == ["email", "sms"]
    # Queued at once, which at 07:00 (quiet hours) means at 08:00.
    assert {m.send_at for m in notices} == {at(date(2030, 1, 2), "08:00")}
    fresh = messages_of(visit, visit_sequence=1, purpose=Purpose.REMINDER)
    assert len(fresh) == 5
    assert min(m.send_at for m in fresh) == at(MONDAY + timedelta(days=1), "10:00") - 72 * HOUR


def test_cancelling_a_visit_cancels_its_messages_and_queues_a_cancellation_notice(clinic):
    visit = clinic.book(clinic.texting_patient(), clinic.iv, at(MONDAY, "10:00"))
    booking.cancel(visit, "Patient asked")
    assert set(
        Message.objects.filter(visit=visit, visit_sequence=0).values_list("status", flat=True)
    ) == {Status.CANCELLED}
    notices = messages_of(visit, status=Status.PENDING)
    assert sorted((m.purpose, m.channel) for m in notices) == [
        ("cancelled", "email"),
        ("cancelled", "sms"),
        ("invite_cancel", "email"),
    ]


def test_confirming_or_arranging_a_ride_changes_nothing_in_the_outbox(clinic):
    visit = clinic.book(clinic.texting_patient(), clinic.iv, at(MONDAY, "10:00"))
    before = plan_of(visit)
    booking.confirm(visit)
    booking.arrange_ride_home(visit)
    assert plan_of(visit) == before


def test_a_no_show_cancels_the_aftercare(clinic, now):
    visit = clinic.book(clinic.texting_patient(), clinic.iv, at(MONDAY, "10:00"))
    now.move_to(at(MONDAY, "10:30"))
    booking.mark_no_show(visit)
    aftercare = messages_of(visit, purpose=Purpose.AFTERCARE)[0]
    assert aftercare.status == Status.CANCELLED
    assert aftercare.reason == "The patient did not come."


def test_a_booking_rolled_back_leaves_no_messages(clinic):
    patient = clinic.texting_patient()
    with pytest.raises(RuntimeError), transaction.atomic():
        clinic.book(patient, clinic.screening, at(MONDAY, "10:00"))
        assert Message.objects.count() == 6  # five reminders and the calendar invite
        raise RuntimeError("the caller gave up")
    assert Message.objects.count() == 0


def test_the_outbox_refuses_a_second_message_for_the_same_rule_channel_and_sequence(clinic):
    visit = clinic.book(clinic.texting_patient(), clinic.screening, at(MONDAY, "10:00"))
    first = messages_of(visit)[0]
    first.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        first.save()


def test_planning_again_adds_nothing(clinic):
    visit = clinic.book(clinic.texting_patient(), clinic.screening, at(MONDAY, "10:00"))
    assert plan_upcoming() == 0
    assert len(messages_of(visit)) == 6


def test_a_patient_without_mobile_or_email_preferences_gets_only_what_they_chose(clinic):
    patient = clinic.texting_patient(contact_by_email=False)
    visit = clinic.book(patient, clinic.screening, at(MONDAY, "10:00"))
    assert {m.channel for m in messages_of(visit)} == {Channel.SMS}


def test_proposed_visits_of_a_care_plan_get_messages_only_once_it_is_confirmed(clinic):
    protocol = Protocol.objects.create(clinic=clinic.clinic, name="Short", slug="short")
    ProtocolStep.objects.create(
        protocol=protocol, position=1, visit_type=clinic.screening, anchor=Anchor.START
    )
    ProtocolStep.objects.create(
        protocol=protocol, position=2, visit_type=clinic.integration, min_gap_hours=24
    )
    plan = save_proposal(generate(clinic.texting_patient(), protocol, MONDAY))
    assert Message.objects.count() == 0
    confirm(plan)
    visits = [planned.visit for planned in plan.planned_visits.all()]
    assert len(visits) == 2
    assert all(messages_of(visit) for visit in visits)


def test_a_visit_moved_to_short_notice_gets_the_move_notice_instead_of_missed_reminders(
    clinic, now
):
    visit = clinic.book(clinic.texting_patient(), clinic.screening, at(MONDAY, "10:00"))
    now.move_to(at(MONDAY, "11:00") - 20 * HOUR)
    booking.move(visit, start=at(MONDAY, "11:00"))
    fresh = messages_of(visit, visit_sequence=1)
    due_now = [m for m in fresh if m.status == Status.PENDING and m.send_at <= now_()]
    assert sorted((m.purpose, m.channel) for m in due_now) == [
        ("invite_update", "email"),
        ("moved", "email"),
        ("moved", "sms"),
    ]
    skipped = [m for m in fresh if m.status == Status.SKIPPED]
    assert {m.reason for m in skipped} >= {"The notice that the visit moved gives the new time."}
    assert [m.send_at for m in fresh if m.status == Status.PENDING and m.purpose == "reminder"] == [
        at(MONDAY, "09:00")
    ]
