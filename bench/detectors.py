"""CPU µs per event for each detector and memory per 10k entities of the bank (tracemalloc); medians of 5.

Run: ``.venv/bin/python -m bench.detectors``. The ceiling printed first is a
bare Python loop over the same values (what a no-op detector costs).
"""

from __future__ import annotations

import json
import random
import statistics
import time
import tracemalloc

from processors.anomaly.bank import DetectorBank
from processors.anomaly.registry import DETECTORS, make_scorer
from processors.drift import DriftMonitor
from schemas.records import MetricEvent

REPEATS = 5
EVENTS = 20_000
ENTITIES = 10_000
MEASURED_ENTITIES = 2_000  # memory is linear in entities; 10k under tracemalloc x 5 took minutes
HISTORY = 64  # values per entity before measuring: windows (48) full, warm-up (60) done


def _values(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(100.0, 5.0) + (80.0 if i % 997 == 0 else 0.0) for i in range(n)]


def cpu_us_per_event(name: str, values: list[float]) -> float:
    """Median over REPEATS of µs per ``step`` of one fresh scorer over ``values``."""
    runs = []
    for _ in range(REPEATS):
        scorer = make_scorer(name)
        t0 = time.process_time()
        for i, v in enumerate(values):
            scorer.step(v, i * 60_000)
        runs.append((time.process_time() - t0) / len(values) * 1e6)
    return statistics.median(runs)


def ceiling_us(values: list[float]) -> float:
    """µs per event of an empty loop: the floor under every detector."""
    runs = []
    for _ in range(REPEATS):
        t0 = time.process_time()
        for i, v in enumerate(values):
            _ = (v, i * 60_000)
        runs.append((time.process_time() - t0) / len(values) * 1e6)
    return statistics.median(runs)


def _fill(bank: DetectorBank, entities: int) -> float:
    """Feed HISTORY values to each entity; µs of process time per observe."""
    events = [[MetricEvent(f"host-{e}", step * 60_000, "cpu", v + e % 7) for e in range(entities)]
              for step, v in enumerate(_values(HISTORY, seed=2))]
    t0 = time.process_time()
    for batch in events:
        for event in batch:
            bank.observe_metric(event)
    return (time.process_time() - t0) / (entities * HISTORY) * 1e6


def bank_cost(entities: int, with_drift: bool) -> tuple[float, float, int]:
    """(bytes per entity, µs per observe, JSON snapshot bytes per entity) of a bank of one signal per entity."""
    sizes, times = [], []
    snapshot_bytes = 0
    for _ in range(REPEATS):
        times.append(_fill(DetectorBank(drift=DriftMonitor() if with_drift else None), entities))
        tracemalloc.start()
        bank = DetectorBank(drift=DriftMonitor() if with_drift else None)
        _fill(bank, entities)
        sizes.append(tracemalloc.get_traced_memory()[0] / entities)
        tracemalloc.stop()
        snapshot_bytes = len(json.dumps(bank.snapshot())) // entities
    return statistics.median(sizes), statistics.median(times), snapshot_bytes


def main() -> None:
    """Print both tables."""
    values = _values(EVENTS)
    print(f"CPU per event, {EVENTS} events, median of {REPEATS} (process time)")
    print(f"  {'empty loop (ceiling)':24} {ceiling_us(values):8.2f} µs")
    for name in DETECTORS:
        if name != "default":
            print(f"  {name:24} {cpu_us_per_event(name, values):8.2f} µs")
    print(f"\nDetectorBank, 1 signal x {MEASURED_ENTITIES} entities after {HISTORY} values each, "
          f"scaled to {ENTITIES} (tracemalloc; median of {REPEATS})")
    for with_drift in (False, True):
        per_entity, us, snap = bank_cost(MEASURED_ENTITIES, with_drift)
        label = "bank + drift monitor" if with_drift else "bank"
        print(f"  {label:24} {per_entity:8.0f} B/entity = {per_entity * ENTITIES / 1e6:6.1f} MB "
              f"per 10k; {us:6.2f} µs/observe_metric; snapshot {snap} B/entity as JSON")


if __name__ == "__main__":
    main()
