"""Plan generation for each demo protocol against the full schedule."""

from datetime import timedelta

from benchmarks.dataset import FIRST_DAY, WEEKS, Dataset
from benchmarks.measure import Figure, Report, latency, queries, timed
from plans.generator import generate
from plans.models import Protocol
from scheduler.diary import forget_diaries
from scheduler.models import Patient, Visit, VisitStatus

TARGET_MS = 50


def run(dataset: Dataset, report: Report, runs: int) -> None:
    # A new patient with no visits yet: the usual case at the front desk.
    patient = Patient.objects.create(
        clinic=dataset.clinic,
        first_name="Bench",
        last_name="Newcomer",
        date_of_birth=FIRST_DAY.replace(year=1980),
        email="bench.newcomer@example.com",
    )
    busy_start = dataset.now.date() + timedelta(days=7)
    churned = (
        Visit.objects.filter(
            patient__clinic=dataset.clinic,
            start__date__gt=busy_start,
            status__in=(VisitStatus.BOOKED, VisitStatus.CONFIRMED),
        )
        .order_by("start")
        .first()
    )

    def change_a_visit() -> None:
        churned.status = (
            VisitStatus.CONFIRMED if churned.status == VisitStatus.BOOKED else VisitStatus.BOOKED
        )
        Visit.objects.filter(pk=churned.pk).update(status=churned.status)

    # After the data's last day the same clinic has an empty diary: the
    # queries must be the same there as in the busiest stretch.
    empty_start = FIRST_DAY + timedelta(weeks=WEEKS + 4)
    for protocol in Protocol.objects.filter(clinic=dataset.clinic).order_by("slug"):

        def plan(start=busy_start, protocol=protocol):
            return generate(patient, protocol, start, now=dataset.now)

        samples = timed(plan, runs)
        # Meanwhile the desk confirms and books: before each of these plans one
        # visit in the plan's weeks changes, and the diary a process keeps
        # between plans (scheduler/diary.py) reads it again.
        changed = timed(plan, runs, before=change_a_visit)
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
        report.add(
            Figure(
                "Plan generation (new patient, full schedule)",
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
