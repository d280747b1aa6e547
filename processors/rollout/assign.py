"""Which workflow version serves a request: the published split, bucketed by a keyed hash (sticky per unit).

A split is the newest ``RolloutStep`` of a workflow on ``lw.rollouts.splits``:
``version`` (the canary) takes ``traffic_share`` of the units, the rest stay on
``baseline_version``. A unit is the request, or its user, session or a context
attribute when the rollout plan says ``sticky_by``. The bucket of a unit is a
blake2b hash of ``workflow|unit`` in [0, 1): the canary holds the units below
the share, so raising the share only moves units *to* the canary and a user
never flips back and forth between versions while a rollout progresses.
"""

from __future__ import annotations

import hashlib

from processors.experiments import unit_of
from schemas.records import RequestContext, RolloutStep


def bucket(workflow: str, unit: str) -> float:
    """The unit's stable position in [0, 1) for ``workflow``'s rollouts.

    >>> bucket("wf", "u1") == bucket("wf", "u1"), 0.0 <= bucket("wf", "u1") < 1.0
    (True, True)
    """
    digest = hashlib.blake2b(f"{workflow}|{unit}".encode(), digest_size=8, person=b"lw-rollout").digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_version(split: RolloutStep | None, context: RequestContext, request_id: str,
                   sticky_by: str | None = None, default: str | None = None) -> str | None:
    """The version ``request_id`` runs under; ``default`` when no split is published for its workflow.

    >>> from schemas.records import RolloutVerdict
    >>> split = RolloutStep("wf", "v2", 0, 0, 0.25, RolloutVerdict.CONTINUE, "", "{}", baseline_version="v1")
    >>> ctx = RequestContext("t", "chat", user_id="u9")
    >>> shares = [assign_version(split, ctx, f"r{i}") for i in range(2000)]
    >>> 0.2 < shares.count("v2") / 2000 < 0.3
    True
    >>> len({assign_version(split, ctx, f"r{i}", sticky_by="user") for i in range(50)})  # one user, one version
    1
    >>> assign_version(None, ctx, "r1", default="v1")
    'v1'
    """
    if split is None:
        return default
    baseline = split.baseline_version or default or split.version
    if split.traffic_share <= 0.0:
        return baseline
    if split.traffic_share >= 1.0:
        return split.version
    unit = unit_of(context, request_id, sticky_by)
    return split.version if bucket(split.workflow, unit) < split.traffic_share else baseline
