"""Feeds as a real calendar client sees them: vdirsyncer syncs a feed served on loopback
into a folder (its ``http`` storage into a ``filesystem`` vdir) and khal lists it.

vdirsyncer splits a feed into one item per event; a calendar-level UID (RFC 7986)
made it keep a single event of 24. The feed crosses the US change to summer time,
and every visit must still show at 09:00 local.

Both are Debian packages (``.ci/run`` installs them); without them these tests
skip and say so.
"""

import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest

from scheduler import booking, tokens
from scheduler.models import TokenPurpose
from tests.conftest import SmallClinic, at

pytestmark = pytest.mark.skipif(
    not (shutil.which("vdirsyncer") and shutil.which("khal")),
    reason="vdirsyncer and khal are not installed (apt-get install vdirsyncer khal)",
)

# Weekdays from 4 March 2030: the US moves to summer time on Sunday 10 March.
FIRST_DAY = date(2030, 3, 4)
WEEKDAYS = [
    FIRST_DAY + timedelta(days=n)
    for n in range(40)
    if (FIRST_DAY + timedelta(days=n)).weekday() < 5
]


def sync_and_list(tmp_path: Path, url: str, zone: str, first: date, last: date) -> list[str]:
    """What khal lists of the feed at ``url`` once vdirsyncer has synced it: one line an event."""
    vdir = tmp_path / "calendar"
    vdir.mkdir()
    (tmp_path / "vdirsyncer.conf").write_text(
        f"""[general]
status_path = "{tmp_path}/status/"

[pair feed]
a = "feed_remote"
b = "feed_local"
collections = null

[storage feed_remote]
type = "http"
url = "{url}"

[storage feed_local]
type = "filesystem"
path = "{vdir}/"
fileext = ".ics"
"""
    )
    (tmp_path / "khal.conf").write_text(
        f"""[calendars]
[[feed]]
path = {vdir}/
type = calendar

[locale]
local_timezone = {zone}
default_timezone = {zone}
timeformat = %H:%M
dateformat = %Y-%m-%d
longdateformat = %Y-%m-%d
datetimeformat = %Y-%m-%d %H:%M
longdatetimeformat = %Y-%m-%d %H:%M
"""
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    vdirsyncer = ["vdirsyncer", "-c", str(tmp_path / "vdirsyncer.conf")]
    for command in ("discover", "sync"):
        subprocess.run(
            [*vdirsyncer, command], env=env, input="y\n" * 3, text=True, check=True, timeout=60
        )
    listed = subprocess.run(
        [
            "khal",
            "-c",
            str(tmp_path / "khal.conf"),
            "list",
            "--format",
            "{start} {title}",
            "--day-format",
            "",
            first.isoformat(),
            (last + timedelta(days=1)).isoformat(),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [line for line in listed.stdout.splitlines() if line.strip()]


@pytest.fixture
def weeks_of_visits(transactional_db, now):
    """24 integration visits at 09:00 New York time, across the change to summer time."""
    clinic = SmallClinic()
    patient = clinic.patient("Avery", "Applewood")
    visits = [
        booking.book(
            patient=patient,
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=at(day, "09:00"),
        )
        for day in WEEKDAYS[:24]
    ]
    return clinic, patient, visits


def test_khal_lists_every_event_of_a_clinicians_feed_at_its_local_time(
    tmp_path, live_server, weeks_of_visits
):
    clinic, _, visits = weeks_of_visits
    _, raw = tokens.issue(clinic.therapist)
    url = f"{live_server.url}/calendars/{raw}.ics"
    listed = sync_and_list(tmp_path, url, "America/New_York", WEEKDAYS[0], WEEKDAYS[23])
    assert len(listed) == len(visits) == 24
    assert all(line.split(" ", 2)[1] == "09:00" for line in listed), listed
    assert {line.split(" ", 1)[0] for line in listed} == {day.isoformat() for day in WEEKDAYS[:24]}


def test_khal_lists_every_event_of_a_patients_feed_in_the_patients_zone(
    tmp_path, live_server, weeks_of_visits
):
    _, patient, visits = weeks_of_visits
    patient.time_zone = "America/Los_Angeles"
    patient.save(update_fields=["time_zone"])
    _, raw = tokens.issue(patient, TokenPurpose.CALENDAR_FEED)
    url = f"{live_server.url}/calendars/{raw}.ics"
    listed = sync_and_list(tmp_path, url, "America/Los_Angeles", WEEKDAYS[0], WEEKDAYS[23])
    assert len(listed) == len(visits)
    # 09:00 in New York is 06:00 in Los Angeles, before and after both change clocks.
    assert all(line.split(" ", 2)[1] == "06:00" for line in listed), listed
