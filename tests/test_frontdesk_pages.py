"""The front desk's pages: who may open them, what they show, and what their forms do."""

import re
from datetime import date, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from notifications.models import InboundKind, InboundMessage, Message, Status
from notifications.patient_links import ask_to_reschedule
from plans import care_plans
from plans.generator import generate
from plans.models import CarePlan, PlanStatus, Protocol, SessionRecord
from scheduler import booking
from scheduler.models import Clinic, Closure, Patient, Visit, VisitStatus
from tests.conftest import MONDAY, SmallClinic, at
from tests.page_helpers import (
    clinic_admin,
    crowd,
    failed_message,
    front_desk,
    sign_in_verified,
)

pytestmark = pytest.mark.usefixtures("now")
TODAY = date(2030, 1, 2)  # the `now` fixture's day in New York (a Wednesday)

DESK_PAGES = [
    reverse("desk_today"),
    reverse("desk_day", args=["2030-01-02"]),
    reverse("desk_this_week"),
    reverse("desk_week", args=["2030-01-02"]),
    reverse("desk_patients") + "?q=avery",
    reverse("desk_messages"),
    reverse("desk_new_plan"),
    reverse("desk_new_patient"),
]


@pytest.fixture
def desk(client, clinic):
    client.force_login(front_desk())
    return client


def test_anonymous_users_go_to_sign_in_and_clinicians_get_403_on_desk_pages(client, clinic):
    for url in DESK_PAGES:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")
    sign_in_verified(client, clinic.therapist.user)
    for url in DESK_PAGES:
        assert client.get(url).status_code == 403, url


@pytest.mark.parametrize("user", [front_desk, clinic_admin])
def test_front_desk_and_clinic_admins_open_every_desk_page(client, clinic, user):
    sign_in_verified(client, user())
    for url in DESK_PAGES:
        assert client.get(url).status_code == 200, url


def test_home_sends_each_role_to_its_page(client, clinic):
    assert client.get("/")["Location"].startswith("/login/")
    client.force_login(front_desk())
    assert client.get("/")["Location"] == reverse("desk_today")
    sign_in_verified(client, clinic.therapist.user)
    assert client.get("/")["Location"] == reverse("my_calendar")


