"""Error log lines from known templates per error kind and route, each with its true template.

The insights benchmark mines these and scores the grouping against the truth: a line is
right when its predicted group holds exactly the lines of its true template.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Callable

from schemas.records import LogEvent, LogLevel

ROUTES = ("gpt-large", "claude-3-haiku", "llama-70b-local", "mistral-small")
PROVIDERS = {"gpt-large": "openai", "claude-3-haiku": "anthropic", "llama-70b-local": "vllm",
             "mistral-small": "mistral"}
WORKFLOWS = ("support-bot", "summarizer", "extractor")
TENANTS = ("acme", "globex", "initech", "umbrella")

Filler = Callable[[random.Random, str], str]


def _ip(r: random.Random) -> str:
    return f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"


def _req(r: random.Random) -> str:
    return f"req-{r.getrandbits(40):010x}"


def _uuid(r: random.Random) -> str:
    return str(uuid.UUID(int=r.getrandbits(128), version=4))


#: (error kind, true template id, filler): each filler draws the variable parts of one line.
TEMPLATES: tuple[tuple[str, str, Filler], ...] = (
    ("timeout", "t-upstream", lambda r, route: f"upstream timeout after {r.randrange(5_000, 60_000)}ms calling "
                                               f"{route} request_id={_req(r)}"),
    ("timeout", "t-first-token", lambda r, route: f"deadline exceeded waiting for first token from {route} after "
                                                  f"{r.uniform(1, 90):.1f}s (attempt {r.randrange(1, 4)})"),
    ("rate_limit", "rl-tenant", lambda r, route: f"rate limit exceeded for tenant {r.choice(TENANTS)} on {route}: "
                                                 f"429 Too Many Requests, retry after {r.randrange(1, 60)}s"),
    ("rate_limit", "rl-quota", lambda r, route: f"quota exhausted for api key 0x{r.getrandbits(32):08x} at provider "
                                                f"{PROVIDERS[route]} ({r.randrange(100, 5000)} requests this minute)"),
    ("context_length", "ctx", lambda r, route: f"prompt is too long: {r.randrange(8_200, 200_000)} tokens exceeds "
                                               f"the maximum context length of {r.choice((8192, 32768, 128000))} "
                                               f"tokens"),
    ("content_filter", "cf", lambda r, route: f"response blocked by content filter, category "
                                              f"{r.choice(('violence', 'hate', 'self_harm', 'sexual'))}, "
                                              f"request {_uuid(r)}"),
    ("auth", "auth", lambda r, route: f"authentication failed for {route}: 401 invalid api key ending "
                                      f"{r.getrandbits(16):04x}"),
    ("malformed_output", "mo-json", lambda r, route: f"could not parse model output as JSON at line "
                                                     f"{r.randrange(1, 40)} column {r.randrange(1, 120)} "
                                                     f"while validating /srv/schemas/{r.choice(WORKFLOWS)}/out.json"),
    ("malformed_output", "mo-tool", lambda r, route: f"tool call arguments failed schema validation: missing field "
                                                     f"{r.choice(('name', 'amount', 'date', 'id'))} in {_req(r)}"),
    ("upstream_5xx", "5xx", lambda r, route: f"upstream returned 503 Service Unavailable from provider "
                                             f"{PROVIDERS[route]} for {route} at {_ip(r)}"),
    ("capacity", "oom", lambda r, route: f"CUDA out of memory on gpu {r.randrange(8)} while serving {route}: tried "
                                         f"to allocate {r.randrange(64, 8192)} MiB"),
    ("capacity", "shed", lambda r, route: f"worker pool exhausted with queue depth {r.randrange(50, 5000)} on "
                                          f"{_ip(r)}, shedding {_uuid(r)}"),
)


@dataclass(frozen=True, slots=True)
class TrueLine:
    """A log line and the template it was drawn from."""

    event: LogEvent
    template_id: str
    kind: str


def error_logs(seed: int, n: int, start_ms: int = 1_700_000_000_000, rate_per_s: float = 50.0) -> list[TrueLine]:
    """``n`` error lines; each route has its own mix of error kinds (a route fails in its own ways)."""
    r = random.Random(seed)
    mixes = {route: [r.random() ** 2 for _ in TEMPLATES] for route in ROUTES}
    lines = []
    for i in range(n):
        route = r.choice(ROUTES)
        kind, template_id, fill = r.choices(TEMPLATES, weights=mixes[route])[0]
        event = LogEvent(service=f"gateway-{r.randrange(3)}", ts_ms=start_ms + int(i * 1000 / rate_per_s),
                         level=LogLevel.ERROR, message=fill(r, route), route=route, workflow=r.choice(WORKFLOWS))
        lines.append(TrueLine(event, template_id, kind))
    return lines


def grouping_accuracy(predicted: list[int], truth: list[str]) -> float:
    """Share of lines whose predicted group holds exactly the lines of their true template.

    >>> grouping_accuracy([1, 1, 2, 3], ["a", "a", "b", "b"])
    0.5
    """
    by_pred: dict[int, set[int]] = {}
    by_true: dict[str, set[int]] = {}
    for i, (p, t) in enumerate(zip(predicted, truth)):
        by_pred.setdefault(p, set()).add(i)
        by_true.setdefault(t, set()).add(i)
    right = sum(1 for i, (p, t) in enumerate(zip(predicted, truth)) if by_pred[p] == by_true[t])
    return right / len(truth) if truth else 1.0
