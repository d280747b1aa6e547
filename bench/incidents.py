"""CPU µs per observed anomaly of the incident correlator and memory per 10k open groups; medians of 5.

Run: ``.venv/bin/python -m bench.incidents``. The ceiling printed first is a
bare loop over the same anomalies (what a no-op correlator costs). Each
measured µs includes the ``advance`` calls (one per 100 anomalies, watermark
= newest event time), so timers, emissions and summaries are paid for.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import tracemalloc

from processors.incidents import GroupingConfig, IncidentCorrelator
from schemas.records import Anomaly, Objective, PrivacyLevel, RouteSpec, Severity, SignalKind, WorkflowDefinition

REPEATS = 5
EVENTS = 20_000
GROUPS = 10_000
BATCH = 100  # anomalies between two watermarks
T0 = 1_700_000_000_000
SIGNALS = ("latency_ms", "error_rate", "cost_usd")


def _anomaly(i: int, entity: str, kind: str, signal: str, ts_ms: int, severity: Severity) -> Anomaly:
    return Anomaly(f"a{i}", ts_ms, entity, kind, signal, SignalKind.ANOMALY, 0.9, severity, 1.0, 0.0, 0.5,
                   ts_ms - 60_000, ts_ms, "robust", "1")


def _stream(entities: int, seed: int = 1) -> list[Anomaly]:
    """EVENTS anomalies, 100 ms apart, on ``entities`` routes and their workflows (one workflow per 2 routes)."""
    rng = random.Random(seed)
    out = []
    for i in range(EVENTS):
        e = rng.randrange(entities)
        kind, entity = ("route", f"route-{e}") if rng.random() < 0.6 else ("workflow", f"wf-{e // 2}")
        severity = Severity.CRITICAL if rng.random() < 0.2 else Severity.WARNING
        out.append(_anomaly(i, entity, kind, rng.choice(SIGNALS), T0 + 100 * i, severity))
    return out


def _correlator(entities: int) -> IncidentCorrelator:
    c = IncidentCorrelator(GroupingConfig())
    for w in range((entities + 1) // 2):
        routes = tuple(RouteSpec(f"route-{r}", "hosted", False, PrivacyLevel.PUBLIC, 0.001, 0.001)
                       for r in (2 * w, 2 * w + 1))
        c.observe_workflow(WorkflowDefinition(f"wf-{w}", "v1", T0, routes, objective=Objective()))
    return c


def us_per_anomaly(entities: int) -> tuple[float, float, int]:
    """(µs per anomaly through the correlator, µs of the bare loop, incidents emitted)."""
    stream = _stream(entities)
    runs, ceilings, emitted = [], [], 0
    for _ in range(REPEATS):
        c, emitted = _correlator(entities), 0
        t0 = time.process_time()
        for i, a in enumerate(stream):
            c.observe_anomaly(a)
            if i % BATCH == BATCH - 1:
                emitted += len(c.advance(a.ts_ms))
        runs.append((time.process_time() - t0) / EVENTS * 1e6)
        t0 = time.process_time()
        for i, a in enumerate(stream):
            _ = (a.ts_ms, i % BATCH)
        ceilings.append((time.process_time() - t0) / EVENTS * 1e6)
    return statistics.median(runs), statistics.median(ceilings), emitted


def memory_per_10k_groups() -> tuple[float, float, int]:
    """(MB per 10k open notified groups, µs per anomaly while opening them, JSON snapshot bytes per group)."""
    sizes, times, snapshot_bytes = [], [], 0
    for _ in range(REPEATS):
        c = IncidentCorrelator(GroupingConfig())
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.process_time()
        for i in range(GROUPS):
            c.observe_anomaly(_anomaly(i, f"route-{i}", "route", "latency_ms", T0 + i, Severity.WARNING))
        assert len(c.advance(T0 + GROUPS + 30_000)) == GROUPS  # every group open and notified
        times.append((time.process_time() - t0) / GROUPS * 1e6)
        sizes.append((tracemalloc.get_traced_memory()[0] - base) / GROUPS * 10_000 / 1e6)
        tracemalloc.stop()
        snapshot_bytes = len(json.dumps(c.snapshot())) // GROUPS
    return statistics.median(sizes), statistics.median(times), snapshot_bytes


def main() -> None:
    """Print both tables."""
    print(f"CPU per anomaly, {EVENTS} anomalies, advance every {BATCH}, median of {REPEATS} (process time)")
    for entities in (10, 1_000, 10_000):
        us, ceiling, emitted = us_per_anomaly(entities)
        print(f"  {entities:>6} routes: {us:7.2f} µs/anomaly (bare loop {ceiling:.2f} µs); "
              f"{emitted} incident updates in the last run")
    mb, us, snap = memory_per_10k_groups()
    print(f"\nMemory of {GROUPS} open, notified groups (one member each; tracemalloc, median of {REPEATS})")
    print(f"  {mb:6.1f} MB per 10k groups; {us:.2f} µs/anomaly opening them (under tracemalloc); "
          f"snapshot {snap} B/group JSON")


if __name__ == "__main__":
    main()
