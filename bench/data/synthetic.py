"""Seeded labelled synthetic series for the detector benchmarks: spikes, level shifts, drifts, seasonality changes, noise.

Each series mixes a base (AR(1) noise, optional daily cycle, optional
Poisson counts, optional trend) at a random scale and offset, sampled at
irregular times, with one kind of injected anomaly. Labels mark the anomalous
window (a few points for a spike, the first part of a shift or drift).
Run ``python -m bench.data.synthetic OUT_DIR`` to write them as CSV
(``timestamp,value,label``); nothing is committed but this script.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("spike", "level_shift", "drift", "seasonality", "noise")
STEP_S = 300  # five-minute sampling on average
PERIOD = 288  # points per day at that rate


@dataclass(frozen=True)
class Series:
    """One labelled series."""

    name: str
    kind: str
    ts_s: np.ndarray
    values: np.ndarray
    labels: np.ndarray


def _base(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Base signal, its daily cycle (possibly zero) and its noise sigma, before scaling."""
    phi = rng.uniform(0.0, 0.8)
    sigma = 1.0
    eps = rng.normal(0.0, sigma * np.sqrt(1 - phi**2), n)
    if rng.random() < 0.3:  # heavy tails: real metrics are rarely Gaussian
        eps = rng.standard_t(4, n) * sigma * np.sqrt(1 - phi**2) / np.sqrt(2)
    noise = np.zeros(n)
    for i in range(1, n):
        noise[i] = phi * noise[i - 1] + eps[i]
    t = np.arange(n)
    cycle = rng.choice([0.0, 3.0, 8.0]) * np.sin(2 * np.pi * t / PERIOD + rng.uniform(0, 6.28))
    trend = rng.choice([0.0, 0.0, 2.0]) * t / n
    return noise + cycle + trend, cycle, sigma


def _inject(rng: np.random.Generator, kind: str, x: np.ndarray, cycle: np.ndarray,
            labels: np.ndarray) -> None:
    n = len(x)
    if kind == "spike":
        for _ in range(rng.integers(2, 6)):
            i = int(rng.integers(n // 4, n - 5))
            x[i] += rng.choice([-1, 1]) * rng.uniform(6.0, 12.0)
            labels[i] = 1
    elif kind == "level_shift":
        i = int(rng.integers(n // 3, 2 * n // 3))
        x[i:] += rng.choice([-1, 1]) * rng.uniform(4.0, 8.0)
        labels[i : i + 20] = 1
    elif kind == "drift":
        i = int(rng.integers(n // 3, n // 2))
        ramp = np.clip((np.arange(n) - i) / 300.0, 0.0, 1.0) * rng.uniform(8.0, 15.0)
        x += rng.choice([-1, 1]) * ramp
        labels[i + 100 : i + 400] = 1
    elif kind == "seasonality":
        i = int(rng.integers(n // 3, 2 * n // 3))
        amp = max(float(np.abs(cycle).max()), 3.0)
        t = np.arange(n - i)
        x[i:] += -cycle[i:] + 2.5 * amp * np.sin(2 * np.pi * t / (PERIOD / 3))
        labels[i : i + PERIOD // 2] = 1
    else:  # noise burst
        i = int(rng.integers(n // 3, 2 * n // 3))
        x[i : i + 60] += rng.normal(0.0, 6.0, 60)
        labels[i : i + 60] = 1


def make_series(seed: int, kind: str, n: int = 3000) -> Series:
    """One seeded labelled series of ``kind`` (one of :data:`KINDS`)."""
    rng = np.random.default_rng(seed)
    x, cycle, _ = _base(rng, n)
    labels = np.zeros(n, dtype=np.int8)
    _inject(rng, kind, x, cycle, labels)
    scale = 10.0 ** rng.uniform(-2, 5)
    offset = rng.choice([0.0, 50.0, 1000.0]) * scale
    values = x * scale + offset
    if rng.random() < 0.2:  # counts: quantised, non-negative
        values = rng.poisson(np.clip(x - x.min() + 5.0, 0.0, None)).astype(float)
    gaps = rng.exponential(STEP_S, n).round()
    ts_s = 1_700_000_000 + np.cumsum(np.maximum(gaps, 1.0))
    missing = rng.random(n) < 0.005
    values[missing & (labels == 0)] = np.nan
    return Series(f"{kind}-{seed}", kind, ts_s, values, labels)


def make_suite(seed: int = 7, per_kind: int = 12, n: int = 3000) -> list[Series]:
    """``per_kind`` series of every kind, all seeded from ``seed``."""
    return [make_series(seed * 1000 + k * 100 + i, kind, n)
            for k, kind in enumerate(KINDS) for i in range(per_kind)]


def write_suite(out_dir: Path, seed: int = 7) -> None:
    """Write the suite as ``timestamp,value,label`` CSV files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for s in make_suite(seed):
        with open(out_dir / f"{s.name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "label"])
            w.writerows(zip(s.ts_s.astype(int), s.values, s.labels))


if __name__ == "__main__":
    write_suite(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/data/out"))
