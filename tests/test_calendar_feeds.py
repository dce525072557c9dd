"""Calendar feeds: strictly valid iCalendar, private wording, secret revocable URLs, cheap polling."""

import hashlib
import io
import re
import time
from datetime import UTC, date, datetime, timedelta

import pytest
import recurring_ical_events
import vobject
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse
from icalendar import Calendar

from scheduler import booking, tokens
from scheduler.models import (
    AccessToken,
    CalendarDetail,
    Clinician,
    Modality,
    Patient,
    Visit,
    VisitKind,
    VisitStatus,
)
from scheduler.timezones import zone
from tests.conftest import MONDAY, SmallClinic, at
from tests.ical_checks import assert_valid_ics, treatment_words, unfold
from tests.page_helpers import sign_in_verified

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now")]

TUESDAY = MONDAY + timedelta(days=1)


def feed_path(owner) -> str:
    _, raw = tokens.issue(owner)
    return reverse("calendar_feed", args=[raw])


def fetch(client, path: str, **headers) -> str:
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    text = response.content.decode("utf-8")
    assert_valid_ics(text)
    return text


def events(text: str) -> list:
    return Calendar.from_ical(text).events


def event_for(text: str, visit: Visit):
    return next(e for e in events(text) if str(e["UID"]) == visit.uid)


@pytest.fixture
def kinds(clinic: SmallClinic):
    """One booked visit of every kind and route, each visit type named as clinics name them."""
    monitoring = clinic.monitoring
    types = {
        "screening": clinic.screening,
        "iv": clinic.iv,
        "integration": clinic.integration,
        "preparation": clinic.visit_type(
            "preparation",
            VisitKind.PREPARATION,
            50,
            "therapist",
            Modality.TELEHEALTH,
            preparation_instructions="What to expect from ketamine; hold lamotrigine.",
        ),
        "maintenance": clinic.visit_type(
            "maintenance", VisitKind.MAINTENANCE, 30, "prescriber", Modality.TELEHEALTH
        ),
        "im": clinic.visit_type(
            "im-ketamine-dosing",
            VisitKind.DOSING,
            105,
            "prescriber",
            Modality.IN_PERSON,
            monitoring,
            dosing_route="im",
        ),
        "lozenge": clinic.visit_type(
            "ketamine-lozenge",
            VisitKind.DOSING,
            165,
            "nurse",
            Modality.IN_PERSON,
            monitoring,
            dosing_route="lozenge",
        ),
        "intranasal": clinic.visit_type(
            "spravato-esketamine",
            VisitKind.DOSING,
            120,
            "prescriber",
            Modality.IN_PERSON,
            monitoring,
            dosing_route="intranasal",
        ),
    }
    plan = [
        ("screening", clinic.prescriber, clinic.room3, "08:00"),
        ("iv", clinic.prescriber, clinic.room1, "09:00"),
        ("im", clinic.prescriber, clinic.room2, "11:00"),
        ("intranasal", clinic.prescriber, clinic.room2, "13:00"),
        ("maintenance", clinic.prescriber, None, "15:00"),
        ("lozenge", clinic.nurse, clinic.room1, "11:00"),
        ("preparation", clinic.therapist, None, "09:00"),
        ("integration", clinic.therapist, None, "10:00"),
    ]
    visits = {}
    for number, (key, clinician, room, hh_mm) in enumerate(plan):
        patient = clinic.patient("Avery", f"{chr(ord('B') + number)}ample")
        visits[key] = booking.book(
            patient=patient,
            visit_type=types[key],
            clinician=clinician,
            room=room,
            start=at(MONDAY, hh_mm),
        )
    return visits


# -- valid iCalendar ---------------------------------------------------------------------


def test_demo_clinicians_feed_is_accepted_by_strict_parsers(client):
    seeded = io.StringIO()
    call_command("seed_demo", stdout=seeded)
    assert "Dr. Elena Marsh: http://localhost:8000/calendars/" in seeded.getvalue()
    out = io.StringIO()
    call_command("feed_url", clinician="marsh@riverside.example.com", reissue=True, stdout=out)
    url = out.getvalue().strip()
    assert re.fullmatch(r"http://localhost:8000/calendars/[A-Za-z0-9_-]{43}\.ics", url)
    text = fetch(client, url.removeprefix("http://localhost:8000"))
    marsh = Clinician.objects.get(user__username="marsh")
    visits = Visit.objects.filter(clinician=marsh)
    assert visits and {str(e["UID"]) for e in events(text)} == {v.uid for v in visits}
    assert "METHOD" not in text and "ORGANIZER" not in text and "RSVP" not in text
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n" in text
    assert "X-PUBLISHED-TTL:PT1H\r\n" in text


