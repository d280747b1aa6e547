"""Online routing that learns from outcomes: estimates with forgetting, safe exploration, constraints, budget pacing.

``Router`` (in ``policy``) is the entry point, one per worker; the modules
beside it hold its parts: ``estimates`` (event-time decayed statistics and
the reward estimate), ``bandit`` (Thompson/UCB shares, safe floors and caps),
``constraints`` (privacy, capability, circuits, planned capacity), ``budget``
(spend pacing), ``segments`` (per-workflow and per-segment state) and
``state`` (the JSON-able snapshot).
"""

from processors.routing.bandit import Exploration
from processors.routing.policy import MODEL, Router, RouterConfig

__all__ = ["MODEL", "Exploration", "Router", "RouterConfig"]
