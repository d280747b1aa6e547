"""Error patterns: drain3 templates mined from error logs and request errors, counted per route,
workflow, service and variant in event-time windows; new and rising patterns become anomalies,
and every report period the active patterns become insights with a recommendation by class.

State is plain JSON (``snapshot_template`` / ``load_template``): each template's id, tokens, size
and counters. drain3's own persistence (jsonpickle) is never used; the Drain tree is rebuilt by
re-inserting each template as a cluster.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from drain3 import TemplateMiner
from drain3.drain import LogCluster
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

from processors.insights.classes import ErrorClass, classify, recommend
from schemas.records import Anomaly, Insight, Severity, SignalKind

#: Version of the pattern detector, carried by its anomalies.
VERSION = "patterns-1"
DIMENSIONS = ("route", "workflow", "service", "variant")

# Order matters: the most specific shapes first, so a UUID is not eaten by the number mask.
MASKS: tuple[tuple[str, str], ...] = (
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "UUID"),
    (r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "IP"),
    (r"\b0x[0-9a-fA-F]+\b", "HEX"),
    (r"(?<![\w.])(?:/[\w.\-]+){2,}/?", "PATH"),
    (r"\b(?=[\w\-]*\d)(?=[\w\-]*[A-Za-z])[A-Za-z0-9]+(?:[\-_][A-Za-z0-9]+)+\b", "ID"),
    (r"\b[0-9a-fA-F]{12,}\b", "HEX"),
    (r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:ms|s|kb|mb|gb|%)?(?![\w.])", "NUM"),
)


def make_miner(sim_th: float = 0.5, depth: int = 4, max_clusters: int | None = 2_000) -> TemplateMiner:
    """A drain3 ``TemplateMiner`` with loopwise's masks and no persistence handler."""
    config = TemplateMinerConfig()
    config.masking_instructions = [MaskingInstruction(pattern, name) for pattern, name in MASKS]
    config.drain_sim_th, config.drain_depth, config.drain_max_clusters = sim_th, depth, max_clusters
    config.drain_extra_delimiters = []
    config.parametrize_numeric_tokens = True
    return TemplateMiner(None, config)


@dataclass(frozen=True, slots=True)
class ErrorLine:
    """One error log line or request error message, with where it came from."""

    ts_ms: int
    message: str
    service: str
    route: str | None = None
    workflow: str | None = None
    variant: str | None = None
    hint: str = ""  # e.g. a request's error_type, to classify with


@dataclass(slots=True)
class _Pattern:
    cid: int
    template: str
    klass: ErrorClass
    first_ms: int
    last_ms: int = 0
    total: int = 0
    peak: int = 0
    windows: dict[int, int] = field(default_factory=dict)  # window start -> lines
    period: dict[str, dict[str, int]] = field(default_factory=dict)  # dimension -> value -> lines this period
    period_count: int = 0
    first_period_count: int = 0  # lines in the pattern's first full report period (its "before")

    def to_json(self, tokens: tuple[str, ...], size: int) -> dict[str, Any]:
        return {"cid": self.cid, "tokens": list(tokens), "size": size, "class": str(self.klass),
                "first_ms": self.first_ms, "last_ms": self.last_ms, "total": self.total, "peak": self.peak,
                "windows": [[k, v] for k, v in sorted(self.windows.items())], "period": self.period,
                "period_count": self.period_count, "first_period_count": self.first_period_count}


@dataclass(frozen=True, slots=True)
class PatternConfig:
    """Windows and thresholds of the pattern detector.

    window_ms: counting window; history: windows kept for the rise baseline;
    warmup_ms: event time before a template counts as "new" (the first ones are the platform's usual errors);
    min_new / min_rise: lines in a window that make a new / rising pattern worth an anomaly;
    rise_ratio: window count over the mean of the previous windows that counts as rising;
    report_ms: how often active patterns are published; max_reported: patterns per report.
    """

    window_ms: int = 300_000
    history: int = 12
    warmup_ms: int = 900_000
    min_new: int = 5
    min_rise: int = 20
    rise_ratio: float = 3.0
    report_ms: int = 900_000
    max_reported: int = 10


