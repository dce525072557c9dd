"""Searching: parameters, FHIR's date prefixes, paging and the searchset Bundle.

Each resource type declares its parameters as ``SearchParam``s: a FHIR type
(for the CapabilityStatement) and a function turning one value into a ``Q``.
Values separated by commas are alternatives (OR); a parameter given twice must
hold both times (AND), as FHIR's search says. Unknown parameters are ignored
and left out of the ``self`` link, unless the client sends
``Prefer: handling=strict``, which turns them into a 400.
"""

import calendar
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from fhirapi.http import FhirError
from scheduler.models import is_row_id

DEFAULT_COUNT = 50
MOST_COUNT = 200
RESULT_PARAMETERS = {"_count", "_offset", "_include", "_format", "_total"}
DATE_PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb")


class SearchParam(NamedTuple):
    type: str  # FHIR SearchParamType: token, string, date, reference, number, uri
    to_q: Callable[[str, str | None], Q]  # (one value, modifier) -> condition
    documentation: str = ""


def token(value: str) -> tuple[str | None, str]:
    """``system|code`` -> (system, code); ``code`` -> (None, code); ``|code`` -> ("", code)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return system, code
    return None, value


def reference_id(value: str, resource_type: str) -> str:
    """The id in ``Patient/12``, ``12`` or a full URL ending in ``Patient/12``."""
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] != resource_type:
        raise FhirError(400, "invalid", f"{value!r} is not a {resource_type} reference.")
    return parts[-1]


def date_range(value: str, zone: ZoneInfo | None = None) -> tuple[str, datetime, datetime]:
    """(prefix, from, to) for a FHIR date search value; ``to`` is exclusive.

    A date without a time covers that whole day (month, year) in ``zone``,
    by default the current one, which the API sets to the client's clinic's
    (fhirapi.http.api_view): a system in Denver asking for 2026-12-08 means
    the clinic's own day.
    """
    zone = zone or timezone.get_current_timezone()
    prefix = value[:2] if value[:2] in DATE_PREFIXES else "eq"
    text = value[2:] if value[:2] in DATE_PREFIXES else value
    try:
        if len(text) == 4:
            year = int(text)
            low, high = date(year, 1, 1), date(year + 1, 1, 1)
        elif len(text) == 7:
            year, month = int(text[:4]), int(text[5:7])
            days = calendar.monthrange(year, month)[1]
            low = date(year, month, 1)
            high = low + timedelta(days=days)
        elif len(text) == 10:
            low = date.fromisoformat(text)
            high = low + timedelta(days=1)
        else:
            moment = parse_datetime(text)
            if moment is None:
                raise ValueError
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
            precision = (
                timedelta(seconds=1) if moment.second or len(text) > 16 else timedelta(minutes=1)
            )
            return prefix, moment.astimezone(UTC), (moment + precision).astimezone(UTC)
        return (
            prefix,
            datetime.combine(low, time(), zone).astimezone(UTC),
            datetime.combine(high, time(), zone).astimezone(UTC),
        )
    except (ValueError, OverflowError):
        # OverflowError: the day after 9999-12-31 (or a zone's offset past it).
        raise FhirError(
            400,
            "invalid",
            f"{value!r} is not a FHIR date (e.g. ge2026-12-01 or 2026-12-08T10:00Z).",
        ) from None


def date_q(field: str, value: str, zone: ZoneInfo | None = None) -> Q:
    """The condition on the instant ``field`` that a date search value asks for."""
    prefix, low, high = date_range(value, zone)
    return {
        "eq": Q(**{f"{field}__gte": low, f"{field}__lt": high}),
        "ne": ~Q(**{f"{field}__gte": low, f"{field}__lt": high}),
        "lt": Q(**{f"{field}__lt": low}),
        "eb": Q(**{f"{field}__lt": low}),
        "le": Q(**{f"{field}__lt": high}),
        "gt": Q(**{f"{field}__gte": high}),
        "sa": Q(**{f"{field}__gte": high}),
        "ge": Q(**{f"{field}__gte": low}),
    }[prefix]


class Query(NamedTuple):
    condition: Q
    used: list[tuple[str, str]]  # the parameters applied, for the self link
    count: int
    offset: int
    includes: list[str]


def parse_query(request, params: dict[str, SearchParam]) -> Query:
    """The request's search parameters as one condition, plus paging and includes."""
    strict = "handling=strict" in request.headers.get("Prefer", "")
    condition = Q()
    used = []
    for key, values in request.GET.lists():
        if key in RESULT_PARAMETERS:
            continue
        name, _, modifier = key.partition(":")
        param = params.get(name)
        if param is None:
            if strict:
                raise FhirError(400, "not-supported", f"Unknown search parameter {key!r}.")
            continue
        for value in values:
            if value == "":
                continue
            either = Q()
            for alternative in value.split(","):
                either |= param.to_q(alternative, modifier or None)
            condition &= either
            used.append((key, value))
    return Query(
        condition, used, _count(request), _offset(request), request.GET.getlist("_include")
    )


def _whole(request, name: str, default: int) -> int:
    raw = request.GET.get(name)
    if raw in (None, ""):
        return default
    if not is_row_id(raw):
        raise FhirError(400, "invalid", f"{name} must be a whole number, not {raw!r}.")
    return int(raw)


def _count(request) -> int:
    return min(_whole(request, "_count", DEFAULT_COUNT), MOST_COUNT)


def _offset(request) -> int:
    return _whole(request, "_offset", 0)


def page_link(base: str, query: Query, offset: int, extra: list[tuple[str, str]]) -> str:
    pairs = [*query.used, *extra, ("_count", str(query.count)), ("_offset", str(offset))]
    return f"{base}?{urlencode(pairs)}"


def searchset(
    *,
    base: str,
    type_url: str,
    query: Query,
    total: int,
    matches: list[tuple[str, dict]],
    included: list[tuple[str, dict]],
) -> dict:
    """A searchset Bundle: ``matches`` and ``included`` as (fullUrl, resource) pairs."""
    extra = [("_include", name) for name in query.includes]
    links = [{"relation": "self", "url": page_link(type_url, query, query.offset, extra)}]
    if query.count and query.offset + query.count < total:
        links.append(
            {
                "relation": "next",
                "url": page_link(type_url, query, query.offset + query.count, extra),
            }
        )
    if query.offset > 0:
        previous = max(query.offset - query.count, 0)
        links.append({"relation": "previous", "url": page_link(type_url, query, previous, extra)})
    entries = [
        {"fullUrl": url, "resource": resource, "search": {"mode": "match"}}
        for url, resource in matches
    ]
    entries += [
        {"fullUrl": url, "resource": resource, "search": {"mode": "include"}}
        for url, resource in included
    ]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries,
    }
