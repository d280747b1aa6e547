"""Compute ceiling: loopwise's stages in process, no Kafka (decode → correlate → detect → learn → encode).

Batches of simulator records go to the stage that reads their topic, as the
worker's agents would hand them over; what a stage emits onto a topic another
stage reads (outcomes → learn, anomalies → incidents) is fed to that stage
with the next batch, so the learn and incident stages do their real share.
"""

from __future__ import annotations

import time
import zlib
from typing import Sequence

from bench.throughput.data import SimRecord
from bench.throughput.harness import Result
from streams.edge import RawMessage
from streams.stages import STAGES, Stage, StageEnv

BATCH = 500
PARTITIONS = 4


def run_inprocess(records: Sequence[SimRecord], batch: int = BATCH) -> Result:
    """Input events per second through every stage's ``handle`` (fresh stages, wall clock of this process)."""
    from infra.settings import Settings
    from sinks.prometheus import Metrics

    settings = Settings(bootstrap_servers="x:1")
    env = StageEnv(settings, Metrics())
    # the stages a default worker runs (not the opt-in ones: the lake writes files, notify posts)
    stages = [stage_type(env) for stage_type in STAGES if not getattr(stage_type, "is_opt_in", False)]
    by_topic: dict[str, list[Stage]] = {}
    for stage in stages:  # several stages may read one topic (each has its own consumer group in a worker)
        for topic in stage.topics:
            by_topic.setdefault(topic, []).append(stage)
    messages = [RawMessage(topic=settings.topic(r.logical), partition=zlib.crc32(r.key) % PARTITIONS, offset=i,
                           key=r.key, value=r.value, timestamp_ms=0) for i, r in enumerate(records)]
    offsets: dict[str, int] = {}
    started = time.perf_counter()
    pending: list[RawMessage] = []
    for at in range(0, len(messages), batch):
        pending = _dispatch(messages[at:at + batch] + pending, by_topic, offsets)
    while pending:  # the last outcomes and anomalies still have a stage to go through
        pending = _dispatch(pending, by_topic, offsets)
    elapsed = time.perf_counter() - started
    return Result(eps=len(messages) / elapsed, events=len(messages), seconds=elapsed)


def _dispatch(batch: list[RawMessage], by_topic: dict[str, list[Stage]], offsets: dict[str, int]) -> list[RawMessage]:
    """Hand each stage its share of ``batch``; return the outputs some stage reads, as messages."""
    shares: dict[int, tuple[Stage, list[RawMessage]]] = {}
    for message in batch:
        for stage in by_topic[message.topic]:
            shares.setdefault(id(stage), (stage, []))[1].append(message)
    fed_back: list[RawMessage] = []
    for stage, share in shares.values():
        for out in stage.handle(share):
            if out.topic in by_topic:
                offset = offsets[out.topic] = offsets.get(out.topic, -1) + 1
                partition = zlib.crc32(out.key or b"") % PARTITIONS
                fed_back.append(RawMessage(topic=out.topic, partition=partition, offset=offset, key=out.key,
                                         value=out.value, timestamp_ms=0))
    return fed_back
