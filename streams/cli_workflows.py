"""``loopwise workflows validate | diff | apply | history | rollback`` and ``loopwise rollout status | pause | resume | promote | abort``.

Workflows as code: YAML files (one definition per file, or a list) in the
user's repository are checked, compared with what is live (``lw.workflows``)
and published as new, immutable versions (to ``lw.workflows`` and to the
history topic ``lw.workflows.history``). A version with a ``rollout`` plan
starts a canary in the worker's rollout stage; the ``rollout`` commands send it
signed control records (``lw.rollouts.control``).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import orjson

from infra.settings import Settings


def register(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``workflows`` and ``rollout`` to the ``loopwise`` parser."""
    parser = sub.add_parser("workflows", help="workflows as code: validate, diff, apply, history, rollback")
    actions = parser.add_subparsers(metavar="ACTION")
    for name, help_, run in (("validate", "check workflow files (and their compatibility with what is live)", _run_validate),
                             ("diff", "show what applying the files would change", _run_diff),
                             ("apply", "publish the files' new versions (immutable) to lw.workflows", _run_apply)):
        action = command(actions, name, help_, run)
        action.add_argument("path", metavar="PATH", help="a YAML file or a folder of them")
        action.add_argument("--offline", action="store_true", help="check the files alone, without the cluster")
        if name == "apply":
            action.add_argument("--force", action="store_true", help="publish despite compatibility problems (recorded)")
            action.add_argument("--operator", help="who applies (recorded; default LOOPWISE_OPERATOR)")
    history = command(actions, "history", "every version of a workflow ever applied", _run_history)
    history.add_argument("workflow")
    rollback = command(actions, "rollback", "republish an earlier version's definition as a new version", _run_rollback)
    rollback.add_argument("workflow")
    rollback.add_argument("--to", dest="to_version", help="the version to go back to (default: the live one's previous)")

    impact = command(sub, "impact", "project a workflow file's cost, latency p95, quality, capacity, budget and privacy "
                     "from recent traffic and learned estimates; exit 1 above the thresholds", _run_impact)
    impact.add_argument("path", metavar="FILE", help="a workflow YAML file (or a folder)")
    impact.add_argument("--recent", type=int, default=20_000, help="recent requests to read per partition")
    impact.add_argument("--max-cost-increase", type=float, default=0.2)
    impact.add_argument("--max-p95-increase", type=float, default=0.2)
    impact.add_argument("--max-quality-drop", type=float, default=0.05)
    impact.add_argument("--max-utilisation", type=float, default=0.9)

    rollout = sub.add_parser("rollout", help="canary rollouts: status, pause, resume, promote, abort")
    steps = rollout.add_subparsers(metavar="ACTION")
    status = command(steps, "status", "the split and the latest verdicts of a workflow's rollout", _run_status)
    status.add_argument("workflow")
    for name in ("pause", "resume", "promote", "abort"):
        control = command(steps, name, f"{name} a workflow's running canary (a signed control record)", _run_control)
        control.add_argument("workflow")
        control.add_argument("--reason", default="", help="why (recorded in the step the stage publishes)")
        control.add_argument("--operator", help="who (default LOOPWISE_OPERATOR)")
        control.set_defaults(action_name=name)


# ---------------------------------------------------------------------------- reading files and topics


def load_files(path: str) -> list[tuple[str, Any]]:
    """(file name, definition) for every YAML document under ``path``; raises ``SystemExit`` on a bad file."""
    import yaml

    from processors.workflow_files import WorkflowFileError, parse_definition

    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml")) if root.is_dir() else [root]
    out = []
    for file in files:
        try:
            loaded = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise SystemExit(f"{file}: cannot read: {exc}") from exc
        for i, data in enumerate(loaded if isinstance(loaded, list) else [loaded]):
            try:
                out.append((f"{file}" + (f"[{i}]" if isinstance(loaded, list) else ""), parse_definition(data or {})))
            except WorkflowFileError as exc:
                raise SystemExit(f"{file}: not a workflow definition: {exc}") from exc
    if not out:
        raise SystemExit(f"{path}: no workflow file (*.yaml, *.yml)")
    return out


def _latest(settings: Settings, logical: str, record_type: type, key: Callable[[Any], str]) -> dict[str, Any]:
    from schemas.serde import SchemaError, make_codec
    from streams.approvals import read_to_end

    codec = make_codec(record_type, topic=settings.topic(logical), registry_url=settings.schema_registry_url,
                       max_event_bytes=1 << 20)
    latest: dict[str, Any] = {}
    for _, value in read_to_end(settings, (logical,)):
        try:
            record = codec.decode(value)
        except SchemaError:
            continue
        current = latest.get(key(record))
        if current is None or current.ts_ms <= record.ts_ms:
            latest[key(record)] = record
    return latest


