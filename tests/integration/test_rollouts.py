"""Canary rollouts live on the broker: a good version is stepped up and promoted, a bad one rolled back.

One worker (workflows, correlate, rollout-feed, rollout) and two workflows at once.
The test plays the application: every request runs under the version the
published split (``lw.rollouts.splits``) assigns it, through the same
``assign_version`` the route stage and ``RoutingClient`` use, and reports it.
Event time advances one second per round, far faster than the wall clock.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer

from infra.admin import apply_topics
from infra.settings import Settings
from processors.rollout import assign_version
from schemas.records import (
    Command, FeedbackEvent, FeedbackKind, PrivacyLevel, RequestContext, RequestEvent, RolloutPlan, RolloutStep,
    RolloutVerdict, RouteSpec, Status, WorkflowDefinition,
)
from schemas.serde import make_codec
from schemas.signing import verify
from tests.integration.conftest import consumer_config
from tests.integration.worker_proc import partitions_of, read_topic, running_worker

T0 = 1_767_225_600_000
_ROUTE = RouteSpec("gpt", "openai", False, PrivacyLevel.INTERNAL, 0.001, 0.002)
_PLAN = RolloutPlan(steps=(0.4, 0.7, 1.0), step_duration_s=10.0, max_regression=0.25)
_ERRORS = {"good": (0.0, 0.0), "bad": (0.0, 0.3)}  # workflow -> (v1 error rate, v2 error rate)


def _codec(settings: Settings, logical: str, record_type: type) -> Any:
    return make_codec(record_type, topic=settings.topic(logical), registry_url=None, max_event_bytes=1 << 20)


def _definition(workflow: str, version: str, ts_ms: int, *, with_plan: bool) -> WorkflowDefinition:
    return WorkflowDefinition(workflow, version, ts_ms, (_ROUTE,), context_keys=(), feedback_window_s=10.0,
                              previous_version="v1" if with_plan else None, rollout=_PLAN if with_plan else None)


class App:
    """The application side: produces requests and feedback under the split it follows."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer({**settings.kafka_config(), "linger.ms": 5})
        self.codecs = {name: _codec(settings, name, t) for name, t in
                       (("requests", RequestEvent), ("feedback", FeedbackEvent), ("workflows", WorkflowDefinition),
                        ("rollouts.splits", RolloutStep), ("rollouts", RolloutStep))}
        self.splits: dict[str, RolloutStep] = {}
        self.steps: list[RolloutStep] = []
        self.served: dict[str, dict[str, int]] = {wf: {} for wf in _ERRORS}
        self.rng = random.Random(7)
        self.consumer = Consumer(consumer_config(settings))
        deadline = time.monotonic() + 20
        self.consumer.assign(partitions_of(self.consumer, settings.topic("rollouts.splits"), deadline)
                             + partitions_of(self.consumer, settings.topic("rollouts"), deadline)
                             + partitions_of(self.consumer, settings.topic("outcomes"), deadline))
        self.outcomes_ms = 0  # newest request time among the outcomes seen: how far the worker got

    def publish(self, logical: str, key: str, record: Any) -> None:
        self.producer.produce(self.settings.topic(logical), key=key.encode(), value=self.codecs[logical].encode(record))

    def second(self, s: int) -> None:
        ts = T0 + s * 1000
        for wf, (err_v1, err_v2) in _ERRORS.items():
            for j in range(16):
                rid = f"{wf}-{s}-{j}"
                version = assign_version(self.splits.get(wf), RequestContext("t", "chat"), rid, default="v1") or "v1"
                self.served[wf][version] = self.served[wf].get(version, 0) + 1
                failed = self.rng.random() < (err_v2 if version == "v2" else err_v1)
                self.publish("requests", rid, RequestEvent(
                    rid, ts, wf, version, "gpt", RequestContext("t", "chat"), self.rng.lognormvariate(6.5, 0.3),
                    0.002, 500, 200, Status.ERROR if failed else Status.OK))
                if not failed:
                    good = self.rng.random() < 0.8
                    self.publish("feedback", rid, FeedbackEvent(f"f-{rid}", rid, ts + 2000, FeedbackKind.THUMBS,
                                                                1.0 if good else 0.0, wf))
        self.producer.flush(10)

    def follow(self) -> None:
        for message in self.consumer.consume(500, 0.01):
            if message.error() is not None or message.value() is None:
                continue
            if message.topic() == self.settings.topic("outcomes"):
                self.outcomes_ms = max(self.outcomes_ms, orjson.loads(message.value())["request_ts_ms"])
                continue
            logical = "rollouts.splits" if message.topic() == self.settings.topic("rollouts.splits") else "rollouts"
            step = self.codecs[logical].decode(message.value())
            if logical == "rollouts.splits":
                self.splits[step.workflow] = step
            else:
                self.steps.append(step)

    def final(self, wf: str) -> RolloutStep | None:
        return next((s for s in self.steps if s.workflow == wf
                     and s.verdict in (RolloutVerdict.PROMOTE, RolloutVerdict.ROLLBACK)), None)


