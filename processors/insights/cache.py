"""Cache opportunities: repeated prompts per workflow (by prompt fingerprint), with the money and
latency a response cache would have saved.

A request is a would-be hit when a successful request of the same workflow carried the same
fingerprint within ``ttl_ms`` before it: a cache would have answered it in ``hit_latency_ms``
for nothing instead of its observed latency and cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from schemas.records import Insight, RequestEvent, Severity, Status

_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """ttl_ms: how long a cached answer stays valid; hit_latency_ms: a cache lookup's latency;
    report_ms: how often opportunities are published; min_hits: hits in a period worth an insight;
    max_fingerprints: remembered per workflow (oldest forgotten first)."""

    ttl_ms: int = 3_600_000
    hit_latency_ms: float = 10.0
    report_ms: int = 3_600_000
    min_hits: int = 20
    max_fingerprints: int = 200_000


class CacheDetector:
    """Would-be cache hits per workflow, in event time.

    >>> from tests.factories import make_request
    >>> d = CacheDetector(CacheConfig(min_hits=1))
    >>> for i in range(3):
    ...     d.observe(make_request(f"r{i}", ts_ms=i * 1000, prompt_fingerprint="fp1", cost_usd=0.01))
    >>> d.totals["support-bot"]["hits"], round(d.totals["support-bot"]["saved_usd"], 3)
    (2.0, 0.02)
    """

    def __init__(self, config: CacheConfig | None = None) -> None:
        self.config = config or CacheConfig()
        self.seen: dict[str, dict[str, int]] = {}  # workflow -> fingerprint -> last cached ts (insertion-ordered)
        self.totals: dict[str, dict[str, float]] = {}  # workflow -> counters of the period
        self.fingerprints: dict[str, dict[str, int]] = {}  # workflow -> fingerprint -> hits this period
        self.period_start_ms: int | None = None
        self.clock_ms = 0
        self.is_dirty = False

    def observe(self, request: RequestEvent) -> None:
        self.clock_ms = max(self.clock_ms, request.ts_ms)
        if self.period_start_ms is None:
            self.period_start_ms = request.ts_ms
        fp = request.prompt_fingerprint
        if fp is None:
            return
        totals = self.totals.setdefault(request.workflow, {"requests": 0.0, "hits": 0.0, "saved_usd": 0.0,
                                                           "saved_latency_ms": 0.0, "cost_usd": 0.0})
        totals["requests"] += 1
        totals["cost_usd"] += request.cost_usd
        seen = self.seen.setdefault(request.workflow, {})
        cached_ms = seen.get(fp)
        if cached_ms is not None and request.ts_ms - cached_ms <= self.config.ttl_ms:
            totals["hits"] += 1
            totals["saved_usd"] += request.cost_usd
            totals["saved_latency_ms"] += max(0.0, request.latency_ms - self.config.hit_latency_ms)
            per_fp = self.fingerprints.setdefault(request.workflow, {})
            per_fp[fp] = per_fp.get(fp, 0) + 1
        elif request.status is Status.OK:
            seen.pop(fp, None)
            seen[fp] = request.ts_ms  # (re)cached: a fresh answer
            while len(seen) > self.config.max_fingerprints:
                del seen[next(iter(seen))]

    def advance(self) -> list[Insight]:
        """Cache-opportunity insights when a report period has passed; starts a new period."""
        if self.period_start_ms is None or self.clock_ms - self.period_start_ms < self.config.report_ms:
            return []
        span_ms = self.clock_ms - self.period_start_ms
        insights = [self._insight(w, t, span_ms) for w, t in sorted(self.totals.items())
                    if t["hits"] >= self.config.min_hits]
        self.totals, self.fingerprints, self.period_start_ms = {}, {}, self.clock_ms
        self.is_dirty = True
        return insights

    def _insight(self, workflow: str, t: Mapping[str, float], span_ms: int) -> Insight:
        hit_rate = t["hits"] / t["requests"]
        per_day = _DAY_MS / span_ms
        top = sorted(self.fingerprints.get(workflow, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        evidence = {"requests": f"{t['requests']:.0f}", "would_be_hits": f"{t['hits']:.0f}",
                    "hit_potential": f"{hit_rate:.3f}", "saved_usd": f"{t['saved_usd']:.4f}",
                    "saved_usd_per_day": f"{t['saved_usd'] * per_day:.2f}",
                    "saved_share_of_cost": f"{t['saved_usd'] / t['cost_usd']:.3f}" if t["cost_usd"] else "0",
                    "saved_latency_s": f"{t['saved_latency_ms'] / 1000:.1f}",
                    "mean_latency_saved_ms": f"{t['saved_latency_ms'] / t['hits']:.0f}",
                    "period_ms": str(span_ms), "ttl_s": str(self.config.ttl_ms // 1000),
                    "top_fingerprints": ", ".join(f"{fp[:12]}×{n}" for fp, n in top)}
        return Insight(
            f"cache-{workflow}-{self.clock_ms}", self.clock_ms, "cache_opportunity", f"cache:{workflow}",
            f"{workflow}: {hit_rate:.0%} of prompts repeat; a response cache would save "
            f"${t['saved_usd'] * per_day:.2f}/day and {evidence['mean_latency_saved_ms']} ms per hit",
            f"Requests of {workflow} whose prompt fingerprint repeated within {self.config.ttl_ms // 60_000} min of a "
            f"successful answer; look at the top fingerprints first.",
            Severity.INFO, evidence,
            f"put a response cache (TTL {self.config.ttl_ms // 60_000} min) in front of {workflow}: "
            f"{hit_rate:.0%} hit potential, ${t['saved_usd'] * per_day:.2f}/day and "
            f"{t['saved_latency_ms'] / 1000 * per_day / 3600:.1f} h of waiting per day saved")

    def snapshot(self) -> dict[str, Any]:
        self.is_dirty = False
        return {"seen": self.seen, "totals": self.totals, "fingerprints": self.fingerprints,
                "period_start_ms": self.period_start_ms, "clock_ms": self.clock_ms}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.seen = {w: {str(k): int(v) for k, v in fps.items()} for w, fps in state["seen"].items()}
        self.totals = {w: {str(k): float(v) for k, v in t.items()} for w, t in state["totals"].items()}
        self.fingerprints = {w: {str(k): int(v) for k, v in fps.items()} for w, fps in state["fingerprints"].items()}
        self.period_start_ms, self.clock_ms = state["period_start_ms"], int(state["clock_ms"])
