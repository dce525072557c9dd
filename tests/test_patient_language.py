"""Patients read their texts, emails, calendar entries and page in their own language
(Patient.language: English or Spanish); staff pages stay English.

Untranslated patient-facing words are caught by rendering every patient-facing
template and page in Spanish and looking for English words left in it, once
the data (names, links, the clinic's own words) is taken out: a string not
marked for translation, or marked and not translated, fails here.
"""

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core import mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.html import strip_tags

from notifications.content import (
    COMBINED_MAX_SEGMENTS,
    SMS_PURPOSES,
    combined_sms_body,
    email_content,
    is_gsm,
    segments,
    sms_body,
    treatment_words,
    when_text,
)
from notifications.models import Channel, InboundKind, InboundMessage, Message, Purpose
from notifications.patient_links import issue_patient_link
from scheduler import tokens
from scheduler.models import Patient, TranslatedInstructions, Visit
from tests.conftest import MONDAY, SmallClinic, at
from tests.language_helpers import english_left, untranslated
from tests.page_helpers import front_desk, sign_in_verified
from tests.reminder_helpers import HOUR, ReminderClinic, step_through
from tests.test_browser import _next_weekday, _visit, browser, sync_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging")]

CATALOGUE = Path(settings.BASE_DIR) / "locale" / "es" / "LC_MESSAGES" / "django.po"


@pytest.fixture
def clinic(db):
    return ReminderClinic()


@pytest.fixture
def sofia(clinic) -> Patient:
    return clinic.texting_patient("Sofia", "Ejemplo", language="es")


def unsaved(visit_type, patient, purpose, start=None, channel=Channel.SMS):
    start = start or at(MONDAY, "10:00")
    visit = Visit(
        pk=int(start.timestamp()),
        patient=patient,
        visit_type=visit_type,
        clinician=visit_type.clinic.clinicians.first(),
        start=start,
        end=start + visit_type.duration,
    )
    return Message(visit=visit, patient=patient, purpose=purpose, channel=channel)


# -- nothing left in English ---------------------------------------------------


def test_the_spanish_catalogue_translates_every_entry_and_leaves_none_fuzzy():
    text = CATALOGUE.read_text(encoding="utf-8")
    entries = text.split("\n\n")[1:]
    # Django's admin title is the only entry for staff pages.
    untranslated = [
        entry
        for entry in entries
        if re.search(r'^msgstr(\[\d\])? ""$', entry, re.M) and "templates/admin/" not in entry
    ]
    assert untranslated == []
    assert "#, fuzzy" not in text


# What each patient-facing template is given, with every flag both ways.
DATA = {
    "first_name": "Zed",
    "name": "Zed",
    "clinic": "Norte",
    "clinic_name": "Norte",
    "phone": "(212) 555-0100",
    "when": "mar 4 jun, 10:00",
    "until": "mar 4 jun, 18:00",
    "time": "10:00",
    "day": "mar 4 jun",
    "visits": "mar 4 jun, 10:00 y mie 5 jun, 11:00",
    "link": "https://clinic.example.org/p/t0k3n/",
    "video_link": "https://video.example.org/room",
    "page": "https://clinic.example.org/p/",
    "visit_type": "Zyx",
    "clinician": "Dr Quux",
    "clinic_address": "1 Calle Mayor",
    "preparation": "",
    "aftercare": "",
    "place": "1 Calle Mayor",
    "details": "",
    "audience": "patient",
}
TEMPLATES = Path(settings.BASE_DIR) / "templates"
# What goes to clinicians, not patients (they read the staff's English).
STAFF_TEMPLATES = {
    "questionnaires/email/alert.html",
    "questionnaires/email/alert.txt",
    "questionnaires/sms/alert.txt",
}
# Every message template of every app (its email/ and sms/ folders, the waitlist's
# offer_*), so that one added later is checked too; parts (_*.txt) and the email
# frame (base.html) come with the messages that use them.
PATIENT_TEMPLATES = sorted(
    {
        str(path.relative_to(TEMPLATES))
        for pattern in ("*/email/[!_]*.*", "*/sms/[!_]*.txt", "waitlist/offer_*")
        for path in TEMPLATES.glob(pattern)
        if path.name != "base.html"
    }
    - STAFF_TEMPLATES
)


