"""Insight stages: error patterns (drain3), satisfaction KPIs and root causes, cache opportunities → lw.insights.

Each stage sees every partition this worker owns and keeps one model of them (a pattern, a
KPI or a repeated prompt is a statistic of the whole stream): run each in one worker
(``LOOPWISE_STAGES``), as ``remediate``. Their state is plain JSON in the stage's changelog,
written to the lowest input partition the worker holds.
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson

from processors.insights.cache import CacheConfig, CacheDetector
from processors.insights.patterns import ErrorLine, PatternConfig, PatternMiner
from processors.insights.satisfaction import SatisfactionConfig, SatisfactionMonitor
from processors.throttle import AnomalyThrottle
from schemas.records import LogEvent, LogLevel, Outcome, RequestEvent, Status
from streams.edge import RawMessage
from streams.stages.base import Outgoing, Stage, StageEnv

_CLOCK_KEY = b"clock"
_MINED_LEVELS = frozenset((LogLevel.WARNING, LogLevel.ERROR, LogLevel.CRITICAL))


class _WholeStreamState(Stage):
    """Shared by the insight stages: one model for all owned partitions, its changes at the lowest one."""

    has_state = True

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self._owned_partitions: set[int] = set()

    @property
    def home_partition(self) -> int:
        return min(self._owned_partitions, default=0)

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        self._owned_partitions.add(partition)
        for key, value in records:
            if value is not None and not key.startswith(b"~"):  # ~offset:, ~fence: the engine's own
                self.load(key, orjson.loads(value))

    def forget(self, partition: int) -> None:
        self._owned_partitions.discard(partition)

    def load(self, key: bytes, state: Any) -> None:
        """Load one changelog record (oldest first; the newest of a key wins)."""


class PatternStage(_WholeStreamState):
    """logs (warning and worse) + requests' error messages → error-pattern anomalies and insights."""

    name = "patterns"
    inputs = ("logs", "requests")

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.miner = PatternMiner(PatternConfig())
        self.throttle = AnomalyThrottle()

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        if isinstance(record, LogEvent):
            if record.level in _MINED_LEVELS:
                self.miner.observe(ErrorLine(record.ts_ms, record.message, record.service, record.route,
                                             record.workflow))
            else:
                self.miner.watermark_ms = max(self.miner.watermark_ms, record.ts_ms)
            return
        assert isinstance(record, RequestEvent)
        self.miner.count_request(record.route)
        if record.status is not Status.OK and record.error_message:
            self.miner.observe(ErrorLine(record.ts_ms, record.error_message, "gateway", record.route,
                                         record.workflow, record.variant, record.error_type or ""))
        else:
            self.miner.watermark_ms = max(self.miner.watermark_ms, record.ts_ms)

    def after_batch(self) -> list[Outgoing]:
        if not self.miner.watermark_ms:
            return []
        anomalies, insights = self.miner.advance(self.miner.watermark_ms)
        out: list[Outgoing] = []
        self.env.anomalies(anomalies, self.throttle, out)
        out.extend(self.env.encode("insights", insight.subject, insight) for insight in insights)
        return out

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        home = self.home_partition
        changes: list[tuple[int, bytes, bytes | None]] = [
            (home, b"t:%d" % cid, orjson.dumps(state)) for cid, state in self.miner.drain_dirty()]
        if changes or self.miner.watermark_ms:
            changes.append((home, _CLOCK_KEY, orjson.dumps(self.miner.clock())))
        return changes

    def load(self, key: bytes, state: Any) -> None:
        if key == _CLOCK_KEY:
            self.miner.load_clock(state)
        elif key.startswith(b"t:"):
            self.miner.load_template(state)


class SatisfactionStage(_WholeStreamState):
    """final outcomes → satisfaction KPIs (Prometheus gauges), drop detection, root-cause insights."""

    name = "satisfaction"
    inputs = ("outcomes",)
    #: A snapshot at each closed bucket; the engine replays what came after it.
    is_snapshotting = True

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.monitor = SatisfactionMonitor(SatisfactionConfig())

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        assert isinstance(record, Outcome)
        if record.is_final:
            self.monitor.observe(record, message.partition)

    def after_batch(self) -> list[Outgoing]:
        insights = self.monitor.advance()
        for (workflow, kpi), value in self.monitor.drain_gauges():
            self.env.metrics.set_satisfaction(workflow, kpi, value)
        return [self.env.encode("insights", insight.subject, insight) for insight in insights]

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        if not self.monitor.is_dirty:
            return []
        return [(self.home_partition, b"monitor", orjson.dumps(self.monitor.snapshot()))]

    def load(self, key: bytes, state: Any) -> None:
        if key == b"monitor":
            self.monitor.restore(state)

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        super().restore(partition, records)
        self.monitor.expect(partition)  # a partition not read yet must not let buckets close without it

    def forget(self, partition: int) -> None:
        super().forget(partition)
        self.monitor.drop_source(partition)


class CacheStage(_WholeStreamState):
    """requests with a prompt fingerprint → cache-opportunity insights (hit potential, $ and latency saved)."""

    name = "cache"
    inputs = ("requests",)
    #: A snapshot at each report; the engine replays what came after it.
    is_snapshotting = True

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.detector = CacheDetector(CacheConfig())

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        assert isinstance(record, RequestEvent)
        self.detector.observe(record)

    def after_batch(self) -> list[Outgoing]:
        return [self.env.encode("insights", insight.subject, insight) for insight in self.detector.advance()]

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        if not self.detector.is_dirty:
            return []
        return [(self.home_partition, b"detector", orjson.dumps(self.detector.snapshot()))]

    def load(self, key: bytes, state: Any) -> None:
        if key == b"detector":
            self.detector.restore(state)
