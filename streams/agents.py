"""Faust agents: move batches of raw bytes between Kafka and the stages, nothing more."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import faust

from streams.edge import RawMessage
from streams.stages import Outgoing, Stage

if TYPE_CHECKING:
    from streams.app import LoopwiseApp

log = logging.getLogger(__name__)


def register_agents(app: "LoopwiseApp", stages: Sequence[Stage], *, batch_max: int, batch_within_s: float) -> None:
    """One agent per stage, subscribed to the stage's input topics, plus a lag reporter."""
    positions: dict[tuple[str, int], int] = {}
    for stage in stages:
        channel = app.topic(*stage.topics, key_serializer="raw", value_serializer="raw")
        agent = _batch_agent(app, stage, positions, batch_max, batch_within_s)
        app.agent(channel, name=f"loopwise.{stage.name}")(agent)
    app.timer(5.0, name="loopwise.lag")(_lag_reporter(app, positions))


def _batch_agent(app: "LoopwiseApp", stage: Stage, positions: dict[tuple[str, int], int],
                 batch_max: int, within_s: float) -> Callable[[faust.StreamT[bytes]], Any]:
    processing = app.metrics.processing(stage.name)

    async def run(stream: faust.StreamT[bytes]) -> None:
        # take_events acks a batch when the next one is requested, i.e. only
        # after send_all below has seen every output delivered: at-least-once.
        async for events in stream.take_events(batch_max, within=within_s):
            started = time.perf_counter()
            batch = [_raw(event.message) for event in events]
            await send_all(app, stage.handle(batch))
            _observe(app, batch, positions)
            processing.observe(time.perf_counter() - started)

    run.__name__ = run.__qualname__ = f"loopwise_{stage.name.replace('.', '_')}"
    return run


async def send_all(app: "LoopwiseApp", outgoing: Sequence[Outgoing]) -> None:
    """Send and wait until every message is acknowledged by the broker."""
    if not outgoing:
        return
    producer = app.producer
    futures = [await producer.send(o.topic, o.key, o.value, None, None, None) for o in outgoing]
    await asyncio.gather(*futures)
    counts: dict[str, int] = {}
    for o in outgoing:
        counts[o.topic] = counts.get(o.topic, 0) + 1
    for topic, n in counts.items():
        app.metrics.events_out(topic).inc(n)


def _raw(message: Any) -> RawMessage:
    return RawMessage(
        topic=message.topic, partition=message.partition, offset=message.offset,
        key=message.key, value=message.value, timestamp_ms=int((message.timestamp or 0) * 1000),
    )


def _observe(app: "LoopwiseApp", batch: Sequence[RawMessage], positions: dict[tuple[str, int], int]) -> None:
    now_s = time.time()
    for message in batch:
        positions[(message.topic, message.partition)] = message.offset
    last = batch[-1]
    if last.timestamp_ms:
        app.metrics.event_latency(last.topic).observe(max(0.0, now_s - last.timestamp_ms / 1000))


def _lag_reporter(app: "LoopwiseApp", positions: dict[tuple[str, int], int]) -> Callable[[], Any]:
    async def report_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            done = positions.get((tp.topic, tp.partition), -1)
            app.metrics.set_lag(tp.topic, tp.partition, max(0, int(highwater) - done - 1))

    return report_lag
