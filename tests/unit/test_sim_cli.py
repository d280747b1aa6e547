"""``loopwise simulate`` arguments, offline report and plot, and the live-mode stub."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from infra.simulator.cli import add_simulate_arguments, simulate_main
from infra.simulator.scorecard import SCORECARD_FIELDS


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    return parser.parse_args(list(argv))


def test_offline_compare_writes_report_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, plot = tmp_path / "r.json", tmp_path / "p.png"
    code = simulate_main(parse("--scenario", "outage", "--duration", "2m", "--rate", "20", "--offline",
                               "--policy", "least-latency", "--compare", "random,oracle",
                               "--report", str(report), "--plot", str(plot)))
    assert code == 0
    data = json.loads(report.read_text())
    assert list(data) == ["least-latency", "random", "oracle"]
    assert all(tuple(card) == SCORECARD_FIELDS for card in data.values())
    assert data["oracle"]["reward_ratio"] == 1.0
    assert data["random"]["requests"] == data["oracle"]["requests"] == 2440
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "least-latency" in capsys.readouterr().out


def test_live_mode_without_a_cluster_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_main(parse("--scenario", "outage")) == 2
    err = capsys.readouterr().err
    assert "live mode needs a cluster with a loopwise worker" in err and "loopwise up --simulate" in err


def test_bad_arguments_are_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_main(parse("--scenario", "outage", "--offline", "--duration", "soon")) == 2
    assert "--duration: expected a duration like 30s/20m/2h, got 'soon'" in capsys.readouterr().err
    assert simulate_main(parse("--scenario", "outage", "--offline", "--compare", "magic")) == 2
    assert "unknown policy 'magic'" in capsys.readouterr().err


def test_scenario_and_scenario_file_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        parse("--scenario", "steady", "--scenario-file", "x.yaml")
