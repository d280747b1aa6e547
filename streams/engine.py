"""The batch engine: each stage runs on its own confluent-kafka consumer, one transaction per batch.

Per batch: take what has arrived (up to ``batch_max`` messages, as soon as
there is one), ``stage.handle`` it, then in ONE Kafka transaction produce the
outputs, the stage's state changes (to its compacted changelog, partition for
partition) and the consumed offsets. A batch is therefore applied exactly
once: after a crash, the next owner of a partition restores the state of the
last committed batch and resumes at its offsets, and consumers reading
``read_committed`` never see a half-done batch.

Commits are pipelined: batch N's transaction commits on a helper thread while
the runner takes and handles batch N+1 (whose transaction begins only once N's
has committed). That is safe because a failed commit is fatal anyway (the
in-memory state cannot be un-applied: the worker stops and the next owner
restores from the changelog), and every rebalance callback first waits for
the commit in flight, so offsets are never committed for partitions already
given away. Stages listed in ``EngineConfig.at_least_once_stages`` (stateless
answers, such as per-request routes) skip the transaction: outputs are
flushed, then the offsets committed, so a crash can repeat an answer but never
lose one.

Stages are the same objects the in-memory tests drive; Faust hosts the runners
(``streams.app``) and owns the worker's lifecycle and signals.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from infra.settings import Settings
from sinks.prometheus import Metrics
from streams.edge import RawMessage
from streams.headers import as_headers
from streams.stages import Outgoing, Stage

log = logging.getLogger(__name__)

_FENCE_KEY = b"~fence"


class EngineError(RuntimeError):
    """A stage runner cannot go on (the worker exits; a restart resumes from the last committed batch)."""


@dataclass(frozen=True)
class EngineConfig:
    """How runners batch and commit."""

    batch_max: int = 2000
    poll_timeout_s: float = 0.02
    is_exactly_once: bool = True
    restore_timeout_s: float = 60.0
    #: Stages whose outputs are stateless answers: at-least-once even under exactly-once
    #: (a repeated answer for the same request id is harmless; a transaction per answer is not free).
    at_least_once_stages: frozenset[str] = frozenset({"route"})
    #: Stages on the latency path (outcomes, route answers): a batch is whatever has arrived.
    #: The others (policies, incidents, commands: decisions on a scale of seconds) gather
    #: input for up to ``background_linger_s`` and fetch as rarely, so they commit a few
    #: large transactions instead of many small ones that would load the broker and hold
    #: the stage lock while an urgent stage waits.
    urgent_stages: frozenset[str] = frozenset({"correlate", "route"})
    background_linger_s: float = 0.1
    #: How long a runner keeps retrying a transaction through a broker outage before it gives up.
    outage_timeout_s: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "EngineConfig":
        return cls(is_exactly_once=settings.processing_guarantee == "exactly_once")

    def linger_s(self, stage: Stage) -> float:
        """How long ``stage`` gathers input before a batch (0: as soon as something arrived)."""
        return 0.0 if stage.name in self.urgent_stages or stage.is_global else self.background_linger_s

    def is_transactional(self, stage: Stage) -> bool:
        """Whether ``stage``'s batches commit in transactions (exactly-once)."""
        return self.is_exactly_once and not stage.is_global and stage.name not in self.at_least_once_stages


_OFFSET_KEY = b"~offset:"


def changelog_topic(settings: Settings, stage: Stage) -> str:
    return f"{settings.topic_prefix}state.{settings.app_id}.{stage.name}"


def ensure_changelog(settings: Settings, stage: Stage, timeout_s: float = 15.0) -> str:
    """Create the stage's compacted changelog (as many partitions as its inputs) if missing."""
    name = changelog_topic(settings, stage)
    admin = AdminClient(settings.kafka_config())
    metadata = admin.list_topics(timeout=timeout_s)
    if name in metadata.topics:
        return name
    partitions = max(len(metadata.topics[t].partitions) for t in stage.topics if t in metadata.topics)
    future = admin.create_topics([NewTopic(name, partitions, settings.replication_factor,
                                           config={"cleanup.policy": "compact", "retention.ms": "-1"})])[name]
    try:
        future.result(timeout_s)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise EngineError(f"cannot create changelog {name}: {exc}") from exc
    return name


