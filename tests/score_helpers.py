"""Completed questionnaire responses for tests, scored by the instrument's own data."""

from datetime import datetime, timedelta

from questionnaires.demo import answers_for
from questionnaires.models import (
    Instrument,
    QuestionnaireRequest,
    QuestionnaireResponse,
    RequestStatus,
    ResponseStatus,
)
from questionnaires.scoring import score


def answers_totalling(instrument: Instrument, total: int, **fixed: int) -> dict[str, str]:
    """Answers (linkId -> option code) to ``instrument`` that add up to ``total``.

    ``fixed`` gives some items' points by linkId with dashes as underscores
    ("i44260_8": 1 is PHQ-9 item 9 at "several days"); the rest as the demo spreads them.
    """
    fixed = {key.lstrip("i").replace("_", "-"): points for key, points in fixed.items()}
    return answers_for(instrument, total, fixed)


def answered(
    patient, code: str, total: int, when: datetime, visit=None, **fixed: int
) -> QuestionnaireResponse:
    """A request of ``code``'s newest version answered at ``when`` with ``total``."""
    instrument = Instrument.objects.filter(code=code).order_by("-created_at", "-pk").first()
    request = QuestionnaireRequest.objects.create(
        patient=patient,
        visit=visit,
        instrument=instrument,
        opens_at=when - timedelta(days=2),
        closes_at=when + timedelta(hours=2),
        status=RequestStatus.ANSWERED,
    )
    answers = answers_totalling(instrument, total, **fixed)
    result = score(instrument.questionnaire, instrument.scoring, answers)
    return QuestionnaireResponse.objects.create(
        request=request,
        patient=patient,
        instrument=instrument,
        answers=answers,
        status=ResponseStatus.COMPLETED,
        total=result.total,
        band=result.band,
        completed_at=when,
    )
