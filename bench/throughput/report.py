"""The bench's output: figures beside the ceiling measured in the same run, the issue's targets as PASS/FAIL, JSON."""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

#: (name, what it is) in the order the table shows them.
FIGURES = (
    ("raw_ceiling_eps", "confluent-kafka consume(1000) → orjson → dict → produce (ceiling)"),
    ("faust_idiomatic_eps", "Faust as its docs show: Record, async for, Table, send per event"),
    ("quix_eps", "Quix Streams 3.28.1, stateful count, to_topic"),
    ("loopwise_standard_eps", "count-and-forward the loopwise way (run_loopwise_count_forward)"),
    ("processors_inprocess_eps", "all stages' handle() in process, simulator records, no Kafka"),
    ("loopwise_full_eps", "full worker (streams.cli worker), all agents, simulator records"),
    ("scale_2_workers", "count-and-forward: 2 workers (one group) over 1"),
    ("rss_mb_per_100k_entities", "DetectorBank RSS per 100 k entity×signal series, MB"),
)


@dataclass
class Report:
    """Everything measured in one run; ``figures`` holds medians, ``runs`` every run's value."""

    figures: dict[str, float] = field(default_factory=dict)
    runs: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Route request → its answer readable, by offered load.
    route_latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The same hop through a bare confluent-kafka forwarder (``eos@1000``, ``alo@1000`` …): the broker's floor.
    floor_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add_runs(self, name: str, values: list[float], note: str) -> None:
        """Record every run of ``name``; its figure is their median."""
        self.runs[name] = [round(v, 1) for v in values]
        self.figures[name] = statistics.median(values)
        self.notes[name] = note

    def targets(self) -> list[tuple[str, float | None, float, bool | None]]:
        """(target, measured, threshold, passed) — None where a figure it needs is missing."""
        f = self.figures
        rows: list[tuple[str, float | None, float, bool | None]] = []

        def ratio(label: str, top: str, bottom: str, at_least: float) -> None:
            value = f[top] / f[bottom] if top in f and bottom in f and f[bottom] else None
            rows.append((label, value, at_least, None if value is None else value >= at_least))

        ratio("loopwise_standard / quix ≥ 1.5", "loopwise_standard_eps", "quix_eps", 1.5)
        ratio("loopwise_standard / faust_idiomatic ≥ 10", "loopwise_standard_eps", "faust_idiomatic_eps", 10.0)
        ratio("loopwise_full / processors_inprocess ≥ 0.7", "loopwise_full_eps", "processors_inprocess_eps", 0.7)
        for load, limit in (("1000", 20.0), ("5000", 50.0)):
            p99 = self.latency_ms.get(load, {}).get("p99")
            rows.append((f"p99 at {int(load) // 1000} k/s ≤ {limit:g} ms", p99, limit,
                         None if p99 is None else p99 <= limit))
        p99 = self.route_latency_ms.get("1000", {}).get("p99")
        rows.append(("route answer p99 at 1 k/s < 20 ms (issue 5)", p99, 20.0, None if p99 is None else p99 < 20.0))
        scale = f.get("scale_2_workers")
        rows.append(("scale_2_workers ≥ 1.6", scale, 1.6, None if scale is None else scale >= 1.6))
        return rows

    def to_json(self) -> dict[str, Any]:
        """The results file's content."""
        return {
            **{name: round(value, 3) for name, value in self.figures.items()},
            "latency_ms": self.latency_ms, "route_latency_ms": self.route_latency_ms, "latency_floor_ms": self.floor_ms,
            "targets": [{"target": t, "measured": None if v is None else round(v, 3), "threshold": th,
                         "pass": ok} for t, v, th, ok in self.targets()],
            "runs": self.runs, "notes": self.notes, "errors": self.errors, "settings": self.settings,
            "seconds": round(self.seconds, 1),
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def print(self, console: Console | None = None) -> None:
        """Both tables on stdout."""
        console = console or Console(width=None if sys.stdout.isatty() else 160)
        figures = Table(title=f"loopwise throughput bench ({self.seconds:.0f} s)")
        for column in ("figure", "median", "runs", "what / how"):
            figures.add_column(column, overflow="fold")
        ceiling = self.figures.get("raw_ceiling_eps")
        for name, what in FIGURES:
            if name in self.errors:
                figures.add_row(name, "[red]error[/red]", "", self.errors[name][:120])
            elif name in self.figures:
                value = self.figures[name]
                share = f" ({value / ceiling:.1%} of ceiling)" if ceiling and name.endswith("_eps") else ""
                runs = ", ".join(f"{v:,.0f}" if v >= 100 else f"{v:.2f}" for v in self.runs.get(name, []))
                shown = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
                figures.add_row(name, shown + share, runs, f"{what}; {self.notes.get(name, '')}")
        for load, cut in sorted(self.latency_ms.items(), key=lambda kv: float(kv[0])):
            figures.add_row(f"latency_ms @ {int(float(load)):,}/s",
                            f"p50 {cut['p50']:.1f} · p95 {cut['p95']:.1f} · p99 {cut['p99']:.1f}", "1",
                            f"request → provisional outcome readable; {cut['requests']:.0f} requests, "
                            f"{cut['missing']:.0f} unanswered, achieved {cut['achieved_eps']:,.0f}/s")
        for load, cut in sorted(self.route_latency_ms.items(), key=lambda kv: float(kv[0])):
            figures.add_row(f"route_latency_ms @ {int(float(load)):,}/s", _cuts(cut), "1",
                            f"route request → its answer readable (stage route, at-least-once); "
                            f"{cut['requests']:.0f} requests, {cut['missing']:.0f} unanswered")
        for key, cut in self.floor_ms.items():
            mode, load = key.split("@")
            figures.add_row(f"latency_floor_ms {mode} @ {int(load):,}/s", _cuts(cut), "1",
                            "the same hop through a bare confluent-kafka forwarder, "
                            + ("one transaction per batch" if mode == "eos" else "flush, then commit offsets")
                            + " (the broker's floor)")
        for name in ("latency", "route_latency", "latency_floor"):
            if name in self.errors:
                figures.add_row(name, "[red]error[/red]", "", self.errors[name][:120])
        console.print(figures)
        targets = Table(title="issue 7 targets")
        for column in ("target", "measured", "verdict"):
            targets.add_column(column)
        for label, measured, _threshold, ok in self.targets():
            verdict = "[yellow]n/a[/yellow]" if ok is None else ("[green]PASS[/green]" if ok else "[red]FAIL[/red]")
            targets.add_row(label, "—" if measured is None else f"{measured:.2f}", verdict)
        console.print(targets)


def _cuts(cut: dict[str, float]) -> str:
    return f"p50 {cut['p50']:.1f} · p95 {cut['p95']:.1f} · p99 {cut['p99']:.1f}"
