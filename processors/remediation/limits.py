"""Rate limits in event time: at most N commands per window per target and per action.

A sliding log (not a token bucket) so the limit reads exactly as it is stated
("no more than 6 per hour"), and its state is a plain list of timestamps that
snapshots to JSON.

>>> limits = RateLimits(per_target=2, per_action=10, window_ms=3_600_000)
>>> [limits.try_acquire("route-a", "open_circuit", t) for t in (0, 1_000, 2_000)]
[True, True, False]
>>> limits.try_acquire("route-a", "open_circuit", 3_600_001)
True
"""

from __future__ import annotations

from collections import deque
from typing import Any


class SlidingLog:
    """Timestamps of the events of the last ``window_ms`` for each key."""

    def __init__(self, limit: int, window_ms: int) -> None:
        self.limit, self.window_ms = limit, window_ms
        self._log: dict[str, deque[int]] = {}

    def count(self, key: str, now_ms: int) -> int:
        """Events of ``key`` in ``(now_ms - window_ms, now_ms]``."""
        log = self._log.get(key)
        if log is None:
            return 0
        while log and log[0] <= now_ms - self.window_ms:
            log.popleft()
        if not log:
            del self._log[key]
            return 0
        return len(log)

    def allows(self, key: str, now_ms: int) -> bool:
        """Whether one more event of ``key`` fits the limit at ``now_ms``."""
        return self.count(key, now_ms) < self.limit

    def record(self, key: str, now_ms: int) -> None:
        """Count one event of ``key`` at ``now_ms``."""
        self._log.setdefault(key, deque()).append(now_ms)

    def snapshot(self) -> dict[str, list[int]]:
        """Plain JSON-able state."""
        return {key: list(log) for key, log in self._log.items() if log}

    def restore(self, state: dict[str, list[int]]) -> None:
        """Load what ``snapshot`` returned."""
        self._log = {key: deque(int(t) for t in log) for key, log in state.items()}


class RateLimits:
    """Per-target and per-action limits; a command passes only when both allow it.

    Args:
        per_target: commands per window on one target (route, workflow).
        per_action: commands per window of one action, all targets together.
        window_ms: the sliding window (event time).
    """

    def __init__(self, per_target: int = 30, per_action: int = 120, window_ms: int = 3_600_000) -> None:
        self.targets = SlidingLog(per_target, window_ms)
        self.actions = SlidingLog(per_action, window_ms)

    def allows(self, target: str, action: str, now_ms: int) -> bool:
        """Whether a command ``action`` on ``target`` fits both limits (records nothing)."""
        return self.targets.allows(target, now_ms) and self.actions.allows(action, now_ms)

    def try_acquire(self, target: str, action: str, now_ms: int) -> bool:
        """Count the command and return ``True`` when both limits allow it, else ``False``."""
        if not self.allows(target, action, now_ms):
            return False
        self.targets.record(target, now_ms)
        self.actions.record(action, now_ms)
        return True

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        return {"targets": self.targets.snapshot(), "actions": self.actions.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        """Load what ``snapshot`` returned."""
        self.targets.restore(state.get("targets", {}))
        self.actions.restore(state.get("actions", {}))
