"""The admin: every page opens, search finds patients as staff type them, and visits
added or changed there obey the same booking rules as everywhere else."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduler import booking
from scheduler.admin import ClinicZoneMixin
from scheduler.models import (
    ChosenClinic,
    Clinic,
    Clinician,
    Closure,
    DiaryChange,
    Patient,
    Room,
    TimeOff,
    Visit,
    VisitStatus,
    VisitType,
)
from tests.conftest import MONDAY, SmallClinic, at
from tests.html_forms import as_post, page_forms
from tests.page_helpers import sign_in_verified

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now")]

VISIT_ADD = reverse("admin:scheduler_visit_add")
VISIT_LIST = reverse("admin:scheduler_visit_changelist")


@pytest.fixture
def demo(demo_seeded, db):
    marsh = Clinician.objects.get(user__username="marsh")
    TimeOff.objects.create(
        clinician=marsh, start=at(MONDAY, "13:00"), end=at(MONDAY, "17:00"), reason="Training"
    )
    Closure.objects.create(
        clinic=marsh.clinic,
        start=at(MONDAY + timedelta(days=3), "08:00"),
        end=at(MONDAY + timedelta(days=3), "18:00"),
        reason="Staff day",
    )


@pytest.fixture
def staff(client, demo):
    sign_in_verified(client, get_user_model().objects.get(username="admin"))
    return client


@pytest.fixture
def screening():
    return {
        "visit_type": VisitType.objects.get(clinic__slug="riverside", slug="screening"),
        "clinician": Clinician.objects.get(user__username="marsh"),
        "room": Room.objects.get(clinic__slug="riverside", name="Consult room"),
    }


def patient(last_name: str) -> Patient:
    return Patient.objects.get(last_name=last_name)


def book_screening(screening, patient_, hh_mm: str) -> Visit:
    return booking.book(patient=patient_, start=at(MONDAY, hh_mm), **screening)


def visit_form(screening, patient_, day, hh_mm: str, **extra) -> dict:
    return {
        "patient": patient_.pk,
        "visit_type": screening["visit_type"].pk,
        "clinician": screening["clinician"].pk,
        "room": screening["room"].pk,
        "start_0": day.isoformat(),
        "start_1": hh_mm,
        "_save": "Save",
        **extra,
    }


def form_errors(response) -> list[str]:
    return list(response.context["adminform"].form.non_field_errors())


# -- every page showing clinic times, by declaration (no demo: it comes first) ---------


def test_every_page_showing_clinic_times_names_a_path_that_ends_at_a_clinic():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    pages = [
        (type(model_admin), model)
        for model in apps.get_models()
        if admin.site.is_registered(model)
        and isinstance(model_admin := admin.site.get_model_admin(model), ClinicZoneMixin)
    ] + [
        (inline, inline.model)
        for inline in subclasses(ClinicZoneMixin)
        if issubclass(inline, InlineModelAdmin)
    ]
    assert len(pages) >= 9
    for page, model in pages:
        path = page.clinic_path  # declared on every such page: there is no default
        if path is None:
            continue  # the default zone, by choice
        for name in path.split("__") if path else ():
            model = model._meta.get_field(name).related_model
        assert model is Clinic, f"{page.__name__}.clinic_path {path!r} ends at {model.__name__}"


# -- every page opens ----------------------------------------------------------------


def test_every_scheduler_model_has_admin_pages_that_open(staff):
    # One demo for every model: seeding it is most of this test's time.
    for model in apps.get_app_config("scheduler").get_models():
        label = model._meta.model_name
        # Written by the database's triggers, read by processes; a user's own choice of
        # clinic, made in the staff header (desk/clinics.py).
        if model in (DiaryChange, ChosenClinic):
            assert not admin.site.is_registered(model)
            continue
        assert admin.site.is_registered(model), label
        name = f"admin:scheduler_{label}"
        row = model.objects.order_by("pk").first()
        assert row is not None, f"the demo data should give the {label} pages something to show"
        assert staff.get(reverse(f"{name}_changelist")).status_code == 200, label
        assert staff.get(reverse(f"{name}_change", args=[row.pk])).status_code == 200, label
        # The audit trail is append-only and a visit's team is booked with the visit:
        # written by the application, never by hand.
        adds = 403 if label in ("auditevent", "visitparticipant") else 200
        assert staff.get(reverse(f"{name}_add")).status_code == adds, label


@pytest.mark.parametrize("model_name", ["visit", "patient", "clinician", "room", "timeoff"])
def test_changelist_queries_do_not_grow_with_rows(staff, screening, model_name):
    url = reverse(f"admin:scheduler_{model_name}_changelist")
    staff.get(url)  # the first page after signing in refreshes the session
    with CaptureQueriesContext(connection) as before:
        staff.get(url)
    for hh_mm, last_name in [("09:00", "Kettleby"), ("10:00", "Larkspur"), ("11:00", "Moonfield")]:
        book_screening(screening, patient(last_name), hh_mm)
        Patient.objects.create(
            clinic=screening["room"].clinic,
            first_name="Extra",
            last_name=last_name + "son",
            date_of_birth=datetime(1990, 1, 1).date(),
        )
    TimeOff.objects.create(
        clinician=screening["clinician"],
        start=at(MONDAY + timedelta(days=1), "09:00"),
        end=at(MONDAY + timedelta(days=1), "10:00"),
    )
    with CaptureQueriesContext(connection) as after:
        staff.get(url)
    assert len(after) == len(before)


def _more_rows(page: str) -> None:
    """Three more rows in the inlines of ``page``'s object."""
    from plans.models import Protocol, ProtocolStep

    if page == "protocol":
        protocol = Protocol.objects.get(clinic__slug="riverside", slug="iv-induction")
        last = protocol.steps.order_by("position").last()
        for n in range(1, 4):  # unnamed: called by their visit type
            ProtocolStep.objects.create(
                protocol=protocol, position=last.position + n, visit_type=last.visit_type
            )
    else:
        clinic = Clinic.objects.get(slug="riverside")
        for n in range(1, 4):
            day = MONDAY + timedelta(days=30 + n)
            Closure.objects.create(clinic=clinic, start=at(day, "08:00"), end=at(day, "18:00"))


