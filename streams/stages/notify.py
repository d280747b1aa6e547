"""The ``notify`` stage: incidents and commands → receivers (``sinks.notify``), once per incident state."""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Sequence

from schemas.records import Command, Incident
from schemas.signing import SignatureError, verify
from sinks.notify import Dispatcher, Notification, NotifyConfig, Route, matches
from streams.edge import RawMessage
from streams.stages.base import Outgoing, Stage, StageEnv

log = logging.getLogger(__name__)


class NotifyStage(Stage):
    """incidents, commands → webhook / Slack / PagerDuty / Alertmanager, routed by labels (``LOOPWISE_RECEIVERS_FILE``).

    An incident pages once when it fires and once when it resolves (PagerDuty
    ``dedup_key`` = incident id), whatever the number of updates; a command is
    told once (by command id). Silenced ones are counted, not sent; a firing
    incident not resolved within its route's ``escalate_after_s`` (wall clock)
    goes to ``escalate_to`` too. Opt-in: add ``notify`` to ``LOOPWISE_STAGES``.
    """

    name = "notify"
    inputs = ("incidents", "commands.remediation", "commands.scaling", "commands.jobs")
    is_gate_deduplicating = False
    is_opt_in = True
    #: What was told (incident id / command id → last action), by input partition: a restart does not page again.
    has_state = True

    def __init__(self, env: StageEnv, config: NotifyConfig | None = None, dispatcher: Dispatcher | None = None) -> None:
        super().__init__(env)
        for name in self.inputs:
            if env.owners.get(name) == self.name:
                del env.owners[name]
        self._owned = set()
        settings = env.settings
        if config is None and settings.receivers_file is not None:
            config = NotifyConfig.load(settings.receivers_file, settings.receiver_secrets)
        self.config = config or NotifyConfig({}, ())
        self._metrics = env.metrics.domain
        self.dispatcher = dispatcher or Dispatcher(self.config, self._on_result)
        self._told: dict[str, str] = {}  # incident / command id -> last action told (or "silenced")
        self._partition_of: dict[str, int] = {}
        self._changed: dict[str, None] = {}
        self._escalations: dict[str, tuple[float, Route, Notification]] = {}
        self._pending: dict[tuple[str, str], list[Notification]] = {}

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> bool | None:
        notification = self._notification(logical, record, message.timestamp_ms)
        if notification is None:
            return None
        self._partition_of[notification.key] = message.partition
        previous = self._told.get(notification.key)
        if previous == notification.action or (previous in (None, "silenced") and notification.action == "resolve"):
            if previous is not None:
                self._metrics.notifications.labels("-", "deduplicated").inc()
            return None  # told already (or never told it fired: its resolution is no news)
        if any(matches(s.match, notification.labels) and s.starts_ms <= notification.ts_ms < s.ends_ms
               for s in self.config.silences):
            self._tell(notification.key, "silenced")
            self._metrics.notifications.labels("-", "silenced").inc()
            return None
        self._tell(notification.key, notification.action)
        route = next((r for r in self.config.routes if matches(r.match, notification.labels)), None)
        if route is None:
            return None
        if notification.action == "resolve":
            self._escalations.pop(notification.key, None)
        elif route.escalate_after_s is not None and route.escalate_to:
            self._escalations[notification.key] = (time.monotonic() + route.escalate_after_s, route, notification)
        for receiver in route.receivers:
            self._pending.setdefault((receiver, notification.labels.get("group_key", notification.key)),
                                     []).append(notification)
        return None

    def _tell(self, key: str, action: str) -> None:
        self._told[key] = action
        self._changed[key] = None

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        changes = [(self._partition_of[k], b"t:" + k.encode(), self._told[k].encode()) for k in self._changed]
        self._changed.clear()
        return changes

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in records:
            if key.startswith(b"t:") and value is not None:
                told = key[2:].decode()
                self._told[told], self._partition_of[told] = value.decode(), partition

    def forget(self, partition: int) -> None:
        for key in [k for k, p in self._partition_of.items() if p == partition]:
            self._told.pop(key, None)
            self._partition_of.pop(key, None)
            self._escalations.pop(key, None)

    def _notification(self, logical: str, record: Any, kafka_ts_ms: int) -> Notification | None:
        if isinstance(record, Incident):
            labels = {"kind": "incident", "severity": str(record.severity), "status": str(record.status),
                      "root_cause": record.root_cause, "group_key": record.group_key}
            action = "resolve" if str(record.status) == "resolved" else "trigger"
            return Notification(record.incident_id, action, labels, record.summary,
                                {"members": list(record.members), "anomaly_count": record.anomaly_count,
                                 "started_ms": record.started_ms}, record.ts_ms, kafka_ts_ms=kafka_ts_ms)
        if isinstance(record, Command):
            try:
                verify(record, self.env.settings.signing_key_bytes)
            except SignatureError:
                return None  # forged: never announced as if loopwise had decided it
            labels = {"kind": "command", "severity": "info", "action": record.action, "target": record.target,
                      "topic": logical, "dry_run": "true" if record.is_dry_run else "false"}
            return Notification(record.command_id, "trigger", labels, f"{record.action} {record.target}: {record.reason}",
                                {"params": dict(record.params), "evidence": record.evidence,
                                 "incident_id": record.incident_id}, record.ts_ms, kafka_ts_ms=kafka_ts_ms)
        return None

    def after_batch(self) -> list[Outgoing]:
        for (receiver, _group), group in self._pending.items():
            self.dispatcher.submit(self.config.receivers[receiver], group)
        self._pending.clear()
        now = time.monotonic()
        for key, (deadline, route, notification) in list(self._escalations.items()):
            if now >= deadline:
                del self._escalations[key]
                for receiver in route.escalate_to:
                    self._metrics.notifications.labels(receiver, "escalated").inc()
                    self.dispatcher.submit(self.config.receivers[receiver], [notification])
        return []

    def is_due_idle_tick(self, now_ms: int) -> bool:
        now = time.monotonic()
        return any(deadline <= now for deadline, _r, _n in self._escalations.values())

    def _on_result(self, receiver: str, outcome: str, group: Sequence[Notification]) -> None:
        self._metrics.notifications.labels(receiver, outcome).inc(len(group))
        if outcome == "sent":
            now_ms = time.time() * 1000
            for n in group:
                if n.kafka_ts_ms:
                    self._metrics.notify_latency.labels(receiver).observe(max(0.0, (now_ms - n.kafka_ts_ms) / 1000))

    def stop(self) -> None:
        self.dispatcher.close()
