"""Saving a proposed plan, confirming it (all visits or none), and moving one of its visits."""

from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from plans.generator import Proposal
from plans.models import CarePlan, PlannedVisit, PlanStatus, rule_time
from scheduler import booking
from scheduler.booking import BookingError
from scheduler.models import Room, Visit, VisitStatus


class PlanNotConfirmed(BookingError):
    """Confirming failed; ``problems`` lists each visit that could not be booked, and nothing was."""


def save_proposal(proposal: Proposal) -> CarePlan:
    """Store a proposal as a care plan of proposed visits (which hold no slot yet).

    Visits the plan counts as already done stay as they are; a new visit timed
    from one follows it through that visit's own place in a plan, if it has one.
    Each new visit keeps where the proposal put it and the window it was
    allowed in (the care-plan timeline draws both).
    """
    already_planned = {
        planned.visit_id: planned
        for planned in PlannedVisit.objects.filter(
            visit__in=[proposed.existing for proposed in proposal.satisfied]
        )
    }
    saved: dict[int, PlannedVisit] = {}

    def followed(proposed) -> PlannedVisit | None:
        anchor = proposed.follows
        if anchor is None:
            return None
        if anchor.existing is not None:
            return already_planned.get(anchor.existing.pk)
        return saved.get(id(anchor))

    with transaction.atomic():
        plan = CarePlan.objects.create(
            patient=proposal.patient,
            protocol=proposal.protocol,
            start_date=proposal.start_date,
            preferences=proposal.preferences.as_dict(),
            warnings=proposal.warnings,
            total_cost=proposal.total_cost,
            currency=proposal.currency,
        )
        for proposed in sorted(proposal.visits, key=lambda v: v.start):
            visit = booking.save_with_team(
                Visit(
                    patient=proposal.patient,
                    visit_type=proposed.visit_type,
                    clinician=proposed.clinician,
                    room=proposed.room,
                    start=proposed.start,
                    end=proposed.end,
                    status=VisitStatus.PROPOSED,
                ),
                proposed.staff,
            )
            window = proposed.window
            saved[id(proposed)] = PlannedVisit.objects.create(
                care_plan=plan,
                visit=visit,
                step=proposed.step,
                occurrence=proposed.occurrence,
                follows=followed(proposed),
                proposed_start=proposed.start,
                window_earliest=window.earliest if window else None,
                window_latest=window.latest if window else None,
            )
    return plan


def confirm(plan: CarePlan) -> CarePlan:
    """Book every visit of a proposed plan atomically, or none, naming every conflict."""
    problems = []
    with transaction.atomic():
        plan = (
            CarePlan.objects.select_for_update(of=("self",))
            .select_related("patient", "protocol")
            .get(pk=plan.pk)
        )
        if plan.status != PlanStatus.PROPOSED:
            raise PlanNotConfirmed(
                f"This plan is {plan.get_status_display().lower()}, not a proposal."
            )
        if refusal := plan.protocol.refusal_for(plan.patient):
            raise PlanNotConfirmed([refusal])
        planned = list(
            plan.planned_visits.select_related(
                "visit__patient", "visit__visit_type__clinic", "visit__clinician", "visit__room"
            ).order_by("visit__start")
        )
        for item in planned:
            try:
                booking.book_proposed(item.visit)
            except BookingError as error:
                local = timezone.localtime(item.visit.start, plan.patient.clinic.tz)
                problems += [
                    f"{item.step} on {local:%a %Y-%m-%d %H:%M}: {p}" for p in error.problems
                ]
        if problems:
            transaction.set_rollback(True)
        else:
            plan.status = PlanStatus.ACTIVE
            plan.confirmed_at = timezone.now()
            plan.save(update_fields=["status", "confirmed_at"])
    if problems:
        raise PlanNotConfirmed(problems)
    return plan


