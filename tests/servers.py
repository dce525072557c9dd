"""Real servers on loopback for tests: an HTTP server for .ics files, an SMTP server, Redis.

They are the other side of the wire (fake the service, not our own
functions): the code under test speaks real HTTP through urllib, real SMTP
through Django's SMTP backend and real Redis through redis-py. ``Site`` is the
client side: our own site served by a real server (gunicorn), asked over HTTP.
"""

import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest
from aiosmtpd.controller import Controller


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    etag: str = ""
    delay: float = 0.0  # seconds before answering
    declare_length: bool = True  # False: no Content-Length, the body ends when the connection does
    location: str = ""  # with a 3xx status: where to


@dataclass
class IcsServer:
    """Serves ``routes`` by path and records each request's path and headers."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def start(self) -> "IcsServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.delay:
                    time.sleep(route.delay)
                if route.etag and self.headers.get("If-None-Match") == route.etag:
                    self.send_response(304)
                    self.send_header("ETag", route.etag)
                    self.end_headers()
                    return
                self.send_response(route.status)
                if route.location:
                    self.send_header("Location", route.location)
                self.send_header("Content-Type", "text/calendar; charset=utf-8")
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.declare_length:
                    self.send_header("Content-Length", str(len(route.body)))
                else:
                    self.close_connection = True
                self.end_headers()
                # The client may give up (size or time limit): that is what the test wants.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(route.body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Listener:
    """A TCP port that is open but does not speak HTTP.

    Without a ``greeting`` it never accepts, and ``connected`` tells whether
    anyone connected: the kernel completes a connection into the backlog
    without ``accept()``, so a client that connected leaves one there. With a
    ``greeting``, a thread accepts and sends it to whoever connects, as a
    service that is not HTTP would (an SSH banner, say).
    """

    def __init__(self, host: str = "127.0.0.1", greeting: bytes = b""):
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.greeting = greeting
        if greeting:
            threading.Thread(target=self._greet, daemon=True).start()

    def _greet(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                with conn, contextlib.suppress(OSError):
                    conn.sendall(self.greeting)

    def url(self, path: str = "/cal.ics", scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def connected(self) -> bool:
        self.sock.setblocking(False)
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the greeting thread's accept()
        self.sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, server, seconds: float = 60, *, log=None) -> None:
    """Return once a server process (a ``subprocess.Popen``) accepts connections on ``port``.

    Fails if it exits first, showing ``log`` (a path to its stderr) when given.
    """
    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, (
            log.read_text() if log else f"the server exited with {server.returncode}"
        )
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)


class Site:
    """Our site as the TLS proxy passes it on: plain HTTP with X-Forwarded-Proto, for
    production settings behind a server on ``port``.

    Keeps the cookies it is given (CSRF token, session) as a browser does and
    sends the CSRF token with every form; a new connection each request, so
    the requests go to whichever of the server's workers accepts.
    """

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    @property
    def csrf(self) -> str:
        return self.cookies.get("csrftoken", "")

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, str]:
        """The answer's status and text."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        origin = f"https://127.0.0.1:{self.port}"
        headers = {"X-Forwarded-Proto": "https", "Origin": origin, "Referer": origin + "/"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode({**form, "csrfmiddlewaretoken": self.csrf})
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
        finally:
            connection.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            self.cookies.update({name: m.value for name, m in SimpleCookie(header).items()})
        return response.status, text

    def sign_in(self, path: str, username: str, password: str) -> tuple[int, str]:
        if not self.csrf:
            self.request("GET", "/login/")
        return self.request("POST", path, {"username": username, "password": password})


def in_ci() -> bool:
    """Whether this run is CI's (.ci/run sets CI, as CI services do): what a developer's
    machine may lack, CI must have."""
    return bool(os.environ.get("CI"))


@pytest.fixture
def redis_server(tmp_path) -> Iterator[str]:
    """A Redis server of the test's own on loopback, without persistence: its URL.

    Debian's ``redis-server`` (.ci/run installs it): skipped where it is not
    installed, but under CI its absence is a failure.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        missing = "redis-server is not installed (apt-get install redis-server)"
        if in_ci():
            pytest.fail(f"{missing}: CI runs the scale-out test")
        pytest.skip(missing)
    with running_redis(binary, Path(tmp_path)) as url:
        yield url


@contextlib.contextmanager
def running_redis(binary: str, directory: Path) -> Iterator[str]:
    """``binary`` (a redis-server) on a free loopback port, keeping nothing, its log in
    ``directory``: its URL while it runs."""
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", "--dir", str(directory)]  # nothing kept
    log = directory / "redis.log"
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_listening(port, server, 30, log=log)
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        return [
            message_from_bytes(envelope.original_content, policy=policy.default)
            for envelope in self.envelopes
        ]


class SmtpServer:
    def __init__(self):
        self.mailbox = Mailbox()
        self.port = free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    def start(self) -> "SmtpServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
