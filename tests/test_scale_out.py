"""The scale-out topology run for real: web processes, two workers, PostgreSQL and Redis.

gunicorn with three workers serves the site (production settings) on this
run's PostgreSQL database, with a Redis server of the test's own as django-q2's
broker and as the cache; two ``manage.py qcluster`` processes work the Redis
queue. The desk signs in and books a visit for each of 16 patients through the
web processes, which plan a reminder text for each. A dispatch pass queued
through Redis runs in whichever cluster takes it and sends the batch through
the real twilio SDK to the Twilio-compatible server (tests/fake_twilio.py),
which takes its time over each text; part-way through, that cluster is killed
(SIGKILL, every process of it). The every-minute schedule then runs the next
pass, on the other cluster. Every text reaches Twilio exactly once, and every
row ends delivered once Twilio's signed delivery reports have come back
through the web processes.

django-q2's Redis broker promises nothing of the kind: a task is popped off
the queue without acknowledgement, so the pass the dead cluster held is simply
gone, and passes on several clusters may overlap. What makes each text go once
is the database (docs/architecture.md, *Exactly once on any broker*): the
claim, the "being sent" mark before any call to Twilio, and the lookup of what
Twilio already has once a dead worker's claim has lapsed.

Every process reads one clock, a Monday noon at the clinic (benchmarks/clock.py),
so that no text falls in quiet hours whenever the suite runs.
"""

import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.urls import reverse
from django_q.models import Schedule, Task

from benchmarks import clock
from notifications.models import Channel, Message, Purpose, ReminderPolicy, ReminderRule, Status
from notifications.tasks import SCHEDULE_FUNC, SCHEDULE_NAME
from scheduler.models import ConsentMethod, Patient
from tests.conftest import MONDAY, SmallClinic, at, on_postgres
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio
from tests.page_helpers import front_desk, offered_times
from tests.reminder_helpers import CONSENTED_AT
from tests.servers import Site, free_port, wait_until_listening
from tests.test_worker import worker_environment

pytestmark = pytest.mark.skipif(
    not on_postgres(), reason="the scale-out topology runs on PostgreSQL (DATABASE_URL)"
)

ROOT = Path(__file__).resolve().parent.parent
NOW = at(MONDAY, "12:00")  # noon at the clinic: no quiet hours
PATIENTS = 16
PASSWORD = "desk-password-for-2030"
LATENCY = 0.5  # seconds Twilio takes over each text: the batch takes 8 s or more
# Short, so that the dead cluster's claim lapses soon: the cluster left runs the
# schedule's next pass when its scheduler next looks, which django-q2 does every
# 30 s from the cluster's start. A batch hands texts over for half the lease
# (notifications/dispatch.py), 5 s here: the kill lands in the first batch.
LEASE_SECONDS = 10
TOKEN_LIMIT = 12
FIRST_PASS = "scale-out first pass"
CLUSTERS = "django_q:kap:cluster:*"  # django-q2's key for each running cluster's status


def installation(redis_url: str, twilio: FakeTwilio, var_dir: Path, port: int) -> dict[str, str]:
    """One environment for every process of the installation, as a deployment gives them."""
    return {
        **worker_environment(),  # this run's database
        **clock.environment(NOW),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        # Where Twilio posts delivery reports: the web processes themselves,
        # reached without the proxy (which would redirect plain HTTP instead).
        "SITE_URL": f"http://127.0.0.1:{port}",
        "SECURE_SSL_REDIRECT": "0",
        "VAR_DIR": str(var_dir),
        "REDIS_URL": f"{redis_url}/0",
        "CACHE_URL": f"{redis_url}/1",
        "SMS_BACKEND": "twilio",
        "TWILIO_API_BASE": twilio.url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_TIMEOUT": "5",
        "SMS_SEND_RATE": "0",  # the fake's latency paces the batch
        "MESSAGE_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
        "TOKEN_RATE_LIMIT": str(TOKEN_LIMIT),
        "Q_WORKERS": "1",
        "LOG_LEVEL": "INFO",
    }


