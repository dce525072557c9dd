"""The patient's private page: only their own visits, confirm, ask to reschedule, expiring links."""

import re
from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from notifications.models import InboundKind, InboundMessage
from notifications.patient_links import issue_patient_link
from scheduler import booking, tokens
from scheduler.models import AccessToken, TokenPurpose, VisitStatus
from tests.conftest import at
from tests.page_helpers import crowd, sign_in_verified

pytestmark = pytest.mark.usefixtures("now")
DAY = date(2030, 1, 4)


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.fixture
def avery(clinic):
    patient = clinic.patient("Avery", "Applewood")
    patient.time_zone = "America/Los_Angeles"
    patient.save(update_fields=["time_zone"])
    clinic.iv.preparation_instructions = "No solid food for 6 hours before."
    clinic.iv.aftercare_instructions = "Rest and drink water."
    clinic.iv.save()
    return patient


def _book(clinic, patient, kind="iv", hh_mm="10:00", day=DAY):
    if kind == "iv":
        return booking.book(
            patient=patient,
            visit_type=clinic.iv,
            clinician=clinic.prescriber,
            room=clinic.room1,
            start=at(day, hh_mm),
        )
    return booking.book(
        patient=patient,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(day, hh_mm),
    )


def test_the_link_is_random_hashed_and_shows_the_patients_visits_in_their_zone(
    client, clinic, avery
):
    _book(clinic, avery, "iv", "10:00")
    _book(clinic, avery, "integration", "14:00", DAY - timedelta(days=1))
    other = clinic.patient("Other", "Person")
    _book(clinic, other, "integration", "15:00")
    url = issue_patient_link(avery)
    raw = url.rstrip("/").rsplit("/", 1)[1]
    assert len(raw) >= 43  # 256 bits in URL-safe base64
    stored = AccessToken.objects.get(patient=avery, purpose=TokenPurpose.PATIENT_LINK)
    assert stored.digest == tokens.digest(raw) and raw not in stored.digest

    response = client.get(_path(url))
    page = response.text
    assert response.status_code == 200 and response["X-Robots-Tag"] == "noindex, nofollow"
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]
    assert "Hello Avery" in page
    assert "7:00 AM-9:00 AM" in page  # 10:00 in New York is 7:00 in Los Angeles
    assert "No solid food for 6 hours" in page and "Rest and drink water" in page
    assert "https://video.example.com/room" in page  # the telehealth visit's link
    assert "Other" not in page and "3:00 PM" not in page


def test_confirm_and_reschedule_from_the_page_and_nothing_of_another_patient(client, clinic, avery):
    visit = _book(clinic, avery)
    other_visit = _book(clinic, clinic.patient("Other", "Person"), "integration", "15:00")
    path = _path(issue_patient_link(avery))
    done = client.post(path, {"action": "confirm", "visit": visit.pk}, follow=True)
    assert "your visit is confirmed" in done.text
    visit.refresh_from_db()
    assert visit.status == VisitStatus.CONFIRMED

    client.post(path, {"action": "reschedule", "visit": visit.pk})
    client.post(path, {"action": "reschedule", "visit": visit.pk})  # a double click adds nothing
    request = InboundMessage.objects.inbox().get()
    assert request.kind == InboundKind.RESCHEDULE and request.visit == visit
    assert request.patient == avery

    assert client.post(path, {"action": "confirm", "visit": other_visit.pk}).status_code == 404
    other_visit.refresh_from_db()
    assert other_visit.status == VisitStatus.BOOKED


def test_add_to_calendar_downloads_only_the_patients_own_visit(client, clinic, avery):
    visit = _book(clinic, avery)
    other_visit = _book(clinic, clinic.patient("Other", "Person"), "integration", "15:00")
    url = issue_patient_link(avery)
    raw = url.rstrip("/").rsplit("/", 1)[1]
    ics = client.get(reverse("patient_visit_ics", args=[raw, visit.pk]))
    assert ics["Content-Type"].startswith("text/calendar")
    assert f"UID:{visit.uid}" in ics.content.decode()
    assert "ketamine" not in ics.content.decode().lower()
    assert client.get(reverse("patient_visit_ics", args=[raw, other_visit.pk])).status_code == 404


def test_wrong_revoked_and_expired_links_get_404(client, clinic, avery, now, settings):
    assert client.get("/p/" + "x" * 43 + "/").status_code == 404
    assert client.get("/p/short/").status_code == 404
    old = _path(issue_patient_link(avery))
    new = _path(issue_patient_link(avery))  # issuing again revokes the first
    assert client.get(old).status_code == 404
    assert client.get(new).status_code == 200
    now.shift(timedelta(days=settings.PATIENT_LINK_DAYS + 1))
    assert client.get(new).status_code == 404
    # A calendar feed token does not open the patient page.
    _, feed = tokens.issue(avery)
    assert client.get(f"/p/{feed}/").status_code == 404


def test_the_patient_page_runs_a_fixed_number_of_queries(
    client, clinic, avery, django_assert_max_num_queries
):
    path = _path(issue_patient_link(avery))
    counts = []
    for offset, n in ((0, 4), (10, 12)):
        crowd(clinic, DAY + timedelta(days=offset), n, patient=avery, failing=False)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(path).status_code == 200
        counts.append(len(queries))
        # The link, the visits, their instructions in the patient's language, the
        # questions open now, the audit record.
        with django_assert_max_num_queries(5):
            client.get(path)
    assert counts[0] == counts[1]
    print(f"patient page: {counts[0]} queries")


