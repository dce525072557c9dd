"""What the logs say: routine refusals in one line, and never a live token URL.

A token URL (/p/<token>/, /calendars/<token>.ics) is the credential itself, so
Django's logs, runserver's and gunicorn's access and error logs all redact it
(config/logs.py, config/gunicorn.py).
"""

import contextlib
import http.client
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection, transaction
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from config.logs import RedactTokens, redact_tokens
from notifications.patient_links import issue_patient_link
from scheduler import tokens
from scheduler.models import AuditEvent, Visit
from tests.conftest import MONDAY, SmallClinic, at
from tests.page_helpers import sign_in_verified
from tests.servers import free_port, wait_until_listening
from tests.test_deployment import production, production_environment

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "Zx9_live-TOKEN-0123456789abcdefghijklmnopq"  # token_urlsafe(32)'s shape


def test_a_refused_page_is_one_line_in_the_log_without_a_traceback(db, caplog):
    clinic = SmallClinic()
    client = Client()
    sign_in_verified(client, clinic.therapist.user)  # a clinician on a desk page: 403
    with caplog.at_level(logging.INFO):
        response = client.get("/desk/")
    assert response.status_code == 403
    refusals = [r for r in caplog.records if r.name == "django.request"]
    assert len(refusals) == 1
    (record,) = refusals
    assert record.getMessage() == "Forbidden (Permission denied): /desk/"
    assert record.exc_info is None
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    ("logged", "kept"),
    [
        (f"Not Found: /p/{TOKEN}/nope", "Not Found: /p/[token]/nope"),
        (f"Not Found: /p/{TOKEN}x.html", "Not Found: /p/[token]"),
        (f"/p/{TOKEN}/visits/12.ics", "/p/[token]/visits/12.ics"),
        (f"Method Not Allowed (POST): /calendars/{TOKEN}.ics", "(POST): /calendars/[token].ics"),
        (f"/calendars/{TOKEN}", "/calendars/[token]"),
        (f"/calendars/{TOKEN}.ics/extra", "/calendars/[token].ics/extra"),
        (f'"GET /p/{TOKEN}/?x=1 HTTP/1.1" 429 0 "-"', '"GET /p/[token]/?x=1 HTTP/1.1" 429'),
        (f'"https://clinic.example.org/p/{TOKEN}"', '"https://clinic.example.org/p/[token]"'),
        (
            f"Referer checking failed - https://else.example.com/p/{TOKEN}/ does not match",
            "failed - https://else.example.com/p/[token]/ does not",
        ),
        (f"/login/?next=%2Fp%2F{TOKEN}%2F", "/login/?next=%2Fp%2F[token]%2F"),
        (f"/P/{TOKEN}/", "/P/[token]/"),
        ("/calendars/mine/?week=2030-06-03", "/calendars/mine/?week=2030-06-03"),
        ("Not Found: /p/", "Not Found: /p/"),
        ("/desk/patients/12/", "/desk/patients/12/"),
    ],
)
def test_token_urls_are_redacted_wherever_they_stand_in_a_line(logged, kept):
    redacted = redact_tokens(logged)
    assert kept in redacted
    assert TOKEN not in redacted and TOKEN[:16] not in redacted


def test_a_500s_record_leaves_the_filter_with_message_traceback_and_request_redacted():
    """What Django's log_response hands the handlers: path in the args, request in extra."""
    request = RequestFactory().get(f"/p/{TOKEN}/", HTTP_REFERER=f"https://x.example/p/{TOKEN}/")
    try:
        raise RuntimeError(f"could not draw /p/{TOKEN}/")
    except RuntimeError:
        record = logging.getLogger("django.request").makeRecord(
            "django.request",
            logging.ERROR,
            __file__,
            1,
            "Internal Server Error: %s",
            (request.path,),
            sys.exc_info(),
            extra={"status_code": 500, "request": request},
        )
    assert RedactTokens().filter(record)
    line = logging.Formatter("%(message)s").format(record)
    assert line.startswith("Internal Server Error: /p/[token]/\nTraceback")
    assert "RuntimeError: could not draw /p/[token]/" in line
    assert TOKEN not in line and TOKEN not in repr(record.__dict__)
    assert record.request.path == record.request.path_info == "/p/[token]/"
    assert record.request.META["HTTP_REFERER"] == "https://x.example/p/[token]/"
    assert TOKEN not in record.request.build_absolute_uri()
    # The request still being answered keeps its real path.
    assert request.path == f"/p/{TOKEN}/" and TOKEN in request.META["PATH_INFO"]


def token_urls() -> list[str]:
    """Every URL of the project with a token in it, reversed with TOKEN (other parameters: 1)."""
    found = []

    def walk(patterns, namespace, converters):
        for pattern in patterns:
            inner = {**converters, **pattern.pattern.converters}
            if isinstance(pattern, URLResolver):
                space = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, space, inner)
            elif isinstance(pattern, URLPattern) and "token" in inner and pattern.name:
                kwargs = {name: TOKEN if name == "token" else 1 for name in inner}
                found.append(reverse(namespace + pattern.name, kwargs=kwargs))

    walk(get_resolver().url_patterns, "", {})
    return found


def test_every_url_with_a_token_is_one_the_redaction_knows():
    urls = token_urls()
    assert len(urls) >= 3  # the patient page, its visit's .ics, the feed
    assert [url for url in urls if TOKEN in redact_tokens(url)] == []


