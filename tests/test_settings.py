"""Settings come from the environment; production refuses to start half-configured."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from config.env import database_from_url, env

ROOT = Path(__file__).resolve().parent.parent


def start_django(**environment) -> subprocess.CompletedProcess:
    base = {
        k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"}
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("environment", "missing"),
    [
        ({"DEBUG": "0"}, "SECRET_KEY and ALLOWED_HOSTS"),
        ({"DEBUG": "0", "SECRET_KEY": "x" * 50}, "ALLOWED_HOSTS"),
        ({"DEBUG": "0", "ALLOWED_HOSTS": "clinic.example.org"}, "SECRET_KEY"),
        ({}, "SECRET_KEY and ALLOWED_HOSTS"),
    ],
)
def test_production_mode_refuses_to_start_without_secret_key_and_allowed_hosts(
    environment, missing
):
    result = start_django(**environment)
    assert result.returncode != 0
    assert f"Production mode (DEBUG=0) needs {missing}" in result.stderr


def test_production_mode_starts_when_configured(tmp_path):
    key_file = tmp_path / "secret"
    key_file.write_text("k" * 50 + "\n")
    result = start_django(
        DEBUG="0", SECRET_KEY_FILE=str(key_file), ALLOWED_HOSTS="clinic.example.org"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"


def test_secrets_can_come_from_a_file(tmp_path, monkeypatch):
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN_FILE", str(secret))
    assert env("TWILIO_AUTH_TOKEN") == "from-a-file"


def test_database_url_selects_postgresql():
    config = database_from_url("postgres://kap:p%40ss@db.example.org:5433/clinic?sslmode=require")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["NAME"], config["USER"], config["PASSWORD"]) == ("clinic", "kap", "p@ss")
    assert (config["HOST"], config["PORT"]) == ("db.example.org", "5433")
    assert config["OPTIONS"] == {"sslmode": "require", "options": "-c jit=off"}
    again = database_from_url("postgres://kap@db/clinic?options=-c%20statement_timeout%3D5000")
    assert again["OPTIONS"] == {"options": "-c jit=off -c statement_timeout=5000"}
    with pytest.raises(ImproperlyConfigured, match="must start with postgres://"):
        database_from_url("mysql://kap@localhost/clinic")


def test_times_are_stored_aware():
    assert settings.USE_TZ is True


@pytest.mark.django_db
def test_embedded_sqlite_runs_in_wal_mode_with_immediate_transactions():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 5000
    assert settings.DATABASES["default"]["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


@pytest.mark.django_db
def test_postgresql_connections_compile_no_query_just_in_time():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


def test_django_q_uses_the_orm_broker_unless_redis_is_configured():
    if settings.REDIS_URL:
        assert settings.Q_CLUSTER["redis"] == settings.REDIS_URL
    else:
        assert settings.Q_CLUSTER["orm"] == "default"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.Q_CLUSTER.get('redis'))",
        ],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "1", "REDIS_URL": "redis://127.0.0.1:6390/2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "redis://127.0.0.1:6390/2", result.stderr


@pytest.mark.parametrize(
    ("environment", "site_url"),
    [
        ({"DEMO_ADDRESS": "127.0.0.1:8123"}, "http://127.0.0.1:8123"),
        ({}, "http://127.0.0.1:8000"),
        ({"DEMO_ADDRESS": "0.0.0.0:9000", "SITE_URL": "https://demo.example.org"}, None),
    ],
)
def test_the_demos_links_open_where_the_demo_runs(monkeypatch, environment, site_url):
    import dev

    monkeypatch.delenv("SITE_URL", raising=False)
    monkeypatch.delenv("DEMO_ADDRESS", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    _, demo_env = dev.demo_environment()
    assert demo_env["SITE_URL"] == (site_url or environment["SITE_URL"])


def test_mail_and_text_folders_come_from_the_environment(tmp_path):
    mail, sms = tmp_path / "mail", tmp_path / "texts"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.EMAIL_FILE_PATH); print(settings.SMS_FILE_PATH)",
        ],
        cwd=ROOT,
        env={**os.environ, "EMAIL_FILE_PATH": str(mail), "SMS_FILE_PATH": str(sms)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == [str(mail), str(sms)], result.stderr


@pytest.mark.parametrize("address", ["127.0.0.1:8123", "localhost:8000"])
def test_the_demos_settings_pass_djangos_system_checks(monkeypatch, address):
    """``dev.py demo`` migrates first, and migrate refuses to run when a system check fails."""
    import dev

    monkeypatch.delenv("SITE_URL", raising=False)
    monkeypatch.setenv("DEMO_ADDRESS", address)
    _, demo_env = dev.demo_environment()
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=demo_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
