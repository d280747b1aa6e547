"""The application-side routing helper: newest policy wins, picks follow the probabilities, deterministically."""

from __future__ import annotations

import doctest
from collections import Counter

import streams.client.routing as routing_module
from schemas.records import PrivacyLevel, RouteProbability, RoutingPolicy
from streams.client.routing import PolicyBook
from tests.factories import make_context, make_workflow


def policy(version: int, shares: dict[str, float], segment: str = "task=summarize|privacy_level=public") -> RoutingPolicy:
    routes = tuple(RouteProbability(name, p, 0.5, 0.1, 100) for name, p in shares.items())
    return RoutingPolicy("support-bot", segment, 1_700_000_000_000 + version, version, "m", routes)


def test_newest_version_wins_and_older_ones_are_ignored() -> None:
    book = PolicyBook()
    assert book.update(policy(2, {"a": 1.0}))
    assert not book.update(policy(1, {"b": 1.0}))
    assert book.choose("support-bot", make_context(), "r1") == "a"


def test_picks_follow_the_probabilities_and_repeat_for_a_request() -> None:
    book = PolicyBook()
    book.update(policy(1, {"a": 0.7, "b": 0.3}))
    picks = Counter(book.choose("support-bot", make_context(), f"r{i}") for i in range(10_000))
    assert abs(picks["a"] / 10_000 - 0.7) < 0.02
    assert all(book.choose("support-bot", make_context(), "same") == book.choose("support-bot", make_context(), "same")
               for _ in range(5))


def test_segments_follow_the_workflow_context_keys_and_default_without_a_policy() -> None:
    book = PolicyBook()
    book.update_workflow(make_workflow(context_keys=("privacy_level",)))
    book.update(policy(1, {"local-small": 1.0}, segment="privacy_level=restricted"))
    restricted = make_context(privacy_level=PrivacyLevel.RESTRICTED)
    assert book.choose("support-bot", restricted, "r1", default="x") == "local-small"
    assert book.choose("support-bot", make_context(), "r1", default="x") == "x"


def test_docstring_example() -> None:
    assert doctest.testmod(routing_module).failed == 0
