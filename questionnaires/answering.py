"""Answers saved one at a time, and the one submission that scores them.

Every answer is stored as it is given (``save_answer``), so a patient who
closes the browser half-way finds their answers again. ``submit`` scores the
answers on the server, marks the response completed and the request answered,
and tells the safety path (``signals.response_completed``), all in one
transaction: a second submission, from another tab or a double tap, finds the
response completed and changes nothing.

Both take the response's row lock first (``select_for_update``; on SQLite the
IMMEDIATE transaction serialises writers), so two tabs saving answers at once
both keep theirs.
"""

from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from questionnaires import scoring
from questionnaires.models import (
    QuestionnaireRequest,
    QuestionnaireResponse,
    RequestStatus,
    ResponseStatus,
)
from questionnaires.signals import response_completed


class NotAnswerable(Exception):
    """The request cannot take answers (any more); the message says why, for the patient."""


class Incomplete(Exception):
    """Submitted with required items unanswered; ``missing`` holds their linkIds."""

    def __init__(self, missing: tuple[str, ...]):
        super().__init__("Some questions are not answered yet.")
        self.missing = missing


def refusal(request: QuestionnaireRequest, now: datetime | None = None) -> str:
    """Why ``request`` takes no answers now, in words for the patient; "" when it does."""
    now = now or timezone.now()
    if request.status == RequestStatus.ANSWERED:
        return _("These answers were already sent. Thank you.")
    if request.status == RequestStatus.CANCELLED:
        return _("These questions are no longer needed: the visit they were for was cancelled.")
    if now < request.opens_at:
        return _("These questions are not open yet.")
    if now >= request.closes_at:
        return _("The visit these questions were for is over, so they can no longer be answered.")
    return ""


def answerable_now(patient, now: datetime | None = None) -> list[QuestionnaireRequest]:
    """The patient's requests open now, soonest visit first, in one query; each with its
    ``count`` of questions and how many are ``answered`` so far."""
    found = list(
        QuestionnaireRequest.objects.answerable(now)
        .filter(patient=patient)
        .select_related("instrument", "visit", "response")
        .order_by("visit__start", "pk")
    )
    for request in found:
        request.count = len(scoring.items(request.instrument.questionnaire))
        try:
            request.answered = len(request.response.answers)
        except QuestionnaireResponse.DoesNotExist:
            request.answered = 0
    return found


def _locked(request: QuestionnaireRequest) -> tuple[QuestionnaireRequest, QuestionnaireResponse]:
    request = QuestionnaireRequest.objects.select_for_update().get(pk=request.pk)
    response, _ = QuestionnaireResponse.objects.get_or_create(
        request=request,
        defaults={"patient_id": request.patient_id, "instrument_id": request.instrument_id},
    )
    return request, response


def save_answer(
    request: QuestionnaireRequest, link_id: str, code: str, *, now: datetime | None = None
) -> QuestionnaireResponse:
    """Store one answer (``code``: an answer option of item ``link_id``) on the request's response."""
    item = next(
        (
            item
            for item in scoring.items(request.instrument.questionnaire)
            if item.link_id == link_id
        ),
        None,
    )
    if item is None or item.option(code) is None:
        raise ValueError("That is not one of this question's answers.")
    with transaction.atomic():
        request, response = _locked(request)
        if reason := refusal(request, now):
            raise NotAnswerable(reason)
        response.answers = {**response.answers, link_id: code}
        response.save(update_fields=["answers", "updated_at"])
    return response


def submit(request: QuestionnaireRequest, *, now: datetime | None = None) -> QuestionnaireResponse:
    """Score the request's answers and complete it, once; raises ``NotAnswerable`` or ``Incomplete``."""
    now = now or timezone.now()
    with transaction.atomic():
        request, response = _locked(request)
        if reason := refusal(request, now):
            raise NotAnswerable(reason)
        instrument = request.instrument
        score = scoring.score(instrument.questionnaire, instrument.scoring, response.answers)
        if not score.complete:
            raise Incomplete(score.missing)
        response.status = ResponseStatus.COMPLETED
        response.total, response.band, response.completed_at = score.total, score.band, now
        response.save(update_fields=["status", "total", "band", "completed_at", "updated_at"])
        request.status = RequestStatus.ANSWERED
        request.save(update_fields=["status", "updated_at"])
        response_completed.send(QuestionnaireResponse, response=response)
    return response
