"""The ``otlp`` stage: OpenTelemetry spans, as the Collector's Kafka exporter writes them, → ``lw.requests``.

Each Kafka message is one ``ExportTraceServiceRequest`` in the exporter's
``otlp_proto`` (protobuf) or ``otlp_json`` encoding, told apart by its first
byte. GenAI spans (``gen_ai.*`` attributes) become ``RequestEvent``s
(``processors.otlp.map_span``); other spans are skipped (counted in
``loopwise_otlp_spans_total{outcome="skipped"}``). A message that cannot be
decoded, and each GenAI span that cannot be mapped, is dead-lettered with its
reason. Opt-in (``LOOPWISE_STAGES=...,otlp``); needs ``loopwise[otlp]``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
from prometheus_client import Counter

from processors.otlp import SpanView, Unmappable, is_genai, map_span
from schemas.records import DeadLetter
from streams.edge import DLQ_MAX_VALUE_BYTES, RawMessage
from streams.stages.base import Outgoing, Stage, StageEnv

_ERROR_CODE = 2  # Status.STATUS_CODE_ERROR


class OtlpError(ValueError):
    """A message that is not an OTLP trace export in either encoding."""


class OtlpStage(Stage):
    """otlp spans (Collector Kafka exporter) → requests."""

    name = "otlp"
    inputs = ()
    is_opt_in = True

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self._topic = env.settings.otlp_topic
        self._workflow_attributes = env.settings.otlp_workflow_attributes
        registry = getattr(env.metrics, "registry", None)
        self._spans = Counter("loopwise_otlp_spans_total", "OTLP spans read, by what became of them.", ["outcome"],
                              registry=registry) if registry is not None else None

    @property
    def topics(self) -> tuple[str, ...]:
        return (self._topic,)

    def handle(self, batch: Sequence[RawMessage]) -> list[Outgoing]:
        out: list[Outgoing] = []
        counts = {"mapped": 0, "skipped": 0, "unmappable": 0}
        for message in batch:
            try:
                spans = list(decode_spans(message.value or b""))
            except OtlpError as exc:
                out.append(self._dead(message, "bad_otlp", str(exc)))
                continue
            failed: list[Unmappable] = []
            for span in spans:
                if not is_genai(span):
                    counts["skipped"] += 1
                    continue
                mapped = map_span(span, self._workflow_attributes)
                if isinstance(mapped, Unmappable):
                    failed.append(mapped)
                    continue
                counts["mapped"] += 1
                sent = self.env.encode("requests", mapped.request_id, mapped)
                out.append(Outgoing(sent.topic, sent.key, sent.value, _trace_header(span)))
            if failed:  # one dead letter per message: its bytes hold every span, mapped or not
                counts["unmappable"] += len(failed)
                error = "; ".join(f.error for f in failed[:20]) + (f" (+{len(failed) - 20} more)" if len(failed) > 20 else "")
                out.append(self._dead(message, failed[0].reason, error))
        if self._spans is not None:
            for outcome, n in counts.items():
                if n:
                    self._spans.labels(outcome).inc(n)
        if batch:
            self.env.metrics.events_in(self._topic).inc(len(batch))
        return out

    def _dead(self, message: RawMessage, reason: str, error: str) -> Outgoing:
        value = (message.value or b"")[:DLQ_MAX_VALUE_BYTES]
        letter = DeadLetter(message.topic, message.partition, message.offset, value, error[:4096], reason,
                            self.env.now_ms(), message.key)
        return self.env.dead(letter, message.headers)


def _trace_header(span: SpanView) -> tuple[tuple[str, bytes], ...] | None:
    """The W3C ``traceparent`` of the span itself: the request event continues the span's trace."""
    if len(span.trace_id) != 32 or len(span.span_id) != 16:
        return None
    return (("traceparent", f"00-{span.trace_id}-{span.span_id}-01".encode()),)


def decode_spans(raw: bytes) -> Iterator[SpanView]:
    """The spans of one OTLP trace export, in ``otlp_json`` or ``otlp_proto`` encoding; ``OtlpError`` otherwise."""
    if not raw:
        raise OtlpError("empty message")
    if raw.lstrip()[:1] == b"{":
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise OtlpError(f"otlp_json: not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise OtlpError("otlp_json: not an object")
        return _json_spans(data)
    return _proto_spans(raw)


def _proto_spans(raw: bytes) -> Iterator[SpanView]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        request = ExportTraceServiceRequest.FromString(raw)
    except DecodeError as exc:
        raise OtlpError(f"otlp_proto: not an ExportTraceServiceRequest: {exc}") from None
    if not request.resource_spans and raw:
        raise OtlpError("otlp_proto: decoded to no resource spans (not an OTLP trace export?)")
    return _proto_views(request)


def _proto_views(request: Any) -> Iterator[SpanView]:
    for resource_spans in request.resource_spans:
        resource = {kv.key: _proto_value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield SpanView(
                    span.trace_id.hex(), span.span_id.hex(), span.name, span.start_time_unix_nano,
                    span.end_time_unix_nano, span.status.code == _ERROR_CODE, span.status.message,
                    {kv.key: _proto_value(kv.value) for kv in span.attributes}, resource,
                )


def _proto_value(value: Any) -> object:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    found = getattr(value, kind)
    if kind == "array_value":
        return [_proto_value(v) for v in found.values]
    if kind == "kvlist_value":
        return {kv.key: _proto_value(kv.value) for kv in found.values}
    return found


def _json_spans(data: Mapping[str, Any]) -> Iterator[SpanView]:
    resource_spans = data.get("resourceSpans", data.get("resource_spans"))
    if not isinstance(resource_spans, list):
        raise OtlpError("otlp_json: no resourceSpans array")
    views = []
    try:
        for rs in resource_spans:
            resource = _json_attributes((rs.get("resource") or {}).get("attributes"))
            for ss in rs.get("scopeSpans", rs.get("scope_spans")) or ():
                for span in ss.get("spans") or ():
                    status = span.get("status") or {}
                    code = status.get("code", 0)
                    views.append(SpanView(
                        _json_id(span.get("traceId", "")), _json_id(span.get("spanId", "")), str(span.get("name", "")),
                        int(span.get("startTimeUnixNano", 0)), int(span.get("endTimeUnixNano", 0)),
                        code in (_ERROR_CODE, "STATUS_CODE_ERROR"), str(status.get("message", "")),
                        _json_attributes(span.get("attributes")), resource,
                    ))
    except (AttributeError, TypeError, ValueError) as exc:
        raise OtlpError(f"otlp_json: malformed span: {exc}") from None
    return iter(views)


def _json_attributes(items: Any) -> dict[str, object]:
    return {item["key"]: _json_value(item.get("value") or {}) for item in items or ()}


def _json_value(value: Mapping[str, Any]) -> object:
    for kind, found in value.items():
        if kind == "intValue":
            return int(found)
        if kind == "arrayValue":
            return [_json_value(v) for v in found.get("values", ())]
        if kind == "kvlistValue":
            return _json_attributes(found.get("values"))
        return found
    return None


def _json_id(text: str) -> str:
    """OTLP/JSON ids are hex; protobuf's generic JSON mapping writes base64: accept both."""
    text = str(text)
    if len(text) in (16, 32) and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.lower()
    try:
        return base64.b64decode(text, validate=True).hex()
    except ValueError:
        return text
