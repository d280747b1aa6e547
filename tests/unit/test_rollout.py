"""Canary rollouts: version assignment, per-metric verdicts, and the controller's steps, rollbacks and controls."""

from __future__ import annotations

import random
from dataclasses import replace

import orjson
import pytest

from processors.rollout import (
    Judgement, RolloutController, RolloutStatus, VerdictConfig, VersionSample, assign_version, bucket, judge,
)
from schemas.records import (
    Command, Outcome, RequestContext, RolloutPlan, RolloutStep, RolloutVerdict, Status, WorkflowDefinition,
)
from schemas.signing import sign, verify
from tests.factories import make_route

KEY = b"k" * 32
T0 = 1_700_000_000_000
PLAN = RolloutPlan(steps=(0.1, 0.5, 1.0), step_duration_s=60.0, max_regression=0.05)
#: Wider margins than the defaults so a few thousand simulated requests decide (unit tests stay fast).
CONFIG = VerdictConfig(min_samples=100, error_margin=0.03, latency_margin=0.08)


def _definitions() -> tuple[WorkflowDefinition, WorkflowDefinition]:
    v1 = WorkflowDefinition("wf", "v1", T0, (make_route(),))
    return v1, WorkflowDefinition("wf", "v2", T0 + 1, (make_route(),), previous_version="v1", rollout=PLAN)


def _outcome(i: int, ts: int, version: str, *, is_final: bool, error: bool, latency: float, cost: float,
             quality: float | None) -> Outcome:
    return Outcome(f"r{i}", ts, ts, "wf", version, "gpt-large", "all", Status.ERROR if error else Status.OK,
                   latency, cost, 0.5, 0.5, 0.0, 0.0, 0.0, is_final, 1 if quality is not None else 0, quality)


def drive(controller: RolloutController, seconds: int, *, rate: int = 20, seed: int = 1, q_delta: float = 0.0,
          err_add: float = 0.0, lat_mult: float = 1.0, start_s: int = 0) -> list[RolloutStep]:
    """Requests at ``rate``/s, each under the version the current split assigns; its final outcome 30 s later."""
    rng, steps, finals = random.Random(seed), [], []
    for s in range(start_s, start_s + seconds):
        now = T0 + s * 1000
        split = controller.split("wf")
        for j in range(rate):
            i = s * rate + j
            version = assign_version(split, RequestContext("t", "chat"), f"r{i}", default="v1") or "v1"
            bad = version == "v2"
            error = rng.random() < 0.01 + (err_add if bad else 0.0)
            latency = rng.lognormvariate(7.0, 0.35) * (lat_mult if bad else 1.0)
            quality = min(1.0, max(0.0, rng.gauss(0.8 + (q_delta if bad else 0.0), 0.15)))
            controller.observe(_outcome(i, now, version, is_final=False, error=error, latency=latency,
                                        cost=0.002 * rng.uniform(0.8, 1.2), quality=None))
            finals.append((now + 30_000, i, version, error, latency, quality))
        while finals and finals[0][0] <= now:
            ts, i, version, error, latency, quality = finals.pop(0)
            controller.observe(_outcome(i, ts - 30_000, version, is_final=True, error=error, latency=latency,
                                        cost=0.002, quality=quality))
        steps.extend(controller.advance(now).steps)
    return steps


def _started(seed: int = 1) -> RolloutController:
    controller = RolloutController(KEY, "test", CONFIG, eval_every_ms=5_000)
    v1, v2 = _definitions()
    assert controller.on_definition(v1, T0).steps == ()
    first = controller.on_definition(v2, T0)
    assert [(s.version, s.baseline_version, s.traffic_share) for s in first.steps] == [("v2", "v1", 0.1)]
    return controller


def test_a_good_canary_steps_through_the_plan_and_is_promoted() -> None:
    controller = _started()
    steps = drive(controller, 500)
    verdicts = [(s.verdict, s.traffic_share) for s in steps]
    assert (RolloutVerdict.CONTINUE, 0.5) in verdicts
    assert verdicts[-1] == (RolloutVerdict.PROMOTE, 1.0)
    assert RolloutVerdict.ROLLBACK not in {v for v, _ in verdicts}
    assert controller.rollouts["wf"].status is RolloutStatus.PROMOTED
    assert assign_version(controller.split("wf"), RequestContext("t", "x"), "any") == "v2"


def test_more_errors_roll_back_at_the_first_step_with_evidence_and_the_split_reverts() -> None:
    controller = _started()
    steps = drive(controller, 300, err_add=0.15)
    rollback = steps[-1]
    assert rollback.verdict is RolloutVerdict.ROLLBACK and rollback.traffic_share == 0.0 and rollback.step == 0
    metrics = {m["metric"]: m["judgement"] for m in orjson.loads(rollback.evidence)["metrics"]}
    assert metrics["error_rate"] == "fail"
    assert assign_version(controller.split("wf"), RequestContext("t", "x"), "any") == "v1"


