"""What messages say: SMS and email text rendered from templates/notifications/.

Texts can be read by anyone who sees the patient's phone, so (docs/rules.md) an
SMS carries only the first name, date and time, the clinic's name and phone,
and a link. The SMS context is built with nothing else in it, so no template
can let the visit type or its instructions slip into a text;
``treatment_words`` is the second line of defence, checked before every send.
Email may carry the full preparation and aftercare instructions.

Calendar invites are what Gmail, Outlook and Apple Mail expect of an iMIP
message (RFC 6047): ``multipart/alternative`` with text, HTML and a
``text/calendar; method=...`` part whose method matches the calendar's METHOD,
plus the same calendar attached as ``invite.ics`` for clients that only look
at attachments. The calendar is built by ``scheduler.calendars`` with the same
privacy wording as the feeds; the email may say a little more (the
clinician's name) but never names the treatment either.
"""

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import dateformat, timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from notifications.models import COMPOSED_PURPOSES, INVITE_PURPOSES, Message, Purpose
from notifications.transports import Attachment
from scheduler.calendars import (
    Audience,
    Invitee,
    Method,
    build_calendar,
    event_text,
)
from scheduler.links import patient_page_url
from scheduler.models import Modality, Visit
from scheduler.phones import format_for_display
from scheduler.timezones import zone

# Words an SMS must never contain (docs/rules.md, messaging rules): the treatment,
# its routes and settings, medication names and diagnoses.
TREATMENT_WORDS = (
    "ketamine",
    "esketamine",
    "spravato",
    "psychedelic",
    "psychedelics",
    "psilocybin",
    "mdma",
    "dose",
    "doses",
    "dosing",
    "dosed",
    "infusion",
    "infusions",
    "intravenous",
    "iv",
    "intramuscular",
    "injection",
    "lozenge",
    "lozenges",
    "troche",
    "sublingual",
    "intranasal",
    "nasal",
    "rems",
    "kap",
    "medication",
    "medications",
    "prescription",
    "lamotrigine",
    "benzodiazepine",
    "benzodiazepines",
    "opioid",
    "opioids",
    "maoi",
    "maois",
    "depression",
    "depressive",
    "ptsd",
    "anxiety",
    "bipolar",
    "ocd",
    "diagnosis",
    "psychiatric",
    "psychotherapy",
    "therapy",
    "therapist",
    "sedation",
    "dissociation",
    "dissociative",
    "anesthetic",
    "anaesthetic",
    # Spanish, without accents: the check folds them away ("infusión" is "infusion").
    "ketamina",
    "esketamina",
    "psicodelico",
    "psicodelicos",
    "psicodelica",
    "psicodelicas",
    "psilocibina",
    "dosis",
    "infusiones",
    "intravenosa",
    "intravenoso",
    "intramuscular",
    "inyeccion",
    "inyecciones",
    "trocisco",
    "trociscos",
    "pastilla",
    "pastillas",
    "medicamento",
    "medicamentos",
    "medicacion",
    "receta",
    "lamotrigina",
    "benzodiacepina",
    "benzodiacepinas",
    "benzodiazepina",
    "benzodiazepinas",
    "opioide",
    "opioides",
    "imao",
    "depresion",
    "depresivo",
    "depresiva",
    "ansiedad",
    "bipolar",
    "tept",
    "toc",
    "diagnostico",
    "psiquiatrico",
    "psiquiatrica",
    "psicoterapia",
    "terapia",
    "terapeuta",
    "sedacion",
    "disociacion",
    "disociativo",
    "disociativa",
    "anestesico",
    "anestesia",
)
_TREATMENT_WORDS = frozenset(TREATMENT_WORDS)
_WORD_RE = re.compile(r"\w+")
_URL_RE = re.compile(r"https?://\S+")
# Letters that a case-insensitive match takes for i, s and k but casefold()
# leaves alone: "KETAMİNE" must not get through.
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})

