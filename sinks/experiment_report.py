"""Reports of prompt-variant experiments from their published decisions: pandas tables and a matplotlib plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from schemas.records import ExperimentDecision

HISTORY_COLUMNS = ("experiment", "workflow", "ts_ms", "time", "status", "variant", "allocation", "n", "mean",
                   "ci_low", "ci_high", "p_best", "expected_loss", "arm_status", "srm_p_value", "winner",
                   "decided_ts_ms")
REPORT_COLUMNS = ("experiment", "workflow", "variant", "arm_status", "allocation", "n", "mean", "ci_low", "ci_high",
                  "p_best", "expected_loss", "always_valid_p", "status", "winner", "decided_at", "srm_p_value",
                  "first_at", "last_at", "decisions")


def experiment_history(decisions: Sequence[ExperimentDecision]) -> pd.DataFrame:
    """Every decision, one row per arm, in time order (the series the plot draws).

    >>> from schemas.records import ArmStats, ArmStatus, ExperimentStatus
    >>> arm = ArmStats("a", 0.5, 10, 0.5, 0.4, 0.6, 0.5, 0.01, ArmStatus.ACTIVE)
    >>> d = ExperimentDecision("e", "wf", 0, ExperimentStatus.RUNNING, (arm,), 1.0, "{}")
    >>> experiment_history([d])[["variant", "n", "time"]].to_dict("records")
    [{'variant': 'a', 'n': 10, 'time': Timestamp('1970-01-01 00:00:00+0000', tz='UTC')}]
    """
    rows = [{"experiment": d.experiment, "workflow": d.workflow, "ts_ms": d.ts_ms, "status": d.status.value,
             "variant": a.variant, "allocation": a.allocation, "n": a.n, "mean": a.mean, "ci_low": a.ci_low,
             "ci_high": a.ci_high, "p_best": a.p_best, "expected_loss": a.expected_loss,
             "arm_status": a.status.value, "srm_p_value": d.srm_p_value, "winner": d.winner,
             "decided_ts_ms": d.decided_ts_ms}
            for d in decisions for a in d.arms]
    frame = pd.DataFrame(rows, columns=[c for c in HISTORY_COLUMNS if c != "time"])
    frame.insert(3, "time", pd.to_datetime(frame["ts_ms"], unit="ms", utc=True))
    return frame.sort_values(["experiment", "ts_ms", "variant"], kind="stable").reset_index(drop=True)


def experiment_report(decisions: Sequence[ExperimentDecision]) -> pd.DataFrame:
    """Per experiment and arm, the latest state: traffic, estimate with its interval, decision and when.

    ``always_valid_p`` is the arm's anytime-valid p-value against the leader
    in the latest evidence (empty for the leader itself and after the end).
    """
    frame = experiment_history(decisions)
    if frame.empty:
        return pd.DataFrame(columns=list(REPORT_COLUMNS))
    latest = {d.experiment: d for d in sorted(decisions, key=lambda d: d.ts_ms)}
    rows: list[dict[str, Any]] = []
    for name, group in frame.groupby("experiment", sort=True):
        last = latest[str(name)]
        p_values = _always_valid_p(last.evidence)
        for arm in last.arms:
            rows.append({"experiment": name, "workflow": last.workflow, "variant": arm.variant,
                         "arm_status": arm.status.value, "allocation": arm.allocation, "n": arm.n,
                         "mean": arm.mean, "ci_low": arm.ci_low, "ci_high": arm.ci_high, "p_best": arm.p_best,
                         "expected_loss": arm.expected_loss, "always_valid_p": p_values.get(arm.variant),
                         "status": last.status.value, "winner": last.winner,
                         "decided_at": _time(last.decided_ts_ms), "srm_p_value": last.srm_p_value,
                         "first_at": group["time"].min(), "last_at": group["time"].max(),
                         "decisions": int(group["ts_ms"].nunique())})
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))


def plot_experiment(decisions: Sequence[ExperimentDecision], path: str | Path) -> Path:
    """Draw one experiment: mean ± interval per arm over time, allocation over time, the decision marked.

    Raises:
        ValueError: No decisions, or decisions of more than one experiment.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = experiment_history(decisions)
    names = frame["experiment"].unique().tolist()
    if len(names) != 1:
        raise ValueError(f"plot_experiment needs the decisions of exactly one experiment, got {names}")
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    for variant, arm in frame.groupby("variant", sort=True):
        line = top.plot(arm["time"], arm["mean"], label=str(variant))[0]
        top.fill_between(arm["time"], arm["ci_low"], arm["ci_high"], color=line.get_color(), alpha=0.2)
        bottom.step(arm["time"], arm["allocation"], where="post", color=line.get_color(), label=str(variant))
    decided = frame["decided_ts_ms"].dropna()
    if not decided.empty:
        when = pd.to_datetime(int(decided.iloc[-1]), unit="ms", utc=True)
        winner = frame["winner"].dropna()
        label = f"decided: {winner.iloc[-1]}" if not winner.empty else "stopped"
        for ax in (top, bottom):
            ax.axvline(when, color="black", linestyle="--", linewidth=1, label=label if ax is top else None)
    top.set_ylabel("primary metric (mean, 95 % interval)")
    top.set_title(f"experiment {names[0]}")
    top.legend(loc="best")
    bottom.set_ylabel("traffic share")
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_xlabel("event time (UTC)")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out


def _always_valid_p(evidence: str) -> dict[str, float]:
    try:
        data = json.loads(evidence)
    except ValueError:
        return {}
    return {row["other"]: row["always_valid_p"] for row in data.get("comparisons", []) if "always_valid_p" in row}


def _time(ts_ms: int | None) -> pd.Timestamp | None:
    return None if ts_ms is None else pd.to_datetime(ts_ms, unit="ms", utc=True)
