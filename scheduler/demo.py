"""Demo calendar rows for ``seed_demo``: feed addresses, an invite preference, a therapist's own calendar.

Idempotent like the rest of the demo: addresses are issued only to clinicians
without a live one (and returned, since that is the only time they can be
printed), and the sample calendar is registered and read once.
"""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from scheduler import tokens
from scheduler.external_calendars import busy_intervals, store_busy_blocks
from scheduler.feeds import feed_url
from scheduler.models import Clinic, Clinician, ExternalCalendar, InvitePreference

# Served at /static/demo/own-calendar.ics by the development server, so the
# worker's 15-minute reads work in the demo; read from disk when seeding.
SAMPLE_CALENDAR = Path(__file__).resolve().parent.parent / "static" / "demo" / "own-calendar.ics"


def seed_calendars(clinic: Clinic) -> list[tuple[Clinician, str]]:
    """Create the demo's calendar rows; (clinician, feed URL) for each address issued now."""
    clinicians = list(clinic.clinicians.filter(is_active=True).order_by("display_name"))
    issued = []
    for clinician in clinicians:
        if tokens.active(clinician) is None:
            _, raw = tokens.issue(clinician)
            issued.append((clinician, feed_url(raw)))
    prescriber = next((c for c in clinicians if c.is_prescriber), None)
    if prescriber is not None:
        InvitePreference.objects.get_or_create(clinician=prescriber)
    therapist = next((c for c in clinicians if c.is_therapist), None)
    if therapist is not None:
        calendar, _ = ExternalCalendar.objects.get_or_create(
            clinician=therapist,
            defaults={"url": f"{settings.SITE_URL}/static/demo/own-calendar.ics"},
        )
        if not calendar.busy_blocks.exists():
            now = timezone.now()
            intervals = busy_intervals(
                SAMPLE_CALENDAR.read_bytes(),
                clinic.tz,
                now - timedelta(days=1),
                now + timedelta(days=settings.BOOKING_HORIZON_DAYS + 1),
            )
            store_busy_blocks(calendar, intervals, etag="", now=now)
    return issued
