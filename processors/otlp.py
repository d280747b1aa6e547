"""OpenTelemetry GenAI spans to ``RequestEvent``s (the ``gen_ai.*`` semantic conventions).

A span is a GenAI call when it carries ``gen_ai.*`` attributes. It maps to one
request: the route is ``gen_ai.request.model`` (else ``gen_ai.response.model``),
the provider ``gen_ai.provider.name`` (else the older ``gen_ai.system``), tokens
``gen_ai.usage.input_tokens`` / ``output_tokens`` (else the older
``prompt_tokens`` / ``completion_tokens``), latency the span's duration, the
time its end, and the outcome its status (``error.type`` names the error; a
name with "timeout" in it is a timeout). The workflow comes from the first of
the configured attributes found on the span, then on its resource. loopwise's
own attributes (``loopwise.request_id``, ``.workflow_version``, ``.variant``,
``.tenant``, ``.task``, ``.cost_usd``) fill in what the conventions do not say.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.records import PrivacyLevel, RequestContext, RequestEvent, Status

Attributes = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class SpanView:
    """One span, whatever its wire encoding: ids in lowercase hex, times in epoch nanoseconds."""

    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    is_error: bool
    status_message: str
    attributes: Attributes
    resource: Attributes


@dataclass(frozen=True, slots=True)
class Unmappable:
    """Why a GenAI span cannot become a request (its dead letter's reason and error)."""

    reason: str
    error: str


def is_genai(span: SpanView) -> bool:
    """Whether a span describes a GenAI call (any ``gen_ai.`` attribute).

    >>> is_genai(SpanView("t", "s", "chat", 0, 1, False, "", {"gen_ai.request.model": "m"}, {}))
    True
    """
    return any(key.startswith("gen_ai.") for key in span.attributes)


def map_span(span: SpanView, workflow_attributes: Sequence[str]) -> RequestEvent | Unmappable:
    """The request a GenAI span describes, or why it cannot be one.

    >>> span = SpanView("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "chat gpt-4o", 1_000_000_000,
    ...                 1_250_000_000, False, "", {"gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai",
    ...                 "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 30}, {"service.name": "bot"})
    >>> event = map_span(span, ("loopwise.workflow", "service.name"))
    >>> event.workflow, event.route, event.latency_ms, event.tokens_in, event.status.value, event.ts_ms
    ('bot', 'gpt-4o', 250.0, 12, 'ok', 1250)
    """
    a, r = span.attributes, span.resource
    route = _text(a.get("gen_ai.request.model")) or _text(a.get("gen_ai.response.model"))
    if route is None:
        return Unmappable("missing_model", f"span {span.trace_id}/{span.span_id} ({span.name!r}) has no "
                          "gen_ai.request.model or gen_ai.response.model")
    workflow = next((w for key in workflow_attributes if (w := _text(a.get(key)) or _text(r.get(key)))), None)
    if workflow is None:
        return Unmappable("missing_workflow", f"span {span.trace_id}/{span.span_id} names no workflow: none of "
                          f"{', '.join(workflow_attributes)} on the span or its resource")
    if span.end_ns < span.start_ns or span.end_ns <= 0:
        return Unmappable("bad_times", f"span {span.trace_id}/{span.span_id} ends ({span.end_ns}) before it starts "
                          f"({span.start_ns})")
    status, error_type = _status(span)
    provider = _text(a.get("gen_ai.provider.name")) or _text(a.get("gen_ai.system"))
    return RequestEvent(
        request_id=_text(a.get("loopwise.request_id")) or f"{span.trace_id}-{span.span_id}",
        ts_ms=span.end_ns // 1_000_000,
        workflow=workflow,
        workflow_version=_text(a.get("loopwise.workflow_version")) or _text(r.get("service.version")) or "unversioned",
        route=route,
        context=_context(a, r, provider, _text(a.get("gen_ai.operation.name"))),
        latency_ms=(span.end_ns - span.start_ns) / 1e6,
        cost_usd=max(0.0, _number(a.get("loopwise.cost_usd"))),
        tokens_in=int(max(0.0, _number(a.get("gen_ai.usage.input_tokens", a.get("gen_ai.usage.prompt_tokens"))))),
        tokens_out=int(max(0.0, _number(a.get("gen_ai.usage.output_tokens",
                                              a.get("gen_ai.usage.completion_tokens"))))),
        status=status,
        variant=_text(a.get("loopwise.variant")),
        error_type=error_type,
        error_message=(span.status_message or None) if status is not Status.OK else None,
    )


def _status(span: SpanView) -> tuple[Status, str | None]:
    error_type = _text(span.attributes.get("error.type"))
    if not span.is_error and error_type is None:
        return Status.OK, None
    error_type = error_type or "error"
    return (Status.TIMEOUT if "timeout" in error_type.lower() else Status.ERROR), error_type


def _context(a: Attributes, r: Attributes, provider: str | None, operation: str | None) -> RequestContext:
    privacy = _text(a.get("loopwise.privacy_level")) or "public"
    attributes = {"provider": provider} if provider else {}
    return RequestContext(
        tenant=_text(a.get("loopwise.tenant")) or _text(r.get("service.namespace")) or "default",
        task=_text(a.get("loopwise.task")) or operation or "default",
        privacy_level=PrivacyLevel(privacy) if privacy in PrivacyLevel.__members__.values() else PrivacyLevel.PUBLIC,
        user_id=_text(a.get("user.id")), session_id=_text(a.get("session.id")),
        attributes=attributes,
    )


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _number(value: object) -> float:
    if isinstance(value, bool) or value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return 0.0