# Characters outside the GSM 7-bit alphabet switch a whole SMS to UCS-2, which
# halves its length (70 characters a segment) and so doubles the cost; "\xa0"
# from a copied phone number or a curly apostrophe in a name is enough.
GSM_REPLACEMENTS = {
    "\xa0": " ",
    "\u2009": " ",
    "\u202f": " ",
    "\u2013": "-",
    "\u2014": "-",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2026": "...",
}
GSM_ALPHABET = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def treatment_words(text: str) -> list[str]:
    """The treatment words in ``text``, links left out (a random token may spell "iv").

    Whole words in any case, with or without accents. Each word of the text is looked up in a set:
    one pattern of all the words took longer than the rest of composing a text.
    """
    text = _URL_RE.sub(" ", text).translate(_FOLD).casefold()
    if not text.isascii():
        # "infusión", "INFUSIÓN" and "infusio\u0301n" alike: accents dropped.
        text = "".join(
            c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
        )
    return sorted(_TREATMENT_WORDS.intersection(_WORD_RE.findall(text)))


# A text longer than one segment goes in parts of 153 GSM-7 characters (67 in
# UCS-2), each billed as a text. A combined text replaces texts of up to two
# segments each, and stays short enough to read at a glance: at most three
# (459 GSM-7 characters; a name outside GSM-7 leaves 201).
COMBINED_MAX_SEGMENTS = 3


