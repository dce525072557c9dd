"""Texts that matter are not silenced: the clinic's daily and weekly text limits hold only
for patients without express consent to care texts, and even then never stop a
time-critical text (a video link, a change). Run over a daily course against the
Twilio-compatible server on loopback, delivery reports included."""

from collections import Counter
from datetime import timedelta

import pytest

from notifications.models import TIME_CRITICAL_PURPOSES, Channel, Message, Purpose, Status
from scheduler.models import Patient, Visit
from tests.conftest import MONDAY, at
from tests.reminder_helpers import HOUR, ReminderClinic, step_through

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging", "twilio")]
DAY = timedelta(days=1)
COURSE_DAYS = 12


@pytest.fixture
def clinic(db, settings):
    settings.SMS_DAILY_CAP, settings.SMS_WEEKLY_CAP = 1, 3  # the defaults, whatever the env
    clinic = ReminderClinic(days=range(7))
    clinic.therapist = clinic.clinician("Sam Daily", "therapist", days=range(7))
    return clinic


def daily_course(clinic: ReminderClinic, patient: Patient) -> list[Visit]:
    """An induction course of a video visit every day at 10:00, Monday on, for 12 days."""
    return [
        clinic.book(patient, clinic.integration, at(MONDAY + day * DAY, "10:00"))
        for day in range(COURSE_DAYS)
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
