"""The remediation audit trail: every command (and every one held back), its incident, and what followed.

Entries are plain dicts so they can go to ``lw.insights`` (``Insight``-ready
via ``as_insight``), to a report, or into a snapshot as they are. The trail is
bounded: the oldest entries go first.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterable, Mapping

from schemas.records import Command, Insight, Severity

OUTCOMES = ("pending", "resolved", "recovered", "not_resolved", "applied")


class AuditLog:
    """Commands issued, commands suppressed (``rate_limited``) and warnings (``degraded``), in order."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)

    def command(self, command: Command, episode: str, step: int | str) -> None:
        """Record an issued command; its outcome stays ``pending`` until its incident or episode ends."""
        self._entries.append({
            "kind": "command", "command_id": command.command_id, "ts_ms": command.ts_ms, "action": command.action,
            "target": command.target, "incident_id": command.incident_id, "episode": episode, "step": step,
            "reason": command.reason, "is_dry_run": command.is_dry_run, "outcome": "pending", "outcome_ms": None,
        })

    def note(self, kind: str, ts_ms: int, target: str, action: str, reason: str,
             incident_id: str | None = None) -> None:
        """Record something that was not sent: ``rate_limited``, ``degraded``, ``exhausted``."""
        self._entries.append({"kind": kind, "ts_ms": ts_ms, "target": target, "action": action,
                              "reason": reason, "incident_id": incident_id})

    def settle(self, ts_ms: int, outcome: str, *, incident_id: str | None = None, episode: str | None = None) -> int:
        """Mark the pending commands of an incident (or an episode) with ``outcome``; return how many."""
        settled = 0
        for entry in self._entries:
            if entry["kind"] != "command" or entry["outcome"] != "pending":
                continue
            if (incident_id is not None and entry["incident_id"] == incident_id) or (
                    episode is not None and entry["episode"] == episode):
                entry["outcome"], entry["outcome_ms"] = outcome, ts_ms
                settled += 1
        return settled

    def entries(self) -> list[dict[str, Any]]:
        """Copies of every entry, oldest first."""
        return [dict(e) for e in self._entries]

    def for_incident(self, incident_id: str) -> list[dict[str, Any]]:
        """Entries of one incident: the way from ``lw.incidents`` to the commands and back."""
        return [dict(e) for e in self._entries if e.get("incident_id") == incident_id]

    def snapshot(self) -> list[dict[str, Any]]:
        """Plain JSON-able state."""
        return self.entries()

    def restore(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Load what ``snapshot`` returned."""
        self._entries.clear()
        self._entries.extend(dict(e) for e in entries)


def as_insight(entry: Mapping[str, Any]) -> Insight:
    """An ``Insight`` for people about one audit entry (``kind`` ``remediation``).

    >>> as_insight({"kind": "degraded", "ts_ms": 5, "target": "wf", "action": "open_circuit",
    ...             "reason": "all routes failing"}).title
    'degraded: open_circuit on wf'
    """
    key = entry.get("command_id") or f"{entry['kind']}:{entry['target']}:{entry['ts_ms']}"
    severity = Severity.WARNING if entry["kind"] in ("degraded", "rate_limited", "exhausted") else Severity.INFO
    body = "; ".join(f"{k}={entry[k]}" for k in sorted(entry) if entry[k] is not None)
    return Insight(f"remediation-{key}", int(entry["ts_ms"]), "remediation", str(entry["target"]),
                   f"{entry['kind']}: {entry['action']} on {entry['target']}", body, severity)
