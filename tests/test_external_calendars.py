"""Busy times from clinicians' own calendars, read over real HTTP from a loopback server."""

import ipaddress
import re
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape
from django_q.models import OrmQ, Schedule

from scheduler import booking
from scheduler.availability import Availability, free_slots
from scheduler.demo import seed_calendars
from scheduler.external_calendars import (
    SCHEDULE_NAME,
    UNREADABLE,
    Unreachable,
    ensure_schedule,
    fetch,
    http_url,
    queue_refreshes,
    refresh,
    refresh_calendar,
    refusal,
)
from scheduler.models import AccessToken, BusyBlock, ExternalCalendar, InvitePreference
from scheduler.timezones import zone
from tests.conftest import MONDAY, at
from tests.page_helpers import sign_in_verified
from tests.servers import IcsServer, Listener, Route, free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now")]

NEW_YORK = zone("America/New_York")


def ics(*events: str, extra: str = "") -> bytes:
    """An .ics file as other calendar apps write them (raw text on purpose: it is their output)."""
    body = "".join(f"BEGIN:VEVENT\r\n{event.strip()}\r\nEND:VEVENT\r\n" for event in events)
    header = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Other app//EN\r\n" + extra
    return (header + body + "END:VCALENDAR\r\n").encode()


def vevent(uid: str, *lines: str) -> str:
    return "\r\n".join([f"UID:{uid}", "DTSTAMP:20300101T000000Z", *lines])


DENTIST = vevent(
    "dentist@other",
    "DTSTART;TZID=America/New_York:20300603T100000",
    "DTEND;TZID=America/New_York:20300603T110000",
    "SUMMARY:Dentist - root canal",
)


@pytest.fixture
def server(settings):
    # The test server is on loopback, which the server refuses unless it is listed.
    settings.EXTERNAL_CALENDAR_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.EXTERNAL_CALENDAR_TIMEOUT = 0.5
    server = IcsServer().start()
    yield server
    server.stop()


@pytest.fixture
def own_calendar(clinic, server):
    server.routes["/sam.ics"] = Route(ics(DENTIST), etag='"v1"')
    return ExternalCalendar.objects.create(clinician=clinic.therapist, url=server.url("/sam.ics"))


def local_blocks(calendar: ExternalCalendar, before: datetime | None = None) -> list[str]:
    blocks = calendar.busy_blocks.order_by("start")
    if before:
        blocks = blocks.filter(start__lt=before)
    return [
        f"{b.start.astimezone(NEW_YORK):%a %m-%d %H:%M}-{b.end.astimezone(NEW_YORK):%a %m-%d %H:%M}"
        for b in blocks
    ]


def starts(slots) -> list[str]:
    return [f"{slot.start:%H:%M}" for slot in slots]


# -- busy blocks count like time off -----------------------------------------------------


def test_an_imported_busy_time_removes_the_slots_it_overlaps(clinic, own_calendar):
    half_hour = timedelta(minutes=30)
    before = starts(free_slots(clinic.integration, MONDAY, MONDAY, step=half_hour))
    assert refresh(own_calendar) == "1 busy times"
    after = starts(free_slots(clinic.integration, MONDAY, MONDAY, step=half_hour))
    assert set(before) - set(after) == {"09:30", "10:00", "10:30"}
    with pytest.raises(booking.BookingError) as refused:
        booking.book(
            patient=clinic.patient(),
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=at(MONDAY, "10:15"),
        )
    assert refused.value.problems == ["Sam Rivers is busy 10:00-11:00 (own calendar)."]


def test_busy_times_cost_availability_no_extra_query(clinic, own_calendar):
    window = (at(MONDAY, "00:00"), at(MONDAY + timedelta(days=7), "00:00"))
    with CaptureQueriesContext(connection) as without:
        Availability(clinic.clinic, *window)
    refresh(own_calendar)
    with CaptureQueriesContext(connection) as with_blocks:
        availability = Availability(clinic.clinic, *window)
    assert len(with_blocks) == len(without)
    assert not availability.fits(
        clinic.integration, clinic.therapist, None, None, at(MONDAY, "10:00")
    )


def test_no_titles_or_descriptions_are_kept(clinic, own_calendar):
    refresh(own_calendar)
    fields = {field.name for field in BusyBlock._meta.get_fields()}
    assert fields == {"id", "clinician", "external_calendar", "start", "end"}
    stored = repr(list(BusyBlock.objects.values())) + repr(list(ExternalCalendar.objects.values()))
    assert "Dentist" not in stored and "root canal" not in stored


