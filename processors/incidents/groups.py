"""State of one open incident group, its root-cause guess, its summary and its ``Incident`` record."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from processors.incidents.bursts import Signal
from processors.incidents.config import KIND_RANK, SEVERITY_RANK
from schemas.records import Incident, IncidentStatus, Severity

SEVERITIES = {rank: severity for severity, rank in SEVERITY_RANK.items()}
SHOWN_ENTITIES = 3  # the summary names this many other entities, then counts the rest


@dataclass(slots=True)
class Member:
    """One entity × signal of a group; repeated firings refresh it instead of adding members."""

    kind: str
    entity: str
    signal: str
    severity: int  # SEVERITY_RANK, the highest seen
    first_ms: int
    last_ms: int
    count: int = 1

    @property
    def subject(self) -> str:
        return f"{self.kind}:{self.entity}"

    def to_list(self) -> list[Any]:
        return [self.kind, self.entity, self.signal, self.severity, self.first_ms, self.last_ms, self.count]

    @classmethod
    def from_list(cls, row: list[Any]) -> Member:
        kind, entity, signal, severity, first_ms, last_ms, count = row
        return cls(str(kind), str(entity), str(signal), int(severity), int(first_ms), int(last_ms), int(count))


@dataclass(slots=True)
class Group:
    """An open group: its members, its timers' inputs and what it last notified.

    ``created_ms`` is the event time the group opened (group_wait counts from
    it); ``started_ms`` the earliest member signal, frozen at the first
    notification because the incident id is derived from it.
    """

    key: str
    labels: dict[str, str]
    created_ms: int
    started_ms: int
    last_signal_ms: int
    members: dict[str, Member] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)
    count: int = 0
    severity: int = 0
    incident_id: str | None = None
    last_notify_ms: int | None = None
    dirty_since_ms: int | None = None
    armed_ms: int | None = None  # earliest live timer entry; rebuilt on restore

    @property
    def is_notified(self) -> bool:
        return self.last_notify_ms is not None

    def add(self, signal: Signal, cap_ids: int) -> bool:
        """Fold one firing in; True when members or severity changed (what a notification shows)."""
        if signal.ident in self.ids:
            return False  # the same record delivered twice
        if len(self.ids) < cap_ids:
            self.ids.add(signal.ident)
        self.count += 1
        rank = SEVERITY_RANK[Severity(signal.severity)]
        member = self.members.get(signal.member)
        changed = member is None
        if member is None:
            self.members[signal.member] = Member(signal.entity_kind, signal.entity, signal.signal, rank,
                                                 signal.ts_ms, signal.ts_ms)
        else:
            member.severity = max(member.severity, rank)
            member.first_ms, member.last_ms = min(member.first_ms, signal.ts_ms), max(member.last_ms, signal.ts_ms)
            member.count += 1
        self.last_signal_ms = max(self.last_signal_ms, signal.ts_ms)
        if not self.is_notified:
            self.started_ms = min(self.started_ms, signal.ts_ms)
        if rank > self.severity:
            self.severity, changed = rank, True
        return changed

    def absorb(self, other: Group) -> None:
        """Take over every member of a group that was never notified."""
        for name, member in other.members.items():
            mine = self.members.get(name)
            if mine is None:
                self.members[name] = member
            else:
                mine.severity = max(mine.severity, member.severity)
                mine.first_ms, mine.last_ms = min(mine.first_ms, member.first_ms), max(mine.last_ms, member.last_ms)
                mine.count += member.count
        self.ids |= other.ids
        self.count += other.count
        self.severity = max(self.severity, other.severity)
        self.created_ms = min(self.created_ms, other.created_ms)
        self.started_ms = min(self.started_ms, other.started_ms)
        self.last_signal_ms = max(self.last_signal_ms, other.last_signal_ms)

    def incident(self, ts_ms: int, status: IncidentStatus, tolerance_ms: int) -> Incident:
        """The record of this group as of ``ts_ms``."""
        root = root_cause(self.members.values(), tolerance_ms)
        resolved_ms = ts_ms if status == IncidentStatus.RESOLVED else None
        return Incident(
            incident_id=self.incident_id or incident_id(self.key, self.started_ms), ts_ms=ts_ms,
            status=status, severity=SEVERITIES[self.severity], group_key=self.key, root_cause=root,
            started_ms=self.started_ms, members=tuple(sorted(self.members)), anomaly_count=self.count,
            summary=summarize(self, root, status, ts_ms), resolved_ms=resolved_ms)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (ids sorted so equal states serialise equally)."""
        return {"key": self.key, "labels": dict(self.labels), "created_ms": self.created_ms,
                "started_ms": self.started_ms, "last_signal_ms": self.last_signal_ms,
                "members": {name: m.to_list() for name, m in sorted(self.members.items())},
                "ids": sorted(self.ids), "count": self.count, "severity": self.severity,
                "incident_id": self.incident_id, "last_notify_ms": self.last_notify_ms,
                "dirty_since_ms": self.dirty_since_ms}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Group:
        return cls(key=state["key"], labels=dict(state["labels"]), created_ms=int(state["created_ms"]),
                   started_ms=int(state["started_ms"]), last_signal_ms=int(state["last_signal_ms"]),
                   members={name: Member.from_list(row) for name, row in state["members"].items()},
                   ids=set(state["ids"]), count=int(state["count"]), severity=int(state["severity"]),
                   incident_id=state["incident_id"], last_notify_ms=state["last_notify_ms"],
                   dirty_since_ms=state["dirty_since_ms"])


