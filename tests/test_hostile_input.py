"""Hostile and malformed input: each gets a clear refusal (or is shown harmlessly) and changes nothing else."""

import io
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import Client, RequestFactory
from django.urls import reverse
from icalendar import Calendar

from notifications.content import email_content, sms_body
from notifications.models import Channel, InboundMessage, Message, Purpose
from notifications.patient_links import issue_patient_link
from scheduler import booking, tokens
from scheduler.external_calendars import FetchError, busy_intervals
from scheduler.models import CalendarDetail, Patient, Visit
from tests.conftest import MONDAY, at, on_one_engine, seeded_for_the_module
from tests.html_forms import as_post, page_forms
from tests.ical_checks import assert_valid_ics
from tests.page_helpers import front_desk, sign_in_verified

pytestmark = pytest.mark.usefixtures("now")

OUT_OF_RANGE_DATES = ["9999-12-31", "0001-01-01", "2030-02-30"]
# "²" passes str.isdigit() but not int(): code that checks one and calls the other.
NOT_IDS = ["abc", "", "1e9", "-1", "99999999999999999999", "²"]
HOSTILE = OUT_OF_RANGE_DATES + NOT_IDS
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


# -- ids that are no ids, dates outside the calendar: a 4xx or a form error --------------


@pytest.mark.parametrize("visit", NOT_IDS)
def test_a_patient_page_post_naming_no_visit_of_theirs_is_a_404(client, clinic, hostile, visit):
    patient, booked = hostile
    link = issue_patient_link(patient).rsplit("/", 2)[-2]
    response = client.post(
        reverse("patient_page", args=[link]), {"visit": visit, "action": "confirm"}
    )
    assert response.status_code == 404
    booked.refresh_from_db()
    assert booked.status == "booked"


@pytest.mark.parametrize("calendar", ["abc", "", "1e9", "99999999999999999999"])
def test_removing_a_calendar_that_is_no_id_is_a_404(client, clinic, calendar):
    from scheduler.models import ExternalCalendar

    ExternalCalendar.objects.create(clinician=clinic.therapist, url="https://example.com/a.ics")
    sign_in_verified(client, clinic.therapist.user)
    response = client.post(
        reverse("my_calendar"), {"action": "remove_calendar", "calendar": calendar}
    )
    assert response.status_code == 404
    assert ExternalCalendar.objects.count() == 1


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_an_admin_visit_outside_the_calendar_is_a_form_error(world, client, day):
    from scheduler.models import VisitType

    sign_in_verified(client, world["superuser"])
    visits = Visit.objects.count()
    response = client.post(
        reverse("admin:scheduler_visit_add"),
        {
            "patient": world["patient"].pk,
            "visit_type": VisitType.objects.get(clinic__slug="riverside", slug="screening").pk,
            "clinician": world["therapist"].pk,
            "start_0": day,
            "start_1": "10:00",
        },
    )
    assert response.status_code == 200
    assert "Give a date between 1900 and 2199." in response.text
    assert Visit.objects.count() == visits


@pytest.mark.parametrize(
    ("day", "error"),
    [
        ("9999-12-31", "Give a date between 1900 and 2199."),
        ("0001-01-01", "Give a date between 1900 and 2199."),
        ("2100-01-01", "Visits can be booked at most 730 days ahead: start on Fri 2032-01-02"),
        ("2030-02-30", "Enter a valid date."),
    ],
)
def test_a_new_plan_starting_outside_the_booking_horizon_is_a_form_error(world, client, day, error):
    from plans.models import CarePlan, Protocol

    client.force_login(front_desk())
    plans = CarePlan.objects.count()
    response = client.post(
        reverse("desk_new_plan"),
        {
            "patient": world["patient"].pk,
            "protocol": Protocol.objects.get(clinic__slug="riverside", slug="iv-induction").pk,
            "start_date": day,
            "action": "confirm",
        },
    )
    assert response.status_code == 200
    assert error in response.text
    assert CarePlan.objects.count() == plans