# Invites differ by what changed; the others are about one thing each.
CASES = [(template, "booked") for template in PATIENT_TEMPLATES] + [
    (f"notifications/email/invite.{kind}", change)
    for kind in ("txt", "html")
    for change in ("moved", "cancelled")
]


@pytest.mark.parametrize(("template", "change"), CASES)
@pytest.mark.parametrize("flag", [True, False])
def test_every_patient_facing_template_renders_in_spanish_with_no_english_left(
    template, change, flag
):
    context = DATA | {
        "email_sent": flag,
        "thanks": flag,
        "reminder": flag,
        "telehealth": flag,
        "visit_count": 2 if flag else 1,
        "change": change,
    }
    if "invite" in template or template.startswith("billing/"):
        context["clinic"] = SimpleNamespace(name="Norte", phone="(212) 555-0100")
    if flag:  # an instalment's amount and day (else: "a payment falls due soon")
        context |= {"amount": Decimal("150.00"), "currency": "USD", "due_on": MONDAY}
    with untranslated() as missing:
        spanish = render_to_string(template, context)
    assert missing == set()
    with translation.override("en"):
        english = render_to_string(template, context)
    assert spanish != english
    # The SMS templates are notifications/sms/...: "Reply STOP", "R", "C" stay as keywords.
    assert english_left(spanish, *DATA.values(), "STOP", "START") == [], spanish


def test_every_text_and_email_to_a_spanish_patient_is_spanish_and_fits_the_english_budget(
    clinic, sofia
):
    avery = clinic.texting_patient("Avery")
    link = issue_patient_link(sofia)
    visit_types = [clinic.iv, clinic.integration, clinic.screening]
    for visit_type in visit_types:
        for purpose in SMS_PURPOSES:
            spanish = sms_body(unsaved(visit_type, sofia, purpose), link=link)
            english = sms_body(unsaved(visit_type, avery, purpose), link=link)
            assert spanish.startswith("Hola Sofia"), spanish
            assert english_left(spanish, clinic.clinic.name, "STOP") == [], spanish
            assert treatment_words(spanish) == [] and is_gsm(spanish), spanish
            # The same two segments (306 GSM-7 characters) the English texts keep to.
            assert segments(spanish) <= 2 and segments(english) <= 2, (purpose, len(spanish))
            email = email_content(unsaved(visit_type, sofia, purpose, channel=Channel.EMAIL))
            assert treatment_words(email.subject) == []
            assert "lun 3 jun" in email.subject or "hoy" in email.subject, email.subject
            assert english_left(email.text, clinic.clinic.name, visit_type.name, "STOP") == []
            assert 'lang="es"' in email.html
    combined = combined_sms_body(
        [
            unsaved(clinic.iv, sofia, Purpose.AFTERCARE, at(MONDAY, "09:00")),
            unsaved(clinic.iv, sofia, Purpose.PREPARATION, at(MONDAY, "10:00") + 48 * HOUR),
            unsaved(clinic.integration, sofia, Purpose.REMINDER, at(MONDAY, "15:00") + 24 * HOUR),
        ],
        link=link,
    )
    assert "Proximas citas: mar 4 jun, 15:00 y mié 5 jun, 10:00." in combined
    assert segments(combined) <= COMBINED_MAX_SEGMENTS and is_gsm(combined)


def test_times_read_the_spanish_way_in_the_patients_own_zone():
    moment = at(MONDAY + timedelta(days=1), "15:30")  # 15:30 in New York
    with translation.override("es"):
        assert when_text(moment, "America/New_York", "America/New_York") == "mar 4 jun, 15:30"
        assert when_text(moment, "America/Chicago", "America/New_York") == "mar 4 jun, 14:30 CDT"
    with translation.override("en"):
        assert when_text(moment, "America/New_York", "America/New_York") == "Tue Jun 4 at 3:30 PM"


