"""Dispatch of due texts through the real twilio SDK to a loopback Twilio, against the SDK's floor;
in a network, by 1, 2 and 4 ``qcluster`` processes on a Redis broker."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.brokers.redis_broker import Redis
from django_q.models import Schedule, Task
from django_q.tasks import async_task
from twilio.rest import Client

from benchmarks import REDIS_SERVER
from benchmarks.dataset import Dataset
from benchmarks.measure import Figure, Report, ratio_figure
from notifications.dispatch import Dispatcher
from notifications.models import Channel, Message, Status
from notifications.planning import ACTIVE_STATUSES
from notifications.tasks import SCHEDULE_FUNC
from notifications.transports import RebasedHttpClient, twilio_http_client
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.servers import running_redis

RATIO_TARGET = 1.3
QUERIES_TARGET = 0.05
ROOT = Path(__file__).resolve().parent.parent
CLUSTERS = "django_q:kap:cluster:*"  # django-q2's key for each running cluster's status


class TwilioServer:
    """tests/fake_twilio.py in its own process, so it does not share our interpreter's lock."""

    def __init__(self, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.twilio_server"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = json.loads(self.process.stdout.readline())["url"]

    def configure(self) -> dict[str, str]:
        """Point this process's Twilio transport at the server; the same as environment."""
        values = {
            "SMS_BACKEND": "twilio",
            "TWILIO_API_BASE": self.url,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
        }
        for name, value in values.items():
            setattr(settings, name, value)
        return values

    def taken(self) -> int:
        with urllib.request.urlopen(f"{self.url}/bench/stats") as answer:
            return json.load(answer)["messages"]

    def reset(self) -> None:
        urllib.request.urlopen(
            urllib.request.Request(f"{self.url}/bench/reset", b"", method="POST")
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def due_pool(dataset: Dataset, size: int) -> list[int]:
    """The ``size`` earliest pending texts to patients who can get them, made due now."""
    pool = list(
        Message.objects.filter(
            status=Status.PENDING,
            channel=Channel.SMS,
            expires_at__gt=dataset.now,
            visit__status__in=ACTIVE_STATUSES,
            patient__contact_by_sms=True,
            patient__sms_consent_at__isnull=False,
            patient__sms_opted_out_at__isnull=True,
        )
        .order_by("send_at", "pk")
        .values_list("pk", flat=True)[:size]
    )
    reset_pool(dataset, pool)
    return pool


def reset_pool(dataset: Dataset, pool: list[int]) -> None:
    due = dataset.now.replace(second=0, microsecond=0)
    for first in range(0, len(pool), 5_000):
        Message.objects.filter(pk__in=pool[first : first + 5_000]).update(
            status=Status.PENDING,
            send_at=due,
            claim_token="",
            claimed_at=None,
            attempted_at=None,
            attempts=0,
            in_doubt=False,
            provider_id="",
            sent_at=None,
            body="",
            recipient="",
            reason="",
            error_code="",
            last_error="",
        )


def run(dataset: Dataset, report: Report, size: int, child_env: dict[str, str]) -> None:
    server = TwilioServer(child_env)
    try:
        env = {**child_env, **server.configure()}
        pool = due_pool(dataset, size)
        size = len(pool)
        recipients = list(
            Message.objects.filter(pk__in=pool[:1000]).values_list("patient__mobile", flat=True)
        )
        section = f"Dispatch of {size:,} due texts, real twilio SDK, loopback Twilio"

        floor_seconds = _floor(RebasedHttpClient(server.url, timeout=10), recipients, size)
        server.reset()
        report.add(
            Figure(
                section,
                "floor: bare SDK loop",
                {"seconds": floor_seconds, "texts/s": size / floor_seconds},
            )
        )
        # The same loop with the HTTP session set up as the transport sets it up
        # (proxy settings read once): what is left is our own work.
        tuned_seconds = _floor(twilio_http_client(server.url, 10), recipients, size)
        server.reset()
        report.add(
            Figure(
                section,
                "SDK loop, session as the transport's",
                {"seconds": tuned_seconds, "texts/s": size / tuned_seconds},
            )
        )

        dispatcher = Dispatcher(dataset.now, pace=False)
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            result = dispatcher.run()
            while result.sent < size and _due(dataset):
                more = Dispatcher(dataset.now, pace=False).run()
                result.sent += more.sent
        seconds = time.perf_counter() - started
        per_message = len(captured.captured_queries) / size
        taken = server.taken()
        report.add(
            Figure(
                section,
                "dispatch pass, 1 process",
                {
                    "seconds": seconds,
                    "texts/s": size / seconds,
                    "sent": result.sent,
                    "server took": taken,
                    "queries/text": round(per_message, 3),
                },
                target=f"<= {QUERIES_TARGET} queries/text, each sent once",
                met=per_message <= QUERIES_TARGET and taken == size == result.sent,
            )
        )
        report.add(
            ratio_figure(section, seconds, floor_seconds, RATIO_TARGET, "ratio to the floor")
        )
        tuned = seconds / tuned_seconds
        report.add(Figure(section, "ratio to the tuned loop", {"ratio": round(tuned, 2)}))
        if connection.vendor != "postgresql":
            report.add(
                Figure(section, "1, 2 and 4 worker processes", {"skipped": "needs PostgreSQL"})
            )
            return
        for workers in (1, 2, 4):
            server.reset()
            reset_pool(dataset, pool)
            seconds = _workers(dataset, workers, env)
            sent = Message.objects.filter(pk__in=pool, status=Status.QUEUED).count()
            taken = server.taken()
            report.add(
                _exactly_once(
                    section, f"{workers} worker process", workers, seconds, size, sent, taken
                )
            )
    finally:
        server.stop()


def _exactly_once(section, name, processes, seconds, size, sent, taken) -> Figure:
    """A dispatch figure: texts a second, and whether each of ``size`` went exactly once."""
    return Figure(
        section,
        name + ("es" if processes > 1 else ""),
        {"seconds": seconds, "texts/s": size / seconds, "sent": sent, "server took": taken},
        target="each sent exactly once",
        met=sent == taken == size,
    )


def _due(dataset: Dataset) -> bool:
    return Message.objects.due(dataset.now).exists()


def _floor(http_client, recipients: list[str], size: int) -> float:
    """The same number of creates with nothing of ours around them."""
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http_client)
    body = (
        "Riverside Wellness Clinic: reminder of your appointment on Tue 8 Apr at 2:00 PM. "
        "Reply C to confirm, R to reschedule."
    )
    started = time.perf_counter()
    for n in range(size):
        client.messages.create(
            to=recipients[n % len(recipients)],
            from_=FROM_NUMBER,
            body=body,
            status_callback=f"{settings.SITE_URL}/webhooks/twilio/status?m={n}",
        )
    return time.perf_counter() - started


def _workers(dataset: Dataset, count: int, env: dict[str, str]) -> float:
    """Seconds from the first worker's first claim to the last worker's end."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.dispatch_worker", dataset.now.isoformat()],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    spans = []
    for process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"a dispatch worker exited with {process.returncode}")
        spans.append(json.loads(output.strip().splitlines()[-1]))
    return max(s["ended"] for s in spans) - min(s["began"] for s in spans)


def run_on_redis(
    dataset: Dataset,
    report: Report,
    size: int,
    child_env: dict[str, str],
    clusters: tuple[int, ...] = (1, 2, 4),
) -> None:
    """The ``size`` texts due at once, sent by passes queued through Redis to that many
    ``qcluster`` processes (one worker each), every pass as the schedule runs it."""
    server = TwilioServer(child_env)
    logs = settings.VAR_DIR / "benchmark-logs"  # the clusters' output, kept for a look
    logs.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as scratch,
        running_redis(REDIS_SERVER, Path(scratch)) as redis_url,
    ):
        try:
            env = {
                **child_env,
                **server.configure(),
                "Q_WORKERS": "1",
                "SMS_SEND_RATE": "0",  # as fast as Twilio takes them
                "LOG_LEVEL": "WARNING",
            }
            pool = due_pool(dataset, size)
            size = len(pool)
            # No schedule of the installation falls due meanwhile: every pass is one queued here.
            Schedule.objects.update(next_run=dataset.now + timedelta(days=365))
            section = (
                f"Dispatch of {size:,} due texts on Redis, qcluster processes "
                "(1 worker each), real twilio SDK, loopback Twilio"
            )
            for database, count in enumerate(clusters, start=1):
                server.reset()
                reset_pool(dataset, pool)
                # A Redis database of its own: no cluster of the round before is counted.
                cluster_env = {**env, "REDIS_URL": f"{redis_url}/{database}"}
                seconds = _clusters(count, cluster_env, pool, server, logs)
                sent = Message.objects.filter(pk__in=pool, status=Status.QUEUED).count()
                taken = server.taken()
                report.add(
                    _exactly_once(
                        section, f"{count} qcluster process", count, seconds, size, sent, taken
                    )
                )
        finally:
            server.stop()


class _Queue(Redis):
    """django-q2's Redis broker at ``url``, for this process, whose own broker is another."""

    def __init__(self, url: str):
        self.url = url
        super().__init__()

    def get_connection(self, list_key: str | None = None) -> redis.Redis:
        return redis.Redis.from_url(self.url)


def _clusters(
    count: int, env: dict[str, str], pool: list[int], server: TwilioServer, logs: Path
) -> float:
    """Seconds from queueing one pass per cluster to the last text of the pool sent."""
    broker = redis.Redis.from_url(env["REDIS_URL"])
    Task.objects.filter(func=SCHEDULE_FUNC).delete()
    processes = []
    for n in range(count):
        with (logs / f"qcluster-{count}-{n}.log").open("w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.clock", "qcluster"],
                    cwd=ROOT,
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # the cluster's processes, stopped together
                )
            )
    try:
        _wait(lambda: len(broker.keys(CLUSTERS)) == count, 120, "the clusters running")
        queue = _Queue(env["REDIS_URL"])
        unsent = Message.objects.filter(pk__in=pool, status__in=(Status.PENDING, Status.CLAIMED))
        done = Task.objects.filter(func=SCHEDULE_FUNC)

        def sent() -> bool:
            return server.taken() >= len(pool) and not unsent.exists()

        started, queued = time.perf_counter(), 0
        # A pass stops after DISPATCH_PASS_SECONDS, leaving the rest to the schedule's
        # next minute: once every pass queued has ended, as many again.
        while not sent():
            for _ in range(count):
                async_task(SCHEDULE_FUNC, broker=queue)
            queued += count
            _wait(lambda queued=queued: sent() or done.count() == queued, 600, "passes ending")
        seconds = time.perf_counter() - started
        # Every pass ends (its result saved): nothing more is sent after the figure.
        _wait(lambda: done.count() == queued, 120, "every pass ending")
        if not all(done.values_list("success", flat=True)):
            raise RuntimeError(f"a dispatch pass failed; see {logs}")
        return seconds
    finally:
        # The cluster's own process is told to stop, and stops its workers. Sent to
        # the whole process group, the signal left a cluster on Redis never ending:
        # 30 s each, until the kill below.
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {seconds} s: {what}")
        time.sleep(0.05)
