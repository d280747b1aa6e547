"""Idempotency keys of remediation commands: stable across restarts, replays and processes.

A key is a keyed blake2b digest of (episode, action, target, step), where the
episode is the incident id (or a breaker episode named by its route and
event-time start). Nothing in it depends on the process, the wall clock or the
order of dict iteration, so a replay of the same inputs gives the same keys and
a consumer that remembers keys applies each command once.

>>> idempotency_key("inc-1", "open_circuit", "claude-mid", 0)
'rm-39d17466a696696bd07c8ecc0a9c4ebb'
"""

from __future__ import annotations

import hashlib

_PERSON = b"lw-remediation"  # domain separation: the same fields hash differently elsewhere


def idempotency_key(episode: str, action: str, target: str, step: int | str) -> str:
    """The command id of ``action`` on ``target`` at ``step`` of ``episode``.

    Args:
        episode: incident id, or a breaker episode id (``breaker:<route>:<start ts_ms>``).
        action: the command's action (``open_circuit``, ``rollback``, …).
        target: the command's target (route, workflow or ``*``).
        step: the escalation step or transition count within the episode.

    Returns:
        ``rm-`` and 32 hex digits.
    """
    payload = "\x1f".join((episode, action, target, str(step))).encode()
    return "rm-" + hashlib.blake2b(payload, digest_size=16, person=_PERSON).hexdigest()


def episode_id(kind: str, subject: str, start_ms: int) -> str:
    """The id of an episode that has no incident (yet): ``kind:subject:start``.

    >>> episode_id("breaker", "claude-mid", 300_000)
    'breaker:claude-mid:300000'
    """
    return f"{kind}:{subject}:{start_ms}"