def test_the_treatment_word_check_knows_spanish_with_or_without_accents():
    assert treatment_words("Su INFUSIÓN de ketamina") == ["infusion", "ketamina"]
    assert treatment_words("esketamina, dosis, psicoterapia") == [
        "dosis",
        "esketamina",
        "psicoterapia",
    ]
    assert treatment_words("Hola Sofia, le recordamos su cita en Norte el mar 4 jun") == []


# -- replies -----------------------------------------------------------------------


def reply_of(twiml: str) -> str:
    start, end = twiml.find("<Message>"), twiml.find("</Message>")
    return twiml[start + len("<Message>") : end] if start >= 0 else ""


def test_ayuda_gets_the_spanish_help_and_help_the_patients_own_language(
    clinic, sofia, twilio, client
):
    avery = clinic.texting_patient("Avery")
    help_es = reply_of(twilio.text_from(avery.mobile, "Ayuda", client=client)[1])
    assert help_es.startswith(f"{clinic.clinic.name}: recordatorios de citas. Ayuda: ")
    assert "Responda STOP para darse de baja." in help_es and is_gsm(help_es)
    assert "visit reminders" in reply_of(twilio.text_from(avery.mobile, "HELP", client=client)[1])
    assert "recordatorios" in reply_of(twilio.text_from(sofia.mobile, "HELP", client=client)[1])


@pytest.mark.parametrize(
    "body", ["PARAR", "parar", "Alto", "CANCELAR", "Baja", "No me envíen más mensajes"]
)
def test_spanish_opt_out_words_end_texts_and_are_confirmed_in_spanish(
    clinic, sofia, twilio, client, body
):
    visit = clinic.book(sofia, clinic.screening, at(MONDAY, "10:00"))
    pending = Message.objects.filter(visit=visit, channel=Channel.SMS).pending()
    assert pending.exists()
    reply = reply_of(twilio.text_from(sofia.mobile, body, client=client)[1])
    sofia.refresh_from_db()
    assert sofia.sms_opted_out_at is not None and not sofia.can_receive_sms
    assert not pending.exists()
    # Twilio does not act on Spanish words: the confirmation is ours, in Spanish.
    assert reply.startswith("No recibira mas mensajes de") and "START" in reply


def test_cancelar_about_a_visit_is_for_the_desk_not_an_opt_out(clinic, sofia, twilio, client):
    clinic.book(sofia, clinic.screening, at(MONDAY, "10:00"))
    reply = reply_of(twilio.text_from(sofia.mobile, "Cancelar la cita del lunes", client=client)[1])
    sofia.refresh_from_db()
    assert sofia.sms_opted_out_at is None
    assert InboundMessage.objects.get().kind == InboundKind.OTHER
    assert reply.startswith("Gracias, pasamos su mensaje a la recepcion.")


def test_c_confirms_and_answers_in_the_patients_language(clinic, sofia, twilio, client):
    visit = clinic.book(sofia, clinic.screening, at(MONDAY, "10:00"))
    reply = reply_of(twilio.text_from(sofia.mobile, "C", client=client)[1])
    assert reply == "Gracias, Sofia: su cita del lun 3 jun, 10:00 esta confirmada."
    visit.refresh_from_db()
    assert visit.status == "confirmed"
    # The desk reads what happened in English.
    assert InboundMessage.objects.get().outcome == "Visit confirmed."


# -- a whole plan through the Twilio fake ---------------------------------------------------