@pytest.mark.parametrize("value", NOT_IDS)
def test_an_admin_add_page_opened_with_a_choice_that_is_no_id_opens(world, client, value):
    """?patient=abc on the add page: Django's autocomplete looked it up as it was."""
    sign_in_verified(client, world["superuser"])
    add = {"patient": value, "clinician": value, "visit_type": value}
    assert client.get(reverse("admin:scheduler_visit_add"), add).status_code == 200
    assert client.get(reverse("admin:scheduler_patient_add"), {"clinic": value}).status_code == 200


@pytest.mark.filterwarnings("ignore:DateTimeField Visit.start received a naive datetime")
@pytest.mark.parametrize(
    "drill_down",
    [
        {"year": "9999", "month": "12", "day": "31"},
        {"year": "9999", "month": "12"},
        {"year": "9999"},
        {"year": "1", "month": "1", "day": "1"},
        {"year": "0"},
        {"year": "abc"},
    ],
)
def test_the_admins_date_drill_down_outside_the_calendar_is_a_bad_lookup(world, client, drill_down):
    from django.contrib import admin

    sign_in_verified(client, world["superuser"])
    with_dates = [(m, a) for m, a in admin.site._registry.items() if a.date_hierarchy]
    assert len(with_dates) >= 6
    for model, model_admin in with_dates:
        url = _admin_url(model, "changelist")
        query = {f"{model_admin.date_hierarchy}__{part}": v for part, v in drill_down.items()}
        response = client.get(url, query)
        # The admin's answer to any bad lookup: the unfiltered list, flagged.
        assert (response.status_code, response.get("Location")) == (302, f"{url}?e=1"), url
    # A day near the ends of the calendar is shown, and ranges past its end refused too.
    visits = _admin_url(Visit, "changelist")
    assert (
        client.get(
            visits, {"start__year": "2199", "start__month": "12", "start__day": "31"}
        ).status_code
        == 200
    )
    # Past the calendar's end: SQLite's conversion overflows, which the list
    # answers as a bad lookup (302 to ?e=1); PostgreSQL takes the date and
    # finds no visit. Either way, no server error.
    assert client.get(visits, {"start__gte": "9999-12-31 23:59"}).status_code in (200, 302)


# -- every form and every field: out-of-range dates and ids that are no ids -----------
#
# Each value below goes, one field at a time, into every field of every form
# that takes a POST (admin add and change pages of every registered model with
# their inlines, admin actions, the desk, the patient page, the clinician's
# calendar page, sign-in, signed Twilio webhooks) and into the query strings
# of the admin lists. The rest of each form keeps the values the page itself
# offered, so that the hostile value reaches the code that runs on a valid
# form. Nothing may answer with a server error; each request is rolled back,
# so every one starts from the same data.


class _Undo(Exception):
    pass


@contextmanager
def _pages_drawn_as_served():
    """Templates rendered as in production, not recorded for the test client: a sweep
    reads only status codes, and recording every template's context is a fifth of
    the time of an admin page. The admin's list of apps is left out (below)."""
    from django.contrib import admin
    from django.template import Template
    from django.test.utils import _TestState

    recording = Template._render
    Template._render = _TestState.saved_data.template_render
    # Every admin page lists every app and model (the sidebar, the breadcrumbs'
    # apps): the same list whatever was posted, and reversing each model's URLs
    # for it is a third of an admin page's time. Django's, not ours: empty here.
    admin.site.get_app_list = lambda request, app_label=None: []
    try:
        yield
    finally:
        Template._render = recording
        del admin.site.get_app_list


@dataclass
class Sweep:
    """Sends hostile requests, each rolled back, and keeps every 5xx."""

    failures: list[str] = field(default_factory=list)
    sent: int = 0
    endpoints: set[str] = field(default_factory=set)

    def send(self, client, method: str, url: str, data=None, *, endpoint: str, what="", **extra):
        self.sent += 1
        self.endpoints.add(endpoint)
        try:
            with transaction.atomic(), _pages_drawn_as_served():
                response = getattr(client, method)(url, data or {}, **extra)
                raise _Undo(response)
        except _Undo as undo:
            response = undo.args[0]
        if response.status_code >= 500:
            self.failures.append(f"{response.status_code} {method.upper()} {url} {what}")
        return response

    def all_at_once(self, client, url: str, baseline, names, *, endpoint: str, what: str):
        """POST ``baseline`` with all of ``names`` set to each hostile value in turn."""
        for value in HOSTILE:
            data = {**baseline, **{name: [value] for name in names}}
            self.send(client, "post", url, data, endpoint=endpoint, what=f"{what}={value!r}")

    def each_field(
        self, client, url: str, baseline, names, *, endpoint: str, values=HOSTILE, **extra
    ):
        """POST ``baseline`` with each of ``names`` in turn set to each of ``values``."""
        for name in names:
            for value in values:
                data = {**baseline, name: [value]}
                self.send(
                    client, "post", url, data, endpoint=endpoint, what=f"{name}={value!r}", **extra
                )

    def check(self):
        """No server error anywhere: the project's pages, its admin and other apps' admin pages."""
        assert not self.failures, "\n".join(self.failures)