def _history(settings: Settings, workflow: str) -> list[Any]:
    from schemas.records import WorkflowDefinition
    from schemas.serde import SchemaError, make_codec
    from streams.approvals import read_to_end

    codec = make_codec(WorkflowDefinition, topic=settings.topic("workflows.history"),
                       registry_url=settings.schema_registry_url, max_event_bytes=1 << 20)
    found = []
    for _, value in read_to_end(settings, ("workflows.history",)):
        try:
            definition = codec.decode(value)
        except SchemaError:
            continue
        if definition.workflow == workflow:
            found.append(definition)
    return sorted(found, key=lambda d: d.ts_ms)


def _live_context(settings: Settings) -> tuple[dict[str, Any], frozenset[str]]:
    from schemas.records import ExperimentDecision, ExperimentStatus, WorkflowDefinition

    live = _latest(settings, "workflows", WorkflowDefinition, lambda d: d.workflow)
    decisions = _latest(settings, "decisions.experiments", ExperimentDecision, lambda d: d.experiment)
    running = frozenset(name for name, d in decisions.items() if d.status is ExperimentStatus.RUNNING)
    return live, running


# ---------------------------------------------------------------------------- validate, diff, apply


def _review(args: argparse.Namespace, settings: Settings) -> tuple[list[tuple[str, Any, Any, list[str]]], bool]:
    """(file, new definition, live definition, compatibility problems) per file; and whether any file is invalid."""
    from processors.workflow_files import check_compatibility, check_definition

    files = load_files(args.path)
    live, running = ({}, frozenset()) if args.offline else _live_context(settings)
    reviewed, is_invalid = [], False
    for name, definition in files:
        problems = check_definition(definition)
        for problem in problems:
            print(f"{name}: {definition.workflow} {definition.version}: INVALID: {problem}")
        is_invalid |= bool(problems)
        current = live.get(definition.workflow)
        compat = [] if current is None else check_compatibility(current, definition, running)
        reviewed.append((name, definition, current, compat))
    return reviewed, is_invalid


def _run_validate(args: argparse.Namespace, settings: Settings) -> int:
    reviewed, is_invalid = _review(args, settings)
    is_incompatible = False
    for name, definition, current, compat in reviewed:
        for problem in compat:
            print(f"{name}: {definition.workflow} {definition.version}: INCOMPATIBLE with live {current.version}: {problem}")
        is_incompatible |= bool(compat)
        if not compat:
            print(f"{name}: {definition.workflow} {definition.version}: ok")
    return 1 if is_invalid or is_incompatible else 0


def _run_diff(args: argparse.Namespace, settings: Settings) -> int:
    from processors.workflow_files import diff, same_content

    reviewed, _ = _review(args, settings)
    for name, definition, current, compat in reviewed:
        if current is not None and same_content(current, definition):
            print(f"{name}: {definition.workflow}: no change (live {current.version})")
            continue
        print(f"{name}: {definition.workflow}: {'new workflow' if current is None else f'{current.version} -> {definition.version}'}")
        for line in diff(current, definition):
            print(f"    {line}")
        for problem in compat:
            print(f"    ! incompatible: {problem}")
    return 0