def test_signing_in_with_the_form_lands_the_front_desk_on_today(client, clinic):
    front_desk(password="a-long-test-password")
    page = client.get(reverse("login"))
    assert 'lang="en"' in page.text and "Skip to content" in page.text
    username = front_desk(password="desk-pass-2030").username
    response = client.post(
        reverse("login"), {"username": username, "password": "desk-pass-2030"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("desk_today")
    assert "Today, Wednesday 2 January 2030" in response.text
    client.logout()
    wrong = client.post(reverse("login"), {"username": username, "password": "nope"})
    assert "did not match" in wrong.text


def test_day_view_shows_local_times_and_flags_what_needs_acting_on(desk, clinic):
    patient = clinic.patient("Avery", "Applewood")
    dosing = booking.book(
        patient=patient,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(TODAY, "10:00"),
    )
    unscreened = clinic.patient("Blake", "Unscreened", screened=False)
    # The screening gate refuses such a booking; an imported or older row can still exist.
    Visit.objects.create(
        patient=unscreened,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room2,
        start=at(TODAY, "13:00"),
        end=at(TODAY, "15:00"),
    )
    failed_message(dosing)
    page = desk.get(reverse("desk_today")).text
    assert "10:00-12:00" in page  # New York time, not UTC (15:00)
    assert "Avery Applewood" in page and "Blake Unscreened" in page
    for flag in ("Not confirmed", "No ride home", "Screening not cleared", "Message failed"):
        assert flag in page
    assert "Needs attention (2)" in page
    assert reverse("desk_day", args=["2030-01-01"]) in page
    assert reverse("desk_day", args=["2030-01-03"]) in page
    other_day = desk.get(reverse("desk_day", args=["2030-01-03"])).text
    assert "Avery Applewood" not in other_day and "No visits on this day." in other_day
    assert desk.get(reverse("desk_day", args=["not-a-date"])).status_code == 404


def test_the_day_schedule_is_drawn_once_and_redrawn_as_soon_as_anything_on_it_changes(desk, clinic):
    unscreened = clinic.patient("Blake", "Unscreened", screened=False)
    dosing = Visit.objects.create(
        patient=unscreened,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room2,
        start=at(TODAY, "13:00"),
        end=at(TODAY, "15:00"),
    )
    other = booking.book(
        patient=clinic.patient("Avery", "Applewood"),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(TODAY, "10:00"),
    )
    url = reverse("desk_today")
    first = desk.get(url).text
    assert "Screening not cleared" in first and "Message failed" not in first
    with CaptureQueriesContext(connection) as again:
        assert "Blake Unscreened" in desk.get(url).text
    # Drawn from the cache: the visits themselves were not loaded again.
    assert not [q for q in again.captured_queries if '"scheduler_visit"."uid"' in q["sql"]]

    booking.cancel(other, reason="Patient unwell")
    assert "Cancelled" in desk.get(url).text
    failed_message(dosing)
    assert "Message failed" in desk.get(url).text
    clinic.clear_screening(unscreened)
    assert "Screening not cleared" not in desk.get(url).text
    week = reverse("desk_week", args=[TODAY.isoformat()])
    assert "Cancelled" in desk.get(week).text


def test_week_view_lists_the_seven_days_with_their_visits(desk, clinic):
    patient = clinic.patient("Avery", "Applewood")
    booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(date(2030, 1, 4), "11:00"),
    )
    page = desk.get(reverse("desk_week", args=["2030-01-02"])).text
    assert "Week of Monday 31 December 2029" in page
    assert "Friday 4 January" in page and "11:00-11:50" in page
    assert reverse("desk_week", args=["2030-01-07"]) in page
    by_query = desk.get(reverse("desk_this_week") + "?day=2030-01-09").text
    assert "Week of Monday 7 January 2030" in by_query


def test_patient_search_finds_by_name_phone_and_email_and_the_page_shows_the_record(desk, clinic):
    patient = clinic.patient(
        "Avery", "Applewood", sms_consent_at=at(TODAY, "06:00"), sms_consent_method="web_form"
    )
    clinic.patient("Other", "Person")
    for query in ("applew", patient.mobile[-7:], "avery.applewood@"):
        page = desk.get(reverse("desk_patients"), {"q": query}).text
        assert "Applewood, Avery" in page and "Person, Other" not in page
    assert "No patient matches" in desk.get(reverse("desk_patients"), {"q": "zzz"}).text
    visit = booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(date(2030, 1, 4), "11:00"),
    )
    page = desk.get(reverse("desk_patient", args=[patient.pk])).text
    assert "cleared" in page and "Online form" in page.replace("online form", "Online form")
    assert "Upcoming visits (1)" in page and "Fri 4 Jan 2030, 11:00" in page
    # Each visit lists its messages with their delivery status: the booking's invite,
    assert "Calendar invite by email" in page and "Waiting to be sent" in page
    assert "Reminder by text message" not in page
    failed_message(visit, status=Status.PENDING)
    page = desk.get(reverse("desk_patient", args=[patient.pk])).text
    # ... and any other.
    assert "Reminder by text message" in page


def test_issuing_a_patient_link_shows_it_once_and_it_opens_the_patient_page(desk, clinic):
    patient = clinic.patient()
    page = desk.post(reverse("desk_patient", args=[patient.pk]), {"action": "issue_link"})
    link = page.context["new_link"]
    assert link.startswith("http") and "/p/" in link
    assert link in page.text
    assert link not in desk.get(reverse("desk_patient", args=[patient.pk])).text
    path = link.split("://", 1)[1].split("/", 1)[1]
    assert desk.get("/" + path).status_code == 200


def _visit_page(desk, visit):
    return desk.get(reverse("desk_visit", args=[visit.pk]))


