"""Questions before a visit, answered from the patient's private link (/p/<token>/questions/).

Made for a phone and for no script at all: one question a screen, its
answers as large radio buttons in a fieldset whose legend is the question,
Back and Next, progress in words and as a ``<progress>``. Each answer is
saved on the server when the patient presses Next (``answering.save_answer``),
so a closed browser loses nothing: the link opens again at the first question
not answered. A review screen lists the answers, each with a link to change
it, and Submit scores them on the server, once (``answering.submit``).

Next answers with the following question itself rather than a redirect to
it: the token URLs are rate-limited per address, and a patient going through
sixteen questions should not spend two requests on each.

The page after a submission puts crisis resources first (911, 988 by call or
text, the clinic's phone, that the care team will be in touch today) when
the answers call for a clinician's review today: a scored safety reason
(PHQ-9 item 9 above "not at all") or an alert the safety path raised for
them (which also covers the clinic's threshold on the total).

Like the rest of the patient's page: only this patient's requests (another
patient's is a 404), never cached or indexed, every view in the audit trail.
"""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from config.throttle import token_rate_limited
from desk.patient_page import link_patient, private
from questionnaires import answering, scoring
from questionnaires.models import QuestionnaireRequest, QuestionnaireResponse, RequestStatus
from scheduler import audit
from scheduler.models import AuditAction, Patient
from scheduler.timezones import zone


def _context(patient: Patient, token: str, **extra) -> dict:
    return {
        "patient": patient,
        "clinic": patient.clinic,
        "tz": zone(patient.time_zone),
        "token": token,
        **extra,
    }


def _own_request(request: HttpRequest, token: str, pk: int) -> tuple[Patient, QuestionnaireRequest]:
    """The link's patient and their request ``pk`` (404 for anyone else's), with its answers."""
    patient = link_patient(request, token)
    asked = get_object_or_404(
        QuestionnaireRequest.objects.select_related("instrument", "visit", "response"),
        pk=pk,
        patient=patient,
    )
    audit.record(request, AuditAction.VIEWED_PATIENT_LINK, patient, f"questionnaire {pk}")
    return patient, asked


def _answers(asked: QuestionnaireRequest) -> dict[str, str]:
    try:
        return asked.response.answers
    except QuestionnaireResponse.DoesNotExist:
        return {}


def _refused(request, patient, token, asked, reason: str, status: int = 200) -> HttpResponse:
    context = _context(patient, token, asked=asked, reason=reason)
    return private(render(request, "desk/questions_refused.html", context, status=status))


@token_rate_limited
@never_cache
@require_safe
def questions(request: HttpRequest, token: str) -> HttpResponse:
    """What the patient may answer now, before which visit, and how far they got."""
    patient = link_patient(request, token)
    audit.record(request, AuditAction.VIEWED_PATIENT_LINK, patient, "questionnaires")
    context = _context(patient, token, answerable=answering.answerable_now(patient))
    return private(render(request, "desk/questions.html", context))


def _position(text: str | None, count: int) -> int | None:
    """A question's number (1 to ``count``) from the page's text, else None."""
    if text and text.isdigit() and 1 <= int(text) <= count:
        return int(text)
    return None


def _question_page(request, patient, token, asked, items, answers, number, *, error="", status=200):
    item = items[number - 1]
    context = _context(
        patient,
        token,
        asked=asked,
        title=scoring.title(asked.instrument.questionnaire, get_language()),
        item=item,
        number=number,
        count=len(items),
        # The instruction ("Over the last 2 weeks...") belongs to the scored
        # items, not to the closing question on how hard the problems made life.
        stem=scoring.stem(asked.instrument.questionnaire, get_language())
        if item.link_id in asked.instrument.scoring["total"]["items"]
        else "",
        chosen=answers.get(item.link_id, ""),
        error=error,
    )
    return private(render(request, "desk/question.html", context, status=status))


