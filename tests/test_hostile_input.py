"""Hostile and malformed input: each gets a clear refusal (or is shown harmlessly) and changes nothing else."""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from icalendar import Calendar

from notifications.content import email_content, sms_body
from notifications.models import Channel, InboundMessage, Message, Purpose
from notifications.patient_links import issue_patient_link
from scheduler import booking, tokens
from scheduler.external_calendars import FetchError, busy_intervals
from scheduler.models import CalendarDetail, Patient, Visit
from tests.conftest import MONDAY, at
from tests.ical_checks import assert_valid_ics
from tests.page_helpers import front_desk, sign_in_verified

pytestmark = pytest.mark.usefixtures("now")

SCRIPT = "<script>alert(1)</script>"
ICAL_SPECIALS = 'O\'Brien, Jr; "Sam"\\'
NEWLINE_NAME = "Line\nBreak"


@pytest.fixture
def hostile(clinic):
    patient = clinic.patient("Hostile", "Names")
    # Names are free text in the admin; a newline can arrive through an import.
    Patient.objects.filter(pk=patient.pk).update(
        first_name=f"{SCRIPT} {NEWLINE_NAME}", last_name=ICAL_SPECIALS
    )
    patient.refresh_from_db()
    visit = booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    return patient, visit


@pytest.fixture
def desk(client, db):
    client.force_login(front_desk())
    return client


# -- names with markup and iCalendar's special characters ------------------------


def test_names_with_markup_are_escaped_on_staff_and_patient_pages(desk, clinic, hostile):
    patient, visit = hostile
    pages = [
        desk.get(reverse("desk_patient", args=[patient.pk])).text,
        desk.get(reverse("desk_visit", args=[visit.pk])).text,
        desk.get(reverse("desk_day", args=[MONDAY.isoformat()])).text,
        desk.get(reverse("desk_patients"), {"q": "Brien"}).text,
        desk.get(issue_patient_link(patient).removeprefix("http://localhost:8000")).text,
    ]
    for page in pages:
        assert SCRIPT not in page
        assert "&lt;script&gt;" in page


def test_names_with_commas_semicolons_and_newlines_stay_valid_in_feeds(client, clinic, hostile):
    clinic.clinic.calendar_detail = CalendarDetail.FULL  # the one level that names patients
    clinic.clinic.save()
    _, raw = tokens.issue(clinic.therapist)
    text = client.get(reverse("calendar_feed", args=[raw])).text
    assert_valid_ics(text)
    (event,) = Calendar.from_ical(text).walk("VEVENT")
    assert ICAL_SPECIALS in str(event["SUMMARY"])
    assert "\n" not in str(event["SUMMARY"]).replace(NEWLINE_NAME, "")


def test_a_patients_own_ics_with_a_hostile_clinic_name_stays_valid(client, clinic, hostile):
    patient, visit = hostile
    clinic.clinic.name = 'Riverside, Care; "Clinic"\nTwo'
    clinic.clinic.save()
    link = issue_patient_link(patient).rsplit("/", 2)[-2]
    text = client.get(reverse("patient_visit_ics", args=[link, visit.pk])).text
    assert_valid_ics(text)
    (event,) = Calendar.from_ical(text).walk("VEVENT")
    assert 'Riverside, Care; "Clinic"' in str(event["SUMMARY"])


def test_texts_carry_names_as_plain_one_line_text_and_emails_escape_them_in_html(clinic, hostile):
    patient, visit = hostile
    message = Message(visit=visit, patient=patient, purpose=Purpose.REMINDER, channel=Channel.SMS)
    text = sms_body(message, link="")
    assert "\n" not in text
    assert "&lt;" not in text and "&#x27;" not in text  # a text is not HTML
    email = email_content(message)
    assert "\n" not in email.subject
    assert SCRIPT not in email.html and "&lt;script&gt;" in email.html
    assert SCRIPT in email.text  # plain text: shown as typed, never interpreted


def test_an_apostrophe_in_a_first_name_is_not_html_escaped_in_a_text(clinic):
    patient = clinic.patient("D'Arcy", "Smith")
    visit = booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    message = Message(visit=visit, patient=patient, purpose=Purpose.REMINDER, channel=Channel.SMS)
    assert sms_body(message, link="").startswith("Hi D'Arcy,")


# -- phone numbers and email addresses -------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["12345", "not a number", "+1 212 555 01", "+44 20 7946 0000", "+1 800 555 0100", "9" * 40],
)
def test_invalid_and_non_mobile_numbers_are_refused(clinic, number):
    patient = Patient(
        clinic=clinic.clinic,
        first_name="Pat",
        last_name="Number",
        date_of_birth=date(1980, 1, 1),
        mobile=number,
        time_zone=clinic.clinic.time_zone,
    )
    with pytest.raises(ValidationError) as refused:
        patient.full_clean()
    assert "mobile" in refused.value.message_dict
    assert not Patient.objects.filter(last_name="Number").exists()


