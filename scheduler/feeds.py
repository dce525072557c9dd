"""Subscription feeds: a clinician's or a patient's visits at ``/calendars/<token>.ics``.

Calendar apps poll feeds forever, most of them for nothing new. So a feed has a
cheap validator (one aggregate query: the latest change and the number of
visits in the window) and a conditional request is answered 304 from it alone;
only a changed feed is rebuilt, in one more query whatever its size.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.db.models import Count, Max, Prefetch, Q, QuerySet, Sum
from django.utils import translation

from scheduler.calendars import STATUS, Audience, build_calendar
from scheduler.models import AccessToken, Clinic, Visit, VisitParticipant, VisitStatus
from scheduler.timezones import zone

# Statuses shown as STATUS:CONFIRMED (see scheduler.calendars.STATUS).
CONFIRMED_STATUSES = [status for status, shown in STATUS.items() if shown == "CONFIRMED"]

# Raise when the wording or layout of feeds changes, so that every client's
# cached copy is replaced even though no visit changed.
FEED_FORMAT = 1


@dataclass(frozen=True)
class Feed:
    """The feed a live calendar token opens (load the token with ``tokens.verify``)."""

    token: AccessToken

    @property
    def audience(self) -> Audience:
        return Audience.CLINICIAN if self.token.clinician_id else Audience.PATIENT

    @property
    def owner(self):
        return self.token.owner

    @property
    def clinic(self) -> Clinic:
        return self.owner.clinic

    @property
    def tz(self):
        if self.audience == Audience.CLINICIAN:
            return self.clinic.tz
        return zone(self.owner.time_zone)

    @property
    def language(self) -> str:
        """A patient reads their entries in their language; clinicians in the staff's."""
        if self.audience == Audience.CLINICIAN:
            return settings.LANGUAGE_CODE
        return self.owner.language

    @property
    def name(self) -> str:
        if self.audience == Audience.CLINICIAN:
            return f"{self.clinic.name}: {self.owner.display_name}"
        return self.clinic.name

    def visits(self, now: datetime) -> QuerySet:
        """Visits in the window: proposed ones never, cancelled ones for a while."""
        # A clinician's: every visit they are on, leading or not.
        owner = (
            {"participants__clinician": self.owner}
            if self.audience == Audience.CLINICIAN
            else {"patient": self.owner}
        )
        cancelled_until = now - timedelta(days=settings.CALENDAR_CANCELLED_KEEP_DAYS)
        return (
            Visit.objects.filter(
                start__gte=now - timedelta(days=settings.CALENDAR_FEED_PAST_DAYS),
                start__lt=now + timedelta(days=settings.CALENDAR_FEED_FUTURE_DAYS),
                **owner,
            )
            .scheduled()
            .exclude(Q(status=VisitStatus.CANCELLED) & Q(updated_at__lt=cancelled_until))
        )

    def validators(self, now: datetime) -> tuple[str, datetime]:
        """(ETag, Last-Modified) from one aggregate query.

        The count catches visits that left the window or were deleted; the
        day catches what the window's moving edges let in, and changes to
        clinic, room or clinician details that do not touch a visit row (they
        reach subscribers within a day).
        """
        # Counting "start" (never null), not the id: every column read here is
        # in the (owner, start, ...) index, so the database answers from it alone.
        summary = self.visits(now).aggregate(
            latest=Max("updated_at"),
            count=Count("start"),
            # Not the clock alone: web servers' clocks differ a little, and a
            # change stamped just behind the latest one would go unseen.
            sequences=Sum("sequence"),
            confirmed=Count("start", filter=Q(status__in=CONFIRMED_STATUSES)),
            cancelled=Count("start", filter=Q(status=VisitStatus.CANCELLED)),
            rides=Count("start", filter=Q(ride_home_arranged=True)),
        )
        today = now.astimezone(UTC).date()
        parts = [
            FEED_FORMAT,
            self.token.pk,
            self.clinic.calendar_detail,
            self.tz.key,
            self.language,
            settings.SITE_URL,
            summary["latest"].isoformat() if summary["latest"] else "-",
            summary["count"],
            summary["sequences"],
            summary["confirmed"],
            summary["cancelled"],
            summary["rides"],
            today.isoformat(),
        ]
        etag = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]
        last_modified = max(
            moment
            for moment in (
                summary["latest"],
                self.token.created_at,
                datetime.combine(today, time(0), tzinfo=UTC),
            )
            if moment is not None
        )
        return f'"{etag}"', last_modified

    def render(self, now: datetime) -> bytes:
        visits = self.visits(now).select_related(
            "visit_type__clinic", "clinician", "room", "patient"
        )
        if self.audience == Audience.CLINICIAN:
            # The team, for each event's span and its "Team:" line: one query.
            visits = visits.prefetch_related(
                Prefetch("participants", VisitParticipant.objects.select_related("clinician"))
            )
        with translation.override(self.language):
            return build_calendar(
                visits.order_by("start", "pk"),
                audience=self.audience,
                clinic=self.clinic,
                tz=self.tz,
                name=self.name,
                reader=self.owner if self.audience == Audience.CLINICIAN else None,
            )
