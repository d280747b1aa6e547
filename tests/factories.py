"""Record factories for tests and doctests: valid records with overridable fields."""

from __future__ import annotations

from typing import Any

from schemas.records import (
    Anomaly, Severity, SignalKind,
    FeedbackEvent, FeedbackKind, LogEvent, LogLevel, MetricEvent, PrivacyLevel, RequestContext,
    RequestEvent, RouteSpec, Status, WorkflowDefinition,
)


def make_context(**overrides: Any) -> RequestContext:
    fields: dict[str, Any] = {"tenant": "acme", "task": "summarize", "privacy_level": PrivacyLevel.PUBLIC}
    fields.update(overrides)
    return RequestContext(**fields)


def make_request(request_id: str = "r1", ts_ms: int = 1_700_000_000_000, **overrides: Any) -> RequestEvent:
    fields: dict[str, Any] = {
        "request_id": request_id, "ts_ms": ts_ms, "workflow": "support-bot", "workflow_version": "v1",
        "route": "gpt-large", "context": make_context(), "latency_ms": 800.0, "cost_usd": 0.002,
        "tokens_in": 500, "tokens_out": 200, "status": Status.OK,
    }
    fields.update(overrides)
    return RequestEvent(**fields)


def make_feedback(request_id: str = "r1", ts_ms: int = 1_700_000_001_000, kind: str = "thumbs",
                  value: float = 1.0, feedback_id: str | None = None, **overrides: Any) -> FeedbackEvent:
    fields: dict[str, Any] = {
        "feedback_id": feedback_id or f"{request_id}-{kind}-{ts_ms}", "request_id": request_id,
        "ts_ms": ts_ms, "kind": FeedbackKind(kind), "value": float(value),
    }
    fields.update(overrides)
    return FeedbackEvent(**fields)


def make_metric(source: str = "gateway-1", ts_ms: int = 1_700_000_000_000, name: str = "cpu",
                value: float = 0.5, **overrides: Any) -> MetricEvent:
    return MetricEvent(source=source, ts_ms=ts_ms, name=name, value=value, **overrides)


def make_log(service: str = "gateway", ts_ms: int = 1_700_000_000_000, **overrides: Any) -> LogEvent:
    fields: dict[str, Any] = {"service": service, "ts_ms": ts_ms, "level": LogLevel.ERROR,
                              "message": "upstream timeout after 30000ms calling gpt-large"}
    fields.update(overrides)
    return LogEvent(**fields)


def make_route(name: str = "gpt-large", **overrides: Any) -> RouteSpec:
    fields: dict[str, Any] = {
        "name": name, "provider": "hosted-a", "is_local": False, "max_privacy": PrivacyLevel.INTERNAL,
        "cost_per_1k_in_usd": 0.003, "cost_per_1k_out_usd": 0.006,
    }
    fields.update(overrides)
    return RouteSpec(**fields)


def make_workflow(workflow: str = "support-bot", version: str = "v1", ts_ms: int = 1_700_000_000_000,
                  **overrides: Any) -> WorkflowDefinition:
    fields: dict[str, Any] = {
        "workflow": workflow, "version": version, "ts_ms": ts_ms,
        "routes": (make_route(), make_route("local-small", provider="local", is_local=True,
                                            max_privacy=PrivacyLevel.RESTRICTED,
                                            cost_per_1k_in_usd=0.0002, cost_per_1k_out_usd=0.0002)),
    }
    fields.update(overrides)
    return WorkflowDefinition(**fields)


def make_anomaly(entity: str = "gpt-large", ts_ms: int = 1_700_000_000_000, severity: str = "warning",
                 signal: str = "error_rate", **overrides: Any) -> Anomaly:
    fields: dict[str, Any] = {
        "anomaly_id": f"a-{entity}-{signal}-{ts_ms}", "ts_ms": ts_ms, "entity": entity, "entity_kind": "route",
        "signal": signal, "kind": SignalKind.ANOMALY, "score": 0.9, "severity": Severity(severity), "value": 0.5,
        "expected_low": 0.0, "expected_high": 0.05, "window_start_ms": ts_ms - 60_000, "window_end_ms": ts_ms,
        "detector": "robust-z", "detector_version": "1",
    }
    fields.update(overrides)
    return Anomaly(**fields)
