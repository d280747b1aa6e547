"""The ``lake`` stage: every topic's records to Parquet (``sinks.parquet``), exactly once by source offset."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, Sequence

import orjson
import pyarrow as pa

from infra.topics import BY_NAME, TOPICS
from schemas.records import DeadLetter
from schemas.serde import RECORD_TYPES
from sinks.parquet import LakeWriter, hour_of, table_schema
from streams.edge import RawMessage
from streams.stages.base import Outgoing, Stage, StageEnv

log = logging.getLogger(__name__)

#: Every declared topic: inputs, outcomes, decisions, commands, insights, dead letters; not the internal
#: repartition topics (copies of outcomes and counts re-keyed for a stage, already in the lake as their source).
LAKE_TOPICS: tuple[str, ...] = tuple(spec.name for spec in TOPICS if not spec.name.startswith("repartition."))

TopicPartition = tuple[str, int]


class LakeStage(Stage):
    """all topics → Parquet files, Hive-partitioned by topic, date and hour of event time.

    Files are written in ``handle``, before the engine commits the batch's offsets;
    a replay after a crash first discards what the uncommitted batches wrote
    (``LakeWriter.discard_from``), so each record is in the lake exactly once.
    Not in the default stage set: run it with ``LOOPWISE_STAGES=lake`` (or add it to the list).
    """

    name = "lake"
    inputs = LAKE_TOPICS
    is_gate_deduplicating = False  # the lake keeps what the topic holds, repeats included
    is_opt_in = True

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        # The lake reads every topic but owns none: the stages that process them dead-letter bad input.
        for name in self.inputs:
            if env.owners.get(name) == self.name:
                del env.owners[name]
        self._owned = set()
        self.writer = LakeWriter(env.settings.lake_location)
        self._types = {env.topic(n): RECORD_TYPES[BY_NAME[n].record] for n in self.inputs}
        self._bytes_fields = {topic: [f.name for f in table_schema(t) if f.type == pa.binary()]
                              for topic, t in self._types.items()}
        self._next: dict[TopicPartition, int] = {}
        self._prev_first: dict[TopicPartition, int] = {}
        self._touched: dict[str, set[tuple[str, int]]] = defaultdict(set)
        self._compact_at = time.monotonic() + env.settings.lake_compact_interval_s
        self._watermark_ms = 0
        self.skipped = 0

    def handle(self, batch: Sequence[RawMessage]) -> list[Outgoing]:
        if not batch:
            return []
        committed = {tp: self._prev_first.get(tp, offset) for tp, offset in self._next.items()}
        firsts: dict[TopicPartition, int] = {}
        groups: dict[tuple[str, int, str, int], list[dict[str, Any]]] = defaultdict(list)
        for message in batch:
            tp = (message.topic, message.partition)
            if tp not in firsts:
                firsts[tp] = message.offset
                self._rewind_if_replayed(tp, message.offset)
            self._next[tp] = message.offset + 1
            row = self._row(message)
            if row is None:
                continue
            ts_ms = row.get("ts_ms") or message.timestamp_ms
            date, hour = hour_of(ts_ms)
            groups[(message.topic, message.partition, date, hour)].append(row)
            self._watermark_ms = max(self._watermark_ms, ts_ms)
        metrics = self.env.metrics
        for (topic, partition, date, hour), rows in groups.items():
            self.writer.write(self._types[topic], topic, partition, date, hour, rows)
            self._touched[topic].add((date, hour))
            metrics.lake_records(topic).inc(len(rows))
            metrics.lake_files("written").inc()
        self._prev_first = firsts
        if time.monotonic() >= self._compact_at:
            self._maintain(committed)
            # this batch's files commit with it: look at its hours again next time
            for topic, partition, date, hour in groups:
                self._touched[topic].add((date, hour))
        return []

    def _rewind_if_replayed(self, tp: TopicPartition, offset: int) -> None:
        """First batch of a partition since it was assigned, or a rewind: drop uncommitted files from here."""
        expected = self._next.get(tp)
        if expected is None or offset < expected:
            discarded = self.writer.discard_from(self._types[tp[0]], tp[0], tp[1], offset)
            if discarded:
                self.env.metrics.lake_files("discarded").inc(discarded)

    def _row(self, message: RawMessage) -> dict[str, Any] | None:
        record = self._gates[message.topic].admit_one(message)
        if isinstance(record, DeadLetter):
            self.skipped += 1  # the stage that owns the topic dead-letters it
            return None
        row: dict[str, Any] = orjson.loads(orjson.dumps(record, default=_no_bytes))
        for name in self._bytes_fields[message.topic]:
            row[name] = getattr(record, name)
        row["_partition"], row["_offset"] = message.partition, message.offset
        row["_key"] = None if message.key is None else message.key.decode("utf-8", "replace")
        row["_kafka_ts_ms"] = message.timestamp_ms or None
        return row

    def _maintain(self, committed: dict[TopicPartition, int]) -> None:
        """Compact the hours written since the last time; expire hours past retention."""
        settings = self.env.settings
        self._compact_at = time.monotonic() + settings.lake_compact_interval_s
        by_topic: dict[str, dict[int, int]] = defaultdict(dict)
        for (topic, partition), offset in committed.items():
            by_topic[topic][partition] = offset
        removed = 0
        for topic, hours in self._touched.items():
            removed += self.writer.compact(self._types[topic], topic, hours, by_topic.get(topic, {}))
        self._touched.clear()
        self.env.metrics.lake_files("compacted").inc(removed)
        if settings.lake_retention_days > 0 and self._watermark_ms:
            horizon_ms = min(self._watermark_ms, self.env.now_ms()) - int(settings.lake_retention_days * 86_400_000)
            expired = self.writer.expire(horizon_ms)
            if expired:
                log.info("lake: %d hour folders past the %.0f-day retention deleted", expired,
                         settings.lake_retention_days)

    def forget(self, partition: int) -> None:
        # Another worker may write this partition now: re-check its files when it comes back.
        for tp in [tp for tp in self._next if tp[1] == partition]:
            self._next.pop(tp, None)
            self._prev_first.pop(tp, None)


def _no_bytes(value: Any) -> None:
    """orjson cannot write bytes: such fields are set from the record itself."""
    if isinstance(value, bytes):
        return None
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
