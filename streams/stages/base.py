"""The stage contract: ``Stage``, ``StageEnv`` and ``Outgoing``, free of Kafka and Faust.

A stage admits its inputs through ``InputGate``s (decode, validate,
deduplicate, dead-letter), calls its processors, and returns the messages to
send. The engine (``streams.engine``) only moves bytes between Kafka and stages,
so a stage runs the same under the engine or a unit test.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from infra.settings import Settings
from infra.topics import BY_NAME
from processors.dedup import Deduplicator
from processors.experiments import ExperimentEngine
from processors.routing import Router
from processors.throttle import AnomalyThrottle
from processors.workflows import WorkflowRegistry
from schemas.records import Anomaly, DeadLetter, WorkflowDefinition
from schemas.serde import RECORD_TYPES, Codec, make_codec
from sinks.prometheus import Metrics
from streams.edge import InputGate, RawMessage


#: Which record field identifies an event of each input topic (for deduplication).
DEDUP_FIELDS = {"requests": "request_id", "feedback": "feedback_id", "jobs": "job_id", "route.requests": "request_id"}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message a stage wants sent."""

    topic: str
    key: bytes | None
    value: bytes


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class StageEnv:
    """What stages share: settings-derived codecs and topic names, metrics, the workflow registry."""

    def __init__(self, settings: Settings, metrics: Metrics, now_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.settings, self.metrics, self.now_ms = settings, metrics, now_ms
        self.registry = WorkflowRegistry()
        self.lock = threading.RLock()
        #: Shared by the stage that learns (outcomes) and the one that answers route requests.
        self.router = Router()
        self.experiments: dict[str, ExperimentEngine] = {}
        self.workflow_listeners: list[Callable[[WorkflowDefinition], None]] = []
        self._codecs: dict[str, Codec[Any]] = {}
        #: The stage that dead-letters and counts each input topic; other stages reading it skip bad input.
        self.owners: dict[str, str] = {}

    def topic(self, logical: str) -> str:
        return self.settings.topic(logical)

    def codec(self, logical: str) -> Codec[Any]:
        codec = self._codecs.get(logical)
        if codec is None:
            record_type = RECORD_TYPES[BY_NAME[logical].record]
            codec = self._codecs[logical] = make_codec(
                record_type, topic=self.topic(logical), registry_url=self.settings.schema_registry_url,
                max_event_bytes=self.settings.max_event_bytes,
            )
        return codec

    def gate(self, logical: str, *, dedup_horizon_ms: int = 3_600_000, is_deduplicating: bool = True) -> InputGate[Any]:
        spec = BY_NAME[logical]
        key_field = spec.key if spec.key in _field_names(RECORD_TYPES[spec.record]) else None
        dedup_field = DEDUP_FIELDS.get(logical) if is_deduplicating else None
        return InputGate(
            self.codec(logical), key_field=key_field, dedup_field=dedup_field,
            dedup=Deduplicator(dedup_horizon_ms) if dedup_field else None, now_ms=self.now_ms,
        )

    def encode(self, logical: str, key: str | None, record: Any) -> Outgoing:
        return Outgoing(self.topic(logical), None if key is None else key.encode(), self.codec(logical).encode(record))

    def anomalies(self, found: list[Anomaly], throttle: AnomalyThrottle, out: list[Outgoing]) -> None:
        for anomaly in found:
            if throttle.admit(anomaly):
                out.append(self.encode("anomalies", anomaly.entity, anomaly))

    def dead(self, letter: DeadLetter) -> Outgoing:
        self.metrics.dead_letters(letter.source_topic, letter.reason).inc()
        return self.encode("dlq", letter.source_topic, letter)


class Stage:
    """Base: route each message to its topic's gate, count it, hand valid records to ``on_record``.

    A stage with durable state (``has_state``) reports what changed after each batch
    (``state_changes``: partition, key, value or None to forget) and can be rebuilt
    from those records (``restore``); the engine writes them to the stage's
    changelog in the same transaction as the batch's outputs and offsets.
    """

    name = "stage"
    inputs: tuple[str, ...] = ()
    has_state = False
    #: Read every partition in every worker (no consumer group), e.g. workflow definitions.
    is_global = False
    #: Whether the gates drop duplicates themselves (in memory); a stage whose
    #: durable state already recognises them turns this off.
    is_gate_deduplicating = True

    def __init__(self, env: StageEnv) -> None:
        self.env = env
        self._gates = {env.topic(name): env.gate(name, is_deduplicating=self.is_gate_deduplicating)
                       for name in self.inputs}
        self._logical = {env.topic(name): name for name in self.inputs}
        for name in self.inputs:
            env.owners.setdefault(name, self.name)
        self._owned = {env.topic(name) for name in self.inputs if env.owners[name] == self.name}

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self._gates)

    def handle(self, batch: Sequence[RawMessage]) -> list[Outgoing]:
        out: list[Outgoing] = []
        counts: dict[str, int] = {}
        for message in batch:
            result = self._gates[message.topic].admit_one(message)
            if isinstance(result, DeadLetter):
                if message.topic in self._owned:  # else its owner stage dead-letters it
                    out.append(self.env.dead(result))
                continue
            if self.on_record(self._logical[message.topic], message, result, out) is not False:
                counts[message.topic] = counts.get(message.topic, 0) + 1
        out.extend(self.after_batch())
        for topic, n in counts.items():
            if topic in self._owned:
                self.env.metrics.events_in(topic).inc(n)
        return out

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> bool | None:
        """Handle one valid, new record; append what to send to ``out``; False if it was dead-lettered."""
        return None

    def reject(self, message: RawMessage, reason: str, error: str, out: list[Outgoing]) -> bool:
        """Dead-letter a record the stage itself refuses (duplicate, too late); returns False for ``on_record``."""
        out.append(self.env.dead(self._gates[message.topic].dead_letter(message, reason, error)))
        return False

    def after_batch(self) -> list[Outgoing]:
        return []

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        """What changed in the durable state since the last call, as changelog records."""
        return []

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Rebuild one partition's state from its changelog records, oldest first."""

    def forget(self, partition: int) -> None:
        """Drop the state of a partition this worker no longer owns."""



def _field_names(record_type: type) -> frozenset[str]:
    return frozenset(getattr(record_type, "__dataclass_fields__", {}))