def start(name: str, command: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen:
    """A process of the installation in a session of its own, its output in ``logs/name.log``."""
    with (logs / f"{name}.log").open("w") as out:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def qcluster(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen:
    return start(name, [sys.executable, "-m", "benchmarks.clock", "qcluster"], env, logs)


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


def patients_to_remind(count: int) -> tuple[SmallClinic, list[Patient]]:
    """Patients who take texts only, and one rule: a reminder 72 h before an integration visit.

    Whatever the desk books within the next 72 hours is short notice: its
    reminder falls due at once (notifications/planning.py), one text a visit.
    """
    clinic = SmallClinic()
    for name in ("Jo Banks", "Ari Stone"):  # three therapists: all 16 visits within 72 h
        clinic.clinician(name, "therapist")
    policy = ReminderPolicy.objects.create(visit_type=clinic.integration)
    ReminderRule.objects.create(
        policy=policy, purpose=Purpose.REMINDER, offset=timedelta(hours=72), by_email=False
    )
    patients = [
        clinic.patient(
            f"Pat{n}",
            "Example",
            screened=False,
            contact_by_email=False,
            sms_consent_at=CONSENTED_AT,
            sms_consent_method=ConsentMethod.WEB_FORM,
        )
        for n in range(count)
    ]
    return clinic, patients


def book_through_the_desk(site: Site, username: str, patients, visit_type) -> None:
    """Sign in at the desk and book each patient the first time it offers."""
    assert site.sign_in("/login/", username, PASSWORD)[0] == 302
    for patient in patients:
        url = f"{reverse('desk_book_visit', args=[patient.pk])}?type={visit_type.pk}"
        status, page = site.request("GET", url)
        assert status == 200, page[-3000:]
        status, page = site.request("POST", url, {"slot": offered_times(page)[0]})
        assert status == 302, page[-3000:]


def token_guesses_counted_together(port: int, cache: redis.Redis, access_log: Path) -> None:
    """The token URLs' rate limit holds across the web processes: they count in Redis."""
    guesses = TOKEN_LIMIT + 4
    site = Site(port)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(
            pool.map(lambda n: site.request("GET", f"/p/guess-{n:04d}/")[0], range(guesses))
        )
    assert Counter(statuses) == {404: TOKEN_LIMIT, 429: 4}
    assert int(cache.get(":1:throttle:token:127.0.0.1")) == guesses
    served_by = {line.split()[0] for line in access_log.read_text().splitlines() if " /p/" in line}
    assert len(served_by) > 1, "one web process answered every guess: nothing shared was shown"


@pytest.mark.django_db(transaction=True)
def test_two_clusters_on_redis_send_each_text_once_when_one_dies_mid_batch(
    settings,
    tmp_path,
    redis_server,
    twilio_server,
):
    # The web processes check passwords with the production hasher.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    desk = front_desk(password=PASSWORD)
    clinic, patients = patients_to_remind(PATIENTS)
    # No schedule is due before the test says (the dispatch pass after the kill):
    # from the real date they were made at, the scheduler would step minute by
    # minute to the clock's 2030 before queueing anything.
    Schedule.objects.update(next_run=NOW + timedelta(days=1))
    twilio = twilio_server
    twilio.reset()
    twilio.latency = LATENCY
    port = free_port()
    env = installation(redis_server, twilio, tmp_path, port)
    broker, cache = redis.Redis.from_url(env["REDIS_URL"]), redis.Redis.from_url(env["CACHE_URL"])
    access_log = tmp_path / "access.log"
    web = start(
        "gunicorn",
        [
            str(Path(sys.executable).with_name("gunicorn")),
            *("-c", "config/gunicorn.py", "benchmarks.wsgi", "--workers=3"),
            f"--bind=127.0.0.1:{port}",
            f"--access-logfile={access_log}",
            "--access-logformat=%(p)s %(s)s %(U)s %(M)s",
        ],
        env,
        tmp_path,
    )
    clusters = {name: qcluster(name, env, tmp_path) for name in ("first", "second")}
    running = [web, *clusters.values()]

    def took_the_pass() -> str | None:
        """The cluster whose worker logged that it began the pass, if one has."""
        return next(
            (
                name
                for name in clusters
                if f"processing {FIRST_PASS}" in (tmp_path / f"{name}.log").read_text()
            ),
            None,
        )

    try:
        wait_until_listening(port, web, log=tmp_path / "gunicorn.log")
        book_through_the_desk(Site(port), desk.username, patients, clinic.integration)
        texts = Message.objects.filter(channel=Channel.SMS)
        assert texts.count() == Message.objects.count() == PATIENTS
        assert set(texts.values_list("status", flat=True)) == {Status.PENDING}
        assert max(texts.values_list("send_at", flat=True)) <= clock.reading(env)

        # A pass queued through Redis as the schedule queues one, from a process
        # of the installation, with both clusters waiting on the queue.
        wait_until(lambda: len(broker.keys(CLUSTERS)) == 2, 60, "both clusters running")
        queue = f"from django_q.tasks import async_task; async_task({SCHEDULE_FUNC!r}, task_name={FIRST_PASS!r})"
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", queue],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=120,
        )
        sending = texts.filter(status=Status.CLAIMED, in_doubt=True)
        wait_until(
            lambda: took_the_pass() and len(twilio.messages) >= 3 and sending.exists(),
            60,
            "the pass in the middle of a batch",
        )
        dead = took_the_pass()
        (survivor,) = set(clusters) - {dead}
        os.killpg(clusters[dead].pid, signal.SIGKILL)
        clusters[dead].wait(timeout=10)
        time.sleep(2 * LATENCY)  # a text in flight when it died reaches Twilio all the same
        sent_before = len(twilio.messages)
        # Twilio is quick again: the next pass sends the rest within its batch's half lease.
        twilio.latency = 0
        held = texts.filter(status=Status.CLAIMED)
        in_doubt = held.filter(in_doubt=True).count()  # handed over, or about to be
        assert in_doubt, "killed after the batch, not in the middle"
        assert 0 < sent_before < PATIENTS

        token_guesses_counted_together(port, cache, access_log)

        # Once the dead cluster's claim has lapsed, the every-minute schedule's
        # next pass runs on the cluster left.
        lapsed = max(held.values_list("claimed_at", flat=True)) + timedelta(seconds=LEASE_SECONDS)
        wait_until(lambda: clock.reading(env) > lapsed, LEASE_SECONDS + 5, "the claim lapsing")
        Schedule.objects.filter(name=SCHEDULE_NAME).update(next_run=clock.reading(env))
        scheduled = Task.objects.filter(func=SCHEDULE_FUNC, group=SCHEDULE_NAME)
        wait_until(scheduled.exists, 90, "the schedule's pass on the cluster left")
        # Twilio's delivery reports, signed, to whichever web process accepts each.
        reports = twilio.deliver_all()
    finally:
        twilio.latency = 0  # the server is the session's: quick for the tests after
        for process in running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    # Each text reached Twilio once; not even a second attempt was made.
    assert Counter(m["to"] for m in twilio.messages) == {p.mobile: 1 for p in patients}
    assert len(twilio.creates()) == PATIENTS
    assert set(reports) == {204} and len(reports) == 2 * PATIENTS
    rows = list(texts)
    assert {(row.status, row.in_doubt, row.claim_token) for row in rows} == {
        (Status.DELIVERED, False, "")
    }
    assert {row.provider_id for row in rows} == {m["sid"] for m in twilio.messages}
    # What the dead cluster had marked as being sent was looked up first, once each.
    lookups = [r for r in twilio.requests if r["method"] == "GET"]
    assert len(lookups) == in_doubt
    # The pass the dead cluster held went with it: Redis does not hand a task back.
    assert not Task.objects.filter(name=FIRST_PASS).exists()
    assert broker.llen("django_q:kap:q") == 0
    (task,) = scheduled
    assert task.success and task.result["recovered"] > 0
    assert f"'{SCHEDULE_FUNC}' [{SCHEDULE_NAME}]" in (tmp_path / f"{survivor}.log").read_text()
    print(
        f"\nthe {dead} cluster sent {sent_before} texts before it was killed, the {survivor} "
        f"{PATIENTS - sent_before} after; {in_doubt} in doubt, looked up"
    )
