"""Answering from the patient's link through Django's test client: one question a screen with its
progress, each answer saved on Next, a closed browser resuming at the first question not
answered, a review with change links, one submission scored on the server (also under two at
once), crisis resources first after a worrying answer, clear refusals, another patient's
request a 404, a fixed number of queries, every view audited."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.html import strip_tags

from notifications.patient_links import issue_patient_link
from questionnaires import scoring
from questionnaires.models import QuestionnaireRequest, RequestStatus, ResponseStatus
from scheduler import booking
from scheduler.models import AuditAction, AuditEvent
from tests.conftest import MONDAY, at
from tests.language_helpers import english_left
from tests.questionnaire_helpers import AskingClinic
from tests.races import race

VISIT = at(MONDAY, "09:00")
OPEN = VISIT - timedelta(hours=47)  # the questions opened an hour ago
NOT_AT_ALL, SEVERAL_DAYS = "LA6568-5", "LA6569-3"
ITEM_9 = "44260-8"
pytestmark = pytest.mark.questionnaires


def build(now):
    now.move_to(VISIT - timedelta(days=10))
    clinic = AskingClinic()
    patient = clinic.texting_patient()
    visit = clinic.book(patient, clinic.screening, VISIT)
    now.move_to(OPEN)
    link = issue_patient_link(patient).removeprefix("http://localhost:8000")
    phq9 = QuestionnaireRequest.objects.get(visit=visit, instrument__code="phq-9")
    gad7 = QuestionnaireRequest.objects.get(visit=visit, instrument__code="gad-7")
    return clinic, patient, visit, link, phq9, gad7


@pytest.fixture
def world(db, now, settings):
    settings.SITE_URL = "http://localhost:8000"
    return build(now)


def items_of(request):
    return scoring.items(request.instrument.questionnaire)


def question_url(link, request) -> str:
    return f"{link}questions/{request.pk}/"


def answer(client, link, request, number, code, action="next"):
    return client.post(question_url(link, request), {"q": number, "answer": code, "action": action})


def answers_of(request) -> dict:
    request.refresh_from_db()
    return request.response.answers


def answer_through(client, link, request, codes) -> None:
    for number, code in enumerate(codes, 1):
        answer(client, link, request, number, code)


def test_one_question_a_screen_with_its_progress_and_each_answer_saved_on_next(client, world):
    _, _, _, link, phq9, _ = world
    items = items_of(phq9)
    page = client.get(question_url(link, phq9))
    assert page.status_code == 200
    text = page.text
    assert (
        "Question 1 of 10" in text
        and '<progress class="question-progress" value="1" max="10"' in text
    )
    legend = re.search(r"<legend>(.*?)</legend>", text, re.S).group(1)
    assert "Over the last 2 weeks" in legend and items[0].text in legend
    assert text.count('type="radio" name="answer"') == 4
    assert all(option.display in text for option in items[0].options)

    page = answer(client, link, phq9, 1, items[0].options[2].code)
    assert page.status_code == 200 and "Question 2 of 10" in page.text
    assert items[1].text in page.text
    assert answers_of(phq9) == {items[0].link_id: items[0].options[2].code}


def test_a_half_answered_questionnaire_survives_a_closed_browser_and_resumes(world):
    _, _, _, link, phq9, _ = world
    items = items_of(phq9)
    answer_through(Client(), link, phq9, [NOT_AT_ALL, SEVERAL_DAYS, NOT_AT_ALL, NOT_AT_ALL])
    fresh = Client()  # a new browser: no session, no cookies
    page = fresh.get(question_url(link, phq9))
    assert "Question 5 of 10" in page.text and items[4].text in page.text
    assert "checked" not in page.text
    second = fresh.get(question_url(link, phq9), {"q": 2})
    assert re.search(rf'value="{SEVERAL_DAYS}" checked', second.text)


def test_back_keeps_the_answer_given_and_shows_the_question_before(client, world):
    _, _, _, link, phq9, _ = world
    items = items_of(phq9)
    answer(client, link, phq9, 1, NOT_AT_ALL)
    page = answer(client, link, phq9, 2, SEVERAL_DAYS, action="back")
    assert "Question 1 of 10" in page.text and re.search(
        rf'value="{NOT_AT_ALL}" checked', page.text
    )
    assert answers_of(phq9)[items[1].link_id] == SEVERAL_DAYS


def test_next_without_an_answer_asks_for_one_and_the_optional_last_question_may_be_left_out(
    client, world
):
    _, _, _, link, phq9, _ = world
    page = client.post(question_url(link, phq9), {"q": 1, "action": "next"})
    assert page.status_code == 400 and "Please choose an answer to go on." in page.text
    assert "Question 1 of 10" in page.text
    bad = answer(client, link, phq9, 1, "LA-not-an-answer")
    assert bad.status_code == 400 and "Please choose one of the answers." in bad.text
    answer_through(client, link, phq9, [NOT_AT_ALL] * 9)
    last = client.post(question_url(link, phq9), {"q": 10, "action": "next"})
    assert last.status_code == 302 and last["Location"].endswith(f"/questions/{phq9.pk}/review/")


def test_the_review_lists_every_answer_with_a_change_link_and_submit_scores_on_the_server(
    client, world
):
    _, _, _, link, phq9, gad7 = world
    codes = [SEVERAL_DAYS, "LA6570-1", NOT_AT_ALL, NOT_AT_ALL, "LA6571-9", NOT_AT_ALL]
    answer_through(client, link, phq9, codes + [NOT_AT_ALL] * 3)
    review = client.get(f"{question_url(link, phq9)}review/")
    assert review.status_code == 200
    for number in range(1, 11):
        assert f'href="{question_url(link, phq9)}?q={number}"' in review.text
    assert "More than half the days" in review.text and "Left out" in review.text
    done = client.post(f"{question_url(link, phq9)}review/")
    assert done["Location"].endswith(f"/questions/{phq9.pk}/done/")
    phq9.refresh_from_db()
    response = phq9.response
    assert phq9.status == RequestStatus.ANSWERED
    assert (response.status, response.total, response.band) == (ResponseStatus.COMPLETED, 6, "Mild")
    thanks = client.get(done["Location"])
    assert "<h1>Thank you</h1>" in thanks.text and "988" not in thanks.text
    # The next questionnaire of the visit is one tap away.
    assert f'href="{question_url(link, gad7)}"' in thanks.text


def test_item_9_above_not_at_all_puts_crisis_resources_first_on_the_page_after_submitting(
    client, world
):
    clinic, _, _, link, phq9, _ = world
    answer_through(client, link, phq9, [NOT_AT_ALL] * 8 + [SEVERAL_DAYS])
    done = client.post(f"{question_url(link, phq9)}review/", follow=True)
    main = done.text.split('<main id="main" tabindex="-1">')[1]
    first = re.search(r"<h1[^>]*>(.*?)</h1>", main).group(1)
    assert first == "If you are in danger now, call 911."
    assert main.index("danger now") < main.index("Thank you")
    assert 'href="tel:988"' in main and 'href="sms:988"' in main
    assert "988 Suicide &amp; Crisis Lifeline" in main
    assert f'href="tel:{clinic.clinic.phone}"' in main
    assert "will contact you today" in main


def test_a_second_submission_changes_nothing_and_shows_what_the_first_did(client, world):
    _, _, _, link, phq9, _ = world
    answer_through(client, link, phq9, [NOT_AT_ALL] * 9)
    client.post(f"{question_url(link, phq9)}review/")
    phq9.refresh_from_db()
    completed_at = phq9.response.completed_at
    again = client.post(f"{question_url(link, phq9)}review/")
    assert again.status_code == 302 and again["Location"].endswith("/done/")
    phq9.refresh_from_db()
    assert phq9.response.completed_at == completed_at
    page = client.get(question_url(link, phq9))
    assert "These answers were already sent. Thank you." in page.text
    assert answer(client, link, phq9, 1, SEVERAL_DAYS).status_code == 409
    assert answers_of(phq9)["44250-9"] == NOT_AT_ALL


@pytest.mark.django_db(transaction=True)
def test_two_submissions_at_once_complete_the_questionnaire_once(now, settings):
    settings.SITE_URL = "http://localhost:8000"
    _, _, _, link, phq9, _ = build(now)
    answer_through(Client(), link, phq9, [NOT_AT_ALL] * 9)
    url = f"{question_url(link, phq9)}review/"
    outcomes = race([lambda: Client().post(url), lambda: Client().post(url)])
    assert [o.status_code for o in outcomes] == [302, 302], outcomes
    assert {o["Location"] for o in outcomes} == {f"{question_url(link, phq9)}done/"}
    phq9.refresh_from_db()
    assert phq9.status == RequestStatus.ANSWERED and phq9.response.total == 0


def test_a_cancelled_visit_and_a_visit_gone_by_say_so_and_keep_the_answers(client, world, now):
    _, _, visit, link, phq9, _ = world
    answer(client, link, phq9, 1, SEVERAL_DAYS)
    booking.cancel(visit, "Patient asked")
    page = client.get(question_url(link, phq9))
    assert page.status_code == 200 and "the visit they were for was cancelled" in page.text
    assert "Nothing you answered is lost." in page.text
    assert answer(client, link, phq9, 2, SEVERAL_DAYS).status_code == 409
    assert answers_of(phq9) == {"44250-9": SEVERAL_DAYS}
    assert client.get(f"{link}questions/").text.count("Answer ") == 0


def test_questions_close_when_the_visit_ends(client, world, now):
    _, _, visit, link, phq9, _ = world
    now.move_to(visit.end)
    page = client.get(question_url(link, phq9))
    assert "The visit these questions were for is over" in page.text


def test_another_patients_questions_are_a_404(client, world):
    clinic, _, _, _, phq9, _ = world
    other = clinic.texting_patient("Blake", "Other")
    other_link = issue_patient_link(other).removeprefix("http://localhost:8000")
    for suffix in ("", "review/", "done/"):
        assert client.get(f"{question_url(other_link, phq9)}{suffix}").status_code == 404


def test_the_patient_page_leads_with_the_questions_open_now(client, world, now):
    _, _, visit, link, phq9, _ = world
    page = client.get(link).text
    assert page.index("Questions before your visit") < page.index("Your next visit")
    assert f'href="{question_url(link, phq9)}"' in page
    now.move_to(visit.start - timedelta(hours=49))  # not open yet
    assert "Questions before your visit" not in client.get(link).text


def test_the_pages_run_a_fixed_number_of_queries(client, world):
    _, _, _, link, phq9, gad7 = world
    counts = {}
    for stage, answered in (("few", 1), ("many", 6)):
        answer_through(client, link, phq9, [NOT_AT_ALL] * answered)
        answer_through(client, link, gad7, [NOT_AT_ALL] * answered)
        pages = {
            "list": f"{link}questions/",
            "question": f"{question_url(link, phq9)}?q=2",
            "review": f"{question_url(link, phq9)}review/",
            "patient page": link,
        }
        for name, url in pages.items():
            with CaptureQueriesContext(connection) as queries:
                assert client.get(url).status_code == 200
            counts[stage, name] = len(queries)
    for name in ("list", "question", "review", "patient page"):
        assert counts["few", name] == counts["many", name], (name, counts)
    assert counts["many", "question"] <= 4 and counts["many", "list"] <= 4
    with CaptureQueriesContext(connection) as queries:
        answer(client, link, phq9, 3, SEVERAL_DAYS)
    print(f"questions: {counts}, saving an answer: {len(queries)} queries")
    assert len(queries) <= 10


def test_every_view_of_the_questions_is_in_the_audit_trail_as_the_patient_link(client, world):
    _, patient, _, link, phq9, _ = world
    before = AuditEvent.objects.count()
    client.get(f"{link}questions/")
    client.get(question_url(link, phq9))
    answer(client, link, phq9, 1, NOT_AT_ALL)
    client.get(f"{question_url(link, phq9)}review/")
    events = list(AuditEvent.objects.order_by("pk")[before:])
    assert len(events) == 4
    assert {(e.action, e.actor_label, e.patient_id) for e in events} == {
        (AuditAction.VIEWED_PATIENT_LINK, "patient link", patient.pk)
    }


def test_a_spanish_reader_answers_in_the_published_spanish_and_scores_as_in_english(world):
    """Items, answers, instruction and the page's own words in Spanish; the answers are the
    same codes, scored and alerted on as the English ones (item 9: the crisis page first)."""

    clinic, patient, _visit, link, phq9, _gad7 = world
    patient.language = "es"
    patient.save(update_fields=["language"])
    client = Client()
    first = client.get(question_url(link, phq9) + "?q=1").content.decode()
    main = first.split('<main id="main"', 1)[1]
    assert "Poco interés o placer en hacer cosas" in main
    assert "¿qué tan seguido ha tenido molestias" in main and "Ningún día" in main
    assert "Cuestionario sobre la salud del paciente (PHQ-9)" in main
    assert english_left(main, clinic.clinic.name, "PHQ") == [], strip_tags(main)
    spanish, english = items_of(phq9), scoring.items(phq9.instrument.questionnaire, "es")
    assert [i.link_id for i in spanish] == [i.link_id for i in english]
    for number, item in enumerate(items_of(phq9), 1):
        code = SEVERAL_DAYS if item.link_id == ITEM_9 else item.options[0].code
        answer(client, link, phq9, number, code)
    review = client.get(f"{link}questions/{phq9.pk}/review/").content.decode()
    assert "Revise sus respuestas" in review and "Varios días" in review
    done = client.post(f"{link}questions/{phq9.pk}/review/", follow=True).content.decode()
    assert "Si está en peligro ahora, llame al 911." in done
    assert english_left(done.split('<main id="main"', 1)[1], clinic.clinic.name, "PHQ", "GAD") == []
    phq9.refresh_from_db()
    assert phq9.response.total == 1 and phq9.response.alerts.exists()
    # Sent already: the refusal says so in Spanish.
    again = client.get(question_url(link, phq9)).content.decode()
    assert "Estas respuestas ya se enviaron. Gracias." in again


@pytest.mark.parametrize("code", ["phq-9", "gad-7"])
def test_every_item_answer_and_instruction_of_the_instruments_has_its_spanish(world, code):
    from questionnaires.models import Instrument

    questionnaire = Instrument.objects.current().get(code=code).questionnaire
    english, spanish = scoring.items(questionnaire), scoring.items(questionnaire, "es")
    for en, es in zip(english, spanish, strict=True):
        assert es.text != en.text
        assert all(a.display != b.display for a, b in zip(en.options, es.options, strict=True))
    assert scoring.stem(questionnaire, "es") != scoring.stem(questionnaire)
    assert scoring.title(questionnaire, "es") != scoring.title(questionnaire)


def test_an_item_a_clinic_reworded_keeps_no_spanish_from_the_migration(world):
    """A database made before the translations gets them for the published English only."""
    import importlib

    from django.apps import apps

    from questionnaires.models import Instrument

    migration = importlib.import_module("questionnaires.migrations.0005_spanish_wording")
    instrument = Instrument.objects.current().get(code="phq-9")
    questionnaire = instrument.questionnaire
    for item in questionnaire["item"]:
        item.pop("_text", None)
        for option in item.get("answerOption", []):
            option["valueCoding"].pop("_display", None)
    questionnaire.pop("_title")
    questionnaire["item"][1]["text"] += " (reworded)"
    instrument.save()
    migration.add_spanish(apps, None)
    instrument.refresh_from_db()
    spanish = scoring.items(instrument.questionnaire, "es")
    assert spanish[0].text == "Little interest or pleasure in doing things (reworded)"
    assert spanish[1].text == "Se ha sentido decaído(a), deprimido(a) o sin esperanzas"
    assert spanish[1].options[0].display == "Ningún día"
