"""Labelled series built on real data shipped inside River's wheel, with seeded injected anomalies.

Synthetic noise is kinder than real noise. These bases are real (a water-flow
sensor, ten S&P 500 stocks' daily returns and their cumulative price paths,
six pollsters' approval ratings); spikes, level shifts and noise bursts are
injected at sizes relative to each base's own robust step scale. The clean
bases also measure false alarms on real, unlabelled series.
"""

from __future__ import annotations

import csv
import gzip
from datetime import datetime
from pathlib import Path

import numpy as np
import river.datasets

from bench.data.synthetic import Series

ROOT = Path(river.datasets.__file__).parent
INJECTED = ("spike", "level_shift", "noise")


def _columns(path: Path) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:  # type: ignore[operator]
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def clean_bases() -> list[Series]:
    """The real series without injection (labels all 0)."""
    bases: list[Series] = []
    head, rows = _columns(ROOT / "water-flow.csv")
    ts = np.array([datetime.fromisoformat(r[0]).timestamp() for r in rows])
    bases.append(_clean("water-flow", ts, np.array([float(r[1]) for r in rows])))
    head, rows = _columns(ROOT / "sp500.csv.gz")
    ts = np.array([datetime.fromisoformat(r[0]).timestamp() for r in rows])
    for j, name in enumerate(head[1:11], start=1):
        returns = np.array([float(r[j]) for r in rows])
        bases.append(_clean(f"return-{name}", ts, returns))
        bases.append(_clean(f"price-{name}", ts, 100.0 * np.cumprod(1.0 + returns / 100.0)))
    head, rows = _columns(ROOT / "trump_approval.csv.gz")
    ts = np.array([(float(r[0]) - 719163) * 86400.0 for r in rows])  # proleptic ordinal → epoch
    for j, name in enumerate(head[1:], start=1):
        bases.append(_clean(f"approval-{name}", ts, np.array([float(r[j]) for r in rows])))
    return bases


def _clean(name: str, ts_s: np.ndarray, values: np.ndarray) -> Series:
    return Series(name, "clean", ts_s, values, np.zeros(len(values), dtype=np.int8))


def injected_suite(seed: int = 11) -> list[Series]:
    """Every base once with each injected kind, sizes in units of its median absolute step."""
    rng = np.random.default_rng(seed)
    out: list[Series] = []
    for base in clean_bases():
        steps = np.abs(np.diff(base.values))
        unit = float(np.median(steps[steps > 0])) / 0.6745 if (steps > 0).any() else 1.0
        n = len(base.values)
        for kind in INJECTED:
            x, labels = base.values.copy(), np.zeros(n, dtype=np.int8)
            if kind == "spike":
                for i in rng.choice(np.arange(n // 4, n - 2), size=3, replace=False):
                    x[i] += rng.choice([-1, 1]) * rng.uniform(6.0, 12.0) * unit
                    labels[i] = 1
            elif kind == "level_shift":
                i = int(rng.integers(n // 3, 2 * n // 3))
                x[i:] += rng.choice([-1, 1]) * rng.uniform(6.0, 10.0) * unit
                labels[i : i + 10] = 1
            else:
                i = int(rng.integers(n // 3, 2 * n // 3))
                x[i : i + 30] += rng.normal(0.0, 5.0 * unit, 30)
                labels[i : i + 30] = 1
            out.append(Series(f"{base.name}+{kind}", kind, base.ts_s, x, labels))
    return out
