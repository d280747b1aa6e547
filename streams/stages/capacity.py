"""The capacity stages: load (per-partition minute sums) → forecast (per entity) → scale; schedule (jobs).

Scale-out: requests are keyed by request_id, so one route's traffic is spread
over every partition. ``load`` sums each input partition's traffic per entity
and minute (counts are additive) and, once the partition's event time has
passed the minute, sends the partial sums keyed by entity to the internal topic
``repartition.forecast``. ``forecast`` reads that topic: all the partial sums of
one entity land in one partition, so each entity is forecast by exactly one
worker whatever the number of workers. Both keep their state in their changelog.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import orjson

from processors.capacity.forecast import BucketAggregator, EntitySeries, ForecasterConfig, entities_of_request
from processors.capacity.jobs import JobScheduler, PriceSchedule
from processors.capacity.local import pick_route
from processors.capacity.scaling import ScalingConfig, ScalingPlanner, as_command, command_id
from schemas.records import Command, Forecast, JobSubmission, LoadCount, MetricEvent, RequestEvent
from schemas.signing import sign
from sinks.capacity_gauges import gauges
from streams.edge import RawMessage
from streams.stages.base import Outgoing, Stage, StageEnv

_AGG_KEY = b"agg"
_WM_KEY = b"~wm"


class LoadStage(Stage):
    """requests + metrics → per-minute partial sums per entity, keyed by entity (``repartition.forecast``)."""

    name = "load"
    inputs = ("requests", "metrics")
    has_state = True

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.aggregators: dict[int, BucketAggregator] = {}
        self._touched: set[int] = set()

    def _agg(self, partition: int) -> BucketAggregator:
        found = self.aggregators.get(partition)
        if found is None:
            found = self.aggregators[partition] = BucketAggregator()
        return found

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        agg = self._agg(message.partition)
        self._touched.add(message.partition)
        if isinstance(record, RequestEvent):
            for entity, value in entities_of_request(record.route, record.workflow,
                                                     record.tokens_in + record.tokens_out):
                agg.add(entity, record.ts_ms, value)
        else:
            assert isinstance(record, MetricEvent)
            agg.add(f"metric:{record.source}/{record.name}", record.ts_ms, record.value)

    def after_batch(self) -> list[Outgoing]:
        out = []
        for partition in sorted(self._touched):
            agg = self.aggregators[partition]
            for entity, bucket, total, samples in agg.close():
                count = LoadCount(entity, bucket, agg.bucket_ms, total, samples, partition)
                out.append(self.env.encode("repartition.forecast", entity, count))
        return out

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        changes = [(p, _AGG_KEY, orjson.dumps(self.aggregators[p].snapshot())) for p in sorted(self._touched)]
        self._touched.clear()
        return changes

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        agg = self.aggregators[partition] = BucketAggregator()
        for key, value in records:
            if key == _AGG_KEY and value is not None:
                agg.load(orjson.loads(value))

    def forget(self, partition: int) -> None:
        self.aggregators.pop(partition, None)
        self._touched.discard(partition)


class ForecastStage(Stage):
    """repartition.forecast → forecasts (compacted, per entity) and ``loopwise_forecast`` gauges.

    A bucket is forecast once partial sums two buckets later have arrived on the
    partition (sources a little behind still make it); later partial sums are counted late.
    """

    name = "forecast"
    inputs = ("repartition.forecast",)
    companions = ("load",)  # its first half: without it nothing arrives
    has_state = True
    is_gate_deduplicating = False
    _CLOSE_LAG_BUCKETS = 2
    #: The whole model of an entity (~18 kB of JSON) goes to the changelog at most this often in event
    #: time; the small part that changes every minute (sums, clock, level) with every batch. A restart
    #: loses at most this much of the profile's learning, never a count.
    _FULL_EVERY_MS = 900_000

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.config = ForecasterConfig()
        self.series: dict[int, dict[str, EntitySeries]] = {}
        self.watermarks: dict[int, int] = {}
        self._closed: dict[int, int] = {}
        self._changed: dict[int, set[str]] = {}
        self._full_ms: dict[tuple[int, str], int] = {}
        self.late = 0
        self.gauges = gauges(env.metrics)

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        assert isinstance(record, LoadCount)
        partition = message.partition
        entities = self.series.setdefault(partition, {})
        series = entities.get(record.entity)
        if series is None:
            series = entities[record.entity] = EntitySeries(record.entity, self.config)
        if not series.add(record.ts_ms, record.total, record.samples):
            self.late += 1
        self.watermarks[partition] = max(self.watermarks.get(partition, 0), record.ts_ms)
        self._changed.setdefault(partition, set()).add(record.entity)

    def after_batch(self) -> list[Outgoing]:
        out: list[Outgoing] = []
        bucket_ms = self.config.bucket_ms
        for partition, watermark in self.watermarks.items():
            until = watermark - (self._CLOSE_LAG_BUCKETS - 1) * bucket_ms
            if until <= self._closed.get(partition, 0):
                continue
            self._closed[partition] = until
            for entity, series in self.series.get(partition, {}).items():
                points = series.advance(until)
                if points:
                    self._changed.setdefault(partition, set()).add(entity)
                    out.append(self.env.encode("forecasts", entity, self._record(series, points)))
        return out

    def _record(self, series: EntitySeries, points: list[Any]) -> Forecast:
        cfg = self.config
        assert series.next_bucket_ms is not None
        for p in points:
            if p.horizon_ms == 15 * 60_000:
                self.gauges.set_forecast(series.entity, p.horizon_ms / 1000, p.value, p.lower, p.upper)
        model = "seasonal(day×week)+level" if series.forecaster.is_seasonal else "level (warming up: < 1 day seen)"
        lo, hi = cfg.interval
        return Forecast(series.entity, series.next_bucket_ms, cfg.bucket_ms / 1000, series.last_value,
                        tuple(p.horizon_ms / 1000 for p in points), tuple(p.value for p in points),
                        tuple(p.lower for p in points), tuple(p.upper for p in points), model, round(hi - lo, 6))

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        changes: list[tuple[int, bytes, bytes | None]] = []
        for partition, entities in sorted(self._changed.items()):
            for entity in sorted(entities):
                series = self.series[partition][entity]
                clock = series.next_bucket_ms or 0
                if clock - self._full_ms.get((partition, entity), -(2**62)) >= self._FULL_EVERY_MS:
                    self._full_ms[(partition, entity)] = clock
                    changes.append((partition, b"e:" + entity.encode(), orjson.dumps(series.snapshot())))
                changes.append((partition, b"h:" + entity.encode(), orjson.dumps(series.hot_snapshot())))
            changes.append((partition, _WM_KEY, orjson.dumps([self.watermarks.get(partition, 0),
                                                              self._closed.get(partition, 0)])))
        self._changed.clear()
        return changes

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        entities: dict[str, EntitySeries] = {}
        hot: dict[str, bytes] = {}
        for key, value in records:
            if key == _WM_KEY and value is not None:
                self.watermarks[partition], self._closed[partition] = orjson.loads(value)
            elif key.startswith(b"e:") and value is not None:
                entity = key[2:].decode()
                entities[entity] = EntitySeries.restore(entity, orjson.loads(value), self.config)
            elif key.startswith(b"h:") and value is not None:
                hot[key[2:].decode()] = value
        for entity, value in hot.items():  # the latest small part over the last full model
            series = entities.get(entity) or entities.setdefault(entity, EntitySeries(entity, self.config))
            series.load_hot(orjson.loads(value))
            self._full_ms[(partition, entity)] = -(2**62)  # write a full model at the next change
        self.series[partition] = entities

    def forget(self, partition: int) -> None:
        for state in (self.series, self.watermarks, self._closed, self._changed):
            state.pop(partition, None)  # type: ignore[attr-defined]
        self._full_ms = {k: v for k, v in self._full_ms.items() if k[0] != partition}


def _route_of(entity: str) -> str | None:
    if entity.startswith("route:") and entity.endswith("|rps"):
        return entity[len("route:"):-len("|rps")]
    return None


def _peak_upper(forecast: Forecast, from_s: float, to_s: float) -> float:
    """The most demand the forecast's upper bounds allow between ``from_s`` and ``to_s`` ahead."""
    inside = [u for h, u in zip(forecast.horizons_s, forecast.upper) if from_s <= h <= to_s]
    return max([_upper_at(forecast, from_s), _upper_at(forecast, to_s), *inside])