def _mutable(name: str) -> bool:
    """Fields worth varying: not Django's CSRF token, not a formset's empty template or later rows."""
    if name == "csrfmiddlewaretoken" or "__prefix__" in name:
        return False
    row = re.search(r"-(\d+)-", name)
    return row is None or row.group(1) == "0"


@pytest.fixture(scope="module")
def demo_world(django_db_setup, django_db_blocker):
    """The demo clinic, with one row of every model the admin shows, and a superuser:
    their primary keys, seeded once per worker (29 tests ask for them)."""
    with seeded_for_the_module("demo_world", django_db_blocker, _seed_world) as seeded:
        yield seeded


def _seed_world() -> dict[str, int]:
    from django.core.management import call_command

    from notifications.models import MessagingPreferences
    from notifications.webhooks import handle_inbound
    from plans import care_plans
    from plans.generator import generate
    from plans.models import Protocol
    from scheduler.models import Closure, TimeOff

    call_command("seed_demo", stdout=io.StringIO())
    patient = Patient.objects.order_by("pk").first()
    clinic = patient.clinic
    Closure.objects.create(
        clinic=clinic, start=at(MONDAY, "08:00"), end=at(MONDAY, "12:00"), reason="Training"
    )
    therapist = clinic.clinicians.filter(is_therapist=True).first()
    TimeOff.objects.create(
        clinician=therapist, start=at(MONDAY, "13:00"), end=at(MONDAY, "17:00"), reason="Away"
    )
    MessagingPreferences.objects.create(patient=patient, sms_per_day=2)
    handle_inbound("SM" + "7" * 32, patient.mobile, "Can we talk?")
    proposal = generate(
        Patient.objects.order_by("pk")[1],
        Protocol.objects.get(clinic__slug="riverside", slug="iv-induction"),
        MONDAY + timedelta(days=28),
    )
    care_plans.confirm(care_plans.save_proposal(proposal))
    # A freed time and its offers (waitlist): the demo's waiting patients are offered a dose.
    from waitlist.offers import offer_freed_times

    booking.cancel(Visit.objects.filter(visit_type__slug="iv-infusion", status="booked").first())
    offer_freed_times()
    # Questionnaires: an answered one with its alert, and the clinic's safety policy.
    from questionnaires.models import SafetyAlert, SafetyPolicy
    from tests.score_helpers import answered

    response = answered(patient, "phq-9", 12, at(MONDAY, "09:00"), i44260_8=1)
    SafetyAlert.objects.create(patient=patient, response=response, reasons=["item 9"])
    SafetyPolicy.objects.get_or_create(clinic=clinic)
    superuser = get_user_model().objects.create_superuser("sweeper", password=None)
    return {"patient": patient.pk, "therapist": therapist.pk, "superuser": superuser.pk}


@pytest.fixture
def world(demo_world, db, settings, now):
    """The demo world (``demo_world``) for one test, read afresh: {name: row}."""
    from questionnaires.models import AskingRule
    from scheduler.models import Clinician

    settings.TOKEN_RATE_LIMIT = 10**6  # the sweep asks the token URLs thousands of times
    settings.TWILIO_AUTH_TOKEN = "test-token"
    # A rule of its own (tests without the questionnaires mark start with none), added
    # after the bookings above so that they ask nothing.
    AskingRule.objects.create(instrument_code="gad-7", visit_kind="integration")
    patient = Patient.objects.select_related("clinic").get(pk=demo_world["patient"])
    return {
        "patient": patient,
        "clinic": patient.clinic,
        "therapist": Clinician.objects.get(pk=demo_world["therapist"]),
        "superuser": get_user_model().objects.get(pk=demo_world["superuser"]),
    }


