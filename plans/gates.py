"""Safety rules the scheduling core asks about before a visit is booked, moved or confirmed.

Registered in ``scheduler.booking.booking_checks`` (see PlansConfig.ready), so
they hold whichever way a visit is booked: a confirmed plan, the admin, a move.
"""

from plans.models import CarePlan, PlanStatus, Screening
from scheduler.models import BLOCKING_STATUSES, Visit


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


def dose_spacing(visit: Visit) -> list[str]:
    """Minimum spacing and weekly maximum of doses hold, also after manual moves."""
    if not visit.visit_type.is_dosing:
        return []
    protocol = _protocol_for(visit)
    if protocol is None:
        return []
    reach = protocol.dose_reach
    other_doses = list(
        Visit.objects.filter(
            patient=visit.patient,
            visit_type__kind=visit.visit_type.kind,
            status__in=BLOCKING_STATUSES,
            start__gt=visit.start - reach,
            start__lt=visit.start + reach,
        )
        .exclude(pk=visit.pk)
        .values_list("start", flat=True)
    )
    return protocol.dose_problems(other_doses, visit.start)
