"""Workflows as code and canary rollouts live on the broker: YAML files applied with ``loopwise workflows
apply``, a good version stepped up and promoted, a bad one rolled back; compatibility checks and history.

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

import pytest
import yaml

from infra.admin import apply_topics
from processors.workflow_files import as_plain
from infra.settings import Settings
from processors.rollout import assign_version
from schemas.records import (
    Command, FeedbackEvent, FeedbackKind, PrivacyLevel, RequestContext, RequestEvent, RolloutPlan, RolloutStep,
    RolloutVerdict, RouteSpec, Status, WorkflowDefinition,
)
from schemas.serde import make_codec
from schemas.signing import verify
from tests.integration.conftest import consumer_config
from streams.cli import main as loopwise
from tests.integration.worker_proc import partitions_of, read_topic, running_worker

T0 = 1_767_225_600_000
_ROUTE = RouteSpec("gpt", "openai", False, PrivacyLevel.INTERNAL, 0.001, 0.002)
_PLAN = RolloutPlan(steps=(0.4, 0.7, 1.0), step_duration_s=10.0, max_regression=0.25)
_ERRORS = {"good": (0.0, 0.0), "bad": (0.0, 0.3)}  # workflow -> (v1 error rate, v2 error rate)


def _codec(settings: Settings, logical: str, record_type: type) -> Any:
    return make_codec(record_type, topic=settings.topic(logical), registry_url=None, max_event_bytes=1 << 20)


def _definition(workflow: str, version: str, *, with_plan: bool) -> WorkflowDefinition:
    return WorkflowDefinition(workflow, version, 0, (_ROUTE,), context_keys=(), feedback_window_s=10.0,
                              rollout=_PLAN if with_plan else None)


def _write(folder: Path, *definitions: WorkflowDefinition) -> str:
    """Workflow files as a user keeps them in git: one YAML file per workflow."""
    folder.mkdir(parents=True, exist_ok=True)
    for d in definitions:
        (folder / f"{d.workflow}.yaml").write_text(yaml.safe_dump(as_plain(d), sort_keys=False))
    return str(folder)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``loopwise`` run in process against the test's cluster, topic prefix and app id."""
    for name, value in (("KAFKA_BOOTSTRAP_SERVERS", settings.bootstrap_servers or ""),
                        ("LOOPWISE_TOPIC_PREFIX", settings.topic_prefix), ("LOOPWISE_APP_ID", settings.app_id),
                        ("LOOPWISE_OPERATOR", "alice")):
        monkeypatch.setenv(name, value)
    return settings


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


def test_a_good_version_is_promoted_and_a_bad_one_rolled_back(cli_env: Settings, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    settings = cli_env
    apply_topics(settings)
    env = {"LOOPWISE_STAGES": "workflows,correlate,rollout-feed,rollout"}
    with running_worker(settings, tmp_path / "worker.log", env):
        app = App(settings)
        assert loopwise(["workflows", "apply", _write(tmp_path / "v1", *(_definition(wf, "v1", with_plan=False)
                                                                       for wf in _ERRORS))]) == 0
        s = 0
        for s in range(15):  # v1 alone for a while, so both pipelines are warm
            app.second(s)
        v2 = _write(tmp_path / "v2", *(_definition(wf, "v2", with_plan=True) for wf in _ERRORS))
        assert loopwise(["workflows", "validate", v2]) == 0
        assert loopwise(["workflows", "apply", v2]) == 0
        assert "canary rollout starts" in capsys.readouterr().out
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
    capsys.readouterr()
    assert loopwise(["rollout", "status", "bad"]) == 0
    status = capsys.readouterr().out
    assert "bad: v2 at 0%, v1 the rest" in status and "error_rate   fail" in status


def test_files_are_checked_against_the_live_version_and_forced_applies_are_recorded(
        cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    apply_topics(cli_env)
    safe = RouteSpec("local", "vllm", True, PrivacyLevel.RESTRICTED, 0.0001, 0.0001)
    v1 = WorkflowDefinition("wf", "v1", 0, (_ROUTE, safe), context_keys=("task", "tenant"), fallback_route="local")
    assert loopwise(["workflows", "apply", _write(tmp_path / "a", v1)]) == 0
    assert loopwise(["workflows", "apply", _write(tmp_path / "a", v1)]) == 0  # same content: nothing to publish
    assert "unchanged (live v1)" in capsys.readouterr().out
    # v2 drops the only route for restricted data and a context key the segments use.
    v2 = WorkflowDefinition("wf", "v2", 0, (_ROUTE,), context_keys=("task",))
    files = _write(tmp_path / "b", v2)
    assert loopwise(["workflows", "validate", files]) == 1
    out = capsys.readouterr().out
    assert "privacy level restricted is served by v1 (route local) but by no route of v2" in out
    assert "context key 'tenant' removed" in out
    assert loopwise(["workflows", "diff", files]) == 0
    assert "- route local" in capsys.readouterr().out
    assert loopwise(["workflows", "apply", files]) == 1
    assert loopwise(["workflows", "apply", files, "--force"]) == 0
    insights = [orjson.loads(m.value()) for m in read_topic(cli_env, cli_env.topic("insights"), at_least=1)]
    assert [(i["kind"], i["title"]) for i in insights] == [("workflow_forced_apply", "alice forced wf v2 over live v1")]
    # versions are immutable: v2 again with other content is refused
    assert loopwise(["workflows", "apply", _write(tmp_path / "c", WorkflowDefinition("wf", "v2", 0, (safe,)))]) == 1
    assert loopwise(["workflows", "rollback", "wf"]) == 0
    assert "as v1-r1 (live was v2)" in capsys.readouterr().out
    assert loopwise(["workflows", "history", "wf"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["v1", "v2", "v1-r1"]