# -- what counts as busy ----------------------------------------------------------------


def test_recurring_all_day_floating_free_and_cancelled_events(clinic, server):
    body = ics(
        # Every Monday at noon, but not June 10, and June 17 moved to 14:00.
        vevent(
            "weekly@other",
            "DTSTART;TZID=America/New_York:20300506T120000",
            "DTEND;TZID=America/New_York:20300506T130000",
            "RRULE:FREQ=WEEKLY;BYDAY=MO",
            "EXDATE;TZID=America/New_York:20300610T120000",
        ),
        vevent(
            "weekly@other",
            "RECURRENCE-ID;TZID=America/New_York:20300617T120000",
            "DTSTART;TZID=America/New_York:20300617T140000",
            "DTEND;TZID=America/New_York:20300617T150000",
        ),
        vevent(
            "free@other", "DTSTART:20300604T130000Z", "DTEND:20300604T140000Z", "TRANSP:TRANSPARENT"
        ),
        vevent(
            "off@other", "DTSTART:20300604T150000Z", "DTEND:20300604T160000Z", "STATUS:CANCELLED"
        ),
        vevent("allday@other", "DTSTART;VALUE=DATE:20300605", "DTEND;VALUE=DATE:20300606"),
        # Floating time: 09:00 in the calendar's own zone (Chicago), 10:00 in New York.
        vevent("floating@other", "DTSTART:20300606T090000", "DURATION:PT1H"),
        vevent("past@other", "DTSTART:20290101T100000Z", "DTEND:20290101T110000Z"),
        extra="X-WR-TIMEZONE:America/Chicago\r\n",
    )
    server.routes["/mix.ics"] = Route(body)
    calendar = ExternalCalendar.objects.create(
        clinician=clinic.therapist, url=server.url("/mix.ics")
    )
    refresh(calendar)
    june = local_blocks(calendar, before=at(MONDAY + timedelta(days=22), "00:00"))
    assert june[-6:] == [
        "Mon 05-27 12:00-Mon 05-27 13:00",
        "Mon 06-03 12:00-Mon 06-03 13:00",
        "Wed 06-05 00:00-Thu 06-06 00:00",
        "Thu 06-06 10:00-Thu 06-06 11:00",
        "Mon 06-17 14:00-Mon 06-17 15:00",
        "Mon 06-24 12:00-Mon 06-24 13:00",
    ]
    assert june[0] == "Mon 05-06 12:00-Mon 05-06 13:00"
    # Expanded over the whole booking horizon, which ends two years from now.
    last = calendar.busy_blocks.order_by("start").last()
    assert datetime(2031, 12, 20, tzinfo=UTC) < last.start < datetime(2032, 1, 3, tzinfo=UTC)


def test_an_all_day_event_blocks_the_whole_local_day(clinic, server):
    server.routes["/away.ics"] = Route(
        ics(vevent("away@other", "DTSTART;VALUE=DATE:20300603", "DTEND;VALUE=DATE:20300604"))
    )
    calendar = ExternalCalendar.objects.create(
        clinician=clinic.therapist, url=server.url("/away.ics")
    )
    refresh(calendar)
    assert free_slots(clinic.integration, MONDAY, MONDAY) == []
    assert free_slots(clinic.integration, MONDAY + timedelta(days=1), MONDAY + timedelta(days=1))


# -- fetching ---------------------------------------------------------------------------


def test_an_unchanged_calendar_answers_304_to_our_etag_and_keeps_its_blocks(
    clinic, own_calendar, server, now
):
    refresh(own_calendar)
    own_calendar.refresh_from_db()
    assert own_calendar.etag == '"v1"'
    kept = list(BusyBlock.objects.values_list("pk", flat=True))
    now.shift(timedelta(minutes=15))
    assert refresh(own_calendar) == "not modified"
    _, headers = server.requests[-1]
    assert headers["If-None-Match"] == '"v1"'
    assert list(BusyBlock.objects.values_list("pk", flat=True)) == kept
    own_calendar.refresh_from_db()
    assert own_calendar.last_success_at == datetime.now(UTC) and own_calendar.last_error == ""


