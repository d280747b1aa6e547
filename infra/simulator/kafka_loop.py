"""Live mode: the simulator's environment on one side of Kafka, loopwise's worker on the other.

The environment is the one offline mode drives; only the transport differs.
Every record it produces goes to its input topic; every decision loopwise
publishes (anomalies and incidents count as detection, routing policies,
experiment decisions, commands) is read back and obeyed. Simulated time runs
``speed`` times faster than the wall clock.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from infra.settings import Settings
from infra.simulator.environment import Environment
from infra.simulator.errors import SimulatorError
from infra.simulator.fallback import EpsilonGreedyFallback
from infra.simulator.offline import run_offline
from infra.simulator.protocols import Action, Choice, Detection
from infra.simulator.scenario import Scenario
from infra.simulator.scorecard import RunResult, with_oracle
from infra.topics import BY_NAME
from schemas.records import (
    Anomaly, Command, ExperimentDecision, FeedbackEvent, Incident, IncidentStatus, JobSubmission, LogEvent,
    MetricEvent, RequestEvent, RolloutStep, RouteRequest, RoutingPolicy, Severity, WorkflowDefinition,
)
from schemas.serde import RECORD_TYPES, Codec, SchemaError, make_codec

log = logging.getLogger(__name__)

#: Where each produced record goes, and which field is its key.
_OUTBOUND: dict[type, tuple[str, str]] = {
    RequestEvent: ("requests", "request_id"), FeedbackEvent: ("feedback", "request_id"),
    MetricEvent: ("metrics", "source"), LogEvent: ("logs", "service"),
    JobSubmission: ("jobs", "job_id"), WorkflowDefinition: ("workflows", "workflow"),
}
#: The decision topics the simulator obeys.
_INBOUND = ("anomalies", "incidents", "decisions.routing", "decisions.experiments",
            "commands.remediation", "commands.scaling", "commands.jobs", "rollouts")


class LivePolicy:
    """Routes by the policy loopwise publishes on ``decisions.routing``; until a segment has one,
    by the documented in-process fallback. Everything else arrives from Kafka."""

    name = "loopwise"

    def __init__(self, seed: int) -> None:
        self._fallback = EpsilonGreedyFallback(seed)
        self._published: set[tuple[str, str]] = set()
        self.impl = "live: routing by lw.decisions.routing, fallback-epsilon-greedy until published"

    def published(self, policy: RoutingPolicy) -> None:
        self._published.add((policy.workflow, policy.segment))

    def choose(self, request: RouteRequest, workflow: WorkflowDefinition, now_ms: int) -> Choice:
        from processors.workflows import segment_of

        if (workflow.workflow, segment_of(request.context, workflow.context_keys)) in self._published:
            return Choice(route=None)
        return self._fallback.choose(request, workflow, now_ms)

    def observe(self, records: Sequence[Any]) -> list[Action]:
        return list(self._fallback.observe(records))


@dataclass
class LiveStats:
    produced: int = 0
    decisions: int = 0
    undecodable: int = 0


class KafkaLoop:
    """Moves records out to Kafka and decisions back into the environment."""

    def __init__(self, settings: Settings, env: Environment, policy: LivePolicy) -> None:
        self.settings, self.env, self.policy = settings, env, policy
        self.stats = LiveStats()
        self._codecs: dict[str, Codec[Any]] = {}
        self._producer = Producer({**settings.kafka_config(), "linger.ms": 5, "enable.idempotence": True})
        self._consumer = Consumer({
            **settings.kafka_config(), "group.id": f"loopwise-sim-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "fetch.wait.max.ms": 20, "fetch.queue.backoff.ms": 0,
        })
        topics = [settings.topic(name) for name in _INBOUND]
        metadata = self._consumer.list_topics(timeout=10)
        missing = [t for t in topics if t not in metadata.topics]
        if missing:
            self.close()
            raise SimulatorError(f"topics missing on {settings.bootstrap_servers}: {', '.join(missing)}; "
                                 "run `loopwise topics apply` (or start a worker, which applies them)")
        self._consumer.assign([TopicPartition(t, p, OFFSET_END) for t in topics for p in metadata.topics[t].partitions])
        self._logical = {settings.topic(name): name for name in _INBOUND}

    def _codec(self, logical: str) -> Codec[Any]:
        codec = self._codecs.get(logical)
        if codec is None:
            codec = self._codecs[logical] = make_codec(
                RECORD_TYPES[BY_NAME[logical].record], topic=self.settings.topic(logical),
                registry_url=self.settings.schema_registry_url, max_event_bytes=self.settings.max_event_bytes)
        return codec

    def send(self, records: Sequence[Any]) -> None:
        for record in records:
            logical, key_field = _OUTBOUND[type(record)]
            self._producer.produce(self.settings.topic(logical), key=str(getattr(record, key_field)),
                                   value=self._codec(logical).encode(record))
            self.stats.produced += 1
            if self.stats.produced % 1000 == 0:
                self._producer.poll(0)
        self._producer.poll(0)

    def receive(self, timeout_s: float = 0.0) -> None:
        for message in self._consumer.consume(1000, timeout_s):
            if message.error() or message.value() is None:
                continue
            logical = self._logical[message.topic()]
            try:
                decision = self._codec(logical).decode(message.value())
            except SchemaError as exc:
                self.stats.undecodable += 1
                log.warning("undecodable decision on %s: %s", message.topic(), exc)
                continue
            for action in _actions(decision):
                if isinstance(action, RoutingPolicy):
                    self.policy.published(action)
                self.env.apply(action)
                self.stats.decisions += 1

    def flush(self) -> None:
        self._producer.flush(30)

    def close(self) -> None:
        self._producer.flush(30)
        self._consumer.close()


def _actions(decision: Any) -> list[Action]:
    if isinstance(decision, Anomaly):
        return [Detection(decision.entity, decision.ts_ms)] if decision.severity is not Severity.INFO else []
    if isinstance(decision, Incident):
        if decision.status is not IncidentStatus.FIRING:
            return []
        return [Detection(entity, decision.started_ms) for entity in (decision.root_cause, *decision.members)]
    if isinstance(decision, (RoutingPolicy, ExperimentDecision, Command)):
        return [decision]
    if isinstance(decision, RolloutStep):
        # The newest step is the split: the platform serves the canary at its share from now on.
        return [decision]
    return []


def run_live(settings: Settings, scenario: Scenario, *, seed: int = 1, duration_s: float | None = None,
             rate: float | None = None, speed: float = 10.0, grace_s: float = 5.0,
             progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Run ``scenario`` against the loopwise worker(s) on ``settings``' cluster; score it against the oracle."""
    policy = LivePolicy(seed)
    env = Environment(scenario, policy, seed=seed, duration_s=duration_s, rate=rate, emit_records=True)
    loop = KafkaLoop(settings, env, policy)
    started = time.monotonic()
    try:
        while not env.is_done:
            records = env.step(env.now_ms + scenario.slice_ms)
            loop.send(records)
            for action in policy.observe(records):
                env.apply(action)
            target = started + (env.now_ms - scenario.start_ms) / 1000.0 / speed
            while True:  # obey decisions while waiting for the wall clock to catch up
                remaining = target - time.monotonic()
                loop.receive(min(max(remaining, 0.0), 0.1))
                if remaining <= 0:
                    break
            if progress is not None:
                progress(env.now_ms - scenario.start_ms, env.end_ms - scenario.start_ms)
        loop.flush()
        deadline = time.monotonic() + grace_s  # decisions about the last events may still be on their way
        while time.monotonic() < deadline:
            loop.receive(0.2)
    finally:
        loop.close()
    log.info("live run: %d records produced, %d decisions applied, %d undecodable",
             loop.stats.produced, loop.stats.decisions, loop.stats.undecodable)
    result = env.result()
    oracle = run_offline(scenario, "oracle", seed, duration_s, rate)
    result.scorecard = with_oracle(result.scorecard, float(oracle.scorecard["reward"]))
    return result


