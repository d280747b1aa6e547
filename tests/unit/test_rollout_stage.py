"""The rollout stages driven in memory: feed → rollout → steps, splits, a signed rollback, state restored."""

from __future__ import annotations

import random

from infra.settings import Settings
from infra.topics import BY_NAME
from schemas.records import Command, Outcome, RolloutPlan, RolloutStep, RolloutVerdict, Status, WorkflowDefinition
from schemas.serde import json_codec
from schemas.signing import sign
from sinks.prometheus import Metrics
from streams.edge import RawMessage
from streams.stages import StageEnv, WorkflowStage
from streams.stages.rollout import RolloutFeedStage, RolloutStage
from tests.factories import make_route

T0 = 1_700_000_000_000
NOW_MS = T0 + 365 * 86_400_000
PLAN = RolloutPlan(steps=(0.2, 0.5, 1.0), step_duration_s=20.0, max_regression=0.25)


def env() -> StageEnv:
    return StageEnv(Settings(bootstrap_servers="unused:9092", topic_prefix="p."), Metrics(), now_ms=lambda: NOW_MS)


def msg(topic: str, record: object, offset: int = 0, key: str | None = None) -> RawMessage:
    value = json_codec(type(record)).encode(record)
    key = key or str(getattr(record, BY_NAME[topic.removeprefix("p.")].key, ""))
    return RawMessage(topic, 0, offset, key.encode(), value, T0)


def outcomes(s: int, version_of: dict[int, str], error_v2: float, rng: random.Random) -> list[Outcome]:
    out = []
    for j in range(40):
        version = version_of.get(j, "v1")
        failed = version == "v2" and rng.random() < error_v2
        status = Status.ERROR if failed else Status.OK
        ts = T0 + s * 1000
        for is_final in (False, True):
            out.append(Outcome(f"r{s}-{j}", ts, ts, "wf", version, "gpt-large", "all", status,
                               rng.lognormvariate(6.5, 0.3), 0.002, 0.5, 0.5, 0.0, 0.0, 0.0, is_final,
                               1, None if failed or not is_final else float(rng.random() < 0.8)))
    return out


def run(error_v2: float, seconds: int = 200) -> tuple[RolloutStage, list[RolloutStep], list[Command]]:
    e = env()
    WorkflowStage(e).handle([
        msg("p.workflows", WorkflowDefinition("wf", "v1", T0, (make_route(),))),
        msg("p.workflows", WorkflowDefinition("wf", "v2", T0 + 1, (make_route(),), previous_version="v1",
                                              rollout=PLAN), 1)])
    feed, stage = RolloutFeedStage(e), RolloutStage(e)
    steps: list[RolloutStep] = []
    commands: list[Command] = []
    share, rng, offset = 0.0, random.Random(3), 0
    for s in range(seconds):
        version_of = {j: "v2" for j in range(int(40 * share))}
        batch = [msg("p.outcomes", o, offset + i) for i, o in enumerate(outcomes(s, version_of, error_v2, rng))]
        offset += len(batch)
        forwarded = feed.handle(batch)
        assert {o.topic for o in forwarded} == {"p.repartition.rollout"} and forwarded[0].key == b"wf"
        for o in stage.handle([RawMessage(o.topic, 0, i, o.key, o.value, T0) for i, o in enumerate(forwarded)]):
            if o.topic == "p.rollouts.splits":
                split = json_codec(RolloutStep).decode(o.value)
                share = split.traffic_share
            elif o.topic == "p.rollouts":
                steps.append(json_codec(RolloutStep).decode(o.value))
            elif o.topic == "p.commands.remediation":
                commands.append(json_codec(Command).decode(o.value))
    return stage, steps, commands


def test_a_good_canary_steps_up_and_is_promoted() -> None:
    _, steps, commands = run(0.0)
    assert [(str(s.verdict), s.traffic_share) for s in steps][0] == ("continue", 0.2)
    assert ("continue", 0.5) in [(str(s.verdict), s.traffic_share) for s in steps]
    assert steps[-1].verdict is RolloutVerdict.PROMOTE and commands == []


