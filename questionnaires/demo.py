"""The questionnaires layer of the demo clinic: a course of scores, and answers that need review.

- Who hears of answers that need review (``safety_demo``): the prescribers' and
  therapists' fictional mobiles, the first prescriber as the clinical lead.
- The first screened patient had an IV induction series over the last weeks:
  six infusions written as they stand (completed, with their teams), and
  PHQ-9 and GAD-7 answered before the screening and before the first, third
  and fifth infusions, scores falling from moderately severe to mild (a
  response, not yet remission: the chart has something to say).
- The second answered a PHQ-9 before their next visit yesterday evening with
  "Several days" for item 9: its alert waits, unacknowledged, at the top of
  the desk, and its texts and emails to the care team in the outbox.

What is past is written as it stands, through ``answering`` like a patient's
answers, so the scores are the server's. A patient who has answered anything
is left as they are, so reruns add nothing.
"""

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from plans.demo import done_in
from questionnaires import answering, safety_demo, scoring
from questionnaires.models import (
    Instrument,
    QuestionnaireRequest,
    QuestionnaireResponse,
)
from scheduler.availability import Availability
from scheduler.models import Clinic, Patient, Visit, VisitKind, VisitStatus, VisitType

logger = logging.getLogger(__name__)

COURSE_PATIENT, ALERT_PATIENT = 0, 1
# PHQ-9 and GAD-7 totals at screening and before infusions 1, 3 and 5.
COURSE_SCORES = {"phq-9": [17, 16, 11, 8], "gad-7": [14, 13, 9, 7]}
INFUSIONS = 6
# The alert patient's PHQ-9: moderate, with item 9 at "Several days".
ALERT_TOTAL = 12
ITEM_9 = "44260-8"


def answers_for(
    instrument: Instrument, total: int, fixed: dict[str, int] | None = None
) -> dict[str, str]:
    """Answers (linkId -> option code) to ``instrument`` adding up to ``total``: the
    items in ``fixed`` with their points (by linkId), the rest spread evenly."""
    fixed = fixed or {}
    items = {item.link_id: item for item in scoring.items(instrument.questionnaire)}
    scored = instrument.scoring["total"]["items"]
    points = {link_id: fixed.get(link_id, 0) for link_id in scored}
    top = {link_id: max(o.points for o in items[link_id].options) for link_id in scored}
    left, free = total - sum(points.values()), [i for i in scored if i not in fixed]
    while left > 0 and any(points[i] < top[i] for i in free):
        for link_id in free:
            if left and points[link_id] < top[link_id]:
                points[link_id] += 1
                left -= 1
    if left:
        raise ValueError(f"{instrument} cannot add up to {total}.")
    return {
        link_id: next(o.code for o in items[link_id].options if o.points == value)
        for link_id, value in points.items()
    }


def answer(patient: Patient, visit: Visit, code: str, total: int, at: datetime, item_9: int = 0):
    """``patient`` answers ``code`` before ``visit`` at ``at``, adding up to ``total``."""
    instrument = Instrument.objects.current().get(code=code)
    request, _ = QuestionnaireRequest.objects.get_or_create(
        visit=visit,
        instrument=instrument,
        defaults={
            "patient": patient,
            "opens_at": min(at, visit.start - timedelta(days=2)),
            "closes_at": visit.end,
        },
    )
    if request.opens_at > at:
        # Asked by the rules when the demo booked the visit, moments ago: opened earlier here.
        request.opens_at = at
        request.save(update_fields=["opens_at"])
    for link_id, option in answers_for(instrument, total, {ITEM_9: item_9}).items():
        answering.save_answer(request, link_id, option, now=at)
    return answering.submit(request, now=at)


def _past_infusions(patient: Patient, screening: Visit) -> list[Visit]:
    """Six completed infusions from three days after the screening, two or three a week."""
    clinic = patient.clinic
    visit_type = VisitType.objects.get(clinic=clinic, slug="iv-infusion")
    today = timezone.localdate(timezone=clinic.tz)
    day = timezone.localdate(screening.end, clinic.tz) + timedelta(days=3)
    availability = Availability.for_days(clinic, day, today - timedelta(days=1), patients=[patient])
    visits = []
    while day < today and len(visits) < INFUSIONS:
        slots = availability.free_slots(visit_type, day, day, patient=patient, limit=1)
        if slots:
            slot = slots[0]
            visits.append(done_in(slot, patient, visit_type, ride_home_arranged=True))
            availability.reserve(
                visit_type, slot.clinician, slot.room, patient, slot.start, slot.end, slot.staff
            )
            day += timedelta(days=2)  # two days apart keeps the 40 h and 3-a-week rules
        else:
            day += timedelta(days=1)
    return visits


def seed_course(patient: Patient) -> list[QuestionnaireResponse]:
    screening = (
        Visit.objects.filter(
            patient=patient, visit_type__kind=VisitKind.SCREENING, status=VisitStatus.COMPLETED
        )
        .order_by("start")
        .first()
    )
    if screening is None:
        logger.warning("%s was not screened; no course of scores.", patient)
        return []
    infusions = list(
        Visit.objects.filter(
            patient=patient, visit_type__kind=VisitKind.DOSING, status=VisitStatus.COMPLETED
        ).order_by("start")
    ) or _past_infusions(patient, screening)
    asked = [screening, *infusions[0:5:2]]
    responses = []
    for code, totals in COURSE_SCORES.items():
        for visit, total in zip(asked, totals, strict=False):
            # The evening before each visit, as the reminder asks.
            responses.append(answer(patient, visit, code, total, visit.start - timedelta(hours=15)))
    return responses


def seed_alert(patient: Patient) -> QuestionnaireResponse | None:
    now = timezone.now()
    visit = (
        Visit.objects.filter(patient=patient, start__gt=now).blocking().order_by("start").first()
    )
    if visit is None:
        logger.warning("%s has no visit ahead; no alert in the demo.", patient)
        return None
    yesterday_evening = min(now - timedelta(hours=14), visit.start - timedelta(hours=1))
    return answer(patient, visit, "phq-9", ALERT_TOTAL, yesterday_evening, item_9=1)


def seed(clinic: Clinic, patients: list[Patient]) -> list[QuestionnaireResponse]:
    safety_demo.seed(clinic)
    responses = []
    course, alerted = patients[COURSE_PATIENT], patients[ALERT_PATIENT]
    if not QuestionnaireResponse.objects.filter(patient=course).exists():
        responses += seed_course(course)
    if not QuestionnaireResponse.objects.filter(patient=alerted).exists():
        responses += [response for response in [seed_alert(alerted)] if response]
    return responses
