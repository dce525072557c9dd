"""A clinic's public holidays, from the ``holidays`` library, by its country and state.

The clinic is closed on them unless it opens anyway (a ``Closure`` row of kind
*open*; ``scheduler.availability`` puts the two together). Holidays are
computed, never stored: the library's maintainers follow each country's laws
(days observed on a Friday or Monday, holidays added or moved), and a newer
version brings the changes with it. One year of one country costs well under
a millisecond, and each (country, state, year) is computed once per process.
"""

from collections.abc import Mapping
from datetime import date
from functools import lru_cache

import holidays
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import to_locale


def default_country() -> str:
    return settings.CLINIC_COUNTRY


def default_subdivision() -> str:
    return settings.CLINIC_SUBDIVISION


@lru_cache(maxsize=1)
def supported() -> dict[str, list[str]]:
    """Country code -> codes of its states or other subdivisions, as the library knows them."""
    return holidays.list_supported_countries()


def validate_country(value: str) -> None:
    if value not in supported():
        raise ValidationError(
            f"{value!r} is not a country code the holiday calendar knows (US, CA, GB, DE, ...)."
        )


def subdivision_problem(country: str, subdivision: str) -> str | None:
    """Why ``subdivision`` is no state or region of ``country``, or None (empty is fine)."""
    codes = supported().get(country)
    if not subdivision or codes is None or subdivision in codes:
        return None
    return f"{subdivision!r} is not a state or region of {country}; one of: {', '.join(codes)}."


@lru_cache(maxsize=256)
def public_holidays(country: str, subdivision: str, year: int) -> Mapping[date, str]:
    """The public holidays of one year: date -> name ("Thanksgiving Day").

    Names in the site's language where the library has it, else the country's
    own: left to itself the library would pick by the server's locale.
    """
    region = subdivision or None
    language = to_locale(settings.LANGUAGE_CODE)
    calendar = holidays.country_holidays(country, subdiv=region)
    if language not in calendar.supported_languages:
        language = calendar.default_language
    return dict(holidays.country_holidays(country, subdiv=region, years=year, language=language))


def holidays_between(country: str, subdivision: str, first: date, last: date) -> dict[date, str]:
    """Public holidays from ``first`` to ``last`` (local dates, both included)."""
    found = {}
    # A holiday observed across New Year (1 January on a Saturday, kept on the
    # Friday before) may be listed under the other year.
    for year in range(first.year - 1, last.year + 2):
        for day, name in public_holidays(country, subdivision, year).items():
            if first <= day <= last:
                found[day] = name
    return found
