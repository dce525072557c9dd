"""The one boundary to the outside world for messages: a transport per channel and provider.

Every transport follows one base class, ``Transport`` (healthchecks.io's
transports, django-anymail's backends): ``send`` fixes the order of the steps,
``check`` what is to be sent and then ``deliver`` it, and each channel or
provider fills in only its own steps; one that can say what it already
accepted also fills in ``find``. ``open`` and ``close`` bracket a dispatch
pass.

Texts go through the SMS backend ``settings.SMS_BACKEND`` names, by alias
(``console``, ``file``, ``locmem``, ``twilio``) or dotted path; email goes
through ``EmailTransport`` over Django's own ``EMAIL_BACKEND``, with any
alternative parts and attachments (a calendar invite's ``text/calendar;
method=REQUEST`` part and its ``invite.ics``).

Errors are typed: ``TransientError`` (try again later) and ``PermanentError``
(trying again cannot help), each with the provider's code. ``in_doubt`` marks
an error after which the provider may have accepted the message anyway (a read
timeout): the dispatcher looks the message up before sending it again, or,
where the provider cannot be asked, fails it visibly rather than send it twice.
"""

import contextlib
import os
import smtplib
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.message import make_msgid
from django.utils import timezone
from django.utils.module_loading import import_string
from requests.utils import get_environ_proxies
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from notifications.models import Channel, Status


class TransportError(Exception):
    def __init__(self, message: str, *, code: str = "", in_doubt: bool = False):
        super().__init__(message)
        self.code = str(code or "")
        self.in_doubt = in_doubt


class TransientError(TransportError):
    """Worth trying again later: the network, a rate limit, the provider's own trouble."""


class PermanentError(TransportError):
    """Trying again cannot help: an invalid or opted-out number, a refused address."""


@dataclass(frozen=True)
class OutgoingSMS:
    to: str
    body: str
    status_callback: str = ""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mimetype: str


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str
    # Further renderings of the same message, as (content, MIME type); the
    # type may carry parameters, as ``text/calendar; method=REQUEST`` must.
    alternatives: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()


Outgoing = OutgoingSMS | OutgoingEmail


@dataclass(frozen=True)
class Accepted:
    """The provider took the message: its id, and our status for it now."""

    provider_id: str
    status: str


class Transport:
    """Base class: ``send`` checks the message, then ``deliver`` hands it to the provider.

    A subclass fills in ``deliver`` (raising ``TransientError`` or
    ``PermanentError``), ``check`` for what no provider of its channel would
    take, ``open``/``close`` if it holds a connection, and ``find`` if the
    provider can list what it accepted.
    """

    #: Whether ``find`` can tell if the provider already accepted a message.
    can_look_up = False

    @property
    def sender(self) -> str:
        """Whose sending rate the dispatcher paces (a number, a Messaging Service)."""
        return type(self).__name__

    def open(self) -> None:
        """Get ready to send; a dispatch pass calls it before its first message."""

    def close(self) -> None:
        """Let go of what sending held; a dispatch pass calls it when it ends."""

    def send(self, outgoing: Outgoing) -> Accepted:
        self.check(outgoing)
        return self.deliver(outgoing)

    def check(self, outgoing: Outgoing) -> None:
        """Raise ``PermanentError`` for a message no provider of this channel would take."""

    def deliver(self, outgoing: Outgoing) -> Accepted:
        raise NotImplementedError

    def find(self, outgoing: Outgoing) -> list[str]:
        """The provider's ids of recently accepted messages with this recipient and content, newest first."""
        raise NotImplementedError(f"{type(self).__name__} cannot look messages up.")


# -- SMS --------------------------------------------------------------------------


class SMSBackend(Transport):
    """Texts: an E.164 number and a body; each provider fills in ``deliver``."""

    def check(self, sms: OutgoingSMS) -> None:
        if not sms.to.startswith("+") or not sms.to[1:].isdigit():
            raise PermanentError(f"{sms.to!r} is not an E.164 number.", code="invalid-number")
        if not sms.body.strip():
            raise PermanentError("The text is empty.", code="empty-body")


