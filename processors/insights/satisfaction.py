"""Satisfaction KPIs from final outcomes, a drop detector per KPI, and the root cause of a drop.

Every KPI is the mean of a per-outcome score (thumbs up 1/0, stars, NPS +1/0/-1, completed
1/0, edited 1/0, deleted 1/0, dwell seconds), kept per workflow and per value of each
dimension (version, route, variant, tenant, task) in event-time buckets of request time.

A drop: the last ``current`` buckets against the ``baseline`` buckets before them, in the
KPI's bad direction, with a z-score over ``z_drop`` and a relative change over ``min_rel``.
Root cause: for each dimension the change of the mean is split exactly over its values,
    Δ = Σ_s (w'_s − w_s)(m_s − M) + w'_s (m'_s − m_s)      (mix shift + within-segment change),
and values are ranked by how much more of Δ they explain than their traffic share would
(explained − share): a regressed route explains all of a drop with a third of the traffic,
while the values of an unrelated dimension explain about their share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from schemas.records import Insight, Outcome, Severity, Status

DIMENSIONS = ("version", "route", "variant", "tenant", "task")
#: KPI -> whether higher is better.
KPIS: Mapping[str, bool] = {"thumbs_up_rate": True, "mean_rating": True, "nps": True, "task_completion": True,
                            "edit_rate": False, "delete_rate": False, "dwell_s": True}
_ADJUST = {
    ("route", "rate"): "shift traffic away from route {value}: lower its routing share for {workflow} until its "
                       "{kpi} recovers (it fell from {before} to {after})",
    ("variant", "rate"): "roll back prompt variant {value} of {workflow}: cut its allocation to the minimum "
                         "(its {kpi} fell from {before} to {after})",
    ("version", "rate"): "roll back {workflow} version {value} to the previous version (its {kpi} is {after} against "
                         "{before} before)",
    ("tenant", "rate"): "look at tenant {value}'s traffic on {workflow}: its {kpi} fell from {before} to {after}; "
                        "give it a dedicated route or prompt variant",
    ("task", "rate"): "look at task {value} on {workflow}: its {kpi} fell from {before} to {after}; route it to a "
                      "stronger model or refine its prompt",
}
_MIX = ("no regression inside any {dimension}: {dimension} {value}'s share of {workflow} grew from {share_before} to "
        "{share_after} and its {kpi} is usually lower; adjust the KPI target for the new mix, or give {value} a "
        "dedicated route or prompt")


def scores(outcome: Outcome) -> dict[str, float]:
    """The per-outcome score of every KPI this outcome informs."""
    found: dict[str, float] = {"edit_rate": 1.0 if outcome.edited is not None else 0.0,
                               "delete_rate": 1.0 if outcome.deleted else 0.0}
    if outcome.thumbs is not None:
        found["thumbs_up_rate"] = outcome.thumbs
    if outcome.rating is not None:
        found["mean_rating"] = outcome.rating
    if outcome.nps is not None:
        found["nps"] = 1.0 if outcome.nps >= 9 else -1.0 if outcome.nps <= 6 else 0.0
    if outcome.task_completed is not None:
        found["task_completion"] = outcome.task_completed
    if outcome.dwell_s is not None:
        found["dwell_s"] = outcome.dwell_s
    return found


def _segments(outcome: Outcome) -> list[str]:
    values = (outcome.workflow_version, outcome.route, outcome.variant, outcome.tenant, outcome.task)
    return ["all\x1f"] + [f"{d}\x1f{v}" for d, v in zip(DIMENSIONS, values) if v]


@dataclass(frozen=True, slots=True)
class SatisfactionConfig:
    """bucket_ms: KPI bucket; current/baseline: buckets compared; z_drop, min_rel: what counts as a drop;
    min_n: scores needed in the current window; cooldown_ms: quiet time of a workflow after its drop;
    report_ms: how often KPI summaries are published; min_segment_n: smallest segment ranked as a cause."""

    bucket_ms: int = 300_000
    current: int = 2
    baseline: int = 12
    z_drop: float = 5.0
    min_rel: float = 0.05
    min_n: int = 100
    cooldown_ms: int = 3_600_000
    report_ms: int = 3_600_000
    min_segment_n: int = 20


Stats = list[float]  # [n, sum, sum of squares]


class SatisfactionMonitor:
    """KPIs per workflow and segment, drops and their root causes, in request event time.

    >>> m = SatisfactionMonitor()
    >>> for i, (ts, thumbs) in enumerate([(0, 1.0), (60_000, 0.0), (600_000, None)]):
    ...     m.observe(Outcome(f"r{i}", ts + 3_600_000, ts, "wf", "v1", "a", "s", Status.OK, 1.0, 0.0, 0.5, 0.5,
    ...                       0.0, 0.0, 0.0, True, thumbs=thumbs))
    >>> m.kpi("wf", "thumbs_up_rate")
    0.5
    """

    def __init__(self, config: SatisfactionConfig | None = None) -> None:
        self.config = config or SatisfactionConfig()
        # workflow -> bucket start -> "dim\x1fvalue" -> kpi -> [n, sum, sumsq]
        self.buckets: dict[str, dict[int, dict[str, dict[str, Stats]]]] = {}
        self.clock_ms = 0
        self.evaluated_ms = 0
        self.next_report_ms = 0
        self.quiet_until: dict[str, int] = {}  # workflow -> no new drop before
        self.is_dirty = False
        self._gauges: dict[tuple[str, str], float] = {}
        self._newest: dict[int, int] = {}
        self._quiet: dict[int, int] = {}
        self._seen = 0
        self.idle_after = 5_000

    def observe(self, outcome: Outcome, source: int = 0) -> None:
        """One final outcome, bucketed by when its request was served.

        ``source`` is the input partition: the clock that closes buckets is the slowest
        partition's newest request time (partitions quiet for ``idle_after`` outcomes of the
        others do not hold it), so a bucket is judged only once every partition has filled it.
        """
        ts = outcome.request_ts_ms
        self._see(source, ts)
        bucket = ts - ts % self.config.bucket_ms
        cells = self.buckets.setdefault(outcome.workflow, {}).setdefault(bucket, {})
        found = [(kpi, x, x * x) for kpi, x in scores(outcome).items()]
        for segment in _segments(outcome):
            per_kpi = cells.get(segment)
            if per_kpi is None:
                per_kpi = cells[segment] = {}
            for kpi, x, xx in found:
                cell = per_kpi.get(kpi)
                if cell is None:
                    per_kpi[kpi] = [1.0, x, xx]
                else:
                    cell[0] += 1.0
                    cell[1] += x
                    cell[2] += xx

    def expect(self, source: int) -> None:
        """A partition assigned but not read yet: it holds the clock until it is (or stays quiet too long)."""
        self._newest.setdefault(source, 0)
        self._quiet.setdefault(source, 0)

    def drop_source(self, source: int) -> None:
        """A partition no longer assigned: it no longer holds the clock."""
        self._newest.pop(source, None)
        self._quiet.pop(source, None)

    def _see(self, source: int, ts: int) -> None:
        newest, quiet = self._newest, self._quiet
        if ts > newest.get(source, 0):
            newest[source] = ts
        quiet[source] = 0
        self._seen += 1
        if self._seen % 64 and len(newest) > 1:
            return  # the clock moves by whole buckets: recomputing it every 64 outcomes is plenty
        for name in quiet:
            quiet[name] = 0 if name == source else quiet[name] + 64
        live = [newest[n] for n in newest if quiet[n] < self.idle_after]
        clock = min(live) if live else ts
        if clock > self.clock_ms:
            self.clock_ms = clock

    def kpi(self, workflow: str, kpi: str, dim: str = "all", value: str = "") -> float | None:
        """The KPI's value over the current window (NPS in points, −100…100)."""
        stats = self._window(workflow, *self._current_range())[0].get((dim, value, kpi))
        return None if stats is None or not stats[0] else _display(kpi, stats[1] / stats[0])

    def _current_range(self) -> tuple[int, int]:
        end = self.clock_ms - self.clock_ms % self.config.bucket_ms  # the bucket in progress is excluded
        return end - self.config.current * self.config.bucket_ms, end

    def _window(self, workflow: str, start: int, end: int) -> tuple[dict[tuple[str, str, str], Stats], None]:
        total: dict[tuple[str, str, str], Stats] = {}
        for bucket, cells in self.buckets.get(workflow, {}).items():
            if start <= bucket < end:
                for segment, per_kpi in cells.items():
                    dim, value = segment.split("\x1f")
                    for kpi, (n, s, q) in per_kpi.items():
                        acc = total.setdefault((dim, value, kpi), [0.0, 0.0, 0.0])
                        acc[0] += n
                        acc[1] += s
                        acc[2] += q
        return total, None

    def advance(self) -> list[Insight]:
        """Root-cause insights for drops found in the buckets closed since the last call; periodic KPI reports."""
        cfg = self.config
        closed = self.clock_ms - self.clock_ms % cfg.bucket_ms
        if closed <= self.evaluated_ms:
            return []
        self.evaluated_ms = closed
        self.is_dirty = True
        insights: list[Insight] = []
        cur_start, cur_end = self._current_range()
        base_start = cur_start - cfg.baseline * cfg.bucket_ms
        for workflow in sorted(self.buckets):
            current, _ = self._window(workflow, cur_start, cur_end)
            base, _ = self._window(workflow, base_start, cur_start)
            for (dim, value, kpi), stats in current.items():
                if dim == "all" and stats[0]:
                    self._gauges[(workflow, kpi)] = _display(kpi, stats[1] / stats[0])
            found = self._drop(workflow, current, base, closed)
            if found is not None:
                insights.append(found)
            for old in [b for b in self.buckets[workflow] if b < base_start]:
                del self.buckets[workflow][old]
        if closed >= self.next_report_ms:
            if self.next_report_ms:
                insights += [self._summary(w, closed) for w in sorted(self.buckets)]
            self.next_report_ms = closed + cfg.report_ms
        return insights

    def _drop(self, workflow: str, current: dict[tuple[str, str, str], Stats],
              base: dict[tuple[str, str, str], Stats], ts_ms: int) -> Insight | None:
        cfg = self.config
        drops = []
        for kpi, is_higher_better in KPIS.items():
            cur, old = current.get(("all", "", kpi)), base.get(("all", "", kpi))
            if cur is None or old is None or cur[0] < cfg.min_n or old[0] < cfg.min_n:
                continue
            m1, m0 = cur[1] / cur[0], old[1] / old[0]
            se = math.sqrt(_var(cur) / cur[0] + _var(old) / old[0]) or 1e-9
            z = (m0 - m1) / se if is_higher_better else (m1 - m0) / se
            rel = abs(m1 - m0) / max(abs(m0), 1e-9) if kpi != "nps" else abs(m1 - m0)
            if z >= cfg.z_drop and rel >= cfg.min_rel:
                drops.append((z, kpi, m0, m1))
        if not drops or self.quiet_until.get(workflow, 0) > ts_ms:
            return None  # one drop, one insight: the KPIs that follow it down are the same event
        z, kpi, m0, m1 = max(drops)
        self.quiet_until[workflow] = ts_ms + cfg.cooldown_ms
        causes = rank_causes(current, base, kpi, cfg.min_segment_n)
        return self._insight(workflow, kpi, m0, m1, z, causes, [d[1] for d in drops], ts_ms)

    def _insight(self, workflow: str, kpi: str, m0: float, m1: float, z: float, causes: list[dict[str, Any]],
                 kpis: list[str], ts_ms: int) -> Insight:
        before, after = _fmt(kpi, m0), _fmt(kpi, m1)
        evidence = {"workflow": workflow, "kpi": kpi, "before": before, "after": after, "z": f"{z:.1f}",
                    "kpis_dropped": ",".join(sorted(kpis)), "window_end_ms": str(ts_ms)}
        recommendation = None
        title = f"{workflow}: {kpi} dropped from {before} to {after}"
        if causes:
            top = causes[0]
            title += f", explained by {top['dimension']}={top['value']} ({top['kind']})"
            for i, c in enumerate(causes[:5]):
                evidence[f"cause_{i + 1}"] = (f"{c['dimension']}={c['value']} explains {c['explained']:.0%} "
                                              f"(share {c['share_before']:.0%}→{c['share_after']:.0%}, "
                                              f"{kpi} {_fmt(kpi, c['before'])}→{_fmt(kpi, c['after'])}, "
                                              f"mix {c['mix']:+.4f}, within {c['within']:+.4f}, score {c['score']:.2f})")
            names = {"workflow": workflow, "kpi": kpi, "value": top["value"], "dimension": top["dimension"],
                     "before": _fmt(kpi, top["before"]), "after": _fmt(kpi, top["after"]),
                     "share_before": f"{top['share_before']:.0%}", "share_after": f"{top['share_after']:.0%}"}
            template = _MIX if top["kind"] == "mix shift" else _ADJUST[(top["dimension"], "rate")]
            recommendation = template.format(**names)
        body = (f"{kpi} of {workflow} over the last {self.config.current * self.config.bucket_ms // 60_000} min "
                f"against the {self.config.baseline * self.config.bucket_ms // 60_000} min before (z={z:.1f}). "
                f"Causes are ranked by the share of the drop they explain beyond their traffic share; "
                f"look first at cause_1.")
        return Insight(f"satisfaction-{workflow}-{kpi}-{ts_ms}", ts_ms, "root_cause", f"satisfaction:{workflow}",
                       title, body, Severity.WARNING, evidence, recommendation)

    def _summary(self, workflow: str, ts_ms: int) -> Insight:
        evidence = {kpi: _fmt(kpi, v) for (w, kpi), v in sorted(self._gauges.items()) if w == workflow}
        return Insight(f"kpis-{workflow}-{ts_ms}", ts_ms, "satisfaction_kpis", f"satisfaction:{workflow}",
                       f"{workflow} satisfaction: " + ", ".join(f"{k} {v}" for k, v in evidence.items()),
                       "Satisfaction KPIs over the last closed window; a drop would come as a root_cause insight.",
                       Severity.INFO, evidence, None)

    def drain_gauges(self) -> list[tuple[tuple[str, str], float]]:
        """KPI values changed since the last call, for the Prometheus gauges."""
        out = sorted(self._gauges.items())
        self._gauges = {}
        return out

    def snapshot(self) -> dict[str, Any]:
        self.is_dirty = False
        return {"buckets": {w: {str(b): cells for b, cells in bs.items()} for w, bs in self.buckets.items()},
                "clock_ms": self.clock_ms, "evaluated_ms": self.evaluated_ms, "next_report_ms": self.next_report_ms,
                "quiet_until": self.quiet_until, "newest": {str(k): v for k, v in self._newest.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.buckets = {w: {int(b): {seg: {k: [float(x) for x in v] for k, v in per_kpi.items()}
                                     for seg, per_kpi in cells.items()} for b, cells in bs.items()}
                        for w, bs in state["buckets"].items()}
        self.clock_ms, self.evaluated_ms = int(state["clock_ms"]), int(state["evaluated_ms"])
        self.next_report_ms = int(state["next_report_ms"])
        self.quiet_until = {str(k): int(v) for k, v in state["quiet_until"].items()}
        self._newest = {int(k): int(v) for k, v in state.get("newest", {}).items()}
        self._quiet = {k: 0 for k in self._newest}


def rank_causes(current: Mapping[tuple[str, str, str], Stats], base: Mapping[tuple[str, str, str], Stats],
                kpi: str, min_n: int = 20) -> list[dict[str, Any]]:
    """Every (dimension, value) with its contribution to the KPI's change, best explanation first.

    >>> cur = {("all", "", "k"): [100, 60, 60], ("route", "a", "k"): [50, 10, 10], ("route", "b", "k"): [50, 50, 50]}
    >>> old = {("all", "", "k"): [100, 90, 90], ("route", "a", "k"): [50, 40, 40], ("route", "b", "k"): [50, 50, 50]}
    >>> [(c["value"], round(c["explained"], 2) + 0.0, c["kind"]) for c in rank_causes(cur, old, "k", 1)]
    [('a', 1.0, 'within segment'), ('b', 0.0, 'within segment')]
    """
    total_cur, total_old = current[("all", "", kpi)], base[("all", "", kpi)]
    m_old = total_old[1] / total_old[0]
    delta = total_cur[1] / total_cur[0] - m_old
    if not delta:
        return []
    causes: list[dict[str, Any]] = []
    for dim in DIMENSIONS:
        values = {v for (d, v, k) in list(current) + list(base) if d == dim and k == kpi}
        if len(values) < 2:
            continue  # one value explains everything and so nothing
        for value in sorted(values):
            cur = current.get((dim, value, kpi), [0.0, 0.0, 0.0])
            old = base.get((dim, value, kpi), [0.0, 0.0, 0.0])
            if max(cur[0], old[0]) < min_n:
                continue
            w1, w0 = cur[0] / total_cur[0], old[0] / total_old[0]
            m1 = cur[1] / cur[0] if cur[0] else m_old
            m0 = old[1] / old[0] if old[0] else m_old
            mix, within = (w1 - w0) * (m0 - m_old), w1 * (m1 - m0)
            explained = (mix + within) / delta
            causes.append({"dimension": dim, "value": value, "explained": explained, "share_before": w0,
                           "share_after": w1, "before": m0, "after": m1, "mix": mix, "within": within,
                           "score": explained - w1,
                           "kind": "mix shift" if abs(mix) > abs(within) else "within segment"})
    causes.sort(key=lambda c: (-float(c["score"]), str(c["dimension"]), str(c["value"])))
    return causes


def _var(stats: Stats) -> float:
    n, s, q = stats
    return max(q / n - (s / n) ** 2, 1e-12) if n else 0.0


def _display(kpi: str, mean: float) -> float:
    return mean * 100 if kpi == "nps" else mean


def _fmt(kpi: str, mean: float) -> str:
    if kpi == "nps":
        return f"{mean * 100:.0f}"
    if kpi in ("mean_rating", "dwell_s"):
        return f"{mean:.2f}"
    return f"{mean:.1%}"