def failing_read(calendar: ExternalCalendar) -> ExternalCalendar:
    """Read a calendar that worked before and now fails; the old blocks must survive."""
    before = local_blocks(calendar)
    last_success = calendar.last_success_at
    result = refresh(calendar)
    assert result.startswith("failed: ")
    calendar.refresh_from_db()
    assert local_blocks(calendar) == before
    assert calendar.last_success_at == last_success and calendar.last_fetched_at is not None
    return calendar


@pytest.fixture
def read_once(own_calendar, server):
    refresh(own_calendar)
    own_calendar.refresh_from_db()
    assert own_calendar.busy_blocks.count() == 1
    return own_calendar


@pytest.mark.parametrize(
    "body",
    [b"<html><body>Please sign in</body></html>", ics("DTSTART:not-a-date\r\nUID:x")[:-20]],
    ids=["html page", "broken ics"],
)
def test_a_malformed_feed_keeps_the_last_good_blocks_and_records_why(
    read_once, server, body, client
):
    server.routes["/sam.ics"] = Route(body)
    calendar = failing_read(read_once)
    assert calendar.last_error.startswith("The address did not return a valid iCalendar file")
    staff = get_user_model().objects.create_superuser("boss", password=None)
    sign_in_verified(client, staff)
    page = client.get(reverse("admin:scheduler_externalcalendar_changelist"))
    assert "Failing: The address did not return a valid iCalendar file" in page.text


@pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "undeclared"])
def test_a_feed_over_the_size_limit_is_refused(read_once, server, settings, declare_length):
    settings.EXTERNAL_CALENDAR_MAX_BYTES = 64 * 1024
    padding = "".join(vevent(f"{n}@other", "DTSTART:20300603T100000Z") for n in range(2000))
    server.routes["/sam.ics"] = Route(ics(padding), declare_length=declare_length)
    assert failing_read(read_once).last_error == "The calendar is larger than 0.0625 MB."


def test_a_slow_feed_times_out(read_once, server):
    server.routes["/sam.ics"] = Route(ics(DENTIST), delay=2.0)
    started = time.monotonic()
    calendar = failing_read(read_once)
    assert time.monotonic() - started < 1.5
    assert calendar.last_error == UNREADABLE


def test_a_rule_repeating_every_minute_is_refused_without_expanding_it(read_once, server, settings):
    settings.EXTERNAL_CALENDAR_MAX_BLOCKS = 100
    server.routes["/sam.ics"] = Route(
        ics(
            vevent("tick@other", "DTSTART:20300103T000000Z", "DURATION:PT1M", "RRULE:FREQ=MINUTELY")
        )
    )
    started = time.monotonic()
    calendar = failing_read(read_once)
    assert calendar.last_error == "The calendar repeats too often to read; is it the right one?"
    assert time.monotonic() - started < 5


def test_an_unreachable_or_failing_feed_keeps_the_blocks(read_once, server, caplog):
    read_once.url = f"http://127.0.0.1:{free_port()}/gone.ics"
    read_once.save()
    assert failing_read(read_once).last_error == UNREADABLE
    read_once.url = server.url("/missing.ics")
    read_once.save()
    assert failing_read(read_once).last_error == UNREADABLE
    # What happened is in the server's log, for administrators.
    assert "ConnectionRefusedError" in caplog.text and "HTTP 404" in caplog.text


# -- the server's own network: never reached, never mapped ----------------------------


def _shown_to_the_clinician(client, calendar: ExternalCalendar) -> str:
    """What the clinician's page says of ``calendar`` (up to its Remove button), spaces folded."""
    page = client.get(reverse("my_calendar")).text
    found = re.search(rf"<li>{re.escape(calendar.host)}:(.*?)<form", page, re.S)
    return " ".join(found.group(1).split()) if found else ""


