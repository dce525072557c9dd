"""Answering on a phone in a real Chromium (360 x 740): half the questions, the browser closed,
the link opened again in a new one where the answers wait, the rest answered, and item 9 =
"Several days" putting 988 on the screen at once. Same browser as tests/test_browser.py."""

import shutil
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.patient_links import issue_patient_link
from questionnaires.asking import plan_patient
from questionnaires.models import QuestionnaireRequest, RequestStatus
from scheduler.models import Visit, VisitStatus
from tests.questionnaire_helpers import AskingClinic
from tests.test_browser import CHROMIUM, browser  # noqa: F401 (the fixture)

pytestmark = [
    pytest.mark.questionnaires,
    pytest.mark.skipif(
        not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
    ),
]
PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}


def phone(browser):  # noqa: F811 (the fixture)
    context = browser.new_context(**PHONE)
    context.set_default_timeout(10_000)
    return context, context.new_page()


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def answer(page, number: int, choice: str) -> None:
    assert page.locator("#progress-text").inner_text() == f"Question {number} of 10"
    page.get_by_role("radio", name=choice, exact=True).check()
    page.get_by_role("button", name="Next").click()
    page.wait_for_load_state("load")


def test_answers_survive_a_closed_browser_and_item_9_shows_988_at_once(
    browser,  # noqa: F811 (the fixture)
    live_server,
    transactional_db,
):
    clinic = AskingClinic()
    patient = clinic.texting_patient()
    start = timezone.now() + timedelta(hours=30)
    # Written directly, as the browser tests do: the real clock decides what is open.
    visit = Visit.objects.create(
        patient=patient,
        visit_type=clinic.screening,
        clinician=clinic.prescriber,
        room=clinic.room3,
        start=start,
        end=start + clinic.screening.duration,
        status=VisitStatus.BOOKED,
    )
    plan_patient(patient)
    phq9 = QuestionnaireRequest.objects.get(visit=visit, instrument__code="phq-9")
    link = issue_patient_link(patient).replace("http://localhost:8000", live_server.url)

    first, page = phone(browser)
    page.goto(link)
    card = page.get_by_role("region", name="Questions before your visit")
    card.get_by_role("link", name="Answer PHQ-9").click()
    page.wait_for_load_state("load")
    assert page.get_by_role("group").first.is_visible()  # the fieldset, named by its legend
    assert no_sideways_scroll(page)
    for number in range(1, 6):
        answer(page, number, "Not at all" if number != 2 else "More than half the days")
    assert page.locator("#progress-text").inner_text() == "Question 6 of 10"
    first.close()  # the browser closed half-way

    second, page = phone(browser)
    page.goto(link)
    page.get_by_role("link", name="Go on with PHQ-9").click()
    page.wait_for_load_state("load")
    assert page.locator("#progress-text").inner_text() == "Question 6 of 10"  # where they left off
    page.goto(f"{link}questions/{phq9.pk}/?q=2")
    assert page.get_by_role("radio", name="More than half the days", exact=True).is_checked()
    page.goto(f"{link}questions/{phq9.pk}/")
    for number in range(6, 9):
        answer(page, number, "Not at all")
    answer(page, 9, "Several days")
    page.get_by_role("button", name="Next: check your answers").click()  # the last one left out
    page.wait_for_load_state("load")
    assert page.get_by_role("heading", level=1).inner_text() == "Check your answers"
    assert no_sideways_scroll(page)
    page.get_by_role("button", name="Send my answers").click()
    page.wait_for_load_state("load")

    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == "If you are in danger now, call 911."
    assert page.get_by_role("link", name="Call 988").get_attribute("href") == "tel:988"
    assert page.get_by_role("link", name="Text 988").get_attribute("href") == "sms:988"
    assert page.get_by_role("link", name="Call 988").is_visible()
    assert no_sideways_scroll(page)
    second.close()
    phq9.refresh_from_db()
    assert phq9.status == RequestStatus.ANSWERED and phq9.response.total == 3
