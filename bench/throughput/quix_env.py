"""The Quix Streams venv (``.venv-quix``): created on demand from ``bench/requirements-quix.txt``.

Quix Streams 3.28.1 pins ``confluent-kafka<2.13`` while loopwise runs 2.16, so
it lives in a venv of its own, used only by the bench. ``python -m
bench.throughput.quix_env`` creates (or checks) it; the bench calls
``ensure_quix_python`` before its Quix runs.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

from bench.throughput.harness import REPO, BenchError, progress

VENV = REPO / ".venv-quix"
REQUIREMENTS = REPO / "bench" / "requirements-quix.txt"
PIPELINE = REPO / "bench" / "throughput" / "quix_pipeline.py"
INSTALL_TIMEOUT_S = 300.0


def _stamp() -> Path:
    return VENV / ".installed"


def _wanted() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def quix_python() -> Path:
    """The venv's interpreter (which may not exist yet)."""
    return VENV / "bin" / "python"


def ensure_quix_python(timeout_s: float = INSTALL_TIMEOUT_S) -> Path:
    """The venv's interpreter, after creating the venv or reinstalling if the requirements changed.

    Raises:
        BenchError: the venv cannot be created or the install fails or takes longer than ``timeout_s``.
    """
    stamp = _stamp()
    if stamp.exists() and stamp.read_text() == _wanted() and quix_python().exists():
        return quix_python()
    progress(f"creating {VENV.name} with {REQUIREMENTS.relative_to(REPO)} (once; ~40 s)")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        subprocess.run([str(quix_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True, timeout=timeout_s, capture_output=True)
        subprocess.run([str(quix_python()), "-c", "import quixstreams, confluent_kafka"], check=True,
                       timeout=60, capture_output=True)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace")[-2000:]
        raise BenchError(f"installing Quix Streams into {VENV} failed ({exc.returncode}):\n{tail}") from exc
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise BenchError(f"creating {VENV} failed: {exc}") from exc
    stamp.write_text(_wanted())
    return quix_python()


if __name__ == "__main__":
    try:
        print(ensure_quix_python())
    except BenchError as error:
        print(f"quix_env: {error}", file=sys.stderr)
        sys.exit(1)
