"""Precision/recall of every detector on seeded labelled synthetic series, per anomaly kind.

Run: ``.venv/bin/python -m bench.detect_quality [--per-kind 12] [--detectors a,b]``.
Two suites: seeded synthetic series (``bench.data.synthetic``) and real bases
with injected anomalies (``bench.data.realbase``); then false-alarm clusters
per 1k points on the clean real bases.
Columns: pointwise P/R/F1 at score >= THRESHOLD; point-adjusted F1 at that
threshold (a labelled window counts as found if any of its points is flagged,
the usual convention of the Yahoo/NAB literature); best point-adjusted F1 over
all thresholds and AUC-PR (average precision, pointwise) — both threshold-free;
event recall and false-alarm clusters per 1k normal points at THRESHOLD.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.data.realbase import INJECTED, clean_bases, injected_suite
from bench.data.synthetic import KINDS, Series, make_suite
from processors.anomaly.registry import DETECTORS, score_series

THRESHOLD = 0.5


def _windows(labels: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate(([0], labels, [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _adjust(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = pred.copy()
    for lo, hi in _windows(labels):
        if out[lo:hi].any():
            out[lo:hi] = True
    return out


def _prf(pred: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    tp = float((pred & (labels == 1)).sum())
    p = tp / max(float(pred.sum()), 1.0)
    r = tp / max(float((labels == 1).sum()), 1.0)
    return p, r, 2 * p * r / max(p + r, 1e-12)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve, step-wise (as scikit-learn's average_precision_score)."""
    order = np.argsort(-scores, kind="stable")
    y = labels[order]
    tp = np.cumsum(y)
    precision = tp / np.arange(1, len(y) + 1)
    return float((precision * y).sum() / max(y.sum(), 1))


def evaluate(runs: list[tuple[Series, np.ndarray]]) -> dict[str, float]:
    """Micro-averaged metrics over ``(series, scores)`` pairs."""
    labels = np.concatenate([s.labels for s, _ in runs])
    scores = np.concatenate([sc for _, sc in runs])
    pred = scores >= THRESHOLD
    adjusted = np.concatenate([_adjust(sc >= THRESHOLD, s.labels) for s, sc in runs])
    best = 0.0
    for t in np.quantile(scores, np.linspace(0.9, 0.9999, 60)):
        adj = np.concatenate([_adjust(sc >= t, s.labels) for s, sc in runs])
        best = max(best, _prf(adj, labels)[2])
    events = sum(len(_windows(s.labels)) for s, _ in runs)
    found = sum(bool((sc[lo:hi] >= THRESHOLD).any()) for s, sc in runs for lo, hi in _windows(s.labels))
    false_clusters = sum(len(_windows(((sc >= THRESHOLD) & (s.labels == 0)).astype(np.int8)))
                         for s, sc in runs)
    p, r, f1 = _prf(pred, labels)
    return {"P": p, "R": r, "F1": f1, "PA-F1": _prf(adjusted, labels)[2], "bestPA-F1": best,
            "AUC-PR": average_precision(scores, labels), "ev-R": found / max(events, 1),
            "FA/1k": 1000.0 * false_clusters / max(int((labels == 0).sum()), 1)}


def _scores(series: Series, name: str) -> np.ndarray:
    ts_ms = [int(t * 1000) for t in series.ts_s]
    return np.array(score_series(list(series.values), ts_ms, name))


def _table(title: str, suite: list[Series], kinds: tuple[str, ...], names: list[str]) -> None:
    cols = ["P", "R", "F1", "PA-F1", "bestPA-F1", "AUC-PR", "ev-R", "FA/1k"]
    print(f"\n{title}: {len(suite)} series, threshold {THRESHOLD}")
    print(f"{'detector':12} {'kind':12} " + " ".join(f"{c:>9}" for c in cols) + "    s")
    for name in names:
        t0 = time.perf_counter()
        runs = [(s, _scores(s, name)) for s in suite]
        elapsed = time.perf_counter() - t0
        for kind in ("all", *kinds):
            m = evaluate([(s, sc) for s, sc in runs if kind in ("all", s.kind)])
            extra = f" {elapsed:5.1f}" if kind == "all" else ""
            print(f"{name:12} {kind:12} " + " ".join(f"{m[c]:9.3f}" for c in cols) + extra)


def main() -> None:
    """Score both suites with every detector and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-kind", type=int, default=12)
    parser.add_argument("--detectors", default=",".join(d for d in DETECTORS if d != "default"))
    args = parser.parse_args()
    names = args.detectors.split(",")
    _table("synthetic", make_suite(per_kind=args.per_kind), KINDS, names)
    _table("real bases + injected", injected_suite(), INJECTED, names)
    clean = clean_bases()
    print(f"\nclean real bases ({len(clean)} series, {sum(len(s.values) for s in clean)} points): "
          f"false-alarm clusters per 1k points at {THRESHOLD}")
    for name in names:
        flagged = sum(len(_windows((_scores(s, name) >= THRESHOLD).astype(np.int8))) for s in clean)
        print(f"{name:12} {1000.0 * flagged / sum(len(s.values) for s in clean):9.3f}")


if __name__ == "__main__":
    main()