def test_a_spanish_patients_plan_goes_out_in_spanish_from_invite_to_aftercare(
    clinic, sofia, now, twilio, client
):
    TranslatedInstructions.objects.create(
        visit_type=clinic.iv,
        language="es",
        preparation_instructions="No coma nada solido 6 horas antes.",
        aftercare_instructions="Descanse y beba agua.",
    )
    clinic.iv.preparation_instructions = "No solid food for 6 hours before."
    clinic.iv.aftercare_instructions = "Rest and drink water."
    clinic.iv.save()
    dose = clinic.book(sofia, clinic.iv, at(MONDAY + timedelta(days=2), "10:00"))
    follow_up = clinic.book(sofia, clinic.integration, at(MONDAY + timedelta(days=3), "11:00"))
    step_through(now, follow_up.end + HOUR, twilio, client)

    texts = [m["body"] for m in twilio.sent_to(sofia.mobile)]
    assert len(texts) >= 3
    for text in texts:
        assert text.startswith("Hola Sofia"), text
        assert english_left(text, clinic.clinic.name, "STOP") == [], text
        assert treatment_words(text) == [] and is_gsm(text) and segments(text) <= 3
    assert any("mié 5 jun, 10:00" in text for text in texts)  # é is in GSM-7
    assert any("su videoconsulta" in text for text in texts)

    emails = [e for e in mail.outbox if sofia.email in e.to]
    subjects = [e.subject for e in emails]
    assert any(s.startswith("Cita en") for s in subjects), subjects  # the invite
    assert any(s.startswith("Cómo prepararse para su cita del mié 5 jun") for s in subjects)
    preparation = next(e for e in emails if e.subject.startswith("Cómo prepararse"))
    assert "No coma nada solido 6 horas antes." in preparation.body
    assert "No solid food" not in preparation.body
    aftercare = next(e for e in emails if e.subject == "Después de su visita de hoy")
    assert "Descanse y beba agua." in aftercare.body
    assert Message.objects.filter(visit=dose, channel=Channel.SMS, body__startswith="Hola").exists()


# -- pages ---------------------------------------------------------------------------


def test_the_spanish_patient_page_and_its_own_words(clinic, sofia, client):
    clinic.iv.preparation_instructions = "No solid food for 6 hours before."
    clinic.iv.save()
    clinic.book(sofia, clinic.iv, at(MONDAY + timedelta(days=2), "10:00"))
    clinic.book(sofia, clinic.integration, at(MONDAY + timedelta(days=3), "11:00"))
    link = issue_patient_link(sofia)
    path = "/" + link.split("://", 1)[1].split("/", 1)[1]
    page = client.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert '<html lang="es">' in html and "Hola, Sofia" in html
    assert "miércoles 5 de junio de 2030, 10:00" in html
    names = [clinic.clinic.name, clinic.iv.name, clinic.integration.name, "Example"]
    names += [str(c) for c in clinic.clinic.clinicians.all()]
    main = html.split('<main id="main"', 1)[1]
    # The clinic has not written its instructions in Spanish: the English ones show.
    assert "No solid food for 6 hours before." in main
    assert english_left(main.replace("No solid food for 6 hours before.", ""), *names) == []
    for name in ("patient_move", "patient_cancel"):
        visit = Visit.objects.filter(patient=sofia).first()
        # A dose is changed by the desk only: the page says so (409), in Spanish.
        other = client.get(reverse(name, args=[path.strip("/").split("/")[-1], visit.pk]))
        assert other.status_code in (200, 409)
        text = other.content.decode().split('<main id="main"', 1)[1]
        assert english_left(text, *names) == [], name
    waitlist = client.get(path + "waitlist/").content.decode().split('<main id="main"', 1)[1]
    assert "¿Una hora antes, Sofia?" in waitlist
    assert "¿Qué visita le gustaría adelantar?" in waitlist and "lunes" in waitlist
    assert english_left(waitlist, *names) == [], strip_tags(waitlist)


def test_the_patient_chooses_their_language_and_a_wrong_one_changes_nothing(clinic, sofia, client):
    link = issue_patient_link(sofia)
    path = "/" + link.split("://", 1)[1].split("/", 1)[1]
    page = client.post(path, {"action": "language", "language": "xx"}, follow=True)
    assert "Elija uno de los idiomas de la lista." in page.content.decode()
    sofia.refresh_from_db()
    assert sofia.language == "es"
    page = client.post(path, {"action": "language", "language": "en"}, follow=True)
    sofia.refresh_from_db()
    assert sofia.language == "en"
    assert "Your texts, emails and this page are now in English." in page.content.decode()
    assert '<html lang="en">' in page.content.decode()