def _admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _parsing_fields(page) -> dict[str, list[str]]:
    """The names, as posted, of an admin page's fields that parse their text (not free
    text), each with the hostile values for its kind.

    Dates and times get the dates past the calendar's ends (and text that is no
    date); numbers and related rows get the ids that are no ids; a choice from
    a fixed list and a checkbox, text that is no choice and none at all (any
    other text is refused, or ticks the box, the same way). Each value goes on
    its own, the rest of the form valid. Free-text fields take them all at once
    (``_admin_form``).
    """
    forms_ = [page.context["adminform"].form]
    for inline in page.context.get("inline_admin_formsets", []):
        forms_ += inline.formset.forms[:1]
    names = {}
    for form in forms_:
        for name, form_field in form.fields.items():
            if type(form_field) in FREE_TEXT:
                continue
            if isinstance(form_field, DATES):
                values = HOSTILE_DATES
            elif isinstance(form_field, ONE_OF_A_LIST) and not isinstance(
                form_field, forms.ModelChoiceField
            ):  # rows of a table are chosen by id: NOT_IDS
                values = NOT_LISTED
            else:
                values = NOT_IDS
            posted = form.add_prefix(name)
            names |= {posted: values, f"{posted}_0": values, f"{posted}_1": values}
    return names


FREE_TEXT = (forms.CharField, forms.EmailField, forms.SlugField)
# Fixed lists (not rows of a table) and checkboxes: what is posted is looked up
# among the choices, or read as ticked or not, never parsed.
ONE_OF_A_LIST = (forms.BooleanField, forms.NullBooleanField, forms.ChoiceField)
NOT_LISTED = ["abc", ""]
DATES = (forms.DateField, forms.DateTimeField, forms.TimeField, forms.SplitDateTimeField)
# Text that is no date, and none at all, besides the dates past the calendar's ends.
HOSTILE_DATES = [*OUT_OF_RANGE_DATES, "abc", ""]


def _first_rows_only(data: dict[str, list[str]]) -> dict[str, list[str]]:
    """``data`` with each inline formset cut to its first row, the only one varied
    (``_mutable``): a clinic's forty closures, posted unchanged with each hostile
    value and drawn again with its errors, were most of the sweep's time."""
    cut = dict(data)
    for name in data:
        if name.endswith("-TOTAL_FORMS"):
            prefix = name.removesuffix("TOTAL_FORMS")
            for count in ("TOTAL_FORMS", "INITIAL_FORMS"):
                cut[prefix + count] = [str(min(int(data[prefix + count][0]), 1))]
    return cut


def _admin_form(
    sweep: Sweep, client, url: str, page, baseline, *, endpoint: str, swept: set[str]
) -> None:
    """Each parsing field of the page with each hostile value of its kind, then every
    field at once with each hostile value.

    ``swept``: the fields already given each value on their own on the model's
    other page (its add and change pages validate with the same form, so a field
    is swept on one of them; each page still gets every field at once); updated.
    """
    reader = page_forms(page.text)
    key = next(k for k in reader.forms if k.endswith("_form"))
    names = [n for n in dict.fromkeys(reader.names[key]) if _mutable(n)]
    baseline = _first_rows_only(baseline)
    for name, values in _parsing_fields(page).items():
        if name in names and name not in swept:
            sweep.each_field(client, url, baseline, [name], endpoint=endpoint, values=values)
            swept.add(name)
    # The inline formsets' counts, on one of the model's pages: a count of
    # 99999999999999999999 makes Django build and check its most forms (2,000) for
    # each formset, a second a page; posted with every field it was half the sweep.
    counts = [name for name in names if name.endswith(FORMSET_COUNTS)]
    fields = [name for name in names if name not in counts]
    if counts and "formset counts" not in swept:
        sweep.all_at_once(client, url, baseline, counts, endpoint=endpoint, what="counts")
        swept.add("formset counts")
    # Every field at once, free text included.
    sweep.all_at_once(client, url, baseline, fields, endpoint=endpoint, what="every field")


