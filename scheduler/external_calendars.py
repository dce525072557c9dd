"""Busy times from clinicians' own calendars (an .ics address each), read every 15 minutes.

For each ``ExternalCalendar`` the worker fetches the address (conditional on
the last ETag), expands recurring events over the booking horizon, keeps only
*when* the clinician is busy (no titles, no attendees) and replaces that
calendar's ``BusyBlock`` rows in one transaction. Availability treats the
blocks like time off.

A feed that cannot be read (unreachable, slow, too large, not iCalendar) never
empties the clinician's busy times: the last good blocks stay and the error is
recorded on the calendar, where staff and the clinician see it.

The address is typed by a user and fetched by the server, so it must not let
that user reach, or map, the server's own network:

- only http(s) is spoken, and proxies from the environment are ignored;
- the host name is resolved once and every address it gives is checked
  (``refusal``) before any connection; the socket then connects to exactly
  the address checked, so a second DNS answer cannot slip an inward one in
  (TLS still verifies the certificate for the name). Redirects open a new
  connection through the same check;
- every failure to get an answer reads the same to the user (``UNREADABLE``):
  "connection refused", "private address", a TLS error or a timeout would
  otherwise tell which internal hosts and ports answer. What happened goes to
  the server log for administrators.
"""

import http.client
import ipaddress
import logging
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

import recurring_ical_events
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task
from icalendar import Calendar

from scheduler.models import BusyBlock, ExternalCalendar
from scheduler.periodic import every
from scheduler.timezones import zone

logger = logging.getLogger(__name__)

SCHEDULE_NAME = "Read clinicians' own calendars"
# Raw occurrences read per calendar, as a multiple of the busy blocks kept.
OCCURRENCE_LIMIT_FACTOR = 5
# The library orders all-day, floating and zoned starts in its own zone; a
# day and a half covers any difference between that and UTC.
ORDER_SLACK = timedelta(hours=36)
USER_AGENT = "KAP-scheduler/1.0 (busy times import)"
UNREADABLE = (
    "We could not read that calendar address. Check that it is the public https:// "
    "(or webcal://) address your calendar app shares, then try again."
)


class FetchError(Exception):
    """The calendar could not be used; the message says why, for staff and the clinician."""


class Unreachable(FetchError):
    """No usable answer came from the address.

    Users see only ``UNREADABLE``, whatever happened; ``detail`` says what, for the log.
    """

    def __init__(self, detail: str):
        super().__init__(UNREADABLE)
        self.detail = detail


class Refused(OSError):
    """The address is one the server must not connect to; raised before any connection."""


@dataclass(frozen=True)
class Fetched:
    body: bytes | None  # None: not modified since the ETag we sent
    etag: str


# -- which addresses may be read -------------------------------------------------------

