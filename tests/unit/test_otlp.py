"""OpenTelemetry GenAI spans, made by the OpenTelemetry SDK, → request events; the rest skipped or dead-lettered."""

from __future__ import annotations

import orjson
import pytest

pytest.importorskip("opentelemetry.proto")
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import Status, StatusCode  # noqa: E402
from google.protobuf.json_format import MessageToDict  # noqa: E402

from schemas.records import RequestEvent  # noqa: E402
from schemas.serde import json_codec  # noqa: E402
from streams.edge import RawMessage  # noqa: E402
from streams.stages.otlp import OtlpError, OtlpStage, decode_spans  # noqa: E402
from tests.unit.test_stages import env  # noqa: E402

T0_NS = 1_700_000_000_000_000_000


def spans(*, workflow: bool = True) -> list:  # type: ignore[type-arg]
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bot-svc", "service.version": "v7"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.provider.name": "openai",
             "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 42}
    if workflow:
        attrs["loopwise.workflow"] = "support-bot"
    with tracer.start_as_current_span("agent-run", start_time=T0_NS):
        tracer.start_span("chat gpt-4o-mini", attributes=attrs, start_time=T0_NS, ).end(end_time=T0_NS + 350_000_000)
        failing = tracer.start_span("chat gpt-4o", attributes={**attrs, "gen_ai.request.model": "gpt-4o",
                                                               "error.type": "TimeoutError"}, start_time=T0_NS)
        failing.set_status(Status(StatusCode.ERROR, "deadline exceeded"))
        failing.end(end_time=T0_NS + 30_000_000_000)
        tracer.start_span("db.query", start_time=T0_NS).end(end_time=T0_NS + 5)
    provider.shutdown()
    return list(exporter.get_finished_spans())


def proto_bytes(found: list) -> bytes:  # type: ignore[type-arg]
    return encode_spans(found).SerializeToString()


def json_bytes(found: list) -> bytes:  # type: ignore[type-arg]
    """OTLP/JSON as the Collector writes it: camelCase, hex ids, int64 as strings."""
    data = MessageToDict(encode_spans(found))
    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        import base64
                        span[key] = base64.b64decode(span[key]).hex()
    return orjson.dumps(data)


def run(value: bytes, **settings: object):  # type: ignore[no-untyped-def]
    e = env()
    stage = OtlpStage(e)
    return stage.handle([RawMessage("otlp_spans", 0, 5, None, value, 1)]), e


@pytest.mark.parametrize("encode", [proto_bytes, json_bytes], ids=["otlp_proto", "otlp_json"])
def test_genai_spans_become_requests_and_other_spans_are_skipped(encode) -> None:  # type: ignore[no-untyped-def]
    found = spans()
    out, e = run(encode(found))
    requests = [json_codec(RequestEvent).decode(o.value) for o in out if o.topic == "p.requests"]
    assert [o.topic for o in out] == ["p.requests", "p.requests"]
    ok, slow = sorted(requests, key=lambda r: r.route, reverse=True)
    assert (ok.route, ok.workflow, ok.workflow_version, ok.status.value, ok.tokens_in, ok.tokens_out) == (
        "gpt-4o-mini", "support-bot", "v7", "ok", 11, 42)
    assert ok.latency_ms == 350.0 and ok.ts_ms == (T0_NS + 350_000_000) // 1_000_000
    assert ok.context.task == "chat" and ok.context.attributes == {"provider": "openai"}
    span = next(s for s in found if s.name == "chat gpt-4o-mini")
    assert ok.request_id == f"{span.context.trace_id:032x}-{span.context.span_id:016x}"
    assert (slow.status.value, slow.error_type, slow.error_message) == ("timeout", "TimeoutError", "deadline exceeded")
    headers = dict(out[0].headers or ())
    assert headers["traceparent"].decode().split("-")[1] == f"{span.context.trace_id:032x}"


def test_the_workflow_falls_back_to_the_resource_and_unmappable_spans_are_dead_lettered() -> None:
    out, _ = run(proto_bytes(spans(workflow=False)))
    assert {json_codec(RequestEvent).decode(o.value).workflow for o in out} == {"bot-svc"}  # service.name
    e = env()
    stage = OtlpStage(e)
    stage._workflow_attributes = ("loopwise.workflow",)
    out = stage.handle([RawMessage("otlp_spans", 0, 5, None, proto_bytes(spans(workflow=False)), 1)])
    (dead,) = out
    letter = orjson.loads(dead.value)
    assert dead.topic == "p.dlq" and letter["reason"] == "missing_workflow" and letter["source_topic"] == "otlp_spans"
    assert dict(dead.headers or ())["loopwise.error.reason"] == b"missing_workflow"


def test_garbage_is_dead_lettered_with_its_reason() -> None:
    for raw in (b"{not json", b"\xff\xfe\x00garbage", b'{"resourceSpans": 3}'):
        out, _ = run(raw)
        assert [orjson.loads(o.value)["reason"] for o in out] == ["bad_otlp"], raw
    with pytest.raises(OtlpError):
        list(decode_spans(b""))
