"""The Spravato REMS: enrolled patients and a certified setting before a dose, a session
record before a dose is completed, the monitoring form due 7 calendar days after it."""

from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from notifications.patient_links import issue_patient_link
from plans.generator import generate
from plans.models import (
    Anchor,
    MonitoringFormTask,
    Protocol,
    ProtocolStep,
    RemsEnrollment,
    RemsSetting,
    SessionRecord,
    SpravatoDose,
)
from scheduler import booking
from scheduler.booking import BookingError, VisitChange, visit_saved
from scheduler.models import (
    AuditAction,
    AuditEvent,
    Modality,
    Visit,
    VisitKind,
    VisitStatus,
)
from tests.conftest import MONDAY, at
from tests.page_helpers import front_desk, sign_in_verified

pytestmark = pytest.mark.usefixtures("now")


@pytest.fixture
def spravato(clinic):
    return clinic.visit_type(
        "intranasal-dosing",
        VisitKind.DOSING,
        150,
        "prescriber",
        Modality.IN_PERSON,
        clinic.monitoring,
        dosing_route="intranasal",
        monitoring_minutes=120,
    )


@pytest.fixture
def desk(client, clinic):
    client.force_login(front_desk())  # a member of the clinic's desk
    return client


def book_dose(clinic, patient, visit_type, hh_mm="10:00", day=MONDAY):
    return booking.book(
        patient=patient,
        visit_type=visit_type,
        clinician=clinic.prescriber,
        room=clinic.room2 if visit_type.dosing_route == "intranasal" else clinic.room1,
        start=at(day, hh_mm),
        ride_home_arranged=True,
    )


def checked_in(now, visit):
    now.move_to(visit.start - timedelta(minutes=5))
    return booking.check_in(visit)


# The times of full_record's session, on its day.
TIMES = {
    "monitoring_start": "10:30",
    "monitoring_end": "12:30",
    "ready_to_leave_at": "11:50",
    "sedation_resolved_at": "11:25",
    "dissociation_resolved_at": "11:40",
}


def full_record(visit, **changes) -> SessionRecord:
    """A complete Spravato record of a visit booked at 10:00 on MONDAY."""
    values = {
        "bp_before_systolic": 124,
        "bp_before_diastolic": 78,
        "bp_after_40_systolic": 138,
        "bp_after_40_diastolic": 86,
        "bp_discharge_systolic": 126,
        "bp_discharge_diastolic": 80,
        "heart_rate": 71,
        "spo2": 96,
        "monitoring_start": at(MONDAY, "10:30"),
        "monitoring_end": at(MONDAY, "12:30"),
        "ready_to_leave_at": at(MONDAY, "11:50"),
        "vitals_ok_before_dose": True,
        "vitals_ok_before_discharge": True,
        "sedation": True,
        "sedation_resolved_at": at(MONDAY, "11:25"),
        "dissociation": True,
        "dissociation_resolved_at": at(MONDAY, "11:40"),
        "ride_home": "Sister, Jordan",
        "dose": SpravatoDose.MG_84,
        "lot_number": "LOT-7731",
        "serious_adverse_events": "Transient nausea, not serious",
        "takes_benzodiazepines": True,
        "takes_maois": False,
    } | changes
    record = SessionRecord(visit=visit, **values)
    record.full_clean()
    record.save()
    return record


# -- (a) the booking gate ---------------------------------------------------------


def test_a_spravato_dose_for_a_patient_not_enrolled_is_refused_with_the_reason(clinic, spravato):
    patient = clinic.patient("Riley", "Unenrolled", rems_enrolled=False)
    with pytest.raises(BookingError, match="Riley Unenrolled is not enrolled in the Spravato REMS"):
        book_dose(clinic, patient, spravato)
    assert not Visit.objects.filter(patient=patient).exists()

    RemsEnrollment.objects.create(patient=patient, enrolled_on=MONDAY - timedelta(days=3))
    assert book_dose(clinic, patient, spravato).status == VisitStatus.BOOKED