@pytest.mark.parametrize(
    "address",
    [
        "a@example.com\nBcc: x@example.com",
        "a@example.com\r\nBcc: x@example.com",
        "a@example.com, x@example.com",
        "<a@example.com>",
    ],
)
def test_email_addresses_with_header_injection_are_refused(clinic, address):
    patient = Patient(
        clinic=clinic.clinic,
        first_name="Pat",
        last_name="Mail",
        date_of_birth=date(1980, 1, 1),
        email=address,
        time_zone=clinic.clinic.time_zone,
    )
    with pytest.raises(ValidationError) as refused:
        patient.full_clean()
    assert "email" in refused.value.message_dict


def test_an_injected_address_never_reaches_a_mail_header():
    """Even if one got past validation, Django refuses newlines in any header."""
    from django.core.mail import BadHeaderError, EmailMessage

    message = EmailMessage(
        "Hi", "Body", "clinic@example.com", ["a@example.com\nBcc: x@example.com"]
    )
    with pytest.raises((BadHeaderError, ValueError)):
        message.message()


# -- times and dates ---------------------------------------------------------------


def test_a_time_in_the_dst_gap_is_refused_and_nothing_is_booked(clinic):
    from scheduler.timezones import NonexistentLocalTime, local_datetime

    patient = clinic.patient()
    with pytest.raises(NonexistentLocalTime) as refused:
        local_datetime(date(2030, 3, 10), time(2, 30), ZoneInfo("America/New_York"))
    assert "02:30 on 2030-03-10 does not exist in America/New_York" in str(refused.value)
    with pytest.raises(ValueError):
        booking.book(
            patient=patient,
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=datetime(2030, 3, 10, 2, 30),  # naive: which 02:30 is meant is unknowable
        )
    assert not Visit.objects.filter(patient=patient).exists()


@pytest.mark.parametrize(
    "day", ["0001-01-01", "9999-12-31", "1899-12-31", "2200-01-01", "2030-02-30"]
)
def test_days_far_away_or_invalid_get_404_not_a_server_error(desk, clinic, day):
    for name in ("desk_day", "desk_week"):
        assert desk.get(reverse(name, args=[day])).status_code == 404
    assert desk.get(reverse("desk_this_week"), {"day": day}).status_code == 404


@pytest.mark.parametrize("week", ["0001-01-01", "9999-12-31", "garbage"])
def test_a_clinicians_calendar_falls_back_to_this_week_for_absurd_weeks(client, clinic, week):
    sign_in_verified(client, clinic.therapist.user)
    assert client.get(reverse("my_calendar"), {"week": week}).status_code == 200


@pytest.mark.parametrize("start", [date(1900, 1, 1), MONDAY + timedelta(days=3650)])
def test_booking_far_in_the_past_or_future_is_refused_clearly(clinic, start):
    patient = clinic.patient()
    with pytest.raises(booking.BookingError) as refused:
        booking.book(
            patient=patient,
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=at(start, "10:00"),
        )
    assert str(refused.value)
    assert not Visit.objects.filter(patient=patient).exists()


# -- big and malformed requests ------------------------------------------------------


def test_a_huge_form_post_is_refused_before_any_view(client, db, settings):
    payload = {"username": "x", "password": "y" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)}
    assert client.post(reverse("login"), payload).status_code == 400


def test_a_post_with_too_many_fields_is_refused(client, db, settings):
    payload = {f"f{n}": "1" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    assert client.post(reverse("login"), payload).status_code == 400


def test_upload_limits_are_set_sensibly(settings):
    assert 16 * 1024 <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE <= 2.5 * 1024 * 1024
    assert 100 <= settings.DATA_UPLOAD_MAX_NUMBER_FIELDS <= 1000


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not a calendar at all",
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        b"BEGIN:VEVENT\r\nEND:VEVENT\r\n",
        b"\xff\xfe\x00binary",
    ],
)
def test_malformed_calendar_imports_are_refused_with_a_reason(body):
    tz = ZoneInfo("America/New_York")
    start = datetime(2030, 1, 1, tzinfo=tz)
    with pytest.raises(FetchError) as refused:
        busy_intervals(body, tz, start, start + timedelta(days=30))
    assert str(refused.value)


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"CONTENT_LENGTH": "lots"}, 400), ({"CONTENT_LENGTH": str(10**9)}, 413)],
)
def test_webhook_bodies_with_a_bad_or_huge_length_are_refused(client, db, headers, status):
    response = client.generic(
        "POST",
        reverse("twilio-inbound"),
        b"MessageSid=SM1&Body=C",
        content_type="application/x-www-form-urlencoded",
        **headers,
    )
    assert response.status_code == status
    assert not InboundMessage.objects.exists()


def test_a_malformed_inbound_webhook_body_is_refused_and_records_nothing(client, db, settings):
    from twilio.request_validator import RequestValidator

    settings.TWILIO_AUTH_TOKEN = "test-token"
    url = reverse("twilio-inbound")
    params = {"Body": SCRIPT, "From": "not-a-number"}  # no MessageSid
    signature = RequestValidator("test-token").compute_signature(settings.SITE_URL + url, params)
    response = client.post(url, params, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 400
    assert not InboundMessage.objects.exists()
