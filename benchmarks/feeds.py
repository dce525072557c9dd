"""A clinician's feed with ``feed_events`` events: our full answer against icalendar's floor."""

from django.test import Client
from icalendar import Calendar

from benchmarks.dataset import Dataset
from benchmarks.measure import Figure, Report, latency, queries, ratio_figure, timed
from scheduler import tokens
from scheduler.links import feed_url

RATIO_TARGET = 1.3
UNCHANGED_TARGET_MS = 5


def run(dataset: Dataset, report: Report, runs: int) -> None:
    _, raw = tokens.issue(dataset.feed_clinician)
    path = feed_url(raw).split("://", 1)[1].split("/", 1)[1]
    client = Client()

    def full():
        response = client.get(f"/{path}", secure=True)
        assert response.status_code == 200, response.status_code
        return response

    first = full()
    body, etag = first.content, first["ETag"]
    calendar = Calendar.from_ical(body)
    events = len(calendar.walk("VEVENT"))
    ours = timed(full, runs)
    # The floor: icalendar serialising the very same events, nothing else
    # (no query, no HTTP, no building of components).
    floor = timed(calendar.to_ical, runs)
    section = f"Clinician feed ({events:,} events, {len(body) / 1024:,.0f} KiB)"
    report.add(
        Figure(section, "full render through Django", {**latency(ours), "queries": queries(full)})
    )
    report.add(Figure(section, "floor: icalendar to_ical()", latency(floor)))
    report.add(
        ratio_figure(
            section,
            latency(ours)["median ms"],
            latency(floor)["median ms"],
            RATIO_TARGET,
            "ratio to the floor (medians)",
        )
    )

    def unchanged():
        response = client.get(f"/{path}", secure=True, HTTP_IF_NONE_MATCH=etag)
        assert response.status_code == 304, response.status_code

    samples = timed(unchanged, runs * 5)
    report.add(
        Figure(
            section,
            "unchanged feed (304)",
            {**latency(samples), "queries": queries(unchanged)},
            target=f"< {UNCHANGED_TARGET_MS} ms",
            met=latency(samples)["p95 ms"] < UNCHANGED_TARGET_MS,
        )
    )