def test_an_enrollment_dated_after_the_dose_does_not_count(clinic, spravato):
    patient = clinic.patient(rems_enrolled=False)
    RemsEnrollment.objects.create(patient=patient, enrolled_on=MONDAY + timedelta(days=1))
    with pytest.raises(BookingError, match="enrolled in the Spravato REMS from Tue 2030-06-04"):
        book_dose(clinic, patient, spravato)


def test_a_clinic_without_a_certified_setting_cannot_book_spravato_but_can_other_doses(
    clinic, spravato
):
    patient = clinic.patient()
    RemsSetting.objects.filter(clinic=clinic.clinic).delete()
    with pytest.raises(BookingError, match="no REMS-certified healthcare setting on record"):
        book_dose(clinic, patient, spravato)
    RemsSetting.objects.create(clinic=clinic.clinic, name="Suite B", setting_id="HCS-1")
    with pytest.raises(BookingError, match="Suite B is not certified in the Spravato REMS yet"):
        book_dose(clinic, patient, spravato)
    # The REMS is Spravato's: an IV dose for a patient never enrolled is booked as before.
    other = clinic.patient("Iva", "Infusion", rems_enrolled=False)
    assert book_dose(clinic, other, clinic.iv, "14:00").status == VisitStatus.BOOKED


def moved(visit, start):
    copy = Visit.objects.get(pk=visit.pk)
    copy.patient, copy.visit_type = visit.patient, visit.visit_type
    copy.start, copy.end = start, start + visit.visit_type.duration
    return copy


def test_moving_a_dose_asks_the_database_once_for_every_time_offered(clinic, spravato):
    visit = book_dose(clinic, clinic.patient(), spravato)
    RemsEnrollment.objects.filter(patient=visit.patient).delete()
    with CaptureQueriesContext(connection) as reading:
        judge = booking.rules_for_times(visit, at(MONDAY, "08:00"), at(MONDAY, "18:00"))
    copies = [moved(visit, at(MONDAY, f"{h:02d}:00")) for h in range(8, 16)]
    with CaptureQueriesContext(connection) as judging:
        answers = [judge(copy) for copy in copies]
    assert len(judging) == 0, "the times are judged from what was read once"
    assert len(reading) > 0
    assert all("not enrolled in the Spravato REMS" in a[0] for a in answers)


def test_a_plan_with_spravato_doses_warns_when_the_patient_is_not_enrolled(clinic, spravato):
    protocol = Protocol.objects.create(clinic=clinic.clinic, name="Spravato", slug="spravato")
    ProtocolStep.objects.create(
        protocol=protocol, position=1, visit_type=spravato, count=2, anchor=Anchor.START,
        min_spacing_hours=48,
    )  # fmt: skip
    patient = clinic.patient(rems_enrolled=False)
    proposal = generate(patient, protocol, MONDAY)
    assert any(w.startswith("REMS enrollment missing") for w in proposal.warnings)
    RemsEnrollment.objects.create(patient=patient, enrolled_on=MONDAY)
    proposal = generate(patient, protocol, MONDAY)
    assert not any("REMS" in w for w in proposal.warnings)


# -- (b) the session record and completing a dose ---------------------------------


def test_a_dose_cannot_be_completed_without_its_record_and_the_refusal_names_what_is_missing(
    clinic, spravato, now
):
    visit = checked_in(now, book_dose(clinic, clinic.patient(), spravato))
    with pytest.raises(BookingError) as refusal:
        booking.complete(visit)
    message = str(refusal.value)
    for missing in (
        "blood pressure before the dose",
        "blood pressure about 40 minutes after the dose",
        "blood pressure before discharge",
        "end of monitoring",
        "lot number",
        "serious adverse events",
    ):
        assert missing in message
    visit.refresh_from_db()
    assert visit.status == VisitStatus.CHECKED_IN

    full_record(visit)
    booking.complete(visit)
    assert visit.status == VisitStatus.COMPLETED


