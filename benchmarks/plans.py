"""Plan generation for each demo protocol against the full schedule.

In a network the plans are for a new patient at each clinic in turn, each
against their own clinic's schedule.
"""

import itertools
from datetime import timedelta

from benchmarks.dataset import FIRST_DAY, WEEKS, Dataset
from benchmarks.measure import Figure, Report, latency, queries, timed
from plans.generator import generate
from plans.models import Protocol
from scheduler.diary import forget_diaries
from scheduler.models import Patient, Visit, VisitStatus

TARGET_MS = 50


def run(dataset: Dataset, report: Report, runs: int) -> None:
    clinics = dataset.clinics or [dataset.clinic]
    # A new patient with no visits yet: the usual case at the front desk.
    patients = [
        Patient.objects.create(
            clinic=clinic,
            first_name="Bench",
            last_name="Newcomer",
            date_of_birth=FIRST_DAY.replace(year=1980),
            email=f"bench.newcomer.{clinic.slug}@example.com",
        )
        for clinic in clinics
    ]
    busy_start = dataset.now.date() + timedelta(days=7)
    churned = [
        Visit.objects.filter(
            patient__clinic=clinic,
            start__date__gt=busy_start,
            status__in=(VisitStatus.BOOKED, VisitStatus.CONFIRMED),
        )
        .order_by("start")
        .first()
        for clinic in clinics
    ]

    def change_a_visit(visit: Visit) -> None:
        visit.status = (
            VisitStatus.CONFIRMED if visit.status == VisitStatus.BOOKED else VisitStatus.BOOKED
        )
        Visit.objects.filter(pk=visit.pk).update(status=visit.status)

    # After the data's last day the same clinic has an empty diary: the
    # queries must be the same there as in the busiest stretch.
    empty_start = FIRST_DAY + timedelta(weeks=WEEKS + 4)
    patient = patients[0]
    for protocol in Protocol.objects.filter(clinic=dataset.clinic).order_by("slug"):
        # The same protocol at each clinic, in turn, with a visit there to change.
        order = [
            (someone, Protocol.objects.get(clinic=someone.clinic, slug=protocol.slug), visit)
            for someone, visit in zip(patients, churned, strict=True)
        ]
        turn = itertools.count()
        upcoming = [order[0]]

        def plan(start=busy_start, protocol=protocol):
            return generate(patient, protocol, start, now=dataset.now)

        def plan_in_turn(start=busy_start, order=order, turn=turn, upcoming=upcoming):
            someone, theirs, _ = upcoming[0]
            upcoming[0] = order[(next(turn) + 1) % len(order)]
            return generate(someone, theirs, start, now=dataset.now)

        def change_the_next(upcoming=upcoming):
            change_a_visit(upcoming[0][2])

        # Warmed up at every clinic: each clinic's diary is kept (scheduler/diary.py).
        samples = timed(plan_in_turn, runs, warm_up=len(order))
        # Meanwhile the desk confirms and books: before each of these plans one
        # visit in the plan's weeks changes, and the diary a process keeps
        # between plans reads it again.
        changed = timed(plan_in_turn, runs, before=change_the_next)
        # What a kept diary asks once it has read every change (in a network, the
        # other clinics' changes too: the log is the installation's).
        plan()
        kept_queries = queries(plan)
        # The first plan of a process reads the diaries it needs by blocks of days.
        forget_diaries()
        first_queries = queries(plan)

        def empty(protocol=protocol):
            return generate(patient, protocol, empty_start)

        forget_diaries()
        first_empty_queries = queries(empty)
        kept_empty_queries = queries(empty)
        visits = len(plan().visits)
        p95 = max(latency(samples)["p95 ms"], latency(changed)["p95 ms"])
        where = f", {len(clinics)} clinics in turn" if len(clinics) > 1 else ""
        report.add(
            Figure(
                f"Plan generation (new patient, full schedule{where})",
                protocol.slug,
                {
                    **latency(samples),
                    "after a change: median ms": latency(changed)["median ms"],
                    "after a change: p95 ms": latency(changed)["p95 ms"],
                    "visits": visits,
                    "queries": kept_queries,
                    "queries empty diary": kept_empty_queries,
                    "first plan of a process: queries": first_queries,
                    "the same, empty diary": first_empty_queries,
                },
                target=f"p95 < {TARGET_MS} ms, queries <= empty diary's",
                met=p95 < TARGET_MS and kept_queries <= kept_empty_queries,
            )
        )