def root_cause(members: Any, tolerance_ms: int) -> str:
    """The entity that most likely caused the others.

    Rule: take each entity's first firing; keep those within ``tolerance_ms``
    of the earliest; among them prefer routes, then infrastructure (metric
    sources, services), then workflows (``KIND_RANK``); then the earliest;
    then the name, so ties are stable.

    >>> ms = [Member("workflow", "w", "latency_ms", 1, 1_000, 1_000),
    ...       Member("route", "r", "error_rate", 2, 5_000, 5_000)]
    >>> root_cause(ms, tolerance_ms=10_000), root_cause(ms, tolerance_ms=1_000)
    ('route:r', 'workflow:w')
    """
    first: dict[str, tuple[int, str]] = {}
    for m in members:
        seen = first.get(m.subject)
        if seen is None or m.first_ms < seen[0]:
            first[m.subject] = (m.first_ms, m.kind)
    earliest = min(ms for ms, _ in first.values())
    close = [(KIND_RANK.get(kind, 1), ms, subject) for subject, (ms, kind) in first.items()
             if ms <= earliest + tolerance_ms]
    return min(close)[2]


def summarize(group: Group, root: str, status: IncidentStatus, ts_ms: int) -> str:
    """What, where, since when, how many: one line for people."""
    members = group.members.values()
    root_signals = ",".join(sorted(m.signal for m in members if m.subject == root))
    others = sorted({m.subject for m in members} - {root})
    text = (f"{SEVERITIES[group.severity]} {status}: {root} {root_signals} since {_iso(group.started_ms)}"
            f"; {len(group.members)} members on {len(others) + 1} entities, {group.count} signals")
    if others:
        more = len(others) - SHOWN_ENTITIES
        text += "; also " + ", ".join(others[:SHOWN_ENTITIES]) + (f" and {more} more" if more > 0 else "")
    if status == IncidentStatus.RESOLVED:
        text += f"; resolved {_iso(ts_ms)}"
    return text


def incident_id(group_key: str, started_ms: int) -> str:
    """Stable id from the group key and start (blake2b, so a replay gives the same id)."""
    return hashlib.blake2b(f"{group_key}\x1f{started_ms}".encode(), digest_size=12).hexdigest()


def _iso(ts_ms: int) -> str:
    # event time rendered in UTC: no wall clock is read
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
