"""Checking that a patient's Spanish page or text has no English left."""

import re
from contextlib import contextmanager

from django.utils import translation
from django.utils.html import strip_tags
from django.utils.translation import trans_real

# Common English words that are not Spanish ones ("no", "video", "a", "jun" are both).
ENGLISH_WORDS = """the your you visit visits with please call and of is are for to this that time times
    reply questions question thank thanks hello hi when where what before after today tomorrow
    link answer here we our us will by on at be it if or not can cancelled moved confirm
    confirmed reminder change changes book booked free days day later earlier waitlist take
    open until someone else offer instructions prepare rest email calendar invite add join
    monday tuesday wednesday thursday friday saturday sunday mon tue wed thu fri sat sun
    january february june july august september october november december jan apr aug dec
    am pm"""
ENGLISH = frozenset(ENGLISH_WORDS.split())
URL = re.compile(r"https?://\S+")


def english_left(text: str, *data: str) -> list[str]:
    """English words in ``text`` once tags, links and ``data`` (names, the clinic's words) are out."""
    text = URL.sub(" ", strip_tags(text))
    for value in sorted(data, key=len, reverse=True):
        text = text.replace(value, " ")
    return sorted({w for w in re.findall(r"[A-Za-z]+", text) if w.lower() in ENGLISH})


@contextmanager
def untranslated(language: str = "es"):
    """In ``language``, the set of messages asked for while the block runs that its
    catalogue (ours with Django's) has no translation of: a string marked for
    translation but missing from locale/<language>/LC_MESSAGES/django.po."""
    missed: set[str] = set()
    catalogue = trans_real.translation(language)
    known = catalogue._catalog
    gettext, ngettext = catalogue.gettext, catalogue.ngettext

    def asked(message):
        if message not in known:
            missed.add(message.replace("\x04", " | "))  # a context's separator
        return gettext(message)

    def asked_plural(singular, plural, number):
        if (singular, 0) not in known:
            missed.add(singular)
        return ngettext(singular, plural, number)

    catalogue.gettext, catalogue.ngettext = asked, asked_plural
    try:
        with translation.override(language):
            yield missed
    finally:
        del catalogue.gettext, catalogue.ngettext
