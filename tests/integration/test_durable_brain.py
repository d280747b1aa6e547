"""The deciding state, live: quiet traffic still closes windows; a restart keeps what was learned.

Both run a real worker on the broker. Quiet traffic: 180 requests spread over
3 hours of event time and nothing else; every request's final outcome must
come within its feedback window plus the idle timeout. Restart: a worker
learns policies and declares an experiment winner, stops, and a new one starts
on the same changelogs; the newest policy and decision on the compacted topics
must still be the learned ones (no prior-based policy, no "running" over the
winner), and the restored worker's next decisions build on them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import ExperimentSpec, VariantSpec
from tests.factories import make_feedback, make_request, make_workflow
from tests.conftest import wait_until
from tests.integration.conftest import produce_messages
from tests.integration.worker_proc import decoded, read_topic, running_worker

_HOUR_MS = 3_600_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _finals(settings: Settings, at_least: int, timeout_s: float) -> dict[str, dict[str, Any]]:
    outcomes = decoded(read_topic(settings, settings.topic("outcomes"), at_least=at_least, timeout_s=timeout_s))
    return {o["request_id"]: o for o in outcomes if o["is_final"]}


def test_quiet_traffic_gets_every_final_outcome_within_window_plus_idle_timeout(settings: Settings,
                                                                              tmp_path: Path) -> None:
    window_s, idle_s = 20.0, 5.0
    apply_topics(settings)
    produce_messages(settings, settings.topic("workflows"), [make_workflow(feedback_window_s=window_s)],
                     key=lambda w: w.workflow)
    end_ms = _now_ms()
    start_ms = end_ms - 3 * _HOUR_MS
    requests = [make_request(f"q{i}", ts_ms=start_ms + i * 60_000) for i in range(180)]  # one a minute
    with running_worker(settings, tmp_path / "worker.log", {"LOOPWISE_IDLE_TIMEOUT_S": str(idle_s),
                                                           "LOOPWISE_STAGES": "correlate"}) as worker:
        produce_messages(settings, settings.topic("requests"), requests, key=lambda r: r.request_id)
        sent_s = time.monotonic()
        finals: dict[str, dict[str, Any]] = {}

        def all_final() -> bool:
            assert worker.is_running, worker.log_tail()
            finals.update(_finals(settings, 0, timeout_s=15.0))
            return len(finals) == len(requests)

        # Generous: a group join (~3 s) and the broker's pace come before the idle timer starts.
        wait_until(all_final, timeout_s=window_s + idle_s + 45.0, interval_s=1.0,
                   message=lambda: f"{len(finals)} of {len(requests)} final outcomes")
        waited_s = time.monotonic() - sent_s
    assert set(finals) == {r.request_id for r in requests}
    # Nothing but the idle timer could close the last windows: the newest request is younger than its window.
    assert waited_s >= idle_s
    assert all(o["quality"] is None or 0.0 <= o["quality"] <= 1.0 for o in finals.values())


def test_restart_keeps_the_learned_policy_and_the_declared_winner_on_the_compacted_topics(settings: Settings,
                                                                                       tmp_path: Path) -> None:
    workflow = make_workflow(feedback_window_s=1.0, variants=(VariantSpec("a", is_control=True), VariantSpec("b")),
                             experiment=ExperimentSpec("tone"))
    apply_topics(settings)
    produce_messages(settings, settings.topic("workflows"), [workflow], key=lambda w: w.workflow)
    t0 = _now_ms() - _HOUR_MS
    # Variant b is clearly better; route gpt-large serves every request.
    requests = [make_request(f"r{i}", ts_ms=t0 + i * 500, variant="ab"[i % 2]) for i in range(3000)]
    feedback = [make_feedback(f"r{i}", ts_ms=t0 + i * 500 + 100, kind="thumbs", value=float(i % 2 == 1 or i % 7 == 0),
                              feedback_id=f"f{i}") for i in range(3000)]
    stages = {"LOOPWISE_STAGES": "correlate,learn"}
    with running_worker(settings, tmp_path / "first.log", stages):
        produce_messages(settings, settings.topic("feedback"), feedback, key=lambda f: f.request_id)
        produce_messages(settings, settings.topic("requests"), requests, key=lambda r: r.request_id)

        def winner_declared() -> bool:
            decisions = decoded(read_topic(settings, settings.topic("decisions.experiments"), timeout_s=15.0))
            return any(d["winner"] == "b" for d in decisions)

        wait_until(winner_declared, timeout_s=90.0, interval_s=1.0, message=lambda: "no winner declared")
    learned = _latest(decoded(read_topic(settings, settings.topic("decisions.routing"), at_least=1)))
    decided = decoded(read_topic(settings, settings.topic("decisions.experiments"), at_least=1))
    assert decided[-1]["winner"] == "b"
    n_before = len(decided)

    # Over 5 min of event time, so the policies are due their heartbeat (300 s) whatever they learn.
    later = [make_request(f"s{i}", ts_ms=t0 + 1_501_000 + i * 500, variant="b") for i in range(800)]
    with running_worker(settings, tmp_path / "second.log", stages):
        produce_messages(settings, settings.topic("requests"), later, key=lambda r: r.request_id)

        wait_until(lambda: _has_newer(settings, learned), timeout_s=60.0, interval_s=1.0, message=lambda: "no policy after the restart")
    after = decoded(read_topic(settings, settings.topic("decisions.experiments"), at_least=n_before))
    assert all(d["status"] != "running" and d["winner"] == "b" for d in after[n_before:]), after[n_before:]
    newest = _latest(decoded(read_topic(settings, settings.topic("decisions.routing"), at_least=1)))
    for segment, policy in newest.items():
        before = learned.get(segment)
        if before is None:
            continue
        assert policy["policy_version"] >= before["policy_version"]
        evidence_before = sum(r["n"] for r in before["routes"])
        assert sum(r["n"] for r in policy["routes"]) >= evidence_before > 0  # built on, not from priors


def _latest(policies: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in policies:
        out[p["segment"]] = p  # the compacted view: the last record per key
    return out


def _has_newer(settings: Settings, learned: dict[str, dict[str, Any]]) -> bool:
    newest = _latest(decoded(read_topic(settings, settings.topic("decisions.routing"), timeout_s=15.0)))
    return any(newest[s]["ts_ms"] > p["ts_ms"] for s, p in learned.items() if s in newest)
