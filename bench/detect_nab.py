"""NAB-style scoring of the detectors on real labelled series: earliest detection rewarded, false positives penalised.

Run: ``.venv/bin/python -m bench.detect_nab [--detectors default,window-gaussian,hst,gaussian]``

Corpus: the real bases shipped in River's wheel (water flow, ten S&P 500 stocks, approval ratings) with seeded
injected anomalies (``bench.data.realbase.injected_suite``) plus the same bases clean (no anomaly: any detection is a
false positive). No network here, so no public NAB/Yahoo corpus; the scoring follows NAB's standard profile:

* each labelled anomaly gets a window: all windows of a series together span 10 % of it, centred on the anomaly;
* the first detection inside a window earns ``sigmoid(y)`` with ``y`` its relative position (−1 at the window's
  start, 0 at its end): ``2 / (1 + exp(5 y)) − 1``, so early detection earns ~0.99, late ~0;
  later detections in the same window count nothing;
* a window never detected costs 1 (A_FN); every detection outside windows costs 0.11 (A_FP), less if it comes
  just after a window (NAB's sigmoid tail);
* the corpus score is normalised: 0 for a detector that never fires, 100 for a perfect one;
* the threshold is optimised once per corpus (the same threshold on every series), over score quantiles.

A detector whose scores mean different things on different series cannot do well here: one threshold must serve
every series. The windowed Gaussian (|z| against the previous 64 points' mean and sd) is the plain baseline; River's HalfSpaceTrees and GaussianScorer (``hst``, ``gaussian`` in the registry) run
out of the box.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from bench.data.realbase import clean_bases, injected_suite
from bench.data.synthetic import Series
from processors.anomaly.registry import score_series

A_TP, A_FP, A_FN = 1.0, 0.11, 1.0


def sigmoid(y: float) -> float:
    """NAB's scaled sigmoid of the relative position ``y`` (−1: window start, 0: window end, >0: after)."""
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def windows(labels: np.ndarray) -> list[tuple[int, int]]:
    """NAB windows: one per labelled run, centred on it, all together 10 % of the series (at least the run)."""
    edges = np.diff(np.concatenate(([0], labels.astype(np.int8), [0])))
    runs = list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))
    if not runs:
        return []
    width = max(1, int(0.1 * len(labels) / len(runs)))
    out = []
    for start, end in runs:
        centre, half = (start + end) // 2, max(width, end - start) // 2
        out.append((max(0, centre - half), min(len(labels), centre + half + 1)))
    return out


def nab_raw(flags: np.ndarray, wins: list[tuple[int, int]]) -> float:
    """Raw NAB score of one series' detections (``flags``) against its windows."""
    score, in_window = 0.0, np.zeros(len(flags), dtype=bool)
    for start, end in wins:
        in_window[start:end] = True
        hits = np.flatnonzero(flags[start:end])
        if len(hits):
            y = (hits[0] + 1) / (end - start) - 1.0
            score += A_TP * sigmoid(y)
        else:
            score -= A_FN
    for i in np.flatnonzero(flags & ~in_window):
        before = [w for w in wins if w[1] <= i]
        if before:
            start, end = before[-1]
            y = (i - end + 1) / (end - start)
            score += A_FP * min(sigmoid(y), 0.0) if y <= 1.0 else -A_FP
        else:
            score -= A_FP
    return score


def corpus_score(scores: list[np.ndarray], series: list[Series], threshold: float) -> float:
    """Normalised NAB score (0: never fires, 100: perfect) at one threshold for the whole corpus."""
    raw = perfect = null = 0.0
    for s, ser in zip(scores, series):
        wins = windows(ser.labels)
        raw += nab_raw(s >= threshold, wins)
        perfect += sum(A_TP * sigmoid(1.0 / (end - start) - 1.0) for start, end in wins)
        null -= A_FN * len(wins)
    return 100.0 * (raw - null) / (perfect - null) if perfect > null else 0.0


def best_threshold(scores: list[np.ndarray], series: list[Series]) -> tuple[float, float]:
    """The threshold (one per corpus) with the best normalised score, over quantiles of all the scores."""
    pooled = np.concatenate(scores)
    grid = np.unique(np.quantile(pooled, np.concatenate([np.linspace(0.5, 0.99, 50), 1 - np.logspace(-2, -5, 30)])))
    results = [(corpus_score(scores, series, float(t)), float(t)) for t in grid]
    best = max(results)
    return best[0], best[1]


def window_gaussian(values: np.ndarray, window: int = 64, warmup: int = 32) -> np.ndarray:
    """Causal rolling z-score over the previous ``window`` points (not the current one): score = |z|."""
    x = np.asarray(values, dtype=float)
    c1, c2 = np.concatenate([[0.0], np.cumsum(x)]), np.concatenate([[0.0], np.cumsum(x * x)])
    i = np.arange(len(x))
    lo = np.maximum(0, i - window)
    n = i - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (c1[i] - c1[lo]) / n
        sd = np.sqrt(np.maximum((c2[i] - c2[lo]) / n - mean * mean, 0.0))
        z = np.abs(x - mean) / sd
    z = np.where(sd > 0, z, np.where(x == mean, 0.0, 50.0))
    return np.where(n >= warmup, np.minimum(np.nan_to_num(z), 50.0), 0.0)


def score(name: str, ser: Series) -> np.ndarray:
    """One detector's scores on one series."""
    if name == "window-gaussian":
        return window_gaussian(ser.values)
    ts = [int(t * 1000) for t in ser.ts_s]
    return np.nan_to_num(np.asarray(score_series(list(map(float, ser.values)), ts, name), dtype=float))


def main() -> None:
    """Print each detector's normalised NAB score on the corpus, its threshold, and µs per point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--detectors", default="default,window-gaussian,hst,gaussian")
    args = parser.parse_args()
    series = injected_suite() + clean_bases()
    print(f"corpus: {len(series)} series, {sum(len(s.values) for s in series)} points, "
          f"{sum(len(windows(s.labels)) for s in series)} labelled windows")
    for name in args.detectors.split(","):
        t0 = time.perf_counter()
        scores = [score(name, s) for s in series]
        us = (time.perf_counter() - t0) / sum(len(s.values) for s in series) * 1e6
        best, threshold = best_threshold(scores, series)
        print(f"{name:16} NAB {best:7.2f}  threshold {threshold:.6g}  {us:7.1f} µs/point")


if __name__ == "__main__":
    main()
