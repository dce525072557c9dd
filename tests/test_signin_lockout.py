"""The sign-in lockout: one count for the desk's sign-in and the admin's, shared by every process.

In-process tests drive the clock with time-machine; the last test runs the
production settings behind gunicorn with four workers on one SQLite file, as
the embedded default deploys.
"""

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import time_machine
from django.urls import reverse

from scheduler.models import AuditAction, AuditEvent
from tests.page_helpers import front_desk
from tests.servers import Site, free_port, wait_until_listening

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
LIMIT = 10  # settings.LOGIN_FAILURE_LIMIT
ADDRESS_LIMIT = 50  # settings.LOGIN_ADDRESS_FAILURE_LIMIT


@pytest.fixture
def user(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    assert (settings.LOGIN_FAILURE_LIMIT, settings.LOGIN_ADDRESS_FAILURE_LIMIT) == (
        LIMIT,
        ADDRESS_LIMIT,
    )
    staff = front_desk(password=PASSWORD)
    staff.is_staff = True  # may use the admin's login page too
    staff.save(update_fields=["is_staff"])
    return staff


def sign_in(client, username, password, address="192.0.2.10", page="login"):
    url = reverse("admin:login") if page == "admin" else reverse(page)
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def refused(response) -> bool:
    return response.status_code == 429 and "Too many failed sign-ins" in response.text


def test_ten_failures_lock_the_account_for_15_minutes_with_a_page_that_says_so(client, user):
    with time_machine.travel("2030-01-02 12:00:00Z", tick=False) as clock:
        for n in range(LIMIT - 1):
            # From different addresses: the account's own count locks it.
            assert sign_in(client, user.username, "wrong", f"192.0.2.{n}").status_code == 200
        locking = sign_in(client, user.username, "wrong", "192.0.2.200")
        assert refused(locking)
        response = sign_in(client, user.username, PASSWORD, "192.0.2.99")
        assert refused(response) and "_auth_user_id" not in client.session
        assert response["Retry-After"] == "900"
        assert "Try again in 15 minutes" in response.text
        assert response["Content-Type"].startswith("text/html")
        clock.shift(14 * 60)
        assert refused(sign_in(client, user.username, PASSWORD, "192.0.2.99"))
        # Tries while locked do not extend the lock: it ends 15 minutes after the last failure.
        clock.shift(61)
        assert sign_in(client, user.username, PASSWORD, "192.0.2.99").status_code == 302
        assert int(client.session["_auth_user_id"]) == user.pk


def test_nine_failures_then_the_right_password_signs_in(client, user):
    for _ in range(LIMIT - 1):
        sign_in(client, user.username, "wrong")
    assert sign_in(client, user.username, PASSWORD).status_code == 302


def test_failures_on_the_admin_login_lock_the_desk_sign_in_and_the_other_way_round(
    client, user, db
):
    other = front_desk(password=PASSWORD)
    other.is_staff = True
    other.save(update_fields=["is_staff"])
    for n in range(LIMIT):
        assert sign_in(client, user.username, "wrong", f"192.0.2.{n}", page="admin")
    assert refused(sign_in(client, user.username, PASSWORD, "192.0.2.99"))
    assert refused(sign_in(client, user.username, PASSWORD, "192.0.2.99", page="admin"))
    # Mixed: half on each page still counts as one.
    for n in range(LIMIT // 2):
        sign_in(client, other.username, "wrong", f"198.51.100.{n}", page="admin")
        sign_in(client, other.username, "wrong", f"198.51.100.{n}")
    assert refused(sign_in(client, other.username, PASSWORD, "198.51.100.99", page="admin"))


def test_one_office_address_is_locked_only_past_its_own_higher_limit(client, user, db):
    office = "203.0.113.7"  # a clinic behind NAT: every colleague signs in from here
    # Nine colleagues each mistype their password five times: 45 failures.
    for n in range(9):
        for _ in range(5):
            assert sign_in(client, f"colleague{n}", "typo", office).status_code == 200
    assert sign_in(client, user.username, PASSWORD, office).status_code == 302
    client.logout()
    # A guesser spreading tries over many accounts from one address is stopped.
    for n in range(ADDRESS_LIMIT - 45):
        sign_in(client, f"guess{n}", "wrong", office)
    assert refused(sign_in(client, user.username, PASSWORD, office))
    assert sign_in(client, user.username, PASSWORD, "203.0.113.8").status_code == 302


def test_the_lockout_ignores_the_case_and_spaces_of_the_username(client, user):
    for n in range(LIMIT):
        sign_in(client, f" {user.username.upper()} ", "wrong", f"192.0.2.{n}")
    assert refused(sign_in(client, user.username, PASSWORD, "192.0.2.99"))


def test_a_lockout_and_each_try_refused_by_it_are_in_the_audit_trail(client, user):
    for n in range(LIMIT):
        sign_in(client, user.username, "wrong", f"192.0.2.{n}")
    sign_in(client, user.username, PASSWORD, "192.0.2.99")
    events = list(
        AuditEvent.objects.filter(action=AuditAction.SIGN_IN_LOCKED).order_by("pk").values()
    )
    assert [(e["actor_label"], e["ip_address"]) for e in events] == [
        ("anonymous", "192.0.2.9"),
        ("anonymous", "192.0.2.99"),
    ]
    assert events[0]["detail"] == f"locked after 10 failed sign-ins; account '{user.username}'"
    assert events[1]["detail"] == f"sign-in refused while locked; account '{user.username}'"


# -- several processes ----------------------------------------------------------


def test_behind_gunicorn_with_four_workers_the_admin_login_locks_the_desk_sign_in(tmp_path):
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed (it is in the dev extra)")
    lockout_seconds = 6
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        # Production settings, no CACHE_URL: the counts can only be shared through the database.
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "VAR_DIR": str(tmp_path),
        "SQLITE_PATH": str(tmp_path / "site.sqlite3"),
        "LOGIN_LOCKOUT_SECONDS": str(lockout_seconds),
        "LOG_LEVEL": "ERROR",
    }
    env.pop("CACHE_URL", None)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    subprocess.run(
        [
            *manage,
            "shell",
            "-c",
            "from django.contrib.auth.models import User; "
            "User.objects.create_user('kim', password='x-long-pass-2030', is_staff=True)",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    port = free_port()
    server = subprocess.Popen(
        [str(gunicorn), "config.wsgi", "--workers=4", f"--bind=127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_listening(port, server)
        site = Site(port)
        statuses = [site.sign_in("/admin/login/", "kim", "wrong")[0] for _ in range(LIMIT)]
        assert statuses == [200] * (LIMIT - 1) + [429]
        # Every worker refuses the right password now, on either page.
        for path in ["/login/"] * 8 + ["/admin/login/"] * 4:
            status, text = site.sign_in(path, "kim", "x-long-pass-2030")
            assert (status, "Too many failed sign-ins" in text) == (429, True), path
        time.sleep(lockout_seconds + 0.5)
        assert site.sign_in("/login/", "kim", "x-long-pass-2030")[0] == 302
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
