"""Local wall-clock time in a named zone, refusing times that do not exist or are ambiguous.

``datetime.combine`` with a zoneinfo zone silently accepts 02:30 on a spring-forward
day (a time no clock shows) and silently picks the first of the two 01:30s on a
fall-back day. A clinic must never get a visit at a shifted time, so both are errors
here unless the caller chooses explicitly.
"""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.core.exceptions import ValidationError


class LocalTimeError(ValueError):
    """A wall-clock time that cannot be turned into one instant."""


class NonexistentLocalTime(LocalTimeError):
    pass


class AmbiguousLocalTime(LocalTimeError):
    pass


# The days anyone means. A page, form or filter given a day outside them was
# given a typo (9999) or a probe, and date arithmetic near year 1 or 9999
# overflows, a server error, instead of answering.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2199, 12, 31)


def day_input() -> forms.DateInput:
    """The browser's date picker, its value in ISO 8601 whatever the language: a picker
    shows nothing for "03/12/2026", which is how Spanish writes a date."""
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


def validate_calendar_day(day: date) -> None:
    """Refuse a day outside FIRST_DAY..LAST_DAY, saying which years are accepted."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValidationError(
            "Give a date between %(first)s and %(last)s.",
            code="out_of_range",
            params={"first": FIRST_DAY.year, "last": LAST_DAY.year},
        )


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            "%(name)s is not a time zone name (for example America/New_York).",
            code="invalid",
            params={"name": name},
        ) from None


def validate_time_zone(name: str) -> None:
    zone(name)


def is_nonexistent(local: datetime) -> bool:
    round_trip = local.astimezone(UTC).astimezone(local.tzinfo)
    return round_trip.replace(tzinfo=None) != local.replace(tzinfo=None)


def is_ambiguous(local: datetime) -> bool:
    return local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()


def local_datetime(day: date, at: time, tz: ZoneInfo, *, fold: int | None = None) -> datetime:
    """The instant at wall-clock ``at`` on ``day`` in ``tz``.

    ``fold`` picks one of two repeated times on a fall-back day: 0 the first
    (still summer time), 1 the second. Without it an ambiguous time is an error.
    """
    local = datetime.combine(day, at, tzinfo=tz)
    if is_nonexistent(local):
        raise NonexistentLocalTime(
            f"{at:%H:%M} on {day:%Y-%m-%d} does not exist in {tz.key}: "
            "clocks spring forward then. Choose a time outside the skipped hour."
        )
    if is_ambiguous(local):
        if fold is None:
            raise AmbiguousLocalTime(
                f"{at:%H:%M} on {day:%Y-%m-%d} happens twice in {tz.key}: clocks fall back "
                "then. Say which one: the first (summer time) or the second (standard time)."
            )
        local = local.replace(fold=fold)
    return local


def require_aware(value: datetime, what: str = "time") -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"The {what} {value.isoformat()} has no time zone; give an aware datetime."
        )
    return value
