"""The addresses that leave the site: in texts, emails, calendar entries and admin notices.

Each is a named URL reversed here, on ``SITE_URL``, and nowhere else. The
pages themselves belong to the web app (``desk``); their URL names are the
whole contract, so this app imports nothing from it.
"""

from datetime import tzinfo

from django.conf import settings
from django.urls import reverse

from scheduler.models import Visit


def patient_page_url(raw_token: str | None = None) -> str:
    """The patient's private page, or without a token its entrance (how to get a link).

    Calendar entries and invites link to the entrance: they are kept, synced
    and shared for years, far longer than a private link should live.
    """
    args = [raw_token] if raw_token else []
    return settings.SITE_URL + reverse("patient_page", args=args)


def feed_url(raw_token: str) -> str:
    return settings.SITE_URL + reverse("calendar_feed", args=[raw_token])


def clinician_visit_url(visit: Visit, clinic_zone: tzinfo) -> str:
    """The visit on its clinician's calendar page (its week in the clinic's zone).

    Every clinician can open that page, unlike the admin, and it shows the
    visit as the clinician's own.
    """
    local_day = visit.start.astimezone(clinic_zone).date()
    return (
        f"{settings.SITE_URL}{reverse('my_calendar')}?week={local_day.isoformat()}#visit-{visit.pk}"
    )