class ConsoleSMSBackend(SMSBackend):
    """Prints each text: for a developer watching the worker's output."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def deliver(self, sms: OutgoingSMS) -> Accepted:
        self.stream.write(f"SMS to {sms.to}: {sms.body}\n")
        self.stream.flush()
        return Accepted(f"console-{uuid.uuid4().hex}", Status.SENT)


class FileSMSBackend(SMSBackend):
    """Appends each text to a file per day under settings.SMS_FILE_PATH (the demo's default)."""

    _lock = threading.Lock()

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path or settings.SMS_FILE_PATH)

    def deliver(self, sms: OutgoingSMS) -> Accepted:
        provider_id = f"file-{uuid.uuid4().hex}"
        now = timezone.now()
        self.path.mkdir(parents=True, exist_ok=True)
        with self._lock, (self.path / f"{now:%Y-%m-%d}.txt").open("a", encoding="utf-8") as out:
            out.write(f"{now.isoformat()} {provider_id}\nTo: {sms.to}\n{sms.body}\n\n")
        return Accepted(provider_id, Status.SENT)


@dataclass(frozen=True)
class RecordedSMS:
    to: str
    body: str
    status_callback: str
    provider_id: str
    at: datetime


# Texts sent through the locmem backend, like django.core.mail.outbox.
outbox: list[RecordedSMS] = []
_outbox_lock = threading.Lock()


class LocmemSMSBackend(SMSBackend):
    """Records texts in ``notifications.transports.outbox`` (tests)."""

    can_look_up = True

    def deliver(self, sms: OutgoingSMS) -> Accepted:
        provider_id = f"LM{uuid.uuid4().hex}"
        with _outbox_lock:
            outbox.append(
                RecordedSMS(sms.to, sms.body, sms.status_callback, provider_id, timezone.now())
            )
        return Accepted(provider_id, Status.SENT)

    def find(self, sms: OutgoingSMS) -> list[str]:
        with _outbox_lock:
            return [
                recorded.provider_id
                for recorded in reversed(outbox)
                if (recorded.to, recorded.body) == (sms.to, sms.body)
            ]


class RebasedHttpClient(TwilioHttpClient):
    """The SDK's HTTP client, sending to a Twilio-compatible server instead of api.twilio.com.

    The SDK has no base-URL setting; rewriting the URL here lets the real SDK
    (its parameters, authentication, error parsing) talk to a server on
    loopback in tests and rehearsals.
    """

    TWILIO = "https://api.twilio.com"

    def __init__(self, base: str, **kwargs):
        super().__init__(**kwargs)
        self.base = base.rstrip("/")

    def request(self, method: str, url: str, *args, **kwargs):
        if url.startswith(self.TWILIO):
            url = self.base + url[len(self.TWILIO) :]
        return super().request(method, url, *args, **kwargs)


def twilio_http_client(base: str, timeout: float) -> TwilioHttpClient:
    """The SDK's HTTP client as the transport uses it (``base``: a Twilio-compatible server or "").

    The SDK waits forever by default; a hung request would hold a claimed
    message until its lease runs out. And requests reads the proxy settings
    from the environment (every variable in it) on each call, about a third
    of a millisecond a text: they are read once, here, instead.
    """
    options = {"timeout": timeout, "proxy": get_environ_proxies(base or RebasedHttpClient.TWILIO)}
    client = RebasedHttpClient(base, **options) if base else TwilioHttpClient(**options)
    client.session.trust_env = False
    # What trust_env would also have read: a CA bundle named in the environment.
    client.session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    return client


# Twilio's error codes (docs/rules.md). Unreachable (30003) and unknown (30008) may
# clear up; an invalid, opted-out, landline or filtered number will not.
TRANSIENT_CODES = {"20429", "30001", "30003", "30008"}
PERMANENT_CODES = {"21211", "21408", "21606", "21610", "21612", "21614", "30005", "30006", "30007"}
TWILIO_STATUSES = {
    "accepted": Status.QUEUED,
    "scheduled": Status.QUEUED,
    "queued": Status.QUEUED,
    "sending": Status.SENDING,
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.FAILED,
}