def ensure_repartition_topics(settings: Settings, stage: Stage, timeout_s: float = 15.0) -> None:
    """Create the internal topics a repartitioned stage reads (``LOOPWISE_PARTITIONS`` each) if missing."""
    target = getattr(stage, "target", None) if not stage.is_repartitioned else stage.name
    if target is None:
        return
    names = [stage.env.repartition_topic(target, logical) for logical in stage.inputs]
    admin = AdminClient(settings.kafka_config())
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [NewTopic(n, settings.partitions, settings.replication_factor,
                        config={"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)})
               for n in names if n not in existing]
    if not missing:
        return
    for name, future in admin.create_topics(missing).items():
        try:
            future.result(timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise EngineError(f"cannot create repartition topic {name}: {exc}") from exc


class StageRunner:
    """Runs one stage in a thread until ``stop()``; errors end the thread and are kept in ``error``."""

    def __init__(self, settings: Settings, stage: Stage, metrics: Metrics, config: EngineConfig = EngineConfig(),
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self.settings, self.stage, self.metrics, self.config = settings, stage, metrics, config
        self.error: BaseException | None = None
        self.batches = 0
        self.positions: dict[tuple[str, int], int] = {}
        self._on_fatal = on_fatal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"loopwise-{stage.name}", daemon=True)
        self._group = f"{settings.app_id}.{stage.name}"
        self._changelog: str | None = None
        # Input offsets whose effects the restored state already holds: skipped on replay.
        self._applied: dict[tuple[str, int], int] = {}
        self._processing = metrics.processing(stage.name)
        self._next_lag_s = 0.0
        self._is_transactional = config.is_transactional(stage)
        self._linger_s = config.linger_s(stage)
        # The transaction of the previous batch, committing while this one is handled.
        self._committer: ThreadPoolExecutor | None = None
        self._side_pending: set[tuple[str, int]] = set()
        # Per input partition: the committed offset a snapshot stage's replay runs up to (see on_assign).
        self._replay_until: dict[tuple[str, int], int] = {}
        self._in_flight: Future[None] | None = None
        # Partitions read to their end (a PARTITION_EOF since the last message): lag 0, whatever
        # the high watermark says (a transaction's commit marker is one offset no message fills).
        self._at_end: dict[tuple[str, int], int] = {}
        self._unassigned_since: float | None = time.monotonic()
        self._started_s = time.monotonic()
        self._is_unassigned_reported = False
        self._last_rejoin_s = 0.0
        self._transient_logged: dict[int, float] = {}
        self._was_assigned = False
        self._resubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        ensure_repartition_topics(self.settings, self.stage)
        if self.stage.has_state:
            self._changelog = ensure_changelog(self.settings, self.stage)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the batch in hand, commit it, leave the group."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("stage %s did not stop within %.0f s", self.stage.name, timeout_s)

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ the loop

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 — reported to the host, which stops the worker
            self.error = exc
            log.exception("stage %s failed; the worker stops (a restart resumes from the last commit)", self.stage.name)
            if self._on_fatal is not None:
                self._on_fatal(exc)

    def _run(self) -> None:
        conf = self.settings.kafka_config()
        producer_conf: dict[str, Any] = {**conf, "linger.ms": 2, "enable.idempotence": True}
        if self._is_transactional:
            # Stable across restarts of this worker: the restarted producer fences its dead
            # predecessor and resolves the transaction it left open.
            producer_conf["transactional.id"] = f"{self._group}.{self.settings.worker_id}"
        producer = Producer(producer_conf)
        if "transactional.id" in producer_conf:
            producer.init_transactions(30)
        side = self._side_consumer(conf) if self.stage.side_topics else None
        consumer = Consumer(self._consumer_conf(conf))
        if self.stage.is_global:
            # Every worker needs all of it (e.g. workflow definitions): read every partition, commit nothing.
            metadata = consumer.list_topics(timeout=30)
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in self.stage.topics
                             for p in metadata.topics[t].partitions])
        else:
            on_assign = self._on_assign(producer)
            self._resubscribe = lambda: consumer.subscribe(list(self.stage.topics), on_assign=on_assign,
                                                           on_revoke=self._on_revoke, on_lost=self._on_revoke)
            self._resubscribe()
        self._committer = ThreadPoolExecutor(1, thread_name_prefix=f"loopwise-{self.stage.name}-commit")
        try:
            while not self._stop.is_set():
                if side is not None:
                    self._follow_side(side, 0.0)
                messages = _next_batch(consumer, self.config.batch_max, self.config.poll_timeout_s, self._linger_s)
                batch = [_raw(m) for m in messages if m.error() is None]
                for m in messages:
                    if m.error() is not None:
                        self._consumer_error(m)
                if batch:
                    self._process(batch, producer, consumer)
                else:
                    if self._in_flight is not None and self._in_flight.done():
                        self._await_commit()  # when idle too, a failed commit stops the runner at once
                    if self.stage.is_due_idle_tick(_wall_ms()):
                        self._process([], producer, consumer)  # idle inputs: let event-time clocks move
                if time.monotonic() >= self._next_lag_s:
                    self._report_lag(consumer)
                    self._watch_assignment(consumer)
            self._await_commit()  # the batch in hand is committed before the group is left
            if not self._is_transactional and not self.stage.is_global and self.positions:
                # At-least-once stages commit asynchronously: the last positions, once more, synchronously.
                try:
                    consumer.commit(offsets=_partitions(self.positions),
                                    asynchronous=False)
                except KafkaException as exc:  # at least once: the next owner replays from the last commit
                    log.warning("stage %s: final offset commit failed: %s", self.stage.name, exc)
        finally:
            consumer.close()  # leaves the group at once: the partitions move without a session timeout
            if side is not None:
                side.close()
            self._committer.shutdown(wait=True)
            producer.flush(10)

    def _consumer_conf(self, conf: dict[str, str]) -> dict[str, Any]:
        group = f"{self._group}.{uuid.uuid4().hex[:8]}" if self.stage.is_global else self._group
        out: dict[str, Any] = {
            **conf, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "isolation.level": "read_committed", "session.timeout.ms": int(self.settings.session_timeout_s * 1000),
            "heartbeat.interval.ms": max(500, int(self.settings.session_timeout_s * 1000 / 6)),
            # range keeps partition i of every input topic on one member (requests and their feedback meet)
            "partition.assignment.strategy": "range", "fetch.queue.backoff.ms": 0,
            "enable.partition.eof": True,  # tells an idle partition (lag 0) from an unread one
        }
        wait_ms = self.settings.effective_fetch_max_wait_ms
        if wait_ms is not None:
            # A stage that lingers need not ask the broker more often than it handles batches.
            out["fetch.wait.max.ms"] = max(wait_ms, int(self._linger_s * 1000))
        return out

    def _process(self, batch: Sequence[RawMessage], producer: Producer, consumer: Consumer) -> None:
        started = time.perf_counter()
        last = batch[-1] if batch else None  # before the replay filter, which may leave nothing
        offsets: dict[tuple[str, int], int] = {}
        for message in batch:
            offsets[(message.topic, message.partition)] = message.offset + 1
        if self._applied:
            batch = [m for m in batch if m.offset >= self._applied.get((m.topic, m.partition), 0)]
        if self._replay_until:
            batch = self._replay(batch)
        with self.stage.env.lock:  # stages share the registry and its listeners: one handles at a time
            outgoing = self.stage.handle(batch)
            changes = list(self.stage.state_changes())
        if self._changelog is not None and (changes or not self.stage.is_snapshotting):
            # The changelog also says which input offsets the state includes, so a batch replayed
            # after a crash between the changelog and the offset commit is skipped, not applied twice.
            changes += [(p, _OFFSET_KEY + t.encode(), str(o).encode()) for (t, p), o in offsets.items()]
        if self.stage.is_global:
            self._produce(producer, outgoing, changes)
            _flush(producer)
        elif self._is_transactional:
            self._await_commit()
            assert self._committer is not None
            group = consumer.consumer_group_metadata()
            self._in_flight = self._committer.submit(self._commit_transaction, producer, group, outgoing, changes,
                                                     offsets)
        else:
            self._produce(producer, outgoing, changes)
            _flush(producer)
            # The outputs are acknowledged before the offsets are sent: at-least-once holds without
            # waiting for the commit's round trip before the next batch (a lost commit replays a batch).
            if offsets:
                consumer.commit(offsets=_partitions(offsets), asynchronous=True)
        for key, offset in offsets.items():
            self.positions[key] = offset
        self._count(outgoing)
        self.batches += 1
        self._processing.observe(time.perf_counter() - started)
        if last is not None and last.timestamp_ms:
            self.metrics.event_latency(last.topic).observe(max(0.0, time.time() - last.timestamp_ms / 1000))

    def _side_consumer(self, conf: dict[str, str]) -> Consumer:
        """A reader of every partition of the stage's side inputs (e.g. published policies), caught up first."""
        side = Consumer({**conf, "group.id": f"{self._group}.side.{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "fetch.queue.backoff.ms": 0, "fetch.wait.max.ms": 50,
                         "enable.partition.eof": True})
        metadata = side.list_topics(timeout=30)
        parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in self.stage.side_topics if t in metadata.topics
                 for p in metadata.topics[t].partitions]
        side.assign(parts)
        self._side_pending = {(tp.topic, tp.partition) for tp in parts}
        deadline = time.monotonic() + self.config.restore_timeout_s
        while self._side_pending and time.monotonic() < deadline and not self._stop.is_set():
            self._follow_side(side, 0.2)
        if self._side_pending:
            log.warning("stage %s: side inputs not caught up within %.0f s; answering from what was read",
                        self.stage.name, self.config.restore_timeout_s)
        return side

    def _follow_side(self, side: Consumer, timeout_s: float) -> None:
        messages = side.consume(1000, timeout_s)
        batch = []
        for m in messages:
            if m.error() is None:
                batch.append(_raw(m))
            elif m.error().code() == KafkaError._PARTITION_EOF:
                self._side_pending.discard((m.topic(), m.partition()))
        if batch:
            with self.stage.env.lock:
                self.stage.handle_side(batch)

    def _replay(self, batch: Sequence[RawMessage]) -> list[RawMessage]:
        """Feed the already-handled part of ``batch`` to the state alone; return the rest."""
        until = self._replay_until
        replayed, rest = [], []
        for m in batch:
            (replayed if m.offset < until.get((m.topic, m.partition), -1) else rest).append(m)
        if replayed:
            with self.stage.env.lock:
                self.stage.handle(replayed)  # its outputs went out with the previous owner's batches
        for m in batch:
            if m.offset + 1 >= until.get((m.topic, m.partition), -1):
                until.pop((m.topic, m.partition), None)  # this partition's replay is done
        return rest

    def _await_commit(self) -> None:
        """Wait for the transaction in flight (if any); its failure is this runner's."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def _commit_transaction(self, producer: Producer, group: object, outgoing: Sequence[Outgoing],
                            changes: Sequence[tuple[int, bytes, bytes | None]],
                            offsets: dict[tuple[str, int], int]) -> None:
        """One batch's outputs, state changes and offsets in one transaction (on the committer thread).

        A broker outage is weathered: retriable failures are retried with backoff, and a
        transaction that cannot complete is aborted and the SAME outputs, changes and offsets
        produced again in a new one (the in-memory state already holds the batch, so redoing
        it is the only way forward, and readers see it once). Only a fatal error, or an outage
        longer than ``EngineConfig.outage_timeout_s``, stops the runner: the next owner of the
        partitions then restores from the changelog.
        """
        deadline = time.monotonic() + self.config.outage_timeout_s
        attempt = 0
        while True:
            try:
                _call_retrying(producer.begin_transaction, deadline)
                self._produce(producer, outgoing, changes)
                if offsets:  # an idle tick consumed nothing
                    _call_retrying(lambda: producer.send_offsets_to_transaction(_partitions(offsets), group, 30),
                                   deadline)
                _call_retrying(lambda: producer.commit_transaction(30), deadline)
                if attempt:
                    log.warning("stage %s: transaction committed after %d retries", self.stage.name, attempt)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal() or time.monotonic() > deadline:
                    raise EngineError(f"stage {self.stage.name}: transaction failed: {error.str()}") from exc
                attempt += 1
                log.warning("stage %s: transaction failed (%s); aborting it and producing the batch again "
                            "(attempt %d)", self.stage.name, error.str(), attempt)
                _abort(producer, deadline)
                time.sleep(min(10.0, 0.5 * 2 ** min(attempt, 5)))

    def _produce(self, producer: Producer, outgoing: Sequence[Outgoing],
                 changes: Sequence[tuple[int, bytes, bytes | None]]) -> None:
        for o in outgoing:
            _produce_one(producer, o.topic, o.key, o.value, None, o.headers)
        if self._changelog is not None:
            for partition, key, value in changes:
                _produce_one(producer, self._changelog, key, value, partition)

    def _count(self, outgoing: Sequence[Outgoing]) -> None:
        counts: dict[str, int] = {}
        for o in outgoing:
            counts[o.topic] = counts.get(o.topic, 0) + 1
        for topic, n in counts.items():
            self.metrics.events_out(topic).inc(n)

    def readiness(self) -> tuple[bool, str]:
        """Whether this runner serves (for ``/readyz``): running, and holding partitions unless it is
        global. A member without partitions for longer than the session timeout is not ready (also
        a spare member of a group with more members than partitions)."""
        if self.error is not None:
            return False, f"failed: {type(self.error).__name__}"
        if not self._thread.is_alive():
            return False, "not running"
        if self.stage.is_global or self._unassigned_since is None:
            return True, "ok"
        idle_s = time.monotonic() - self._unassigned_since
        if not self._was_assigned:
            return False, f"waiting for its first partition assignment ({idle_s:.0f} s)"
        if idle_s > self.settings.session_timeout_s:
            return False, f"no partitions assigned for {idle_s:.0f} s"
        return True, "rebalancing"

    def _consumer_error(self, message: Message) -> None:
        """A PARTITION_EOF marks the partition read to its end; a broker outage is waited out, logged
        once per kind every 30 s (librdkafka reconnects by itself); anything else stops the runner."""
        error = message.error()
        if error.code() == KafkaError._PARTITION_EOF:
            self._at_end[(message.topic(), message.partition())] = message.offset()
            return
        if error.fatal() or not (error.retriable() or error.code() in _TRANSIENT):
            raise KafkaException(error)
        now = time.monotonic()
        if now - self._transient_logged.get(error.code(), -1e9) >= 30.0:
            self._transient_logged[error.code()] = now
            log.warning("stage %s: %s (broker unreachable? waiting for it)", self.stage.name, error.str())

    def _watch_assignment(self, consumer: Consumer) -> None:
        """Log and measure when the group gives this stage nothing (readiness reads it). librdkafka rejoins
        by itself; a forced leave-and-rejoin was tried and made a broker pause worse (it fired during it)."""
        if self.stage.is_global:
            return
        now = time.monotonic()
        if consumer.assignment():
            if self._is_unassigned_reported:
                log.info("stage %s has partitions again", self.stage.name)
            self._unassigned_since, self._is_unassigned_reported, self._was_assigned = None, False, True
            self.metrics.set_unassigned(self.stage.name, 0.0)
            return
        if self._unassigned_since is None:
            self._unassigned_since = now
        idle_s, timeout_s = now - self._unassigned_since, self.settings.session_timeout_s
        self.metrics.set_unassigned(self.stage.name, idle_s)
        if idle_s > timeout_s and not self._is_unassigned_reported:
            self._is_unassigned_reported = True
            log.warning("stage %s: no partitions assigned for %.0f s (session timeout %.0f s): not ready",
                        self.stage.name, idle_s, timeout_s)

    def _report_lag(self, consumer: Consumer) -> None:
        """Messages not yet processed per partition, from the high watermarks the fetches carried."""
        self._next_lag_s = time.monotonic() + 5.0
        total = 0
        for tp in consumer.assignment():
            try:
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high is None or high < 0:
                continue
            position = self.positions.get((tp.topic, tp.partition))
            if position is not None:
                end = self._at_end.get((tp.topic, tp.partition), -1)
                lag = 0 if end >= position else max(0, high - position)
                self.metrics.set_lag(tp.topic, tp.partition, lag, stage=self.stage.name)
                total += lag
        self.metrics.domain.stage_lag.labels(self.stage.name).set(total)

    # --------------------------------------------------------------- rebalances

    def _on_assign(self, producer: Producer) -> Callable[[Consumer, list[TopicPartition]], None]:
        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            log.info("stage %s assigned %s", self.stage.name, sorted((p.topic, p.partition) for p in partitions))
            self._await_commit()  # restoring writes a fence with the same transactional producer
            if self._changelog is None:
                return
            for partition in sorted({p.partition for p in partitions}):
                self.stage.restore(partition, self._read_changelog(producer, partition))
            # Resume where the restored state ends. Normally that is the committed offset; a stage
            # that snapshots periodically (``is_snapshotting``) replays what came after its last
            # snapshot, so its state is exactly what it would be had it never stopped.
            resume = [TopicPartition(tp.topic, tp.partition, self._applied[(tp.topic, tp.partition)])
                      for tp in partitions if (tp.topic, tp.partition) in self._applied]
            if resume:
                known = {(tp.topic, tp.partition) for tp in resume}
                if self.stage.is_snapshotting:
                    # What lies between the snapshot and the committed offset was handled (and its
                    # outputs published) by the previous owner: replay it into the state only, so no
                    # older decision is published over a newer one.
                    for tp in consumer.committed(resume, timeout=30):
                        if tp.offset > self._applied[(tp.topic, tp.partition)]:
                            self._replay_until[(tp.topic, tp.partition)] = tp.offset
                consumer.assign(resume + [tp for tp in partitions if (tp.topic, tp.partition) not in known])
        return on_assign

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The batch in flight commits while these partitions are still ours (its offsets carry
        # this generation), before the state of the partitions is dropped.
        self._await_commit()
        for partition in sorted({p.partition for p in partitions}):
            self.stage.forget(partition)
        for tp in partitions:
            self._applied.pop((tp.topic, tp.partition), None)
            self._replay_until.pop((tp.topic, tp.partition), None)
            self.positions.pop((tp.topic, tp.partition), None)

    def _read_changelog(self, producer: Producer, partition: int) -> list[tuple[bytes, bytes | None]]:
        """Every record of one changelog partition, up to a fence written now (robust to odd watermarks)."""
        assert self._changelog is not None
        fence = uuid.uuid4().hex.encode()
        # A broker outage during a rebalance is waited out here too (up to ``outage_timeout_s``).
        outage_deadline = time.monotonic() + self.config.outage_timeout_s
        while self._is_transactional:
            try:
                _call_retrying(producer.begin_transaction, outage_deadline)
                producer.produce(self._changelog, key=_FENCE_KEY, value=fence, partition=partition)
                _call_retrying(lambda: producer.commit_transaction(30), outage_deadline)
                break
            except KafkaException as exc:
                if exc.args[0].fatal() or time.monotonic() > outage_deadline:
                    raise
                log.warning("stage %s: fence of %s[%d] not committed (%s); retrying", self.stage.name,
                            self._changelog, partition, exc.args[0].str())
                _abort(producer, outage_deadline)
                time.sleep(1.0)
        if not self._is_transactional:
            producer.produce(self._changelog, key=_FENCE_KEY, value=fence, partition=partition)
            _flush(producer)
        reader = Consumer({**self.settings.kafka_config(), "group.id": f"{self._group}.restore",
                           "enable.auto.commit": False, "isolation.level": "read_committed",
                           "fetch.queue.backoff.ms": 0, "fetch.wait.max.ms": 50})
        reader.assign([TopicPartition(self._changelog, partition, OFFSET_BEGINNING)])
        records: list[tuple[bytes, bytes | None]] = []
        deadline = time.monotonic() + max(self.config.restore_timeout_s, self.config.outage_timeout_s)
        try:
            while True:
                if time.monotonic() > deadline:
                    raise EngineError(f"restoring {self._changelog}[{partition}] took over "
                                      f"{self.config.restore_timeout_s:.0f} s")
                for message in reader.consume(5000, 0.2):
                    if message.error() is not None:
                        continue
                    key = message.key() or b""
                    if key.startswith(_OFFSET_KEY):
                        self._applied[(key[len(_OFFSET_KEY):].decode(), partition)] = int(message.value() or b"0")
                        continue
                    if key == _FENCE_KEY:
                        if message.value() == fence:
                            log.info("stage %s restored partition %d from %d records",
                                     self.stage.name, partition, len(records))
                            return records
                        continue
                    records.append((key, message.value()))
        finally:
            reader.close()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _partitions(offsets: dict[tuple[str, int], int]) -> list[TopicPartition]:
    """Offsets by (topic, partition) as confluent-kafka's ``TopicPartition`` list."""
    return [TopicPartition(t, p, o) for (t, p), o in offsets.items()]


