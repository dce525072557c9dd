"""Timing, query counting and the report: each figure printed beside its target."""

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from django.db import connection
from django.test.utils import CaptureQueriesContext


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p95 of 20 runs is the 19th fastest)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def timed(
    run: Callable[[], object],
    times: int,
    warm_up: int = 1,
    before: Callable[[], object] | None = None,
) -> list[float]:
    """Milliseconds for each of ``times`` calls, after ``warm_up`` untimed ones;
    ``before`` runs, untimed, before each timed call."""
    for _ in range(warm_up):
        run()
    samples = []
    for _ in range(times):
        if before is not None:
            before()
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def queries(run: Callable[[], object]) -> int:
    with CaptureQueriesContext(connection) as captured:
        run()
    return len(captured.captured_queries)


@dataclass
class Figure:
    section: str
    name: str
    values: dict[str, float | int | str]
    target: str = ""
    met: bool | None = None  # None: no target for this figure
    notes: str = ""

    def line(self) -> str:
        shown = "  ".join(f"{key} {_fmt(value)}" for key, value in self.values.items())
        verdict = {True: "met", False: "MISSED", None: ""}[self.met]
        target = f"  [target: {self.target}: {verdict}]" if self.target else ""
        return f"  {self.name:<38} {shown}{target}"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def latency(samples: list[float]) -> dict[str, float]:
    return {
        "median ms": statistics.median(samples),
        "p95 ms": percentile(samples, 0.95),
        "runs": len(samples),
    }


def ratio_figure(section: str, ours: float, floor: float, target: float, name: str) -> Figure:
    """How many times the floor ours took, against ``target`` (at most that many times)."""
    ratio = ours / floor
    return Figure(
        section, name, {"ratio": round(ratio, 2)}, target=f"<= {target}x", met=ratio <= target
    )


@dataclass
class Report:
    meta: dict = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        if not self.figures[:-1] or self.figures[-2].section != figure.section:
            print(f"\n{figure.section}", flush=True)
        print(figure.line(), flush=True)
        if figure.notes:
            print(f"  {'':<38} ({figure.notes})", flush=True)
        return figure

    def as_dict(self) -> dict:
        return {"meta": self.meta, "figures": [asdict(f) for f in self.figures]}

    @property
    def missed(self) -> list[Figure]:
        return [f for f in self.figures if f.met is False]