def classify_twilio_error(error: TwilioRestException) -> TransportError:
    code = str(error.code or error.status)
    message = f"Twilio {error.status}: {error.msg}"
    if error.status == 429 or error.status >= 500 or code in TRANSIENT_CODES:
        return TransientError(message, code=code)
    if code in PERMANENT_CODES:
        return PermanentError(message, code=code)
    if error.status in (401, 403):
        # Wrong credentials are the clinic's to fix, not the patient's fault:
        # retrying gives someone time to fix them before the message fails.
        return TransientError(
            message + " (check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)", code=code
        )
    return PermanentError(message, code=code)


def _never_reached_twilio(error: requests.ConnectionError) -> bool:
    text = repr(error)
    return isinstance(error, requests.exceptions.ConnectTimeout) or any(
        name in text for name in ("NewConnectionError", "NameResolutionError", "Connection refused")
    )


class TwilioSMSBackend(SMSBackend):
    can_look_up = True

    def __init__(self):
        account, token = settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN
        self.from_number = settings.TWILIO_FROM_NUMBER
        self.service = settings.TWILIO_MESSAGING_SERVICE_SID
        if not (account and token):
            raise ImproperlyConfigured(
                "SMS_BACKEND=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN."
            )
        if not (self.from_number or self.service):
            raise ImproperlyConfigured(
                "SMS_BACKEND=twilio needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID."
            )
        http_client = twilio_http_client(settings.TWILIO_API_BASE, settings.TWILIO_TIMEOUT)
        self.client = Client(account, token, http_client=http_client)

    @property
    def sender(self) -> str:
        return self.service or self.from_number

    def _sender_params(self) -> dict:
        # A Messaging Service picks the number (and queues beyond its rate).
        if self.service:
            return {"messaging_service_sid": self.service}
        return {"from_": self.from_number}

    def deliver(self, sms: OutgoingSMS) -> Accepted:
        params = {"to": sms.to, "body": sms.body, **self._sender_params()}
        if sms.status_callback:
            params["status_callback"] = sms.status_callback
        try:
            created = self.client.messages.create(**params)
        except TwilioRestException as error:
            raise classify_twilio_error(error) from error
        except requests.ConnectionError as error:
            raise TransientError(
                f"Could not reach Twilio: {error}",
                code="network",
                in_doubt=not _never_reached_twilio(error),
            ) from error
        except requests.RequestException as error:
            # A read timeout: Twilio may have created the message and not said so.
            raise TransientError(
                f"No answer from Twilio: {error}", code="timeout", in_doubt=True
            ) from error
        return Accepted(created.sid, TWILIO_STATUSES.get(created.status, Status.QUEUED))

    def find(self, sms: OutgoingSMS) -> list[str]:
        # Twilio lists an account's messages newest first; one we sent moments
        # before a crash or a timeout is among the most recent to that number.
        try:
            recent = self.client.messages.list(to=sms.to, limit=20)
        except (TwilioRestException, requests.RequestException) as error:
            raise TransientError(
                f"Could not look the message up: {error}", code="lookup", in_doubt=True
            ) from error
        # endswith: a trial account's texts carry Twilio's prefix before ours.
        return [
            candidate.sid
            for candidate in recent
            if (candidate.body or "").endswith(sms.body)
            and (not self.service or candidate.messaging_service_sid == self.service)
            and (self.service or candidate.from_ == self.from_number)
        ]


SMS_BACKEND_ALIASES = {
    "console": "notifications.transports.ConsoleSMSBackend",
    "file": "notifications.transports.FileSMSBackend",
    "locmem": "notifications.transports.LocmemSMSBackend",
    "twilio": "notifications.transports.TwilioSMSBackend",
}


