"""Safety rules the scheduling core asks about before a visit is booked, moved or confirmed.

Registered in ``scheduler.booking.booking_checks`` (see PlansConfig.ready), so
they hold whichever way a visit is booked: a confirmed plan, the admin, a move.
"""

from datetime import timedelta

from plans.models import WEEK, CarePlan, PlanStatus, Screening, route_dose_problems
from scheduler.models import BLOCKING_STATUSES, Visit, VisitKind, VisitType


def screening_cleared(visit: Visit) -> list[str]:
    if not visit.visit_type.is_dosing or Screening.is_cleared_for(visit.patient):
        return []
    return [
        f"{visit.patient}'s screening has not been cleared by a prescriber; "
        "dosing visits cannot be booked or confirmed until it is."
    ]


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


def _other_doses(visit: Visit, reach: timedelta):
    return (
        Visit.objects.filter(
            patient=visit.patient,
            visit_type__kind=VisitKind.DOSING,
            status__in=BLOCKING_STATUSES,
            start__gt=visit.start - reach,
            start__lt=visit.start + reach,
        )
        .exclude(pk=visit.pk)
        .order_by("start")
    )


def dose_spacing(visit: Visit) -> list[str]:
    """Minimum spacing and weekly maximum of doses hold for every dose, also after manual moves.

    The protocol of the visit's care plan (or of the patient's latest active
    plan) decides; without one, the visit types' own rules do (docs/rules.md).
    """
    if not visit.visit_type.is_dosing:
        return []
    protocol = _protocol_for(visit)
    if protocol is not None:
        other_doses = _other_doses(visit, protocol.dose_reach).values_list("start", flat=True)
        return protocol.dose_problems(list(other_doses), visit.start)
    # Another type's spacing can reach further than this one's: look as far as the longest.
    dosing_types = VisitType.objects.filter(
        clinic_id=visit.visit_type.clinic_id, kind=VisitKind.DOSING
    )
    reach = max(
        [WEEK, *(timedelta(hours=t.dose_rule.min_hours) for t in [visit.visit_type, *dosing_types])]
    )
    others = _other_doses(visit, reach).select_related("visit_type")
    return route_dose_problems(
        visit.visit_type, visit.start, [(v.start, v.visit_type) for v in others]
    )
