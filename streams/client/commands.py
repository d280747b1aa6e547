"""Consume ``lw.commands.remediation`` safely: verify the signature, drop expired, replayed and dry-run commands.

Commands marked ``requires_approval`` (risky actions, ``LOOPWISE_RISKY_ACTIONS``) are held
as pending and applied only once a valid signed approval of that exact command arrives on
``lw.approvals`` before it expires; a rejection or the expiry drops them. The client reads
every partition of ``lw.approvals`` itself, whatever its group, so any instance holding the
command sees the decision. A client restarted while a command waits drops it (never applies it).

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
import os
import re
import time
from collections import OrderedDict
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Mapping

import orjson

from infra.settings import Settings
from processors.commands import CommandGuard, GuardVerdict
from processors.remediation.approval import ApprovalBook, ApprovalState
from schemas.validation import SchemaError
from schemas.records import Approval, Command
from schemas.serde import json_codec

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
    PENDING = "pending"
    REJECTED = "rejected"


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
        #: Ids of accepted commands, each until it expires (``processors.commands``).
        self.guard = CommandGuard(key, max_remembered=max_remembered)
        self._ledger: Path | None = None
        self.stats: dict[str, int] = {v.value: 0 for v in Verdict}

    def make_durable(self, ledger: Path) -> None:
        """Keep the accepted ids in ``ledger`` (a JSON file, rewritten atomically before each command
        is applied), so a restarted client never applies a replayed command."""
        self._ledger = ledger
        if ledger.exists():
            self.guard = CommandGuard.restore(self._key, orjson.loads(ledger.read_bytes()),
                                              max_remembered=self._max)
            log.info("command ledger %s: %d command ids remembered", ledger, len(self.guard))

    def _save(self) -> None:
        if self._ledger is None:
            return
        self._ledger.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._ledger.with_name(self._ledger.name + ".tmp")
        with open(tmp, "wb") as file:
            file.write(orjson.dumps(self.guard.snapshot()))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self._ledger)

    def check(self, command: Command, *, is_approved: bool = False) -> Verdict:
        """The verdict on ``command``; counted in ``stats`` and remembered when accepted.

        A command that ``requires_approval`` is ``pending`` (not remembered) until it is
        checked again with ``is_approved=True``, once a valid approval of it has arrived.
        """
        verdict = self._judge(command)
        if verdict is Verdict.ACCEPTED and command.requires_approval and not is_approved:
            verdict = Verdict.PENDING
        self.stats[verdict.value] += 1
        if verdict is Verdict.ACCEPTED:  # remembered (durably) before the caller applies it: at most once
            self.guard.remember(command, self._clock())
            self._save()
        return verdict

    def _judge(self, command: Command) -> Verdict:
        verdict = self.guard.judge(command, self._clock())
        if verdict is not GuardVerdict.ACCEPTED:
            return Verdict(verdict.value)
        if command.is_dry_run:
            return Verdict.DRY_RUN
        return Verdict.ACCEPTED

    def count_unreadable(self) -> None:
        """Count a message that did not decode as a ``Command``."""
        self.stats[Verdict.UNREADABLE.value] += 1


def command_ledger(settings: Settings, group_id: str, topic: str) -> Path:
    """Where a client keeps the ids of the commands it applied: ``<data dir>/commands/<group>@<topic>.<worker>.json``."""
    safe = lambda text: re.sub(r"[^A-Za-z0-9._-]", "_", text)  # noqa: E731
    return settings.data_dir / "commands" / f"{safe(group_id)}@{safe(topic)}.{safe(settings.worker_id)}.json"


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
        approvals_topic: where approvals arrive (default with ``Settings``: ``settings.topic("approvals")``);
            without one, commands needing approval are never applied.
        approval_key: the approvals' HMAC key (default with ``Settings``: ``settings.approval_key_bytes``).
    """

    def __init__(self, settings_or_config: Settings | Mapping[str, Any], topic: str, key: bytes,
                 on_command: Callable[[Command], None], *, group_id: str,
                 on_dry_run: Callable[[Command], None] | None = None, clock: Clock = wall_clock_ms,
                 max_remembered: int = 100_000, consumer_config: Mapping[str, Any] | None = None,
                 approvals_topic: str | None = None, approval_key: bytes | None = None) -> None:
        from confluent_kafka import Consumer  # imported here: importing the module needs no Kafka client

        self.topic, self.on_command, self.on_dry_run = topic, on_command, on_dry_run
        self.gate = CommandGate(key, clock, max_remembered)
        if isinstance(settings_or_config, Settings):  # durable: a restarted client never applies a replayed command
            self.gate.make_durable(command_ledger(settings_or_config, group_id, topic))
        self._codec = json_codec(Command)
        config = self._base_config(settings_or_config)
        config.update({"group.id": group_id, "enable.auto.offset.store": False})
        config.update(consumer_config or {})
        self._consumer = Consumer(config)
        self._consumer.subscribe([topic])
        self._init_approvals(settings_or_config, config, approvals_topic, approval_key, key)

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

    def _init_approvals(self, source: Settings | Mapping[str, Any], config: Mapping[str, Any],
                        topic: str | None, key: bytes | None, command_key: bytes) -> None:
        from confluent_kafka import Consumer

        if isinstance(source, Settings):
            topic = topic or source.topic("approvals")
            key = key or source.approval_key_bytes
        key = key or command_key
        self.approvals_topic, self.book = topic, ApprovalBook(key)
        self.pending: OrderedDict[str, Command] = OrderedDict()
        self._approvals: Any = None
        if topic is not None:  # no group: this client reads every partition, from the start (compacted)
            approvals_config = {k: v for k, v in config.items() if k != "enable.auto.offset.store"}
            approvals_config.update({"group.id": f"{config['group.id']}.approvals", "enable.auto.commit": False})
            self._approvals = Consumer(approvals_config)
            self._approvals_assigned = False
            self._approval_codec = json_codec(Approval)

    def _poll_approvals(self) -> None:
        if self._approvals is None:
            return
        if not self._approvals_assigned:
            from confluent_kafka import OFFSET_BEGINNING, TopicPartition

            meta = self._approvals.list_topics(self.approvals_topic, timeout=5).topics.get(self.approvals_topic)
            if meta is None or meta.error is not None or not meta.partitions:
                return  # not created yet: try again at the next poll
            self._approvals.assign([TopicPartition(self.approvals_topic, p, OFFSET_BEGINNING) for p in meta.partitions])
            self._approvals_assigned = True
        while True:
            batch = self._approvals.consume(num_messages=500, timeout=0)
            for message in batch:
                if message.error() is None:
                    try:
                        self.book.observe_approval(self._approval_codec.decode(message.value()))
                    except SchemaError as exc:
                        log.warning("unreadable approval at %s[%d]@%d: %s", message.topic(), message.partition(),
                                    message.offset(), exc)
            if len(batch) < 500:
                return

    def _release(self) -> int:
        """Apply pending commands now approved; drop rejected and expired ones."""
        applied, now_ms = 0, self.gate._clock()
        for command_id in list(self.pending):
            command = self.pending[command_id]
            state = self.book.state(command_id, now_ms)
            if state is ApprovalState.PENDING:
                continue
            del self.pending[command_id]
            if state is ApprovalState.APPROVED:
                if self.gate.check(command, is_approved=True) is Verdict.ACCEPTED:
                    decided = self.book.decision(command_id)
                    log.info("applying %s (%s on %s), approved by %s", command_id, command.action, command.target,
                             decided.operator if decided else "?")
                    self.on_command(command)
                    applied += 1
                continue
            verdict = Verdict.REJECTED if state is ApprovalState.REJECTED else Verdict.EXPIRED
            self.gate.stats[verdict.value] += 1
            log.warning("dropped pending command %s (%s on %s): %s", command_id, command.action, command.target,
                        verdict.value)
        return applied

    def poll(self, timeout_s: float = 1.0, max_messages: int = 500) -> int:
        """Consume what arrives within ``timeout_s``; return how many commands were applied."""
        self._poll_approvals()
        applied = 0
        for message in self._consumer.consume(num_messages=max_messages, timeout=max(0.0, timeout_s)):
            if message.error() is not None:
                log.warning("command consumer error on %s: %s", self.topic, message.error())
                continue
            applied += self._handle(message)
            self._consumer.store_offsets(message=message)
        if self.pending:
            self._poll_approvals()
            applied += self._release()
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
        if verdict is Verdict.PENDING:
            self.pending[command.command_id] = command
            while len(self.pending) > 10_000:
                self.pending.popitem(last=False)
            self.book.observe_command(command)
            log.info("command %s (%s on %s) waits for approval until %d", command.command_id, command.action,
                     command.target, command.expires_ts_ms)
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
        if self._approvals is not None:
            self._approvals.close()

    def __enter__(self) -> "CommandClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
