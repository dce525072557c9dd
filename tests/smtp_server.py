"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for email tests."""

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone


@dataclass
class SmtpServer:
    received: list[EmailMessage] = field(default_factory=list)
    # When each message arrived (the test's clock, frozen or not).
    arrivals: list[datetime] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # addresses answered 550
    # Addresses answered 451 (try again later), and how many more times.
    defer: dict[str, int] = field(default_factory=dict)
    # Seconds each message takes to be accepted once its data is in: a slow
    # server, so that a sender can be caught (and killed) in the middle of a send.
    delay: float = 0.0

    def __post_init__(self):
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        with self.lock:
            if self.defer.get(address):
                self.defer[address] -= 1
                return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.received.append(message)
            self.arrivals.append(timezone.now())
        return "250 Message accepted for delivery"

    def start(self) -> "SmtpServer":
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # a line per SMTP command
        # aiosmtpd checks the server is up by connecting to the port it was
        # given, so it needs a real free port rather than 0.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=port)
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    def configure(self, settings_) -> None:
        settings_.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings_.EMAIL_HOST = "127.0.0.1"
        settings_.EMAIL_PORT = self.port
        settings_.EMAIL_USE_TLS = settings_.EMAIL_USE_SSL = False
        settings_.EMAIL_HOST_USER = settings_.EMAIL_HOST_PASSWORD = ""
        settings_.EMAIL_TIMEOUT = 5

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.arrivals.clear()
            self.refuse.clear()
            self.defer.clear()
            self.delay = 0.0

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.received if address in m["To"]]


@pytest.fixture(name="smtp_server", scope="session")
def smtp_server_fixture():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(name="smtp")
def smtp_fixture(smtp_server, settings):
    """The SMTP server, emptied, with Django's SMTP backend pointed at it."""
    smtp_server.reset()
    smtp_server.configure(settings)
    return smtp_server
