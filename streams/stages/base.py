"""The stage contract: ``Stage``, ``StageEnv`` and ``Outgoing``, free of Kafka and Faust.

A stage admits its inputs through ``InputGate``s (decode, validate,
deduplicate, dead-letter), calls its processors, and returns the messages to
send. The engine (``streams.engine``) only moves bytes between Kafka and stages,
so a stage runs the same under the engine or a unit test.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from infra.settings import Settings
from infra.topics import BY_NAME
from processors.dedup import Deduplicator
from processors.throttle import AnomalyThrottle
from processors.workflows import WorkflowRegistry
from schemas.records import Anomaly, DeadLetter, WorkflowDefinition
from schemas.serde import RECORD_TYPES, Codec, make_codec
from schemas.validation import record_rule
from sinks.prometheus import Metrics
from streams.edge import InputGate, RawMessage
from streams.headers import Headers, dead_letter_headers, trace_headers


#: Which record field identifies an event of each input topic (for deduplication).
DEDUP_FIELDS = {"requests": "request_id", "feedback": "feedback_id", "jobs": "job_id", "route.requests": "request_id"}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message a stage wants sent."""

    topic: str
    key: bytes | None
    value: bytes
    #: Kafka headers (``streams.headers``): the trace context of the input that caused it, a dead letter's context.
    headers: tuple[tuple[str, bytes], ...] | None = None


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class StageEnv:
    """What stages share: settings-derived codecs and topic names, metrics, and the workflow registry
    (a read-only view of ``lw.workflows``, which every worker reads whole). Nothing learned is shared:
    a stage's state is its own, and what it needs from another stage it reads from a topic."""

    def __init__(self, settings: Settings, metrics: Metrics, now_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.settings, self.metrics, self.now_ms = settings, metrics, now_ms
        self.registry = WorkflowRegistry()
        self.lock = threading.RLock()
        self.workflow_listeners: list[Callable[[WorkflowDefinition], None]] = []
        self._codecs: dict[str, Codec[Any]] = {}
        #: The stage that dead-letters and counts each input topic; other stages reading it skip bad input.
        self.owners: dict[str, str] = {}

    def topic(self, logical: str) -> str:
        return self.settings.topic(logical)

    def repartition_topic(self, stage: str, logical: str) -> str:
        """The internal topic that feeds ``stage`` its ``logical`` input re-keyed (by workflow)."""
        return f"{self.settings.topic_prefix}repartition.{self.settings.app_id}.{stage}.{logical}"

    def codec(self, logical: str) -> Codec[Any]:
        codec = self._codecs.get(logical)
        if codec is None:
            record_type = RECORD_TYPES[BY_NAME[logical].record]
            codec = self._codecs[logical] = make_codec(
                record_type, topic=self.topic(logical), registry_url=self.settings.schema_registry_url,
                max_event_bytes=self.settings.max_event_bytes,
            )
        return codec

    def gate(self, logical: str, *, dedup_horizon_ms: int = 3_600_000, is_deduplicating: bool = True,
             is_rekeyed: bool = False) -> InputGate[Any]:
        """The gate of one input; ``is_rekeyed``: read from a repartition topic (keyed by workflow, not the record's key)."""
        spec = BY_NAME[logical]
        key_field = spec.key if spec.key in _field_names(RECORD_TYPES[spec.record]) and not is_rekeyed else None
        dedup_field = DEDUP_FIELDS.get(logical) if is_deduplicating else None
        skew_s = self.settings.max_clock_skew_s
        return InputGate(
            self.codec(logical), key_field=key_field, dedup_field=dedup_field,
            dedup=Deduplicator(dedup_horizon_ms) if dedup_field else None, now_ms=self.now_ms,
            max_future_ms=int(skew_s * 1000) if skew_s > 0 else None,
            rule=record_rule(RECORD_TYPES[spec.record]),
        )

    def encode(self, logical: str, key: str | None, record: Any) -> Outgoing:
        return Outgoing(self.topic(logical), None if key is None else key.encode(), self.codec(logical).encode(record))

    def anomalies(self, found: list[Anomaly], throttle: AnomalyThrottle, out: list[Outgoing]) -> None:
        for anomaly in found:
            if throttle.admit(anomaly):
                out.append(self.encode("anomalies", anomaly.entity, anomaly))

    def dead(self, letter: DeadLetter, headers: Headers | None = None) -> Outgoing:
        """The dead letter to send: its record as the value, its error context (and the input's headers) as headers."""
        self.metrics.dead_letters(letter.source_topic, letter.reason).inc()
        sent = self.encode("dlq", letter.source_topic, letter)
        return Outgoing(sent.topic, sent.key, sent.value, dead_letter_headers(letter, headers))


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
    #: Read each input from its repartition topic (``StageEnv.repartition_topic``), which a
    #: ``RekeyStage`` fills keyed by workflow, instead of from the input topic itself.
    is_repartitioned = False
    #: Topics read whole by every worker beside the stage's own partitions (e.g. published
    #: policies): caught up before the first batch, then followed; ``on_side_record`` takes them.
    side_inputs: tuple[str, ...] = ()
    #: The state is a periodic snapshot, not a change per batch: the engine records the input
    #: offsets only with a snapshot and, on restore, replays what came after it.
    is_snapshotting = False
    #: Stages listed here run wherever this one runs (e.g. the re-keying half of a repartition).
    companions: tuple[str, ...] = ()

    def __init__(self, env: StageEnv) -> None:
        self.env = env
        names = {name: (env.repartition_topic(self.name, name) if self.is_repartitioned else env.topic(name))
                 for name in self.inputs}
        self._gates = {topic: env.gate(name, is_deduplicating=self.is_gate_deduplicating, is_rekeyed=self.is_repartitioned)
                       for name, topic in names.items()}
        self._logical = {topic: name for name, topic in names.items()}
        if not self.is_repartitioned:  # a repartitioned input was admitted (and dead-lettered) by its re-keyer
            for name in self.inputs:
                env.owners.setdefault(name, self.name)
        self._owned = {env.topic(name) for name in self.inputs if env.owners.get(name) == self.name}
        self._side_gates = {env.topic(name): env.gate(name, is_deduplicating=False) for name in self.side_inputs}
        self._side_logical = {env.topic(name): name for name in self.side_inputs}
        idle_s = env.settings.idle_timeout_s
        self.idle_timeout_ms = int(idle_s * 1000) if idle_s > 0 else 0
        self._next_idle_tick_ms = 0
        #: Wall-clock time (ms) each (logical input, partition) last delivered a message.
        self.arrivals: dict[tuple[str, int], int] = {}
        self._born_ms = env.now_ms()

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self._gates)

    @property
    def side_topics(self) -> tuple[str, ...]:
        return tuple(self._side_gates)

    def handle_side(self, batch: Sequence[RawMessage]) -> None:
        """Admit side-input records (unreadable ones are skipped: their topic's owner dead-letters them)."""
        for message in batch:
            result = self._side_gates[message.topic].admit_one(message)
            if not isinstance(result, DeadLetter):
                self.on_side_record(self._side_logical[message.topic], result)

    def on_side_record(self, logical: str, record: Any) -> None:
        """Take one record of a side input."""

    def is_due_idle_tick(self, now_ms: int) -> bool:
        """Whether the engine should run an empty batch now, so that clocks of idle inputs can move.

        Only stages that act on idleness (``on_idle``'s callers) need it; it is due at most
        every tenth of the idle timeout.
        """
        if not self.idle_timeout_ms or not self.wants_idle_ticks or now_ms < self._next_idle_tick_ms:
            return False
        self._next_idle_tick_ms = now_ms + max(1000, self.idle_timeout_ms // 10)
        return True

    #: Whether this stage's clocks follow idle inputs (see ``is_due_idle_tick``).
    wants_idle_ticks = False

    def idle_ms(self, logical: str, partition: int, now_ms: int) -> int:
        """How long (wall clock) one input partition has delivered nothing (since this stage started if never)."""
        return now_ms - self.arrivals.get((logical, partition), self._born_ms)

    def handle(self, batch: Sequence[RawMessage]) -> list[Outgoing]:
        out: list[Outgoing] = []
        counts: dict[str, int] = {}
        if batch and self.wants_idle_ticks:
            now_ms = self.env.now_ms()
            for message in batch:
                self.arrivals[(self._logical[message.topic], message.partition)] = now_ms
        for message in batch:
            result = self._gates[message.topic].admit_one(message)
            if isinstance(result, DeadLetter):
                if message.topic in self._owned:  # else its owner stage dead-letters it
                    out.append(self.env.dead(result, message.headers))
                continue
            sent = len(out)
            if self.on_record(self._logical[message.topic], message, result, out) is not False:
                counts[message.topic] = counts.get(message.topic, 0) + 1
            if message.headers is not None and len(out) > sent:
                _inherit_trace(message.headers, out, sent)
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
        out.append(self.env.dead(self._gates[message.topic].dead_letter(message, reason, error), message.headers))
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


class RekeyStage(Stage):
    """The first half of a repartition: reads the inputs of ``target``, writes each record's bytes
    unchanged to ``target``'s repartition topic of that input, keyed by workflow (``keys``).

    The pattern Kafka Streams uses: re-key, write, read back co-partitioned, so every record
    of one workflow reaches the one worker that owns that workflow's state. A record about a
    route (an anomaly, a command) goes to every workflow that routes to it.
    """

    target = "stage"

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        topic = self.env.repartition_topic(self.target, logical)
        assert message.value is not None
        for key in self.keys(logical, record):
            out.append(Outgoing(topic, key.encode(), message.value))

    def keys(self, logical: str, record: Any) -> list[str]:
        """The workflows ``record`` concerns (empty: nobody needs it)."""
        workflow = getattr(record, "workflow", None)
        return [workflow] if workflow else []



def _inherit_trace(headers: Headers, out: list[Outgoing], start: int) -> None:
    """Give the messages ``out[start:]``, caused by one input, that input's W3C trace context."""
    trace = trace_headers(headers)
    if trace is None:
        return
    for i in range(start, len(out)):
        if out[i].headers is None:
            o = out[i]
            out[i] = Outgoing(o.topic, o.key, o.value, trace)


def _field_names(record_type: type) -> frozenset[str]:
    return frozenset(getattr(record_type, "__dataclass_fields__", {}))


#: Largest changelog value a snapshot chunk takes (Kafka's default message limit is 1 MiB).
CHUNK_BYTES = 512 * 1024


def chunked(name: bytes, blob: bytes) -> list[tuple[bytes, bytes]]:
    """A snapshot as changelog records under Kafka's message size: ``name`` holds a manifest
    (snapshot id and chunk count), ``name/i`` the chunks, each tagged with the snapshot id so a
    stale chunk of a larger, older snapshot is never mixed in.

    >>> records = chunked(b"core", b"x" * (CHUNK_BYTES + 1))
    >>> [key for key, _ in records]
    [b'core/0', b'core/1', b'core']
    >>> unchunked(b"core", records) == b"x" * (CHUNK_BYTES + 1)
    True
    """
    snapshot_id = hashlib.blake2b(blob, digest_size=8).hexdigest().encode()
    parts = [blob[i:i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)] or [b""]
    records = [(name + b"/" + str(i).encode(), snapshot_id + b":" + part) for i, part in enumerate(parts)]
    return records + [(name, snapshot_id + b":" + str(len(parts)).encode())]


def unchunked(name: bytes, records: Iterable[tuple[bytes, bytes | None]]) -> bytes | None:
    """The newest complete snapshot ``chunked`` wrote among changelog ``records`` (oldest first); None if none."""
    latest: dict[bytes, bytes] = {}
    for key, value in records:
        if value is not None and (key == name or key.startswith(name + b"/")):
            latest[key] = value
    manifest = latest.get(name)
    if manifest is None:
        return None
    snapshot_id, count = manifest.split(b":", 1)
    parts = []
    for i in range(int(count)):
        tag, _, part = latest.get(name + b"/" + str(i).encode(), b"").partition(b":")
        if tag != snapshot_id:
            raise ValueError(f"snapshot {name!r}: chunk {i} belongs to another snapshot (changelog damaged)")
        parts.append(part)
    return b"".join(parts)