def test_every_event_has_uid_utc_stamp_sequence_status_and_zoned_times(client, clinic):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "10:00"),
    )
    text = fetch(client, feed_path(clinic.prescriber))
    lines = unfold(text).split("\r\n")
    assert f"UID:{visit.uid}" in lines
    assert "SEQUENCE:0" in lines
    assert "STATUS:TENTATIVE" in lines and "TRANSP:OPAQUE" in lines
    assert "DTSTART;TZID=America/New_York:20300603T100000" in lines
    assert "DTEND;TZID=America/New_York:20300603T120000" in lines
    stamp = next(line for line in lines if line.startswith("DTSTAMP:"))
    assert stamp == f"DTSTAMP:{visit.updated_at.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    vtimezone = text[text.index("BEGIN:VTIMEZONE") : text.index("END:VTIMEZONE")]
    # Narrow: only the transitions around the feed's own dates, not 1970 onwards.
    assert vtimezone.count("BEGIN:STANDARD") + vtimezone.count("BEGIN:DAYLIGHT") <= 3


def test_status_follows_the_visit(client, clinic):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    path = feed_path(clinic.therapist)
    assert str(event_for(fetch(client, path), visit)["STATUS"]) == "TENTATIVE"
    booking.confirm(visit)
    assert str(event_for(fetch(client, path), visit)["STATUS"]) == "CONFIRMED"


@pytest.mark.parametrize(
    ("tz_name", "friday_before", "monday_after"),
    [
        ("America/New_York", date(2030, 3, 8), date(2030, 3, 11)),  # US spring
        ("America/New_York", date(2030, 11, 1), date(2030, 11, 4)),  # US autumn
        ("Europe/Berlin", date(2030, 3, 29), date(2030, 4, 1)),  # EU spring
        ("Europe/Berlin", date(2030, 10, 25), date(2030, 10, 28)),  # EU autumn
    ],
)
def test_a_nine_oclock_visit_stays_at_nine_across_a_dst_change(
    client, tz_name, friday_before, monday_after
):
    clinic = SmallClinic(tz_name)
    visits = [
        booking.book(
            patient=clinic.patient(),
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=at(day, "09:00", tz_name),
        )
        for day in (friday_before, monday_after)
    ]
    assert visits[0].start.utcoffset() == visits[1].start.utcoffset() == timedelta(0)
    assert visits[0].start.time() != visits[1].start.time(), "UTC times differ across the change"
    text = fetch(client, feed_path(clinic.therapist))
    expanded = recurring_ical_events.of(Calendar.from_ical(text)).between(
        friday_before - timedelta(days=1), monday_after + timedelta(days=1)
    )
    local_times = sorted((e.start.astimezone(zone(tz_name)).isoformat()) for e in expanded)
    assert [t[11:16] for t in local_times] == ["09:00", "09:00"]
    # Read the wall-clock times through the feed's own VTIMEZONE, not a zone
    # database: the narrow VTIMEZONE alone must give the right instants. (vobject
    # caches one tzinfo per TZID for the process, hence gettzinfo() here.)
    parsed = vobject.readOne(text)
    own_zone = {vtimezone.tzid.value: vtimezone.gettzinfo() for vtimezone in parsed.vtimezone_list}
    assert set(own_zone) == {tz_name}
    starts = {
        event.uid.value: event.dtstart.value.replace(tzinfo=own_zone[tz_name])
        for event in parsed.vevent_list
    }
    for visit in visits:
        assert starts[visit.uid].astimezone(UTC) == visit.start


# -- privacy -----------------------------------------------------------------------------


@pytest.mark.parametrize("audience", ["clinician", "patient"])
def test_feeds_never_name_the_treatment_on_any_kind_of_visit(client, kinds, audience):
    for key, visit in kinds.items():
        owner = visit.clinician if audience == "clinician" else visit.patient
        text = fetch(client, feed_path(owner))
        event = event_for(text, visit)
        assert treatment_words(text) == [], f"{key}: {treatment_words(text)}"
        summary = str(event["SUMMARY"])
        if audience == "clinician":
            assert summary.endswith(f"({visit.patient.initials})")
        else:
            assert summary == f"Appointment at {visit.patient.clinic.name}"
            assert str(event["URL"]) == "http://localhost:8000/p/"


def test_dosing_visits_read_as_sessions(client, kinds):
    iv = kinds["iv"]
    clinician_event = event_for(fetch(client, feed_path(iv.clinician)), iv)
    assert str(clinician_event["SUMMARY"]) == f"Session ({iv.patient.initials})"
    assert str(clinician_event["LOCATION"]) == "Room 1"
    patient_event = event_for(fetch(client, feed_path(iv.patient)), iv)
    assert str(patient_event["DESCRIPTION"]).startswith("In-clinic session.")
    assert str(patient_event["LOCATION"]) == "1 Example Street"