def test_moving_a_visit_to_an_offered_slot_and_cancelling_with_a_reason(desk, clinic):
    patient = clinic.patient()
    visit = booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(date(2030, 1, 4), "11:00"),
    )
    page = _visit_page(desk, visit)
    slots = page.context["move_form"].slots
    assert slots and all(slot.start > at(TODAY, "07:00") for slot in slots.values())
    value, slot = list(slots.items())[3]
    response = desk.post(
        reverse("desk_visit", args=[visit.pk]), {"action": "move", "slot": value}, follow=True
    )
    assert "Moved." in response.text
    visit.refresh_from_db()
    assert visit.start == slot.start and visit.sequence == 1

    refused = desk.post(reverse("desk_visit", args=[visit.pk]), {"action": "cancel", "reason": ""})
    assert refused.status_code == 200 and "This field is required" in refused.text
    visit.refresh_from_db()
    assert visit.status == VisitStatus.BOOKED
    desk.post(reverse("desk_visit", args=[visit.pk]), {"action": "cancel", "reason": "Patient ill"})
    visit.refresh_from_db()
    assert visit.status == VisitStatus.CANCELLED and visit.cancellation_reason == "Patient ill"


def test_moves_keep_the_clinician_unless_the_desk_asks_for_anyone(desk, clinic):
    second = clinic.clinician("Jo Second", "therapist", hours=("09:00", "17:00"))
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(date(2030, 1, 4), "11:00"),
    )
    own = _visit_page(desk, visit)
    assert {s.clinician for s in own.context["move_form"].slots.values()} == {clinic.therapist}
    url = reverse("desk_visit", args=[visit.pk]) + "?with=anyone"
    anyone = desk.get(url)
    offered = anyone.context["move_form"].slots
    assert {s.clinician for s in offered.values()} == {clinic.therapist, second}
    value = next(v for v, s in offered.items() if s.clinician == second)
    assert "Moved." in desk.post(url, {"action": "move", "slot": value}, follow=True).text
    visit.refresh_from_db()
    assert visit.clinician == second


def test_a_time_not_offered_is_refused_in_the_booking_rules_words(desk, clinic):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(date(2030, 1, 4), "11:00"),
    )
    url = reverse("desk_visit", args=[visit.pk])
    saturday_night = f"{clinic.therapist.pk}:::2030-01-05T03:00:00-05:00"
    page = desk.post(url, {"action": "move", "slot": saturday_night}, follow=True).text
    assert "The clinic is closed on Saturdays." in page
    assert "Sam Rivers does not work on Saturdays." in page
    other_clinic = SmallClinic()
    for unreadable in (
        "nonsense",
        f"{clinic.therapist.pk}:::2030-01-07",  # no offset: which instant?
        f"{other_clinic.therapist.pk}:::2030-01-07T10:00:00-05:00",
        f"{clinic.therapist.pk}:{other_clinic.room1.pk}::2030-01-07T10:00:00-05:00",
        f"{2**70}:::2030-01-07T10:00:00-05:00",
        f"{clinic.therapist.pk}:::9999-12-31T23:59:00-05:00",
        f"{clinic.therapist.pk}::{other_clinic.nurse.pk}:2030-01-07T10:00:00-05:00",
        f"{clinic.therapist.pk}::x,{2**70}:2030-01-07T10:00:00-05:00",
    ):
        page = desk.post(url, {"action": "move", "slot": unreadable})
        assert page.status_code == 200, unreadable
        assert "Choose one of the times offered." in page.text, unreadable
    visit.refresh_from_db()
    assert visit.sequence == 0


def test_check_in_needs_a_ride_home_and_booking_errors_show_as_messages(desk, clinic):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(TODAY, "10:00"),
    )
    url = reverse("desk_visit", args=[visit.pk])
    page = desk.post(url, {"action": "check_in"}, follow=True).text
    assert "Record a ride home before checking in" in page
    page = desk.post(url, {"action": "no_show"}, follow=True).text
    assert "has not started yet" in page
    desk.post(url, {"action": "ride_home"})
    desk.post(url, {"action": "check_in"})
    visit.refresh_from_db()
    assert visit.ride_home_arranged and visit.status == VisitStatus.CHECKED_IN
    # A dose is completed only with its session record (plans.gates.session_recorded).
    page = desk.post(url, {"action": "complete"}, follow=True).text
    assert "still missing: blood pressure before the dose" in page
    SessionRecord.objects.create(
        visit=visit,
        bp_before_systolic=120,
        bp_before_diastolic=80,
        bp_discharge_systolic=118,
        bp_discharge_diastolic=76,
        monitoring_start=at(TODAY, "10:10"),
        monitoring_end=at(TODAY, "11:40"),
    )
    desk.post(url, {"action": "complete"})
    visit.refresh_from_db()
    assert visit.status == VisitStatus.COMPLETED
    # Forms need the CSRF token like every other POST.
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(front_desk())
    assert strict.post(url, {"action": "ride_home"}).status_code == 403


