"""Checks every feed and invite in the tests goes through: strict parsers, RFC 5545 layout, privacy."""

import re

import vobject
from ical.calendar_stream import IcsCalendarStream

# docs/rules.md messaging rules: what a synced calendar entry must never say at the
# default level. Routes and forms of dosing count, as do the drug classes a
# preparation text mentions.
TREATMENT_WORDS = re.compile(
    r"\b(ketamine|esketamine|spravato|psychedelic\w*|dos(?:e|es|ing)|infusions?|iv|im|"
    r"intramuscular|lozenges?|troches?|sublingual|intranasal|nasal|drugs?|medications?|"
    r"lamotrigine|benzodiazepines?|opioids?|maois?)\b",
    re.IGNORECASE,
)


def unfold(text: str) -> str:
    return text.replace("\r\n ", "").replace("\r\n\t", "")


def treatment_words(text: str) -> list[str]:
    # Unfold first: a word can be split across a 75-octet fold.
    return TREATMENT_WORDS.findall(unfold(text).replace("\\n", " ").replace("\\,", ","))


def assert_valid_ics(text: str) -> None:
    """Strictly valid RFC 5545 as real clients read it, or an AssertionError saying why not."""
    assert text.startswith("BEGIN:VCALENDAR\r\n") and text.endswith("END:VCALENDAR\r\n")
    lines = text.split("\r\n")[:-1]
    assert not any("\n" in line or "\r" in line for line in lines), "lines must end in CRLF"
    too_long = [line for line in lines if len(line.encode("utf-8")) > 75]
    assert not too_long, f"lines must be folded at 75 octets: {too_long[:2]}"
    used = set(re.findall(r";TZID=([^:;]+)[:;]", unfold(text)))
    defined = set(re.findall(r"^TZID:([^\r\n]+)", unfold(text), re.MULTILINE))
    assert used <= defined, f"TZID without VTIMEZONE: {used - defined}"
    IcsCalendarStream.calendar_from_ics(text)  # raises on anything RFC 5545 refuses
    parsed = vobject.readOne(text)
    parsed.validate()
    for event in getattr(parsed, "vevent_list", []):
        assert event.dtstamp.value.utcoffset().total_seconds() == 0, "DTSTAMP must be UTC"
        assert event.uid.value and event.sequence.value is not None