def test_the_desk_stays_english_and_sees_the_language_the_missing_instructions_and_the_text(
    clinic, sofia, client, now, twilio
):
    clinic.iv.preparation_instructions = "No solid food for 6 hours before."
    clinic.iv.save()
    visit = clinic.book(sofia, clinic.iv, at(MONDAY + timedelta(days=2), "10:00"))
    step_through(now, visit.start - 24 * HOUR, twilio, client)
    user = front_desk()
    sign_in_verified(client, user)
    page = client.get(reverse("desk_patient", args=[sofia.pk])).content.decode()
    assert '<html lang="en">' in page and "Skip to content" in page
    assert "<dt>Language</dt><dd>Español" in page
    assert f"no Español instructions for {clinic.iv.name}" in page
    sent = Message.objects.filter(visit=visit, channel=Channel.SMS).exclude(body="").first()
    assert sent is not None and sent.body.startswith("Hola Sofia")
    assert sent.body.replace("&", "&amp;") in page.replace("&#x27;", "'")
    TranslatedInstructions.objects.create(
        visit_type=clinic.iv, language="es", preparation_instructions="No coma nada solido."
    )
    page = client.get(reverse("desk_patient", args=[sofia.pk])).content.decode()
    assert "instructions for" not in page


def test_a_spanish_patients_feed_speaks_spanish_and_changes_with_the_language(
    clinic, sofia, client
):
    clinic.book(sofia, clinic.integration, at(MONDAY + timedelta(days=3), "11:00"))
    _, raw = tokens.issue(sofia)
    path = reverse("calendar_feed", args=[raw])
    spanish = client.get(path)
    assert "SUMMARY:Cita en" in spanish.content.decode()
    assert "Sesión por video." in spanish.content.decode().replace("\r\n ", "")
    Patient.objects.filter(pk=sofia.pk).update(language="en")
    english = client.get(path)
    assert "SUMMARY:Appointment at" in english.content.decode()
    assert english["ETag"] != spanish["ETag"]


# -- on a phone --------------------------------------------------------------------


def test_a_spanish_patient_confirms_a_visit_on_their_phone_in_spanish(
    browser,  # noqa: F811 - the fixture from tests/test_browser.py
    live_server,
    transactional_db,
):
    clinic = SmallClinic()
    sofia = clinic.patient("Sofia", "Ejemplo", language="es")
    visit = _visit(clinic, sofia, "integration", _next_weekday(timezone.localdate(), 1), "10:00")
    link = live_server.url + "/p/" + issue_patient_link(sofia).split("/p/", 1)[1]
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    context.set_default_timeout(10_000)
    phone = context.new_page()
    phone.goto(link)
    assert phone.get_attribute("html", "lang") == "es"
    assert phone.get_by_role("heading", level=1).inner_text() == "Hola, Sofia"
    assert phone.get_by_role("heading", name="Su próxima cita").is_visible()
    # Spanish runs longer than English: still nothing wider than the screen.
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    phone.get_by_role("button", name="Confirmar esta cita").tap()
    sync_api.expect(phone.get_by_role("status")).to_contain_text(
        "Gracias: su cita está confirmada."
    )
    visit.refresh_from_db()
    assert visit.status == "confirmed"
    phone.get_by_label("Idioma de sus mensajes, correos y esta página").select_option("en")
    phone.get_by_role("button", name="Cambiar el idioma").tap()
    # The page comes back in English once the form has gone (tap does not wait for it).
    sync_api.expect(phone.get_by_role("heading", level=1)).to_have_text("Hello Sofia")
    sofia.refresh_from_db()
    assert sofia.language == "en"
    context.close()
