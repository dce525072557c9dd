"""Dispatchers running at the same moment, each with its own database connection (as
separate qcluster workers would): every message is claimed by one of them and sent once.

On PostgreSQL the claim takes rows with SELECT ... FOR UPDATE SKIP LOCKED; on SQLite the
IMMEDIATE transaction serialises claims; on both the conditional update decides."""

from datetime import timedelta

import pytest
from django.core import mail

from notifications.dispatch import dispatch
from notifications.models import Channel, Message, Status
from tests.conftest import MONDAY, at
from tests.races import race
from tests.reminder_helpers import ReminderClinic

DISPATCHERS = 4


@pytest.mark.django_db(transaction=True)
def test_dispatchers_running_at_once_send_each_message_exactly_once(
    now, messaging, twilio, settings
):
    settings.SMS_DAILY_CAP = settings.SMS_WEEKLY_CAP = 100
    settings.DISPATCH_BATCH_SIZE = 3  # many small claims, so the dispatchers interleave
    clinic = ReminderClinic()
    week = MONDAY + timedelta(days=7)
    for i in range(8):
        patient = clinic.texting_patient(f"Racer{i}")
        for day in range(3):
            clinic.book(
                patient, clinic.screening, at(week + timedelta(days=day), f"{9 + i:02d}:00")
            )
    now.move_to(at(week, "08:30"))
    due = Message.objects.due(at(week, "08:30"))
    texts, emails = (
        due.filter(channel=Channel.SMS).count(),
        due.filter(channel=Channel.EMAIL).count(),
    )
    assert texts >= 30 and emails >= 20

    outcomes = race([dispatch] * DISPATCHERS)

    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    assert sum(o.sent for o in outcomes) == texts + emails
    assert sum(1 for o in outcomes if o.sent) >= 2, "the dispatchers should have shared the work"
    sent = Message.objects.filter(status__in=(Status.QUEUED, Status.SENT))
    assert sent.count() == texts + emails
    assert set(sent.values_list("attempts", flat=True)) == {1}
    # The provider's side: each text arrived once, each email once.
    assert len(twilio.creates()) == len(twilio.messages) == texts
    assert len({m["sid"] for m in twilio.messages}) == texts
    assert sorted(m["sid"] for m in twilio.messages) == sorted(
        sent.filter(channel=Channel.SMS).values_list("provider_id", flat=True)
    )
    assert len(mail.outbox) == emails
    assert len({m.extra_headers["Message-ID"] for m in mail.outbox}) == emails