FORMSET_COUNTS = ("-TOTAL_FORMS", "-INITIAL_FORMS", "-MIN_NUM_FORMS", "-MAX_NUM_FORMS")


# The sweeps over every admin page, in parts that test workers share: our apps
# by name, then every other app's admin pages.
ADMIN_PARTS = {
    "scheduler": {"scheduler"},
    "plans": {"plans"},
    "notifications-waitlist": {"notifications", "waitlist"},
    "questionnaires": {"questionnaires"},
    "billing": {"billing"},
}
OTHER_APPS = "other-apps"
by_admin_part = pytest.mark.parametrize("part", [*ADMIN_PARTS, OTHER_APPS])
# The sweeps below post thousands of forms (minutes each). PostgreSQL is the stricter
# engine (lengths, integer ranges, NUL characters, dates it refuses), so a value that
# gets past a form to the database fails there first.
STRICTER_ENGINE = on_one_engine("postgresql", "PostgreSQL refuses more than SQLite does")


def _admin_models(part: str):
    from django.contrib import admin

    ours = set().union(*ADMIN_PARTS.values())
    models = [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in ADMIN_PARTS.get(part, ())
        or (part == OTHER_APPS and model._meta.app_label not in ours)
    ]
    assert models, part  # each part of the sweep has pages to sweep
    return models


@STRICTER_ENGINE
@by_admin_part
def test_no_admin_add_or_change_form_answers_hostile_values_with_a_server_error(world, part):
    client = Client(raise_request_exception=False)
    sign_in_verified(client, world["superuser"])
    sweep, without_rows = Sweep(), []
    for model, model_admin in _admin_models(part):
        label = model._meta.label
        request = RequestFactory().get("/")
        request.user = world["superuser"]
        existing = model_admin.get_queryset(request).order_by("pk").first()
        filled, swept = {}, set()
        if existing is None:
            without_rows.append(label)
        else:
            change = _admin_url(model, "change", existing.pk)
            page = client.get(change)
            assert page.status_code == 200, change
            reader = page_forms(page.text)
            filled = as_post(reader.forms[next(k for k in reader.forms if k.endswith("_form"))])
            endpoint = f"admin change {label}"
            _admin_form(sweep, client, change, page, filled, endpoint=endpoint, swept=swept)
            for object_id in NOT_IDS:
                for view in ("change", "delete", "history"):
                    url = f"{_admin_url(model, 'changelist')}{object_id or '0'}/{view}/"
                    sweep.send(client, "get", url, endpoint=f"admin {view} {label}")
        if model_admin.has_add_permission(request):
            add = _admin_url(model, "add")
            page = client.get(add)
            assert page.status_code == 200, add
            reader = page_forms(page.text)
            offered = as_post(reader.forms[next(k for k in reader.forms if k.endswith("_form"))])
            # An existing row's values where the add form has the same field: a
            # valid form but for the hostile value.
            baseline = {**offered, **{k: v for k, v in filled.items() if k in offered}}
            endpoint = f"admin add {label}"
            _admin_form(sweep, client, add, page, baseline, endpoint=endpoint, swept=swept)
    print(f"\nadmin forms: {len(sweep.endpoints)} endpoints, {sweep.sent} requests")
    # Rows only the worker or a sign-in writes; their add pages are swept all the same.
    assert set(without_rows) <= {
        "django_q.Success",
        "django_q.Failure",
        "django_q.OrmQ",
        "axes.AccessAttempt",
        "axes.AccessFailureLog",
        "otp_static.StaticDevice",
    }
    # Other apps' admins too: scheduler.admin.base.check_input_of_every_admin.
    sweep.check()


def _signed(url: str, params: dict[str, str]) -> str:
    from django.conf import settings
    from twilio.request_validator import RequestValidator

    return RequestValidator("test-token").compute_signature(settings.SITE_URL + url, params)