def test_a_good_version_is_promoted_and_a_bad_one_rolled_back(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    env = {"LOOPWISE_STAGES": "workflows,correlate,rollout-feed,rollout"}
    with running_worker(settings, tmp_path / "worker.log", env):
        app = App(settings)
        for wf in _ERRORS:
            app.publish("workflows", wf, _definition(wf, "v1", T0 - 60_000, with_plan=False))
        s = 0
        for s in range(15):  # v1 alone for a while, so both pipelines are warm
            app.second(s)
        for wf in _ERRORS:
            app.publish("workflows", wf, _definition(wf, "v2", T0 + s * 1000, with_plan=True))
        deadline = time.monotonic() + 60
        while not (app.final("good") and app.final("bad")) and time.monotonic() < deadline:
            s += 1
            app.second(s)
            app.follow()
            while app.outcomes_ms < T0 + (s - 3) * 1000 and time.monotonic() < deadline:
                app.follow()  # the worker shares two busy cores: never run more than 3 s ahead of it
        if not (app.final("good") and app.final("bad")):
            rep = read_topic(settings, settings.topic("repartition.rollout"), timeout_s=10)
            outs = read_topic(settings, settings.topic("outcomes"), timeout_s=10)
            print("no verdict by event second", s, "repartition", len(rep), "outcomes", len(outs), app.served, app.splits)
            print(rep[-1].value()[:400] if rep else None)
        assert app.final("good") is not None and app.final("bad") is not None, \
            [(x.workflow, str(x.verdict), x.traffic_share, x.reason) for x in app.steps]

    good = [x for x in app.steps if x.workflow == "good"]
    assert [x.traffic_share for x in good if x.verdict is RolloutVerdict.CONTINUE][:2] == [0.4, 0.7]
    assert good[-1].verdict is RolloutVerdict.PROMOTE and good[-1].traffic_share == 1.0
    assert all(x.verdict is not RolloutVerdict.ROLLBACK for x in good)
    bad = app.final("bad")
    assert bad is not None and bad.verdict is RolloutVerdict.ROLLBACK and bad.traffic_share == 0.0
    assert "error_rate" in bad.reason and bad.baseline_version == "v1"
    # The split reverted: requests after the rollback run under v1 again; the signed command went out.
    app.follow()
    assert app.splits["bad"].traffic_share == 0.0 and app.splits["good"].traffic_share == 1.0
    commands = [_codec(settings, "commands.remediation", Command).decode(m.value())
                for m in read_topic(settings, settings.topic("commands.remediation"), at_least=1)]
    (rollback,) = [c for c in commands if c.action == "rollback"]
    assert rollback.target == "bad" and rollback.params["version"] == "v2" and verify(rollback, settings.signing_key_bytes) is None
    assert app.served["bad"]["v2"] < 0.3 * app.served["bad"]["v1"]
