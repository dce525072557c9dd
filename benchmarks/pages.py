"""Front-desk pages: through Django's test client, then 20 clients at once against gunicorn;
in a network, 50 desks over its clinics asking for their day."""

import http.client
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db.models import Count
from django.test import Client
from django.urls import reverse

from benchmarks import REDIS_SERVER
from benchmarks.dataset import Dataset
from benchmarks.measure import Figure, Report, latency, percentile, queries, timed
from scheduler.models import Patient, StaffMembership, StaffRole, Visit
from scheduler.roles import FRONT_DESK_GROUP, choose_clinic
from tests.servers import running_redis

QUERY_TARGET = 15
# Their schedule is cached until something in it changes (desk.frontdesk).
CACHED_PAGES = ("day view", "week view")
LOAD_P95_TARGET_MS = 150
# A desk (a person) asks for a page about once a second at the busiest; the
# back-to-back run shows where two cores saturate.
PACE_SECONDS = 1.0
ROOT = Path(__file__).resolve().parent.parent


def page_paths(dataset: Dataset) -> dict[str, str]:
    day = dataset.now.astimezone(dataset.clinic.tz).date()
    busiest = (
        Patient.objects.filter(clinic=dataset.clinic)
        .annotate(n=Count("visits"))
        .order_by("-n", "pk")
        .first()
    )
    theirs = Visit.objects.filter(patient=busiest)
    # Their next visit; at a tiny scale they may have none to come.
    visit = theirs.filter(start__gt=dataset.now).order_by("start").first() or theirs.first()
    return {
        "day view": reverse("desk_day", args=[day.isoformat()]),
        "week view": reverse("desk_week", args=[day.isoformat()]),
        "patient page": reverse("desk_patient", args=[busiest.pk]),
        "visit page": reverse("desk_visit", args=[visit.pk]),
    }


def desk_user():
    return get_user_model().objects.get(username="frontdesk")


