"""What Twilio tells us: delivery reports for our texts, and texts patients send us.

Both webhooks can arrive more than once (Twilio retries) and out of order, so
both are idempotent: a delivery status only ever moves a message forward, and
an inbound text is recorded once per MessageSid, answered the same each time.
"""

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from notifications import consent
from notifications.content import sms_clinic_name, to_gsm, when_text
from notifications.models import (
    STATUS_RANK,
    Channel,
    InboundKind,
    InboundMessage,
    Message,
    Status,
)
from notifications.transports import TWILIO_STATUSES
from scheduler import booking
from scheduler.models import Clinic, Patient, Visit, VisitStatus, is_row_id
from scheduler.phones import format_for_display

TWILIO_ERRORS = {
    "21211": "invalid number",
    "21610": "the recipient opted out",
    "21614": "not a mobile number",
    "30003": "unreachable handset",
    "30005": "unknown destination",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier",
    "30008": "unknown error",
}


def record_status(
    sid: str, twilio_status: str, error_code: str = "", message_id: str = "", *, now=None
) -> bool:
    """Move a message forward to Twilio's reported status; False when nothing changed.

    A combined text's report moves every message that went in it (they share
    its SID, and its id is theirs ``combined_into``).
    """
    now = now or timezone.now()
    new = TWILIO_STATUSES.get((twilio_status or "").lower())
    if new is None or not sid:
        return False
    earlier = [status for status, rank in STATUS_RANK.items() if rank < STATUS_RANK[new]]
    messages = Message.objects.filter(channel=Channel.SMS, status__in=earlier)
    if is_row_id(message_id):
        # Our id in the callback URL finds the message (and those that went in
        # its text) even before our record of its SID is committed; the SID
        # must then match or still be unknown.
        messages = messages.filter(Q(pk=int(message_id)) | Q(combined_into=int(message_id))).filter(
            Q(provider_id=sid) | Q(provider_id="")
        )
    else:
        messages = messages.filter(provider_id=sid)
    changes = {
        "status": new,
        "provider_id": sid,
        "sent_at": Coalesce("sent_at", now),
        "updated_at": now,
    }
    if new == Status.DELIVERED:
        changes["delivered_at"] = now
    if new in (Status.UNDELIVERED, Status.FAILED):
        what = TWILIO_ERRORS.get(error_code, "see Twilio's error reference")
        changes["error_code"] = error_code[:16]
        changes["last_error"] = (
            f"Twilio reported {twilio_status}: error {error_code or '?'} ({what})."
        )
    changed = messages.update(**changes)
    if changed and error_code == "21610":
        recipients = Message.objects.filter(provider_id=sid).values("recipient")
        consent.record_opt_out(Patient.objects.filter(mobile__in=recipients), now)
    return bool(changed)


# -- inbound texts --------------------------------------------------------------

# Carrier and FCC (2025) opt-out keywords, honoured as the whole message.
OPT_OUT_KEYWORDS = {
    "STOP",
    "STOPALL",
    "STOP ALL",
    "UNSUBSCRIBE",
    "END",
    "QUIT",
    "CANCEL",
    "REVOKE",
    "OPTOUT",
    "OPT OUT",
}
# Spanish: carriers ask Spanish-language programmes to answer AYUDA and ALTO
# (Twilio's short-code guidelines); PARAR, CANCELAR, DETENER and BAJA say the
# same, and the FCC's "any reasonable means" covers them. Twilio does not act
# on them itself (its defaults are English), so the confirmation is ours.
SPANISH_OPT_OUT_KEYWORDS = {"ALTO", "PARAR", "PARA", "CANCELAR", "DETENER", "BAJA", "NO MAS"}
OPT_OUT_KEYWORDS |= SPANISH_OPT_OUT_KEYWORDS
OPT_IN_KEYWORDS = {"START", "UNSTOP", "YES"}
SPANISH_HELP_KEYWORDS = {"AYUDA"}
HELP_KEYWORDS = {"HELP", "INFO"} | SPANISH_HELP_KEYWORDS
# The clinic's own reply words must not be carrier keywords (CANCEL, YES).
CONFIRM_KEYWORDS = {"C", "CONFIRM"}
RESCHEDULE_KEYWORDS = {"R", "RESCHEDULE"}
# Taking a freed time offered from the waitlist (never YES: an opt-in keyword).
TAKE_KEYWORDS = {"TAKE", "TOMAR"}
# What the app that owns a reply word does with it (the waitlist: TAKE), by kind:
# given the recorded text, the patients of its number and the time, it sets the
# text's outcome, reply and visit. Registered in that app's ``ready()``.
reply_handlers: dict[str, Callable[[InboundMessage, list[Patient], datetime], None]] = {}
# "No me envíen más mensajes", "ya no quiero mensajes", "dejen de escribirme".
SPANISH_OPT_OUT_PHRASES = re.compile(
    # Not CANCELAR at the start: "Cancelar la cita del martes" is about a visit.
    r"^(POR FAVOR )?(PARAR|PAREN|DETENGAN)\b"
    r"|\bNO (ME )?(ENVIE|ENVIEN|MANDE|MANDEN|ESCRIBA|ESCRIBAN)N? MAS\b"
    r"|\bYA NO (ME )?(ENVIE|ENVIEN|MANDE|MANDEN|QUIERO) (MAS )?(MENSAJES|TEXTOS|MENSAJITOS)"
    r"|\bDEJEN? DE (ENVIAR|MANDAR|ESCRIBIR)(ME)?\b"
)
# "Stop texting me"-style replies revoke consent too (FCC 2025: any reasonable
# means). A message that starts with END or QUIT is not one ("End of the week
# works"), so only these patterns count beyond the exact keywords.
OPT_OUT_PHRASES = re.compile(
    r"^(PLEASE )?(STOP|UNSUBSCRIBE|OPT ?OUT|REVOKE)\b"
    r"|\b(STOP|QUIT|NO MORE) (TEXT|MESSAG|SENDING|CONTACTING)"
    r"|\bDO ?N'?O?T (TEXT|MESSAGE|CONTACT)"
    r"|\b(UNSUBSCRIBE|OPT ME OUT|REMOVE ME|LEAVE ME ALONE)\b"
    r"|" + SPANISH_OPT_OUT_PHRASES.pattern
)


