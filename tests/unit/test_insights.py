"""Insights: error patterns, satisfaction root causes and cache opportunities, in memory."""

from __future__ import annotations

import orjson

from infra.settings import Settings
from infra.simulator.insight_logs import error_logs, grouping_accuracy
from infra.simulator.insight_truth import cache_requests, satisfaction_outcomes
from processors.insights.cache import CacheConfig, CacheDetector
from processors.insights.classes import ErrorClass, classify
from processors.insights.patterns import ErrorLine, PatternConfig, PatternMiner
from processors.insights.satisfaction import SatisfactionMonitor, rank_causes
from schemas.records import Anomaly, Insight, LogEvent, LogLevel, Outcome, Status
from schemas.serde import json_codec
from sinks.prometheus import Metrics
from streams.edge import RawMessage
from streams.stages import PatternStage, SatisfactionStage, StageEnv
from tests.factories import make_request

T0 = 1_700_000_000_000


def _line(ts_ms: int, message: str, route: str = "gpt-large") -> ErrorLine:
    return ErrorLine(ts_ms, message, "gateway-1", route, "support-bot")


def test_masks_group_ids_numbers_ips_paths_and_uuids_into_one_template() -> None:
    miner = PatternMiner()
    a = miner.observe(_line(T0, "upstream returned 503 from 10.0.0.1 for req-8f3a21 at /srv/a/b.json id "
                                "1b4e28ba-2fa1-11d2-883f-0016d3cca427 key 0xdeadbeef"))
    b = miner.observe(_line(T0, "upstream returned 502 from 10.9.8.7 for req-000001 at /tmp/x/y.json id "
                                "6fa459ea-ee8a-3ca4-894e-db77e160355e key 0x10"))
    assert a == b
    assert miner.template(a) == "upstream returned <NUM> from <IP> for <ID> at <PATH> id <UUID> key <HEX>"


def test_grouping_accuracy_on_the_simulators_templates() -> None:
    lines = error_logs(3, 2_000)
    miner = PatternMiner()
    predicted = [miner.observe(_line(x.event.ts_ms, x.event.message, x.event.route or "")) for x in lines]
    assert grouping_accuracy(predicted, [x.template_id for x in lines]) >= 0.95


def test_classes_and_their_recommendations() -> None:
    assert classify("prompt is too long: 9000 tokens exceeds the maximum context length") is ErrorClass.CONTEXT_LENGTH
    assert classify("could not parse model output as JSON") is ErrorClass.MALFORMED_OUTPUT
    assert classify("authentication failed: 401 invalid api key") is ErrorClass.AUTH
    assert classify("something odd") is ErrorClass.OTHER


def test_new_and_rising_patterns_become_anomalies_and_reports_insights() -> None:
    miner = PatternMiner(PatternConfig(warmup_ms=600_000, min_new=3, min_rise=10, report_ms=1_800_000))
    for i in range(20):  # a usual error, steady from the start (not "new": inside the warm-up)
        miner.observe(_line(T0 + i * 60_000, f"upstream returned 503 Service Unavailable from 10.0.0.{i}"))
    anomalies, _ = miner.advance(T0 + 20 * 60_000)
    assert anomalies == []
    start = T0 - T0 % 300_000 + 20 * 60_000  # window-aligned, after the warm-up
    for i in range(5):  # a new pattern
        miner.observe(_line(start + i * 1_000, f"rate limit exceeded for tenant acme: 429, retry {i}s", route="claude"))
    anomalies, _ = miner.advance(start + 300_000)
    assert [(a.entity, a.entity_kind, a.signal) for a in anomalies] == [("claude", "route", "error_pattern.new.rate_limit")]
    for w in range(1, 4):  # steady at 5 per window, then a burst of 40
        for i in range(40 if w == 3 else 5):
            miner.observe(_line(start + w * 300_000 + i * 1_000, f"rate limit exceeded for tenant acme: 429, retry {i}s",
                                route="claude"))
    anomalies, insights = miner.advance(start + 4 * 300_000)
    assert [(a.signal, a.value, a.expected_high) for a in anomalies] == [("error_pattern.rising.rate_limit", 40.0, 5.0)]
    kinds = sorted(i.kind for i in insights)
    assert kinds == ["error_pattern", "error_pattern", "error_summary"]
    limited = next(i for i in insights if i.evidence.get("class") == "rate_limit")
    assert limited.recommendation is not None and "claude" in limited.recommendation
    assert limited.evidence["by_route"] == "claude=55"


def test_pattern_state_round_trips_through_plain_json() -> None:
    miner = PatternMiner(PatternConfig(warmup_ms=0))
    for i in range(10):
        miner.observe(_line(T0 + i, f"upstream timeout after {i * 100}ms calling gpt-large"))
    saved = [orjson.loads(orjson.dumps(s)) for _cid, s in miner.drain_dirty()]
    clock = orjson.loads(orjson.dumps(miner.clock()))
    again = PatternMiner(PatternConfig(warmup_ms=0))
    for state in saved:
        again.load_template(state)
    again.load_clock(clock)
    cid = again.observe(_line(T0 + 20, "upstream timeout after 123ms calling gpt-large"))
    assert cid == saved[0]["cid"] and again.patterns[cid].total == 11
    assert again.miner.drain.id_to_cluster[cid].size == 11