def test_every_failure_to_read_an_address_reads_the_same_to_the_clinician(
    client, clinic, server, settings, caplog, django_capture_on_commit_callbacks
):
    """Closed port, open port that is not HTTP, TLS failure, private, metadata: one message.

    Otherwise adding addresses one by one would map which internal hosts and
    ports answer. Administrators find what happened in the server log.
    """
    not_http = Listener(greeting=b"SSH-2.0-OpenSSH_9.6\r\n")
    server.routes["/slow.ics"] = Route(ics(DENTIST), delay=2.0)
    addresses = {
        "closed port": f"http://127.0.0.1:{free_port()}/cal.ics",
        "open port, not HTTP": not_http.url(),
        "TLS handshake fails": server.url("/sam.ics").replace("http://", "https://"),
        "private address": "http://10.20.30.40/cal.ics",
        "metadata address": "http://169.254.169.254/latest/meta-data/",
        "loopback, not listed": "http://127.0.0.2:8080/cal.ics",
        "IPv4-mapped loopback": "http://[::ffff:127.0.0.2]:8080/cal.ics",
        "HTTP 404": server.url("/missing.ics"),
        "no answer in time": server.url("/slow.ics"),
    }
    sign_in_verified(client, clinic.therapist.user)
    shown, logged = {}, {}
    try:
        for case, url in addresses.items():
            with django_capture_on_commit_callbacks(execute=True):
                client.post(reverse("my_calendar"), {"action": "add_calendar", "url": url})
            calendar = ExternalCalendar.objects.get(clinician=clinic.therapist)
            caplog.clear()
            assert refresh_calendar(calendar.pk) == f"failed: {UNREADABLE}", case
            calendar.refresh_from_db()
            assert calendar.last_error == UNREADABLE, case
            shown[case] = _shown_to_the_clinician(client, calendar)
            logged[case] = caplog.text
            client.post(
                reverse("my_calendar"), {"action": "remove_calendar", "calendar": calendar.pk}
            )
    finally:
        not_http.close()
    assert len(set(shown.values())) == 1, shown
    assert escape(UNREADABLE) in shown["closed port"]
    for case, detail in {
        "closed port": "ConnectionRefusedError",
        "open port, not HTTP": "BadStatusLine",
        "TLS handshake fails": "SSL",
        "private address": "10.20.30.40 is not a public address",
        "metadata address": "169.254.169.254 is link-local",
        "loopback, not listed": "127.0.0.2 is not a public address",
        "IPv4-mapped loopback": "127.0.0.2 is not a public address",
        "HTTP 404": "HTTP 404",
        "no answer in time": "no answer in time",
    }.items():
        assert detail in logged[case], (case, logged[case])


@pytest.fixture
def refused_listener(settings):
    """A listening port at 127.0.0.2, outside the allowed 127.0.0.1/32."""
    settings.EXTERNAL_CALENDAR_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    listener = Listener("127.0.0.2")
    yield listener
    listener.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:{port}/cal.ics",
        "https://127.0.0.2:{port}/cal.ics",
        "http://[::ffff:127.0.0.2]:{port}/cal.ics",
        "http://calendar.example.com:{port}/cal.ics",  # resolves to 127.0.0.2
        "http://rebinding.example.com:{port}/cal.ics",  # resolves out and in
    ],
    ids=["address", "https", "IPv4-mapped IPv6", "name resolving inward", "name resolving both"],
)
def test_no_connection_is_made_to_a_refused_address(refused_listener, monkeypatch, url):
    resolve = socket.getaddrinfo
    answers = {
        "calendar.example.com": ["127.0.0.2"],
        "rebinding.example.com": ["93.184.215.14", "127.0.0.2"],
    }

    def dns(host, port, *args, **kwargs):
        if host not in answers:
            return resolve(host, port, *args, **kwargs)
        stream = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        return [(socket.AF_INET, *stream, (address, port)) for address in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", dns)
    with pytest.raises(Unreachable) as refused:
        fetch(url.format(port=refused_listener.port))
    assert "127.0.0.2 is not a public address" in refused.value.detail
    assert str(refused.value) == UNREADABLE
    assert not refused_listener.connected


def test_a_redirect_is_checked_like_the_first_address(refused_listener, server):
    server.routes["/moved.ics"] = Route(status=302, location=refused_listener.url())
    with pytest.raises(Unreachable) as refused:
        fetch(server.url("/moved.ics"))
    assert "127.0.0.2 is not a public address" in refused.value.detail
    assert not refused_listener.connected
    assert [path for path, _ in server.requests] == ["/moved.ics"]


def test_a_listed_network_is_connected_to_at_the_address_checked(refused_listener, settings):
    """The control for the tests above: a connection the check allows does reach the listener."""
    settings.EXTERNAL_CALENDAR_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.EXTERNAL_CALENDAR_TIMEOUT = 0.2  # the listener never answers
    with pytest.raises(Unreachable) as failed:
        fetch(refused_listener.url())
    assert failed.value.detail == "no answer in time"
    assert refused_listener.connected


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.251",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS's IPv6 metadata address
        "ff02::1",
        "::ffff:10.1.2.3",
        "::ffff:169.254.169.254",
        "64:ff9b::a01:203",  # NAT64 to 10.1.2.3
        "2002:a01:203::1",  # 6to4 from 10.1.2.3
        "2001:db8::1",
    ],
)
def test_private_loopback_link_local_and_special_addresses_are_refused(address):
    assert refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_are_allowed(address):
    assert refusal(ipaddress.ip_address(address)) == ""


