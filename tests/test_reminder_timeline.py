"""Scenarios over weeks of simulated time, against a Twilio-compatible server and a real
SMTP server: a whole care plan's messages, a move, a STOP in the middle, and the
rehearsal with ``dispatch_reminders --now/--until`` that the README describes."""

import io
from datetime import date, datetime, time, timedelta
from email.utils import parsedate_to_datetime

import pytest
from django.core.management import call_command
from django.utils import timezone

from notifications.content import treatment_words
from notifications.models import (
    ESSENTIAL_PURPOSES,
    Channel,
    Message,
    Purpose,
    Status,
)
from plans.care_plans import confirm, save_proposal
from plans.generator import generate
from plans.models import CarePlan, Protocol
from scheduler import booking
from scheduler.models import Clinic, InvitePreference, Patient
from scheduler.timezones import zone
from tests.conftest import MONDAY, at
from tests.reminder_helpers import (
    HOUR,
    ReminderClinic,
    messages_of,
    step_through,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging", "twilio", "smtp")]
START = date(2030, 2, 4)
FINAL = {Status.DELIVERED, Status.SENT, Status.SUPPRESSED, Status.SKIPPED, Status.CANCELLED}


@pytest.fixture
def demo(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("seed_demo", stdout=io.StringIO())
    return Clinic.objects.get(slug="riverside")


def quiet(moment: datetime, tz_name: str) -> bool:
    local = moment.astimezone(zone(tz_name)).time()
    return local >= time(21) or local < time(8)


def assert_texts_sent_once_in_allowed_hours_without_treatment_words(
    twilio, *, clock_moved: bool = True
) -> None:
    """Each text Twilio got is one outbox message, sent outside quiet hours, treatment-free.

    ``clock_moved``: the test moved the clock itself, so Twilio's own timestamps
    tell when it got each text; a ``dispatch_reminders --now`` rehearsal only
    simulates the moments, which the outbox records.
    """
    texts = Message.objects.filter(channel=Channel.SMS).exclude(provider_id="")
    by_sid = {m.provider_id: m for m in texts.select_related("patient", "clinician")}
    assert len(by_sid) == texts.count() == len(twilio.messages)  # one text, one message
    for record in twilio.messages:
        message = by_sid[record["sid"]]
        assert treatment_words(record["body"]) == [], record["body"]
        if message.to_clinician:
            # An alert to the care team (the demo's item-9 answer): at once, to their mobile.
            assert record["body"] == message.body and record["to"] == message.clinician.mobile
            continue
        assert record["body"] == message.body and record["to"] == message.patient.mobile
        sent = parsedate_to_datetime(record["date_created"]) if clock_moved else message.sent_at
        assert not quiet(sent, message.patient.time_zone), (record["body"], sent)


def test_a_whole_care_plan_sends_each_message_once_at_allowed_hours(
    demo, now, twilio, smtp, client
):
    patient = Patient.objects.get(email="avery.applewood@example.org")
    plan = save_proposal(
        generate(
            patient, Protocol.objects.get(clinic__slug="riverside", slug="iv-induction"), START
        )
    )
    confirm(plan)
    visits = [pv.visit for pv in plan.planned_visits.select_related("visit__visit_type")]
    dosing = [v for v in visits if v.visit_type.is_dosing]
    cancelled = dosing[3]
    cancelled_at = cancelled.start - timedelta(days=5)

    def cancel_fourth_infusion(moment):
        if moment >= cancelled_at and cancelled.status != "cancelled":
            booking.cancel(cancelled, "Patient unwell")
            cancelled.status = "cancelled"

    step_through(now, visits[-1].end + timedelta(days=1), twilio, client, on=cancel_fourth_infusion)

    mine = Message.objects.filter(patient=patient)
    assert set(Message.objects.values_list("status", flat=True)) <= FINAL
    clinicians_emails = set(
        InvitePreference.objects.filter(email_invites=True).values_list(
            "clinician__user__email", flat=True
        )
    )
    # And the care team of the demo's item-9 answer (questionnaires.demo): its alert.
    clinicians_emails |= set(
        Message.objects.filter(purpose=Purpose.SAFETY_ALERT, channel=Channel.EMAIL).values_list(
            "recipient", flat=True
        )
    )
    invited = len(messages_of(cancelled, purpose=Purpose.INVITE))  # the patient, the clinician?
    assert_texts_sent_once_in_allowed_hours_without_treatment_words(twilio)
    assert not mine.filter(channel=Channel.SMS, status=Status.QUEUED).exists()  # reports came back
    assert mine.filter(channel=Channel.SMS, status=Status.DELIVERED).exists()
    for arrived, email in zip(smtp.arrivals, smtp.received, strict=True):
        recipient = Patient.objects.filter(email=email["To"]).first()
        if recipient is None:  # a clinician's calendar invite: no patient's quiet hours
            assert email["To"] in clinicians_emails
            continue
        assert not quiet(arrived, recipient.time_zone), (email["Subject"], arrived)
    # Every dosing visit still on had its instructions by email 48 h before, and by text.
    for visit in dosing:
        if visit == cancelled:
            continue
        preparation = messages_of(visit, purpose=Purpose.PREPARATION)
        assert {(m.channel, m.status) for m in preparation} == {
            ("email", Status.SENT),
            ("sms", Status.DELIVERED),
        }
        assert preparation[0].sent_at == visit.start - 48 * HOUR
        emailed = [e for e in smtp.to(patient.email) if e["Subject"] == preparation[0].body]
        assert len(emailed) == 1
        assert (
            visit.visit_type.preparation_instructions.splitlines()[0][2:]
            in emailed[0].get_body(("plain",)).get_content()
        )
    # Nothing for the cancelled infusion but its calendar invites and, once
    # cancelled, the notice and the invite's cancellation.
    went = [m for m in messages_of(cancelled) if m.sent_at]
    assert sorted((m.purpose, m.channel, m.sent_at >= cancelled_at) for m in went) == [
        ("cancelled", "email", True),
        ("cancelled", "sms", True),
        *[("invite", "email", False)] * invited,
        *[("invite_cancel", "email", True)] * invited,
    ]
    # Plain reminders kept to one text a day and three in any 7 days.
    texts = sorted(mine.filter(channel=Channel.SMS, sent_at__isnull=False), key=lambda m: m.sent_at)
    for message in texts:
        if message.purpose in ESSENTIAL_PURPOSES:
            continue
        day = message.sent_at.astimezone(patient.clinic.tz).date()
        same_day = [m for m in texts if m.sent_at.astimezone(patient.clinic.tz).date() == day]
        week = [m for m in texts if timedelta(0) <= message.sent_at - m.sent_at < timedelta(days=7)]
        assert len(same_day) == 1 and len(week) <= 3, message
    suppressed = mine.filter(status=Status.SUPPRESSED)
    assert suppressed.exists() and all("limit" in m.reason for m in suppressed)


def test_a_visit_moved_after_its_72_hour_reminder_is_reminded_again_for_its_new_time(
    now, twilio, smtp, client, settings
):
    settings.SMS_DAILY_CAP, settings.SMS_WEEKLY_CAP = 3, 10  # a clinic may set its own
    clinic = ReminderClinic()
    patient = clinic.texting_patient()
    visit = clinic.book(patient, clinic.screening, at(MONDAY, "10:00"))
    step_through(now, at(MONDAY, "10:00") - 60 * HOUR, twilio, client)
    assert [m["body"][:60] for m in twilio.messages] == [
        "Hi Avery, a reminder of your visit with Test Clinic America/"
    ]
    booking.move(visit, start=at(MONDAY + timedelta(days=3), "14:00"))
    step_through(now, at(MONDAY + timedelta(days=4), "00:00"), twilio, client)

    assert_texts_sent_once_in_allowed_hours_without_treatment_words(twilio)
    bodies = [m["body"] for m in twilio.messages]
    assert "on Mon Jun 3 at 10:00 AM" in bodies[0]
    assert "has moved to Thu Jun 6 at 2:00 PM" in bodies[1]
    assert [b for b in bodies[2:] if "Jun 3" in b] == []  # nothing more about the old time
    old = messages_of(visit, visit_sequence=0, channel=Channel.SMS)
    assert [m.status for m in old] == [Status.DELIVERED, Status.CANCELLED, Status.CANCELLED]
    new = messages_of(visit, visit_sequence=1, purpose=Purpose.REMINDER, channel=Channel.SMS)
    assert [m.status for m in new] == [Status.DELIVERED] * 3
    assert [m.sent_at for m in new] == [
        at(MONDAY + timedelta(days=3), "14:00") - offset
        for offset in (72 * HOUR, 24 * HOUR, 2 * HOUR)
    ]
    subjects = [e["Subject"] for e in smtp.received]
    assert subjects == [
        "Appointment at Test Clinic America/New_York: Mon Jun 3, 10:00",  # the calendar invite
        "Reminder: your visit on Mon Jun 3 at 10:00 AM",
        "Your visit has moved to Thu Jun 6 at 2:00 PM",
        "Moved: Appointment at Test Clinic America/New_York, now Thu Jun 6, 14:00",
        "Reminder: your visit on Thu Jun 6 at 2:00 PM",
        "Reminder: your visit on Thu Jun 6 at 2:00 PM",
    ]


def test_stop_in_the_middle_of_a_plan_ends_texts_but_not_emails(now, twilio, smtp, client):
    clinic = ReminderClinic()
    patient = clinic.texting_patient()
    visits = [
        clinic.book(patient, clinic.screening, at(MONDAY + timedelta(days=7 * week), "10:00"))
        for week in range(3)
    ]
    step_through(now, visits[0].start, twilio, client)
    texts_before = len(twilio.sent_to(patient.mobile))
    assert texts_before >= 1
    status, _ = twilio.text_from(patient.mobile, "STOP", client=client)
    assert status == 200
    stopped_at = timezone.now()
    step_through(now, visits[-1].end, twilio, client)
    assert len(twilio.sent_to(patient.mobile)) == texts_before
    later_emails = [a for a in smtp.arrivals if a > stopped_at]
    assert len(later_emails) == 4  # 72 h and 24 h for each of the two visits left
    assert not Message.objects.filter(channel=Channel.SMS, sent_at__gt=stopped_at).exists()
    assert Message.objects.filter(channel=Channel.SMS, status=Status.CANCELLED).count() == 6


def test_rehearsing_a_confirmed_demo_plan_with_dispatch_reminders_over_twilio(
    demo, twilio, smtp, client
):
    """The issue's definition of done, through the two commands a clinic would run."""
    call_command(
        "plan",
        "--patient",
        "avery.applewood@example.org",
        "--protocol",
        "kap-lozenge",
        "--start",
        START.isoformat(),
        "--confirm",
        stdout=io.StringIO(),
    )
    plan = CarePlan.objects.get(status="active", patient__email="avery.applewood@example.org")
    last = plan.planned_visits.order_by("-visit__start").first().visit
    out = io.StringIO()
    call_command(
        "dispatch_reminders",
        "--now",
        timezone.now().isoformat(),
        "--until",
        (last.end + timedelta(days=1)).isoformat(),
        "--no-pace",
        stdout=out,
    )
    assert "0 failed" in out.getvalue().splitlines()[-1]
    assert_texts_sent_once_in_allowed_hours_without_treatment_words(twilio, clock_moved=False)
    assert len(twilio.messages) >= 10
    twilio.deliver_all(client=client)
    texts = Message.objects.filter(channel=Channel.SMS).exclude(provider_id="")
    assert set(texts.values_list("status", flat=True)) == {Status.DELIVERED}
    assert not Message.objects.filter(status__in=(Status.PENDING, Status.CLAIMED)).exists()
    assert (
        len(smtp.received)
        == Message.objects.filter(channel=Channel.EMAIL, status=Status.SENT).count()
    )