def move_planned_visit(
    visit: Visit, start: datetime, *, room: Room | bool | None = False
) -> list[Visit]:
    """Move a visit of a plan; visits timed from it move along when their window would break.

    ``room`` as in ``booking.move`` (False keeps the visit's room). Returns every
    visit moved. Raises BookingError with the reason when the move breaks the
    visit's own window or a follower cannot move with it; then nothing moves.
    """
    planned = PlannedVisit.objects.select_related("step", "follows__visit", "follows__step").get(
        visit=visit
    )
    problems = window_rules(planned, visit.clinic.tz)(start)
    if problems:
        raise BookingError(problems)
    along = followers_moving(planned, start)
    moved = []
    with transaction.atomic():
        moved.append(booking.move(visit, start=start, room=room))
        for follower, follower_start in along:
            try:
                moved.append(booking.move(follower.visit, start=follower_start))
            except BookingError as error:
                raise BookingError(
                    [
                        f"{follower.step} would have to move with it, but: {p}"
                        for p in error.problems
                    ]
                ) from error
    return moved


def followers_moving(
    planned: PlannedVisit, start: datetime, followers: list[PlannedVisit] | None = None
) -> list[tuple[PlannedVisit, datetime]]:
    """The open visits timed from ``planned`` whose window a move to ``start`` would break,
    each with where it would go: as far along as the visit moves.

    ``followers``: ``planned.followers`` with their visits and steps, read once
    for a page that asks about many starts (read here otherwise).
    """
    if followers is None:
        followers = list(planned.followers.select_related("visit__visit_type", "step"))
    delta = start - planned.visit.start
    new_end = planned.visit.end + delta
    along = []
    for follower in followers:
        if not follower.visit.is_open:
            continue
        gap = follower.visit.start - new_end
        step = follower.step
        if gap >= step.min_gap and (step.max_gap is None or gap <= step.max_gap):
            continue
        along.append((follower, follower.visit.start + delta))
    return along


def window_rules(planned: PlannedVisit, tz) -> Callable[[datetime], list[str]]:
    """What the visit's step says against a new start: a judge of any number of starts.

    The first visit of a series is timed from its anchor (gap); later ones from
    the visit before them in the series, and they bound the one after (spacing).
    ``planned`` should come with its step and what it follows (else they are
    read); the series is read once, so judging every time a page might offer
    costs one query.
    """
    step = planned.step
    anchor = (
        planned.follows
        if planned.follows and (planned.occurrence == 1 or step.recurrence)
        else None
    )
    neighbours = []
    if not step.recurrence:
        series = PlannedVisit.objects.filter(
            care_plan_id=planned.care_plan_id, step=step, follows_id=planned.follows_id
        ).select_related("visit")
        by_occurrence = {s.occurrence: s.visit for s in series}
        neighbours = [
            (other, which)
            for other, which in (
                (by_occurrence.get(planned.occurrence - 1), "previous"),
                (by_occurrence.get(planned.occurrence + 1), "next"),
            )
            if other is not None
        ]
    low, high = timedelta(hours=step.min_spacing_hours), step.max_spacing_hours

    def problems(start: datetime) -> list[str]:
        found = []
        if anchor is not None:
            gap = start - anchor.visit.end
            if gap < step.min_gap or (
                not step.recurrence and step.max_gap is not None and gap > step.max_gap
            ):
                found.append(
                    _("%(step)s must start %(gap)s after %(anchor)s (which ends %(end)s).")
                    % {
                        "step": step,
                        "gap": step.gap_text,
                        "anchor": anchor.step,
                        "end": rule_time(anchor.visit.end, tz),
                    }
                )
        for other, which in neighbours:
            spacing = start - other.start if which == "previous" else other.start - start
            if spacing < low or (high is not None and spacing > timedelta(hours=high)):
                found.append(
                    (
                        _(
                            "%(step)s visits must be %(spacing)s apart; the previous one is %(start)s."
                        )
                        if which == "previous"
                        else _(
                            "%(step)s visits must be %(spacing)s apart; the next one is %(start)s."
                        )
                    )
                    % {
                        "step": step,
                        "spacing": step.spacing_text,
                        "start": rule_time(other.start, tz),
                    }
                )
        return found

    return problems
