"""Visits as iCalendar (RFC 5545) events: the one place that decides what a calendar shows.

Feeds (``scheduler.feeds``) and email invites (``notifications.content``) both
build their calendars here, so the privacy wording and the RFC details cannot
drift apart between the two.

What an entry says depends on who reads it and on the clinic's
``calendar_detail`` (docs/rules.md, messaging rules): a synced calendar can be seen
by a partner, an assistant or a lock screen, so by default it never names the
treatment (no drug, route or "dosing"):

============  =====================================  ======================================
level         clinician's calendar                   patient's calendar
============  =====================================  ======================================
minimal       "Appointment", room or "Video"         "Appointment at <clinic>", no place
standard      "Session (AB)", room or video link     "Appointment at <clinic>", address or
                                                     video link, link to the patient page
full          "<visit type> - <patient name>"        "<visit type> at <clinic>", clinician
============  =====================================  ======================================

Clinician feeds and invites use the clinic's zone; patient feeds and invites use
the patient's own zone, as every other patient message does (docs/architecture.md
invariant 4). Either way the instant is the same; the zone only decides the
wall-clock time a client shows when it does not convert to its own.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from icalendar import Calendar, Timezone, vDuration

from scheduler.links import clinician_visit_url, patient_page_url
from scheduler.models import (
    CalendarDetail,
    Clinic,
    Clinician,
    Modality,
    Visit,
    VisitKind,
    VisitStatus,
)

PRODID = "-//KAP scheduler//Calendars//EN"


class Audience(StrEnum):
    CLINICIAN = "clinician"
    PATIENT = "patient"


class Method(StrEnum):
    """iTIP methods (RFC 5546) used in email invites; feeds carry no METHOD."""

    REQUEST = "REQUEST"
    CANCEL = "CANCEL"


# What each kind of visit is called in a clinician's calendar: enough to plan a
# day, nothing that names the treatment to someone looking over a shoulder.
CLINICIAN_KIND_WORDS = {
    VisitKind.SCREENING: "Evaluation",
    VisitKind.PREPARATION: "Preparation",
    VisitKind.DOSING: "Session",
    VisitKind.INTEGRATION: "Integration",
    VisitKind.MAINTENANCE: "Check-in",
}
PATIENT_SESSION_WORDS = {
    Modality.IN_PERSON: gettext_lazy("In-clinic session"),
    Modality.TELEHEALTH: gettext_lazy("Video session"),
}

STATUS = {
    VisitStatus.BOOKED: "TENTATIVE",
    VisitStatus.CONFIRMED: "CONFIRMED",
    VisitStatus.CHECKED_IN: "CONFIRMED",
    VisitStatus.COMPLETED: "CONFIRMED",
    # The time was held and the clinician was there; RFC 5545 has no "missed".
    VisitStatus.NO_SHOW: "CONFIRMED",
    VisitStatus.CANCELLED: "CANCELLED",
}


@dataclass(frozen=True)
class EventText:
    summary: str
    location: str
    description: str
    url: str


@dataclass(frozen=True)
class Invitee:
    name: str
    email: str


def _one_line(text: str) -> str:
    return ", ".join(line.strip() for line in text.splitlines() if line.strip())


def _member_text(part, tz) -> str:
    """'Rosa Finch, RN (nurse, leads)', 'Priya Fenwick (therapist, 09:00-10:00)'."""
    notes = [part.get_role_display().lower()]
    if part.is_lead:
        notes.append("leads")
    elif part.is_partial:
        local_start, local_end = part.start.astimezone(tz), part.end.astimezone(tz)
        notes.append(f"{local_start:%H:%M}-{local_end:%H:%M}")
    return f"{part.clinician} ({', '.join(notes)})"


def _clinician_text(visit: Visit, clinic: Clinic, detail: str) -> EventText:
    visit_type = visit.visit_type
    telehealth = visit_type.modality == Modality.TELEHEALTH
    link = visit.clinician.telehealth_link
    staff_url = clinician_visit_url(visit, clinic.tz)
    kind = CLINICIAN_KIND_WORDS.get(visit_type.kind, "Appointment")
    room = visit.room.name if visit.room_id else ""
    if detail == CalendarDetail.MINIMAL:
        return EventText(
            summary="Appointment",
            location="Video" if telehealth else room,
            description=f"Open in the scheduler: {staff_url}",
            url=staff_url,
        )
    lines = []
    if detail == CalendarDetail.FULL:
        summary = f"{visit_type.name} - {visit.patient}"
        lines.append(f"{visit_type.name} with {visit.patient}.")
        if visit_type.needs_ride_home:
            ride = "arranged" if visit.ride_home_arranged else "NOT arranged yet"
            lines.append(f"Ride home: {ride}.")
    else:
        summary = f"{kind} ({visit.patient.initials})"
        lines.append(f"{kind}, {visit_type.get_modality_display().lower()}.")
    if len(team := visit.staff) > 1:
        lines.append("Team: " + "; ".join(_member_text(p, clinic.tz) for p in team) + ".")
    if telehealth and link:
        lines.append(f"Video: {link}")
    lines.append(f"Open in the scheduler: {staff_url}")
    return EventText(
        summary=summary,
        location=(link or "Video") if telehealth else room,
        description="\n".join(lines),
        url=staff_url,
    )


def _patient_text(visit: Visit, clinic: Clinic, detail: str) -> EventText:
    visit_type = visit.visit_type
    telehealth = visit_type.modality == Modality.TELEHEALTH
    link = visit.clinician.telehealth_link
    page = patient_page_url()
    # In the active language: the patient's, where their feed or invite is built.
    questions = _("Questions or changes: call %(clinic)s at %(phone)s.") % {
        "clinic": clinic.name,
        "phone": clinic.phone,
    }
    summary = _("Appointment at %(clinic)s") % {"clinic": clinic.name}
    if detail == CalendarDetail.MINIMAL:
        return EventText(
            summary=summary,
            location="",
            description=_("Details: %(link)s") % {"link": page} + f"\n{questions}",
            url=page,
        )
    lines = [str(PATIENT_SESSION_WORDS.get(visit_type.modality, _("Appointment"))) + "."]
    if detail == CalendarDetail.FULL:
        summary = _("%(visit_type)s at %(clinic)s") % {
            "visit_type": visit_type.name,
            "clinic": clinic.name,
        }
        lines.append(_("With %(clinician)s.") % {"clinician": visit.clinician})
    if telehealth and link:
        lines.append(_("Join by video: %(link)s") % {"link": link})
    lines += [_("Details and preparation: %(link)s") % {"link": page}, questions]
    place = (link or _("Video")) if telehealth else (_one_line(clinic.address) or clinic.name)
    return EventText(summary=summary, location=place, description="\n".join(lines), url=page)


def event_text(
    visit: Visit, audience: Audience, clinic: Clinic, detail: str, *, cancelled: bool = False
) -> EventText:
    """What the entry for ``visit`` says to ``audience`` at the clinic's detail level.

    ``cancelled``: the entry is withdrawn for this reader (an iTIP CANCEL),
    even if the visit itself goes on (it moved to another clinician).
    """
    if audience == Audience.CLINICIAN:
        text = _clinician_text(visit, clinic, detail)
    else:
        text = _patient_text(visit, clinic, detail)
    if cancelled or visit.status == VisitStatus.CANCELLED:
        # Some clients show a cancelled event until they drop it; say so plainly.
        text = EventText(
            _("Cancelled: %(summary)s") % {"summary": text.summary},
            text.location,
            text.description,
            text.url,
        )
    return text


# -- writing (RFC 5545 3.1-3.3) ----------------------------------------------------
#
# Events are written here rather than built as icalendar components: a feed of
# 2,000 visits took 2.6 times as long to build and serialise through
# icalendar's objects as icalendar's own to_ical() of the finished calendar.
# The calendar's header and VTIMEZONE still come from icalendar; the tests
# read every feed and invite back with two strict parsers (ical, vobject).

UTC_ZONES = {"UTC", "Etc/UTC"}


def _text(value: str) -> str:
    """A TEXT value (RFC 5545 3.3.11)."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def _param(value: str) -> str:
    """A parameter value (3.2), quoted unless plain; DQUOTE cannot appear inside one."""
    value = value.replace('"', "'")
    return f'"{value}"' if any(c in value for c in ":;, ") else value


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _date_time(name: str, moment: datetime, tz: ZoneInfo) -> str:
    if tz.key in UTC_ZONES:
        return f"{name}:{_utc(moment)}"
    return f"{name};TZID={tz.key}:{moment.astimezone(tz):%Y%m%dT%H%M%S}"


