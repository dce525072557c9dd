"""Email invites that calendar apps apply: booked, moved and cancelled visits.

A ``visit_changed`` receiver queues one django-q2 task per change, after the
booking committed; the task (never the web request) re-reads the visit, skips
if it has changed again since (a newer task carries the newer state) and sends
one email per recipient: the patient, if they take email, and the clinician, if
they asked for invites (``InvitePreference``).

Each email is what Gmail, Outlook and Apple Mail expect of an iMIP message
(RFC 6047): ``multipart/alternative`` with text, HTML and a
``text/calendar; method=...`` part whose method matches the calendar's METHOD,
plus the same calendar attached as ``invite.ics`` for clients that only look
at attachments. The calendar part is built by ``scheduler.calendars`` with the
same privacy wording as the feeds; the email text may say a little more (the
clinician's name) but never names the treatment either.
"""

import logging
from datetime import datetime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from django.utils import timezone
from django_q.tasks import async_task

from scheduler.booking import VisitChange
from scheduler.calendars import (
    Audience,
    Invitee,
    Method,
    build_calendar,
    event_text,
)
from scheduler.links import patient_page_url
from scheduler.models import InvitePreference, Modality, Visit, VisitStatus
from scheduler.timezones import zone

logger = logging.getLogger(__name__)

METHODS = {
    VisitChange.BOOKED: Method.REQUEST,
    VisitChange.MOVED: Method.REQUEST,
    VisitChange.CANCELLED: Method.CANCEL,
}


def queue_invites(sender, visit: Visit, change: str, **kwargs) -> None:
    """``visit_changed`` receiver: queue the invite task for changes calendars must hear of."""
    if change not in METHODS:
        return  # confirmations, check-ins, rides home: same time and place, no new SEQUENCE
    try:
        async_task(
            "scheduler.invites.send_invites",
            visit.pk,
            visit.sequence,
            str(change),
            group="calendar-invites",
        )
    except Exception:
        # The booking has committed; a broker outage must not make it look
        # failed to the front desk. Feeds still show the change.
        logger.exception("Could not queue calendar invites for visit %s", visit.pk)


class InviteEmail(EmailMultiAlternatives):
    """An email whose text/calendar alternative names its iTIP method, as clients require."""

    def __init__(self, *, method: Method, **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def message(self, *args, **kwargs):
        message = super().message(*args, **kwargs)
        for part in message.walk():
            if part.get_content_type() == "text/calendar":
                part.set_param("method", str(self.method))
        return message


def _when(start: datetime, end: datetime) -> str:
    return f"{start:%A, %B} {start.day}, {start:%Y}, {start:%H:%M}-{end:%H:%M} {start:%Z}".strip()


def invite(visit: Visit, audience: Audience, change: str, *, now: datetime) -> InviteEmail:
    """The invite, update or cancellation of ``visit`` for its patient or its clinician."""
    method = METHODS[VisitChange(change)]
    clinic = visit.patient.clinic
    if audience == Audience.PATIENT:
        tz = zone(visit.patient.time_zone)
        who = Invitee(visit.patient.first_name, visit.patient.email)
    else:
        tz = clinic.tz
        who = Invitee(visit.clinician.display_name, visit.clinician.user.email)
    ics = build_calendar(
        [visit], audience=audience, clinic=clinic, tz=tz, method=method, attendee=who, now=now
    )
    text = event_text(visit, audience, clinic, clinic.calendar_detail)
    start, end = visit.start.astimezone(tz), visit.end.astimezone(tz)
    context = {
        "audience": str(audience),
        "change": str(change),
        "name": who.name,
        "clinic": clinic,
        "when": _when(start, end),
        "summary": text.summary,
        "place": text.location,
        "telehealth": visit.visit_type.modality == Modality.TELEHEALTH,
        "clinician": visit.clinician.display_name,
        "details": text.description,
        "page": patient_page_url() if audience == Audience.PATIENT else text.url,
    }
    subject_when = f"{start:%a %b} {start.day}, {start:%H:%M}"
    subject = {
        VisitChange.BOOKED: f"{text.summary}: {subject_when}",
        VisitChange.MOVED: f"Moved: {text.summary}, now {subject_when}",
        VisitChange.CANCELLED: f"{text.summary} on {subject_when}",
    }[VisitChange(change)]
    email = InviteEmail(
        method=method,
        subject=subject,
        body=render_to_string("scheduler/email/invite.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[who.email],
        headers={"Auto-Submitted": "auto-generated"},
    )
    email.attach_alternative(render_to_string("scheduler/email/invite.html", context), "text/html")
    email.attach_alternative(ics.decode("utf-8"), "text/calendar")
    email.attach("invite.ics", ics, "application/ics")
    return email


def send_invites(visit_id: int, sequence: int, change: str) -> str:
    """Worker task: send the invites for one change of one visit, unless it is stale."""
    visit = (
        Visit.objects.select_related("patient__clinic", "visit_type", "clinician__user", "room")
        .filter(pk=visit_id)
        .first()
    )
    if visit is None:
        return "skipped: the visit is gone"
    if visit.sequence != sequence:
        return f"skipped: the visit changed again (sequence {visit.sequence}, not {sequence})"
    cancelled = visit.status == VisitStatus.CANCELLED
    if (METHODS[VisitChange(change)] == Method.CANCEL) != cancelled or (
        visit.status == VisitStatus.PROPOSED
    ):
        return f"skipped: the visit is {visit.get_status_display().lower()} now"
    audiences = []
    if visit.patient.email and visit.patient.contact_by_email:
        audiences.append(Audience.PATIENT)
    preference = InvitePreference.objects.filter(clinician_id=visit.clinician_id).first()
    if preference and preference.email_invites and visit.clinician.user.email:
        audiences.append(Audience.CLINICIAN)
    if not audiences:
        return "skipped: nobody takes calendar invites by email"
    now = timezone.now()
    emails = [invite(visit, audience, change, now=now) for audience in audiences]
    sent = get_connection().send_messages(emails)
    return f"sent {sent} {METHODS[VisitChange(change)]} invite(s): " + ", ".join(audiences)
