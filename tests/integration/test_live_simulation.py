"""The simulator's live mode against a real worker: the outage is detected through Kafka."""

from __future__ import annotations

from pathlib import Path

from infra.admin import apply_topics
from infra.settings import Settings
from infra.simulator.kafka_loop import run_live
from infra.simulator.loader import load_scenario
from infra.simulator.offline import run_offline
from tests.integration.worker_proc import running_worker, wait_for_metric


def test_live_outage_is_detected_and_scored_like_offline(settings: Settings, tmp_path: Path) -> None:
    scenario = load_scenario("outage")  # claude-mid fails from 5 m to 13 m of simulated time
    apply_topics(settings)
    with running_worker(settings, tmp_path / "worker.log") as worker:
        result = run_live(settings, scenario, seed=3, duration_s=480, rate=20, speed=40, grace_s=10)
        wait_for_metric(worker, "loopwise_events_in_total", float(result.scorecard["requests"]),
                        topic=settings.topic("requests"))
    card = result.scorecard
    offline = run_offline(scenario, "least-latency", seed=3, duration_s=480, rate=20).scorecard
    assert set(card) == set(offline)  # the same scorecard, whatever the transport
    assert card["requests"] == offline["requests"] and card["dropped"] == 0 and card["privacy_violations"] == 0
    [incident] = card["incidents"]
    assert (incident["kind"], incident["entity"]) == ("outage", "claude-mid")
    assert incident["detected_at"] is not None
    assert 0 <= (incident["detected_at"] - incident["start"]) / 1000 <= 60  # event time, from the worker's anomalies
    assert 0 < card["reward_ratio"] <= 1.05
