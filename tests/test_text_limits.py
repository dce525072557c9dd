"""Texts that matter are not silenced. The clinic's daily and weekly text limits hold only
for patients without express consent to care texts, and even then never stop a
time-critical text (a video link, a change); with express consent nothing is dropped,
and a patient's texts of a day that can wait go as one. Over a daily course of video
visits, against the Twilio-compatible server on loopback, delivery reports included."""

from collections import Counter, defaultdict
from datetime import date, timedelta

import pytest
from django.urls import reverse

from notifications.content import (
    COMBINED_MAX_SEGMENTS,
    is_gsm,
    segments,
    treatment_words,
    when_text,
)
from notifications.models import (
    TIME_CRITICAL_PURPOSES,
    Channel,
    Message,
    Purpose,
    ReminderRule,
    Status,
)
from scheduler.models import ConsentMethod, Patient, Visit
from scheduler.timezones import zone
from tests.conftest import MONDAY, at
from tests.page_helpers import front_desk
from tests.reminder_helpers import CONSENTED_AT, HOUR, ReminderClinic, step_through

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging", "twilio")]
DAY = timedelta(days=1)
COURSE_DAYS = 12


@pytest.fixture
def clinic(db, settings):
    settings.SMS_DAILY_CAP, settings.SMS_WEEKLY_CAP = 1, 3  # the defaults, whatever the env
    clinic = ReminderClinic(days=range(7))
    clinic.therapist = clinic.clinician("Sam Daily", "therapist", days=range(7))
    return clinic


def daily_course(clinic: ReminderClinic, patient: Patient, days: int = COURSE_DAYS) -> list[Visit]:
    """An induction course of a video visit every day, Monday on, for ``days`` days.

    At 09:00, 11:00 or 14:00 by turns, so that each day's reminders (72 h
    before one visit, 24 h before the next) fall due at different hours.
    """
    return [
        clinic.book(
            patient,
            clinic.integration,
            at(MONDAY + day * DAY, ("09:00", "11:00", "14:00")[day % 3]),
        )
        for day in range(days)
    ]


def texts_of(patient: Patient) -> list[Message]:
    return list(Message.objects.filter(patient=patient, channel=Channel.SMS).order_by("send_at"))


def test_without_express_consent_the_limits_hold_but_every_video_link_goes(
    clinic, now, twilio, client
):
    patient = clinic.texting_patient(contact_by_email=False)
    visits = daily_course(clinic, patient)

    step_through(now, visits[-1].end + DAY, twilio, client)

    texts = texts_of(patient)
    video_links = [m for m in texts if m.purpose == Purpose.VIDEO_LINK]
    assert [(m.status, m.sent_at) for m in video_links] == [
        (Status.DELIVERED, visit.start - HOUR) for visit in visits
    ]
    assert [t["body"] for t in twilio.sent_to(patient.mobile)] == [m.body for m in video_links]
    assert all("Join here: https://video.example.com/room" in m.body for m in video_links)
    # The video link of each day fills its daily limit: the plain reminders, which
    # leave room for it, are held back with the reason.
    reminders = [m for m in texts if m.purpose not in TIME_CRITICAL_PURPOSES]
    assert len(reminders) == 2 * COURSE_DAYS
    assert {m.status for m in reminders} == {Status.SUPPRESSED}
    assert all("text limit" in m.reason for m in reminders)
    print(f"\nwithout express consent: {Counter((m.purpose, m.status) for m in texts)}")


def consenting_patient(clinic: ReminderClinic, first: str = "Avery", **extra) -> Patient:
    return clinic.texting_patient(
        first,
        contact_by_email=False,
        sms_express_consent_at=CONSENTED_AT,
        sms_express_consent_method=ConsentMethod.PAPER_FORM,
        **extra,
    )


def local_day_of(message: Message) -> date:
    return message.sent_at.astimezone(zone(message.patient.time_zone)).date()


def assert_one_text_each(messages: list[Message], twilio, *, gsm: bool = True) -> None:
    """Each message went in exactly one text Twilio got, which says when its visit is, in at
    most three segments (GSM-7 unless the name forces UCS-2) and without treatment words."""
    by_sid = {record["sid"]: record for record in twilio.messages}
    for message in messages:
        record = by_sid[message.provider_id]
        assert record["body"] == message.body, message
        if message.purpose in (Purpose.REMINDER, Purpose.PREPARATION):
            tz = message.patient.time_zone
            assert when_text(message.visit.start, tz, tz) in record["body"], record["body"]
        assert is_gsm(record["body"]) == gsm, record["body"]
        assert segments(record["body"]) <= COMBINED_MAX_SEGMENTS, record["body"]
        assert treatment_words(record["body"]) == []