def _run_apply(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from processors.workflow_files import same_content

    if args.offline:
        print("loopwise workflows apply: --offline cannot publish", file=sys.stderr)
        return 2
    reviewed, is_invalid = _review(args, settings)
    if is_invalid:
        print("nothing applied: fix the invalid files first", file=sys.stderr)
        return 1
    to_publish, forced = [], []
    for name, definition, current, compat in reviewed:
        history = {d.version: d for d in _history(settings, definition.workflow)}
        earlier = history.get(definition.version) or (current if current and current.version == definition.version else None)
        if current is not None and same_content(current, definition):
            print(f"{name}: {definition.workflow}: unchanged (live {current.version})")
            continue
        if earlier is not None:
            print(f"{name}: {definition.workflow} {definition.version} was already published with other content: "
                  f"versions are immutable, give this one a new version", file=sys.stderr)
            return 1
        if compat and not args.force:
            for problem in compat:
                print(f"{name}: {definition.workflow} {definition.version}: INCOMPATIBLE: {problem}", file=sys.stderr)
            print("nothing applied (use --force to publish anyway; it is recorded)", file=sys.stderr)
            return 1
        if compat:
            forced.append((definition, current, compat))
        to_publish.append(replace(definition, ts_ms=int(time.time() * 1000),
                                  previous_version=current.version if current else definition.previous_version))
    operator = args.operator or getattr(settings, "operator", None) or "unknown"
    _publish(settings, to_publish, forced, operator)
    for d in to_publish:
        print(f"applied {d.workflow} {d.version}" + (f" (after {d.previous_version})" if d.previous_version else "")
              + (": canary rollout starts in the worker" if d.rollout is not None else ""))
    return 0


def _publish(settings: Settings, definitions: list[Any], forced: list[tuple[Any, Any, list[str]]], operator: str) -> None:
    from confluent_kafka import Producer

    from schemas.records import Insight, Severity, WorkflowDefinition
    from schemas.serde import make_codec

    producer = Producer({**settings.kafka_config(), "enable.idempotence": True})
    codecs = {t: make_codec(WorkflowDefinition, topic=settings.topic(t), registry_url=settings.schema_registry_url,
                            max_event_bytes=1 << 20) for t in ("workflows", "workflows.history")}
    for d in definitions:
        for logical, codec in codecs.items():
            producer.produce(settings.topic(logical), key=d.workflow.encode(), value=codec.encode(d))
    insights = make_codec(Insight, topic=settings.topic("insights"), registry_url=settings.schema_registry_url)
    for d, current, problems in forced:  # a forced apply is recorded where people look: lw.insights
        insight = Insight(f"forced-{d.workflow}-{d.version}", int(time.time() * 1000), "workflow_forced_apply",
                          d.workflow, f"{operator} forced {d.workflow} {d.version} over live {current.version}",
                          "\n".join(problems), Severity.WARNING)
        producer.produce(settings.topic("insights"), key=d.workflow.encode(), value=insights.encode(insight))
    if producer.flush(30):
        raise SystemExit("loopwise workflows: not every record was acknowledged within 30 s")


def _run_history(args: argparse.Namespace, settings: Settings) -> int:
    versions = _history(settings, args.workflow)
    if not versions:
        print(f"no version of {args.workflow!r} in {settings.topic('workflows.history')}")
        return 1
    print(f"{'VERSION':24} {'APPLIED (UTC)':20} {'AFTER':16} ROLLOUT")
    for d in versions:
        applied = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.ts_ms / 1000))
        plan = "-" if d.rollout is None else "steps " + "/".join(f"{s:.0%}" for s in d.rollout.steps)
        print(f"{d.version:24} {applied:20} {d.previous_version or '-':16} {plan}")
    return 0


def _run_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from schemas.records import WorkflowDefinition

    versions = _history(settings, args.workflow)
    live = _latest(settings, "workflows", WorkflowDefinition, lambda d: d.workflow).get(args.workflow)
    if live is None:
        print(f"{args.workflow!r} is not live", file=sys.stderr)
        return 1
    target_version = args.to_version or live.previous_version
    target = next((d for d in reversed(versions) if d.version == target_version), None)
    if target is None:
        print(f"no version {target_version!r} of {args.workflow!r} in the history", file=sys.stderr)
        return 1
    taken = {d.version for d in versions}
    n = 1
    while f"{target.version}-r{n}" in taken:
        n += 1
    # No canary on the way back: the earlier definition is known good, it serves at once.
    again = replace(target, version=f"{target.version}-r{n}", ts_ms=int(time.time() * 1000),
                    previous_version=live.version, rollout=None)
    _publish(settings, [again], [], args.__dict__.get("operator") or getattr(settings, "operator", None) or "unknown")
    print(f"rolled {args.workflow} back to {target.version}'s definition as {again.version} (live was {live.version})")
    return 0


# ---------------------------------------------------------------------------- impact


def read_recent(settings: Settings, logical: str, per_partition: int, timeout_s: float = 10.0) -> list[bytes]:
    """The last ``per_partition`` values of each partition of a topic (what is there when called)."""
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.topic(logical)
    consumer = Consumer({**settings.kafka_config(), "group.id": f"loopwise-impact-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 50})
    values: list[bytes] = []
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            return values
        ends, assignment = {}, []
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, max(low, high - per_partition)))
        consumer.assign(assignment)
        deadline, quiet = time.monotonic() + timeout_s, 0
        while ends and time.monotonic() < deadline and quiet < 5:
            batch = consumer.consume(1000, 0.2)
            quiet = 0 if batch else quiet + 1
            for m in batch:
                if m.error() is None and m.value() is not None:
                    values.append(m.value())
                if m.error() is None and m.offset() + 1 >= ends.get(m.partition(), 0):
                    ends.pop(m.partition(), None)
    finally:
        consumer.close()
    return values