def normalise(body: str) -> str:
    """Upper case, punctuation gone, accents dropped ("¡Paren!" and "no más" as "PAREN", "NO MAS")."""
    text = unicodedata.normalize("NFKD", body or "")
    text = "".join(c for c in text if not unicodedata.combining(c))
    words = re.sub(r"[^\w\s']", " ", text).upper().split()
    return " ".join(words)


def language_of_reply(body: str) -> str | None:
    """Spanish when the text is one of the Spanish keywords or opt-out phrases, else None.

    AYUDA gets the Spanish help and PARAR a Spanish confirmation whatever the
    patient's recorded language: they wrote in Spanish.
    """
    text = normalise(body)
    spanish = SPANISH_HELP_KEYWORDS | SPANISH_OPT_OUT_KEYWORDS
    if text in spanish or SPANISH_OPT_OUT_PHRASES.search(text):
        return "es"
    return None


def classify(body: str) -> tuple[str, bool]:
    """The kind of an inbound text, and whether it was a bare carrier keyword.

    Twilio and the carriers act on (and confirm) the bare keyword only; "Stop."
    or "opt-out" count as opt-outs here too, but then the confirmation is ours.
    """
    text = normalise(body)
    bare = " ".join((body or "").split()).upper() == text
    if text in OPT_OUT_KEYWORDS:
        # Twilio acts on its own (English) keywords only: a Spanish one is ours to confirm.
        return InboundKind.OPT_OUT, bare and text not in SPANISH_OPT_OUT_KEYWORDS
    if text in OPT_IN_KEYWORDS:
        return InboundKind.OPT_IN, bare
    if text in HELP_KEYWORDS:
        return InboundKind.HELP, bare
    if text in CONFIRM_KEYWORDS:
        return InboundKind.CONFIRM, False
    if text in RESCHEDULE_KEYWORDS:
        return InboundKind.RESCHEDULE, False
    if text in TAKE_KEYWORDS:
        return InboundKind.TAKE, False
    if OPT_OUT_PHRASES.search(text):
        return InboundKind.OPT_OUT, False
    return InboundKind.OTHER, False


def help_text(clinic: Clinic | None) -> str:
    """The answer to HELP (AYUDA), in the active language."""
    name = sms_clinic_name(clinic) if clinic else _("Clinic")
    phone = (
        " " + _("Help: %(phone)s.") % {"phone": format_for_display(clinic.phone)} if clinic else ""
    )
    # No number a week: video links and changes always go, and with express
    # consent there is no limit at all.
    return _(
        "%(clinic)s visit reminders.%(phone)s Msg frequency varies with your visits. "
        "Msg&data rates may apply. Reply STOP to opt out."
    ) % {"clinic": name, "phone": phone}


def next_visit(patients: list[Patient], now: datetime) -> Visit | None:
    return (
        Visit.objects.filter(
            patient__in=patients,
            start__gt=now,
            status__in=(VisitStatus.BOOKED, VisitStatus.CONFIRMED),
        )
        .select_related("patient", "visit_type__clinic")
        .order_by("start")
        .first()
    )


