"""One independent statement of every rule a generated plan must satisfy (used by several tests)."""

import itertools
from datetime import timedelta

import holidays

from plans.generator import Proposal
from plans.models import Anchor
from scheduler.availability import Availability
from scheduler.models import BLOCKING_STATUSES, Closure, ClosureKind, Visit


def rule_violations(proposal: Proposal) -> list[str]:
    """Every rule the proposal breaks; empty when the plan is sound.

    New visits must fit; visits the plan counts as already done
    (``proposal.satisfied``) must be the patient's own booked or completed
    visits of the step's type; every step's rules hold over both.
    """
    broken = []
    visits = sorted(proposal.visits, key=lambda v: v.start)
    everything = sorted(proposal.visits + proposal.satisfied, key=lambda v: v.start)
    protocol = proposal.protocol
    clinic = protocol.clinic
    if not everything:
        return ["The plan has no visits."]
    for visit in proposal.satisfied:
        existing = visit.existing
        if (
            existing.patient_id != proposal.patient.pk
            or existing.visit_type_id != visit.step.visit_type_id
            or existing.status not in BLOCKING_STATUSES
            or (existing.start, existing.end) != (visit.start, visit.end)
        ):
            broken.append(f"{visit.step} #{visit.occurrence} counts a visit that does not do.")
    if len({v.existing.pk for v in proposal.satisfied}) != len(proposal.satisfied):
        broken.append("One visit counts for two of the plan's visits.")
    if visits:
        availability = Availability(
            clinic, visits[0].start, visits[-1].end, patients=[proposal.patient]
        )
    for visit in visits:
        for problem in availability.problems(
            visit.visit_type, visit.clinician, visit.room, proposal.patient, visit.start, visit.end
        ):
            broken.append(f"{visit.step} at {visit.start}: {problem}")
    for first, second in itertools.pairwise(visits):
        if second.start < first.end:
            broken.append(f"{first.step} and {second.step} overlap for the patient.")
    broken += _travel_gaps(proposal, visits)
    broken += _on_holidays(proposal, visits)

    steps = list(protocol.steps.order_by("position"))
    for step in steps:
        mine = sorted((v for v in everything if v.step.pk == step.pk), key=lambda v: v.start)
        expected = step.count
        if step.anchor == Anchor.AFTER_EACH:
            expected = step.count * sum(1 for v in everything if v.step.pk == step.after_step_id)
        if not step.recurrence and len(mine) != expected:
            broken.append(f"{step}: {len(mine)} visits, expected {expected}.")
        for visit in mine:
            if visit.follows is not None and (visit.occurrence == 1 or step.recurrence):
                gap = visit.start - visit.follows.end
                if not step.recurrence and gap < step.min_gap:
                    broken.append(
                        f"{step} #{visit.occurrence}: {gap} after its anchor, under the minimum."
                    )
                if not step.recurrence and step.max_gap is not None and gap > step.max_gap:
                    broken.append(
                        f"{step} #{visit.occurrence}: {gap} after its anchor, over the maximum."
                    )
                if step.recurrence and gap < step.min_gap:
                    broken.append(
                        f"{step} #{visit.occurrence}: recurring visit before the minimum gap."
                    )
        series = {}
        for visit in mine:
            series.setdefault(id(visit.follows), []).append(visit)
        for run in series.values():
            for before, after in itertools.pairwise(run):
                spacing = after.start - before.start
                if not step.recurrence and spacing < timedelta(hours=step.min_spacing_hours):
                    broken.append(f"{step}: visits {spacing} apart, under the minimum spacing.")
                if (
                    not step.recurrence
                    and step.max_spacing_hours is not None
                    and spacing > timedelta(hours=step.max_spacing_hours)
                ):
                    broken.append(f"{step}: visits {spacing} apart, over the maximum spacing.")
        if step.max_per_week:
            broken += _weekly(mine, step.max_per_week, str(step))

    # Doses already there may be as close as they were booked; the plan's own keep the rule.
    doses = [v for v in everything if v.visit_type.is_dosing]
    for before, after in itertools.pairwise(doses):
        new = before.existing is None or after.existing is None
        if new and after.start - before.start < timedelta(hours=protocol.min_hours_between_doses):
            broken.append(f"Doses on {before.start} and {after.start} are too close.")
    broken += _weekly(doses, protocol.max_doses_per_week, "doses")
    return broken


def _weekly(visits, limit, what) -> list[str]:
    """Any 7 days holding one of the plan's new visits hold at most ``limit`` of ``visits``."""
    visits = sorted(visits, key=lambda v: v.start)
    for index, first in enumerate(visits):
        in_week = [v for v in visits[index:] if v.start - first.start < timedelta(days=7)]
        if len(in_week) > limit and any(v.existing is None for v in in_week):
            return [f"{len(in_week)} {what} in the 7 days from {first.start}, over {limit}."]
    return []


def _travel_gaps(proposal: Proposal, visits) -> list[str]:
    """No new visit within the clinic's travel gap of the patient's visit in the other modality.

    Against the plan's other new visits and every visit the patient already
    has (those the plan counts among them), either way round.
    """
    gap = proposal.protocol.clinic.travel_gap
    held = [
        (visit.start, visit.end, visit.visit_type.modality, "an existing visit")
        for visit in Visit.objects.blocking()
        .filter(patient=proposal.patient)
        .select_related("visit_type")
    ]
    planned = [(v.start, v.end, v.visit_type.modality, str(v.step)) for v in visits]
    broken = []
    for index, (start, end, modality, what) in enumerate(planned):
        for other_start, other_end, other_modality, other in held + planned[index + 1 :]:
            apart = max(other_start - end, start - other_end)
            if modality != other_modality and apart < gap:
                broken.append(f"{what} at {start} is {apart} from {other}, under the travel gap.")
    return broken


def _on_holidays(proposal: Proposal, visits) -> list[str]:
    """No new visit on a public holiday of the clinic's country and state, unless opened anyway."""
    clinic = proposal.protocol.clinic
    tz = clinic.tz
    days = {
        (visit, moment.astimezone(tz).date())
        for visit in visits
        for moment in (visit.start, visit.end - timedelta(microseconds=1))
    }
    calendar = holidays.country_holidays(
        clinic.country, subdiv=clinic.subdivision or None, years={day.year for _, day in days}
    )
    opened = list(
        Closure.objects.filter(clinic=clinic, kind=ClosureKind.OPEN).values_list("start", "end")
    )
    return [
        f"{visit.step} at {visit.start} is on {calendar[day]}."
        for visit, day in days
        if day in calendar
        and not any(start <= visit.start and visit.end <= end for start, end in opened)
    ]
