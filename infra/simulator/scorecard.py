"""Scorecards: accumulate a run's outcomes slice by slice and turn them into the report's fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from infra.simulator.incidents import IncidentBook
from infra.simulator.outcomes import CAUSE_SHED, ERROR, REJECTED, TIMEOUT, SliceOutcomes

F64 = npt.NDArray[np.float64]
SCORECARD_FIELDS = (
    "reward", "oracle_reward", "reward_ratio", "cost_usd", "p95_latency_ms", "quality", "error_rate",
    "privacy_violations", "budget_overrun_usd", "incidents", "mean_time_to_detect_s", "mean_time_to_mitigate_s",
    "false_actions", "experiments", "requests", "dropped", "policy_impl",
)
BIN_MS = 60_000


@dataclass
class Accumulator:
    """Running totals of one run (cheap: a few numpy reductions per slice)."""

    start_ms: int
    n_workflows: int
    requests: int = 0
    reward_sum: float = 0.0
    quality_sum: float = 0.0
    served: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    privacy_violations: int = 0
    dropped: int = 0
    shed: int = 0
    latencies: list[F64] = field(default_factory=list)
    spend: dict[tuple[int, int], float] = field(default_factory=dict)
    bins: dict[int, list[float]] = field(default_factory=dict)
    bin_latencies: dict[int, list[F64]] = field(default_factory=dict)

    def add(self, out: SliceOutcomes) -> None:
        """Fold one slice's outcomes in."""
        n = out.traffic.n
        if n == 0:
            return
        served = out.status != REJECTED
        self.requests += n
        self.reward_sum += float(out.reward.sum())
        self.quality_sum += float(out.quality[served].sum())
        self.served += int(served.sum())
        self.failed += int(((out.status == ERROR) | (out.status == TIMEOUT)).sum())
        self.cost_usd += float(out.cost_usd.sum())
        self.privacy_violations += int(out.privacy_violation.sum())
        is_shed = out.cause == CAUSE_SHED
        self.shed += int(is_shed.sum())
        self.dropped += int((~served & ~is_shed).sum())
        ok_lat = out.latency_ms[served]
        self.latencies.append(ok_lat)
        hour = int((out.traffic.ts_ms[0] - self.start_ms) // 3_600_000)
        for w in range(self.n_workflows):
            key = (w, hour)
            self.spend[key] = self.spend.get(key, 0.0) + float(out.cost_usd[out.traffic.workflow == w].sum())
        b = int((out.traffic.ts_ms[0] - self.start_ms) // BIN_MS)
        row = self.bins.setdefault(b, [0.0, 0.0, 0.0])
        row[0] += float(out.reward.sum())
        row[1] += n
        row[2] += float(out.cost_usd.sum())
        self.bin_latencies.setdefault(b, []).append(ok_lat)

    def p95_latency_ms(self) -> float:
        """95th percentile latency over served requests."""
        lat = np.concatenate(self.latencies) if self.latencies else np.zeros(0)
        return float(np.percentile(lat, 95)) if len(lat) else 0.0

    def series(self) -> dict[str, list[float]]:
        """Per-minute reward (mean), cost (sum) and p95 latency, for plots."""
        keys = sorted(self.bins)
        p95 = [float(np.percentile(np.concatenate(self.bin_latencies[k]), 95)) if sum(map(len, self.bin_latencies[k])) else 0.0
               for k in keys]
        return {"t_s": [k * BIN_MS / 1000.0 for k in keys],
                "reward": [self.bins[k][0] / max(self.bins[k][1], 1) for k in keys],
                "cost_usd": [self.bins[k][2] for k in keys], "p95_latency_ms": p95}


def budget_overrun_usd(acc: Accumulator, budgets: list[float | None], duration_s: float) -> float:
    """Spend above each workflow's hourly budget, summed over hours (a partial last hour gets a pro-rata budget)."""
    overrun = 0.0
    for (w, hour), spent in acc.spend.items():
        budget = budgets[w]
        if budget is None:
            continue
        hours_in_bucket = min(1.0, duration_s / 3600.0 - hour)
        overrun += max(0.0, spent - budget * hours_in_bucket)
    return overrun


@dataclass
class RunResult:
    """One policy's run: the scorecard (without the oracle's figures yet) and its time series."""

    policy: str
    policy_impl: str
    scorecard: dict[str, Any]
    series: dict[str, list[float]]
    shed: int
    ignored_commands: int
    start_ms: int = 0
    end_ms: int = 0


def build_scorecard(acc: Accumulator, book: IncidentBook, budgets: list[float | None], duration_s: float,
                    experiments: list[dict[str, Any]], policy_impl: str) -> dict[str, Any]:
    """The report's fields for one run; ``oracle_reward``/``reward_ratio`` are filled by ``with_oracle``."""
    incidents, ttd, ttm = book.summary()
    reward = acc.reward_sum / acc.requests if acc.requests else 0.0
    return {
        "reward": reward, "oracle_reward": None, "reward_ratio": None, "cost_usd": acc.cost_usd,
        "p95_latency_ms": acc.p95_latency_ms(), "quality": acc.quality_sum / acc.served if acc.served else 0.0,
        "error_rate": acc.failed / acc.served if acc.served else 0.0, "privacy_violations": acc.privacy_violations,
        "budget_overrun_usd": budget_overrun_usd(acc, budgets, duration_s), "incidents": incidents,
        "mean_time_to_detect_s": ttd, "mean_time_to_mitigate_s": ttm, "false_actions": book.false_actions,
        "experiments": experiments, "requests": acc.requests, "dropped": acc.dropped, "policy_impl": policy_impl,
    }


def with_oracle(scorecard: dict[str, Any], oracle_reward: float) -> dict[str, Any]:
    """A copy of ``scorecard`` with the oracle's reward and the ratio filled in.

    The ratio divides by ``|oracle_reward|`` so it stays meaningful if rewards are negative.

    >>> with_oracle({"reward": 0.5}, 0.8)["reward_ratio"]
    0.625
    """
    ratio = scorecard["reward"] / abs(oracle_reward) if oracle_reward else None
    return {**scorecard, "oracle_reward": oracle_reward, "reward_ratio": ratio}