class PatternMiner:
    """Template mining and per-template statistics over error lines, in event time.

    >>> miner = PatternMiner(PatternConfig(warmup_ms=0, min_new=2))
    >>> a = miner.observe(ErrorLine(0, "upstream timeout after 30012ms calling gpt-large", "gw", "gpt-large"))
    >>> b = miner.observe(ErrorLine(1, "upstream timeout after 99ms calling gpt-large", "gw", "gpt-large"))
    >>> a == b, miner.template(a)
    (True, 'upstream timeout after <NUM> calling gpt-large')
    >>> [x.signal for x in miner.advance(300_000)[0]]
    ['error_pattern.new.timeout']
    """

    def __init__(self, config: PatternConfig | None = None) -> None:
        self.config = config or PatternConfig()
        self.miner = make_miner()
        self.patterns: dict[int, _Pattern] = {}
        self.traffic: dict[str, int] = {}  # route -> requests this period (for rates)
        self.started_ms: int | None = None
        self.watermark_ms = 0
        self.closed_until_ms = 0  # windows before this are closed
        self.next_report_ms: int | None = None
        self.period_total = self.previous_total = 0
        self.dirty: set[int] = set()

    def template(self, cid: int) -> str:
        return self.patterns[cid].template

    def count_request(self, route: str) -> None:
        """One request of a route (ok or not): the denominator of a pattern's share of its traffic."""
        self.traffic[route] = self.traffic.get(route, 0) + 1

    def observe(self, line: ErrorLine) -> int:
        """Mine one line; returns its template (cluster) id."""
        result = self.miner.add_log_message(line.message)
        cid = int(result["cluster_id"])
        pattern = self.patterns.get(cid)
        if pattern is None:
            pattern = self.patterns[cid] = _Pattern(cid, str(result["template_mined"]),
                                                    classify(f"{line.hint} {line.message}"), line.ts_ms)
        elif result["change_type"] != "none":
            pattern.template = str(result["template_mined"])
        if pattern.klass is ErrorClass.OTHER and line.hint:
            pattern.klass = classify(f"{line.hint} {line.message}")
        if self.started_ms is None:
            self.started_ms = line.ts_ms
            self.next_report_ms = line.ts_ms + self.config.report_ms
        window = line.ts_ms - line.ts_ms % self.config.window_ms
        pattern.windows[window] = pattern.windows.get(window, 0) + 1
        pattern.total += 1
        pattern.period_count += 1
        pattern.last_ms = max(pattern.last_ms, line.ts_ms)
        for dim in DIMENSIONS:
            value = getattr(line, dim)
            if value:
                counts = pattern.period.setdefault(dim, {})
                counts[value] = counts.get(value, 0) + 1
        self.period_total += 1
        self.watermark_ms = max(self.watermark_ms, line.ts_ms)
        self.dirty.add(cid)
        return cid

    def advance(self, watermark_ms: int) -> tuple[list[Anomaly], list[Insight]]:
        """Anomalies of the windows that closed by ``watermark_ms``; insights when a report is due."""
        self.watermark_ms = max(self.watermark_ms, watermark_ms)
        step = self.config.window_ms
        anomalies: list[Anomaly] = []
        current = self.watermark_ms - self.watermark_ms % step
        if self.started_ms is None or current <= self.closed_until_ms:
            return anomalies, []
        for window in range(max(self.closed_until_ms, current - step * self.config.history), current, step):
            for pattern in self.patterns.values():
                found = self._judge(pattern, window)
                if found is not None:
                    anomalies.append(found)
        self.closed_until_ms = current
        for pattern in self.patterns.values():
            for old in [w for w in pattern.windows if w < current - step * self.config.history]:
                del pattern.windows[old]
        insights: list[Insight] = []
        if self.next_report_ms is not None and self.watermark_ms >= self.next_report_ms:
            insights = self.report(self.next_report_ms)
            self.next_report_ms += self.config.report_ms * max(1, 1 + (self.watermark_ms - self.next_report_ms)
                                                               // self.config.report_ms)
        return anomalies, insights

    def _judge(self, pattern: _Pattern, window: int) -> Anomaly | None:
        count = pattern.windows.get(window, 0)
        cfg = self.config
        if not count or self.started_ms is None:
            return None
        is_new = window <= pattern.first_ms < window + cfg.window_ms
        if is_new:
            if pattern.first_ms - self.started_ms < cfg.warmup_ms or count < cfg.min_new:
                return None
            return self._anomaly(pattern, window, "error_pattern.new", count, 0.0, Severity.WARNING)
        previous = [pattern.windows.get(window - k * cfg.window_ms, 0) for k in range(1, cfg.history)
                    if window - k * cfg.window_ms >= pattern.first_ms - pattern.first_ms % cfg.window_ms]
        baseline = sum(previous) / len(previous) if previous else 0.0
        pattern.peak = max(pattern.peak, count)
        if count >= cfg.min_rise and count >= cfg.rise_ratio * max(1.0, baseline):
            severity = Severity.CRITICAL if count >= 2 * cfg.rise_ratio * max(1.0, baseline) else Severity.WARNING
            return self._anomaly(pattern, window, "error_pattern.rising", count, baseline, severity)
        return None

    def _anomaly(self, pattern: _Pattern, window: int, signal: str, count: int, baseline: float,
                 severity: Severity) -> Anomaly:
        self.dirty.add(pattern.cid)
        kind, entity = _carrier(pattern)
        ts_ms = window + self.config.window_ms
        key = f"{entity}\x1f{signal}\x1f{pattern.cid}\x1f{ts_ms}".encode()
        return Anomaly(hashlib.blake2b(key, digest_size=12).hexdigest(), ts_ms, entity, kind,
                       f"{signal}.{pattern.klass}", SignalKind.ANOMALY, float(count), severity, float(count),
                       0.0, round(baseline, 3), window, ts_ms, "drain3-patterns", VERSION)

    def report(self, ts_ms: int) -> list[Insight]:
        """Insights on the patterns active in the period ending at ``ts_ms``; starts a new period."""
        active = sorted((p for p in self.patterns.values() if p.period_count),
                        key=lambda p: (-p.period_count, p.cid))[: self.config.max_reported]
        period_min = self.config.report_ms / 60_000
        insights = [self._insight(p, ts_ms, period_min) for p in active]
        if self.period_total or self.previous_total:
            insights.append(self._summary(ts_ms))
        self.previous_total, self.period_total = self.period_total, 0
        for pattern in self.patterns.values():
            if pattern.period_count and not pattern.first_period_count:
                pattern.first_period_count = pattern.period_count
            if pattern.period_count or pattern.period:
                self.dirty.add(pattern.cid)
            pattern.period_count, pattern.period = 0, {}
        self.traffic = {}
        return insights

    def _insight(self, p: _Pattern, ts_ms: int, period_min: float) -> Insight:
        carriers = {dim: _top(p.period.get(dim, {})) or "" for dim in DIMENSIONS}
        evidence = {"template": p.template, "class": str(p.klass), "lines": str(p.period_count),
                    "lines_per_min": f"{p.period_count / period_min:.2f}", "total": str(p.total),
                    "first_seen_ms": str(p.first_ms), "peak_window_lines": str(max(p.peak, p.period_count))}
        for dim in DIMENSIONS:
            counts = p.period.get(dim, {})
            if counts:
                evidence[f"by_{dim}"] = ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:5])
        route = carriers["route"]
        if route and self.traffic.get(route):
            evidence["share_of_route_requests"] = f"{p.period.get('route', {}).get(route, 0) / self.traffic[route]:.4f}"
        if p.first_period_count and p.first_period_count != p.period_count:
            evidence["reduction_vs_first_period"] = f"{1 - p.period_count / p.first_period_count:.3f}"
        trend = "new" if p.first_ms >= ts_ms - self.config.report_ms else _trend(p, self.config.window_ms, ts_ms)
        evidence["trend"] = trend
        severity = Severity.WARNING if trend in ("new", "rising") else Severity.INFO
        title = f"[{p.klass}] {p.period_count} × '{p.template}' ({trend}), mostly on {route or carriers['service']}"
        body = (f"Error pattern {p.cid} of class {p.klass}: {p.period_count} lines in the last {period_min:g} min "
                f"({evidence['lines_per_min']}/min), {p.total} since first seen. Look at the lines of "
                f"{route or carriers['service']} matching it; the evidence lists where they come from.")
        return Insight(f"pattern-{p.cid}-{ts_ms}", ts_ms, "error_pattern", f"pattern:{p.cid}", title, body, severity,
                       evidence, recommend(p.klass, carriers))

    def _summary(self, ts_ms: int) -> Insight:
        before, now = self.previous_total, self.period_total
        reduction = (1 - now / before) if before else 0.0
        evidence = {"lines": str(now), "previous_lines": str(before), "error_reduction": f"{reduction:.3f}",
                    "patterns": str(sum(1 for p in self.patterns.values() if p.period_count))}
        return Insight(f"errors-{ts_ms}", ts_ms, "error_summary", "errors",
                       f"{now} error lines in {self.config.report_ms // 60_000} min, " + (
                           f"{reduction:+.1%} reduction vs the period before" if before else "the first period"),
                       "Error lines across all patterns, this report period against the one before.",
                       Severity.INFO, evidence, None)

    # ------------------------------------------------------------ durable state (plain JSON)

    def drain_dirty(self) -> list[tuple[int, dict[str, Any]]]:
        """The JSON state of every template that changed since the last call."""
        out = []
        for cid in sorted(self.dirty):
            cluster = self.miner.drain.id_to_cluster.get(cid)
            pattern = self.patterns[cid]
            if cluster is not None:
                out.append((cid, pattern.to_json(cluster.log_template_tokens, cluster.size)))
        self.dirty.clear()
        return out

    def clock(self) -> dict[str, Any]:
        return {"started_ms": self.started_ms, "watermark_ms": self.watermark_ms,
                "closed_until_ms": self.closed_until_ms, "next_report_ms": self.next_report_ms,
                "period_total": self.period_total, "previous_total": self.previous_total, "traffic": self.traffic}

    def load_clock(self, state: Mapping[str, Any]) -> None:
        self.started_ms, self.watermark_ms = state["started_ms"], int(state["watermark_ms"])
        self.closed_until_ms, self.next_report_ms = int(state["closed_until_ms"]), state["next_report_ms"]
        self.period_total, self.previous_total = int(state["period_total"]), int(state["previous_total"])
        self.traffic = {str(k): int(v) for k, v in state["traffic"].items()}

    def load_template(self, state: Mapping[str, Any]) -> None:
        """Rebuild one template: its drain3 cluster (re-inserted into the tree) and its counters."""
        cid = int(state["cid"])
        drain = self.miner.drain
        if cid in self.patterns:
            return
        cluster = LogCluster([str(t) for t in state["tokens"]], cid)
        cluster.size = int(state["size"])
        drain.id_to_cluster[cid] = cluster
        drain.add_seq_to_prefix_tree(drain.root_node, cluster)
        drain.clusters_counter = max(drain.clusters_counter, cid)
        self.patterns[cid] = _Pattern(
            cid, cluster.get_template(), ErrorClass(state["class"]), int(state["first_ms"]), int(state["last_ms"]),
            int(state["total"]), int(state["peak"]), {int(k): int(v) for k, v in state["windows"]},
            {str(d): {str(k): int(v) for k, v in c.items()} for d, c in state["period"].items()},
            int(state["period_count"]), int(state["first_period_count"]))


def _carrier(pattern: _Pattern) -> tuple[str, str]:
    """The entity an anomaly of this pattern is about: its main route, else workflow, else service."""
    for kind in ("route", "workflow", "service"):
        top = _top(pattern.period.get(kind, {}))
        if top:
            return kind, top
    return "service", "unknown"


def _top(counts: Mapping[str, int]) -> str | None:
    return max(sorted(counts), key=lambda k: counts[k]) if counts else None


def _trend(p: _Pattern, window_ms: int, ts_ms: int) -> str:
    """Rising, falling or steady: the last two windows against the two before them."""
    end = ts_ms - ts_ms % window_ms
    recent = sum(p.windows.get(end - k * window_ms, 0) for k in (1, 2))
    earlier = sum(p.windows.get(end - k * window_ms, 0) for k in (3, 4))
    if recent > 1.5 * earlier + 2:
        return "rising"
    if earlier > 1.5 * recent + 2:
        return "falling"
    return "steady"