def test_an_iv_session_needs_only_blood_pressure_and_monitoring_times(clinic, now):
    visit = checked_in(now, book_dose(clinic, clinic.patient(), clinic.iv))
    record = SessionRecord.objects.create(visit=visit, bp_before_systolic=130)
    with pytest.raises(BookingError, match="still missing: blood pressure before the dose, "):
        booking.complete(visit)
    record.bp_before_diastolic = 85
    record.bp_discharge_systolic, record.bp_discharge_diastolic = 128, 82
    record.monitoring_start, record.monitoring_end = at(MONDAY, "10:05"), at(MONDAY, "11:05")
    record.full_clean()  # one hour of monitoring is fine for IV
    record.save()
    assert record.missing() == []
    booking.complete(visit)
    assert visit.status == VisitStatus.COMPLETED
    assert not MonitoringFormTask.objects.exists(), "the REMS form is Spravato's"


def test_visits_that_are_no_dose_complete_without_a_record(clinic, now):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    checked_in(now, visit)
    assert booking.complete(visit).status == VisitStatus.COMPLETED


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"bp_before_systolic": 300}, "bp_before_systolic", "between 50 and 260"),
        ({"bp_before_diastolic": 10}, "bp_before_diastolic", "between 30 and 160"),
        ({"bp_discharge_systolic": 80, "bp_discharge_diastolic": 90}, "bp_discharge_systolic",
         "higher than the diastolic"),
        ({"bp_after_40_diastolic": None}, "bp_after_40_diastolic", "Give both numbers"),
        ({"spo2": 120}, "spo2", "between 50 and 100"),
        ({"monitoring_end": at(MONDAY, "10:20")}, "monitoring_end", "end after it starts"),
        ({"monitoring_end": at(MONDAY, "12:00")}, "monitoring_end",
         "at least 2 hours after the dose (the REMS); this records 1 h 30 min"),
        ({"ready_to_leave_at": at(MONDAY + timedelta(days=1), "11:00")}, "ready_to_leave_at",
         "on the visit's day, Mon 2030-06-03"),
        ({"sedation_resolved_at": at(MONDAY, "10:00")}, "sedation_resolved_at", "after the dose"),
        ({"sedation": False}, "sedation_resolved_at", "Only sedation that was observed"),
        ({"dose_other_mg": 28}, "dose_other_mg", "only with dose Other"),
    ],
)  # fmt: skip
def test_impossible_values_are_refused_clearly(clinic, spravato, changes, field, message):
    visit = book_dose(clinic, clinic.patient(), spravato)
    with pytest.raises(ValidationError) as refusal:
        full_record(visit, **changes)
    assert message in " ".join(refusal.value.message_dict[field])


# -- (c) the monitoring-form task ------------------------------------------------------


def test_a_completed_spravato_session_opens_one_form_task_due_seven_calendar_days_later(
    clinic, spravato, now
):
    # Friday 28 June 2030: the 7 days take in a weekend and Independence Day (Thursday).
    friday = date(2030, 6, 28)
    visit = book_dose(clinic, clinic.patient(), spravato, day=friday)
    checked_in(now, visit)
    full_record(visit, **{name: at(friday, t) for name, t in TIMES.items()})
    booking.complete(visit)
    task = MonitoringFormTask.objects.get(visit=visit)
    assert task.due_on == date(2030, 7, 5)
    # Announcing the completion again (a replayed signal) adds no second task.
    visit_saved.send(sender=Visit, visit=visit, change=VisitChange.COMPLETED)
    assert MonitoringFormTask.objects.filter(visit=visit).count() == 1