def test_telehealth_visits_carry_the_video_link(client, kinds):
    integration = kinds["integration"]
    for owner in (integration.clinician, integration.patient):
        event = event_for(fetch(client, feed_path(owner)), integration)
        assert str(event["LOCATION"]) == "https://video.example.com/room"


def test_the_clinic_chooses_more_or_less_detail(client, kinds):
    iv = kinds["iv"]
    clinic = iv.patient.clinic
    clinician_path, patient_path = feed_path(iv.clinician), feed_path(iv.patient)
    clinic.calendar_detail = CalendarDetail.FULL
    clinic.save()
    full = event_for(fetch(client, clinician_path), iv)
    assert str(full["SUMMARY"]) == f"Iv Infusion - {iv.patient}"
    assert "Ride home: NOT arranged yet." in str(full["DESCRIPTION"])
    assert str(event_for(fetch(client, patient_path), iv)["SUMMARY"]).startswith("Iv Infusion at")
    clinic.calendar_detail = CalendarDetail.MINIMAL
    clinic.save()
    minimal_text = fetch(client, clinician_path)
    assert str(event_for(minimal_text, iv)["SUMMARY"]) == "Appointment"
    assert iv.patient.initials not in unfold(minimal_text)
    assert "LOCATION" not in str(event_for(fetch(client, patient_path), iv))


def test_patient_feeds_use_the_patients_own_zone(client, clinic):
    patient = clinic.patient()
    patient.time_zone = "America/Chicago"
    patient.save()
    visit = booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    text = fetch(client, feed_path(patient))
    assert "DTSTART;TZID=America/Chicago:20300603T090000" in unfold(text)
    assert "TZID:America/Chicago" in text and "TZID:America/New_York" not in text
    assert event_for(text, visit).start.astimezone(UTC) == visit.start


# -- what a feed holds -------------------------------------------------------------------


def test_moving_a_visit_raises_its_sequence_under_the_same_uid(client, clinic):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    path = feed_path(clinic.therapist)
    first = client.get(path)
    booking.move(visit, start=at(TUESDAY, "11:00"))
    moved = client.get(path, headers={"If-None-Match": first["ETag"]})
    assert moved.status_code == 200 and moved["ETag"] != first["ETag"]
    event = event_for(moved.content.decode(), visit)
    assert event["SEQUENCE"] == 1
    assert event.start == at(TUESDAY, "11:00")


def test_cancelled_visits_stay_cancelled_for_30_days_then_leave(client, clinic, now):
    visit = booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    path = feed_path(clinic.therapist)
    booking.cancel(visit, "patient asked")
    event = event_for(fetch(client, path), visit)
    assert str(event["STATUS"]) == "CANCELLED" and str(event["TRANSP"]) == "TRANSPARENT"
    assert event["SEQUENCE"] == 1 and str(event["SUMMARY"]).startswith("Cancelled: ")
    now.shift(timedelta(days=29))
    assert len(events(fetch(client, path))) == 1
    now.shift(timedelta(days=2))
    assert events(fetch(client, path)) == []


def test_proposed_visits_never_appear(client, clinic):
    patient = clinic.patient()
    Visit.objects.create(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
        end=at(MONDAY, "10:50"),
        status=VisitStatus.PROPOSED,
    )
    assert events(fetch(client, feed_path(clinic.therapist))) == []
    assert events(fetch(client, feed_path(patient))) == []


def test_feeds_cover_90_days_back_and_18_months_ahead(client, clinic, now):
    patient = clinic.patient()

    def visit_at(start: datetime) -> Visit:
        return Visit.objects.create(
            patient=patient,
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=start,
            end=start + timedelta(minutes=50),
            status=VisitStatus.COMPLETED if start < datetime.now(UTC) else VisitStatus.BOOKED,
        )

    today = datetime(2030, 1, 2, 15, 0, tzinfo=UTC)
    inside = [visit_at(today - timedelta(days=89)), visit_at(today + timedelta(days=540))]
    visit_at(today - timedelta(days=91))
    visit_at(today + timedelta(days=560))
    uids = {str(e["UID"]) for e in events(fetch(client, feed_path(clinic.therapist)))}
    assert uids == {v.uid for v in inside}


# -- tokens ------------------------------------------------------------------------------


def test_a_wrong_or_revoked_token_gets_404_and_a_reissued_one_works(client, clinic):
    _, old = tokens.issue(clinic.therapist)
    old_path = reverse("calendar_feed", args=[old])
    assert client.get(old_path).status_code == 200
    assert client.get(reverse("calendar_feed", args=["x" * 43])).status_code == 404
    assert client.get("/calendars/short.ics").status_code == 404
    _, new = tokens.issue(clinic.therapist)
    assert client.get(old_path).status_code == 404
    assert client.get(reverse("calendar_feed", args=[new])).status_code == 200
    tokens.revoke(clinic.therapist)
    assert client.get(reverse("calendar_feed", args=[new])).status_code == 404


