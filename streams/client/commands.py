"""Consume ``lw.commands.remediation`` safely: verify the signature, drop expired, replayed and dry-run commands.

``CommandGate`` is the pure part (no Kafka): it judges one decoded ``Command``
and counts every verdict. ``CommandClient`` wraps a confluent-kafka consumer
around it and hands only accepted commands to the application's callback.
Refused commands are counted (``stats``) and logged with their reason and id,
never with the key, and never applied.

Usage::

    from infra.settings import Settings
    from streams.client import CommandClient

    settings = Settings.from_env()
    def apply(command):                       # open a circuit, shed load, roll back …
        gateway.apply(command.action, command.target, dict(command.params))

    with CommandClient(settings, settings.topic("commands.remediation"), settings.signing_key_bytes,
                       apply, group_id="gateway-eu-1") as client:
        client.run(stop=shutdown_event.is_set)   # or call client.poll() from your own loop
    print(client.stats)                          # {'accepted': 12, 'forged': 0, 'expired': 1, ...}
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from enum import StrEnum
from typing import Any, Callable, Mapping

from infra.settings import Settings
from schemas.validation import SchemaError
from schemas.records import Command
from schemas.serde import json_codec
from schemas.signing import SignatureError, verify

log = logging.getLogger(__name__)

Clock = Callable[[], int]


class Verdict(StrEnum):
    """What the gate decided about one command (also the keys of ``stats``)."""

    ACCEPTED = "accepted"
    DRY_RUN = "dry_run"
    UNSIGNED = "unsigned"
    FORGED = "forged"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"
    UNREADABLE = "unreadable"


def wall_clock_ms() -> int:
    """Milliseconds since the epoch: the application's clock, the one commands' TTLs are judged by."""
    return int(time.time() * 1000)


class CommandGate:
    """Judge commands: signed by ``key``, not expired, not seen before; dry runs set apart.

    Checks run in that order, and only accepted commands are remembered, so a
    forged copy carrying a genuine id cannot block the genuine command, and a
    dry run never blocks the live command of the same idempotency key.

    Args:
        key: the HMAC key shared with loopwise (``LOOPWISE_SIGNING_KEY``).
        clock: epoch milliseconds now (injectable for tests).
        max_remembered: command ids kept for duplicate detection (oldest forgotten first).

    >>> from schemas.signing import sign
    >>> gate = CommandGate(b"k" * 32, clock=lambda: 1_000)
    >>> cmd = sign(Command("c1", 0, "route-a", "open_circuit", "", "{}", 60_000, "lw", ""), b"k" * 32)
    >>> [gate.check(cmd).value, gate.check(cmd).value]
    ['accepted', 'duplicate']
    """

    def __init__(self, key: bytes, clock: Clock = wall_clock_ms, max_remembered: int = 100_000) -> None:
        if not key:
            raise ValueError("a command gate needs the signing key")
        self._key, self._clock, self._max = key, clock, max_remembered
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.stats: dict[str, int] = {v.value: 0 for v in Verdict}

    def check(self, command: Command) -> Verdict:
        """The verdict on ``command``; counted in ``stats`` and remembered when accepted."""
        verdict = self._judge(command)
        self.stats[verdict.value] += 1
        if verdict is Verdict.ACCEPTED:
            self._seen[command.command_id] = None
            if len(self._seen) > self._max:
                self._seen.popitem(last=False)
        return verdict

    def _judge(self, command: Command) -> Verdict:
        try:
            verify(command, self._key)
        except SignatureError as exc:
            return Verdict(exc.reason)
        if command.expires_ts_ms < self._clock():
            return Verdict.EXPIRED
        if command.command_id in self._seen:
            return Verdict.DUPLICATE
        if command.is_dry_run:
            return Verdict.DRY_RUN
        return Verdict.ACCEPTED

    def count_unreadable(self) -> None:
        """Count a message that did not decode as a ``Command``."""
        self.stats[Verdict.UNREADABLE.value] += 1


class CommandClient:
    """A confluent-kafka consumer of signed commands that applies each valid one once.

    Args:
        settings_or_config: loopwise ``Settings``, or librdkafka settings (at least ``bootstrap.servers``).
        topic: full topic name (``settings.topic("commands.remediation")``).
        key: the HMAC signing key.
        on_command: called with each accepted command; its offset is stored only after it returns.
        group_id: the consumer group (one per application instance set that must apply commands once).
        on_dry_run: called with dry-run commands (to log or display them); never applied.
        clock: epoch milliseconds now; ``wall_clock_ms`` by default.
        max_remembered: ids kept for duplicate detection.
        consumer_config: extra librdkafka settings, applied last.
    """

    def __init__(self, settings_or_config: Settings | Mapping[str, Any], topic: str, key: bytes,
                 on_command: Callable[[Command], None], *, group_id: str,
                 on_dry_run: Callable[[Command], None] | None = None, clock: Clock = wall_clock_ms,
                 max_remembered: int = 100_000, consumer_config: Mapping[str, Any] | None = None) -> None:
        from confluent_kafka import Consumer  # imported here: importing the module needs no Kafka client

        self.topic, self.on_command, self.on_dry_run = topic, on_command, on_dry_run
        self.gate = CommandGate(key, clock, max_remembered)
        self._codec = json_codec(Command)
        config = self._base_config(settings_or_config)
        config.update({"group.id": group_id, "enable.auto.offset.store": False})
        config.update(consumer_config or {})
        self._consumer = Consumer(config)
        self._consumer.subscribe([topic])

    @staticmethod
    def _base_config(source: Settings | Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(source, Settings):
            return {"auto.offset.reset": "earliest", **dict(source)}
        config: dict[str, Any] = {**source.kafka_config(), "auto.offset.reset": "earliest",
                                  "session.timeout.ms": int(source.session_timeout_s * 1000)}
        if source.effective_fetch_max_wait_ms is not None:
            config["fetch.wait.max.ms"] = source.effective_fetch_max_wait_ms
        return config

    @property
    def stats(self) -> dict[str, int]:
        """Commands per verdict so far (``accepted``, ``forged``, ``expired``, ``duplicate`` …)."""
        return dict(self.gate.stats)

    def poll(self, timeout_s: float = 1.0, max_messages: int = 500) -> int:
        """Consume what arrives within ``timeout_s``; return how many commands were applied."""
        applied = 0
        for message in self._consumer.consume(num_messages=max_messages, timeout=max(0.0, timeout_s)):
            if message.error() is not None:
                log.warning("command consumer error on %s: %s", self.topic, message.error())
                continue
            applied += self._handle(message)
            self._consumer.store_offsets(message=message)
        return applied

    def _handle(self, message: Any) -> int:
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        try:
            command = self._codec.decode(message.value())
        except SchemaError as exc:
            self.gate.count_unreadable()
            log.warning("refused unreadable command at %s: %s", where, exc)
            return 0
        verdict = self.gate.check(command)
        if verdict is Verdict.ACCEPTED:
            self.on_command(command)
            return 1
        if verdict is Verdict.DRY_RUN:
            if self.on_dry_run is not None:
                self.on_dry_run(command)
            return 0
        log.warning("refused command %s (%s on %s) at %s: %s", command.command_id, command.action,
                    command.target, where, verdict.value)
        return 0

    def run(self, stop: Callable[[], bool], timeout_s: float = 0.5) -> None:
        """Poll until ``stop()`` is true."""
        while not stop():
            self.poll(timeout_s)

    def close(self) -> None:
        """Commit stored offsets and leave the group."""
        self._consumer.close()

    def __enter__(self) -> "CommandClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
