"""Scale-out: count-and-forward with 2 worker processes in one group over 1, on the same events and broker."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from bench.throughput.harness import Result, on_fresh_topics, progress
from bench.throughput.loopwise import run_loopwise_count_forward


def run_scale(bootstrap: str, events: Sequence[tuple[bytes, bytes]], partitions: int, runs: int,
              one_worker_eps: Sequence[float] = ()) -> tuple[float, list[float], list[float]]:
    """(median 2-worker eps / median 1-worker eps, 2-worker runs, 1-worker runs).

    ``one_worker_eps``: 1-worker runs already measured in this bench run on the
    same events (``loopwise_standard_eps``); measured here when empty.
    """
    one = list(one_worker_eps)
    for run in range(runs if not one else 0):
        one.append(_once(bootstrap, events, partitions, 1))
        progress(f"  scale run {run + 1}/{runs}, 1 worker: {one[-1]:,.0f}/s")
    two = []
    for run in range(runs):
        two.append(_once(bootstrap, events, partitions, 2))
        progress(f"  scale run {run + 1}/{runs}, 2 workers: {two[-1]:,.0f}/s")
    return statistics.median(two) / statistics.median(one), two, one


def _once(bootstrap: str, events: Sequence[tuple[bytes, bytes]], partitions: int, workers: int) -> float:
    def pipeline(servers: str, in_topic: str, out_topic: str, n: int) -> Result:
        return run_loopwise_count_forward(servers, in_topic, out_topic, n, partitions, workers=workers)

    return on_fresh_topics(bootstrap, events, partitions, f"scale{workers}", pipeline).eps
