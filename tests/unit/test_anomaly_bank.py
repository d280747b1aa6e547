"""DetectorBank: records it emits, per-route/workflow signals, severity policy, steadiness, snapshots."""

from __future__ import annotations

import json
import random

from processors.anomaly.bank import DetectorBank, SeverityPolicy, anomaly_id
from processors.drift import DriftMonitor
from schemas.records import (Anomaly, MetricEvent, RequestContext, RequestEvent, Severity,
                             SignalKind, Status)

T0 = 1_700_000_000_000


def request(i: int, latency_ms: float = 800.0, status: Status = Status.OK,
            cost_usd: float = 0.002) -> RequestEvent:
    return RequestEvent(
        request_id=f"r{i}", ts_ms=T0 + 1000 * i, workflow="support-bot", workflow_version="v1",
        route="gpt-large", context=RequestContext(tenant="t1", task="qa"), latency_ms=latency_ms,
        cost_usd=cost_usd, tokens_in=100, tokens_out=50, status=status)


def feed_steady(bank: DetectorBank, n: int, seed: int) -> list[Anomaly]:
    rng = random.Random(seed)
    out: list[Anomaly] = []
    for i in range(n):
        status = Status.ERROR if rng.random() < 0.02 else Status.OK
        out += bank.observe_request(request(i, rng.gauss(800.0, 60.0), status,
                                            rng.gauss(0.002, 0.0002)))
    return out


def test_spike_yields_a_complete_critical_record() -> None:
    bank = DetectorBank(warmup=30)
    rng = random.Random(1)
    for i in range(200):
        assert bank.observe("api", "service", "rps", T0 + 1000 * i, rng.gauss(100.0, 3.0)) is None
    a = bank.observe("api", "service", "rps", T0 + 200_000, 400.0)
    assert a is not None
    assert (a.entity, a.entity_kind, a.signal, a.kind) == ("api", "service", "rps", SignalKind.ANOMALY)
    assert (a.severity, a.value, a.ts_ms, a.window_end_ms) == (Severity.CRITICAL, 400.0,
                                                                T0 + 200_000, T0 + 200_000)
    assert a.window_start_ms == T0 + 200_000 - 48 * 1000
    assert a.expected_low < 100.0 < a.expected_high < 400.0
    assert (a.detector, a.detector_version) == ("robust-ensemble", "1")
    assert a.anomaly_id == anomaly_id("api", "rps", T0 + 200_000, "robust-ensemble")
    assert 0.9 <= a.score <= 1.0


def test_no_anomaly_before_warmup_even_for_huge_values() -> None:
    bank = DetectorBank(warmup=60)
    hits = [bank.observe("api", "service", "rps", T0 + i, 1e9 if i == 30 else 1.0 + i % 3)
            for i in range(60)]
    assert hits == [None] * 60


def test_steady_route_raises_no_warning_in_10k_requests() -> None:
    found = feed_steady(DetectorBank(), 10_000, seed=7)
    assert [a for a in found if a.severity != Severity.INFO] == []


def test_outage_raises_error_rate_on_route_and_workflow() -> None:
    bank = DetectorBank()
    feed_steady(bank, 500, seed=3)
    found: list[Anomaly] = []
    for i in range(500, 510):
        found += bank.observe_request(request(i, status=Status.ERROR))
    signals = {(a.entity, a.signal) for a in found if a.severity != Severity.INFO}
    assert {("gpt-large", "error_rate"), ("support-bot", "error_rate")} <= signals


def test_latency_spike_is_seen_on_route_and_workflow_but_faster_is_not() -> None:
    bank = DetectorBank()
    feed_steady(bank, 500, seed=4)
    assert bank.observe_request(request(500, latency_ms=50.0)) == []
    spike = bank.observe_request(request(501, latency_ms=5_000.0))
    assert {(a.entity, a.entity_kind, a.signal) for a in spike} == {
        ("gpt-large", "route", "latency_ms"), ("support-bot", "workflow", "latency_ms")}


def test_metric_entity_is_source_and_signal_is_name() -> None:
    bank = DetectorBank(warmup=10)
    for i in range(100):
        bank.observe_metric(MetricEvent("gpu-1", T0 + 1000 * i, "gpu_util", 50.0 + i % 4))
    a = bank.observe_metric(MetricEvent("gpu-1", T0 + 100_000, "gpu_util", 99.0))
    assert a is not None and (a.entity, a.entity_kind, a.signal) == ("gpu-1", "metric_source", "gpu_util")
    assert len(bank) == 1


def test_severity_thresholds_rise_with_the_entity_score_quantile() -> None:
    policy = SeverityPolicy()
    assert policy.classify(0.4, 0.05) is None
    assert policy.classify(0.6, 0.05) == Severity.INFO
    assert policy.classify(0.8, 0.05) == Severity.WARNING
    assert policy.classify(0.92, 0.05) == Severity.CRITICAL
    # A noisy entity whose usual top scores reach 0.85 needs more to page.
    assert policy.classify(0.8, 0.85) is None
    assert policy.classify(0.92, 0.85) == Severity.WARNING
    assert policy.classify(0.96, 0.85) == Severity.CRITICAL


def test_snapshot_through_json_gives_identical_subsequent_records() -> None:
    original = DetectorBank(drift=DriftMonitor())
    feed_steady(original, 400, seed=5)
    restored = DetectorBank(drift=DriftMonitor())
    restored.restore(json.loads(json.dumps(original.snapshot())))
    tail = [request(i, latency_ms=800.0 + (3000.0 if i % 97 == 0 else 0.0)) for i in range(400, 700)]
    assert [original.observe_request(e) for e in tail] == [restored.observe_request(e) for e in tail]


def test_drift_of_latency_is_reported_as_a_drift_record() -> None:
    bank = DetectorBank(drift=DriftMonitor())
    rng = random.Random(6)
    found: list[Anomaly] = []
    for i in range(1500):
        latency = rng.gauss(800.0, 40.0) + (0.0 if i < 700 else (i - 700) * 1.0)
        found += bank.observe_request(request(i, latency_ms=latency))
    drifts = [a for a in found if a.kind == SignalKind.DRIFT]
    assert drifts and {a.signal for a in drifts} >= {"latency_ms"}
    assert min(a.ts_ms for a in drifts if a.signal == "latency_ms") > T0 + 700_000
