"""Model lifecycle: the router's accuracy, its drift, and signed model records."""

from __future__ import annotations

from processors.lifecycle import AccuracyMeter, model_record, verify_model
from schemas.records import SignalKind


def test_a_model_whose_error_shifts_raises_a_drift_anomaly_and_a_steady_one_does_not() -> None:
    steady, shifting = AccuracyMeter(), AccuracyMeter()
    found_steady, found_shift = [], []
    for i in range(2000):
        noise = 0.02 * ((i * 7919) % 11 - 5) / 5  # deterministic ±0.02
        found_steady.append(steady.observe("wf", 0.6, 0.6 + noise, i * 1000))
        observed = 0.6 + noise if i < 1000 else 0.3 + noise  # the route got worse; the model still expects 0.6
        found_shift.append(shifting.observe("wf", 0.6, observed, i * 1000))
    assert [a for a in found_steady if a is not None] == []
    hits = [a for a in found_shift if a is not None]
    assert hits and hits[0].kind is SignalKind.DRIFT and hits[0].entity == "model:wf"
    assert 1000_000 <= hits[0].ts_ms <= 1100_000  # within 100 outcomes of the shift
    assert shifting.accuracy("wf")["bias"] < -0.2 < steady.accuracy("wf")["bias"]


def test_meter_snapshot_resumes_exactly() -> None:
    meter = AccuracyMeter()
    for i in range(300):
        meter.observe("wf", 0.5, 0.5 + (i % 3) * 0.01, i)
    again = AccuracyMeter()
    again.restore(meter.snapshot())
    assert [again.observe("wf", 0.5, 0.9, 300 + i) for i in range(50)] == [
        meter.observe("wf", 0.5, 0.9, 300 + i) for i in range(50)]
    assert again.snapshot() == meter.snapshot()


def test_model_records_are_signed_over_their_state() -> None:
    key = b"k" * 32
    record = model_record(key, "wf", 2, 0, "m", "published", {"n": 1, "mae": 0.1, "bias": 0.0}, {"a": 1})
    assert verify_model(record, key)
    from dataclasses import replace
    assert not verify_model(replace(record, state='{"a":2}'), key)
    assert not verify_model(replace(record, version=3), key)
