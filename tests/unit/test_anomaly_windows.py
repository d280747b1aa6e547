"""RequestWindow: closes by span and count, ignores failed requests' latency, tolerates disorder, snapshots."""

from __future__ import annotations

import json
import math

from processors.anomaly.windows import RequestWindow


def test_closes_when_it_spans_the_window_and_holds_enough_successes() -> None:
    w = RequestWindow(window_ms=10_000, min_ok=3)
    assert [w.add(ts, 100.0, 0.01, True) for ts in (0, 5_000)] == [None, None]
    assert w.add(11_000, 100.0, 0.01, False) is None  # long enough, but only two successes
    s = w.add(12_000, 400.0, 0.04, True)
    assert s is not None and (s.start_ms, s.end_ms, s.requests) == (0, 12_000, 4)
    assert (s.latency_ms, round(s.cost_usd, 6)) == (100.0, 0.02)
    assert w.add(13_000, 100.0, 0.01, True) is None  # a new window begins


def test_timeouts_count_as_requests_but_not_as_latency() -> None:
    w = RequestWindow(window_ms=1_000, min_ok=2)
    w.add(0, 800.0, 0.01, True)
    w.add(100, 30_000.0, 0.005, False)
    s = w.add(1_000, 900.0, 0.01, True)
    assert s is not None and s.requests == 3 and s.latency_ms == 850.0


def test_window_starts_at_the_earliest_stamp_whatever_the_arrival_order() -> None:
    w = RequestWindow(window_ms=10_000, min_ok=1)
    assert w.add(30_000, 30_000.0, 0.0, False) is None  # a timeout, stamped at completion, arrives first
    assert w.add(1_000, 800.0, 0.01, True) is None  # span measured from 1 000, not 30 000
    s = w.add(11_000, 800.0, 0.01, True)
    assert s is not None and (s.start_ms, s.end_ms) == (1_000, 11_000)


def test_a_window_of_only_failures_closes_on_count_with_nan_aggregates() -> None:
    w = RequestWindow(window_ms=10_000, min_ok=20, max_requests=5)
    out = [w.add(i, 0.0, 0.0, False) for i in range(5)]
    assert out[:4] == [None] * 4
    s = out[4]
    assert s is not None and s.requests == 5 and math.isnan(s.latency_ms) and math.isnan(s.cost_usd)


def test_snapshot_through_json_gives_the_same_summaries() -> None:
    original = RequestWindow(window_ms=1_000, min_ok=2)
    for ts in (0, 300, 600):
        original.add(ts, 100.0 + ts, 0.01, ts != 300)
    restored = RequestWindow.restore(json.loads(json.dumps(original.snapshot())))
    tail = [(900 + 200 * i, 50.0 * i, 0.02, True) for i in range(8)]
    assert [original.add(*e) for e in tail] == [restored.add(*e) for e in tail]
