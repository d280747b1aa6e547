"""The generated inputs: 200-byte JSON count-and-forward events, and encoded simulator records.

Both are deterministic for a seed, so every pipeline of a run, and every run
of the bench, reads the same bytes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import orjson

EVENT_BYTES = 200
ROUTES = ("gpt-large", "claude-mid", "mini-hosted", "llama-local")


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One simulator record ready to produce: logical topic, key, encoded value, and what it is."""

    logical: str
    key: bytes
    value: bytes
    kind: str


def make_events(n: int, keys: int = 10_000, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) pairs: JSON objects of exactly ``EVENT_BYTES`` bytes, keys spread over ``keys``.

    >>> events = make_events(3, keys=10)
    >>> [len(value) for _key, value in events]
    [200, 200, 200]
    >>> orjson.loads(events[0][1])["key"] == events[0][0].decode()
    True
    """
    rng = random.Random(seed)
    out: list[tuple[bytes, bytes]] = []
    for i in range(n):
        key = f"k{rng.randrange(keys):06d}"
        body = {"key": key, "seq": i, "ts_ms": 1_767_571_200_000 + i, "route": ROUTES[i % len(ROUTES)],
                "latency_ms": round(rng.uniform(20, 2000), 3), "status": "ok", "pad": ""}
        raw = orjson.dumps(body)
        body["pad"] = "x" * max(0, EVENT_BYTES - len(raw))
        out.append((key.encode(), orjson.dumps(body)))
    return out


#: Where each simulator record goes and which field keys it (as the simulator's live driver does).
_ROUTING: dict[str, tuple[str, str]] = {
    "RequestEvent": ("requests", "request_id"), "FeedbackEvent": ("feedback", "request_id"),
    "MetricEvent": ("metrics", "source"), "LogEvent": ("logs", "service"),
    "JobSubmission": ("jobs", "job_id"), "WorkflowDefinition": ("workflows", "workflow"),
}


def make_sim_records(n: int, seed: int = 1, scenario: str = "steady", rate: float = 500.0) -> list[SimRecord]:
    """The first ``n`` records of the ``scenario`` simulator run under a baseline policy, JSON-encoded.

    The first record is the workflow definition the correlator needs; the rest
    are requests, feedback, metrics and logs in event-time order.
    """
    from infra.simulator.environment import Environment
    from infra.simulator.loader import load_scenario
    from infra.simulator.policies import make_policy
    from schemas.serde import json_codec

    env = Environment(load_scenario(scenario), make_policy("least-latency", seed), seed=seed,
                      duration_s=max(60.0, 2.0 * n / rate), rate=rate, emit_records=True)
    codecs: dict[type, Any] = {}
    out: list[SimRecord] = []
    step_ms = 10_000
    while len(out) < n and not env.is_done:
        for record in env.step(env.now_ms + step_ms):
            kind = type(record).__name__
            if kind not in _ROUTING:
                continue
            codec = codecs.get(type(record))
            if codec is None:
                codec = codecs[type(record)] = json_codec(type(record))
            logical, key_field = _ROUTING[kind]
            out.append(SimRecord(logical, str(getattr(record, key_field)).encode(), codec.encode(record), kind))
    if len(out) < n:
        raise RuntimeError(f"the {scenario} scenario gave {len(out)} records, fewer than the {n} asked")
    return out[:n]


def make_route_requests(records: Sequence[SimRecord], n: int) -> list[SimRecord]:
    """``n`` route requests (``lw.route.requests``) for the workflows and contexts of ``records``' requests.

    Request ids are fresh (``rr-…``): each asks for a route before its request is made.
    """
    from schemas.records import RequestEvent, RouteRequest
    from schemas.serde import json_codec

    requests, routes = json_codec(RequestEvent), json_codec(RouteRequest)
    seen = [requests.decode(r.value) for r in records if r.kind == "RequestEvent"][:n]
    if not seen:
        raise ValueError("no requests to model route requests on")
    out: list[SimRecord] = []
    for i in range(n):
        base = seen[i % len(seen)]
        request = RouteRequest(f"rr-{i:07d}", base.ts_ms, base.workflow, base.context)
        out.append(SimRecord("route.requests", request.request_id.encode(), routes.encode(request), "RouteRequest"))
    return out
