"""Experiment reports: the pandas tables and the plot, from an engine's real decisions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from schemas.records import ExperimentDecision
from sinks.experiment_report import REPORT_COLUMNS, experiment_history, experiment_report, plot_experiment
from tests.unit.test_experiments import T0, engine, feed


@pytest.fixture(scope="module")
def decisions() -> list[ExperimentDecision]:
    return feed(engine(min_samples=100), {"control": 0.5, "treatment": 0.8}, 400, seed=6)


def test_report_has_one_row_per_arm_with_the_decision(decisions: list[ExperimentDecision]) -> None:
    report = experiment_report(decisions)
    assert list(report.columns) == list(REPORT_COLUMNS)
    rows = report.set_index("variant")
    assert rows.loc["treatment", "arm_status"] == "winner" and rows.loc["control", "arm_status"] == "retired"
    assert rows["allocation"].to_dict() == {"control": 0.0, "treatment": 1.0}
    assert set(rows["winner"]) == {"treatment"} and set(rows["status"]) == {"winner"}
    decided = decisions[-1].decided_ts_ms
    assert decided is not None
    assert rows.loc["control", "decided_at"] == pd.Timestamp(decided, unit="ms", tz="UTC")
    assert (rows["ci_low"] < rows["mean"]).all() and (rows["mean"] < rows["ci_high"]).all()
    assert rows.loc["control", "always_valid_p"] <= 0.05
    assert rows.loc["control", "decisions"] == len(decisions)


def test_history_is_every_decision_times_every_arm(decisions: list[ExperimentDecision]) -> None:
    history = experiment_history(decisions)
    assert len(history) == 2 * len(decisions)
    assert history["ts_ms"].is_monotonic_increasing
    assert history["time"].iloc[0] == pd.Timestamp(decisions[0].ts_ms, unit="ms", tz="UTC")


def test_empty_report_keeps_its_columns() -> None:
    assert list(experiment_report([]).columns) == list(REPORT_COLUMNS)


def test_plot_writes_a_png(decisions: list[ExperimentDecision], tmp_path: Path) -> None:
    out = plot_experiment(decisions, tmp_path / "exp.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = dataclasses.replace(decisions[0], experiment="other", ts_ms=T0)
    with pytest.raises(ValueError):
        plot_experiment([*decisions, other], tmp_path / "mixed.png")
