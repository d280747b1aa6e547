"""Helpers shared by every test: deadline waits and unique names (import them from ``tests.conftest``)."""

from __future__ import annotations

import time
import uuid
from typing import Callable, TypeVar

import pytest
from hypothesis import settings as hypothesis_settings

T = TypeVar("T")

# The machine is shared and noisy: hypothesis' 200 ms per-example deadline fails
# tests for load, not for bugs. Example counts stay at hypothesis' defaults.
hypothesis_settings.register_profile("loopwise", deadline=None)
hypothesis_settings.load_profile("loopwise")


def wait_until(predicate: Callable[[], T], timeout_s: float, interval_s: float = 0.05,
               message: str | Callable[[], str] = "condition not met") -> T:
    """Call ``predicate`` until it returns something truthy; return that value.

    Args:
        predicate: called at once, then every ``interval_s``; exceptions propagate.
        timeout_s: how long to keep trying.
        interval_s: pause between calls.
        message: said on timeout; a callable is evaluated then, so it can show the final state.

    Raises:
        AssertionError: ``predicate`` stayed falsy for ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"after {timeout_s:.2f} s: {text}")
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))


def unique_name(prefix: str = "t") -> str:
    """``prefix`` plus 8 random hex digits: topic prefixes, group ids, app ids that never collide."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique_name`` as a fixture, for tests that prefer injection to imports."""
    return unique_name
