"""Notifications: receivers (webhook, Slack, PagerDuty Events v2, Alertmanager v2) configured in a YAML file,
routed by labels, deduplicated, grouped, silenced, escalated, and sent by a background dispatcher with retries.

The receivers file names environment variables for every secret (``url_env``,
``routing_key_env``); ``Settings`` reads them (``LOOPWISE_RECEIVER_*``), the file
never holds one. Sending never blocks the stage: notifications go to a bounded
queue; a sender thread posts them with bounded, exponentially backed-off retries.

Example::

    receivers:
      - {name: oncall, type: pagerduty, url: https://events.pagerduty.com/v2/enqueue,
         routing_key_env: LOOPWISE_RECEIVER_PD_KEY}
      - {name: chat, type: slack, url_env: LOOPWISE_RECEIVER_SLACK_URL}
    routes:
      - {match: {kind: [incident], severity: [critical]}, receivers: [oncall, chat], escalate_after_s: 600,
         escalate_to: [oncall]}
      - {match: {kind: [command]}, receivers: [chat]}
    silences:
      - {match: {root_cause: [gpt-large]}, starts: "2026-12-05T01:00:00Z", ends: "2026-12-05T03:00:00Z"}
    retry: {attempts: 5, backoff_s: 0.5, max_backoff_s: 30}
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import orjson
import yaml

log = logging.getLogger(__name__)

KINDS = ("webhook", "slack", "pagerduty", "alertmanager")
_PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


class NotifyConfigError(ValueError):
    """The receivers file is invalid (names the problem and where)."""


@dataclass(frozen=True)
class Receiver:
    name: str
    kind: str
    url: str
    routing_key: str = ""


@dataclass(frozen=True)
class Route:
    match: Mapping[str, tuple[str, ...]]
    receivers: tuple[str, ...]
    escalate_after_s: float | None = None
    escalate_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Silence:
    match: Mapping[str, tuple[str, ...]]
    starts_ms: int
    ends_ms: int


@dataclass(frozen=True)
class NotifyConfig:
    receivers: Mapping[str, Receiver]
    routes: tuple[Route, ...]
    silences: tuple[Silence, ...] = ()
    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    queue_size: int = 10_000

    @classmethod
    def load(cls, path: Path, secrets: Mapping[str, Any]) -> "NotifyConfig":
        """Parse the receivers file; ``secrets``: env values by name (``Secret`` or str)."""
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise NotifyConfigError(f"{path}: {exc}") from exc
        return cls.parse(raw, secrets, where=str(path))

    @classmethod
    def parse(cls, raw: Mapping[str, Any], secrets: Mapping[str, Any], where: str = "receivers") -> "NotifyConfig":
        def secret(entry: Mapping[str, Any], key: str) -> str:
            if f"{key}_env" in entry:
                name = entry[f"{key}_env"]
                value = secrets.get(name)
                if not value:
                    raise NotifyConfigError(f"{where}: receiver {entry.get('name')!r}: {key}_env {name} is not set")
                return value.reveal() if hasattr(value, "reveal") else str(value)
            return str(entry.get(key, ""))

        receivers: dict[str, Receiver] = {}
        for entry in raw.get("receivers", []):
            kind = entry.get("type")
            if kind not in KINDS:
                raise NotifyConfigError(f"{where}: receiver {entry.get('name')!r}: type must be one of {KINDS}")
            receivers[entry["name"]] = Receiver(entry["name"], kind, secret(entry, "url"),
                                                secret(entry, "routing_key") if kind == "pagerduty" else "")
            if not receivers[entry["name"]].url:
                raise NotifyConfigError(f"{where}: receiver {entry['name']!r} needs url or url_env")
        routes = tuple(Route(_match(r.get("match", {})), tuple(r["receivers"]), r.get("escalate_after_s"),
                             tuple(r.get("escalate_to", ()))) for r in raw.get("routes", []))
        for route in routes:
            for name in (*route.receivers, *route.escalate_to):
                if name not in receivers:
                    raise NotifyConfigError(f"{where}: a route names unknown receiver {name!r}")
        silences = tuple(Silence(_match(s.get("match", {})), _ms(s["starts"]), _ms(s["ends"]))
                         for s in raw.get("silences", []))
        retry = raw.get("retry", {})
        return cls(receivers, routes, silences, int(retry.get("attempts", 5)), float(retry.get("backoff_s", 0.5)),
                   float(retry.get("max_backoff_s", 30.0)))


def _match(raw: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    return {k: tuple(str(x) for x in (v if isinstance(v, list) else [v])) for k, v in raw.items()}


def _ms(value: Any) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)


def matches(match: Mapping[str, tuple[str, ...]], labels: Mapping[str, str]) -> bool:
    """Every matcher's label is one of its values (an empty matcher matches everything).

    >>> matches({"severity": ("critical",)}, {"severity": "critical", "kind": "incident"})
    True
    """
    return all(labels.get(key) in values for key, values in match.items())


@dataclass(frozen=True)
class Notification:
    """One thing to tell a receiver: an incident (trigger / resolve) or a command."""

    key: str                      # the incident id or command id: PagerDuty's dedup_key
    action: str                   # trigger | resolve
    labels: Mapping[str, str]
    summary: str
    details: Mapping[str, Any]
    ts_ms: int
    enqueued_s: float = field(default_factory=time.monotonic)
    kafka_ts_ms: int = 0


def payload(receiver: Receiver, group: Sequence[Notification]) -> tuple[str, bytes]:
    """(URL, JSON body) of one post to ``receiver`` for a group of notifications (PagerDuty: one each)."""
    first = group[0]
    if receiver.kind == "pagerduty":
        body: Any = {
            "routing_key": receiver.routing_key, "event_action": first.action, "dedup_key": first.key,
            "payload": {"summary": first.summary[:1024], "source": first.labels.get("root_cause", "loopwise"),
                        "severity": _PD_SEVERITY.get(first.labels.get("severity", ""), "error"),
                        "timestamp": _iso(first.ts_ms), "component": first.labels.get("kind", ""),
                        "custom_details": dict(first.details)},
        }
        return receiver.url, orjson.dumps(body)
    if receiver.kind == "alertmanager":
        alerts = [{"labels": {"alertname": f"Loopwise{n.labels.get('kind', 'event').title()}", "key": n.key,
                              **n.labels},
                   "annotations": {"summary": n.summary},
                   "startsAt": _iso(n.ts_ms), **({"endsAt": _iso(n.ts_ms)} if n.action == "resolve" else {})}
                  for n in group]
        return receiver.url.rstrip("/") + "/api/v2/alerts", orjson.dumps(alerts)
    if receiver.kind == "slack":
        lines = [f"{'✅ resolved' if n.action == 'resolve' else '🚨 ' + n.labels.get('severity', '').upper()} "
                 f"{n.labels.get('kind', '')} `{n.key}`: {n.summary}" for n in group]
        return receiver.url, orjson.dumps({"text": "\n".join(lines)})
    return receiver.url, orjson.dumps({
        "receiver": receiver.name, "group_key": first.labels.get("group_key", first.key),
        "notifications": [{"key": n.key, "action": n.action, "labels": dict(n.labels), "summary": n.summary,
                           "ts_ms": n.ts_ms, "details": dict(n.details)} for n in group],
    })


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


Post = Callable[[str, bytes], int]


def http_post(url: str, body: bytes, timeout_s: float = 5.0) -> int:
    """POST JSON; returns the HTTP status (0 when unreachable)."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


