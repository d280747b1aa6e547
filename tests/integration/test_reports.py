"""``loopwise report experiments | errors | satisfaction`` read from the broker, and each report opens in a
real browser (headless Chromium) with every plot loaded.

Chromium is Debian's ``chromium`` package: ``.ci/install-chromium.sh`` (run by ``make test``) installs it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from infra.admin import apply_topics
from infra.settings import Settings
from infra.simulator.insight_logs import error_logs
from infra.simulator.insight_truth import satisfaction_outcomes
from processors.insights.patterns import ErrorLine, PatternConfig, PatternMiner
from processors.insights.satisfaction import SatisfactionMonitor
from schemas.records import ArmStats, ArmStatus, ExperimentDecision, ExperimentStatus, Insight
from schemas.serde import json_codec
from streams.runner import worker_env
from tests.integration.conftest import produce_messages

_REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000
_CHECK = ("<script>window.addEventListener('load',()=>{const w=[...document.images].map(i=>i.naturalWidth);"
          "document.body.insertAdjacentHTML('beforeend','<pre id=\"lw-check\">'+JSON.stringify(w)+'</pre>')})</script>")


def _produce(settings: Settings, logical: str, records: list[Any], key: str) -> None:
    codec = json_codec(type(records[0]))
    values = [(str(getattr(r, key)).encode(), codec.encode(r)) for r in records]
    keys = {v: k for k, v in values}
    assert produce_messages(settings, settings.topic(logical), [v for _, v in values], key=lambda v: keys[v]) == len(values)


def _inputs() -> tuple[list[Insight], list[Any], list[ExperimentDecision]]:
    miner, insights = PatternMiner(PatternConfig(warmup_ms=0)), []
    for line in error_logs(1, 600, start_ms=T0, rate_per_s=0.2):
        miner.observe(ErrorLine(line.event.ts_ms, line.event.message, line.event.service, line.event.route))
        insights += miner.advance(line.event.ts_ms)[1]
    outcomes, _ = satisfaction_outcomes(2, "route", start_ms=T0, duration_ms=4_800_000, drop_at_ms=3_900_000,
                                        rate_per_s=1.0, drop=0.5)
    monitor = SatisfactionMonitor()
    for outcome in outcomes:
        monitor.observe(outcome)
        insights += monitor.advance()
    decisions = [ExperimentDecision("wf-prompts", "support-bot", T0 + k * 600_000, ExperimentStatus.RUNNING,
                                    tuple(ArmStats(v, 0.5, 100 * k, m + 0.01 * k, m - 0.05, m + 0.05, 0.5, 0.01,
                                                   ArmStatus.ACTIVE) for v, m in (("a", 0.6), ("b", 0.7))), 0.9, "{}")
                 for k in range(1, 6)]
    return insights, outcomes, decisions


def _loaded_image_widths(chromium: str, page: Path, tmp: Path) -> list[int]:
    checked = tmp / f"check-{page.name}"
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", _CHECK + "</body>"), encoding="utf-8")
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=2000",
                             "--dump-dom", checked.as_uri()], capture_output=True, text=True, timeout=90)
    found = re.findall(r'<pre id="lw-check">(\[[0-9,]*\])</pre>', result.stdout)  # not the script's own text
    assert found, f"the page's check did not run: {result.stderr[-500:]}"
    return list(json.loads(found[-1]))


def test_each_report_is_read_from_the_topics_and_opens_with_its_plots(settings: Settings, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: run .ci/install-chromium.sh (make test does)"
    apply_topics(settings)
    insights, outcomes, decisions = _inputs()
    assert {"error_pattern", "root_cause"} <= {i.kind for i in insights}
    _produce(settings, "insights", insights, "subject")
    _produce(settings, "outcomes", outcomes, "request_id")
    _produce(settings, "decisions.experiments", decisions, "experiment")
    out = tmp_path / "reports"
    env = worker_env(settings)
    for name, images in (("errors", 3), ("satisfaction", 4), ("experiments", 1)):
        done = subprocess.run([sys.executable, "-m", "streams.cli", "report", name, "--out", str(out), "--idle-s", "1.0"],
                              cwd=_REPO, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        page = out / f"{name}.html"
        assert done.stdout.strip() == str(page)
        assert len(pd.read_parquet(out / f"{name}.parquet")) == len(pd.read_csv(out / f"{name}.csv")) > 0
        widths = _loaded_image_widths(chromium, page, tmp_path)
        assert len(widths) >= images and all(w > 0 for w in widths), (name, widths)
    text = (out / "satisfaction.html").read_text(encoding="utf-8")
    assert "Drops and their root causes" in text and re.search(r"route=[\w.-]+ explains", text)