def _fold(line: str) -> bytes:
    """A content line folded at 75 octets, never inside a UTF-8 character (3.1)."""
    data = line.encode()
    if len(data) <= 75:
        return data + b"\r\n"
    if len(data) == len(line):  # ASCII: octets are characters
        parts = [data[:75]] + [data[i : i + 74] for i in range(75, len(data), 74)]
        return b"\r\n ".join(parts) + b"\r\n"
    parts, current, size, limit = [], [], 0, 75
    for char in line:
        width = len(char.encode())
        if size + width > limit:
            parts.append("".join(current))
            current, size, limit = [], 0, 74
        current.append(char)
        size += width
    parts.append("".join(current))
    return "\r\n ".join(parts).encode() + b"\r\n"


def _address(name: str, invitee: Invitee, params: str = "") -> str:
    return f"{name};CN={_param(invitee.name)}{params}:mailto:{invitee.email}"


def visit_event(
    visit: Visit,
    text: EventText,
    tz: ZoneInfo,
    *,
    stamp: datetime,
    organizer: Invitee | None = None,
    attendee: Invitee | None = None,
    cancelled: bool = False,
    reader: Clinician | None = None,
) -> bytes:
    """One VEVENT, folded, with CRLF line ends; ``cancelled`` as in ``event_text``.

    For a ``reader`` on the visit's team, the event spans their part of it.
    """
    cancelled = cancelled or visit.status == VisitStatus.CANCELLED
    start, end = visit.span_for(reader)
    lines = [
        "BEGIN:VEVENT",
        f"UID:{_text(visit.uid)}",
        f"DTSTAMP:{_utc(stamp)}",
        f"SEQUENCE:{visit.sequence}",
        _date_time("DTSTART", start, tz),
        _date_time("DTEND", end, tz),
        f"SUMMARY:{_text(text.summary)}",
    ]
    if text.location:
        lines.append(f"LOCATION:{_text(text.location)}")
    lines += [
        f"DESCRIPTION:{_text(text.description)}",
        f"URL:{text.url}",
        f"STATUS:{'CANCELLED' if cancelled else STATUS.get(visit.status, 'TENTATIVE')}",
        # A cancelled visit no longer makes anyone busy.
        f"TRANSP:{'TRANSPARENT' if cancelled else 'OPAQUE'}",
        f"CREATED:{_utc(visit.created_at)}",
        f"LAST-MODIFIED:{_utc(visit.updated_at)}",
    ]
    if organizer is not None:
        lines.append(_address("ORGANIZER", organizer))
    if attendee is not None:
        # We do not process replies (patients confirm by text or on their
        # page), so no RSVP is asked for; the attendee has not answered yet.
        lines.append(
            _address("ATTENDEE", attendee, ";ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=FALSE")
        )
    lines.append("END:VEVENT")
    return b"".join(_fold(line) for line in lines)