def test_rollback_command_is_signed_and_names_the_versions() -> None:
    controller = _started()
    for s in range(300):
        drive(controller, 1, start_s=s)
        out = controller.advance(T0 + s * 1000)
        if s == 150:
            out = controller.control(_control("abort"), T0 + s * 1000)
            break
    (command,) = out.commands
    assert verify(command, KEY) is None
    assert (command.action, command.target, command.params["version"], command.params["to_version"]) == \
        ("rollback", "wf", "v2", "v1")


def test_a_quality_regression_rolls_back_on_quality() -> None:
    controller = _started()
    steps = drive(controller, 400, q_delta=-0.12)
    assert steps[-1].verdict is RolloutVerdict.ROLLBACK
    failed = [m["metric"] for m in orjson.loads(steps[-1].evidence)["metrics"] if m["judgement"] == "fail"]
    assert "quality" in failed


def test_a_slower_tail_fails_the_p95_quantile_test() -> None:
    controller = _started()
    steps = drive(controller, 400, lat_mult=1.5)
    assert steps[-1].verdict is RolloutVerdict.ROLLBACK
    failed = [m["metric"] for m in orjson.loads(steps[-1].evidence)["metrics"] if m["judgement"] == "fail"]
    assert failed == ["latency_p95"]


@pytest.mark.parametrize("seed", range(3))
def test_an_equal_canary_is_never_rolled_back(seed: int) -> None:
    controller = _started()
    steps = drive(controller, 300, seed=seed)
    assert RolloutVerdict.ROLLBACK not in {s.verdict for s in steps}


def test_below_the_minimum_samples_nothing_is_judged() -> None:
    b, c = VersionSample(), VersionSample()
    for i in range(50):
        for sample in (b, c):
            sample.observe(_outcome(i, T0, "v", is_final=False, error=True, latency=10.0, cost=1.0, quality=None))
    assert {v.judgement for v in judge(b, c, 0.05)} == {Judgement.PENDING}
    controller = _started()
    assert drive(controller, 2, rate=10) == []


def _control(action: str) -> Command:
    return sign(Command(f"c-{action}", T0, "wf", action, "ops", "{}", T0 + 60_000, "alice", ""), KEY)


def test_pause_holds_the_step_resume_continues_abort_rolls_back_promote_promotes() -> None:
    controller = _started()
    assert controller.control(_control("pause"), T0).steps[0].verdict is RolloutVerdict.HOLD
    steps = drive(controller, 200)
    assert controller.rollouts["wf"].step == 0 and all(s.verdict is not RolloutVerdict.CONTINUE for s in steps)
    assert controller.control(_control("resume"), T0 + 200_000).steps[0].verdict is RolloutVerdict.CONTINUE
    abort = controller.control(_control("abort"), T0 + 201_000)
    assert abort.steps[0].verdict is RolloutVerdict.ROLLBACK and abort.commands[0].action == "rollback"
    assert controller.control(_control("promote"), T0 + 202_000).steps == ()  # nothing active any more
    other = _started()
    promoted = other.control(_control("promote"), T0)
    assert promoted.steps[0].verdict is RolloutVerdict.PROMOTE and promoted.steps[0].traffic_share == 1.0


def test_snapshot_and_restore_continue_the_same_rollout() -> None:
    controller = _started()
    drive(controller, 100)
    restored = RolloutController(KEY, "test", CONFIG, eval_every_ms=5_000)
    for workflow in controller.drain_changed():
        snapshot = controller.snapshot(workflow)
        assert snapshot is not None
        restored.restore(workflow, orjson.loads(orjson.dumps(snapshot)))
    assert restored.rollouts["wf"].to_dict() == controller.rollouts["wf"].to_dict()
    assert restored.on_definition(_definitions()[1], T0 + 100_000).steps == ()  # known version: no restart
    assert drive(restored, 300, start_s=100) == drive(controller, 300, start_s=100)


def test_a_new_version_without_plan_replaces_a_rolled_back_split() -> None:
    controller = _started()
    controller.control(_control("abort"), T0)
    v3 = WorkflowDefinition("wf", "v3", T0 + 5, (make_route(),), previous_version="v2")
    (step,) = controller.on_definition(v3, T0 + 10).steps
    assert (step.version, step.traffic_share) == ("v3", 1.0)
    assert assign_version(step, RequestContext("t", "x"), "r") == "v3"


def test_assignment_is_sticky_and_raising_the_share_only_moves_units_to_the_canary() -> None:
    split = RolloutStep("wf", "v2", T0, 0, 0.05, RolloutVerdict.CONTINUE, "", "{}", baseline_version="v1")
    ctxs = [RequestContext("t", "chat", user_id=f"u{i}") for i in range(2000)]
    small = [assign_version(split, c, f"r{i}", "user") for i, c in enumerate(ctxs)]
    again = [assign_version(split, c, f"other{i}", "user") for i, c in enumerate(ctxs)]
    large = [assign_version(replace(split, traffic_share=0.5), c, f"r{i}", "user") for i, c in enumerate(ctxs)]
    assert small == again
    assert 0.03 < small.count("v2") / 2000 < 0.07 and 0.45 < large.count("v2") / 2000 < 0.55
    assert all(b == "v2" for a, b in zip(small, large) if a == "v2")
    assert bucket("wf", "u1") != bucket("other", "u1")
