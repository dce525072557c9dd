"""Dispatchers killed (SIGKILL) in the middle of a batch of emails: on recovery every email
the mail server never had is sent, each exactly once; only the one in the server's hands
when a dispatcher died may be failed as in doubt (SMTP cannot be asked what it took).

Real processes (``manage.py dispatch_reminders``) against this test's database file and
a real SMTP server on loopback that takes a while to accept each message.
"""

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from notifications.models import PRIORITY, Channel, Message, Purpose, Status
from tests.conftest import MONDAY, SmallClinic, at
from tests.smtp_server import smtp_fixture, smtp_server_fixture  # noqa: F401 - fixtures
from tests.test_worker import worker_environment

ROOT = Path(__file__).resolve().parent.parent
NOW = at(MONDAY, "12:00")  # noon at the clinic: no quiet hours
EMAILS = 40
KILLS = 6


def due_emails(count: int) -> list[Message]:
    """A calendar invite by email for each of ``count`` patients, all due at NOW."""
    clinic = SmallClinic()
    patients = [clinic.patient(f"P{i}", "Example", screened=False) for i in range(count)]
    visits = clinic.doses_one_after_another(patients, at(MONDAY + timedelta(days=7), "08:00"))
    return Message.objects.bulk_create(
        Message(
            visit=visit,
            patient=visit.patient,
            purpose=Purpose.INVITE,
            channel=Channel.EMAIL,
            visit_sequence=visit.sequence,
            recipient=visit.patient.email,
            send_at=NOW - timedelta(minutes=5),
            expires_at=visit.end,
            priority=PRIORITY[Purpose.INVITE],
        )
        for visit in visits
    )


def dispatcher(smtp, moment) -> subprocess.Popen:
    """``manage.py dispatch_reminders`` as the schedule runs it, as if at ``moment``."""
    env = {
        **worker_environment(),
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp.port),
        "EMAIL_USE_TLS": "0",
        "EMAIL_USE_SSL": "0",
        "EMAIL_TIMEOUT": "10",
        "SMS_BACKEND": "locmem",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "dispatch_reminders", "--now", moment.isoformat()],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@pytest.mark.django_db(transaction=True)
def test_dispatchers_killed_mid_batch_leave_at_most_one_email_in_doubt_each(smtp):
    messages = due_emails(EMAILS)
    smtp.delay = 0.05
    chance = random.Random(13)
    kills = 0
    # Each dispatcher acts 10 minutes after the last: past the claim lease, so it
    # takes back the batch the one before it held when it died.
    moments = (NOW + timedelta(minutes=10 * i) for i in itertools.count())
    while kills < KILLS:
        before = len(smtp.received)
        worker = dispatcher(smtp, next(moments))
        deadline = time.monotonic() + 30
        while len(smtp.received) == before and worker.poll() is None:
            assert time.monotonic() < deadline, "the dispatcher sent nothing within 30 s"
            time.sleep(0.01)
        if worker.poll() is not None:
            break  # it finished the batch: nothing left to kill it in the middle of
        time.sleep(chance.uniform(0, 0.3))  # somewhere in the middle of a send, or between two
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        kills += 1
        assert Message.objects.filter(status=Status.CLAIMED).exists(), "killed after the batch"

    last = dispatcher(smtp, next(moments))
    before_last = len(smtp.received)
    _, errors = last.communicate(timeout=60)
    assert last.returncode == 0, errors.decode()[-3000:]

    received = Counter(message["To"] for message in smtp.received)
    rows = {m.recipient: m for m in Message.objects.filter(pk__in=[m.pk for m in messages])}
    assert max(received.values()) == 1, "an email was sent twice"
    in_doubt = [row for row in rows.values() if row.status == Status.FAILED]
    sent = [row for row in rows.values() if row.status == Status.SENT]
    assert len(sent) + len(in_doubt) == EMAILS
    assert all(received[row.recipient] == 1 for row in sent)
    assert all(row.error_code == "in-doubt" for row in in_doubt)
    print(
        f"\n{kills} kills: {before_last} emails sent before, {len(smtp.received) - before_last} "
        f"by the last pass, {len(in_doubt)} failed in doubt"
    )
    # Only an email in the server's hands when its dispatcher died.
    assert len(in_doubt) <= kills, f"{len(in_doubt)} in doubt after {kills} kills"
    # Every dispatcher but the last died in the middle of the batch.
    assert kills == KILLS