def segments(text: str) -> int:
    """How many SMS segments ``text`` takes: 160 GSM-7 characters alone, 153 a part once split;
    70 and 67 in UCS-2 (counted in UTF-16 units), which any character outside GSM-7 forces."""
    if is_gsm(text):
        single, part, length = 160, 153, len(text)
    else:
        single, part, length = 70, 67, len(text.encode("utf-16-le")) // 2
    return 1 if length <= single else -(-length // part)


# Spanish accents GSM-7 lacks (it has é, ñ, ü, ¿ and ¡): one "día" would send
# the whole text in UCS-2, at most 70 characters a segment instead of 160, and
# a reminder in three or four parts. US carriers' Spanish texts drop them.
SPANISH_GSM_REPLACEMENTS = str.maketrans("áíóúÁÍÓÚ", "aiouAIOU")


def to_gsm(text: str, language: str = "en") -> str:
    """``text`` in GSM-7 where it can be; in a Spanish text also without the accents GSM-7 lacks."""
    for character, replacement in GSM_REPLACEMENTS.items():
        text = text.replace(character, replacement)
    if language.startswith("es"):
        text = text.translate(SPANISH_GSM_REPLACEMENTS)
    return text


def reader_language(message: Message) -> str:
    """The language a message is written in: its patient's; a clinician reads the staff's."""
    if message.to_clinician or message.patient_id is None:
        return settings.LANGUAGE_CODE
    return message.patient.language


def is_gsm(text: str) -> bool:
    return set(text) <= GSM_ALPHABET


def sms_clinic_name(clinic) -> str:
    return settings.SMS_CLINIC_NAME or clinic.name


def when_text(moment: datetime, patient_tz: str, clinic_tz: str) -> str:
    """e.g. "Tue Feb 4 at 10:00 AM" ("mar 4 feb, 10:00" in Spanish), in the active
    language, with the zone's abbreviation when the patient's differs from the clinic's."""
    local = timezone.localtime(moment, zone(patient_tz))
    # Translators: a Django date format, the day of a visit in a text: "Tue Feb 4".
    day = dateformat.format(local, pgettext("day in a text", "D M j"))
    text = _("%(day)s at %(time)s") % {"day": day, "time": time_text(moment, patient_tz)}
    if patient_tz != clinic_tz:
        text += f" {local:%Z}"
    return text


def time_text(moment: datetime, patient_tz: str) -> str:
    """e.g. "10:00 AM" ("10:00" in Spanish), in the active language."""
    local = timezone.localtime(moment, zone(patient_tz))
    # Translators: a Django time format, the time of a visit in a text: "10:00 AM".
    return dateformat.format(local, pgettext("time in a text", "g:i A"))


def _sms_context(visit: Visit) -> dict:
    patient, clinic = visit.patient, visit.clinic
    return {
        "first_name": patient.first_name,
        "clinic": sms_clinic_name(clinic),
        "phone": format_for_display(clinic.phone),
        "when": when_text(visit.start, patient.time_zone, clinic.time_zone),
        "time": time_text(visit.start, patient.time_zone),
        "video_link": visit.clinician.telehealth_link if visit.visit_type.is_telehealth else "",
        "email_sent": bool(patient.contact_by_email and patient.email),
    }


def sms_body(message: Message, *, link: str) -> str:
    """The text of an SMS: one line, GSM characters only.

    A preparation text carries ``link``, a fresh private link the caller
    issued (a dispatch batch issues its links together); other texts carry
    none, and ignore it.
    """
    language = reader_language(message)
    with translation.override(language):
        return to_gsm(" ".join(_sms_text(message, link).split()), language)


def _sms_text(message: Message, link: str) -> str:
    if message.purpose in composers:
        composer = composers[message.purpose]
        return composer.sms(message, link) if composer.carries_link else composer.sms(message)
    context = _sms_context(message.visit)
    if message.purpose == Purpose.PREPARATION:
        # The instructions live behind the patient's private page, never in the
        # text. Issuing revokes the previous link, so only the newest text's
        # link works: a forwarded old text opens nothing.
        context["link"] = link
    return render_to_string(f"notifications/sms/{message.purpose}.txt", context)


def combined_sms_body(messages: list[Message], *, link: str) -> str:
    """One text for several of a patient's messages of one day, the first of them leading.

    It says what each would have, once: the dates and times of the visits
    reminded of or prepared for, a thank-you for a visit today (aftercare),
    and ``link`` when one of them is a preparation text; nothing about what
    the visits are. Like ``sms_body``, one line of GSM characters.
    """
    language = reader_language(messages[0])
    with translation.override(language):
        text = _combined_sms_text(messages, link)
    return to_gsm(" ".join(text.split()), language)


def _combined_sms_text(messages: list[Message], link: str) -> str:
    context = _sms_context(messages[0].visit)
    patient, clinic = messages[0].patient, messages[0].visit.clinic
    upcoming = sorted(
        {m.visit for m in messages if m.purpose != Purpose.AFTERCARE}, key=lambda v: v.start
    )
    context["visits"] = _in_words(
        [when_text(visit.start, patient.time_zone, clinic.time_zone) for visit in upcoming]
    )
    context["visit_count"] = len(upcoming)
    context["thanks"] = any(m.purpose == Purpose.AFTERCARE for m in messages)
    if any(m.purpose == Purpose.PREPARATION for m in messages):
        context["link"] = link
    return render_to_string("notifications/sms/combined.txt", context)


def _in_words(items: list[str]) -> str:
    """The items as a sentence lists them: a; a and b; a, b and c (in the active language)."""
    return _(" and ").join(filter(None, [", ".join(items[:-1]), *items[-1:]]))


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str
    # As transports.OutgoingEmail has them: a calendar invite's calendar.
    alternatives: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()


def email_content(message: Message, *, link: str = "") -> Email:
    """The email of ``message``; ``link`` as for ``sms_body``, for a composer that carries one."""
    with translation.override(reader_language(message)):
        return _email(message, link)


def _email(message: Message, link: str) -> Email:
    if message.purpose in composers:
        composer = composers[message.purpose]
        return composer.email(message, link) if composer.carries_link else composer.email(message)
    if message.purpose in INVITE_PURPOSES:
        return invite_email(message)
    visit = message.visit
    instructions = visit.visit_type.instructions_in(reader_language(message))
    context = {
        **_sms_context(visit),
        "clinic": visit.clinic.name,
        "patient": visit.patient,
        "clinic_address": visit.clinic.address,
        "visit_type": visit.visit_type.name,
        "telehealth": visit.visit_type.is_telehealth,
        "clinician": visit.clinician.display_name,
        "preparation": instructions.preparation,
        "aftercare": instructions.aftercare,
        "purpose": message.purpose,
    }
    base = f"notifications/email/{message.purpose}"
    subject = render_to_string(f"{base}_subject.txt", context)
    return Email(
        subject=" ".join(subject.split()),
        text=render_to_string(f"{base}.txt", context).strip() + "\n",
        html=render_to_string(f"{base}.html", context),
    )


# What each invite tells a calendar (RFC 5546) and its reader.
INVITE_METHODS = {
    Purpose.INVITE: Method.REQUEST,
    Purpose.INVITE_UPDATE: Method.REQUEST,
    Purpose.INVITE_CANCEL: Method.CANCEL,
}
INVITE_CHANGES = {
    Purpose.INVITE: "booked",
    Purpose.INVITE_UPDATE: "moved",
    Purpose.INVITE_CANCEL: "cancelled",
}


def _when(start: datetime, end: datetime) -> str:
    """e.g. "Tuesday, February 4, 2025, 10:00-11:00 EST", in the active language."""
    # Translators: a Django date format, a visit's day in an email: "Tuesday, February 4, 2025".
    day = dateformat.format(start, pgettext("day in an email", "l, F j, Y"))
    return f"{day}, {start:%H:%M}-{end:%H:%M} {start:%Z}".strip()


def invite_email(message: Message) -> Email:
    """The invite, update or cancellation of the message's visit, for its patient or its clinician.

    Patients read it in their own zone, clinicians in the clinic's; it is
    stamped (DTSTAMP) when it is composed, just before it goes. A CANCEL to a
    clinician the visit moved away from says who has it now.
    """
    visit = message.visit
    clinic = visit.clinic
    if message.to_clinician:
        audience, tz = Audience.CLINICIAN, clinic.tz
        who = Invitee(message.clinician.display_name, message.clinician.user.email)
    else:
        audience, tz = Audience.PATIENT, zone(visit.patient.time_zone)
        who = Invitee(visit.patient.first_name, visit.patient.email)
    method, change = INVITE_METHODS[message.purpose], INVITE_CHANGES[message.purpose]
    if message.to_clinician and visit.participant(message.clinician_id) is None:
        # A CANCEL to a clinician no longer on the visit: it goes on, with another.
        change = "handed_over"
    ics = build_calendar(
        [visit],
        audience=audience,
        clinic=clinic,
        tz=tz,
        method=method,
        attendee=who,
        now=timezone.now(),
        reader=message.clinician if message.to_clinician else None,
    )
    text = event_text(
        visit, audience, clinic, clinic.calendar_detail, cancelled=method == Method.CANCEL
    )
    start, end = visit.start.astimezone(tz), visit.end.astimezone(tz)
    context = {
        "audience": str(audience),
        "change": change,
        "name": who.name,
        "clinic": clinic,
        "when": _when(start, end),
        "summary": text.summary,
        "place": text.location,
        "telehealth": visit.visit_type.modality == Modality.TELEHEALTH,
        "clinician": visit.clinician.display_name,
        "details": text.description,
        "page": patient_page_url() if audience == Audience.PATIENT else text.url,
    }
    # Translators: a Django date format, a visit's day and time in a subject: "Tue Feb 4, 10:00".
    subject_when = dateformat.format(start, pgettext("day and time in a subject", "D M j, H:i"))
    words = {"summary": text.summary, "when": subject_when}
    subject = {
        "booked": _("%(summary)s: %(when)s") % words,
        "moved": _("Moved: %(summary)s, now %(when)s") % words,
        "cancelled": _("%(summary)s on %(when)s") % words,
        # Only ever to a clinician: in the staff's language.
        "handed_over": f"{text.summary} on {subject_when}, now with {visit.clinician.display_name}",
    }[change]
    return Email(
        subject=subject,
        text=render_to_string("notifications/email/invite.txt", context),
        html=render_to_string("notifications/email/invite.html", context),
        alternatives=((ics.decode("utf-8"), f"text/calendar; method={method}"),),
        attachments=(Attachment("invite.ics", ics, "application/ics"),),
        headers=(("Auto-Submitted", "auto-generated"),),
    )


@dataclass(frozen=True)
class Composer:
    """How the app a message's purpose belongs to words it and knows it is still wanted.

    For messages not about the visit they hang on (``COMPOSED_PURPOSES``: a
    waitlist offer of a freed time goes to another patient than the visit's).
    ``sms`` gives the text (checked for treatment words like any other),
    ``email`` the email, and ``refusal`` the reason the message must not go
    any more, or "" (asked instead of the visit's status and sequence).
    ``carries_link``: its text and email carry the patient's private link;
    the dispatcher issues one per patient and batch, as for preparation
    texts, and passes it to ``sms`` and ``email`` after the message.
    """

    sms: Callable[..., str]
    email: Callable[..., Email]
    refusal: Callable[[Message], str]
    carries_link: bool = False


# By purpose; an app registers its own in its ``ready()``.
composers: dict[str, Composer] = {}

# Every purpose that has SMS templates (invites go by email only), for tests and checks.
SMS_PURPOSES = tuple(
    purpose
    for purpose in Purpose
    if purpose not in INVITE_PURPOSES and purpose not in COMPOSED_PURPOSES
)
