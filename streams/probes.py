"""/healthz and /readyz of a worker, from its stage runners."""

from __future__ import annotations

from typing import Sequence

from sinks.prometheus import Metrics
from streams.engine import StageRunner


def install_probes(metrics: Metrics, runners: Sequence[StageRunner]) -> None:
    """``/healthz``: no runner failed. ``/readyz``: every runner is ready (running, assigned, caught up —
    ``StageRunner.readiness`` when the engine has it, else merely running)."""

    def health() -> tuple[bool, str]:
        for runner in runners:
            if runner.error is not None:
                return False, f"stage {runner.stage.name} failed: {type(runner.error).__name__}"
        return True, "ok"

    def ready() -> tuple[bool, str]:
        ok, reason = health()
        if not ok:
            return ok, reason
        for runner in runners:
            readiness = getattr(runner, "readiness", None)
            if readiness is not None:
                ok, reason = readiness()
                if not ok:
                    return False, f"stage {runner.stage.name}: {reason}"
            elif not runner.is_alive:
                return False, f"stage {runner.stage.name} is not running"
        return True, f"{len(runners)} stages ready"

    metrics.probes["healthz"] = health
    metrics.probes["readyz"] = ready