def test_listing_a_network_opens_it_but_never_link_local(settings):
    settings.EXTERNAL_CALENDAR_ALLOWED_NETWORKS = ["10.0.0.0/8", "169.254.0.0/16", "fe80::/10"]
    assert refusal(ipaddress.ip_address("10.1.2.3")) == ""
    assert refusal(ipaddress.ip_address("172.16.0.1"))
    assert refusal(ipaddress.ip_address("169.254.169.254"))
    assert refusal(ipaddress.ip_address("fe80::1"))


def test_only_public_addresses_are_read_unless_networks_are_listed(settings):
    # The default, in development too (the suite runs with DEBUG=1 in the environment).
    assert settings.EXTERNAL_CALENDAR_ALLOWED_NETWORKS == []


def test_only_web_addresses_are_accepted():
    for bad in ("file:///etc/passwd", "ftp://example.com/cal.ics", "calendar.ics"):
        with pytest.raises(ValidationError):
            ExternalCalendar(url=bad).clean_fields(exclude=["clinician"])
    ExternalCalendar(url="webcal://p01-caldav.icloud.com/x.ics").clean_fields(exclude=["clinician"])
    assert http_url("webcal://example.com/x.ics") == "https://example.com/x.ics"


# -- the worker's schedule ----------------------------------------------------------------


def test_the_15_minute_schedule_exists_once_and_queues_one_task_per_calendar(
    clinic, own_calendar, server
):
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert schedule.func == "scheduler.external_calendars.queue_refreshes"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 15, -1)
    schedule.minutes = 30  # staff may slow it down; migrating again keeps that
    schedule.save()
    ensure_schedule()
    assert Schedule.objects.filter(name=SCHEDULE_NAME).get().minutes == 30
    ExternalCalendar.objects.create(clinician=clinic.prescriber, url=server.url("/other.ics"))
    assert queue_refreshes() == 2
    queued = sorted(task.task["args"][0] for task in OrmQ.objects.all())
    assert queued == sorted(ExternalCalendar.objects.values_list("pk", flat=True))
    assert refresh_calendar(own_calendar.pk) == "1 busy times"
    assert refresh_calendar(10**9).startswith("skipped")


# -- who registers calendars ----------------------------------------------------------------


def test_a_clinician_registers_and_removes_their_own_calendar(
    client, clinic, server, django_capture_on_commit_callbacks
):
    sign_in_verified(client, clinic.therapist.user)
    refused = client.post(
        reverse("my_calendar"), {"action": "add_calendar", "url": "file:///etc/passwd"}
    )
    assert "Give the calendar&#x27;s web address" in refused.text
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("my_calendar"),
            {"action": "add_calendar", "url": "webcal://calendar.example.com/sam.ics"},
        )
    calendar = ExternalCalendar.objects.get(clinician=clinic.therapist)
    assert OrmQ.objects.get().task["args"] == (calendar.pk,)
    page = client.get(reverse("my_calendar"))
    assert "calendar.example.com" in page.text and "waiting for the first read" in page.text
    client.post(reverse("my_calendar"), {"action": "remove_calendar", "calendar": calendar.pk})
    assert not ExternalCalendar.objects.exists()


def test_the_demo_seeds_calendar_rows_once(clinic):
    issued = seed_calendars(clinic.clinic)
    assert {c for c, _ in issued} == set(clinic.clinic.clinicians.all())
    assert seed_calendars(clinic.clinic) == []
    assert AccessToken.objects.count() == 3
    assert InvitePreference.objects.get().clinician == clinic.prescriber
    calendar = ExternalCalendar.objects.get()
    assert calendar.clinician == clinic.therapist
    # The sample calendar: supervision every Wednesday 12:00-13:00.
    wednesday = MONDAY + timedelta(days=2)
    assert not Availability(clinic.clinic, at(wednesday, "00:00"), at(wednesday, "23:00")).fits(
        clinic.integration, clinic.therapist, None, None, at(wednesday, "12:00")
    )
