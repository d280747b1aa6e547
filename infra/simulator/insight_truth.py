"""Satisfaction drops with a known cause, and repeated prompts with known savings, for the insights bench.

``satisfaction_outcomes`` emits final outcomes (the feedback already joined) of one workflow whose
users are happy at a rate set by route, variant, version, tenant and task; from ``drop_at_ms`` on,
one cause makes them less happy: a route or a prompt variant regresses, a new version rolls out
worse, or a less satisfied tenant's share of the traffic jumps (a mix shift). ``cache_requests``
emits requests whose prompts repeat (a Zipf pool of popular prompts beside unique ones), with the
money and latency a response cache would truly have saved.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from schemas.records import Outcome, RequestContext, RequestEvent, Status

ROUTES = {"gpt-large": 0.35, "claude-3-haiku": 0.3, "llama-70b-local": 0.2, "mistral-small": 0.15}
VARIANTS = {"control": 1 / 3, "concise": 1 / 3, "detailed": 1 / 3}
TENANTS = {"acme": 0.4, "globex": 0.3, "initech": 0.25, "umbrella": 0.05}
TASKS = {"summarize": 0.5, "classify": 0.3, "chat": 0.2}
_EFFECT = {"gpt-large": 0.05, "claude-3-haiku": 0.0, "llama-70b-local": -0.05, "mistral-small": -0.03,
           "concise": 0.0, "detailed": 0.03, "control": 0.0, "acme": 0.03, "globex": 0.0, "initech": -0.02,
           "umbrella": -0.3, "summarize": 0.0, "classify": 0.05, "chat": -0.05}
CAUSES = ("route", "variant", "version", "tenant")
WINDOW_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class DropTruth:
    """What caused a seeded drop, and when it started (request event time)."""

    dimension: str
    value: str
    start_ms: int


def _pick(r: random.Random, shares: dict[str, float]) -> str:
    return r.choices(list(shares), weights=list(shares.values()))[0]


def satisfaction_outcomes(seed: int, cause: str | None, start_ms: int = 1_700_000_000_000,
                          duration_ms: int = 6_300_000, drop_at_ms: int | None = None, rate_per_s: float = 5.0,
                          drop: float = 0.4) -> tuple[list[Outcome], DropTruth | None]:
    """Final outcomes of one workflow, with a drop of ``cause`` at ``drop_at_ms`` (None: a healthy run)."""
    r = random.Random(seed)
    drop_at = start_ms + (drop_at_ms if drop_at_ms is not None else 4_500_000 + r.randrange(300_000))
    truth = None
    if cause == "route":
        truth = DropTruth("route", r.choice(["gpt-large", "claude-3-haiku", "llama-70b-local"]), drop_at)
    elif cause == "variant":
        truth = DropTruth("variant", r.choice(list(VARIANTS)), drop_at)
    elif cause == "version":
        truth = DropTruth("version", "v2", drop_at)
    elif cause == "tenant":
        truth = DropTruth("tenant", "umbrella", drop_at)
    outcomes = []
    step_ms = 1000.0 / rate_per_s
    for i in range(int(duration_ms / step_ms)):
        ts = start_ms + int(i * step_ms)
        is_after = truth is not None and ts >= truth.start_ms
        tenants = {**TENANTS, "umbrella": 0.45} if is_after and cause == "tenant" else TENANTS
        route, variant, tenant, task = _pick(r, ROUTES), _pick(r, VARIANTS), _pick(r, tenants), _pick(r, TASKS)
        version = "v2" if is_after and cause == "version" and r.random() < 0.4 else "v1"
        p = 0.72 + sum(_EFFECT[x] for x in (route, variant, tenant, task))
        if is_after and truth is not None and cause != "tenant" and \
                {"route": route, "variant": variant, "version": version}[truth.dimension] == truth.value:
            p -= drop
        outcomes.append(_outcome(r, f"s{seed}-{i}", ts, route, variant, version, tenant, task, min(max(p, 0.02), 0.98)))
    return outcomes, truth


def _outcome(r: random.Random, rid: str, ts: int, route: str, variant: str, version: str, tenant: str, task: str,
             p: float) -> Outcome:
    happy = r.random() < p
    return Outcome(
        rid, ts + WINDOW_MS, ts, "support-bot", version, route, f"task={task}", Status.OK, 800.0, 0.002,
        0.5, 0.5, 0.0, 0.0, 0.0, True, feedback_count=1, variant=variant, tenant=tenant, task=task,
        thumbs=(1.0 if happy else 0.0) if r.random() < 0.6 else None,
        rating=float(min(5, max(1, round(1 + 4 * p + r.gauss(0, 0.8))))) if r.random() < 0.3 else None,
        nps=float(min(10, max(0, round(10 * p + r.gauss(0, 1.5))))) if r.random() < 0.1 else None,
        task_completed=(1.0 if r.random() < p else 0.0) if r.random() < 0.5 else None,
        edited=r.random() if r.random() < 0.3 * (1 - p) else None,
        deleted=1.0 if r.random() < 0.1 * (1 - p) else None,
        dwell_s=max(0.0, 30 * p + r.gauss(0, 5)) if r.random() < 0.4 else None,
    )


@dataclass(frozen=True, slots=True)
class CacheTruth:
    """What a response cache (``ttl_ms``) would truly have saved over the requests."""

    hits: int
    saved_usd: float
    saved_latency_ms: float


def fingerprint(prompt: str) -> str:
    """A hash of the normalised prompt (lower case, collapsed white space): never the prompt itself."""
    return hashlib.blake2b(" ".join(prompt.lower().split()).encode(), digest_size=16).hexdigest()


def cache_requests(seed: int, n: int, start_ms: int = 1_700_000_000_000, rate_per_s: float = 20.0,
                   repeat_share: float = 0.35, pool: int = 400, ttl_ms: int = 3_600_000,
                   hit_latency_ms: float = 10.0, error_rate: float = 0.03) -> tuple[list[RequestEvent], CacheTruth]:
    """Requests of one workflow whose prompts repeat; the truth is kept by prompt, not by fingerprint."""
    r = random.Random(seed)
    weights = [1 / (k + 1) for k in range(pool)]
    served: dict[str, int] = {}  # prompt -> when its answer was last cached
    requests, hits, saved_usd, saved_ms = [], 0, 0.0, 0.0
    for i in range(n):
        ts = start_ms + int(i * 1000 / rate_per_s)
        if r.random() < repeat_share:
            k = r.choices(range(pool), weights=weights)[0]
            prompt = f"  What is the refund policy for order type {k}?" if k % 2 else f"summarise ticket template {k}"
            prompt = prompt.upper() if r.random() < 0.2 else prompt  # same prompt, other spelling: same fingerprint
        else:
            prompt = f"unique question {seed}-{i} about {r.random()}"
        key = " ".join(prompt.lower().split())
        tokens_in, tokens_out = r.randrange(200, 3000), r.randrange(50, 800)
        cost = tokens_in * 3e-6 + tokens_out * 1.5e-5
        latency = 300 + tokens_out * 8 + r.expovariate(1 / 200)
        status = Status.ERROR if r.random() < error_rate else Status.OK
        cached = served.get(key)
        if cached is not None and ts - cached <= ttl_ms:
            hits += 1
            saved_usd += cost
            saved_ms += max(0.0, latency - hit_latency_ms)
        elif status is Status.OK:
            served[key] = ts
        requests.append(RequestEvent(
            f"c{seed}-{i}", ts, "faq-bot", "v1", "gpt-large", RequestContext("acme", "faq"), latency, cost,
            tokens_in, tokens_out, status, error_type="upstream_5xx" if status is Status.ERROR else None,
            error_message="upstream returned 503" if status is Status.ERROR else None,
            prompt_fingerprint=fingerprint(prompt)))
    return requests, CacheTruth(hits, saved_usd, saved_ms)
