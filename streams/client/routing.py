"""Route requests locally from the policies loopwise publishes (``lw.decisions.routing``).

``processors.routing.book.PolicyBook`` is the pure part, the same one the worker's
``route`` stage answers from: the newest policy per workflow × segment, each
experiment's published split (``lw.decisions.experiments``) and each workflow's
context keys (``lw.workflows``); a route per request by the policy's probabilities
with a keyed hash of the request id (the same request always gets the same
route), and a prompt variant per unit by the experiment's split. ``RoutingClient`` follows both compacted
topics from the beginning in a background thread and answers from memory: no
round trip per request.

Usage::

    from infra.settings import Settings
    from schemas.records import RequestContext
    from streams.client import RoutingClient

    settings = Settings.from_env()
    with RoutingClient(settings) as router:          # follows lw.decisions.routing and lw.workflows
        ctx = RequestContext(tenant="acme", task="summarize")
        route = router.choose("support-bot", ctx, request_id="r-123", default="gpt-large")
        version = router.version("support-bot", ctx, request_id="r-123")   # canary or baseline (lw.rollouts.splits)
        call_model(route, prompt)                    # and report ``version`` as the request's workflow_version
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from infra.settings import Settings
from processors.rollout import VersionBook
from processors.routing.book import PolicyBook
from schemas.records import ExperimentDecision, RequestContext, RolloutStep, RoutingPolicy, WorkflowDefinition
from schemas.serde import SchemaError, make_codec

log = logging.getLogger(__name__)


class RoutingClient:
    """Follows ``lw.decisions.routing`` and ``lw.workflows`` in a thread; ``choose`` answers from memory."""

    def __init__(self, settings: Settings, *, poll_timeout_s: float = 0.2) -> None:
        self._settings, self._poll_timeout_s = settings, poll_timeout_s
        self.book = PolicyBook()
        self.versions = VersionBook()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._policies = make_codec(RoutingPolicy, topic=settings.topic("decisions.routing"),
                                    registry_url=settings.schema_registry_url, max_event_bytes=1 << 20)
        self._workflows = make_codec(WorkflowDefinition, topic=settings.topic("workflows"),
                                     registry_url=settings.schema_registry_url, max_event_bytes=1 << 20)
        self._experiments = make_codec(ExperimentDecision, topic=settings.topic("decisions.experiments"),
                                       registry_url=settings.schema_registry_url, max_event_bytes=1 << 20)
        self._splits = make_codec(RolloutStep, topic=settings.topic("rollouts.splits"),
                                  registry_url=settings.schema_registry_url, max_event_bytes=1 << 20)
        self._thread = threading.Thread(target=self._follow, name="loopwise-routing-client", daemon=True)

    def __enter__(self) -> "RoutingClient":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def choose(self, workflow: str, context: RequestContext, request_id: str, default: str | None = None) -> str | None:
        with self._lock:
            return self.book.choose(workflow, context, request_id, default)

    def variant(self, workflow: str, context: RequestContext, request_id: str) -> str | None:
        """The prompt variant for one request under the workflow's published experiment split (None: none)."""
        with self._lock:
            return self.book.variant(workflow, context, request_id)

    def version(self, workflow: str, context: RequestContext, request_id: str) -> str | None:
        """The workflow version one request runs under, by the published rollout split (report it in
        ``RequestEvent.workflow_version``); the latest definition's when no rollout ran; None if unknown."""
        with self._lock:
            return self.versions.version_for(workflow, context, request_id)

    def flags(self, workflow: str, context: RequestContext, request_id: str) -> dict[str, str]:
        """Every feature flag the workflow declares, evaluated for one request (flag -> variant)."""
        with self._lock:
            return self.versions.flags_for(workflow, context, request_id)

    def flag(self, workflow: str, name: str, context: RequestContext, request_id: str, default: str) -> str:
        """One flag's variant for one request; ``default`` when the workflow or the flag is unknown."""
        return self.flags(workflow, context, request_id).get(name, default)

    def _follow(self) -> None:
        consumer = Consumer({**self._settings.kafka_config(), "group.id": f"loopwise-routing-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 100})
        topics = (self._settings.topic("decisions.routing"), self._settings.topic("workflows"),
                  self._settings.topic("decisions.experiments"), self._settings.topic("rollouts.splits"))
        try:
            metadata = consumer.list_topics(timeout=10)
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics if t in metadata.topics
                             for p in metadata.topics[t].partitions])
            while not self._stop.is_set():
                for message in consumer.consume(500, self._poll_timeout_s):
                    if message.error() is None and message.value() is not None:
                        self._take(message.topic(), message.value())
        finally:
            consumer.close()

    def _take(self, topic: str, value: bytes) -> None:
        try:
            if topic == self._settings.topic("workflows"):
                definition: Any = self._workflows.decode(value)
                with self._lock:
                    self.book.update_workflow(definition)
                    self.versions.update_workflow(definition)
            elif topic == self._settings.topic("rollouts.splits"):
                split: Any = self._splits.decode(value)
                with self._lock:
                    self.versions.update(split)
            elif topic == self._settings.topic("decisions.experiments"):
                decision: Any = self._experiments.decode(value)
                with self._lock:
                    self.book.update_experiment(decision)
            else:
                policy = self._policies.decode(value)
                with self._lock:
                    self.book.update(policy)
        except SchemaError as exc:
            log.warning("routing client: skipped an unreadable record on %s: %s", topic, exc)
