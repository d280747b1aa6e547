"""DetectorBank: records it emits, per-route/workflow signals, severity policy, steadiness, snapshots."""

from __future__ import annotations

import dataclasses
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


def test_single_slow_requests_and_timeouts_do_not_page() -> None:
    bank = DetectorBank(window_warmup=10)
    found = feed_steady(bank, 1_500, seed=4)
    for i in range(1_500, 3_000):
        slow = i % 150 == 0
        found += bank.observe_request(request(i, latency_ms=30_000.0 if slow else 800.0,
                                              status=Status.TIMEOUT if slow and i % 300 == 0 else Status.OK))
    assert [(a.signal, a.severity) for a in found if a.severity != Severity.INFO] == []


def sustained(factor: float) -> list[Anomaly]:
    bank = DetectorBank(window_warmup=10)
    feed_steady(bank, 1_200, seed=4)
    rng = random.Random(9)
    found: list[Anomaly] = []
    for i in range(1_200, 1_400):
        found += bank.observe_request(request(i, factor * rng.gauss(800.0, 60.0)))
    return [a for a in found if a.signal == "latency_ms" and a.severity != Severity.INFO]


def test_sustained_latency_rise_is_seen_per_window_on_route_and_workflow_but_faster_is_not() -> None:
    rise = sustained(3.0)
    assert {(a.entity, a.entity_kind) for a in rise} == {("gpt-large", "route"), ("support-bot", "workflow")}
    first = min(rise, key=lambda a: a.ts_ms)
    assert first.ts_ms <= T0 + 1_240_000  # the first window of slow requests (20 at 1 req/s)
    assert first.window_end_ms - first.window_start_ms >= 10_000  # evidence: the window it summarises
    assert first.value > first.expected_high
    assert sustained(0.5) == []


def test_outage_is_critical_within_a_few_requests_and_stays_anomalous() -> None:
    bank = DetectorBank(window_warmup=10)
    feed_steady(bank, 1_000, seed=3)
    severities = [[a.severity for a in bank.observe_request(request(i, status=Status.ERROR))
                   if (a.entity, a.signal) == ("gpt-large", "error_rate")] for i in range(1_000, 1_100)]
    assert Severity.CRITICAL in [s for hit in severities[:10] for s in hit]  # 10 s at 1 req/s
    # Learned once per window, not per request: still critical after 100 failed requests.
    assert severities[-1] == [Severity.CRITICAL]


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


def test_slow_latency_ramp_is_a_latency_anomaly_and_a_drift_record() -> None:
    bank = DetectorBank(drift=DriftMonitor())
    rng = random.Random(11)
    found: list[Anomaly] = []
    for i in range(14_000):  # 10 req/s: 10 steady minutes, then latency x2.5 over 17 minutes
        ramp = 1.0 + 1.5 * max(0, i - 6_000) / 10_000
        event = dataclasses.replace(request(i, ramp * 800.0 * rng.lognormvariate(0.0, 0.3)), ts_ms=T0 + 100 * i)
        found += bank.observe_request(event)
    hits = [a for a in found if a.kind == SignalKind.ANOMALY and a.severity != Severity.INFO]
    assert {(a.entity, a.signal) for a in hits} == {("gpt-large", "latency_ms"), ("support-bot", "latency_ms")}
    assert T0 + 600_000 < min(a.ts_ms for a in hits) < T0 + 1_000_000
    drifts = [a for a in found if a.kind == SignalKind.DRIFT and a.signal == "latency_ms"]
    assert drifts and min(a.ts_ms for a in drifts) > T0 + 600_000


def _final(i: int, ts_ms: int, quality: float | None, route: str = "gpt-large", is_final: bool = True) -> "Outcome":
    from schemas.records import Outcome, Status

    return Outcome(f"q{i}", ts_ms + 300_000, ts_ms, "support-bot", "v1", route, "seg", Status.OK, 800.0, 0.002,
                   0.5, 0.5, 0.1, 0.05, 0.0, is_final, 1, quality)


def test_route_quality_is_judged_per_window_of_final_outcomes_and_pages_on_a_drop() -> None:
    import random

    rng = random.Random(3)
    bank = DetectorBank.for_requests()
    t0, found = 1_700_000_000_000, []
    # 60 min of healthy quality (0.85 ± 0.1 per rated request, 2 a second), then 0.65 for 5 min.
    for i in range(2 * 3600):
        found += bank.observe_outcome(_final(i, t0 + i * 500, min(1.0, max(0.0, rng.gauss(0.85, 0.1)))))
    assert [a for a in found if a.signal == "quality"] == []
    for i in range(2 * 3600, 2 * 3900):
        found += bank.observe_outcome(_final(i, t0 + i * 500, min(1.0, max(0.0, rng.gauss(0.65, 0.1)))))
    drops = [a for a in found if a.signal == "quality" and a.kind.value == "anomaly"]
    assert {a.entity for a in drops} == {"gpt-large", "support-bot"}
    assert all(a.severity.value in ("warning", "critical") for a in drops if a.ts_ms > min(d.ts_ms for d in drops))
    first = min(a.ts_ms for a in drops)
    assert first - (t0 + 3600 * 1000) <= 130_000  # within two quality windows of the drop
    assert all(a.value < a.expected_low for a in drops)


def test_quality_ignores_provisional_outcomes_and_unrated_ones() -> None:
    bank = DetectorBank.for_requests()
    t0 = 1_700_000_000_000
    for i in range(5_000):
        assert bank.observe_outcome(_final(i, t0 + i * 500, 0.1, is_final=False)) == []
        assert bank.observe_outcome(_final(i, t0 + i * 500, None)) == []
    assert len(bank) == 0


def test_a_metric_pages_only_when_two_samples_in_a_row_are_anomalous() -> None:
    bank = DetectorBank(warmup=20)
    t0 = 1_700_000_000_000
    sample = lambda i, v: bank.observe_metric(MetricEvent("gw", t0 + i * 10_000, "queue_depth", v))  # noqa: E731
    assert [a for i in range(200) if (a := sample(i, 10.0 + (i % 5))) is not None] == []
    blip = sample(200, 90.0)
    assert blip is not None and blip.severity is Severity.INFO  # one odd sample: said, not paged
    assert sample(201, 11.0) is None
    first, second = sample(202, 95.0), sample(203, 96.0)
    assert first is not None and first.severity is Severity.INFO
    assert second is not None and second.severity is Severity.CRITICAL


def test_warm_up_needs_event_time_not_only_values() -> None:
    # A busy route's first second: 100 requests, most failing (a cold start's overload), pages nobody.
    from tests.factories import make_request

    t0 = 1_700_000_000_000
    bank = DetectorBank.for_requests()
    burst = [make_request(f"c{i}", ts_ms=t0 + i * 10, status=Status.ERROR if i % 3 else Status.OK)
             for i in range(100)]
    assert [a for r in burst for a in bank.observe_request(r) if a.severity is not Severity.INFO] == []
    # The same failure after a minute of healthy history does page.
    warm = DetectorBank.for_requests()
    for i in range(600):
        warm.observe_request(make_request(f"w{i}", ts_ms=t0 + i * 100))
    late = [make_request(f"l{i}", ts_ms=t0 + 60_000 + i * 10, status=Status.ERROR) for i in range(100)]
    assert any(a.severity is Severity.CRITICAL for r in late for a in warm.observe_request(r))