def test_the_due_date_counts_from_the_local_day_of_the_session(clinic, spravato):
    # 17:30 in Los Angeles is already the next day in UTC.
    from tests.conftest import SmallClinic

    west = SmallClinic("America/Los_Angeles")
    visit = Visit(
        patient=west.patient(),
        visit_type=spravato,
        clinician=west.prescriber,
        start=at(MONDAY, "17:30", "America/Los_Angeles"),
        end=at(MONDAY, "20:00", "America/Los_Angeles"),
    )
    assert MonitoringFormTask.due_for(visit) == MONDAY + timedelta(days=7)


def past_session(clinic, spravato, day: date, patient=None) -> MonitoringFormTask:
    """A completed Spravato session on ``day`` with its record and open task (written directly)."""
    visit = Visit.objects.create(
        patient=patient or clinic.patient(),
        visit_type=spravato,
        clinician=clinic.prescriber,
        room=clinic.room2,
        start=at(day, "10:00"),
        end=at(day, "12:30"),
        status=VisitStatus.COMPLETED,
        ride_home_arranged=True,
    )
    full_record(visit, **{name: at(day, t) for name, t in TIMES.items()})
    return MonitoringFormTask.objects.create(visit=visit, due_on=MonitoringFormTask.due_for(visit))


# The `now` fixture's day in New York.
TODAY = date(2030, 1, 2)


def test_the_desk_home_lists_forms_due_with_days_left_and_overdue_ones_marked(
    desk, clinic, spravato
):
    due_soon = past_session(clinic, spravato, date(2029, 12, 28))  # due 4 Jan
    late = past_session(clinic, spravato, date(2029, 12, 24), clinic.patient("Lee", "Late"))
    assert (due_soon.due_on, late.due_on) == (date(2030, 1, 4), date(2029, 12, 31))
    page = desk.get(reverse("desk_today")).text
    assert "Needs attention: REMS monitoring forms (2)" in page
    assert "2 days left" in page
    assert '<li class="overdue">' in page
    assert '<span class="flag overdue">overdue by 2 days</span>' in page
    # Overdue first: the list is by due date.
    assert page.index("Lee Late") < page.index("2 days left")
    # Another day's page is about that day's visits only.
    other_day = desk.get(reverse("desk_day", args=["2030-01-03"])).text
    assert "REMS monitoring forms" not in other_day


def test_recording_the_submission_closes_the_task_in_the_audit_trail(desk, clinic, spravato):
    task = past_session(clinic, spravato, date(2029, 12, 28))
    url = reverse("desk_form_submitted", args=[task.pk])
    # Not in the future, not before the session.
    page = desk.post(url, {"submitted_on": "2030-01-03"}, follow=True).text
    assert "cannot be in the future" in page
    page = desk.post(url, {"submitted_on": "2029-12-27"}, follow=True).text
    assert "cannot go in before the session" in page
    page = desk.post(url, {"submitted_on": "not a date"}, follow=True).text
    assert "Submission date: Enter a valid date." in page
    task.refresh_from_db()
    assert task.submitted_on is None

    page = desk.post(url, {"submitted_on": "2030-01-02"}, follow=True).text
    assert "recorded as submitted" in page
    assert "No monitoring form is waiting." in page
    task.refresh_from_db()
    user = page_user(desk)
    assert (task.submitted_on, task.submitted_by) == (date(2030, 1, 2), user)
    assert AuditEvent.objects.filter(
        action=AuditAction.CHANGED_VISIT,
        patient=task.visit.patient,
        detail__contains="REMS monitoring form submitted 2030-01-02",
        actor=user,
    ).exists()
    # Twice is once.
    page = desk.post(url, {"submitted_on": "2030-01-02"}, follow=True).text
    assert "already recorded as submitted" in page


def page_user(client):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(pk=client.session["_auth_user_id"])