def organizer_for(clinic: Clinic) -> Invitee:
    _, email = parseaddr(settings.DEFAULT_FROM_EMAIL)
    return Invitee(clinic.name, email)


def build_calendar(
    visits: Iterable[Visit],
    *,
    audience: Audience,
    clinic: Clinic,
    tz: ZoneInfo,
    name: str = "",
    method: Method | None = None,
    attendee: Invitee | None = None,
    now: datetime | None = None,
    reader: Clinician | None = None,
) -> bytes:
    """A VCALENDAR of ``visits`` as ``audience`` may see them, as iCalendar bytes.

    ``reader``: the clinician whose calendar it is: each event spans their part
    of the visit (prefetch ``participants`` for many visits).

    Without ``method`` it is a subscription feed: DTSTAMP is each visit's last
    change (RFC 5545 3.8.7.2 for calendars without METHOD), no ORGANIZER or
    attendees, and a suggested refresh interval. With ``method`` it is an iTIP
    message (RFC 5546) for ``attendee``, stamped ``now``; with ``Method.CANCEL``
    its events are CANCELLED whatever the visits' status (a visit that moved to
    another clinician goes on, but not in the calendar this CANCEL is for).
    ``clinic`` organises an iTIP message (the visit's clinic); each event's
    text comes from its own visit's clinic (``Visit.clinic``).
    """
    cancelled = method == Method.CANCEL
    calendar = Calendar.new(prodid=PRODID, calscale="GREGORIAN", method=method)
    # Calendar.new adds a calendar-level UID (RFC 7986). Clients that split a
    # feed into events by UID take it for every event's: vdirsyncer (and so
    # khal) kept 1 event of a 24-event feed. Nothing needs it; events have theirs.
    calendar.pop("UID", None)
    if name:
        calendar.calendar_name = name
    organizer = None
    if method is None:
        refresh = timedelta(minutes=settings.CALENDAR_FEED_REFRESH_MINUTES)
        # RFC 7986 wants VALUE=DURATION spelled out; X-PUBLISHED-TTL is Microsoft's and Apple's.
        calendar.add("REFRESH-INTERVAL", vDuration(refresh), parameters={"VALUE": "DURATION"})
        calendar.add("X-PUBLISHED-TTL", vDuration(refresh))
    else:
        organizer = organizer_for(clinic)
    events = []
    first = last = None
    for visit in visits:
        # Each entry names where its visit is held (a patient may be booked at
        # another clinic of the organisation), at that clinic's detail level.
        where = visit.clinic
        text = event_text(visit, audience, where, where.calendar_detail, cancelled=cancelled)
        stamp = visit.updated_at if method is None else now
        events.append(
            visit_event(
                visit,
                text,
                tz,
                stamp=stamp,
                organizer=organizer,
                attendee=attendee,
                cancelled=cancelled,
                reader=reader,
            )
        )
        first = min(first or visit.start, visit.start)
        last = max(last or visit.end, visit.end)
    if first is not None and tz.key not in UTC_ZONES:
        # Only the transitions the events need: a VTIMEZONE from 1970 on would
        # make every feed kilobytes longer and slower to build.
        calendar.add_component(
            Timezone.from_tzid(
                tz.key,
                first_date=first.astimezone(tz).date() - timedelta(days=1),
                last_date=last.astimezone(tz).date() + timedelta(days=1),
            )
        )
    head = calendar.to_ical()
    end = b"END:VCALENDAR\r\n"
    return head[: -len(end)] + b"".join(events) + end
