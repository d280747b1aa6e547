"""Event-time correlation of anomalies and log bursts into grouped, deduplicated, inhibited ``Incident`` updates."""

from __future__ import annotations

import heapq
from typing import Any

from processors.incidents.bursts import LogBurstDetector, Signal
from processors.incidents.config import SEVERITY_RANK, GroupingConfig
from processors.incidents.groups import Group
from schemas.records import Anomaly, Incident, IncidentStatus, LogEvent, LogLevel, Severity, WorkflowDefinition

VERSION = 1
ERROR_LEVELS = {LogLevel.ERROR: False, LogLevel.CRITICAL: True}  # level -> is critical


class IncidentCorrelator:
    """Groups signals into incidents the way Alertmanager groups alerts, in event time.

    Inputs are queued by ``observe_*`` and applied by :meth:`advance` in a
    canonical order (event time, then kind, entity, signal, id), so the order
    they arrived in between two watermarks does not matter. Timers (group_wait,
    group_interval, repeat_interval, resolve_after) fire at exact event times;
    at equal times queued signals are applied before timers. A signal older
    than the watermark is applied at the watermark (its own time still counts
    for starts and for resolution).

    A signal goes, in this order: to the outage incident of one of its
    workflow's routes if it is inhibited by it (see ``GroupingConfig``); to
    the open group that already holds its entity × signal (dedup); else to
    the group of its labels (``group_by``). Error rates of requests are left
    to the anomaly detectors (``DetectorBank`` emits them per route and
    workflow), so there is no ``observe_request``.

    Each ``Incident`` carries: ``members``, the sorted entity × signal keys
    (``route:gpt-large/error_rate``; one per pair however often it fires);
    ``anomaly_count``, the distinct records folded in (redeliveries of an
    ``anomaly_id`` count once); ``severity``, the highest of any member;
    ``root_cause``, see :func:`processors.incidents.groups.root_cause`;
    ``incident_id``, blake2b of group key and start, fixed at the first
    notification. Updates go out once after group_wait, then when members
    or severity changed (no sooner than group_interval after the previous
    one), every repeat_interval while unchanged, and once on resolution. A
    group that resolves before its first notification is dropped silently.

    Args:
        config: grouping policy; a snapshot restores only into the same one.

    >>> from schemas.records import Anomaly, Severity, SignalKind
    >>> def anomaly(entity, kind, signal, ts_ms, severity=Severity.CRITICAL):
    ...     return Anomaly(f"{entity}-{signal}-{ts_ms}", ts_ms, entity, kind, signal, SignalKind.ANOMALY,
    ...                    0.95, severity, 1.0, 0.0, 0.1, ts_ms - 60_000, ts_ms, "robust", "1")
    >>> c = IncidentCorrelator(GroupingConfig(group_wait_ms=10_000, resolve_after_ms=60_000))
    >>> c.observe_anomaly(anomaly("gpt-large", "route", "error_rate", 1_000))
    >>> c.observe_anomaly(anomaly("gpt-large", "route", "latency_ms", 4_000, Severity.WARNING))
    >>> c.advance(10_999)
    []
    >>> [(i.status.value, i.root_cause, i.members) for i in c.advance(11_000)]
    [('firing', 'route:gpt-large', ('route:gpt-large/error_rate', 'route:gpt-large/latency_ms'))]
    >>> [(i.status.value, i.ts_ms) for i in c.advance(70_000)]
    [('resolved', 64000)]
    """

    def __init__(self, config: GroupingConfig | None = None) -> None:
        self.config = config or GroupingConfig()
        self._bursts = LogBurstDetector(self.config.log_burst_count, self.config.log_burst_window_ms)
        self._routes: dict[str, tuple[int, tuple[str, ...]]] = {}  # workflow -> (definition ts, routes)
        self._users: dict[str, set[str]] = {}  # route -> workflows using it
        self._pending: list[Signal] = []
        self._groups: dict[str, Group] = {}
        self._member_group: dict[str, str] = {}  # member -> the open group it fires into
        self._entity_groups: dict[str, set[str]] = {}  # "kind:entity" -> open groups with a member of it
        self._root_groups: dict[str, set[str]] = {}  # root label -> open groups opened under it
        self._outages: dict[str, tuple[str, str]] = {}  # route -> (group, member) of its outage
        self._resolved_at: dict[str, int] = {}  # member -> when its last group resolved
        self._timers: list[tuple[int, str]] = []
        self._clock_ms: int | None = None
        self._next_sweep_ms = 0
        self.late_dropped = 0  # signals from before their member's resolution, dropped

    def __len__(self) -> int:
        """Open groups."""
        return len(self._groups)

    # ------------------------------------------------------------------ inputs

    def observe_anomaly(self, anomaly: Anomaly) -> None:
        """Queue an anomaly; info severity and non-counting kinds are ignored."""
        if anomaly.kind not in self.config.kinds:
            return
        if SEVERITY_RANK[anomaly.severity] < SEVERITY_RANK[self.config.min_severity]:
            return
        self._pending.append(Signal(anomaly.ts_ms, "anomaly", anomaly.entity_kind, anomaly.entity,
                                    anomaly.signal, str(anomaly.severity), anomaly.anomaly_id))

    def observe_log(self, event: LogEvent) -> None:
        """Queue an error or critical line for the burst detector of its route, else workflow, else service."""
        is_critical = ERROR_LEVELS.get(event.level)
        if is_critical is None:
            return
        kind, entity = (("route", event.route) if event.route else ("workflow", event.workflow)
                        if event.workflow else ("service", event.service))
        self._pending.append(Signal(event.ts_ms, "log", kind, entity, "", "critical" if is_critical else "", ""))

    def observe_workflow(self, definition: WorkflowDefinition) -> None:
        """Learn which routes a workflow uses (the newest definition wins); applies at once."""
        current = self._routes.get(definition.workflow)
        if current is not None and current[0] > definition.ts_ms:
            return
        routes = tuple(sorted({r.name for r in definition.routes}))
        self._routes[definition.workflow] = (definition.ts_ms, routes)
        self._rebuild_users()

    def advance(self, watermark_ms: int) -> list[Incident]:
        """Apply queued signals up to ``watermark_ms`` and fire due timers; the incident updates, in time order."""
        now = watermark_ms if self._clock_ms is None else max(watermark_ms, self._clock_ms)
        ready = sorted(s for s in self._pending if s.ts_ms <= now)
        self._pending = [s for s in self._pending if s.ts_ms > now]
        out: list[Incident] = []
        for signal in ready:
            self._fire(signal.ts_ms, out, inclusive=False)
            at_ms = signal.ts_ms if self._clock_ms is None else max(signal.ts_ms, self._clock_ms)
            self._clock_ms = at_ms
            self._apply(signal, at_ms)
        self._fire(now, out, inclusive=True)
        self._clock_ms = now
        if now >= self._next_sweep_ms:
            self._sweep(now)
        return out

    # ------------------------------------------------------------------ signals

    def _apply(self, signal: Signal, now_ms: int) -> None:
        if signal.source == "log":
            burst = self._bursts.observe(signal.ts_ms, signal.entity_kind, signal.entity,
                                         signal.severity == "critical")
            if burst is None:
                return
            signal = burst
        resolved = self._resolved_at.get(signal.member)
        if resolved is not None and signal.ts_ms <= resolved and resolved + self.config.forget_after_ms > now_ms:
            self.late_dropped += 1
            return
        key = self._inhibiting_group(signal, now_ms) or self._member_group.get(signal.member)
        group = self._groups.get(key) if key else None
        if group is None:
            labels = {"root": self._root_of(signal), "entity": signal.subject,
                      "entity_kind": signal.entity_kind, "signal": signal.signal}
            key = self.config.group_key(labels)
            group = self._groups.get(key) or self._open(key, labels, signal, now_ms)
        if group.add(signal, self.config.max_ids_per_group) and group.is_notified and group.dirty_since_ms is None:
            group.dirty_since_ms = now_ms
        self._index(group, signal)
        self._arm(group)

    def _inhibiting_group(self, signal: Signal, now_ms: int) -> str | None:
        """The open outage incident of one of the workflow's routes that absorbs this signal, if any."""
        if signal.entity_kind != "workflow" or signal.signal not in self.config.inhibited_signals:
            return None
        found: list[tuple[int, str, str]] = []
        for route in self._routes.get(signal.entity, (0, ()))[1]:
            outage = self._outages.get(route)
            group = self._groups.get(outage[0]) if outage else None
            if outage is None or group is None or outage[1] not in group.members:
                continue
            if group.members[outage[1]].last_ms + self.config.resolve_after_ms > now_ms:
                found.append((group.started_ms, route, group.key))
        return min(found)[2] if found else None

    def _root_of(self, signal: Signal) -> str:
        """A workflow's own incident if it has one, else its earliest misbehaving route, else itself."""
        own = signal.subject
        if signal.entity_kind != "workflow" or self._root_groups.get(own):
            return own
        open_routes = [(min(self._groups[k].started_ms for k in keys), route)
                       for route in self._routes.get(signal.entity, (0, ()))[1]
                       if (keys := self._entity_groups.get(f"route:{route}"))]
        return f"route:{min(open_routes)[1]}" if open_routes else own

    def _open(self, key: str, labels: dict[str, str], signal: Signal, now_ms: int) -> Group:
        group = Group(key, labels, created_ms=now_ms, started_ms=signal.ts_ms, last_signal_ms=signal.ts_ms)
        self._groups[key] = group
        self._root_groups.setdefault(labels["root"], set()).add(key)
        if signal.entity_kind == "route" and "root" in self.config.group_by:
            self._absorb_workflows(group, signal)
        return group

    def _absorb_workflows(self, group: Group, signal: Signal) -> None:
        """A route's new group takes over the unnotified groups its workflows opened just before."""
        for workflow in sorted(self._users.get(signal.entity, ())):
            for key in sorted(self._root_groups.get(f"workflow:{workflow}", ())):
                other = self._groups[key]
                relabelled = self.config.group_key({**other.labels, "root": group.labels["root"]})
                if (other.is_notified or relabelled != group.key
                        or other.started_ms < signal.ts_ms - self.config.root_tolerance_ms):
                    continue
                group.absorb(other)
                self._forget(other)
                for name, member in group.members.items():
                    self._member_group[name] = group.key
                    self._entity_groups.setdefault(member.subject, set()).add(group.key)

    def _index(self, group: Group, signal: Signal) -> None:
        self._member_group[signal.member] = group.key
        self._entity_groups.setdefault(signal.subject, set()).add(group.key)
        member = group.members.get(signal.member)
        if (member is not None and signal.entity_kind == "route" and signal.signal in self.config.outage_signals
                and member.severity == SEVERITY_RANK[Severity.CRITICAL]
                and signal.entity not in self._outages):
            self._outages[signal.entity] = (group.key, signal.member)

    # ------------------------------------------------------------------ timers

    def _due(self, group: Group) -> int:
        c = self.config
        resolve = group.last_signal_ms + c.resolve_after_ms
        if group.last_notify_ms is None:
            return min(group.created_ms + c.group_wait_ms, resolve)
        if group.dirty_since_ms is not None:
            return min(max(group.dirty_since_ms, group.last_notify_ms + c.group_interval_ms), resolve)
        return min(group.last_notify_ms + c.repeat_interval_ms, resolve)

    def _arm(self, group: Group) -> None:
        due = self._due(group)
        if group.armed_ms is None or due < group.armed_ms:
            group.armed_ms = due
            heapq.heappush(self._timers, (due, group.key))

    def _fire(self, until_ms: int, out: list[Incident], inclusive: bool) -> None:
        """Run timers due before (or at, if ``inclusive``) ``until_ms``, in (time, key) order."""
        while self._timers and (self._timers[0][0] < until_ms or inclusive and self._timers[0][0] == until_ms):
            due, key = heapq.heappop(self._timers)
            group = self._groups.get(key)
            if group is None or group.armed_ms != due:
                continue  # superseded by an earlier entry, or the group is gone
            group.armed_ms = None
            if due < self._due(group):
                self._arm(group)
                continue
            # a late signal can make a resolution due in the past: it happens now, not back then
            at_ms = due if self._clock_ms is None else max(due, self._clock_ms)
            self._clock_ms = at_ms
            if at_ms >= group.last_signal_ms + self.config.resolve_after_ms:
                self._resolve(group, at_ms, out)
                continue
            out.append(group.incident(at_ms, IncidentStatus.FIRING, self.config.root_tolerance_ms))
            if group.incident_id is None:
                group.incident_id = out[-1].incident_id
            group.last_notify_ms, group.dirty_since_ms = at_ms, None
            self._arm(group)

    def _resolve(self, group: Group, ts_ms: int, out: list[Incident]) -> None:
        """Send the resolution of a notified group (one never notified paged nobody) and forget it."""
        if group.is_notified:
            out.append(group.incident(ts_ms, IncidentStatus.RESOLVED, self.config.root_tolerance_ms))
        for name in group.members:
            self._resolved_at[name] = ts_ms
        self._forget(group)

    def _forget(self, group: Group) -> None:
        del self._groups[group.key]
        for name, member in group.members.items():
            if self._member_group.get(name) == group.key:
                del self._member_group[name]
            _discard(self._entity_groups, member.subject, group.key)
            if member.kind == "route" and self._outages.get(member.entity, ("",))[0] == group.key:
                del self._outages[member.entity]
        _discard(self._root_groups, group.labels["root"], group.key)

    def _sweep(self, now_ms: int) -> None:
        """Bound memory: forget resolutions past the horizon and idle log windows."""
        horizon = now_ms - self.config.forget_after_ms
        self._resolved_at = {m: ts for m, ts in self._resolved_at.items() if ts > horizon}
        self._bursts.sweep(horizon - self.config.log_burst_window_ms)
        self._next_sweep_ms = now_ms + max(self.config.resolve_after_ms, 1)

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state (no pickle), in a stable order; timers are rebuilt from it."""
        return {
            "version": VERSION, "clock_ms": self._clock_ms, "next_sweep_ms": self._next_sweep_ms,
            "late_dropped": self.late_dropped,
            "routes": {w: [ts, list(routes)] for w, (ts, routes) in sorted(self._routes.items())},
            "pending": sorted(list(s) for s in self._pending),
            "groups": [g.to_dict() for _, g in sorted(self._groups.items())],
            "member_group": dict(sorted(self._member_group.items())),
            "outages": {r: list(v) for r, v in sorted(self._outages.items())},
            "resolved_at": dict(sorted(self._resolved_at.items())),
            "bursts": self._bursts.snapshot(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace this correlator's state by a :meth:`snapshot` (taken with the same config)."""
        if state.get("version") != VERSION:
            raise ValueError(f"incident state version {state.get('version')!r}, expected {VERSION}")
        self._clock_ms, self._next_sweep_ms = state["clock_ms"], int(state["next_sweep_ms"])
        self.late_dropped = int(state["late_dropped"])
        self._routes = {w: (int(ts), tuple(routes)) for w, (ts, routes) in state["routes"].items()}
        self._rebuild_users()
        self._pending = [Signal(int(r[0]), *map(str, r[1:])) for r in state["pending"]]
        self._groups = {g["key"]: Group.from_dict(g) for g in state["groups"]}
        self._member_group = dict(state["member_group"])
        self._outages = {r: (str(k), str(m)) for r, (k, m) in state["outages"].items()}
        self._resolved_at = {m: int(ts) for m, ts in state["resolved_at"].items()}
        self._bursts.restore(state["bursts"])
        self._entity_groups, self._root_groups, self._timers = {}, {}, []
        for group in self._groups.values():
            self._root_groups.setdefault(group.labels["root"], set()).add(group.key)
            for member in group.members.values():
                self._entity_groups.setdefault(member.subject, set()).add(group.key)
            self._arm(group)

    def _rebuild_users(self) -> None:
        self._users = {}
        for workflow, (_, routes) in self._routes.items():
            for route in routes:
                self._users.setdefault(route, set()).add(workflow)


def _discard(index: dict[str, set[str]], name: str, key: str) -> None:
    keys = index.get(name)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[name]