def test_message_queue_lists_failures_and_replies_and_resends(desk, clinic):
    [visit] = crowd(clinic, date(2030, 1, 8), 1)
    failed = Message.objects.get(visit=visit)
    InboundMessage.objects.create(
        provider_id="SM1",
        from_number=visit.patient.mobile or "+12125550111",
        patient=visit.patient,
        body="R",
        kind=InboundKind.RESCHEDULE,
        visit=visit,
        needs_attention=True,
    )
    page = desk.get(reverse("desk_messages")).text
    assert "Unreachable" in page and "Asked to reschedule (R)" in page
    desk.post(reverse("desk_resend", args=[failed.pk]))
    failed.refresh_from_db()
    assert failed.status == Status.PENDING and failed.attempts == 0
    again = desk.post(reverse("desk_resend", args=[failed.pk]), follow=True).text
    assert "cannot be sent again" in again
    inbound = InboundMessage.objects.get()
    desk.post(reverse("desk_handled", args=[inbound.pk]))
    inbound.refresh_from_db()
    assert inbound.handled_at is not None
    assert "Asked to reschedule (R)" not in desk.get(reverse("desk_messages")).text


@pytest.fixture
def demo(db, client):
    call_command("seed_demo", stdout=StringIO())
    client.force_login(front_desk())
    return Clinic.objects.get(slug="riverside")


def _plan_form(patient, protocol_slug="iv-induction", **extra):
    protocol = Protocol.objects.get(clinic__slug="riverside", slug=protocol_slug)
    return {
        "patient": patient.pk,
        "protocol": protocol.pk,
        "start_date": "2030-02-04",
        "time_from": "09:00",
        "time_to": "17:00",
        "weekdays": ["0", "2", "4"],
        **extra,
    }


def _shown(page) -> str:
    """The fingerprint of the proposal on a new-plan page, as its form carries it."""
    found = re.search(r'name="shown" value="([^"]*)"', page.text)
    return found.group(1) if found else ""


def test_new_plan_is_proposed_then_confirmed_and_booked(client, demo):
    patient = Patient.objects.filter(clinic=demo).order_by("pk")[0]
    page = client.post(reverse("desk_new_plan"), _plan_form(patient, action="propose"))
    assert "Proposed plan: IV" in page.text and "Estimated cost" in page.text
    assert "Confirm and book" in page.text
    assert not CarePlan.objects.filter(patient=patient).exists()
    done = client.post(
        reverse("desk_new_plan"), _plan_form(patient, action="confirm", shown=_shown(page))
    )
    assert done["Location"] == reverse("desk_patient", args=[patient.pk])
    plan = CarePlan.objects.get(patient=patient)
    assert plan.status == PlanStatus.ACTIVE
    assert plan.planned_visits.filter(visit__status=VisitStatus.BOOKED).count() == len(
        page.context["proposal"].visits
    )


def test_confirming_a_plan_whose_times_were_taken_since_shows_the_new_plan_and_books_nothing(
    client, demo
):
    patient = Patient.objects.filter(clinic=demo).order_by("pk")[0]
    url = reverse("desk_new_plan")
    shown = client.post(url, _plan_form(patient, action="propose"))
    first = shown.context["proposal"].visits[0]
    # Meanwhile another desk books the first visit's clinician and room then.
    booking.book(
        patient=Patient.objects.filter(clinic=demo).order_by("pk")[1],
        visit_type=first.visit_type,
        clinician=first.clinician,
        room=first.room,
        start=first.start,
    )
    visits = Visit.objects.count()
    page = client.post(url, _plan_form(patient, action="confirm", shown=_shown(shown)))
    assert page.status_code == 200
    assert "Nothing was booked" in page.text
    assert not CarePlan.objects.filter(patient=patient).exists()
    assert Visit.objects.count() == visits
    new = page.context["proposal"]
    assert new.visits[0].start != first.start
    assert _shown(page) not in ("", _shown(shown))
    # The new plan, once seen, is booked as shown.
    done = client.post(url, _plan_form(patient, action="confirm", shown=_shown(page)))
    assert done.status_code == 302
    booked = CarePlan.objects.get(patient=patient).planned_visits.order_by("visit__start", "pk")
    assert [(p.visit.start, p.visit.clinician_id) for p in booked] == [
        (v.start, v.clinician.pk) for v in new.visits
    ]


