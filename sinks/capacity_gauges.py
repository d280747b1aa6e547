"""Prometheus gauges of the capacity stages: forecasts and desired replicas (what KEDA's Prometheus scaler reads)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge

_BY_REGISTRY: dict[int, "CapacityGauges"] = {}


class CapacityGauges:
    """One set per registry (stages of one worker share it; gauges cannot be registered twice)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.forecast = Gauge("loopwise_forecast", "Latest load forecast per entity, horizon and bound "
                              "(point, lower, upper).", ["entity", "horizon_s", "bound"], registry=registry)
        self.desired_replicas = Gauge("loopwise_scaling_desired_replicas",
                                      "Replicas loopwise wants per target, ahead of forecast demand "
                                      "(KEDA: Prometheus scaler).", ["target"], registry=registry)
        self.jobs_queued = Gauge("loopwise_jobs_queued", "Jobs waiting for release.", registry=registry)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> "CapacityGauges":
        found = _BY_REGISTRY.get(id(registry))
        if found is None:
            found = _BY_REGISTRY[id(registry)] = cls(registry)
        return found

    def set_forecast(self, entity: str, horizon_s: float, point: float, lower: float, upper: float) -> None:
        h = f"{horizon_s:g}"
        for bound, value in (("point", point), ("lower", lower), ("upper", upper)):
            self.forecast.labels(entity, h, bound).set(value)


def gauges(metrics: Any) -> CapacityGauges:
    """The capacity gauges on a ``sinks.prometheus.Metrics``' registry."""
    return CapacityGauges.of(metrics.registry)