# The well-known NAT64 prefix: on a NAT64 network 64:ff9b::a00:1 reaches 10.0.0.1.
NAT64 = ipaddress.ip_network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _delivered_to(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries, where the network would deliver it there."""
    if address.version == 6:
        if address.ipv4_mapped:
            return address.ipv4_mapped
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour:
            return address.sixtofour
    return address


def refusal(address: Address) -> str:
    """Why the server must not connect to ``address``; "" when it may.

    Only globally reachable unicast addresses (the IANA special-purpose
    registries, as the standard library's ``ipaddress`` keeps them) are read.
    ``EXTERNAL_CALENDAR_ALLOWED_NETWORKS`` opens chosen private networks (a
    calendar server on the clinic's intranet, loopback for the demo and the
    tests); link-local addresses, where cloud metadata services answer
    (169.254.169.254), multicast and "any" (0.0.0.0 reaches this host) stay
    refused even when listed.
    """
    address = _delivered_to(address)
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        return f"{address} is link-local, multicast or unspecified"
    allowed = settings.EXTERNAL_CALENDAR_ALLOWED_NETWORKS
    if any(address in ipaddress.ip_network(network) for network in allowed):
        return ""
    if not address.is_global or address.is_private or address.is_reserved:
        return f"{address} is not a public address"
    return ""


def open_checked(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``host``, made only to an address ``refusal`` allows.

    The name is resolved once. If any address it gives is refused the name is
    refused whole (a name pointing both out and in is a rebinding attempt, or a
    mistake), before a single connection is tried; otherwise the addresses are
    tried in order, as ``socket.create_connection`` would, but by number.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as error:  # a label too long for IDNA
        raise Refused(f"{host!r} is not a host name ({error})") from None
    addresses = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0].partition("%")[0])
        if reason := refusal(address):
            named = "" if host == str(address) else f"{host} resolves to {address}: "
            raise Refused(named + reason)
        addresses.append((str(address), sockaddr[1]))
    last_error: OSError = Refused(f"{host} resolves to no address")
    for address in addresses:
        try:
            return socket.create_connection(address, timeout)
        except OSError as error:
            last_error = error
    raise last_error


# One TLS context: system CAs, certificate and host name verified (the defaults).
TLS = ssl.create_default_context()


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = open_checked(self.host, self.port, self.timeout)


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self):
        sock = open_checked(self.host, self.port, self.timeout)
        try:
            # Connected by number; the certificate is checked against the name.
            self.sock = TLS.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_CheckedHTTPConnection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_CheckedHTTPSConnection, req)


def _opener() -> urllib.request.OpenerDirector:
    # Built by hand rather than with build_opener(): no file:, ftp: or data:
    # handlers, and no ProxyHandler reading proxies from the environment.
    # A redirect is opened through the same handlers, so each hop is checked.
    opener = urllib.request.OpenerDirector()
    for handler in (
        _CheckedHTTPHandler(),
        _CheckedHTTPSHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def http_url(url: str) -> str:
    # webcal:// is only a hint to open a calendar app; the feed itself is HTTPS.
    if url.lower().startswith("webcal://"):
        return "https://" + url[len("webcal://") :]
    return url


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


def fetch(url: str, etag: str = "") -> Fetched:
    """GET ``url`` within the time and size limits.

    Raises ``Unreachable`` (one message for users, the detail for the log) when
    no usable answer came, ``FetchError`` when the answer was too large.
    """
    timeout = settings.EXTERNAL_CALENDAR_TIMEOUT
    limit = settings.EXTERNAL_CALENDAR_MAX_BYTES
    headers = {"User-Agent": USER_AGENT, "Accept": "text/calendar, */*;q=0.5"}
    if etag:
        headers["If-None-Match"] = etag
    # The socket timeout bounds each wait; the deadline bounds the whole read,
    # so a server trickling bytes cannot hold a worker for long either.
    deadline = time.monotonic() + timeout
    try:
        request = urllib.request.Request(http_url(url), headers=headers)
        with _opener().open(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise FetchError(f"The calendar is larger than {_megabytes(limit)}.")
            chunks, size = [], 0
            while chunk := response.read1(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise FetchError(f"The calendar is larger than {_megabytes(limit)}.")
                if time.monotonic() > deadline:
                    raise Unreachable(f"the answer took longer than {timeout} s")
                chunks.append(chunk)
            return Fetched(b"".join(chunks), response.headers.get("ETag", "")[:300])
    except urllib.error.HTTPError as error:
        if error.code == 304:
            return Fetched(None, etag)
        raise Unreachable(f"HTTP {error.code}") from None
    except urllib.error.URLError as error:
        raise Unreachable(_described(error.reason)) from None
    except (OSError, ValueError, http.client.HTTPException) as error:
        raise Unreachable(_described(error)) from None


def _described(reason: BaseException | str) -> str:
    """What went wrong, for the log (urllib gives a reason as an exception or a string)."""
    if isinstance(reason, TimeoutError):
        return "no answer in time"
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return reason


# -- parsing ---------------------------------------------------------------------------


def _instant(value: date | datetime, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        # A "floating" time means wall-clock time wherever the reader is.
        return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)
    # An all-day event makes the clinician busy for whole days of their clinic.
    return datetime.combine(value, clock(0), tzinfo=tz).astimezone(UTC)


def _span(event, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = event.decoded("DTSTART")
    if "DTEND" in event:
        end = event.decoded("DTEND")
    elif "DURATION" in event:
        end = start + event.decoded("DURATION")
    else:
        # RFC 5545 3.6.1: a date alone lasts the day; a date-time alone, no time at all.
        end = start + timedelta(days=1) if not isinstance(start, datetime) else start
    return _instant(start, tz), _instant(end, tz)


def merge(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping and touching intervals joined: fewer rows, and no event's outline kept."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def busy_intervals(
    body: bytes, tz: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The busy times in [start, end) of an iCalendar file, merged; FetchError if it is none.

    Recurring events are expanded (with their exceptions and moved instances);
    free (TRANSP:TRANSPARENT) and cancelled events do not count.
    """
    try:
        calendar = Calendar.from_ical(body)
        if calendar.name != "VCALENDAR":
            raise ValueError(f"it holds a {calendar.name}, not a VCALENDAR")
        floating = tz
        if calendar.get("X-WR-TIMEZONE"):
            # Google and Outlook name the calendar's own zone here.
            try:
                floating = zone(str(calendar["X-WR-TIMEZONE"]))
            except Exception:
                floating = tz
        intervals = []
        # Occurrences come in order of start, lazily: a rule that repeats every
        # minute must hit the limit below, not fill the worker's memory first.
        occurrences = recurring_ical_events.of(calendar).after(start)
        for count, event in enumerate(occurrences):
            if count > OCCURRENCE_LIMIT_FACTOR * settings.EXTERNAL_CALENDAR_MAX_BLOCKS:
                raise FetchError("The calendar repeats too often to read; is it the right one?")
            all_day = not isinstance(event.decoded("DTSTART"), datetime)
            # Whole days are the clinic's days; floating times are the calendar's own.
            busy_start, busy_end = _span(event, tz if all_day else floating)
            if busy_start >= end + ORDER_SLACK:
                break  # sorted by start (up to zone differences): the rest is later
            if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
                continue
            if str(event.get("STATUS", "")).upper() == "CANCELLED":
                continue
            if busy_end > busy_start and busy_start < end:
                intervals.append((busy_start, busy_end))
    except FetchError:
        raise
    except Exception as error:
        # Untrusted input through a third-party parser can fail in many ways;
        # every one of them means "keep the last good busy times".
        raise FetchError(f"The address did not return a valid iCalendar file ({error}).") from None
    merged = merge(intervals)
    most = settings.EXTERNAL_CALENDAR_MAX_BLOCKS
    if len(merged) > most:
        raise FetchError(
            f"The calendar has more than {most} busy times ahead; is it the right one?"
        )
    return merged


# -- refreshing ----------------------------------------------------------------------


def refresh(calendar: ExternalCalendar, *, now: datetime | None = None) -> str:
    """Fetch one calendar and replace its busy blocks; on failure keep them and record why."""
    now = now or timezone.now()
    tz = calendar.clinician.clinic.tz
    window_start = now - timedelta(days=1)
    window_end = now + timedelta(days=settings.BOOKING_HORIZON_DAYS + 1)
    rows = ExternalCalendar.objects.filter(pk=calendar.pk)
    try:
        fetched = fetch(calendar.url, calendar.etag)
        if fetched.body is not None:
            intervals = busy_intervals(fetched.body, tz, window_start, window_end)
    except FetchError as error:
        rows.update(last_fetched_at=now, last_error=str(error))
        # The detail (refused address, connection refused, TLS error...) is
        # for administrators only; users see the one message above.
        detail = getattr(error, "detail", error)
        logger.warning("External calendar %s (%s) not read: %s", calendar.pk, calendar.host, detail)
        return f"failed: {error}"
    if fetched.body is None:
        rows.update(last_fetched_at=now, last_success_at=now, last_error="")
        return "not modified"
    if not store_busy_blocks(calendar, intervals, etag=fetched.etag, now=now):
        return "skipped: the calendar was removed or its address changed meanwhile"
    return f"{len(intervals)} busy times"


def store_busy_blocks(
    calendar: ExternalCalendar,
    intervals: list[tuple[datetime, datetime]],
    *,
    etag: str,
    now: datetime,
) -> bool:
    """Replace the calendar's busy blocks in one transaction; False if it changed meanwhile."""
    with transaction.atomic():
        rows = ExternalCalendar.objects.filter(pk=calendar.pk)
        current = rows.select_for_update().first()
        if current is None or current.url != calendar.url:
            return False
        current.busy_blocks.all().delete()
        BusyBlock.objects.bulk_create(
            [
                BusyBlock(
                    clinician_id=current.clinician_id,
                    external_calendar=current,
                    start=start,
                    end=end,
                )
                for start, end in intervals
            ],
            batch_size=1000,
        )
        rows.update(etag=etag, last_fetched_at=now, last_success_at=now, last_error="")
    return True


def refresh_calendar(calendar_id: int) -> str:
    """Worker task: refresh one calendar (each in its own task, so one slow feed delays no other)."""
    calendar = (
        ExternalCalendar.objects.select_related("clinician__clinic").filter(pk=calendar_id).first()
    )
    if calendar is None:
        return "skipped: the calendar was removed"
    return refresh(calendar)


def queue_refresh(calendar: ExternalCalendar) -> None:
    async_task(
        "scheduler.external_calendars.refresh_calendar",
        calendar.pk,
        group="external-calendars",
        task_name=f"external-calendar-{calendar.pk}",
    )


def queue_refreshes() -> int:
    """Scheduled every 15 minutes: one task per registered calendar."""
    calendars = list(ExternalCalendar.objects.only("pk"))
    for calendar in calendars:
        queue_refresh(calendar)
    return len(calendars)


# The 15-minute import exists wherever the database does.
ensure_schedule = every(15, SCHEDULE_NAME, "scheduler.external_calendars.queue_refreshes")