@STRICTER_ENGINE
def test_no_page_form_or_webhook_answers_hostile_values_with_a_server_error(world):
    from urllib.parse import urlencode

    from plans.models import MonitoringFormTask, Protocol

    sweep = Sweep()
    patient, clinic = world["patient"], world["clinic"]
    visit = Visit.objects.for_patient(patient).scheduled().upcoming().order_by(
        "start"
    ).first() or booking.book(
        patient=patient,
        visit_type=clinic.visit_types.get(slug="screening"),
        clinician=clinic.clinicians.filter(is_prescriber=True).first(),
        start=at(MONDAY, "10:00"),
    )
    desk = Client(raise_request_exception=False)
    desk.force_login(front_desk())
    plan = {
        "patient": [str(patient.pk)],
        "protocol": [str(Protocol.objects.get(clinic__slug="riverside", slug="iv-induction").pk)],
        "start_date": ["2030-02-04"],
        "weekdays": ["0", "2"],
        "time_from": ["09:00"],
        "time_to": ["17:00"],
        "action": ["confirm"],
        "shown": ["x"],
    }
    sweep.each_field(desk, reverse("desk_new_plan"), plan, list(plan), endpoint="desk new plan")
    page = reverse("desk_visit", args=[visit.pk])
    slot = f"{visit.clinician_id}:{visit.room_id or ''}:{visit.start.isoformat()}"
    for action, extra in {
        "move": {"slot": [slot]},
        "cancel": {"reason": ["Patient asked"]},
        "check_in": {},
        "ride_home": {},
    }.items():
        baseline = {"action": [action], **extra}
        sweep.each_field(desk, page, baseline, list(baseline), endpoint=f"desk visit {action}")
    for name in ("from", "with"):
        for value in HOSTILE:
            sweep.send(desk, "get", page, {name: value}, endpoint="desk visit page")
    person = reverse("desk_patient", args=[patient.pk])
    sweep.each_field(desk, person, {"action": ["issue_link"]}, ["action"], endpoint="desk patient")
    # A patient's details, added and edited: every field as the page offers it.
    for name, url in {
        "desk new patient": reverse("desk_new_patient"),
        "desk edit patient": reverse("desk_edit_patient", args=[patient.pk]),
    }.items():
        reader = page_forms(desk.get(url).text)
        key = next(key for key, names in reader.names.items() if "mobile" in names)
        names = [n for n in dict.fromkeys([*reader.names[key], "texts_again"]) if _mutable(n)]
        baseline = as_post(reader.forms[key]) | {"sms_consent_method": ["verbal"]}
        sweep.each_field(desk, url, baseline, names, endpoint=name)
    # Booking one visit: the time chosen, the ride home, and the window asked for.
    dose = clinic.visit_types.filter(kind="dosing").first()
    book = reverse("desk_book_visit", args=[patient.pk]) + f"?type={dose.pk}"
    offered = desk.get(book).context["form"].slots
    baseline = {"slot": [next(iter(offered), slot)], "ride_home_arranged": ["yes"]}
    sweep.each_field(desk, book, baseline, list(baseline), endpoint="desk book a visit")
    window = reverse("desk_book_visit", args=[patient.pk])
    for value in HOSTILE:
        for asked in ({"type": value}, {"type": str(dose.pk), "from": value}):
            sweep.send(desk, "get", window, asked, endpoint="desk book a visit page", what=asked)
    for value in HOSTILE:
        sweep.send(desk, "get", reverse("desk_patients"), {"q": value}, endpoint="desk search")
        sweep.send(desk, "get", reverse("desk_this_week"), {"day": value}, endpoint="desk week")
    for name in ("desk_resend", "desk_handled", "desk_form_submitted"):
        sweep.send(desk, "post", reverse(name, args=[10**20]), endpoint=name)
    # A Spravato session's record, every field as the page offers it, and its form's submission.
    task = MonitoringFormTask.objects.order_by("pk").first()
    record = reverse("desk_session_record", args=[task.visit_id])
    reader = page_forms(desk.get(record).text)
    key = next(key for key, names in reader.names.items() if "monitoring_start" in names)
    names = [n for n in dict.fromkeys(reader.names[key]) if _mutable(n)]
    sweep.each_field(desk, record, as_post(reader.forms[key]), names, endpoint="desk session")
    submitted = reverse("desk_form_submitted", args=[task.pk])
    baseline = {"submitted_on": ["2030-01-02"]}
    sweep.each_field(desk, submitted, baseline, list(baseline), endpoint="desk form submitted")

    holder = Client(raise_request_exception=False)
    link = reverse("patient_page", args=[issue_patient_link(patient).rsplit("/", 2)[-2]])
    for action in ("confirm", "reschedule"):
        baseline = {"visit": [str(visit.pk)], "action": [action]}
        sweep.each_field(holder, link, baseline, list(baseline), endpoint=f"patient page {action}")

    clinician = Client(raise_request_exception=False)
    sign_in_verified(clinician, world["therapist"].user)
    own = world["therapist"].external_calendars.first()
    for action, extra in {
        "add_calendar": {"url": ["https://calendar.example.com/a.ics"]},
        "remove_calendar": {"calendar": [str(own.pk)]},
        "invites": {"email_invites": ["on"]},
        "issue": {},
        "revoke": {},
    }.items():
        baseline = {"action": [action], **extra}
        mine = reverse("my_calendar")
        sweep.each_field(clinician, mine, baseline, list(baseline), endpoint=f"calendar {action}")
    for value in HOSTILE:
        sweep.send(
            clinician, "get", reverse("my_calendar"), {"week": value}, endpoint="calendar week"
        )

    signing_in = {"username": ["frontdesk"], "password": ["not the password"]}
    sweep.each_field(holder, reverse("login"), signing_in, list(signing_in), endpoint="sign-in")

    twilio = Client(raise_request_exception=False)
    message = Message.objects.filter(patient=patient).first()
    webhooks = {
        reverse("twilio-status"): {
            "MessageSid": "SM" + "3" * 32,
            "MessageStatus": "undelivered",
            "ErrorCode": "21610",
            "m": str(message.pk),  # in the query string, as our callback URL carries it
        },
        reverse("twilio-inbound"): {
            "MessageSid": "SM" + "4" * 32,
            "From": patient.mobile,
            "To": "+12125550100",
            "Body": "C",
        },
    }
    for url, params in webhooks.items():
        for name in params:
            for value in HOSTILE:
                sent = {**params, name: value}
                query = sent.pop("m", None)
                target = f"{url}?{urlencode({'m': query})}" if query is not None else url
                sweep.send(
                    twilio,
                    "post",
                    target,
                    sent,
                    endpoint=f"webhook {url}",
                    what=f"{name}={value!r}",
                    HTTP_X_TWILIO_SIGNATURE=_signed(target, sent),
                )
    print(f"\npages and webhooks: {len(sweep.endpoints)} endpoints, {sweep.sent} requests")
    sweep.check()