def _upper_at(forecast: Forecast, horizon_s: float) -> float:
    """The forecast's upper bound at ``horizon_s`` (linear between its horizons; the current value before the first)."""
    xs, ys = [0.0, *forecast.horizons_s], [forecast.value, *forecast.upper]
    for i in range(1, len(xs)):
        if horizon_s <= xs[i]:
            w = (horizon_s - xs[i - 1]) / max(xs[i] - xs[i - 1], 1e-9)
            return ys[i - 1] + w * (ys[i] - ys[i - 1])
    return ys[-1]


def _route_capacity(env: StageEnv, route: str) -> float | None:
    for definition in env.registry:
        for spec in definition.routes:
            if spec.name == route and spec.capacity_rps:
                return float(spec.capacity_rps)
    return None


class ScaleStage(Stage):
    """forecasts → signed ``scale_to`` commands (``commands.scaling``) and the desired-replicas gauge.

    A route is a scaling target when its workflow declares ``capacity_rps``: the
    capacity of one replica. Replicas are planned for the upper forecast bound at
    the provisioning lead time (``LOOPWISE_SCALING_LEAD_S``).
    """

    name = "scale"
    inputs = ("forecasts",)
    has_state = True
    #: Capacity is planned for the peak of the upper bound from the lead time to this much after it.
    _WINDOW_S = 600.0

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        s = env.settings
        cap = s.scaling_max_extra_usd_per_hour
        self.config = ScalingConfig(target_utilisation=s.scaling_target_utilisation,
                                    down_utilisation=max(s.scaling_target_utilisation - 0.15, 0.05),
                                    cost_per_replica_hour_usd=s.scaling_replica_cost_usd_per_hour,
                                    max_extra_usd_per_hour=math.inf if cap is None else cap,
                                    lead_ms=int(s.scaling_lead_s * 1000))
        self.planners: dict[int, ScalingPlanner] = {}
        self._changed: dict[int, set[str]] = {}
        self.gauges = gauges(env.metrics)

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        assert isinstance(record, Forecast)
        route = _route_of(record.entity)
        replica_rps = None if route is None else _route_capacity(self.env, route)
        if route is None or replica_rps is None:
            return
        planner = self.planners.setdefault(message.partition, ScalingPlanner(self.config))
        lead_s = self.config.lead_ms / 1000 + record.bucket_s
        demand = max(record.value, _peak_upper(record, lead_s, lead_s + self._WINDOW_S))
        decision = planner.plan(route, record.ts_ms, demand, replica_rps)
        self.gauges.desired_replicas.labels(route).set(planner.targets[route].replicas)
        if decision is not None:
            self._changed.setdefault(message.partition, set()).add(route)
            command = as_command(decision, self.config, self.env.settings.signing_key_bytes, self.env.settings.app_id)
            out.append(self.env.encode("commands.scaling", route, command))

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        changes: list[tuple[int, bytes, bytes | None]] = []
        for partition, targets in sorted(self._changed.items()):
            for target in sorted(targets):
                snap = self.planners[partition].snapshot(target)
                changes.append((partition, b"t:" + target.encode(), None if snap is None else orjson.dumps(snap)))
        self._changed.clear()
        return changes

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        planner = self.planners[partition] = ScalingPlanner(self.config)
        for key, value in records:
            if key.startswith(b"t:") and value is not None:
                planner.load(key[2:].decode(), orjson.loads(value))

    def forget(self, partition: int) -> None:
        planner = self.planners.pop(partition, None)
        for target in planner.targets if planner is not None else ():
            try:  # the partition's next owner exports it: no stale value for KEDA's max()
                self.gauges.desired_replicas.remove(target)
            except KeyError:
                pass
        self._changed.pop(partition, None)


