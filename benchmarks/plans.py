"""Plan generation for each demo protocol against the full schedule."""

from datetime import timedelta

from benchmarks.dataset import FIRST_DAY, WEEKS, Dataset
from benchmarks.measure import Figure, Report, latency, queries, timed
from plans.generator import generate
from plans.models import Protocol
from scheduler.models import Patient

TARGET_MS = 50
# Visits are loaded by the blocks of days a search looks at (scheduler.availability):
# a full diary can push a plan into a block or two more than an empty one.
SPILL_QUERIES = 3


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
    # After the data's last day the same clinic has an empty diary: the
    # queries must be the same there as in the busiest stretch.
    empty_start = FIRST_DAY + timedelta(weeks=WEEKS + 4)
    for protocol in Protocol.objects.filter(clinic=dataset.clinic).order_by("slug"):

        def plan(start=busy_start, protocol=protocol):
            return generate(patient, protocol, start, now=dataset.now)

        samples = timed(plan, runs)
        busy_queries = queries(plan)
        empty_queries = queries(lambda protocol=protocol: generate(patient, protocol, empty_start))
        visits = len(plan().visits)
        p95 = latency(samples)["p95 ms"]
        report.add(
            Figure(
                "Plan generation (new patient, full schedule)",
                protocol.slug,
                {
                    **latency(samples),
                    "visits": visits,
                    "queries": busy_queries,
                    "queries empty diary": empty_queries,
                },
                target=f"p95 < {TARGET_MS} ms, queries <= empty diary + {SPILL_QUERIES}",
                met=p95 < TARGET_MS and busy_queries <= empty_queries + SPILL_QUERIES,
            )
        )