def test_a_form_changed_after_the_proposal_books_nothing(client, demo):
    patient = Patient.objects.filter(clinic=demo).order_by("pk")[0]
    url = reverse("desk_new_plan")
    shown = _shown(client.post(url, _plan_form(patient, action="propose")))
    plans = CarePlan.objects.count()  # the demo's own
    for change in (
        {"protocol": Protocol.objects.get(clinic__slug="riverside", slug="kap-lozenge").pk},
        {"patient": Patient.objects.filter(clinic=demo).order_by("pk")[1].pk},
        {"start_date": "2030-03-04"},
        {"weekdays": ["1", "3"]},
        {"shown": ""},
    ):
        page = client.post(url, _plan_form(patient, action="confirm", shown=shown) | change)
        assert page.status_code == 200, change
        assert "Nothing was booked" in page.text, change
        assert CarePlan.objects.count() == plans, change


def test_a_plan_that_cannot_be_confirmed_says_why_and_saves_nothing(client, demo):
    unscreened = Patient.objects.filter(clinic=demo).order_by("pk")[15]
    url = reverse("desk_new_plan")
    shown = _shown(client.post(url, _plan_form(unscreened, action="propose")))
    page = client.post(url, _plan_form(unscreened, action="confirm", shown=shown))
    assert "The plan was not booked" in page.text and "screening" in page.text.lower()
    assert not CarePlan.objects.filter(patient=unscreened).exists()


def test_an_infeasible_plan_shows_the_generators_reason_and_bad_times_are_refused(client, demo):
    Closure.objects.create(
        clinic=demo,
        start=at(date(2030, 2, 4), "00:00"),
        end=at(date(2031, 3, 1), "00:00"),
    )
    patient = Patient.objects.filter(clinic=demo).order_by("pk")[0]
    page = client.post(reverse("desk_new_plan"), _plan_form(patient, action="confirm"))
    assert "No slot for step" in page.text and "Screening" in page.text
    assert "Confirm and book" not in page.text
    assert not CarePlan.objects.filter(patient=patient).exists()
    bad = client.post(
        reverse("desk_new_plan"),
        _plan_form(patient, action="propose", time_from="12:00", time_to="09:00"),
    )
    assert "must end after they start" in bad.text


# -- query bounds: the same number of queries for N and 3N visits -------------------