def _next_batch(consumer: Consumer, batch_max: int, timeout_s: float, linger_s: float) -> list[Message]:
    """The next batch: up to ``batch_max`` messages, as soon as one has arrived (at most ``timeout_s``).

    ``consume(n, timeout)`` waits for all ``n`` or the whole timeout, which at a low
    load would add the timeout to every hop; ``poll`` returns on the first message.
    Under load the batch grows by itself: what arrives while one batch is handled
    is the next batch. With ``linger_s``, whatever arrives within it is one batch.
    """
    if linger_s:
        return consumer.consume(batch_max, linger_s)
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(batch_max - 1, 0)]


def _produce_one(producer: Producer, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                 headers: Sequence[tuple[str, bytes]] | None = None) -> None:
    while True:
        try:
            if headers:
                producer.produce(topic, key=key, value=value, headers=list(headers))
            elif partition is None:
                producer.produce(topic, key=key, value=value)
            else:
                producer.produce(topic, key=key, value=value, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)  # the local queue is full: let deliveries drain


def _flush(producer: Producer) -> None:
    remaining = producer.flush(30)
    if remaining:
        raise EngineError(f"{remaining} messages not delivered within 30 s")


#: Consumer errors that mean "the broker is away or the group is moving": waited out, never fatal.
_TRANSIENT = frozenset({
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._RESOLVE,
    KafkaError._WAIT_COORD, KafkaError._MAX_POLL_EXCEEDED, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION,
})


def _call_retrying(call: Callable[[], None], deadline: float) -> None:
    """``call`` again while it fails with a retriable error, with backoff, until ``deadline``."""
    delay = 0.2
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            error = exc.args[0]
            if not error.retriable() or error.txn_requires_abort() or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _abort(producer: Producer, deadline: float) -> None:
    """Abort the transaction in progress, if any, retrying while the broker is away."""
    while True:
        try:
            producer.abort_transaction(30)
            return
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError._STATE:  # no transaction in progress
                return
            if error.fatal() or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _retry(call: Callable[[], None], attempts: int = 5) -> None:
    for attempt in range(attempts):
        try:
            call()
            return
        except KafkaException as exc:
            if not exc.args[0].retriable() or attempt == attempts - 1:
                raise


def _raw(message: Message) -> RawMessage:
    kind, ts = message.timestamp()
    return RawMessage(message.topic(), message.partition(), message.offset(), message.key(), message.value(),
                      ts if kind else 0, as_headers(message.headers()))