def _run_impact(args: argparse.Namespace, settings: Settings) -> int:
    from processors.impact import observe, project, risks
    from schemas.records import RequestEvent, RoutingPolicy, WorkflowDefinition
    from schemas.serde import SchemaError, make_codec

    files = load_files(args.path)
    live_all = _latest(settings, "workflows", WorkflowDefinition, lambda d: d.workflow)
    policies = list(_latest(settings, "decisions.routing", RoutingPolicy, lambda p: f"{p.workflow}/{p.segment}").values())
    codec = make_codec(RequestEvent, topic=settings.topic("requests"), registry_url=settings.schema_registry_url)
    requests = []
    for value in read_recent(settings, "requests", args.recent):
        try:
            requests.append(codec.decode(value))
        except SchemaError:
            continue
    exit_code = 0
    for name, definition in files:
        live = live_all.get(definition.workflow)
        mix = observe(requests, definition.workflow)
        mine = [p for p in policies if p.workflow == definition.workflow]
        before = project(mix, live, live, mine) if live is not None else None
        after = project(mix, definition, live, mine)
        print(f"{name}: {definition.workflow} {live.version if live else '(new)'} -> {definition.version}, "
              f"from {mix.n} recent requests ({mix.rate_rps:.1f}/s) and {len(mine)} published policies")
        print(f"  {'':18} {'LIVE':>12} {'NEW':>12}")
        for label, get in (("cost/hour USD", lambda p: f"{p.cost_per_hour_usd:.2f}"),
                           ("latency p95 ms", lambda p: f"{p.latency_p95_ms:.0f}"),
                           ("quality", lambda p: f"{p.quality:.3f}"),
                           ("privacy coverage", lambda p: f"{p.privacy_coverage:.1%}"),
                           ("within budget", lambda p: "yes" if p.is_within_budget else "NO")):
            print(f"  {label:18} {get(before) if before else '-':>12} {get(after):>12}")
        for route, share in sorted(after.shares.items()):
            util = after.utilisation.get(route)
            print(f"  route {route:24} share {share:6.1%}" + (f"  capacity {util:6.1%}" if util is not None else ""))
        found = risks(before, after, max_cost_increase=args.max_cost_increase, max_p95_increase=args.max_p95_increase,
                      max_quality_drop=args.max_quality_drop, max_utilisation=args.max_utilisation)
        for risk in found:
            print(f"  RISK: {risk}")
        exit_code = max(exit_code, 1 if found else 0)
    return exit_code


# ---------------------------------------------------------------------------- rollout


def _run_status(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.records import RolloutStep

    split = _latest(settings, "rollouts.splits", RolloutStep, lambda s: s.workflow).get(args.workflow)
    if split is None:
        print(f"no rollout of {args.workflow!r} on {settings.topic('rollouts.splits')}")
        return 1
    print(f"{split.workflow}: {split.version} at {split.traffic_share:.0%}, {split.baseline_version} the rest "
          f"(step {split.step}, {split.verdict}: {split.reason})")
    metrics = orjson.loads(split.evidence or "{}").get("metrics", [])
    if metrics:
        print(f"  {'METRIC':12} {'VERDICT':9} {'BASELINE':>10} {'CANARY':>10} {'DELTA':>9} {'CS':>22} {'MARGIN':>8} {'N':>12}")
        for m in metrics:
            if m["cs_low"] is None or m["cs_high"] is None:  # pending: no sequence yet (infinite bounds)
                m["cs_low"], m["cs_high"] = float("-inf"), float("inf")
            cs = f"[{m['cs_low']:.4g}, {m['cs_high']:.4g}]"
            print(f"  {m['metric']:12} {m['judgement']:9} {m['baseline']:>10.4g} {m['canary']:>10.4g} {m['delta']:>9.3g} "
                  f"{cs:>22} {m['margin']:>8.3g} {m['n_baseline']:>6}/{m['n_canary']}")
    return 0


def _run_control(args: argparse.Namespace, settings: Settings) -> int:
    from confluent_kafka import Producer

    from schemas.records import Command
    from schemas.serde import make_codec
    from schemas.signing import sign

    action = args.action_name
    now_ms = int(time.time() * 1000)
    operator = args.operator or getattr(settings, "operator", None) or "unknown"
    command = sign(Command(f"rollout-{action}-{uuid.uuid4().hex[:12]}", now_ms, args.workflow, action,
                           args.reason or f"{action} by {operator}", "{}", now_ms + 600_000, operator, ""),
                   settings.signing_key_bytes)
    producer = Producer(settings.kafka_config())
    codec = make_codec(Command, topic=settings.topic("rollouts.control"), registry_url=settings.schema_registry_url)
    producer.produce(settings.topic("rollouts.control"), key=args.workflow.encode(), value=codec.encode(command))
    if producer.flush(10):
        print("loopwise rollout: the control record was not acknowledged", file=sys.stderr)
        return 1
    print(f"sent {action} for {args.workflow} (signed, {command.command_id}); the rollout stage applies it")
    return 0
