"""When a patient may be messaged: quiet hours in their own zone and text limits.

docs/rules.md: nothing between 21:00 and 08:00 in the patient's zone; without
the patient's express consent to care texts, at most one text a day and three
a week (the FCC's conditions for healthcare texts sent without it). Both are
settings; MessagingPreferences can change the quiet hours for one patient, or
lower their limits at their request.
"""

import operator
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import reduce
from typing import NamedTuple

from django.conf import settings
from django.db.models import Count, Q

from notifications.models import (
    ACCEPTED_STATUSES,
    ESSENTIAL_PURPOSES,
    WAITING_STATUSES,
    Channel,
    Message,
    MessagingPreferences,
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
    """The most texts a patient gets a day and in any 7 days; None: no limit."""

    per_day: int | None
    per_week: int | None

    @property
    def unlimited(self) -> bool:
        return self.per_day is None and self.per_week is None


def text_limits_for(patient: Patient) -> TextLimits:
    """The clinic's limits without express consent, none with it; and those the patient set."""
    preferences = preferences_of(patient)
    own_day = preferences.sms_per_day if preferences else None
    own_week = preferences.sms_per_week if preferences else None
    if patient.has_express_sms_consent:
        return TextLimits(own_day or None, own_week or None)
    # Stricter limits the patient asked for apply with or without consent.
    per_day, per_week = settings.SMS_DAILY_CAP, settings.SMS_WEEKLY_CAP
    return TextLimits(min(per_day, own_day or per_day), min(per_week, own_week or per_week))


class TextCounts(NamedTuple):
    """A patient's texts that count against their limits (a tuple: a batch adds thousands)."""

    sent_today: int = 0
    sent_week: int = 0
    coming_today: int = 0
    coming_week: int = 0

    def __add__(self, other: "TextCounts") -> "TextCounts":
        return TextCounts(*map(operator.add, self, other))

    def __sub__(self, other: "TextCounts") -> "TextCounts":
        return TextCounts(*map(operator.sub, self, other))


def local_day(now: datetime, tz_name: str) -> tuple[datetime, datetime]:
    """Where the day containing ``now`` begins and ends in the zone ``tz_name``."""
    local = now.astimezone(zone(tz_name))
    return (
        datetime.combine(local.date(), time(0), tzinfo=local.tzinfo),
        datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=local.tzinfo),
    )


class TextLedger:
    """How many texts count against each patient's limits at ``now``.

    Counts texts the provider accepted in the patient's local day and in the
    past 7 days, plus essential texts (video links, changes, preparation)
    still to come in the rest of the day and the next 7 days: those always go,
    so a plain reminder leaves room for them.

    ``load`` counts for any number of patients in one query (the database
    counts: a patient may have had many texts). A dispatch batch then
    ``note``s what it decides for each of its own texts, in the order it
    decides, so a text the batch sends counts against the next one as if it
    had been sent already: the limits hold within a batch as between passes.
    """

    def __init__(self, now: datetime, counts: dict[int, TextCounts]):
        self.now = now
        self.counts = counts  # by patient id
        self.followed: dict[int, tuple] = {}  # message id -> (status, sent_at, send_at) now

    @classmethod
    def load(cls, patients: Iterable[Patient], now: datetime) -> "TextLedger":
        zones: dict[str, list[int]] = defaultdict(list)
        for patient in {patient.pk: patient for patient in patients}.values():
            zones[patient.time_zone].append(patient.pk)
        counts = {pk: TextCounts() for ids in zones.values() for pk in ids}
        if not counts:
            return cls(now, counts)
        sent_today, coming_today = [], []
        for tz_name, ids in zones.items():
            day_start, day_end = local_day(now, tz_name)
            sent_today.append(Q(patient_id__in=ids, sent_at__gte=day_start, sent_at__lt=day_end))
            coming_today.append(Q(patient_id__in=ids, send_at__lt=day_end))
        accepted = Q(status__in=ACCEPTED_STATUSES)
        waiting = Q(status__in=WAITING_STATUSES, purpose__in=ESSENTIAL_PURPOSES)
        rows = (
            # A message that went in another's text is not a text of its own.
            # Nor is a text to a clinician about the patient one of the patient's.
            Message.objects.filter(
                patient_id__in=counts, channel=Channel.SMS, combined_into=None, clinician=None
            )
            .values("patient_id")
            .order_by()
            .annotate(
                sent_today=Count("pk", filter=accepted & reduce(operator.or_, sent_today)),
                sent_week=Count("pk", filter=accepted & Q(sent_at__gt=now - WEEK)),
                coming_today=Count("pk", filter=waiting & reduce(operator.or_, coming_today)),
                coming_week=Count("pk", filter=waiting & Q(send_at__lt=now + WEEK)),
            )
        )
        for row in rows:
            patient_id = row.pop("patient_id")
            counts[patient_id] = TextCounts(**row)
        return cls(now, counts)

    def counted(self, message: Message, status: str, sent_at, send_at) -> TextCounts:
        """What ``message`` adds to its patient's counts in this state: ``load``'s filters, in memory."""
        if message.combined_into_id is not None:
            return TextCounts()
        if status in ACCEPTED_STATUSES and sent_at is not None:
            day_start, day_end = local_day(self.now, message.patient.time_zone)
            return TextCounts(
                sent_today=int(day_start <= sent_at < day_end),
                sent_week=int(sent_at > self.now - WEEK),
            )
        if status in WAITING_STATUSES and message.purpose in ESSENTIAL_PURPOSES:
            _, day_end = local_day(self.now, message.patient.time_zone)
            return TextCounts(
                coming_today=int(send_at < day_end), coming_week=int(send_at < self.now + WEEK)
            )
        return TextCounts()

    def state(self, message: Message) -> tuple:
        return self.followed.get(message.pk, (message.status, message.sent_at, message.send_at))

    def note(self, message: Message, **changes) -> None:
        """What became of ``message`` (its new status, sent_at or send_at), for the next count."""
        if (
            message.patient_id not in self.counts
            or message.channel != Channel.SMS
            or message.to_clinician
        ):
            return
        before = self.state(message)
        after = tuple(
            changes.get(field, value)
            for field, value in zip(("status", "sent_at", "send_at"), before, strict=True)
        )
        self.followed[message.pk] = after
        self.counts[message.patient_id] += self.counted(message, *after) - self.counted(
            message, *before
        )

    def problem(self, message: Message) -> str:
        """Why sending this plain reminder now would exceed the patient's limits ("" if it would not)."""
        limits = text_limits_for(message.patient)
        if limits.unlimited:
            return ""
        # The text itself does not count against itself.
        counts = self.counts[message.patient_id] - self.counted(message, *self.state(message))
        if (
            limits.per_day is not None
            and counts.sent_today + counts.coming_today + 1 > limits.per_day
        ):
            return (
                f"Daily text limit ({limits.per_day}) reached: {counts.sent_today} sent today, "
                f"{counts.coming_today} texts that always go still due today."
            )
        if (
            limits.per_week is not None
            and counts.sent_week + counts.coming_week + 1 > limits.per_week
        ):
            return (
                f"Weekly text limit ({limits.per_week}) reached: {counts.sent_week} sent in the "
                f"past 7 days, {counts.coming_week} texts that always go due in the next 7."
            )
        return ""