def test_every_log_handler_in_production_redacts_token_urls():
    """Whatever logger a record goes to, any handler that writes it has the filter."""
    script = (
        "import json, logging; from config.wsgi import application; "
        "from config.logs import RedactTokens; "
        "loggers = [logging.getLogger()] + [l for l in logging.Logger.manager.loggerDict.values()"
        " if isinstance(l, logging.Logger)]; "
        "print(json.dumps([[l.name, repr(h)] for l in loggers for h in l.handlers"
        " if not isinstance(h, logging.NullHandler)"
        " and not any(isinstance(f, RedactTokens) for f in h.filters)]))"
    )
    result = production("-c", script)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# -- the server as production runs it ------------------------------------------


def _request(port: int, method: str, path: str, headers=None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            method,
            path,
            body=b"" if method == "POST" else None,
            # Behind the TLS proxy, on the production host name.
            headers={"Host": "clinic.example.org", "X-Forwarded-Proto": "https", **(headers or {})},
        )
        return conn.getresponse().status
    finally:
        conn.close()


def _server_database() -> dict[str, str]:
    """This test run's database for the server, with writes that give up after a second."""
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        return {"SQLITE_PATH": str(name), "SQLITE_BUSY_TIMEOUT": "1"}
    url = os.environ["DATABASE_URL"].split("?")[0].rsplit("/", 1)[0]
    return {"DATABASE_URL": f"{url}/{name}?options={quote('-c lock_timeout=1000')}"}


@contextlib.contextmanager
def writes_held_up():
    """Another writer holds the audit table: the page's write fails, an honest 500."""
    with transaction.atomic():  # on SQLite, BEGIN IMMEDIATE: the write lock
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                table = connection.ops.quote_name(AuditEvent._meta.db_table)
                cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield


@pytest.mark.django_db(transaction=True)
def test_no_live_token_reaches_any_log_of_the_production_server(tmp_path):
    clinic = SmallClinic()
    avery = clinic.patient("Avery", "Applewood")
    Visit.objects.create(
        patient=avery,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
        end=at(MONDAY, "10:50"),
    )
    link = issue_patient_link(avery).rsplit("/", 2)[-2]
    _, feed = tokens.issue(clinic.therapist)
    logs = {name: tmp_path / f"{name}.log" for name in ("access", "error", "stdout", "stderr")}
    port = free_port()
    environment = {
        **production_environment(),
        **_server_database(),
        "TOKEN_RATE_LIMIT": "6",
        "LOG_LEVEL": "INFO",
    }
    with logs["stdout"].open("w") as out, logs["stderr"].open("w") as err:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "-c",
                "config/gunicorn.py",
                "config.wsgi",
                "--workers=1",  # one process: the rate limit counts in its memory
                f"--bind=127.0.0.1:{port}",
                f"--access-logfile={logs['access']}",
                f"--error-logfile={logs['error']}",
            ],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        wait_until_listening(port, server, 30, log=logs["stderr"])

        page, ics = f"/p/{link}/", f"/calendars/{feed}.ics"
        same_site = {"Referer": f"https://clinic.example.org{page}"}
        other_site = {"Referer": f"https://elsewhere.example.com{page}"}
        statuses = {
            "page": _request(port, "GET", page),
            "feed": _request(port, "GET", ics),
            "no slash": _request(port, "GET", page.rstrip("/")),
            "unknown path": _request(port, "GET", f"{page}nope"),
            "feed with more": _request(port, "GET", f"{ics}/more"),
            "no such visit": _request(port, "GET", f"{page}visits/999999.ics"),
            # A calendar app probing with OPTIONS (POST would meet CSRF first: 403).
            "feed by OPTIONS": _request(port, "OPTIONS", ics),
            "post without CSRF cookie": _request(port, "POST", page, same_site),
            "post from another site": _request(port, "POST", page, other_site),
        }
        with writes_held_up():
            statuses["database busy"] = _request(port, "GET", page)
        for _ in range(10):
            statuses["too many"] = _request(port, "GET", page, same_site)
            if statuses["too many"] == 429:
                break
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    assert statuses == {
        "page": 200,
        "feed": 200,
        "no slash": 301,
        "unknown path": 404,
        "feed with more": 404,
        "no such visit": 404,
        "feed by OPTIONS": 405,
        "post without CSRF cookie": 403,
        "post from another site": 403,
        "database busy": 500,
        "too many": 429,
    }
    text = {name: path.read_text() for name, path in logs.items()}
    for name, content in text.items():
        for live in (link, feed):
            assert live not in content, f"a live token in the {name} log"
            assert live[:16] not in content, f"part of a live token in the {name} log"
    # Every request is in the access log, its path (and referer) redacted ...
    access = text["access"].splitlines()
    assert len(access) >= len(statuses)
    assert sum("/p/[token]/" in line for line in access) >= 8
    assert any('"GET /calendars/[token].ics HTTP/1.1" 200' in line for line in access)
    assert any("https://elsewhere.example.com/p/[token]/" in line for line in access)
    # ... and Django logged each refusal and the error, redacted.
    django_log = text["stderr"]
    for line in [
        "Not Found: /p/[token]/nope",
        "Not Found: /calendars/[token].ics/more",
        "Not Found: /p/[token]/visits/999999.ics",
        "Method Not Allowed (OPTIONS): /calendars/[token].ics",
        "Forbidden (CSRF cookie not set.): /p/[token]/",
        "Forbidden (Referer checking failed - https://elsewhere.example.com/p/[token]/ "
        "does not match any trusted origins.): /p/[token]/",
        "Internal Server Error: /p/[token]/",
        "Too Many Requests: /p/[token]/",
    ]:
        assert line in django_log
    assert "Traceback" in django_log  # the 500's, rendered and redacted
