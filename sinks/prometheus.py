"""Prometheus metrics of a loopwise worker, on its own registry (never the global one)."""

from __future__ import annotations

import logging
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sinks.domain_metrics import DomainMetrics
from sinks.http import start_server

log = logging.getLogger(__name__)

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The worker's metrics. Label children are cached so the hot path does no label lookups.

    >>> m = Metrics()
    >>> m.events_in("lw.requests").inc(3)
    >>> m.value("loopwise_events_in_total", topic="lw.requests")
    3.0
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._in = Counter("loopwise_events_in_total", "Valid events consumed, per topic.", ["topic"], registry=reg)
        self._out = Counter("loopwise_events_out_total", "Events produced, per topic.", ["topic"], registry=reg)
        self._dlq = Counter(
            "loopwise_dlq_total", "Inputs sent to the dead-letter topic, per source topic and reason.",
            ["topic", "reason"], registry=reg,
        )
        self._processing = Histogram(
            "loopwise_processing_seconds", "Time to process one batch, per agent.", ["agent"],
            buckets=_LATENCY_BUCKETS_S, registry=reg,
        )
        self._event_latency = Histogram(
            "loopwise_event_latency_seconds",
            "From an event's Kafka timestamp to the end of its processing, per topic.", ["topic"],
            buckets=_LATENCY_BUCKETS_S, registry=reg,
        )
        self._lag = Gauge(
            "loopwise_consumer_lag", "Messages not yet processed, per stage (consumer group), topic and partition; "
            "0 on a partition read to its end.", ["stage", "topic", "partition"], registry=reg,
        )
        self._unassigned = Gauge(
            "loopwise_stage_unassigned_seconds", "How long a stage's consumer has held no partition (0: assigned).",
            ["stage"], registry=reg,
        )
        self._lake_records = Counter("loopwise_lake_records_total", "Records written to the Parquet lake, per topic.",
                                     ["topic"], registry=reg)
        self._lake_files = Counter(
            "loopwise_lake_files_total",
            "Lake files by action: written, compacted (merged away), discarded (uncommitted, rewritten on replay).",
            ["action"], registry=reg,
        )
        self._satisfaction = Gauge(
            "loopwise_satisfaction", "Satisfaction KPI over the last closed window, per workflow and KPI "
            "(thumbs_up_rate, mean_rating, nps, task_completion, edit_rate, delete_rate, dwell_s).",
            ["workflow", "kpi"], registry=reg,
        )
        self._model_error = Gauge(
            "loopwise_model_reward_error", "The router's prediction of reward against the reward observed, per "
            "workflow: mean absolute error (stat=mae) and mean signed error, observed − predicted (stat=bias).",
            ["workflow", "stat"], registry=reg,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        #: Decision metrics (spend, routes, circuits, experiments, incidents…), fed by the ``metrics`` stage.
        self.domain = DomainMetrics(reg)
        #: /healthz and /readyz answers: callables returning (ok, reason), set by the worker.
        self.probes: dict[str, Callable[[], tuple[bool, str]]] = {}

    def _child(self, family: Any, *labels: str) -> Any:
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def events_in(self, topic: str) -> Any:
        return self._child(self._in, topic)

    def events_out(self, topic: str) -> Any:
        return self._child(self._out, topic)

    def dead_letters(self, topic: str, reason: str) -> Any:
        return self._child(self._dlq, topic, reason)

    def processing(self, agent: str) -> Any:
        return self._child(self._processing, agent)

    def event_latency(self, topic: str) -> Any:
        return self._child(self._event_latency, topic)

    def lake_records(self, topic: str) -> Any:
        return self._child(self._lake_records, topic)

    def lake_files(self, action: str) -> Any:
        return self._child(self._lake_files, action)

    def set_lag(self, topic: str, partition: int, lag: int, *, stage: str = "") -> None:
        self._child(self._lag, stage, topic, str(partition)).set(lag)

    def set_unassigned(self, stage: str, seconds: float) -> None:
        self._child(self._unassigned, stage).set(seconds)

    def set_model_accuracy(self, workflow: str, mae: float, bias: float) -> None:
        self._child(self._model_error, workflow, "mae").set(mae)
        self._child(self._model_error, workflow, "bias").set(bias)

    def set_satisfaction(self, workflow: str, kpi: str, value: float) -> None:
        self._child(self._satisfaction, workflow, kpi).set(value)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0.0 when absent) — for tests and the CLI."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def serve(self, port: int, addr: str = "127.0.0.1", token: str | None = None) -> int:
        """Serve ``/metrics``, ``/healthz`` and ``/readyz`` in a daemon thread; returns the bound port (0 picks one)."""
        server = start_server(self.registry, self.probes, port, addr, token)
        bound = int(server.server_address[1])
        log.info("metrics on http://%s:%d/metrics (probes /healthz, /readyz)", addr, bound)
        return bound