def test_my_calendar_shows_the_clinicians_week_with_initials_and_fixed_queries(
    client, clinic, avery, django_assert_max_num_queries
):
    visit = _book(clinic, avery, "integration", "14:00")
    sign_in_verified(client, clinic.therapist.user)
    page = client.get(reverse("my_calendar"), {"week": "2030-01-02"}).text
    assert "Week of Monday 31 December 2029" in page
    assert "14:00-14:50" in page and "(AA)" in page and "Applewood" not in page
    assert "https://video.example.com/room" in page
    assert visit.pk
    issued = client.post(reverse("my_calendar"), {"action": "issue"}).text
    assert 'data-copy="feed-url"' in issued
    counts = []
    for offset, n in ((0, 2), (1, 6)):
        crowd(clinic, DAY + timedelta(days=offset), n, failing=False)
        with CaptureQueriesContext(connection) as queries:
            client.get(reverse("my_calendar"), {"week": "2030-01-02"})
        counts.append(len(queries))
    assert counts[0] == counts[1]
    with django_assert_max_num_queries(counts[0]):
        client.get(reverse("my_calendar"), {"week": "2030-01-02"})
    print(f"my calendar: {counts[0]} queries")


def test_staff_can_issue_a_patient_link_in_the_admin_and_it_opens_the_page(client, clinic, avery):
    from django.contrib.auth import get_user_model

    sign_in_verified(client, get_user_model().objects.create_superuser("root", password=None))
    response = client.post(
        reverse("admin:scheduler_accesstoken_add"),
        {"purpose": "patient_link", "patient": avery.pk, "_save": "Save"},
        follow=True,
    )
    shown = " ".join(str(m) for m in response.context["messages"])
    assert "New patient page link" in shown
    path = re.search(r"http://localhost:8000(/p/\S+/)", shown).group(1)
    client.logout()
    assert "Hello Avery" in client.get(path).text


def test_a_visit_the_patient_asked_to_move_no_longer_asks_for_confirmation(client, clinic, avery):
    asked = _book(clinic, avery, "integration", "09:00", DAY - timedelta(days=1))
    other = _book(clinic, avery, "integration", "11:00")
    path = _path(issue_patient_link(avery))
    client.post(path, {"action": "reschedule", "visit": asked.pk})
    page = client.get(path).text
    card = page[page.index(f'id="visit-{asked.pk}"') : page.index(f'id="visit-{other.pk}"')]
    assert "you asked to change this visit" in card and "please confirm" not in card
    assert "Confirm this visit" not in card
    assert "please confirm" in page[page.index(f'id="visit-{other.pk}"') :]
    # Once the desk has handled the request, the visit asks for confirmation again.
    InboundMessage.objects.update(handled_at=timezone.now())
    assert client.get(path).text.count("please confirm") == 2


def test_the_next_visit_comes_first_with_what_to_do_before_it_and_the_rest_fold_away(
    client, clinic, avery
):
    clinic.integration.preparation_instructions = "Join from a quiet, private room."
    clinic.integration.save()
    weekdays = [
        DAY + timedelta(days=n) for n in range(8) if (DAY + timedelta(days=n)).weekday() < 5
    ]
    talks = [_book(clinic, avery, "integration", "09:00", day) for day in weekdays[:3]]
    dose = _book(clinic, avery, "iv", "11:00", weekdays[3])
    page = client.get(_path(issue_patient_link(avery))).text

    first_fold = page.index("<details")
    next_card = page[page.index('<article class="card next"') : page.index("</article>")]
    assert page.index("Your next visit") < page.index('<article class="card next"') < first_fold
    assert f'id="visit-{talks[0].pk}"' in next_card
    assert "Before this visit" in next_card and "Join from a quiet, private room." in next_card
    # Each later visit folded on its own, in time order, its instructions inside it.
    folds = re.findall(r'<details class="later-visit" id="later-(\d+)">(.*?)</details>', page, re.S)
    assert [int(pk) for pk, _ in folds] == [talks[1].pk, talks[2].pk, dose.pk]
    assert all(f'id="visit-{pk}"' in body for pk, body in folds)
    assert "Later visits (3)" in page and "<details open" not in page
    dose_fold = folds[-1][1]
    assert "No solid food for 6 hours before." in dose_fold
    assert "Arrange an adult to drive you home." in dose_fold
    assert "Rest and drink water." in dose_fold
    assert page.count("No solid food for 6 hours before.") == 1  # beside its own visit only
    # The dose's preparation starts days ahead: the next visit's section points to it.
    assert f'href="#later-{dose.pk}"' in page[:first_fold]
    assert "Preparing for your session on" in page[:first_fold]


def test_a_dose_that_is_the_next_visit_has_its_preparation_and_aftercare_in_the_first_card(
    client, clinic, avery
):
    dose = _book(clinic, avery, "iv", "10:00")
    _book(clinic, avery, "integration", "10:00", DAY + timedelta(days=3))  # the Monday after
    page = client.get(_path(issue_patient_link(avery))).text
    next_card = page[page.index('<article class="card next"') : page.index("</article>")]
    assert f'id="visit-{dose.pk}"' in next_card
    assert "No solid food for 6 hours before." in next_card
    assert "Tell the clinic who will drive you." in next_card
    assert "Rest and drink water." in next_card
    assert "Preparing for your session on" not in page
    assert "Later visits (1)" in page
