"""The benchmark's "now": the dataset's fixed afternoon, in this process and its children.

The data hangs off fixed dates (the same seed gives the same rows), so every
process that reads it - this one, gunicorn's workers, dispatch workers -
moves its clock there, and lets it tick.
"""

import os
from datetime import datetime

import time_machine

VARIABLE = "BENCHMARK_NOW"


def travel(now: datetime | None = None) -> None:
    """Move this process's clock to ``now`` (or $BENCHMARK_NOW) and keep it ticking."""
    if now is not None:
        os.environ[VARIABLE] = now.isoformat()
    moment = os.environ.get(VARIABLE)
    if moment:
        time_machine.travel(datetime.fromisoformat(moment), tick=True).start()
