#!/usr/bin/env python3
"""The project's two commands, for a fresh machine with nothing but Python 3.11+.

    python3 dev.py demo   # set up, seed the demo clinic, run web + worker
    python3 dev.py test   # set up, run the whole test suite (arguments go to pytest)

and, not part of the quickstart:

    python3 dev.py bench --quick   # set up, run the benchmarks (arguments go to them)

Both create ``.venv`` beside this file on first use and reinstall only when
``pyproject.toml`` changes.
"""

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
EXTRAS = "dev,postgres,redis"


def run(*args, **kwargs) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, **kwargs)


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script must run to say so
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        print("Creating the virtual environment in .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode()).hexdigest()
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print("Installing dependencies ...", flush=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", f".[{EXTRAS}]")
    stamp.write_text(wanted)


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The demo and the tests are development: fixed secret, local hosts only.
    env.setdefault("DEBUG", "1")
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env.update(extra)
    return env


def demo_environment() -> tuple[str, dict[str, str]]:
    """Where the demo serves, and its environment: printed and mailed links open there."""
    address = os.environ.get("DEMO_ADDRESS", "127.0.0.1:8000")
    return address, environment(
        SITE_URL=os.environ.get("SITE_URL") or f"http://{address}",
        # The demo therapist's own calendar is served by the demo itself, on
        # loopback, which the server refuses to read unless told otherwise.
        EXTERNAL_CALENDAR_ALLOWED_NETWORKS=os.environ.get("EXTERNAL_CALENDAR_ALLOWED_NETWORKS")
        or "127.0.0.0/8,::1/128",
    )


def demo() -> None:
    address, env = demo_environment()
    manage = [PYTHON, "manage.py"]
    run(*manage, "migrate", "--no-input", env=env)
    run(*manage, "seed_demo", env=env)
    worker = subprocess.Popen([str(a) for a in [*manage, "qcluster"]], cwd=ROOT, env=env)
    print(
        f"\nThe demo clinic is at http://{address}/ (worker pid {worker.pid}). Ctrl-C stops both.\n"
    )
    try:
        run(*manage, "runserver", address, env=env)
    except (KeyboardInterrupt, subprocess.CalledProcessError):
        pass
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()


def test(args: list[str]) -> int:
    return subprocess.run(
        [str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=environment()
    ).returncode


def bench(args: list[str]) -> int:
    return subprocess.run(
        [str(PYTHON), "-m", "benchmarks", *args], cwd=ROOT, env=environment()
    ).returncode


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"demo", "test", "bench"}:
        print(__doc__)
        return 2
    ensure_environment()
    # Texts in the patients' languages need the compiled catalogues (generated, not committed).
    from config.catalogues import compile_catalogues

    compile_catalogues()
    if sys.argv[1] == "demo":
        demo()
        return 0
    if sys.argv[1] == "bench":
        return bench(sys.argv[2:])
    return test(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