def _count(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


# Measured: 3 of each are the session, the user and their roles; the rest is the
# page (the session is written at most once a minute, not here: config.middleware).
# The patient, visit and message pages each write one audit event (scheduler.audit).
# The visit page's bound is not the page's own: its visit is a dose of a patient
# whose screening is not cleared, and plans/gates.py, which judges one visit per
# call, is asked about each of the 170 free times of the window (one query
# each); 19 otherwise (tests/test_move_times.py, scheduler.booking.rules_for_times).
# Teams cost the visit page four more (its participants, its type's team, and
# people's times on visits read apart from the rooms').
# The day page's closures in words (a public holiday opened anyway) are one query.
# The day and week are time grids (tests/test_desk_grids.py): four queries read
# what shades them (hours, closures and holidays, clinicians with their working
# hours, time off and busy times), and their schedule's version is one (it was four).
# The visit page reads the window's visits of its own people (not every clinician's:
# 16,000 busy times a fortnight at full scale) apart from the patient's: one more.
PAGE_BOUNDS = {"day": 10, "week": 9, "patient": 12, "visit": 24, "messages": 7, "patients": 5}
# Booking a visit: the window's availability, and what the booking rules read once
# for all its times (screening, dose spacing, REMS; scheduler.booking.rules_for_times).
PAGE_BOUNDS |= {"new patient": 4, "edit patient": 6, "book visit": 21}


def _urls(clinic, day, patient, visit):
    return {
        "day": reverse("desk_day", args=[day.isoformat()]),
        "week": reverse("desk_week", args=[day.isoformat()]),
        "patient": reverse("desk_patient", args=[patient.pk]),
        "visit": reverse("desk_visit", args=[visit.pk]),
        "messages": reverse("desk_messages"),
        "patients": reverse("desk_patients") + "?q=Crowd",
        "new patient": reverse("desk_new_patient"),
        "edit patient": reverse("desk_edit_patient", args=[patient.pk]),
        "book visit": reverse("desk_book_visit", args=[patient.pk])
        + f"?type={clinic.iv.pk}&from={day.isoformat()}",
    }


@pytest.mark.parametrize("page", sorted(PAGE_BOUNDS))
def test_each_desk_page_runs_a_fixed_number_of_queries(
    desk, clinic, page, django_assert_max_num_queries
):
    day = date(2030, 1, 8)
    patient = clinic.patient()
    visit = crowd(clinic, date(2030, 1, 3), 1)[0]
    counts = []
    for n in (4, 12):
        crowd(clinic, day, n - len(counts) * 4, after=len(counts) * 4)
        # One patient with many visits (and messages) for the patient page.
        crowd(clinic, day + timedelta(days=n), n, patient=patient)
        # More messages on the one visit the visit page shows.
        for sequence in range(n * 10, n * 11):
            failed_message(visit, sequence=sequence)
        urls = _urls(clinic, day, patient, visit)
        desk.get(urls[page])  # the first page after signing in refreshes the session
        counts.append(_count(desk, urls[page]))
        with django_assert_max_num_queries(PAGE_BOUNDS[page]):
            desk.get(urls[page])
    assert counts[0] == counts[1], f"{page}: {counts}"
    print(f"{page}: {counts[0]} queries")


def test_a_reschedule_request_shows_under_needs_attention_until_handled(desk, clinic):
    patient = clinic.patient("Avery", "Applewood")
    visit = booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    booking.confirm(visit)
    day = reverse("desk_day", args=[MONDAY.isoformat()])
    assert "Needs attention (0)" in desk.get(day).text
    ask_to_reschedule(patient, visit)
    page = desk.get(day).text
    assert "Needs attention (1)" in page and "Asked to reschedule" in page
    InboundMessage.objects.update(handled_at=timezone.now())
    assert "Needs attention (0)" in desk.get(day).text


def test_the_patient_page_shows_each_care_plan_as_a_whole_in_a_fixed_number_of_queries(
    client, demo, django_assert_max_num_queries
):
    """Each plan: protocol, status, its visits in order with step, date, status and team."""
    patient = Patient.objects.filter(clinic=demo, care_plans__isnull=True).order_by("pk")[0]
    url = reverse("desk_patient", args=[patient.pk])
    counts = []
    for slug, start in (("iv-induction", date(2030, 2, 4)), ("kap-lozenge", date(2030, 6, 3))):
        proposal = generate(patient, Protocol.objects.get(clinic=demo, slug=slug), start)
        care_plans.confirm(care_plans.save_proposal(proposal))
        client.get(url)
        counts.append(_count(client, url))
    # Two more than without plans: the plans' visits, and their teams.
    with django_assert_max_num_queries(PAGE_BOUNDS["patient"] + 2):
        page = client.get(url)
    assert counts[0] == counts[1], counts
    shown = page.context["care_plans"]
    assert [plan.protocol.slug for plan in shown] == ["kap-lozenge", "iv-induction"]
    for plan in shown:
        planned = list(plan.planned_visits.all())
        assert planned == sorted(planned, key=lambda p: p.visit.start) and len(planned) > 5
        section = page.text.split(f'id="plan-{plan.pk}"', 1)[1].split("</table>", 1)[0]
        assert f"{plan.protocol} from {plan.start_date:%Y-%m-%d}: Booked" in page.text
        rows = section.split("<tr")[2:]  # past the heading row
        assert len(rows) == len(planned)
        for row, entry in zip(rows, planned, strict=True):
            visit = entry.visit
            assert str(entry.step) in row
            assert f"{timezone.localtime(visit.start, demo.tz):%a %Y-%m-%d %H:%M}" in row
            assert visit.get_status_display() in row
            for part in visit.staff:
                assert str(part.clinician) in row
