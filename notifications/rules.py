"""When a patient may be messaged: quiet hours in their own zone and text limits.

DOMAIN.md: nothing between 21:00 and 08:00 in the patient's zone; at most one
text a day and three a week unless the patient agreed to more. Both are
settings, and MessagingPreferences can change them for one patient.
"""

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.conf import settings
from django.db.models import Count, Q

from notifications.models import (
    ACCEPTED_STATUSES,
    ESSENTIAL_PURPOSES,
    Channel,
    Message,
    MessagingPreferences,
    Status,
)
from scheduler.models import Patient
from scheduler.timezones import zone

WEEK = timedelta(days=7)


def preferences_of(patient: Patient) -> MessagingPreferences | None:
    try:
        return patient.messaging_preferences
    except MessagingPreferences.DoesNotExist:
        return None


@dataclass(frozen=True)
class QuietHours:
    """A nightly stretch of wall-clock time, e.g. 21:00-08:00, in one zone."""

    start: time
    end: time
    tz_name: str

    @property
    def tz(self):
        return zone(self.tz_name)

    def _local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz)

    def _wraps(self) -> bool:
        return self.start > self.end

    def contains(self, moment: datetime) -> bool:
        now = self._local(moment).time()
        if self._wraps():
            return now >= self.start or now < self.end
        return self.start <= now < self.end

    def _at(self, day, at: time) -> datetime:
        # Quiet hours begin and end at evening and morning hours, never inside
        # the 01:00-03:00 stretch where clocks change, so the local time exists.
        return datetime.combine(day, at, tzinfo=self.tz)

    def began(self, moment: datetime) -> datetime:
        """When the quiet stretch containing ``moment`` began."""
        local = self._local(moment)
        day = local.date()
        if self._wraps() and local.time() < self.end:
            day -= timedelta(days=1)
        return self._at(day, self.start)

    def ends(self, moment: datetime) -> datetime:
        """When the quiet stretch containing ``moment`` ends."""
        local = self._local(moment)
        day = local.date()
        if self._wraps() and local.time() >= self.start:
            day += timedelta(days=1)
        return self._at(day, self.end)

    def last_moment_before(self, moment: datetime) -> datetime:
        """For a moment in quiet hours: the planned time the evening before.

        A margin before the quiet hours begin leaves room for a dispatch pass
        that runs late or for pacing a batch due at the same moment.
        """
        margin = timedelta(minutes=settings.QUIET_HOURS_MARGIN_MINUTES)
        return self.began(moment) - margin

    def next_allowed(self, moment: datetime) -> datetime:
        """``moment`` itself when allowed, else the end of its quiet stretch."""
        return self.ends(moment) if self.contains(moment) else moment


def quiet_hours_for(patient: Patient) -> QuietHours:
    preferences = preferences_of(patient)
    if preferences and preferences.quiet_hours_start and preferences.quiet_hours_end:
        start, end = preferences.quiet_hours_start, preferences.quiet_hours_end
    else:
        start = time.fromisoformat(settings.QUIET_HOURS_START)
        end = time.fromisoformat(settings.QUIET_HOURS_END)
    return QuietHours(start, end, patient.time_zone)


@dataclass(frozen=True)
class TextLimits:
    per_day: int
    per_week: int


def text_limits_for(patient: Patient) -> TextLimits:
    preferences = preferences_of(patient)
    per_day, per_week = settings.SMS_DAILY_CAP, settings.SMS_WEEKLY_CAP
    if preferences and preferences.more_texts_agreed_at:
        per_day = preferences.sms_per_day or per_day
        per_week = preferences.sms_per_week or per_week
    elif preferences:
        # Stricter limits the patient asked for need no agreement to apply.
        per_day = min(per_day, preferences.sms_per_day or per_day)
        per_week = min(per_week, preferences.sms_per_week or per_week)
    return TextLimits(per_day, per_week)


def text_limit_problem(message: Message, now: datetime) -> str:
    """Why sending this plain reminder now would exceed the patient's limits ("" if it would not).

    Counts texts the provider accepted in the patient's local day and in the
    past 7 days, plus essential texts (changes, preparation) still to come in
    the rest of the day and the next 7 days: those take priority, so a plain
    reminder leaves room for them. One query.
    """
    patient = message.patient
    limits = text_limits_for(patient)
    local = now.astimezone(zone(patient.time_zone))
    day_start = datetime.combine(local.date(), time(0), tzinfo=local.tzinfo)
    day_end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=local.tzinfo)
    waiting_essential = Q(
        status__in=(Status.PENDING, Status.CLAIMED), purpose__in=ESSENTIAL_PURPOSES
    )
    counts = (
        Message.objects.filter(patient=patient, channel=Channel.SMS)
        .exclude(pk=message.pk)
        .aggregate(
            sent_today=Count(
                "pk",
                filter=Q(status__in=ACCEPTED_STATUSES, sent_at__gte=day_start, sent_at__lt=day_end),
            ),
            sent_week=Count("pk", filter=Q(status__in=ACCEPTED_STATUSES, sent_at__gt=now - WEEK)),
            coming_today=Count("pk", filter=waiting_essential & Q(send_at__lt=day_end)),
            coming_week=Count("pk", filter=waiting_essential & Q(send_at__lt=now + WEEK)),
        )
    )
    if counts["sent_today"] + counts["coming_today"] + 1 > limits.per_day:
        return (
            f"Daily text limit ({limits.per_day}) reached: {counts['sent_today']} sent today, "
            f"{counts['coming_today']} preparation or change texts still due today."
        )
    if counts["sent_week"] + counts["coming_week"] + 1 > limits.per_week:
        return (
            f"Weekly text limit ({limits.per_week}) reached: {counts['sent_week']} sent in the "
            f"past 7 days, {counts['coming_week']} preparation or change texts due in the next 7."
        )
    return ""
