"""The router's snapshot: every learned statistic and both random generators as plain JSON-able data.

A worker that restarts from a snapshot makes exactly the decisions it would
have made had it never stopped (``tests/unit/test_routing_state.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from processors.routing.constraints import Circuits, LoadMeter
from processors.routing.segments import SegmentState, WorkflowState

if TYPE_CHECKING:
    from processors.routing.policy import Router

#: Bumped when the snapshot's layout changes.
SNAPSHOT_FORMAT = 1


def snapshot_router(router: "Router", config: dict[str, Any]) -> dict[str, Any]:
    """``router``'s state; ``config`` is its ``RouterConfig`` as a dict."""
    version, internal, gauss = router._rng.getstate()
    return {
        "format": SNAPSHOT_FORMAT, "config": {**config, "exploration": str(config["exploration"])},
        "seed": router.seed, "version": router.version,
        "rng": [version, list(internal), gauss], "np_rng": router._np_rng.bit_generator.state,
        # The seed rebuilds the Monte Carlo draws; only draws widened for many routes are stored.
        "normals": router._normals.tolist() if router._normals.shape[1] > 16 else None,
        "workflows": {k: v.to_dict() for k, v in router.workflows.items()},
        "segments": [v.to_dict() for v in router.segments.values()],
        "circuits": router.circuits.to_dict(), "load": router.load.to_dict(),
        "seen": dict(router.seen), "evicted_until_ms": router.evicted_until_ms,
        "shift_log": [list(x) for x in router.shift_log],
    }


def restore_router(router: "Router", state: dict[str, Any]) -> None:
    """Load ``state`` (from ``snapshot_router``) into a freshly built ``router``."""
    if state.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"unknown router snapshot format {state.get('format')!r}")
    version, internal, gauss = state["rng"]
    router._rng.setstate((version, tuple(internal), gauss))
    router._np_rng.bit_generator.state = state["np_rng"]
    if state["normals"] is not None:
        router._normals = np.asarray(state["normals"], dtype=np.float64)
    router.version = int(state["version"])
    router.workflows = {k: WorkflowState.from_dict(v) for k, v in state["workflows"].items()}
    segments = (SegmentState.from_dict(v) for v in state["segments"])
    router.segments = {(s.workflow, s.segment): s for s in segments}
    router.circuits = Circuits.from_dict(state["circuits"])
    router.load = LoadMeter.from_dict(router.load.half_life_ms, state["load"])
    router.seen = {k: int(v) for k, v in state["seen"].items()}
    router.evicted_until_ms = int(state["evicted_until_ms"])
    router.shift_log = [(int(t), str(w), str(r), str(g), float(x), int(n)) for t, w, r, g, x, n in state.get("shift_log", [])]
