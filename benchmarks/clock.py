"""The benchmark's "now": the dataset's fixed afternoon, in this process and its children.

The data hangs off fixed dates (the same seed gives the same rows), so every
process that reads it - this one, gunicorn's workers, dispatch workers -
moves its clock there, and lets it tick. They all read one clock: a process
started later begins as far past the moment as the wall clock has moved since
it was set, so a row one process writes "now" is due in another at once.

``python -m benchmarks.clock COMMAND ...`` runs a ``manage.py`` command
(``qcluster``, say) on that clock.
"""

import os
import sys
import time
from datetime import datetime, timedelta

import time_machine

VARIABLE = "BENCHMARK_NOW"
SET_AT = "BENCHMARK_NOW_SET_AT"  # the wall-clock time (epoch seconds) it was that moment


def environment(now: datetime) -> dict[str, str]:
    """What makes processes started with it read ``now`` at this instant, ticking on from there."""
    return {VARIABLE: now.isoformat(), SET_AT: repr(time.time())}


def reading(env: dict[str, str]) -> datetime:
    """The moment the clock of processes started with ``env`` reads now, asked from outside them."""
    since = time.time() - float(env.get(SET_AT) or time.time())
    return datetime.fromisoformat(env[VARIABLE]) + timedelta(seconds=since)


def travel(now: datetime | None = None) -> None:
    """Move this process's clock to ``now`` (or $BENCHMARK_NOW) and keep it ticking."""
    if now is not None:
        os.environ.update(environment(now))
    if os.environ.get(VARIABLE):
        time_machine.travel(reading(os.environ), tick=True).start()


if __name__ == "__main__":
    travel()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", *sys.argv[1:]])
