"""``python -m benchmarks [--network] [--quick]``: build the dataset, measure, print, write JSON.

``--network`` builds ten clinics (1,000,000 visits) and measures what a network
asks: plans at each clinic in turn, 50 desks over the clinics asking for their
day, dispatch by 1, 2 and 4 qcluster processes on Redis (PostgreSQL only).

Runs against a database of its own: a fresh SQLite file, or - when
DATABASE_URL names a PostgreSQL server - a fresh database beside the named one
(Django's test-database machinery; dropped afterwards unless --keep).
"""

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-only-secret-key-not-for-production-0123456789abcdef"
SECTIONS = ("plans", "feed", "pages", "load", "dispatch", "fhir")
NETWORK_SECTIONS = ("plans", "pages", "load", "dispatch")


def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="1/20 of the full scale (about a minute)"
    )
    parser.add_argument(
        "--network",
        action="store_true",
        help="10 clinics, 1,000 clinicians, 50,000 patients, 1,000,000 visits (PostgreSQL)",
    )
    parser.add_argument(
        "--divide", type=int, default=None, help="scale divisor (20 with --quick, 1 without)"
    )
    parser.add_argument("--seed", type=int, default=20310106)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=None,
        help=f"sections to run (all; with --network: {' '.join(NETWORK_SECTIONS)})",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the results (default: benchmarks.json in VAR_DIR, var/ unless set)",
    )
    parser.add_argument("--load-seconds", type=float, default=None, help="per page under load")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    options = parser.parse_args(argv)
    if options.divide is None:
        options.divide = 20 if options.quick else 1
    if options.only is None:
        options.only = list(NETWORK_SECTIONS if options.network else SECTIONS)
    return options


def configure_environment() -> None:
    """Production settings (templates without debug, no query log), fixed secret, raised caps."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DEBUG"] = "0"
    os.environ["SECRET_KEY"] = SECRET
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,testserver"
    # The dispatch benchmark measures sending: every due text should go.
    os.environ["SMS_DAILY_CAP"] = os.environ["SMS_WEEKLY_CAP"] = "100000"
    # One address asks for the feed hundreds of times here; no guesser to slow down.
    os.environ["TOKEN_RATE_LIMIT"] = "1000000000"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("SITE_URL", "https://clinic.example.com")


def database_environment() -> dict[str, str]:
    """How child processes (gunicorn, dispatch workers) reach the benchmark database."""
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"SQLITE_PATH": str(settings_dict["NAME"])}
    url = os.environ["DATABASE_URL"]
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + settings_dict["NAME"]
    return {"DATABASE_URL": base + (f"?{query}" if query else "")}


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""


def main(argv=None) -> int:
    options = arguments(argv)
    configure_environment()
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from benchmarks import clock, dataset, dispatch, feeds, fhir, pages, plans
    from benchmarks.measure import Report

    started = time.monotonic()
    begun = datetime.now(UTC)  # the wall clock's: the clock moves to the data's "now" below
    if options.network and connection.vendor != "postgresql":
        print("--network needs PostgreSQL (DATABASE_URL)", file=sys.stderr)
        return 2
    whole = dataset.NETWORK if options.network else dataset.FULL
    scale = whole.divided(options.divide) if options.divide > 1 else whole
    full = options.divide == 1
    runs = 21 if full else 7
    load_seconds = options.load_seconds or (15 if full else 3)
    creation = connection.creation
    print(f"Creating the benchmark database ({connection.vendor}) ...", flush=True)
    original_name = connection.settings_dict["NAME"]
    # A name of its own: the test suite's smoke test runs this beside its own test database.
    connection.settings_dict["TEST"]["NAME"] = (
        str(settings.VAR_DIR / f"benchmarks-{os.getpid()}.sqlite3")
        if connection.vendor == "sqlite"
        else f"benchmarks_{os.getpid()}"
    )
    creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    report = Report()
    try:
        print(f"Building the dataset ({scale}) ...", flush=True)
        data = dataset.build(scale, options.seed)
        clock.travel(data.now)
        # As config/wsgi.py does once the application is loaded: what this
        # process holds now stays, and full collections need not walk it.
        gc.collect()
        gc.freeze()
        child_env = {
            **{k: v for k, v in os.environ.items()},
            **database_environment(),
            clock.VARIABLE: data.now.isoformat(),
        }
        report.meta = {
            "when": begun.isoformat(timespec="seconds"),
            "commit": git_commit(),
            "scale": scale.__dict__,
            "divide": options.divide,
            "seed": options.seed,
            "database": f"{connection.vendor} {connection.Database.__name__}",
            "database version": ".".join(map(str, connection.Database.sqlite_version_info))
            if connection.vendor == "sqlite"
            else str(connection.pg_version),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "dataset": data.counts,
            "dataset seconds": round(data.seconds, 1),
            "dataset fingerprint": data.fingerprint,
            "now": data.now.isoformat(),
        }
        print(
            f"Dataset: {', '.join(f'{v:,} {k}' for k, v in data.counts.items())} "
            f"in {data.seconds:.1f} s (fingerprint {data.fingerprint})",
            flush=True,
        )
        if "plans" in options.only:
            plans.run(data, report, runs)
        if "feed" in options.only:
            feeds.run(data, report, max(runs // 2, 5))
        paths = None
        if "pages" in options.only or ("load" in options.only and not options.network):
            paths = pages.run(data, report, max(runs // 2, 5))
        if "load" in options.only and options.network:
            pages.network_load(
                data, report, seconds=load_seconds, database_env=database_environment()
            )
        elif "load" in options.only:
            pages.load(
                data, report, paths, seconds=load_seconds, database_env=database_environment()
            )
        texts = max(10_000 // options.divide, 20)
        if "dispatch" in options.only and options.network:
            dispatch.run_on_redis(data, report, texts, child_env)
        elif "dispatch" in options.only:
            dispatch.run(data, report, texts, child_env)
        if "fhir" in options.only:
            fhir.run(data, report, runs)
    finally:
        if not options.keep:
            creation.destroy_test_db(original_name, verbosity=0)
    report.meta["total seconds"] = round(time.monotonic() - started, 1)
    options.json = options.json or settings.VAR_DIR / "benchmarks.json"
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(report.as_dict(), indent=2, default=str))
    missed = report.missed
    print(
        f"\n{len(report.figures)} figures in {report.meta['total seconds']} s; "
        f"{len(missed)} target(s) missed; JSON in {options.json}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