@token_rate_limited
@never_cache
@require_http_methods(["GET", "POST"])
def question(request: HttpRequest, token: str, pk: int) -> HttpResponse:
    """One question (``?q=``; by default the first not answered yet); Next saves its answer."""
    patient, asked = _own_request(request, token, pk)
    if reason := answering.refusal(asked):
        # An answer posted too late is refused (409); the page says why either way.
        status = 409 if request.method == "POST" else 200
        return _refused(request, patient, token, asked, reason, status=status)
    items = scoring.items(asked.instrument.questionnaire, get_language())
    answers = _answers(asked)
    review = reverse("patient_question_review", args=[token, pk])
    if request.method == "GET":
        number = _position(request.GET.get("q"), len(items))
        if number is None:
            number = next(
                (i for i, item in enumerate(items, 1) if item.link_id not in answers), None
            )
        if number is None:
            return redirect(review)
        return _question_page(request, patient, token, asked, items, answers, number)
    number = _position(request.POST.get("q"), len(items))
    if number is None:
        raise Http404(_("No such question."))
    item = items[number - 1]
    code = request.POST.get("answer", "")
    if code:
        if item.option(code) is None:
            return _question_page(
                request, patient, token, asked, items, answers, number,
                error=_("Please choose one of the answers."), status=400,
            )  # fmt: skip
        try:
            answers = answering.save_answer(asked, item.link_id, code).answers
        except answering.NotAnswerable as refusal:
            return _refused(request, patient, token, asked, str(refusal), status=409)
    if request.POST.get("action") == "back":
        return _question_page(request, patient, token, asked, items, answers, max(number - 1, 1))
    if item.required and item.link_id not in answers:
        return _question_page(
            request, patient, token, asked, items, answers, number,
            error=_("Please choose an answer to go on."), status=400,
        )  # fmt: skip
    if number == len(items) or request.POST.get("action") == "review":
        return redirect(review)
    return _question_page(request, patient, token, asked, items, answers, number + 1)


@token_rate_limited
@never_cache
@require_http_methods(["GET", "POST"])
def review(request: HttpRequest, token: str, pk: int) -> HttpResponse:
    """Every answer with a link to change it; Submit sends them, once."""
    patient, asked = _own_request(request, token, pk)
    missing = ()
    if request.method == "POST":
        try:
            answering.submit(asked)
        except answering.NotAnswerable as refusal:
            if asked.status == RequestStatus.OPEN:
                asked.refresh_from_db(fields=["status"])
            if asked.status == RequestStatus.ANSWERED:
                # Sent already (another tab, a double tap): what it said then.
                return redirect("patient_question_done", token=token, pk=pk)
            return _refused(request, patient, token, asked, str(refusal), status=409)
        except answering.Incomplete as incomplete:
            missing = incomplete.missing
        else:
            return redirect("patient_question_done", token=token, pk=pk)
    elif reason := answering.refusal(asked):
        return _refused(request, patient, token, asked, reason)
    answers = _answers(asked)
    rows = []
    for number, item in enumerate(scoring.items(asked.instrument.questionnaire, get_language()), 1):
        option = item.option(answers.get(item.link_id, ""))
        rows.append(
            {
                "number": number,
                "item": item,
                "answer": option.display if option else "",
                "missing": item.link_id in missing,
            }
        )
    title = scoring.title(asked.instrument.questionnaire, get_language())
    context = _context(patient, token, asked=asked, title=title, rows=rows, missing=missing)
    status = 400 if missing else 200
    return private(render(request, "desk/questions_review.html", context, status=status))


@token_rate_limited
@never_cache
@require_safe
def done(request: HttpRequest, token: str, pk: int) -> HttpResponse:
    """After a submission: crisis resources first when the answers call for them, else thanks."""
    patient, asked = _own_request(request, token, pk)
    if asked.status != RequestStatus.ANSWERED:
        return redirect("patient_question", token=token, pk=pk)
    response = asked.response
    instrument = asked.instrument
    safety = scoring.score(instrument.questionnaire, instrument.scoring, response.answers)
    needs_review = bool(safety.safety_reasons) or response.alerts.exists()
    following = (
        QuestionnaireRequest.objects.answerable()
        .filter(patient=patient)
        .exclude(pk=pk)
        .order_by("visit__start", "pk")
        .first()
    )
    context = _context(patient, token, asked=asked, needs_review=needs_review, following=following)
    return private(render(request, "desk/questions_done.html", context))