def test_tokens_are_random_and_stored_only_as_a_hash(clinic):
    token, raw = tokens.issue(clinic.therapist)
    _, other = tokens.issue(clinic.prescriber)
    assert len(raw) == 43 and raw != other  # 256 bits, URL-safe
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    stored = AccessToken.objects.filter(pk=token.pk).values().get()
    assert raw not in repr(stored)


def test_feed_url_command_issues_prints_and_reissues(client, clinic):
    patient = clinic.patient()

    def command(**options) -> str:
        out = io.StringIO()
        call_command("feed_url", stdout=out, **options)
        return out.getvalue().strip().removeprefix("http://localhost:8000")

    first = command(patient=str(patient.pk))
    assert client.get(first).status_code == 200
    with pytest.raises(CommandError, match="--reissue"):
        command(patient=patient.email)
    second = command(patient=patient.email.upper(), reissue=True)
    assert client.get(first).status_code == 404
    assert client.get(second).status_code == 200
    with pytest.raises(CommandError, match="No clinician"):
        command(clinician="nobody@example.com")


# -- cheap polling -----------------------------------------------------------------------


def test_an_unchanged_feed_answers_304_without_being_rebuilt(
    client, clinic, django_assert_num_queries
):
    booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    path = feed_path(clinic.therapist)
    first = client.get(path)
    # Token and aggregate; the visits themselves are never loaded.
    with django_assert_num_queries(2):
        again = client.get(path, headers={"If-None-Match": first["ETag"]})
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == first["ETag"]
    with django_assert_num_queries(2):
        since = client.get(path, headers={"If-Modified-Since": first["Last-Modified"]})
    assert since.status_code == 304


def test_the_etag_changes_with_bookings_and_the_detail_level(client, clinic):
    path = feed_path(clinic.therapist)
    seen = {client.get(path)["ETag"]}
    booking.book(
        patient=clinic.patient(),
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )
    seen.add(client.get(path)["ETag"])
    clinic.clinic.calendar_detail = CalendarDetail.FULL
    clinic.clinic.save()
    seen.add(client.get(path)["ETag"])
    assert len(seen) == 3


def bulk_visits(clinic: SmallClinic, count: int) -> None:
    """``count`` visits, one a day, written directly: the feed does not care how they were booked."""
    patient = Patient.objects.filter(clinic=clinic.clinic).first() or clinic.patient()
    first = at(date(2030, 1, 7), "10:00")
    Visit.objects.bulk_create(
        Visit(
            patient=patient,
            visit_type=clinic.integration,
            clinician=clinic.therapist,
            start=first + timedelta(days=day),
            end=first + timedelta(days=day, minutes=50),
        )
        for day in range(Visit.objects.filter(clinician=clinic.therapist).count(), count)
    )


def test_feed_queries_do_not_grow_with_the_number_of_visits(
    client, clinic, django_assert_num_queries
):
    path = feed_path(clinic.therapist)
    for count in (1, 500):
        bulk_visits(clinic, count)
        started = time.perf_counter()
        # The token, the validators, the visits and their teams.
        with django_assert_num_queries(4):
            response = client.get(path)
        elapsed = time.perf_counter() - started
        text = response.content.decode()
        assert text.count("BEGIN:VEVENT") == count
    assert_valid_ics(text)
    assert elapsed < 10, f"500 events took {elapsed:.1f} s"


# -- the clinician's own page --------------------------------------------------------------


def test_a_clinician_issues_and_revokes_their_own_feed(client, clinic):
    sign_in_verified(client, clinic.therapist.user)
    page = client.post(reverse("my_calendar"), {"action": "issue"})
    url = re.search(r'value="(http://localhost:8000/calendars/[^"]+)"', page.text).group(1)
    path = url.removeprefix("http://localhost:8000")
    assert client.get(path).status_code == 200
    assert AccessToken.objects.active().get().clinician == clinic.therapist
    assert "Your new calendar address" not in client.get(reverse("my_calendar")).text
    client.post(reverse("my_calendar"), {"action": "revoke"})
    assert client.get(path).status_code == 404


def test_only_clinicians_have_the_page_and_staff_issue_in_the_admin(client, clinic):
    assert client.get(reverse("my_calendar")).status_code == 302  # to the login
    staff = get_user_model().objects.create_superuser("boss", password=None)
    sign_in_verified(client, staff)
    assert client.get(reverse("my_calendar")).status_code == 404
    response = client.post(
        reverse("admin:scheduler_accesstoken_add"),
        {"purpose": "calendar_feed", "clinician": clinic.nurse.pk, "_save": "Save"},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    url = re.search(r"http://localhost:8000(/calendars/\S+\.ics)", " ".join(shown)).group(1)
    assert client.get(url).status_code == 200
    assert AccessToken.objects.get().created_by == staff