def handle_inbound(
    sid: str, from_number: str, body: str, to_number: str = "", *, now=None
) -> InboundMessage:
    """Record a patient's text and act on it; the returned row's ``reply`` is our answer."""
    now = now or timezone.now()
    existing = InboundMessage.objects.filter(provider_id=sid).first()
    if existing:
        return existing  # Twilio retried: the text was handled already
    # Newest first: a number shared by patients of two clinics is answered in the
    # name of the clinic of the one who joined last.
    patients = list(
        Patient.objects.filter(mobile=from_number)
        .select_related("clinic")
        .order_by("-created_at", "-pk")
    )
    kind, exact = classify(body)
    inbound = InboundMessage(
        provider_id=sid[:64],
        from_number=from_number[:32],
        to_number=to_number[:32],
        body=body[:2000],
        kind=kind,
        received_at=now,
        patient=patients[0] if patients else None,
    )
    # Replies in the language the patient wrote in, or else the one they chose;
    # what the desk reads (the outcome) stays in the staff's.
    language = language_of_reply(body) or (
        patients[0].language if patients else settings.LANGUAGE_CODE
    )
    try:
        with transaction.atomic(), translation.override(language):
            _act(inbound, patients, exact, now)
            inbound.reply = to_gsm(inbound.reply, language)
            inbound.save()
    except IntegrityError:
        # The same text arrived twice at once; the other request recorded it.
        return InboundMessage.objects.get(provider_id=sid)
    return inbound


def _act(inbound: InboundMessage, patients: list[Patient], exact: bool, now: datetime) -> None:
    clinic = patients[0].clinic if patients else Clinic.objects.installation()
    phone = format_for_display(clinic.phone) if clinic else _("the clinic")
    same_number = Patient.objects.filter(pk__in=[p.pk for p in patients])
    kind = inbound.kind
    if kind == InboundKind.HELP:
        inbound.reply = help_text(clinic)
        return
    if not patients:
        inbound.needs_attention = kind != InboundKind.OPT_OUT
        inbound.outcome = "No patient has this number."
        if kind == InboundKind.OPT_OUT and not exact:
            inbound.reply = _("You will get no more texts from this number.")
        return
    if kind == InboundKind.OPT_OUT:
        cancelled = consent.record_opt_out(same_number, now)
        inbound.outcome = f"Opted out of texts; {cancelled} pending texts cancelled."
        # Twilio (or the carrier) confirms the exact keywords itself; a reply
        # of ours would be a second text after the opt-out.
        if not exact:
            inbound.reply = _(
                "You will get no more texts from %(clinic)s. Reply START to get them again."
            ) % {"clinic": sms_clinic_name(clinic)}
        return
    if kind == InboundKind.OPT_IN:
        revived = consent.record_opt_in(same_number, now)
        inbound.outcome = f"Agreed to texts again; {revived} texts will go as planned."
        return
    if kind in reply_handlers:
        reply_handlers[kind](inbound, patients, now)
        return
    visit = next_visit(patients, now)
    if kind == InboundKind.CONFIRM:
        if visit is None:
            inbound.outcome = "No upcoming visit to confirm."
            inbound.reply = _(
                "We found no upcoming visit for this number. Questions: %(phone)s."
            ) % {"phone": phone}
            return
        inbound.visit = visit
        when = when_text(visit.start, visit.patient.time_zone, visit.clinic.time_zone)
        try:
            booking.confirm(visit)
        except booking.BookingError as error:
            inbound.needs_attention = True
            inbound.outcome = f"Could not confirm: {error}"[:300]
            # The clinic the visit is held at calls back: its phone, not the home clinic's.
            there = format_for_display(visit.clinic.phone)
            inbound.reply = _(
                "We could not confirm your visit on %(when)s by text; we will call you. "
                "Questions: %(phone)s."
            ) % {"when": when, "phone": there}
            return
        inbound.outcome = "Visit confirmed."
        inbound.reply = _("Thank you, %(first_name)s: your visit on %(when)s is confirmed.") % {
            "first_name": visit.patient.first_name,
            "when": when,
        }
        return
    if kind == InboundKind.RESCHEDULE:
        inbound.visit = visit
        inbound.needs_attention = True
        inbound.outcome = "Asked for a call back to reschedule."
        if visit is None:
            inbound.reply = _("Thank you. We will call you back. Questions: %(phone)s.") % {
                "phone": phone
            }
        else:
            when = when_text(visit.start, visit.patient.time_zone, visit.clinic.time_zone)
            inbound.reply = _(
                "Thank you. We will call you to find a new time for your visit on %(when)s."
            ) % {"when": when}
        return
    inbound.visit = visit
    inbound.needs_attention = True
    inbound.outcome = "For the front desk to read."
    inbound.reply = _(
        "Thank you, we passed your message to the front desk. If it is urgent call %(phone)s; "
        "in an emergency call 911."
    ) % {"phone": phone}