def test_a_bad_canary_is_rolled_back_with_a_signed_command_and_state_survives_a_restart() -> None:
    stage, steps, commands = run(0.3, seconds=120)
    assert steps[-1].verdict is RolloutVerdict.ROLLBACK and steps[-1].traffic_share == 0.0
    assert [c.action for c in commands] == ["rollback"]
    restored = RolloutStage(stage.env)
    restored.restore(0, [(k, v) for _, k, v in RolloutStage(stage.env).state_changes()] or [])
    changes = [(k, v) for p, k, v in stage.state_changes()]
    stage.controller.changed.add("wf")
    changes = [(k, v) for p, k, v in stage.state_changes()]
    restored.restore(0, changes)
    assert restored.controller.rollouts["wf"].to_dict() == stage.controller.rollouts["wf"].to_dict()


def test_control_commands_must_be_signed() -> None:
    e = env()
    stage = RolloutStage(e)
    forged = Command("c1", T0, "wf", "abort", "ops", "{}", T0 + 60_000, "mallory", "deadbeef")
    out = stage.handle([msg("p.rollouts.control", forged, key="wf")])
    assert [o.topic for o in out] == ["p.dlq"]
    good = sign(forged, e.settings.signing_key_bytes)
    assert [o.topic for o in stage.handle([msg("p.rollouts.control", good, 1, key="wf")])] == []  # nothing running


def test_route_answers_carry_the_version_the_split_assigns_and_agree_with_the_version_book() -> None:
    from processors.rollout import VersionBook
    from schemas.records import RequestContext, RouteDecision, RouteRequest
    from streams.stages import RouteStage

    e = env()
    stage = RouteStage(e)
    from schemas.records import FlagShare, FlagSpec

    flags = (FlagSpec("beta", rollout=(FlagShare("on", 0.5),), sticky_by="user"),)
    v1 = WorkflowDefinition("wf", "v1", T0, (make_route(),), flags=flags)
    v2 = WorkflowDefinition("wf", "v2", T0 + 1, (make_route(),), previous_version="v1",
                            rollout=RolloutPlan(sticky_by="user"), flags=flags)
    split = RolloutStep("wf", "v2", T0 + 2, 0, 0.3, RolloutVerdict.CONTINUE, "", "{}", baseline_version="v1")
    book = VersionBook()

    calls = [0]

    def answers(n: int) -> list[str | None]:
        calls[0] += 1
        requests = [RouteRequest(f"r{calls[0]}-{i}", T0 + 10, "wf", RequestContext("t", "chat", user_id=f"u{i % 50}"))
                    for i in range(n)]
        out = stage.handle([msg("p.route.requests", r, calls[0] * 1000 + i) for i, r in enumerate(requests)])
        decisions = [json_codec(RouteDecision).decode(o.value) for o in out]
        got = [d.workflow_version for d in decisions]
        assert got == [book.version_for("wf", r.context, r.request_id) for r in requests]
        assert [dict(d.flags) for d in decisions] == [book.flags_for("wf", r.context, r.request_id) for r in requests]
        assert {d.flags["beta"] for d in decisions} == {"on", "off"}
        return got

    stage.handle_side([msg("p.workflows", v1)])
    book.update_workflow(v1)
    assert set(answers(20)) == {"v1"}
    stage.handle_side([msg("p.workflows", v2, 1)])  # planned, canary not started: traffic stays on v1
    book.update_workflow(v2)
    assert set(answers(20)) == {"v1"}
    stage.handle_side([msg("p.rollouts.splits", split, key="wf")])
    book.update(split)
    got = answers(400)
    assert 0.15 < got.count("v2") / 400 < 0.45
    by_user: dict[str, set[str | None]] = {}
    for i, version in enumerate(got):
        by_user.setdefault(f"u{i % 50}", set()).add(version)
    assert all(len(v) == 1 for v in by_user.values())  # sticky by user