class ScheduleStage(Stage):
    """jobs (submissions and status events) + forecasts (route headroom) → signed ``release`` commands.

    Dependencies may cross partitions, so the queue is one: run this stage in one
    worker (``LOOPWISE_STAGES``), like ``remediate``. Each changed job goes to the
    changelog in the batch that changed it; a release's id is a hash of the job
    and attempt, so a replay re-sends the same id (consumers drop duplicates).
    """

    name = "schedule"
    inputs = ("jobs", "forecasts")
    has_state = True
    is_gate_deduplicating = False  # status events share their job's id; the queue recognises repeats
    _TTL_AFTER_LATEST_MS = 900_000

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        s = env.settings
        prices = orjson.loads(s.job_prices) if s.job_prices else {}
        self.scheduler = JobScheduler(PriceSchedule(prices, s.job_price_timezone))
        self._watermark_ms = 0
        self.gauges = gauges(env.metrics)

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        self._watermark_ms = max(self._watermark_ms, record.ts_ms)
        if isinstance(record, Forecast):
            route = _route_of(record.entity)
            capacity = None if route is None else _route_capacity(self.env, route)
            if route is not None and capacity:
                self.scheduler.set_headroom(route, 1.0 - _upper_at(record, 900.0) / capacity)
            return
        assert isinstance(record, JobSubmission)
        if record.status is None:
            self.scheduler.submit(record.job_id, ts_ms=record.ts_ms, workflow=record.workflow,
                                  priority=record.priority, cost_usd=record.estimated_cost_usd,
                                  duration_s=record.estimated_duration_s, deadline_ms=record.deadline_ts_ms,
                                  depends_on=record.depends_on, route=record.route, cron=record.cron,
                                  tz=record.timezone)
        else:
            self.scheduler.status(record.job_id, record.status, attempt=record.attempt, ts_ms=record.ts_ms)

    def after_batch(self) -> list[Outgoing]:
        if not self._watermark_ms:
            return []
        out = []
        key = self.env.settings.signing_key_bytes
        for release in self.scheduler.advance(self._watermark_ms):
            route, where = release.route, "its own route"
            definition = self.env.registry.get(release.workflow) if route is None else None
            if definition is not None:  # no route of its own: local while free, else the cheapest hosted
                route, where = pick_route(definition.routes, self.scheduler.headroom)
            command = sign(Command(
                command_id=command_id("release", release.job_id, release.attempt), ts_ms=release.ts_ms,
                target=release.job_id, action="release",
                reason=f"{release.reason}: price x{release.price:.2f}; on {route or 'any route'} ({where})",
                evidence=orjson.dumps({"latest_start_ms": release.latest_start_ms, "price": release.price,
                                       "route": route, "headroom": self.scheduler.headroom}).decode(),
                expires_ts_ms=max(release.latest_start_ms, release.ts_ms) + self._TTL_AFTER_LATEST_MS,
                issuer=self.env.settings.app_id, signature="",
                params={"attempt": str(release.attempt), "workflow": release.workflow, "route": route or ""},
            ), key)
            out.append(self.env.encode("commands.jobs", release.job_id, command))
        self.gauges.jobs_queued.set(sum(1 for j in self.scheduler.jobs.values() if j.status == "waiting"))
        return out

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        changes: list[tuple[int, bytes, bytes | None]] = [
            (0, b"j:" + job_id.encode(), orjson.dumps(data)) for job_id, data in self.scheduler.drain_changes()]
        if changes:
            changes.append((0, _WM_KEY, orjson.dumps(self._watermark_ms)))
        return changes

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        if partition != 0:
            return
        for key, value in records:
            if key == _WM_KEY and value is not None:
                self._watermark_ms = max(self._watermark_ms, int(orjson.loads(value)))
            elif key.startswith(b"j:") and value is not None:
                self.scheduler.load(orjson.loads(value))

    def forget(self, partition: int) -> None:
        if partition == 0:
            self.scheduler.jobs.clear()
