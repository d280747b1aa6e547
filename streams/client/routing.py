"""Route requests locally from the policies loopwise publishes (``lw.decisions.routing``).

``PolicyBook`` is the pure part: it keeps the newest policy per workflow × segment
(and each workflow's context keys, from ``lw.workflows``) and picks a route for a
request by the policy's probabilities, with a keyed hash of the request id, so the
same request always gets the same route. ``RoutingClient`` follows both compacted
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
        call_model(route, prompt)
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from infra.settings import Settings
from processors.workflows import segment_of
from schemas.records import RequestContext, RoutingPolicy, WorkflowDefinition
from schemas.serde import SchemaError, make_codec

log = logging.getLogger(__name__)


class PolicyBook:
    """The newest routing policy per workflow × segment, and a deterministic pick by its probabilities.

    >>> from schemas.records import RouteProbability
    >>> book = PolicyBook()
    >>> book.update(RoutingPolicy("wf", "all", 1, 3, "m1", (RouteProbability("a", 0.0, 0.5, 0.1, 10),
    ...                                                   RouteProbability("b", 1.0, 0.6, 0.1, 10))))
    True
    >>> book.choose("wf", RequestContext(tenant="t", task="x"), "r1", default="a")
    'b'
    >>> book.choose("other", RequestContext(tenant="t", task="x"), "r1", default="a")
    'a'
    """

    def __init__(self) -> None:
        self._policies: dict[tuple[str, str], RoutingPolicy] = {}
        self._keys: dict[str, tuple[str, ...]] = {}

    def update(self, policy: RoutingPolicy) -> bool:
        """Keep ``policy`` unless a newer version of the same workflow × segment is known."""
        key = (policy.workflow, policy.segment)
        current = self._policies.get(key)
        if current is not None and (current.policy_version, current.ts_ms) > (policy.policy_version, policy.ts_ms):
            return False
        self._policies[key] = policy
        return True

    def update_workflow(self, definition: WorkflowDefinition) -> None:
        """Learn which context fields make a workflow's segments."""
        self._keys[definition.workflow] = definition.context_keys

    def choose(self, workflow: str, context: RequestContext, request_id: str, default: str | None = None) -> str | None:
        """The route for one request; ``default`` when no policy covers its segment yet."""
        keys = self._keys.get(workflow, ("task", "privacy_level"))
        policy = self._policies.get((workflow, segment_of(context, keys))) or self._policies.get((workflow, "all"))
        if policy is None or not policy.routes:
            return default
        total = sum(r.probability for r in policy.routes)
        if total <= 0:
            return default
        u = _unit(f"{workflow}|{request_id}") * total
        for route in policy.routes:
            u -= route.probability
            if u < 0:
                return route.route
        return policy.routes[-1].route

    def __len__(self) -> int:
        return len(self._policies)


def _unit(text: str) -> float:
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=b"lw-route").digest()
    return int.from_bytes(digest, "big") / 2**64


class RoutingClient:
    """Follows ``lw.decisions.routing`` and ``lw.workflows`` in a thread; ``choose`` answers from memory."""

    def __init__(self, settings: Settings, *, poll_timeout_s: float = 0.2) -> None:
        self._settings, self._poll_timeout_s = settings, poll_timeout_s
        self.book = PolicyBook()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._policies = make_codec(RoutingPolicy, topic=settings.topic("decisions.routing"),
                                    registry_url=settings.schema_registry_url, max_event_bytes=1 << 20)
        self._workflows = make_codec(WorkflowDefinition, topic=settings.topic("workflows"),
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

    def _follow(self) -> None:
        consumer = Consumer({**self._settings.kafka_config(), "group.id": f"loopwise-routing-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 100})
        topics = (self._settings.topic("decisions.routing"), self._settings.topic("workflows"))
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
            else:
                policy = self._policies.decode(value)
                with self._lock:
                    self.book.update(policy)
        except SchemaError as exc:
            log.warning("routing client: skipped an unreadable record on %s: %s", topic, exc)