@pytest.mark.parametrize("page", ["protocol", "clinic"])
def test_change_page_queries_do_not_grow_with_its_rows(staff, page):
    """A protocol's steps each list the clinic's visit types and earlier steps, and a
    clinic's closures name the clinic: read once for the page, not once per row."""
    from plans.models import Protocol

    if page == "protocol":
        url = reverse(
            "admin:plans_protocol_change",
            args=[Protocol.objects.get(clinic__slug="riverside", slug="iv-induction").pk],
        )
    else:
        url = reverse(
            "admin:scheduler_clinic_change", args=[Clinic.objects.get(slug="riverside").pk]
        )
    staff.get(url)  # the first page after signing in refreshes the session
    with CaptureQueriesContext(connection) as before:
        assert staff.get(url).status_code == 200
    _more_rows(page)
    with CaptureQueriesContext(connection) as after:
        assert staff.get(url).status_code == 200
    assert len(after) == len(before)


def test_visit_list_shows_times_in_the_clinic_zone(staff, screening):
    book_screening(screening, patient("Larkspur"), "10:00")
    response = staff.get(VISIT_LIST, {"q": "Larkspur"})
    assert "Starts (clinic time)" in response.text
    assert "Mon 2030-06-03 10:00 EDT" in response.text


# -- times in the clinic's own zone ---------------------------------------------------


@pytest.fixture
def berlin(demo):
    """A second clinic, six hours ahead of the server's zone (New York)."""
    return SmallClinic("Europe/Berlin")


