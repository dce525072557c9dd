"""gunicorn's entry point for the load test: the project's WSGI app at the benchmark's "now"."""

from benchmarks import clock

clock.travel()

from config.wsgi import application  # noqa: E402

__all__ = ["application"]
