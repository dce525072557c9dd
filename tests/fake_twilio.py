"""A Twilio-compatible HTTP server on loopback: the other side of the wire for SMS tests.

The project's real Twilio transport (the twilio SDK, through TWILIO_API_BASE)
talks to it over HTTP. It answers the Messages resource as Twilio does
(HTTP Basic auth with the account SID and auth token, form-encoded requests,
JSON answers with "SM..." SIDs, Twilio's error bodies), records every request,
fails on demand (429, 500, a timeout, error codes such as 21211 and 21610), and
plays Twilio's part in webhooks: it signs status callbacks and inbound texts
with the auth token exactly as Twilio does (X-Twilio-Signature) and posts them
to the live server over HTTP or through Django's test client.
"""

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit
from urllib.request import Request, urlopen

import pytest
from django.conf import settings
from django.utils import timezone
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
FROM_NUMBER = "+15005550006"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


@dataclass
class Failure:
    """What the next create request gets instead of success."""

    status: int = 500
    code: int | None = None
    message: str = "Internal Server Error"
    delay: float = (
        0.0  # seconds to wait before answering (longer than the client's timeout = a timeout)
    )
    create: bool = False  # create the message anyway (Twilio took it, the answer got lost)


@dataclass
class FakeTwilio:
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    messages: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    # Numbers that always fail the way Twilio fails them.
    invalid_numbers: set[str] = field(default_factory=set)  # 21211
    opted_out_numbers: set[str] = field(default_factory=set)  # 21610
    down: bool = False  # an outage: every create gets 503 until it is over
    # Seconds each create takes before Twilio has the message (a busy API, a slow
    # network): a client that dies meanwhile leaves it created, never told.
    latency: float = 0.0

    def __post_init__(self):
        self.lock = threading.Lock()

    # -- the server ----------------------------------------------------------------

    def start(self, port: int = 0) -> "FakeTwilio":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go in two writes; with Nagle's algorithm the
            # second waits for the client's delayed ACK (~40 ms a request).
            disable_nagle_algorithm = True

            def do_POST(self):
                fake._handle(self, "POST")

            def do_GET(self):
                fake._handle(self, "GET")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.requests.clear()
            self.failures.clear()
            self.invalid_numbers.clear()
            self.opted_out_numbers.clear()
            self.down = False
            self.latency = 0.0

    def configure(self, settings_, *, messaging_service: str = "") -> None:
        """Point the project's Twilio transport (pytest-django ``settings``) at this server."""
        settings_.SMS_BACKEND = "twilio"
        settings_.TWILIO_API_BASE = self.url
        settings_.TWILIO_ACCOUNT_SID = self.account_sid
        settings_.TWILIO_AUTH_TOKEN = self.auth_token
        settings_.TWILIO_FROM_NUMBER = "" if messaging_service else FROM_NUMBER
        settings_.TWILIO_MESSAGING_SERVICE_SID = messaging_service

    def fail_next(self, *failures: Failure) -> None:
        with self.lock:
            self.failures.extend(failures)

    def _authorised(self, handler) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return handler.headers.get("Authorization") == f"Basic {expected}"

    def _handle(self, handler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        parts = urlsplit(handler.path)
        params = dict(parse_qsl(raw if method == "POST" else parts.query))
        with self.lock:
            self.requests.append({"method": method, "path": parts.path, "params": params})
        if parts.path != MESSAGES_PATH:
            return self._reply(
                handler, 404, _error(20404, "The requested resource was not found", 404)
            )
        if not self._authorised(handler):
            return self._reply(handler, 401, _error(20003, "Authenticate", 401))
        if method == "GET":
            return self._list(handler, params)
        return self._create(handler, params)

    def _list(self, handler, params: dict) -> None:
        size = int(params.get("PageSize", 50))
        with self.lock:
            found = [m for m in reversed(self.messages) if m["to"] == params.get("To", m["to"])]
        self._reply(
            handler,
            200,
            {
                "messages": found[:size],
                "end": max(len(found[:size]) - 1, 0),
                "first_page_uri": MESSAGES_PATH + "?PageSize=" + str(size) + "&Page=0",
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": MESSAGES_PATH,
            },
        )

    def _create(self, handler, params: dict) -> None:
        if self.latency:
            time.sleep(self.latency)
        with self.lock:
            failure = self.failures.pop(0) if self.failures else None
        if self.down:
            failure = Failure(503, 503, "Service Unavailable")
        to = params.get("To", "")
        if failure is None:
            if not to or not (params.get("From") or params.get("MessagingServiceSid")):
                failure = Failure(400, 21604, "A 'To' phone number and a sender are required.")
            elif to in self.invalid_numbers:
                failure = Failure(400, 21211, f"The 'To' number {to} is not a valid phone number.")
            elif to in self.opted_out_numbers:
                failure = Failure(400, 21610, "Attempt to send to unsubscribed recipient")
        if failure is not None and failure.create:
            self._record(params)
        if failure is not None:
            if failure.delay:
                time.sleep(failure.delay)
            return self._reply(
                handler,
                failure.status,
                _error(failure.code or failure.status, failure.message, failure.status),
            )
        self._reply(handler, 201, self._record(params))

    def _record(self, params: dict) -> dict:
        now = format_datetime(timezone.now())
        sid = "SM" + uuid.uuid4().hex
        service = params.get("MessagingServiceSid")
        message = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": params.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": params.get("From") or None,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(max(1, -(-len(params.get("Body", "")) // 153))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # A Messaging Service first "accepts", then picks a number and queues.
            "status": "accepted" if service else "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": params.get("To"),
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            # Not part of Twilio's answer: where it will post delivery reports.
            "_status_callback": params.get("StatusCallback", ""),
        }
        with self.lock:
            self.messages.append(message)
        return {k: v for k, v in message.items() if not k.startswith("_")}

    @staticmethod
    def _reply(handler, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and hung up: the point of a delay

    # -- Twilio's side of the webhooks ---------------------------------------------

    def sign(self, url: str, params: dict) -> str:
        return RequestValidator(self.auth_token).compute_signature(url, params)

    def post_signed(self, url: str, params: dict, *, client=None, signature: str | None = None):
        """POST ``params`` to ``url`` signed as Twilio signs it; returns (status, body text).

        With a Django test ``client`` the request goes through it (same URL
        path and query, the signature computed over the public ``url``);
        without one it goes over HTTP to the live server at ``url``.
        """
        signature = self.sign(url, params) if signature is None else signature
        if client is not None:
            parts = urlsplit(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            response = client.post(target, params, HTTP_X_TWILIO_SIGNATURE=signature)
            return response.status_code, response.content.decode()
        request = Request(
            url,
            data=urlencode(params).encode(),
            headers={
                "X-Twilio-Signature": signature,
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "TwilioProxy/1.1",
            },
            method="POST",
        )
        try:
            with urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except OSError as error:  # HTTPError is one; its code is the answer
            return getattr(error, "code", 0), ""

    def callback(self, message: dict, status: str, *, error_code: str = "", client=None) -> int:
        """Send the delivery report Twilio would send for ``message`` moving to ``status``."""
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "MessageSid": message["sid"],
            "SmsSid": message["sid"],
            "MessageStatus": status,
            "SmsStatus": status,
            "To": message["to"],
            "From": message["from"] or FROM_NUMBER,
        }
        if error_code:
            params["ErrorCode"] = error_code
        with self.lock:
            message["status"] = status
        return self.post_signed(message["_status_callback"], params, client=client)[0]

    def deliver_all(self, *, client=None, statuses=("sent", "delivered")) -> list[int]:
        """Report every message not yet delivered as going through ``statuses``."""
        with self.lock:
            waiting = [
                m
                for m in self.messages
                if m["status"] not in ("delivered", "undelivered", "failed")
            ]
        return [self.callback(m, status, client=client) for m in waiting for status in statuses]

    def text_from(
        self, from_number: str, body: str, *, client=None, to: str = FROM_NUMBER, sid: str = ""
    ):
        """A patient's text arriving at our number: Twilio's inbound webhook. Returns (status, TwiML)."""
        sid = sid or "SM" + uuid.uuid4().hex
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "From": from_number,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
        }
        return self.post_signed(
            f"{settings.SITE_URL}/webhooks/twilio/inbound", params, client=client
        )

    def sent_to(self, number: str) -> list[dict]:
        with self.lock:
            return [m for m in self.messages if m["to"] == number]

    def creates(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["method"] == "POST"]


def _error(code: int, message: str, status: int) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@pytest.fixture(name="twilio_server", scope="session")
def twilio_server_fixture():
    server = FakeTwilio().start()
    yield server
    server.stop()


@pytest.fixture(name="twilio")
def twilio_fixture(twilio_server, settings):
    """The fake Twilio, emptied, with the project's SMS transport pointed at it."""
    twilio_server.reset()
    twilio_server.configure(settings)
    settings.TWILIO_TIMEOUT = 2
    yield twilio_server
    twilio_server.reset()


if __name__ == "__main__":
    # For rehearsals by hand: python -m tests.fake_twilio [port]
    import sys

    fake = FakeTwilio().start(int(sys.argv[1]) if len(sys.argv) > 1 else 8099)
    print(
        f"export SMS_BACKEND=twilio TWILIO_API_BASE={fake.url} TWILIO_ACCOUNT_SID={ACCOUNT_SID} "
        f"TWILIO_AUTH_TOKEN={AUTH_TOKEN} TWILIO_FROM_NUMBER={FROM_NUMBER}",
        flush=True,
    )
    try:
        while True:
            time.sleep(10)
            print(f"{len(fake.messages)} texts received", flush=True)
    except KeyboardInterrupt:
        fake.stop()
