"""Production settings and headers: check --deploy is clean, CSP, HSTS, cookies, idle sessions."""

import json
import os
import re
import secrets
import string
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from tests.page_helpers import front_desk

ROOT = Path(__file__).resolve().parent.parent


def production_environment() -> dict[str, str]:
    """This process's environment as a production deployment sets it: DEBUG off, a real key."""
    key = "".join(
        secrets.choice(string.ascii_letters + string.digits + "!@#%^&*") for _ in range(50)
    )
    base = {
        k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"}
    }
    return {
        **base,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "0",
        "SECRET_KEY": key,
        "ALLOWED_HOSTS": "clinic.example.org",
    }


def production(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env=production_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_no_warnings_in_production_mode():
    result = production("manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_production_mode_redirects_to_https_and_sends_hsts_and_secure_cookies():
    script = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({n: getattr(s, n) for n in ('SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', "
        "'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
        "'SESSION_COOKIE_HTTPONLY', 'SECURE_REFERRER_POLICY', 'SESSION_REFRESH_SECONDS')}))"
    )
    result = production("-c", script)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SECURE_REFERRER_POLICY": "same-origin",
        "SESSION_REFRESH_SECONDS": 60,
    }


def test_with_production_values_plain_http_is_redirected_and_https_gets_hsts(db, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.CSRF_COOKIE_SECURE = True
    client = Client()  # a new client loads the middleware with these settings
    plain = client.get("/login/")
    assert plain.status_code == 301 and plain["Location"] == "https://testserver/login/"
    secure = client.get("/login/", secure=True)
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
    assert secure.cookies["csrftoken"]["secure"]


@pytest.mark.parametrize("path", ["/login/", "/admin/login/", "/desk/"])
def test_every_response_has_a_strict_content_security_policy(client, db, path):
    response = client.get(path)
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


INLINE = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=|javascript:", re.I)


def test_web_page_templates_have_no_inline_scripts_styles_or_handlers():
    """Email templates may style inline (mail clients need it); pages fall under the CSP."""
    pages = [
        path
        for path in (ROOT / "templates").rglob("*.html")
        if "email" not in path.relative_to(ROOT / "templates").parts
    ]
    assert pages
    offenders = [f"{p}: {m.group()}" for p in pages for m in INLINE.finditer(p.read_text())]
    assert offenders == []


def test_an_idle_staff_session_ends_and_an_active_one_does_not(clinic, settings):
    idle = settings.SESSION_COOKIE_AGE
    client = Client()
    with time_machine.travel("2030-01-02 12:00:00Z", tick=False) as clock:
        client.force_login(front_desk())
        for _ in range(3):  # active: each request restarts the idle time
            clock.shift(idle - 60)
            assert client.get(reverse("desk_patients")).status_code == 200
        clock.shift(idle + 1)
        response = client.get(reverse("desk_patients"))
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_busy_session_is_written_at_most_once_a_minute(clinic, settings):
    client = Client()
    with time_machine.travel("2030-01-02 12:00:00Z", tick=False) as clock:
        client.force_login(front_desk())
        session = Session.objects.get()
        writes = []
        for _ in range(12):  # a page every 10 seconds for two minutes
            clock.shift(10)
            assert client.get(reverse("desk_patients")).status_code == 200
            writes.append(Session.objects.get().expire_date)
        # Refreshed by the first page (10 s) and a minute later (70 s), no more.
        started = datetime(2030, 1, 2, 12, 0, tzinfo=UTC)
        assert sorted(set(writes) - {session.expire_date}) == [
            started + timedelta(seconds=seconds + settings.SESSION_COOKIE_AGE)
            for seconds in (10, 70)
        ]