class Dispatcher:
    """A bounded queue and one sender thread: posts with retries and exponential backoff; never blocks ``submit``.

    ``on_result(receiver, outcome, notifications)`` reports sent / retried / failed / dropped.
    """

    def __init__(self, config: NotifyConfig, on_result: Callable[[str, str, Sequence[Notification]], None],
                 post: Post = http_post) -> None:
        self.config, self._on_result, self._post = config, on_result, post
        self._queue: queue.Queue[tuple[Receiver, list[Notification]] | None] = queue.Queue(config.queue_size)
        self._thread = threading.Thread(target=self._run, name="loopwise-notify", daemon=True)
        self._thread.start()

    def submit(self, receiver: Receiver, group: list[Notification]) -> bool:
        try:
            self._queue.put_nowait((receiver, group))
            return True
        except queue.Full:
            self._on_result(receiver.name, "dropped", group)
            return False

    def close(self, timeout_s: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            receiver, group = item
            if receiver.kind == "pagerduty":  # one event per incident: its dedup_key is the incident id
                for n in group:
                    self._deliver(receiver, [n])
            else:
                self._deliver(receiver, group)

    def _deliver(self, receiver: Receiver, group: list[Notification]) -> None:
        url, body = payload(receiver, group)
        delay = self.config.backoff_s
        for attempt in range(self.config.attempts):
            status = self._post(url, body)
            if 200 <= status < 300:
                self._on_result(receiver.name, "sent", group)
                return
            if 400 <= status < 500 and status != 429:  # the receiver refuses it: retrying cannot help
                break
            if attempt < self.config.attempts - 1:
                self._on_result(receiver.name, "retried", group)
                time.sleep(delay)
                delay = min(delay * 2, self.config.max_backoff_s)
        log.warning("notify: %s gave up on %d notification(s) after %d attempts", receiver.name, len(group),
                    self.config.attempts)
        self._on_result(receiver.name, "failed", group)
