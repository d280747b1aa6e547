"""Single-use commands: ``CommandGuard`` checks signature, expiry and replay, and remembers what it accepted.

Every consumer of commands (the ``learn`` stage, ``CommandClient``, the simulator)
judges a command the same way, in this order: signed by our key (a forged copy
carrying a genuine id must not block the genuine command, so only accepted
commands are remembered), not expired at ``now_ms`` (the caller's clock: event
time in a stage, the wall clock in an application), and not seen before. An id
is remembered until its command expires: after that the expiry check alone
refuses it, so memory is bounded by the commands issued within one TTL. The
memory is plain JSON (``snapshot``/``restore``) so it can be made durable.

Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

import heapq
from enum import StrEnum
from typing import Any

from schemas.records import Command
from schemas.signing import SignatureError, verify

SNAPSHOT_FORMAT = 1


class GuardVerdict(StrEnum):
    """What the guard decided about one command."""

    ACCEPTED = "accepted"
    UNSIGNED = "unsigned"
    FORGED = "forged"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"


class CommandGuard:
    """Accept each genuine, unexpired command once.

    Args:
        key: the HMAC key commands are signed with.
        max_remembered: a safety cap on remembered ids (the soonest to expire go first).

    >>> from schemas.signing import sign
    >>> guard = CommandGuard(b"k" * 32)
    >>> cmd = sign(Command("c1", 0, "route-a", "open_circuit", "", "{}", 60_000, "lw", ""), b"k" * 32)
    >>> [guard.check(cmd, now_ms=1_000).value, guard.check(cmd, now_ms=2_000).value]
    ['accepted', 'duplicate']
    >>> guard.check(sign(Command("c2", 0, "route-a", "open_circuit", "", "{}", 60_000, "lw", ""), b"k" * 32),
    ...             now_ms=60_001).value
    'expired'
    >>> CommandGuard.restore(b"k" * 32, guard.snapshot()).check(cmd, now_ms=3_000).value
    'duplicate'
    """

    def __init__(self, key: bytes, *, max_remembered: int = 1_000_000) -> None:
        if not key:
            raise ValueError("a command guard needs the signing key")
        self._key, self._max = key, max_remembered
        self._expiry: dict[str, int] = {}
        self._by_expiry: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def judge(self, command: Command, now_ms: int) -> GuardVerdict:
        """The verdict on ``command`` at ``now_ms``, remembering nothing."""
        try:
            verify(command, self._key)
        except SignatureError as exc:
            return GuardVerdict(exc.reason)
        if command.expires_ts_ms < now_ms:
            return GuardVerdict.EXPIRED
        if command.command_id in self._expiry:
            return GuardVerdict.DUPLICATE
        return GuardVerdict.ACCEPTED

    def remember(self, command: Command, now_ms: int) -> None:
        """Remember ``command`` as used (until it expires) and forget ids already expired at ``now_ms``."""
        self._expiry[command.command_id] = command.expires_ts_ms
        heapq.heappush(self._by_expiry, (command.expires_ts_ms, command.command_id))
        self.forget_expired(now_ms)
        while len(self._expiry) > self._max:
            self._pop()

    def forget(self, command_id: str) -> None:
        """Forget one id (its command was not applied after all, e.g. the application failed)."""
        self._expiry.pop(command_id, None)

    def check(self, command: Command, now_ms: int) -> GuardVerdict:
        """``judge``, then ``remember`` if accepted."""
        verdict = self.judge(command, now_ms)
        if verdict is GuardVerdict.ACCEPTED:
            self.remember(command, now_ms)
        return verdict

    def forget_expired(self, now_ms: int) -> None:
        """Drop ids whose commands expired before ``now_ms`` (the expiry check refuses them anyway)."""
        while self._by_expiry and self._by_expiry[0][0] < now_ms:
            self._pop()

    def _pop(self) -> None:
        expires_ms, command_id = heapq.heappop(self._by_expiry)
        if self._expiry.get(command_id) == expires_ms:
            del self._expiry[command_id]

    def snapshot(self) -> dict[str, Any]:
        """The remembered ids and their expiries, as plain JSON data."""
        return {"format": SNAPSHOT_FORMAT, "expiry": dict(self._expiry)}

    @classmethod
    def restore(cls, key: bytes, state: dict[str, Any] | None, *, max_remembered: int = 1_000_000) -> "CommandGuard":
        """A guard remembering what ``state`` (from ``snapshot``) did; an empty one for None."""
        guard = cls(key, max_remembered=max_remembered)
        if state:
            if state.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(f"unknown command guard snapshot format {state.get('format')!r}")
            for command_id, expires_ms in state["expiry"].items():
                guard._expiry[str(command_id)] = int(expires_ms)
                guard._by_expiry.append((int(expires_ms), str(command_id)))
            heapq.heapify(guard._by_expiry)
        return guard
