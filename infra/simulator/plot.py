"""A picture of a comparison: reward, cost and p95 latency over time per policy, incidents shaded."""

from __future__ import annotations

from pathlib import Path

from infra.simulator.errors import SimulatorError
from infra.simulator.scorecard import RunResult


def plot_runs(results: dict[str, RunResult], path: str | Path, title: str = "") -> None:
    """Write a PNG with one panel per measure (per-minute bins) and incident windows shaded.

    Raises:
        SimulatorError: when matplotlib cannot write the file.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    panels = (("reward", "reward (mean / request)"), ("cost_usd", "cost (USD / minute)"), ("p95_latency_ms", "p95 latency (ms)"))
    for name, result in results.items():
        minutes = [t / 60.0 for t in result.series["t_s"]]
        for ax, (key, _) in zip(axes, panels):
            ax.plot(minutes, result.series[key], label=name, linewidth=1.2)
    first = next(iter(results.values()))
    for incident in first.scorecard["incidents"]:
        end_ms = incident["resolved_at"] or first.end_ms
        for ax in axes:
            ax.axvspan((incident["start"] - first.start_ms) / 60000.0, (end_ms - first.start_ms) / 60000.0,
                       color="red", alpha=0.12)
    for ax, (_, label) in zip(axes, panels):
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=8, ncol=4)
    axes[-1].set_xlabel("simulated minutes")
    fig.suptitle(title or "loopwise simulator")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise SimulatorError(f"cannot write plot {path}: {exc}") from exc
    finally:
        plt.close(fig)

