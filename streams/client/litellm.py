"""LiteLLM adapter (``pip install loopwise[litellm]``): every call as a ``RequestEvent``, feedback, and routing.

Three pieces, each a few lines to plug into an existing LiteLLM setup::

    import litellm
    from litellm import Router
    from streams.client import RoutingClient
    from streams.client.litellm import LoopwiseCallback, LoopwisePublisher, LoopwiseRoutingPlugin

    publisher = LoopwisePublisher(settings)                  # bounded, non-blocking producer
    litellm.callbacks = [LoopwiseCallback(publisher)]        # every call → lw.requests
    routing = RoutingClient(settings).__enter__()            # follows lw.decisions.routing
    router = Router(model_list=..., plugins=[LoopwiseRoutingPlugin(routing)])
    await router.acompletion(model="chat", messages=..., metadata={"loopwise": {
        "workflow": "support-bot", "version": "v3", "tenant": "acme", "task": "qa", "request_id": "r-1"}})
    publisher.feedback("r-1", "thumbs", 1.0)                 # → lw.feedback

The route of a call is its deployment's ``litellm_params.model`` (e.g. ``openai/gpt-4o-mini``):
name a workflow's routes so. ``LoopwiseRoutingPlugin`` narrows LiteLLM's candidates to
the route the workflow's published policy picks; with no policy (or a route not in the
model group) it leaves them alone, and LiteLLM's own strategy chooses. LiteLLM runs
routing plugins on its async path only (``acompletion``); a sync call is not steered.

A broker outage never fails or slows a call: the callback only hands an encoded event to
librdkafka's local queue (bounded by ``buffer_max_messages``); when that queue is full the
event is dropped and counted (``LoopwisePublisher.dropped``), never waited for.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from litellm.integrations.custom_logger import CustomLogger

from infra.settings import Settings
from schemas.records import FeedbackEvent, FeedbackKind, PrivacyLevel, RequestContext, RequestEvent, Status
from schemas.serde import make_codec
from streams.client.routing import RoutingClient

log = logging.getLogger(__name__)

#: LiteLLM exception classes (``litellm.exceptions``) that mean the call timed out, or was refused before any answer.
TIMEOUT_ERRORS = frozenset({"Timeout", "APITimeoutError"})
REJECTED_ERRORS = frozenset({
    "RateLimitError", "ContentPolicyViolationError", "BudgetExceededError", "RejectedRequestError",
    "AuthenticationError", "PermissionDeniedError", "ContextWindowExceededError", "BadRequestError",
})
_META_KEY = "loopwise"
_CONTEXT_FIELDS = ("tenant", "task", "privacy_level", "priority", "user_id", "session_id")
_OWN_FIELDS = frozenset({"workflow", "version", "variant", "request_id", *_CONTEXT_FIELDS})


class LoopwisePublisher:
    """Publishes request events and feedback without ever blocking the caller.

    Args:
        settings: where to publish (``KAFKA_BOOTSTRAP_SERVERS``, topic prefix, schema registry).
        buffer_max_messages: events held locally while the broker is slow or down; beyond it, dropped.
        message_timeout_s: how long librdkafka retries an event before giving it up (counted in ``failed``).
    """

    def __init__(self, settings: Settings, *, buffer_max_messages: int = 10_000, message_timeout_s: float = 60.0) -> None:
        self._settings = settings
        self._requests_topic, self._feedback_topic = settings.topic("requests"), settings.topic("feedback")
        self._requests = make_codec(RequestEvent, topic=self._requests_topic, registry_url=settings.schema_registry_url)
        self._feedback = make_codec(FeedbackEvent, topic=self._feedback_topic, registry_url=settings.schema_registry_url)
        self._producer = Producer({
            **settings.kafka_config(), "linger.ms": 20, "queue.buffering.max.messages": buffer_max_messages,
            "message.timeout.ms": int(message_timeout_s * 1000), "enable.idempotence": False,
        })
        self.sent = self.dropped = self.failed = 0
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="loopwise-litellm-publisher", daemon=True)
        self._poller.start()

    def request(self, event: RequestEvent) -> bool:
        """Queue one request event; False (and counted in ``dropped``) when the local buffer is full."""
        return self._send(self._requests_topic, event.request_id, self._requests.encode(event))

    def feedback(self, request_id: str, kind: str | FeedbackKind, value: float, *, name: str | None = None,
                 workflow: str | None = None, ts_ms: int | None = None, feedback_id: str | None = None) -> bool:
        """Queue feedback on a request (``kind`` e.g. ``thumbs``, or ``score`` with the score's ``name``)."""
        event = FeedbackEvent(
            feedback_id=feedback_id or uuid.uuid4().hex, request_id=request_id,
            ts_ms=time.time_ns() // 1_000_000 if ts_ms is None else ts_ms, kind=FeedbackKind(kind),
            value=float(value), workflow=workflow, name=name,
        )
        return self._send(self._feedback_topic, request_id, self._feedback.encode(event))

    def flush(self, timeout_s: float = 10.0) -> int:
        """Wait for queued events to be delivered; returns how many are still queued."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._poller.join(2)
        self._producer.flush(timeout_s)

    def _send(self, topic: str, key: str, value: bytes) -> bool:
        try:
            self._producer.produce(topic, key=key.encode(), value=value, on_delivery=self._delivered)
        except BufferError:
            self.dropped += 1
            return False
        return True

    def _delivered(self, err: KafkaError | None, message: Message) -> None:
        if err is None:
            self.sent += 1
        else:
            self.failed += 1
            if self.failed in (1, 10, 100) or self.failed % 1000 == 0:
                log.warning("loopwise: %d events not delivered (last: %s)", self.failed, err)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.2)


class LoopwiseCallback(CustomLogger):  # type: ignore[misc]  # LiteLLM's base class is untyped
    """A LiteLLM callback that publishes every call (success or failure) as a ``RequestEvent``.

    What loopwise needs that LiteLLM does not know comes from the call's
    ``metadata={"loopwise": {...}}``: ``workflow``, ``version``, ``variant``,
    ``request_id`` and the context (``tenant``, ``task``, ``privacy_level``,
    ``priority``, ``user_id``, ``session_id``; other string keys become context
    attributes). Without a workflow, the call's model group is the workflow.
    """

    def __init__(self, publisher: LoopwisePublisher, *, default_version: str = "unversioned") -> None:
        super().__init__()
        self.publisher, self.default_version = publisher, default_version

    def log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._publish(kwargs, start_time, end_time)

    def log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._publish(kwargs, start_time, end_time)

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self._publish(kwargs, start_time, end_time)

    async def async_log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self._publish(kwargs, start_time, end_time)

    def _publish(self, kwargs: dict[str, Any], start_time: Any, end_time: Any) -> None:
        try:
            event = request_event(kwargs, start_time, end_time, default_version=self.default_version)
        except (KeyError, TypeError, ValueError) as exc:  # a call we cannot describe must not break the caller
            log.warning("loopwise: could not describe a LiteLLM call: %s", exc)
            return
        self.publisher.request(event)


def request_event(kwargs: Mapping[str, Any], start_time: Any, end_time: Any, *,
                  default_version: str = "unversioned") -> RequestEvent:
    """The ``RequestEvent`` of one LiteLLM call, from the kwargs LiteLLM hands its callbacks."""
    slo: Mapping[str, Any] = kwargs.get("standard_logging_object") or {}
    meta = loopwise_metadata(kwargs)
    started, ended = _seconds(slo.get("startTime", start_time)), _seconds(slo.get("endTime", end_time))
    status, error_type, error_message = _status(kwargs, slo)
    return RequestEvent(
        request_id=str(meta.get("request_id") or kwargs.get("litellm_call_id") or slo.get("id") or uuid.uuid4().hex),
        ts_ms=int(ended * 1000),
        workflow=str(meta.get("workflow") or slo.get("model_group") or kwargs.get("model") or "litellm"),
        workflow_version=str(meta.get("version") or default_version),
        route=str(slo.get("model") or kwargs.get("model") or "unknown"),
        context=context_of(meta),
        latency_ms=max(0.0, (ended - started) * 1000.0),
        cost_usd=max(0.0, float(slo.get("response_cost") or 0.0)),
        tokens_in=max(0, int(slo.get("prompt_tokens") or 0)),
        tokens_out=max(0, int(slo.get("completion_tokens") or 0)),
        status=status, variant=_str_or_none(meta.get("variant")), error_type=error_type, error_message=error_message,
    )


def loopwise_metadata(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The call's ``metadata["loopwise"]`` (where LiteLLM keeps a call's metadata for its callbacks)."""
    params = kwargs.get("litellm_params") or {}
    for holder in (params.get("metadata"), params.get("litellm_metadata"), kwargs.get("metadata")):
        if isinstance(holder, Mapping) and isinstance(holder.get(_META_KEY), Mapping):
            found: Mapping[str, Any] = holder[_META_KEY]
            return found
    return {}


def context_of(meta: Mapping[str, Any]) -> RequestContext:
    """The ``RequestContext`` of the call's loopwise metadata (unknown tenant and task: ``default``)."""
    privacy = str(meta.get("privacy_level") or "public")
    return RequestContext(
        tenant=str(meta.get("tenant") or "default"), task=str(meta.get("task") or "default"),
        privacy_level=PrivacyLevel(privacy) if privacy in PrivacyLevel.__members__.values() else PrivacyLevel.PUBLIC,
        priority=int(meta.get("priority") or 1), user_id=_str_or_none(meta.get("user_id")),
        session_id=_str_or_none(meta.get("session_id")),
        attributes={k: v for k, v in meta.items() if k not in _OWN_FIELDS and isinstance(v, str)},
    )


def _status(kwargs: Mapping[str, Any], slo: Mapping[str, Any]) -> tuple[Status, str | None, str | None]:
    if slo.get("status", "success") == "success" and kwargs.get("exception") is None:
        return Status.OK, None, None
    info: Mapping[str, Any] = slo.get("error_information") or {}
    exception = kwargs.get("exception")
    error_class = str(info.get("error_class") or (type(exception).__name__ if exception is not None else "Error"))
    message = str(slo.get("error_str") or exception or "")[:500] or None
    if error_class in TIMEOUT_ERRORS:
        return Status.TIMEOUT, error_class, message
    if error_class in REJECTED_ERRORS:
        return Status.REJECTED, error_class, message
    return Status.ERROR, error_class, message


def _seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value or time.time())


def _str_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


class LoopwiseRoutingPlugin:
    """A LiteLLM ``Router(plugins=[...])`` routing plugin that follows loopwise's published policy.

    For a call whose metadata names a workflow, it asks ``routing`` (a started
    ``RoutingClient``) for the workflow's route in the call's segment and narrows
    the candidates to it; otherwise, or when the policy's route is not among the
    candidates, it leaves LiteLLM's choice alone. ``chosen``/``fallbacks`` count both.
    """

    def __init__(self, routing: RoutingClient) -> None:
        self.routing = routing
        self.chosen = self.fallbacks = 0

    async def run(self, context: Any) -> Any:
        meta = context.metadata.get(_META_KEY) if isinstance(context.metadata, Mapping) else None
        route = None
        if isinstance(meta, Mapping) and meta.get("workflow"):
            request_id = str(meta.get("request_id") or uuid.uuid4().hex)
            route = self.routing.choose(str(meta["workflow"]), context_of(meta), request_id, default=None)
        if route is not None and route in context.candidate_models:
            context.candidate_models = [route]
            self.chosen += 1
        else:
            self.fallbacks += 1
        return context
