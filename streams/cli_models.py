"""``loopwise models list | show | rollback``: the versions of each workflow's learned model, and going back to one.

Versions are the signed ``ModelVersion`` records the ``learn`` stage writes to
``lw.models`` (one per workflow every 5 minutes of event time while its
policies change, and one per rollback). ``rollback WORKFLOW --to VERSION``
publishes a signed ``model_rollback`` command carrying that record; the
``learn`` stage that owns the workflow checks both signatures, restores the
recorded state, republishes its policies and records the rollback as a new
version, so history is never rewritten.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from typing import Any, Callable

from infra.settings import Settings


def register(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``models`` and its actions to the ``loopwise`` parser."""
    parser = sub.add_parser("models", help="versions of the learned routing models: list, show, roll back")
    actions = parser.add_subparsers(metavar="ACTION")
    listing = command(actions, "list", "every workflow's model versions, newest last", _run_list)
    listing.add_argument("workflow", nargs="?", help="only this workflow")
    show = command(actions, "show", "one version of a workflow's model (default: the newest)", _run_show)
    show.add_argument("workflow")
    show.add_argument("--version", type=int, help="the version (default: the newest)")
    back = command(actions, "rollback", "restore a workflow's model as it was at an earlier version", _run_rollback)
    back.add_argument("workflow")
    back.add_argument("--to", type=int, required=True, dest="version", help="the version to go back to")
    back.add_argument("--operator", default="cli", help="who asks (recorded in the command)")


def _history(settings: Settings, workflow: str | None) -> list[Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from schemas.records import ModelVersion
    from schemas.serde import make_codec

    topic = settings.topic("models")
    codec = make_codec(ModelVersion, topic=topic, registry_url=settings.schema_registry_url, max_event_bytes=64 << 20)
    consumer = Consumer({**settings.kafka_config(), "group.id": "loopwise-models-cli", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 50, "fetch.queue.backoff.ms": 0, "enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        parts = list(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        pending, records = set(parts), []
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    pending.discard(message.partition())  # end of partition (or an error: stop reading it)
                    continue
                record = codec.decode(message.value() or b"")
                if workflow is None or record.workflow == workflow:
                    records.append(record)
        return sorted(records, key=lambda r: (r.workflow, r.version))
    finally:
        consumer.close()


def _run_list(args: argparse.Namespace, settings: Settings) -> int:
    history = _history(settings, args.workflow)
    if not history:
        print("no model version recorded yet" + (f" for {args.workflow}" if args.workflow else ""))
        return 0
    print(f"{'WORKFLOW':24} {'VERSION':>7} {'TS_MS':>14} {'N':>7} {'MAE':>7} {'BIAS':>7}  REASON")
    for r in history:
        print(f"{r.workflow:24} {r.version:>7} {r.ts_ms:>14} {r.n:>7} {r.mae:>7.3f} {r.bias:>7.3f}  {r.reason}")
    return 0


def _pick(settings: Settings, workflow: str, version: int | None) -> Any:
    history = _history(settings, workflow)
    if not history:
        raise LookupError(f"no model version recorded for workflow {workflow!r}")
    if version is None:
        return history[-1]
    found = [r for r in history if r.version == version]
    if not found:
        raise LookupError(f"workflow {workflow!r} has no model version {version}; "
                          f"recorded: {', '.join(str(r.version) for r in history)}")
    return found[-1]


def _run_show(args: argparse.Namespace, settings: Settings) -> int:
    import json

    record = _pick(settings, args.workflow, args.version)
    state = json.loads(record.state)
    print(json.dumps({"workflow": record.workflow, "version": record.version, "ts_ms": record.ts_ms,
                      "model": record.model, "reason": record.reason, "n": record.n, "mae": record.mae,
                      "bias": record.bias, "segments": [s.get("segment") for s in state.get("segments", [])]},
                     indent=2))
    return 0


def _run_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from confluent_kafka import Producer

    from processors.lifecycle import MODEL_ROLLBACK, verify_model
    from schemas.records import Command, ModelVersion
    from schemas.serde import make_codec
    from schemas.signing import sign

    key = settings.signing_key_bytes
    record = _pick(settings, args.workflow, args.version)
    if not verify_model(record, key):
        print(f"loopwise models: version {args.version} of {args.workflow} is not signed with this installation's "
              "key: refusing to roll back to it", file=sys.stderr)
        return 1
    codec = make_codec(ModelVersion, topic=settings.topic("models"), registry_url=None, max_event_bytes=64 << 20)
    now_ms = time.time_ns() // 1_000_000
    command_id = hashlib.blake2b(f"{args.workflow}|{args.version}|{now_ms}".encode(), digest_size=12).hexdigest()
    command = sign(Command(command_id=f"rollback-{command_id}", ts_ms=now_ms, target=args.workflow,
                           action=MODEL_ROLLBACK, reason=f"model rollback to v{args.version} asked by {args.operator}",
                           evidence="{}", expires_ts_ms=now_ms + 3_600_000, issuer=f"cli:{args.operator}",
                           signature="", params={"version": str(args.version), "model": codec.encode(record).decode()}),
                   key)
    topic = settings.topic("commands.remediation")
    producer = Producer({**settings.kafka_config(), "message.max.bytes": 64 << 20})
    producer.produce(topic, key=args.workflow.encode(),
                     value=make_codec(Command, topic=topic, registry_url=settings.schema_registry_url,
                                      max_event_bytes=64 << 20).encode(command))
    if producer.flush(30):
        print("loopwise models: the rollback command was not delivered within 30 s", file=sys.stderr)
        return 1
    print(f"asked {args.workflow} to roll back to model v{args.version} (command {command.command_id}); "
          "`loopwise models list` shows it as a new version once the learn stage applied it")
    return 0
