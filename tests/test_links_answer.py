"""Every link we send answers: each one in a feed event, an invite, a text or an email is
followed as its holder would follow it, and the page answers 200.

Links go out in texts and emails (the patient's private link, the patient page's
entrance), calendar entries (the entrance for patients; the clinician's calendar
page for clinicians) and invites. Video links point at another site and are not
ours to follow.
"""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from icalendar import Calendar

from notifications import transports
from scheduler import tokens
from scheduler.links import feed_url, patient_page_url
from scheduler.models import InvitePreference, TokenPurpose
from tests.conftest import MONDAY, at
from tests.page_helpers import sign_in_verified
from tests.reminder_helpers import HOUR, ReminderClinic, run_until

SITE = "https://clinic.example.org"
LINK = re.compile(re.escape(SITE) + r"[^\s\"'<>]*")


def our_links(text: str) -> set[str]:
    return {link.rstrip(".,)") for link in LINK.findall(text)}


def path_of(link: str) -> str:
    """What a browser asks our server for: the path and query, never the fragment."""
    return link.removeprefix(SITE).split("#", 1)[0]


def answers(client: Client, link: str) -> int:
    return client.get(path_of(link)).status_code


def calendar_links(ics: str | bytes) -> set[str]:
    """The links a calendar app shows: each event's URL and those in its description."""
    links = set()
    for event in Calendar.from_ical(ics).walk("VEVENT"):
        links |= our_links(str(event.get("URL", "")))
        links |= our_links(str(event.get("DESCRIPTION", "")))
    return links


def feed_links(client: Client, url: str) -> set[str]:
    response = client.get(path_of(url))
    assert response.status_code == 200
    return calendar_links(response.content)


@pytest.fixture
def booked(db, messaging, now):
    clinic = ReminderClinic()
    # The prescriber takes invites by email, so their links are followed too.
    clinic.prescriber.user.email = "dr.alvarez@clinic.example.org"
    clinic.prescriber.user.save(update_fields=["email"])
    InvitePreference.objects.create(clinician=clinic.prescriber, email_invites=True)
    patient = clinic.texting_patient()
    visits = [
        clinic.book(patient, clinic.iv, at(MONDAY, "10:00")),
        clinic.book(patient, clinic.integration, at(MONDAY + timedelta(days=2), "11:00")),
    ]
    return clinic, patient, visits


def test_the_patient_page_entrance_answers_without_a_token(client, db):
    response = client.get(patient_page_url())
    assert response.status_code == 200
    assert b"private page" in response.content
    # Whose page it is, is not known: Spanish too.
    assert '<section lang="es"' in response.content.decode()
    assert "página privada" in response.content.decode()


def test_a_link_that_stopped_working_says_so_in_english_and_spanish(client, db):
    response = client.get(patient_page_url() + "no-such-token-0123456789abcdef/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "This page was not found" in page and "ask for a new one" in page
    assert '<section lang="es"' in page and "pida uno nuevo" in page


def test_every_link_in_a_patients_feed_answers_for_the_patient(booked, settings):
    settings.SITE_URL = SITE
    _, patient, _ = booked
    _, raw = tokens.issue(patient, TokenPurpose.CALENDAR_FEED)
    patient_app = Client()  # a calendar app: no session
    links = feed_links(patient_app, feed_url(raw))
    assert links == {patient_page_url()}
    assert all(answers(patient_app, link) == 200 for link in links)


def test_every_link_in_a_clinicians_feed_answers_for_the_clinician(booked, settings):
    settings.SITE_URL = SITE
    clinic, _, visits = booked
    _, raw = tokens.issue(clinic.prescriber)
    links = feed_links(Client(), feed_url(raw))
    assert len(links) == 1  # the IV visit, on the prescriber's calendar page
    (link,) = links
    assert f"#visit-{visits[0].pk}" in link
    clinician = Client()
    sign_in_verified(clinician, clinic.prescriber.user)
    response = clinician.get(path_of(link))
    assert response.status_code == 200
    assert f'id="visit-{visits[0].pk}"'.encode() in response.content
    assert answers(Client(), link) == 302  # anyone else is sent to sign in


def email_texts(email) -> list[str]:
    """Every part a reader or a calendar app sees: text, HTML, the invite and its attachment."""
    parts = [email.body] + [content for content, _ in email.alternatives]
    parts += [
        content.decode() if isinstance(content, bytes) else content
        for _, content, _ in email.attachments
    ]
    return parts


def test_every_link_in_every_text_email_and_invite_answers_when_it_arrives(booked, now):
    """Run the reminder timeline; after each pass, follow the links it just sent.

    A newer private link revokes the older one (the patient page's rule), so
    each link is followed when its message arrives, as the patient would. The
    clinician follows the links in their invites signed in, as they would.
    """
    clinic, _, visits = booked
    patient_holder, clinician_holder = Client(), Client()
    followed = {"patient": set(), "clinician": set()}
    moment, end = visits[0].start - 80 * HOUR, visits[1].end + 2 * HOUR
    while moment < end:
        run_until(now, moment)
        sent = [("patient", sms.body) for sms in transports.outbox]
        for email in mail.outbox:
            who = "clinician" if clinic.prescriber.user.email in email.to else "patient"
            sent += [(who, text) for text in email_texts(email)]
        transports.outbox.clear()
        mail.outbox = []
        # Days pass between invites and the staff session times out meanwhile:
        # the clinician signs in when they open one.
        sign_in_verified(clinician_holder, clinic.prescriber.user)
        for who, text in sent:
            holder = clinician_holder if who == "clinician" else patient_holder
            is_calendar = text.startswith("BEGIN:VCALENDAR")
            for link in calendar_links(text) if is_calendar else our_links(text):
                assert answers(holder, link) == 200, (who, link)
                followed[who].add(path_of(link).split("?")[0])
        moment += HOUR
    # The patient: the entrance (invites) and a private link (the preparation text).
    assert "/p/" in followed["patient"]
    assert any(len(path) > len("/p/") and path.startswith("/p/") for path in followed["patient"])
    # The clinician: their calendar page, from the invite.
    assert followed["clinician"] == {"/calendars/mine/"}
