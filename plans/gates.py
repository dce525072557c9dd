"""Safety rules the scheduling core asks about before a visit is booked, moved or confirmed.

Registered in ``scheduler.booking.booking_checks`` (see PlansConfig.ready), so
they hold whichever way a visit is booked: a confirmed plan, the admin, a move.
``session_recorded`` is asked before a visit is completed
(``scheduler.booking.completion_checks``).
"""

from datetime import datetime, timedelta

from django.utils.translation import gettext as _

from plans.models import (
    WEEK,
    CarePlan,
    PlanStatus,
    RemsEnrollment,
    RemsSetting,
    Screening,
    SessionRecord,
    is_spravato,
    route_dose_problems,
    rule_day,
)
from scheduler.models import BLOCKING_STATUSES, Visit, VisitKind, VisitType


def screening_cleared(visit: Visit) -> list[str]:
    return screening_cleared.for_times(visit, visit.start, visit.end)(visit)


def _screening_for_times(visit: Visit, start: datetime, end: datetime):
    """The screening gate for ``visit`` at any time: whether it is cleared does not depend on when."""
    if not visit.visit_type.is_dosing or Screening.is_cleared_for(visit.patient):
        return lambda moved: []
    problem = _(
        "%(patient)s's screening has not been cleared by a prescriber; "
        "dosing visits cannot be booked or confirmed until it is."
    ) % {"patient": visit.patient}
    return lambda moved: [problem]


screening_cleared.for_times = _screening_for_times


def _protocol_for(visit: Visit):
    planned = getattr(visit, "planned", None) if visit.pk else None
    if planned is not None:
        return planned.care_plan.protocol
    plan = (
        CarePlan.objects.filter(patient=visit.patient, status=PlanStatus.ACTIVE)
        .select_related("protocol")
        .order_by("-confirmed_at")
        .first()
    )
    return plan.protocol if plan else None


def _doses_near(visit: Visit, start: datetime, end: datetime, reach: timedelta) -> list[Visit]:
    """The patient's other doses that could bear on ``visit`` placed anywhere from start to end."""
    return list(
        Visit.objects.filter(
            patient=visit.patient,
            visit_type__kind=VisitKind.DOSING,
            status__in=BLOCKING_STATUSES,
            start__gt=start - reach,
            start__lt=end + reach,
        )
        .exclude(pk=visit.pk)
        .select_related("visit_type")
        .order_by("start")
    )


def dose_spacing(visit: Visit) -> list[str]:
    """Minimum spacing and weekly maximum of doses hold for every dose, also after manual moves.

    The protocol of the visit's care plan (or of the patient's latest active
    plan) decides; without one, the visit types' own rules do (docs/rules.md).
    """
    return dose_spacing.for_times(visit, visit.start, visit.start)(visit)


def _dose_spacing_for_times(visit: Visit, start: datetime, end: datetime):
    """Dose spacing for ``visit`` moved to any time from start to end, with one read of the doses."""
    if not visit.visit_type.is_dosing:
        return lambda moved: []
    protocol = _protocol_for(visit)
    if protocol is not None:
        reach = protocol.dose_reach
    else:
        # Another type's spacing can reach further than this one's: look as far as the longest.
        dosing_types = VisitType.objects.filter(
            clinic_id=visit.visit_type.clinic_id, kind=VisitKind.DOSING
        )
        reach = max(
            [
                WEEK,
                *(
                    timedelta(hours=t.dose_rule.min_hours)
                    for t in [visit.visit_type, *dosing_types]
                ),
            ]
        )
    doses = _doses_near(visit, start, end, reach)

    def judge(moved: Visit) -> list[str]:
        near = [d for d in doses if moved.start - reach < d.start < moved.start + reach]
        if protocol is not None:
            return protocol.dose_problems([d.start for d in near], moved.start)
        return route_dose_problems(
            moved.visit_type, moved.start, [(d.start, d.visit_type) for d in near]
        )

    return judge


dose_spacing.for_times = _dose_spacing_for_times


def rems_certified(visit: Visit) -> list[str]:
    """A Spravato dose needs an enrolled patient and a certified setting (the REMS)."""
    return rems_certified.for_times(visit, visit.start, visit.end)(visit)


def _rems_for_times(visit: Visit, start: datetime, end: datetime):
    """The REMS gate at any time: one read of the enrolment and the setting, then dates only."""
    if not is_spravato(visit.visit_type):
        return lambda moved: []
    clinic = visit.clinic
    enrollment = RemsEnrollment.objects.filter(patient=visit.patient).first()
    setting = RemsSetting.objects.filter(clinic=clinic).first()

    def judge(moved: Visit) -> list[str]:
        day = moved.start.astimezone(clinic.tz).date()
        problems = []
        if enrollment is None:
            problems.append(
                _(
                    "%(patient)s is not enrolled in the Spravato REMS; record the "
                    "enrollment before booking a Spravato dose."
                )
                % {"patient": visit.patient}
            )
        elif enrollment.enrolled_on > day:
            problems.append(
                _(
                    "%(patient)s is enrolled in the Spravato REMS from %(day)s; no Spravato "
                    "dose before then."
                )
                % {"patient": visit.patient, "day": rule_day(enrollment.enrolled_on)}
            )
        if setting is None:
            problems.append(
                _(
                    "%(clinic)s has no REMS-certified healthcare setting on record; Spravato "
                    "doses can be booked only in a certified setting."
                )
                % {"clinic": clinic}
            )
        elif problem := setting.problem_on(day):
            problems.append(problem)
        return problems

    return judge


rems_certified.for_times = _rems_for_times


def session_recorded(visit: Visit) -> list[str]:
    """A dosing visit is completed only with its session record (``completion_checks``)."""
    if not visit.visit_type.is_dosing:
        return []
    record = SessionRecord.objects.filter(visit=visit).first() or SessionRecord(visit=visit)
    if missing := record.missing():
        return [
            f"Record the session before completing this {visit.visit_type}; still missing: "
            + ", ".join(missing)
            + "."
        ]
    return []