def test_recording_a_submission_needs_the_csrf_token(clinic, spravato):
    task = past_session(clinic, spravato, date(2029, 12, 28))
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(front_desk())
    response = strict.post(
        reverse("desk_form_submitted", args=[task.pk]), {"submitted_on": "2030-01-02"}
    )
    assert response.status_code == 403
    task.refresh_from_db()
    assert task.submitted_on is None


# -- (d) the printable form -------------------------------------------------------------


def test_the_printable_form_carries_every_field_of_the_rems_form(desk, clinic, spravato):
    task = past_session(clinic, spravato, date(2029, 12, 28), clinic.patient("Morgan", "Print"))
    RemsEnrollment.objects.filter(patient=task.visit.patient).update(patient_rems_id="PT-55")
    page = desk.get(reverse("desk_monitoring_form", args=[task.visit_id])).text
    for shown in (
        "Morgan Print",
        "1985-04-12",  # date of birth
        "PT-55",
        "Dr. Alvarez",  # the prescriber who saw the session
        clinic.rems_setting.name,
        clinic.rems_setting.setting_id,
        "Friday 2029-12-28",
        "84 mg",
        "LOT-7731",
        "10:30",  # first device
        "12:30",  # end of monitoring
        "2 h 00 min",  # total duration
        "11:50",  # ready to leave without the 2-hour rule
        "Vital signs acceptable before dosing</th><td>Yes",
        "Vital signs acceptable before discharge</th><td>Yes",
        "124/78",
        "138/86",
        "126/80",
        "Sedation observed</th><td>Yes; resolved at 11:25",
        "Dissociation observed</th><td>Yes; resolved at 11:40",
        "Transient nausea, not serious",
        "Benzodiazepines: Yes",
        "Non-benzodiazepine sedative hypnotics: No",
        "Psychostimulants: No",
        "Monoamine oxidase inhibitors (MAOIs): No",
        "data-print",  # the Print button
        "To submit by Fri 4 Jan 2030",
    ):
        assert shown in page, shown
    css = (
        __import__("pathlib").Path(__file__).parent.parent / "static" / "css" / "app.css"
    ).read_text()
    assert "@media print" in css and ".no-print" in css


def test_only_spravato_sessions_have_a_printable_form(desk, clinic, spravato):
    dose = book_dose(clinic, clinic.patient(), clinic.iv)
    assert desk.get(reverse("desk_monitoring_form", args=[dose.pk])).status_code == 404
    assert desk.get(reverse("desk_session_record", args=[dose.pk])).status_code == 200
    talk = booking.book(
        patient=clinic.patient("Tal", "King"),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "14:00"),
    )
    assert desk.get(reverse("desk_session_record", args=[talk.pk])).status_code == 404


# -- (e) the session record page and the visit page -------------------------------------


def posted(**changes) -> dict[str, str]:
    return {
        "bp_before_systolic": "124",
        "bp_before_diastolic": "78",
        "bp_after_40_systolic": "138",
        "bp_after_40_diastolic": "86",
        "bp_discharge_systolic": "126",
        "bp_discharge_diastolic": "80",
        "monitoring_start": "10:30",
        "monitoring_end": "12:30",
        "ready_to_leave_at": "11:50",
        "vitals_ok_before_dose": "True",
        "vitals_ok_before_discharge": "True",
        "sedation": "False",
        "dissociation": "True",
        "dissociation_resolved_at": "11:40",
        "ride_home": "Partner",
        "dose": "56",
        "lot_number": "LOT-1",
        "serious_adverse_events": "None",
        "takes_psychostimulants": "on",
    } | changes


