"""Quix Streams' count-and-forward, run as a child in ``.venv-quix`` and measured like every other pipeline."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.throughput.harness import Child, Result, first_stopped, unique, watch_output
from bench.throughput.quix_env import PIPELINE, ensure_quix_python


def run_quix(bootstrap: str, in_topic: str, out_topic: str, n_events: int, log_dir: Path,
             timeout_s: float = 120.0) -> Result:
    """Forward the ``n_events`` already in ``in_topic``; the rate seen on ``out_topic``.

    Both topics must exist with explicit configs (``harness.create_topics``):
    Quix validates them and crashes on this broker's partial config reports
    otherwise. Quix creates its changelog topic itself.
    """
    python = ensure_quix_python()
    state_dir = tempfile.mkdtemp(prefix="bench-quix-")
    child = Child([str(PIPELINE), bootstrap, in_topic, out_topic, unique("bench-quix"), state_dir],
                  log_dir / f"{in_topic}.log", python=str(python))
    try:
        return watch_output(bootstrap, out_topic, n_events, timeout_s, first_stopped([child]), "quix streams")
    finally:
        child.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