def run_live_from_args(settings: Settings, args: Any) -> int:
    """``loopwise up --simulate SCENARIO``: run live, print the scorecard, write it with ``--report``."""
    from infra.simulator.loader import load_scenario
    from infra.simulator.scenario import parse_duration_s

    return live_main(settings, load_scenario(args.simulate), seed=int(args.seed),
                     duration_s=parse_duration_s(args.duration, "--duration"), rate=float(args.rate),
                     speed=float(args.speed), report_path=args.report)


def live_main(settings: Settings, scenario: Scenario, *, seed: int, duration_s: float, rate: float, speed: float,
              report_path: str | None = None, plot_path: str | None = None) -> int:
    """Run live with a progress bar; print the scorecard table; write the report (and plot)."""
    import json
    from pathlib import Path

    from rich.console import Console

    from infra.simulator.cli import render_table

    with _progress(f"live {scenario.name}") as progress:
        result = run_live(settings, scenario, seed=seed, duration_s=duration_s, rate=rate, speed=speed,
                          progress=progress)
    results = {result.policy: result}
    Console(width=200).print(render_table(results, f"{scenario.name}: live closed loop, "
                                                   f"{duration_s:g} s at {rate:g} req/s, seed {seed}"))
    if report_path:
        path = Path(report_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({name: r.scorecard for name, r in results.items()}, indent=2, default=str))
        print(f"scorecard written to {path}")
    if plot_path:
        from infra.simulator.plot import plot_runs

        plot_runs(results, plot_path, f"{scenario.name} live (seed {seed})")
    return 0


class _progress:
    """A rich progress bar on stderr (simulated time done / total)."""

    def __init__(self, label: str) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                             TimeRemainingColumn(), transient=False)
        self._label = label

    def __enter__(self) -> Callable[[int, int], None]:
        self._bar.start()
        task = self._bar.add_task(self._label, total=1.0)
        return lambda done, total: self._bar.update(task, completed=done / max(total, 1))

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()