def test_the_desk_records_a_session_from_the_visit_page(desk, clinic, spravato, now):
    visit = book_dose(clinic, clinic.patient(), spravato)
    visit_page = desk.get(reverse("desk_visit", args=[visit.pk])).text
    url = reverse("desk_session_record", args=[visit.pk])
    assert f'href="{url}"' in visit_page and "Session record" in visit_page

    page = desk.get(url).text
    assert "Still needed before the visit can be completed" in page
    # Half done during the session: saved, and the page says what is still needed.
    response = desk.post(url, {"bp_before_systolic": "124", "bp_before_diastolic": "78"})
    assert response.status_code == 302
    assert "blood pressure before discharge" in desk.get(url).text

    page = desk.post(url, posted(monitoring_end="11:30"), follow=True).text
    assert "The record was not saved" in page
    assert "Spravato monitoring must last at least 2 hours" in page

    page = desk.post(url, posted(), follow=True).text
    assert (
        "Session record saved." in page and "Complete: the visit can be marked completed." in page
    )
    record = SessionRecord.objects.get(visit=visit)
    assert record.monitoring_start == at(MONDAY, "10:30")  # clinic time on the visit's day
    assert record.takes_psychostimulants and not record.takes_benzodiazepines
    assert record.recorded_by == page_user(desk)
    assert AuditEvent.objects.filter(detail=f"visit {visit.pk}: session record saved").exists()


def test_the_completed_button_shows_the_refusal_not_a_server_error(desk, clinic, spravato, now):
    visit = checked_in(now, book_dose(clinic, clinic.patient(), spravato))
    desk.force_login(front_desk())  # the clock moved past the first sign-in's session
    url = reverse("desk_visit", args=[visit.pk])
    response = desk.post(url, {"action": "complete"}, follow=True)
    assert response.status_code == 200
    assert "Record the session before completing this Intranasal Dosing; still missing:" in (
        response.text
    )
    full_record(visit)
    page = desk.post(url, {"action": "complete"}, follow=True).text
    assert "Completed." in page
    assert MonitoringFormTask.objects.filter(visit=visit).count() == 1


def test_a_time_skipped_by_the_clocks_is_a_form_error(desk, clinic, spravato, now):
    # 8 March 2030: clocks spring forward at 02:00 in New York.
    visit = Visit.objects.create(
        patient=clinic.patient(),
        visit_type=spravato,
        clinician=clinic.prescriber,
        room=clinic.room2,
        start=at(date(2030, 3, 10), "10:00"),
        end=at(date(2030, 3, 10), "12:30"),
    )
    url = reverse("desk_session_record", args=[visit.pk])
    page = desk.post(url, {"ready_to_leave_at": "02:30"}).text
    assert "does not exist in America/New_York" in page
    assert not SessionRecord.objects.filter(visit=visit).exists()


# -- who may see these pages ----------------------------------------------------------


def test_patients_and_clinicians_cannot_open_the_rems_pages(client, clinic, spravato):
    task = past_session(clinic, spravato, date(2029, 12, 28))
    urls = [
        reverse("desk_session_record", args=[task.visit_id]),
        reverse("desk_monitoring_form", args=[task.visit_id]),
    ]
    # Anonymous, and a patient holding their own link: the sign-in page.
    client.get(
        reverse("patient_page", args=[issue_patient_link(task.visit.patient).rsplit("/", 2)[-2]])
    )
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    response = client.post(
        reverse("desk_form_submitted", args=[task.pk]), {"submitted_on": "2030-01-02"}
    )
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    # The clinician who saw the session works from the admin, not the desk.
    sign_in_verified(client, clinic.prescriber.user)
    for url in urls:
        assert client.get(url).status_code == 403
    task.refresh_from_db()
    assert task.submitted_on is None


def test_the_desk_home_reads_its_monitoring_forms_in_one_query_however_many(desk, clinic, spravato):
    counts = []
    for day in (date(2029, 12, 10), date(2029, 12, 12), date(2029, 12, 14)):
        past_session(clinic, spravato, day)
        past_session(clinic, spravato, day + timedelta(days=5))
        desk.get(reverse("desk_today"))
        with CaptureQueriesContext(connection) as page:
            desk.get(reverse("desk_today"))
        counts.append(len(page))
    assert counts[0] == counts[1] == counts[2]
