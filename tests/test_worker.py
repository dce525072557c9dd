"""The django-q2 worker runs with the project's settings and executes queued tasks."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django_q.tasks import async_task, fetch

ROOT = Path(__file__).resolve().parent.parent


def worker_environment() -> dict[str, str]:
    """Point a separate worker process at this test run's database."""
    env = {**os.environ, "DEBUG": "1", "Q_WORKERS": "1"}
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        env["SQLITE_PATH"] = str(name)
    else:
        url = os.environ["DATABASE_URL"]
        env["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + name
    return env


@pytest.mark.django_db(transaction=True)
def test_qcluster_executes_a_queued_task():
    if settings.REDIS_URL:
        pytest.skip("the ORM broker is what the embedded setup uses")
    task_id = async_task("math.floor", 41.9)
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=worker_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        task = None
        while time.monotonic() < deadline and task is None:
            time.sleep(0.5)
            task = fetch(task_id)
        assert task is not None, "the worker did not run the task within 60 s"
        assert task.success and task.result == 41
    finally:
        # The cluster's graceful stop waits for idle workers' timeouts; the
        # task is done, so the whole process group can go at once.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