@pytest.mark.parametrize("model_name", ["closure", "timeoff"])
def test_a_stretch_of_time_is_entered_and_listed_in_its_clinics_zone(staff, berlin, model_name):
    owner = {
        "closure": {"clinic": berlin.clinic.pk, "kind": "closed"},
        "timeoff": {"clinician": berlin.nurse.pk},
    }
    day = MONDAY.isoformat()
    response = staff.post(
        reverse(f"admin:scheduler_{model_name}_add"),
        {"start_0": day, "start_1": "10:00", "end_0": day, "end_1": "12:00", "reason": "Fest"}
        | owner[model_name],
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    added = apps.get_model("scheduler", model_name).objects.get(reason="Fest")
    assert added.start == datetime(2030, 6, 3, 8, 0, tzinfo=UTC)  # 10:00 CEST
    listing = staff.get(reverse(f"admin:scheduler_{model_name}_changelist"), {"q": "Fest"})
    assert "Mon 2030-06-03 10:00 CEST" in listing.text
    change_url = reverse(f"admin:scheduler_{model_name}_change", args=[added.pk])
    change = staff.get(change_url)
    assert "Clinic time (Europe/Berlin)." in change.text
    assert 'name="start_1" value="10:00:00"' in change.text  # not New York's 04:00
    # Saved as shown, the time stays where it was.
    unchanged = as_post(page_forms(change.text).forms[f"{model_name}_form"])
    assert staff.post(change_url, unchanged).status_code == 302
    added.refresh_from_db()
    assert added.start == datetime(2030, 6, 3, 8, 0, tzinfo=UTC)


def test_a_visit_is_booked_and_listed_in_its_patients_clinics_zone(staff, berlin):
    form = visit_form(
        {"visit_type": berlin.screening, "clinician": berlin.prescriber, "room": berlin.room3},
        berlin.patient("Berta", "Brandt"),
        MONDAY,
        "10:00",
    )
    response = staff.post(VISIT_ADD, form)
    assert response.status_code == 302, form_errors(response)
    visit = Visit.objects.get(patient__last_name="Brandt")
    assert visit.start == datetime(2030, 6, 3, 8, 0, tzinfo=UTC)  # 10:00 CEST
    assert "Mon 2030-06-03 10:00 CEST" in staff.get(VISIT_LIST, {"q": "Brandt"}).text


# -- search -------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["Larkspur", "larks", "(212) 555-0112", "555-0112", "2125550112"])
def test_patient_search_finds_by_last_name_and_phone_as_typed(staff, typed):
    response = staff.get(reverse("admin:scheduler_patient_changelist"), {"q": typed})
    assert [str(p) for p in response.context["cl"].result_list] == ["Logan Larkspur"]


def test_a_name_with_a_stray_digit_does_not_match_every_phone(staff):
    response = staff.get(reverse("admin:scheduler_patient_changelist"), {"q": "Larkspur 2"})
    assert [str(p) for p in response.context["cl"].result_list] == ["Logan Larkspur"]


def test_visit_search_finds_by_patient_phone(staff, screening):
    visit = book_screening(screening, patient("Larkspur"), "10:00")
    book_screening(screening, patient("Moonfield"), "11:00")
    response = staff.get(VISIT_LIST, {"q": "(212) 555-0112"})
    found = list(response.context["cl"].result_list)
    # Larkspur's visits only: this one, and the screening the demo booked.
    assert visit in found and {v.patient for v in found} == {patient("Larkspur")}


# -- patients -----------------------------------------------------------------------


def test_patient_added_with_a_typed_number_is_stored_as_e164_and_shown_nationally(staff):
    clinic = Room.objects.get(clinic__slug="riverside", name="Consult room").clinic
    response = staff.post(
        reverse("admin:scheduler_patient_add"),
        {
            "clinic": clinic.pk,
            "first_name": "Wren",
            "last_name": "Wildacre",
            "date_of_birth": "1988-07-14",
            "mobile": "(212) 555-0147",
            "email": "wren.wildacre@example.com",
            "time_zone": "America/New_York",
            "contact_by_sms": "on",
            "contact_by_email": "on",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    added = patient("Wildacre")
    assert added.mobile == "+12125550147"
    page = staff.get(reverse("admin:scheduler_patient_change", args=[added.pk]))
    assert 'value="(212) 555-0147"' in page.text
    listing = staff.get(reverse("admin:scheduler_patient_changelist"), {"q": "Wildacre"})
    assert "(212) 555-0147" in listing.text


# -- adding and changing visits -----------------------------------------------------


def test_adding_an_overlapping_visit_is_refused_with_the_conflict_and_saves_nothing(
    staff, screening
):
    book_screening(screening, patient("Larkspur"), "10:00")
    rows = Visit.objects.count()
    response = staff.post(VISIT_ADD, visit_form(screening, patient("Moonfield"), MONDAY, "10:30"))
    assert response.status_code == 200
    errors = form_errors(response)
    assert "Dr. Elena Marsh is booked 10:00-11:00 by another visit." in errors
    assert "Consult room is booked 10:00-11:00 by another visit." in errors
    assert Visit.objects.count() == rows


def test_the_visit_form_itself_refuses_a_conflict_before_anything_is_saved(rf, staff, screening):
    book_screening(screening, patient("Larkspur"), "10:00")
    request = rf.get(VISIT_ADD)
    request.user = get_user_model().objects.get(username="admin")
    form_class = admin.site.get_model_admin(Visit).get_form(request)
    form = form_class(data=visit_form(screening, patient("Moonfield"), MONDAY, "10:30"))
    assert not form.is_valid()
    assert "Dr. Elena Marsh is booked 10:00-11:00 by another visit." in form.non_field_errors()


def test_adding_a_free_slot_books_exactly_one_visit_at_clinic_time(staff, screening):
    before = list(Visit.objects.values_list("pk", flat=True))
    response = staff.post(VISIT_ADD, visit_form(screening, patient("Moonfield"), MONDAY, "11:00"))
    assert response.status_code == 302, form_errors(response)
    visit = Visit.objects.exclude(pk__in=before).get()
    assert (visit.patient, visit.visit_type) == (patient("Moonfield"), screening["visit_type"])
    assert visit.status == VisitStatus.BOOKED
    assert visit.start == datetime(2030, 6, 3, 15, 0, tzinfo=UTC)  # 11:00 EDT
    assert visit.end - visit.start == timedelta(minutes=60)
    assert visit.sequence == 0
    assert visit.uid.endswith("@kap-scheduler")


def test_add_form_reports_hours_time_off_and_closures(staff, screening):
    response = staff.post(VISIT_ADD, visit_form(screening, patient("Moonfield"), MONDAY, "14:00"))
    assert "Dr. Elena Marsh is off 13:00-17:00." in form_errors(response)
    thursday = MONDAY + timedelta(days=3)
    response = staff.post(VISIT_ADD, visit_form(screening, patient("Moonfield"), thursday, "10:00"))
    assert "The clinic is closed 08:00-18:00 (Staff day)." in form_errors(response)


def test_a_time_skipped_by_the_dst_change_is_refused_clearly(staff, screening):
    spring_forward = datetime(2030, 3, 10).date()
    response = staff.post(
        VISIT_ADD, visit_form(screening, patient("Moonfield"), spring_forward, "02:30")
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["start"]
    assert "02:30 on 2030-03-10 does not exist in America/New_York" in errors[0]


def test_add_form_shows_problems_from_registered_booking_checks(staff, screening, monkeypatch):
    def screening_gate(visit):
        return [f"{visit.patient} has not been cleared by a prescriber."]

    monkeypatch.setattr(booking, "booking_checks", [*booking.booking_checks, screening_gate])
    rows = Visit.objects.count()
    response = staff.post(VISIT_ADD, visit_form(screening, patient("Moonfield"), MONDAY, "11:00"))
    assert form_errors(response) == ["Marlow Moonfield has not been cleared by a prescriber."]
    assert Visit.objects.count() == rows


def test_a_refusal_at_save_time_becomes_a_form_error_not_a_server_error(
    staff, screening, monkeypatch
):
    """The form passed, then booking refused: a rule whose answer changed in between.

    Only booking's own look (the second) fails, so the refusal must be carried
    into the re-shown form rather than rediscovered, and must not be retried.
    """
    calls = []

    def refuses_only_at_booking(visit):
        calls.append(visit)
        return ["The prescriber revoked the clearance a moment ago."] if len(calls) == 2 else []

    monkeypatch.setattr(
        booking, "booking_checks", [*booking.booking_checks, refuses_only_at_booking]
    )
    rows = Visit.objects.count()
    response = staff.post(VISIT_ADD, visit_form(screening, patient("Moonfield"), MONDAY, "11:00"))
    assert response.status_code == 200
    assert form_errors(response) == ["The prescriber revoked the clearance a moment ago."]
    assert Visit.objects.count() == rows
    assert len(calls) == 3  # the form, booking, then the form shown again


def test_changing_the_time_moves_the_visit_keeping_its_uid(staff, screening):
    visit = book_screening(screening, patient("Larkspur"), "10:00")
    url = reverse("admin:scheduler_visit_change", args=[visit.pk])
    data = visit_form(screening, visit.patient, MONDAY, "11:30")
    response = staff.post(url, data)
    assert response.status_code == 302, form_errors(response)
    moved = Visit.objects.get(pk=visit.pk)
    assert (moved.uid, moved.sequence) == (visit.uid, 1)
    assert moved.start == datetime(2030, 6, 3, 15, 30, tzinfo=UTC)
    assert moved.end == datetime(2030, 6, 3, 16, 30, tzinfo=UTC)


def test_a_move_into_a_taken_slot_is_refused_and_changes_nothing(staff, screening):
    book_screening(screening, patient("Moonfield"), "11:00")
    visit = book_screening(screening, patient("Larkspur"), "09:00")
    url = reverse("admin:scheduler_visit_change", args=[visit.pk])
    response = staff.post(url, visit_form(screening, visit.patient, MONDAY, "11:30"))
    assert "Dr. Elena Marsh is booked 11:00-12:00 by another visit." in form_errors(response)
    unchanged = Visit.objects.get(pk=visit.pk)
    assert (unchanged.start, unchanged.sequence) == (visit.start, 0)


def test_visits_cannot_be_deleted_only_cancelled(staff, screening):
    visit = book_screening(screening, patient("Larkspur"), "10:00")
    response = staff.get(reverse("admin:scheduler_visit_delete", args=[visit.pk]))
    assert response.status_code == 403


# -- actions ------------------------------------------------------------------------


def run_action(staff, action: str, *visits: Visit) -> list[str]:
    response = staff.post(
        VISIT_LIST,
        {"action": action, "_selected_action": [visit.pk for visit in visits]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def test_cancel_action_cancels_open_visits_and_reports_each_refusal(staff, screening):
    open_visit = book_screening(screening, patient("Larkspur"), "10:00")
    already = booking.cancel(book_screening(screening, patient("Moonfield"), "11:00"))
    messages = run_action(staff, "cancel_visits", open_visit, already)
    open_visit.refresh_from_db()
    assert (open_visit.status, open_visit.sequence) == (VisitStatus.CANCELLED, 1)
    assert f"{already}: A cancelled visit cannot be cancelled." in messages
    assert "1 visit cancelled." in messages


def test_ride_home_action_records_the_ride_and_reports_closed_visits(staff, screening):
    visit = book_screening(screening, patient("Larkspur"), "10:00")
    cancelled = booking.cancel(book_screening(screening, patient("Moonfield"), "11:00"))
    messages = run_action(staff, "arrange_ride_home", visit, cancelled)
    visit.refresh_from_db()
    cancelled.refresh_from_db()
    assert visit.ride_home_arranged
    assert not cancelled.ride_home_arranged
    assert f"{cancelled}: A cancelled visit cannot be changed." in messages


def test_front_desk_can_book_but_not_run_the_clinic(client, demo):
    client.force_login(get_user_model().objects.get(username="frontdesk"))
    assert client.get(VISIT_ADD).status_code == 200
    assert client.get(reverse("admin:scheduler_patient_add")).status_code == 200
    assert client.get(reverse("admin:scheduler_clinic_add")).status_code == 403
    sign_in_verified(client, get_user_model().objects.get(username="fenwick"))
    assert client.get(VISIT_LIST).status_code == 200
    assert client.get(VISIT_ADD).status_code == 403


SECRET_ADDRESS = (
    "https://calendar.google.com/calendar/ical/sam%40example.com/"
    "private-5f2c9d0e8a7b6c1d4e3f2a1b0c9d8e7f/basic.ics"
)


def test_the_admin_shows_a_clinicians_calendar_address_by_its_host_only(
    client, demo, django_capture_on_commit_callbacks
):
    """The address works like a password (Google's "secret address"): nobody reads it back."""
    from scheduler.models import ExternalCalendar

    calendar = ExternalCalendar.objects.get(clinician__clinic__slug="riverside")  # its therapist
    ExternalCalendar.objects.filter(pk=calendar.pk).update(url=SECRET_ADDRESS)
    change = reverse("admin:scheduler_externalcalendar_change", args=[calendar.pk])
    pages = {}
    for username in ("frontdesk", "admin"):  # may view; may change
        sign_in_verified(client, get_user_model().objects.get(username=username))
        pages[username] = client.get(change)
        changelist = client.get(reverse("admin:scheduler_externalcalendar_changelist"))
        for page in (pages[username], changelist):
            assert page.status_code == 200
            assert "calendar.google.com" in page.text
            assert "private-5f2c9d0e" not in page.text and "sam%40example.com" not in page.text
    assert 'name="url"' not in pages["frontdesk"].text
    # Whoever may change it types a new address; an empty field keeps the one in use.
    assert re.search(r'<input type="text" name="url"(?![^>]*value=)', pages["admin"].text)
    form = {"clinician": calendar.clinician_id, "url": ""}
    with django_capture_on_commit_callbacks(execute=True) as queued:
        assert client.post(change, form).status_code == 302
    calendar.refresh_from_db()
    assert calendar.url == SECRET_ADDRESS and not queued
    form["url"] = "webcal://p01-caldav.icloud.com/published/2/new.ics"
    with django_capture_on_commit_callbacks(execute=True) as queued:
        assert client.post(change, form).status_code == 302
    calendar.refresh_from_db()
    assert calendar.url == form["url"] and len(queued) == 1  # read again at once


def test_care_plan_models_have_admin_pages_that_open(staff):

    from plans.care_plans import save_proposal
    from plans.generator import generate
    from plans.models import Protocol
    from scheduler.models import Patient as DemoPatient

    person = DemoPatient.objects.order_by("pk").first()
    save_proposal(
        generate(person, Protocol.objects.get(clinic__slug="riverside", slug="kap-lozenge"), MONDAY)
    )
    call_command("check")
    for model_name in ["protocol", "protocolstep", "careplan", "screening"]:
        model = apps.get_model("plans", model_name)
        row = model.objects.order_by("pk").first()
        assert row is not None, model_name
        name = f"admin:plans_{model_name}"
        if admin.site.is_registered(model):
            assert staff.get(reverse(f"{name}_changelist")).status_code == 200, model_name
            assert staff.get(reverse(f"{name}_change", args=[row.pk])).status_code == 200
        else:  # steps are edited inside their protocol
            change = reverse("admin:plans_protocol_change", args=[row.protocol_id])
            assert staff.get(change).status_code == 200, model_name


def test_a_screening_is_answered_and_cleared_through_one_question_per_contraindication(staff):
    from plans.models import CONTRAINDICATIONS, Screening

    person = Patient.objects.order_by("-pk").first()
    prescriber = person.clinic.clinicians.filter(is_prescriber=True).first()
    form = {f"answer_{code}": "no" for code in CONTRAINDICATIONS}
    form.update(
        patient=person.pk,
        notes="",
        answered_by=prescriber.pk,
        cleared="on",
        cleared_by=prescriber.pk,
    )
    form["answer_glaucoma"] = ""
    response = staff.post(reverse("admin:plans_screening_add"), form)
    assert response.status_code == 200
    assert "Answer every contraindication before clearing" in response.content.decode()
    assert not Screening.objects.filter(patient=person).exists()
    form["answer_glaucoma"] = "no"
    response = staff.post(reverse("admin:plans_screening_add"), form)
    assert response.status_code == 302
    screening = Screening.objects.get(patient=person)
    assert screening.cleared and screening.cleared_at and screening.answers["glaucoma"] is False
    assert Screening.is_cleared_for(person)
