"""Races between threads, each with its own database connection, as separate processes would have."""

import threading
from collections.abc import Callable

from django.db import close_old_connections, connection


def race(callables: list[Callable[[], object]]) -> list:
    """Run ``callables`` at once (released together by a barrier); what each returned or raised."""
    barrier = threading.Barrier(len(callables))
    outcomes: list = [None] * len(callables)

    def runner(index: int, fn: Callable[[], object]) -> None:
        try:
            barrier.wait()
            outcomes[index] = fn()
        except Exception as error:  # the outcome under test, kept for assertions
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i, fn)) for i, fn in enumerate(callables)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    close_old_connections()
    return outcomes