@STRICTER_ENGINE
@by_admin_part
def test_no_admin_list_filter_or_action_answers_hostile_values_with_a_server_error(
    world, part, monkeypatch
):
    from html import unescape
    from urllib.parse import parse_qsl

    client = Client(raise_request_exception=False)
    sign_in_verified(client, world["superuser"])
    sweep = Sweep()
    for model, model_admin in _admin_models(part):
        label = model._meta.label
        # What is asked is varied, not what is shown: a list of the demo's hundred
        # visits drawn again for each value was most of the time of this sweep.
        monkeypatch.setattr(model_admin, "list_per_page", 3)
        changelist = _admin_url(model, "changelist")
        page = client.get(changelist)
        assert page.status_code == 200, changelist
        # Every parameter its filters, sorting and pages link to, and the search.
        links = re.findall(r'href="\?([^"]*)"', page.text)
        keys = {key for link in links for key, _ in parse_qsl(unescape(link))} | {"q", "p", "o"}
        for key in sorted(keys):
            for value in HOSTILE:
                sweep.send(client, "get", changelist, {key: value}, endpoint=f"list {label}")
        request = RequestFactory().get("/")
        request.user = world["superuser"]
        for action in model_admin.get_actions(request):
            for value in HOSTILE:
                chosen = {"action": action, "index": "0", "_selected_action": value}
                sweep.send(client, "post", changelist, chosen, endpoint=f"action {label}")
    print(f"\nadmin lists and actions: {len(sweep.endpoints)} endpoints, {sweep.sent} requests")
    # Other projects' admins too (Django's users, django-q2, axes, django-otp):
    # scheduler.admin.base.check_input_of_every_admin gives them our checks.
    sweep.check()
