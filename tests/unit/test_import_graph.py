"""The product does not import the simulator: the worker and the CLI's other commands run without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def test_worker_and_cli_commands_do_not_import_the_simulator() -> None:
    code = (
        "import sys, importlib\n"
        "import streams.app, streams.stages, streams.engine, streams.runner, streams.cli\n"
        "from streams.cli import _COMMAND_MODULES, _parser\n"
        "for m in _COMMAND_MODULES: importlib.import_module(m)\n"
        "_parser(command='worker')\n"
        "print(sorted(m for m in sys.modules if m.startswith('infra.simulator')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=_REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