def test_pattern_stage_mines_logs_and_request_errors_and_restores() -> None:
    env = StageEnv(Settings(bootstrap_servers="unused:9092", topic_prefix="p."), Metrics(), now_ms=lambda: T0 * 2)
    stage = PatternStage(env)
    log_codec, req_codec = json_codec(LogEvent), json_codec(type(make_request()))
    batch = [RawMessage("p.logs", 0, i, b"gw", log_codec.encode(LogEvent(
        "gw", T0 + i * 1000, LogLevel.ERROR, f"upstream timeout after {i}ms calling x", route="x")), T0)
        for i in range(5)]
    batch.append(RawMessage("p.requests", 0, 0, b"r", req_codec.encode(make_request(
        "r", ts_ms=T0 + 20 * 60_000, status=Status.ERROR, error_type="timeout",
        error_message="upstream timeout after 7ms calling x")), T0))
    out = stage.handle(batch)
    insights = [json_codec(Insight).decode(o.value) for o in out if o.topic == "p.insights"]
    assert [i.kind for i in insights] == ["error_pattern", "error_summary"]
    assert insights[0].evidence["lines"] == "6"
    changes = stage.state_changes()
    fresh = PatternStage(env)
    fresh.restore(0, [(key, value) for _p, key, value in changes])
    assert fresh.miner.patterns.keys() == stage.miner.patterns.keys()
    assert fresh.miner.clock() == stage.miner.clock()
    assert all(o.topic != "p.anomalies" or json_codec(Anomaly).decode(o.value) for o in out)


def test_satisfaction_root_cause_names_the_regressed_route() -> None:
    outcomes, truth = satisfaction_outcomes(11, "route", duration_ms=4_800_000, drop_at_ms=3_900_000,
                                           rate_per_s=2, drop=0.5)
    assert truth is not None
    monitor = SatisfactionMonitor()
    found = []
    for outcome in outcomes:
        monitor.observe(outcome)
        found += [i for i in monitor.advance() if i.kind == "root_cause"]
    assert found, "the drop was not detected"
    assert found[0].evidence["cause_1"].startswith(f"route={truth.value} ")
    assert found[0].ts_ms - truth.start_ms <= 15 * 60_000
    assert found[0].recommendation is not None and truth.value in found[0].recommendation


def test_mix_shift_is_told_apart_from_a_regression() -> None:
    cur = {("all", "", "k"): [100.0, 55.0, 55.0], ("tenant", "a", "k"): [50.0, 10.0, 10.0],
           ("tenant", "b", "k"): [50.0, 45.0, 45.0]}
    old = {("all", "", "k"): [100.0, 83.0, 83.0], ("tenant", "a", "k"): [10.0, 2.0, 2.0],
           ("tenant", "b", "k"): [90.0, 81.0, 81.0]}
    top = rank_causes(cur, old, "k", 1)[0]
    assert (top["value"], top["kind"]) == ("a", "mix shift")


def test_healthy_traffic_yields_no_root_cause_and_sets_gauges() -> None:
    outcomes, _ = satisfaction_outcomes(5, None, duration_ms=4_500_000, rate_per_s=1)
    env = StageEnv(Settings(bootstrap_servers="unused:9092", topic_prefix="p."), Metrics(), now_ms=lambda: T0 * 2)
    stage = SatisfactionStage(env)
    codec = json_codec(Outcome)
    out = []
    for i in range(0, len(outcomes), 1000):
        out += stage.handle([RawMessage("p.outcomes", 0, j, o.request_id.encode(), codec.encode(o), T0)
                             for j, o in enumerate(outcomes[i:i + 1000], start=i)])
    kinds = {json_codec(Insight).decode(o.value).kind for o in out if o.topic == "p.insights"}
    assert kinds == {"satisfaction_kpis"}
    assert 0.5 < env.metrics.value("loopwise_satisfaction", workflow="support-bot", kpi="thumbs_up_rate") < 0.9
    changes = stage.state_changes()
    assert changes and orjson.loads(changes[-1][2] or b"{}")["buckets"]


def test_cache_savings_match_the_truth_and_state_round_trips() -> None:
    requests, truth = cache_requests(2, 4_000)
    detector = CacheDetector(CacheConfig(report_ms=10 ** 12, min_hits=1))
    for request in requests[:2_000]:
        detector.observe(request)
    again = CacheDetector(CacheConfig(report_ms=10 ** 12, min_hits=1))
    again.restore(orjson.loads(orjson.dumps(detector.snapshot())))
    for request in requests[2_000:]:
        again.observe(request)
    assert abs(again.totals["faq-bot"]["saved_usd"] / truth.saved_usd - 1) < 0.10
    again.config = CacheConfig(report_ms=1, min_hits=1)
    (insight,) = again.advance()
    assert insight.kind == "cache_opportunity" and float(insight.evidence["hit_potential"]) > 0.1


def test_a_partition_not_read_yet_holds_the_satisfaction_clock() -> None:
    outcomes, _ = satisfaction_outcomes(4, None, duration_ms=1_800_000, rate_per_s=1)
    monitor = SatisfactionMonitor()
    monitor.expect(0)
    monitor.expect(1)
    for outcome in outcomes[:1_000]:
        monitor.observe(outcome, 0)
    assert monitor.clock_ms == 0  # partition 1 may still hold outcomes of these buckets
    monitor.observe(outcomes[1_000], 1)
    for outcome in outcomes[1_001:1_100]:
        monitor.observe(outcome, 0)
    assert monitor.clock_ms >= outcomes[1_000].request_ts_ms