def sms_backend(name: str | None = None) -> SMSBackend:
    name = name or settings.SMS_BACKEND
    path = SMS_BACKEND_ALIASES.get(name.lower(), name)
    try:
        backend_class = import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(
            f"SMS_BACKEND={name!r} is neither one of {', '.join(SMS_BACKEND_ALIASES)} "
            "nor an importable class."
        ) from error
    return backend_class()


# -- email ------------------------------------------------------------------------


class ParameterisedEmail(EmailMultiAlternatives):
    """Django's email, with parameters on its alternatives' MIME types.

    Django takes an alternative's type as ``type/subtype`` only; calendar
    clients (iMIP, RFC 6047) read the iTIP method from the calendar part's
    ``text/calendar; method=REQUEST``, and it must match the calendar's METHOD.
    """

    def __init__(self, *args, parameters: dict[str, dict[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.parameters = parameters  # by MIME type

    def message(self, *args, **kwargs):
        message = super().message(*args, **kwargs)
        for part in message.walk():
            for name, value in self.parameters.get(part.get_content_type(), {}).items():
                part.set_param(name, value)
        return message


def _mime_type(text: str) -> tuple[str, dict[str, str]]:
    """``text/calendar; method=REQUEST`` -> ("text/calendar", {"method": "REQUEST"})."""
    mimetype, *parameters = (piece.strip() for piece in text.split(";"))
    return mimetype, dict(piece.partition("=")[::2] for piece in parameters if piece)


class EmailTransport(Transport):
    """Email through Django's EMAIL_BACKEND, one connection for a dispatch pass."""

    sender = "email"

    def __init__(self):
        self.connection = get_connection(fail_silently=False)

    def open(self) -> None:
        pass  # connects lazily, on the first message, so a pass with no email costs nothing

    def close(self) -> None:
        # The server may have hung up first; then there is nothing left to close.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            self.connection.close()

    def check(self, email: OutgoingEmail) -> None:
        if "@" not in email.to:
            raise PermanentError(f"{email.to!r} is not an email address.", code="invalid-address")

    def deliver(self, email: OutgoingEmail) -> Accepted:
        message_id = make_msgid(
            domain=settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip("> ") or None
        )
        parameters = {}
        message = ParameterisedEmail(
            subject=email.subject,
            body=email.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[email.to],
            headers={"Message-ID": message_id, **dict(email.headers)},
            connection=self.connection,
            parameters=parameters,
        )
        message.attach_alternative(email.html, "text/html")
        for content, full_type in email.alternatives:
            mimetype, parameters[mimetype] = _mime_type(full_type)
            message.attach_alternative(content, mimetype)
        for attachment in email.attachments:
            message.attach(attachment.filename, attachment.content, attachment.mimetype)
        try:
            self.connection.open()
        except (smtplib.SMTPException, OSError) as error:
            raise TransientError(
                f"Could not connect to the mail server: {error}", code="smtp-connect"
            ) from error
        try:
            message.send()
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            self.close()
            cls = PermanentError if codes and all(code >= 500 for code in codes) else TransientError
            raise cls(
                f"The mail server refused {email.to}: {error.recipients}",
                code=str(codes[0] if codes else ""),
            ) from error
        except smtplib.SMTPResponseException as error:
            self.close()
            cls = PermanentError if error.smtp_code >= 500 else TransientError
            raise cls(
                f"The mail server said {error.smtp_code} {error.smtp_error!r}",
                code=str(error.smtp_code),
            ) from error
        except TimeoutError as error:
            self.close()
            # Connected, then silence: the server may have taken the message.
            raise TransientError(
                f"The mail server did not answer: {error}", code="smtp-timeout", in_doubt=True
            ) from error
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            raise TransientError(f"Mail server error: {error}", code="smtp") from error
        return Accepted(message_id, Status.SENT)


def transport_for(channel: str) -> Transport:
    """The transport that sends ``channel``'s messages, as the settings say."""
    if channel == Channel.SMS:
        return sms_backend()
    return EmailTransport()