def test_with_express_consent_a_daily_course_gets_every_text_the_days_reminders_as_one(
    clinic, now, twilio, client
):
    patient = consenting_patient(clinic)
    visits = daily_course(clinic, patient)

    step_through(now, visits[-1].end + DAY, twilio, client)

    texts = texts_of(patient)
    assert {m.status for m in texts} == {Status.DELIVERED}  # nothing held back, all reported
    video_links = [m for m in texts if m.purpose == Purpose.VIDEO_LINK]
    assert [(m.sent_at, m.combined_into) for m in video_links] == [
        (visit.start - HOUR, None) for visit in visits
    ]
    reminders = [m for m in texts if m.purpose == Purpose.REMINDER]
    assert len(reminders) == 2 * COURSE_DAYS
    assert_one_text_each(texts, twilio)
    # Each day's reminders went as one text, when the first of them was due: the
    # other came early, in it, and took its delivery reports.
    by_day: dict[date, set[str]] = defaultdict(set)
    for message in reminders:
        by_day[local_day_of(message)].add(message.provider_id)
        assert message.sent_at <= message.send_at
    assert all(len(sids) == 1 for sids in by_day.values()), by_day
    combined = [m for m in reminders if m.combined_into_id]
    assert len(combined) == len(reminders) - len(by_day)
    for message in combined:
        assert message.combined_into.provider_id == message.provider_id
        assert message.combined_into.patient_id == patient.pk
    assert len(twilio.sent_to(patient.mobile)) == COURSE_DAYS + len(by_day)
    print(
        f"\nwith express consent: {len(texts)} messages in {len(twilio.messages)} texts: "
        f"{len(video_links)} video links, {len(reminders)} reminders in {len(by_day)}"
    )
    client.force_login(front_desk())
    page = client.get(reverse("desk_patient", args=[patient.pk])).text
    assert page.count("in one text with others") == len(combined)


def test_later_texts_of_the_day_join_the_first_but_aftercare_waits_for_its_visit_to_end(
    clinic, now, twilio, client
):
    # Aftercare by text too, for this test: it must never come before the visit ends.
    ReminderRule.objects.filter(policy__visit_type=clinic.iv, purpose=Purpose.AFTERCARE).update(
        by_sms=True
    )
    patient = consenting_patient(clinic)
    dosing = clinic.book(patient, clinic.iv, at(MONDAY + DAY, "10:00"))  # Tue 10:00-12:00
    check_in = clinic.book(patient, clinic.screening, at(MONDAY + 2 * DAY, "16:00"))  # Wed
    step_through(now, check_in.end, twilio, client)

    tuesday = [m for m in texts_of(patient) if local_day_of(m) == (MONDAY + DAY)]
    texts = {m.provider_id: m for m in tuesday}
    assert len(texts) == 2
    morning, afternoon = sorted(texts.values(), key=lambda m: m.sent_at)
    # 08:00: the 2 h reminder of the dosing visit leads; the 24 h reminder of
    # Wednesday's visit, due at 16:00, comes in it.
    assert morning.sent_at == at(MONDAY + DAY, "08:00")
    in_morning = [m for m in tuesday if m.provider_id == morning.provider_id]
    assert sorted((m.visit_id, m.rule.offset) for m in in_morning) == [
        (dosing.pk, 2 * HOUR),
        (check_in.pk, 24 * HOUR),
    ]
    assert "on Tue Jun 4 at 10:00 AM and Wed Jun 5 at 4:00 PM" in morning.body
    # The aftercare, due when the visit ends, went then, on its own.
    assert afternoon.purpose == Purpose.AFTERCARE and afternoon.sent_at == dosing.end
    assert afternoon.combined_into is None
    # Sunday's preparation text for the dosing visit carried its link, with the
    # 72 h reminder of Wednesday's visit due that day too.
    sunday = [m for m in texts_of(patient) if local_day_of(m) == MONDAY - DAY]
    assert {m.purpose for m in sunday} == {Purpose.PREPARATION, Purpose.REMINDER}
    assert len({m.provider_id for m in sunday}) == 1
    assert "How to prepare: https://clinic.example.org/p/" in sunday[0].body
    assert_one_text_each(texts_of(patient), twilio)


def test_a_combined_text_keeps_to_three_segments_and_what_does_not_fit_goes_at_its_own_time(
    clinic, now, twilio, client
):
    # "ë" is not in GSM-7: every text to Zoë goes in UCS-2, 67 characters a segment.
    patient = consenting_patient(clinic, "Zoe")
    Patient.objects.filter(pk=patient.pk).update(first_name="Zoë")
    visits = daily_course(clinic, patient, days=4)
    step_through(now, visits[-1].end, twilio, client)

    texts = texts_of(patient)
    assert {m.status for m in texts} == {Status.DELIVERED}
    assert_one_text_each(texts, twilio, gsm=False)
    left_out = [m for m in texts if m.reason == "Left out of a combined text: too long."]
    assert left_out
    for message in left_out:  # then went on its own, at its own time
        assert (message.sent_at, message.combined_into) == (message.send_at, None)
