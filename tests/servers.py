"""Real servers on loopback for tests: an HTTP server for .ics files and an SMTP server.

They are the other side of the wire (fake the service, not our own
functions): the code under test speaks real HTTP through urllib and real SMTP
through Django's SMTP backend.
"""

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