def run(dataset: Dataset, report: Report, runs: int) -> dict[str, str]:
    paths = page_paths(dataset)
    client = Client()
    client.force_login(desk_user())
    day = dataset.now.astimezone(dataset.clinic.tz).date()
    on_day = Visit.objects.filter(start__date=day).count()
    section = f"Front-desk pages, test client ({on_day} visits on the day)"
    for name, path in paths.items():

        def get(path=path):
            response = client.get(path, secure=True)
            assert response.status_code == 200, (path, response.status_code)
            return response

        samples = timed(get, runs)
        count = queries(get)
        report.add(
            Figure(
                section,
                name,
                {**latency(samples), "queries": count, "KiB": len(get().content) // 1024},
                target=f"<= {QUERY_TARGET} queries",
                met=count <= QUERY_TARGET,
            )
        )
        if name in CACHED_PAGES:
            # The schedule as first drawn after a change (nothing cached).
            def drawn(get=get):
                cache.clear()
                return get()

            count = queries(drawn)
            report.add(
                Figure(
                    section,
                    f"{name}, first drawing",
                    {**latency(timed(drawn, runs)), "queries": count},
                    target=f"<= {QUERY_TARGET} queries",
                    met=count <= QUERY_TARGET,
                )
            )
    return paths


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def load(
    dataset: Dataset,
    report: Report,
    paths: dict[str, str],
    *,
    clients: int = 20,
    seconds: float = 15,
    workers: int = 4,
    database_env: dict[str, str],
) -> None:
    """``clients`` threads at once, for ``seconds`` per page: paced like people, then back to back."""
    cookie = _session(desk_user())
    with _gunicorn(workers, database_env) as port:
        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        for interval, model in (
            (PACE_SECONDS, f"each asks for a page every {PACE_SECONDS:g} s"),
            (0.0, "back to back (saturation)"),
        ):
            section = (
                f"Front-desk pages, {clients} concurrent clients ({model}), "
                f"gunicorn {workers} workers, {engine}"
            )
            for name, path in paths.items():
                _measure_load(
                    report, section, name, port, path, [cookie], clients, seconds, interval
                )


def network_load(
    dataset: Dataset,
    report: Report,
    *,
    desks: int = 50,
    seconds: float = 15,
    workers: int = 4,
    database_env: dict[str, str],
) -> None:
    """``desks`` front desks spread over the network's clinics, each a member of its
    clinic and working in it, ask for their day at once: paced like people, then back
    to back."""
    # At the data's "now" (afternoon on the East Coast) every US location has the same day.
    day = dataset.now.astimezone(dataset.clinic.tz).date()
    path = reverse("desk_day", args=[day.isoformat()])
    cookies = [_session(user) for user in desk_users(dataset.clinics, desks)]
    # Several web processes share one cache, as README's production section has them:
    # each clinic's day is drawn once, not once in every process.
    with (
        tempfile.TemporaryDirectory() as scratch,
        running_redis(REDIS_SERVER, Path(scratch)) as redis_url,
        _gunicorn(workers, {**database_env, "CACHE_URL": f"{redis_url}/0"}) as port,
    ):
        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        for interval, model in (
            (PACE_SECONDS, f"each asks every {PACE_SECONDS:g} s"),
            (0.0, "back to back (saturation)"),
        ):
            section = (
                f"Desk day view, {desks} desks over {len(dataset.clinics)} clinics "
                f"({model}), gunicorn {workers} workers, {engine}, cache on Redis"
            )
            _measure_load(
                report, section, "day view", port, path, cookies, desks, seconds, interval
            )


def desk_users(clinics: list, count: int) -> list:
    """``count`` front-desk accounts, in turn at each clinic: a member there, working there."""
    group = Group.objects.get(name=FRONT_DESK_GROUP)
    users = []
    for n in range(count):
        clinic = clinics[n % len(clinics)]
        user, _ = get_user_model().objects.get_or_create(
            username=f"bench-desk-{n:03d}", defaults={"is_staff": True}
        )
        user.groups.add(group)
        StaffMembership.objects.get_or_create(user=user, clinic=clinic, role=StaffRole.FRONT_DESK)
        assert choose_clinic(user, clinic.pk) == clinic
        users.append(user)
    return users


def _session(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@contextmanager
def _gunicorn(workers: int, database_env: dict[str, str]) -> Iterator[int]:
    """gunicorn serving the site on the benchmark's database: its port."""
    port = _free_port()
    env = {
        **os.environ,
        **database_env,
        # Production settings (as in this process, whose sessions it shares),
        # deployed behind a TLS proxy that sets X-Forwarded-Proto.
        "DEBUG": "0",
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "benchmarks.wsgi:application",
            f"--workers={workers}",
            f"--bind=127.0.0.1:{port}",
            "--log-level=warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        _wait_for(port, server)
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _measure_load(
    report: Report,
    section: str,
    name: str,
    port: int,
    path: str,
    cookies: list[str],
    clients: int,
    seconds: float,
    interval: float,
) -> None:
    # Every worker draws the page once before the clock starts.
    _hammer(port, path, cookies, clients, min(seconds, 1.0), interval)
    result = _hammer(port, path, cookies, clients, seconds, interval)
    samples = result["latencies"]
    p95 = percentile(samples, 0.95) if samples else float("inf")
    paced = interval > 0
    report.add(
        Figure(
            section,
            name,
            {
                "p50 ms": statistics.median(samples) if samples else float("nan"),
                "p95 ms": p95,
                "requests": len(samples),
                "per s": len(samples) / seconds,
                "errors": result["errors"],
            },
            target=f"p95 < {LOAD_P95_TARGET_MS} ms, no errors" if paced else "",
            met=(p95 < LOAD_P95_TARGET_MS and result["errors"] == 0) if paced else None,
        )
    )


def _hammer(
    port: int, path: str, cookies: list[str], clients: int, seconds: float, interval: float
) -> dict:
    """Each client requests ``path`` every ``interval`` seconds (start to start; 0: at once),
    client ``n`` signed in with ``cookies[n]`` (in turn, when fewer)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def one_client(cookie: str):
        headers = {
            "Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}",
            "X-Forwarded-Proto": "https",
            "Host": "127.0.0.1",
        }
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        next_start = time.monotonic() + random.uniform(0, interval)  # desks are not in step
        while time.monotonic() < stop:
            time.sleep(max(0.0, next_start - time.monotonic()))
            next_start += interval
            started = time.perf_counter()
            try:
                connection.request("GET", urlsplit(path).path, headers=headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors[0] += 1
        connection.close()

    threads = [
        threading.Thread(target=one_client, args=[cookies[n % len(cookies)]])
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors[0]}
