"""Count-and-forward written the loopwise way: ``run_loopwise_count_forward`` is the one entry the bench calls.

It runs, per worker, a child process hosting a Faust app whose one stage runs on
loopwise's batch engine (``streams.engine.StageRunner``), as ``loopwise worker``
does: raw bytes, batches of up to 2,000, counts per key kept as durable state
(each batch's changed counts go to a compacted changelog), and outputs, state
and input offsets committed in one transaction per batch (exactly-once).
``--faust-agents`` (env ``BENCH_LOOPWISE_PATH=agents``) measures the earlier
path instead: Faust agents with ``take_events`` batches, at-least-once, no
durable counts. Contract: ``in_topic`` already holds ``n_events`` events;
return once all of them are forwarded to ``out_topic``.

Child: ``python -m bench.throughput.loopwise BOOTSTRAP IN OUT GROUP RUN_DIR WORKER_ID``. It
writes ``RUN_DIR/assigned.WORKER_ID`` (its partitions of IN) on every
rebalance and starts processing once ``RUN_DIR/go`` exists, so that several
workers are measured after their group settled, not through a rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.throughput.harness import BenchError, Child, Result, first_stopped, remaining, unique, watch_output

BATCH_MAX, BATCH_WITHIN_S = 500, 0.02
FETCH_MAX_WAIT_MS = 10  # as Settings.effective_fetch_max_wait_ms on the embedded broker


def run_loopwise_count_forward(bootstrap: str, in_topic: str, out_topic: str, n_events: int, partitions: int,
                               workers: int = 1) -> Result:
    """Count per key and forward the ``n_events`` already in ``in_topic`` with ``workers`` processes (one group).

    Args:
        bootstrap: the cluster.
        in_topic: holds ``n_events`` 200-byte JSON events keyed by their ``key`` field.
        out_topic: receives one ``{"key", "count"}`` JSON message per input event.
        n_events: events to forward before returning.
        partitions: partitions of ``in_topic`` (all must be assigned before processing starts).
        workers: worker processes in the same consumer group.

    Returns:
        The forwarding rate seen by a consumer of ``out_topic``.

    Raises:
        BenchError: a worker died, the group did not settle, or the outputs did not all arrive in time.
    """
    run_dir = Path(tempfile.mkdtemp(prefix="bench-loopwise-"))
    group = unique("bench-loopwise")
    children = [Child(["-m", "bench.throughput.loopwise", bootstrap, in_topic, out_topic, group, str(run_dir), str(i)],
                      run_dir / f"worker-{i}.log") for i in range(workers)]
    try:
        _wait_settled(run_dir, workers, partitions, children, timeout_s=60.0)
        (run_dir / "go").touch()
        timeout_s = 60.0 + n_events / 2_000
        result = watch_output(bootstrap, out_topic, n_events, timeout_s, first_stopped(children),
                              f"loopwise x{workers}")
    finally:
        for child in children:
            child.stop()
    shutil.rmtree(run_dir, ignore_errors=True)  # kept when it failed: the workers' logs are there
    return result


def _wait_settled(run_dir: Path, workers: int, partitions: int, children: list[Child], timeout_s: float) -> None:
    """Until every worker holds some partitions and together they hold all of them."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = [_assigned(run_dir / f"assigned.{i}") for i in range(workers)]
        if all(held) and sum(held) == partitions:
            return
        stopped = first_stopped(children)()
        if stopped:
            raise BenchError(f"a loopwise worker stopped before its group settled: {stopped}")
        if not remaining(deadline):
            raise BenchError(f"loopwise workers' group did not settle in {timeout_s:.0f} s (partitions held: {held})")
        time.sleep(0.05)


def _assigned(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _worker(bootstrap: str, in_topic: str, out_topic: str, group: str, run_dir: Path, worker_id: str) -> None:
    """The child: a Faust app configured like ``streams.app.create_app``'s, with one counting batch agent."""
    import faust

    class BenchApp(faust.App):
        fetch_max_wait_ms: int | None = FETCH_MAX_WAIT_MS  # read by the loopwise:// transport

    app = BenchApp(
        group, broker=f"loopwise://{bootstrap}", broker_session_timeout=6.0, broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0, topic_partitions=4, topic_allow_declare=False, topic_disable_leader=True,
        consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once", store="memory://",
        web_enabled=False, datadir=str(run_dir / f"data-{worker_id}"), producer_linger=0.005,
        stream_wait_empty=False, logging_config=None,
    )
    go = run_dir / "go"
    counts: dict[str, int] = {}

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: Any, **_: Any) -> None:
        (run_dir / f"assigned.{worker_id}").write_text(str(sum(1 for tp in assigned if tp.topic == in_topic)))

    async def count_forward(stream: Any) -> None:  # a faust Stream (StreamT lacks take_events)
        while not go.exists():
            await asyncio.sleep(0.01)
        # As streams/agents.py: take_events acks a batch when the next is asked for,
        # after every output of this one was acknowledged (at-least-once).
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            futures = []
            for event in events:
                key = orjson.loads(event.message.value)["key"]
                counts[key] = counts.get(key, 0) + 1
                value = orjson.dumps({"key": key, "count": counts[key]})
                futures.append(await app.producer.send(out_topic, event.message.key, value, None, None, None))
            await asyncio.gather(*futures)

    app.agent(app.topic(in_topic, key_serializer="raw", value_serializer="raw"), name="bench.count")(count_forward)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faust.Worker(app, loglevel="info", quiet=True, override_logging=False).execute_from_commandline()


class CountForward:
    """The count-and-forward pipeline as a loopwise stage (the shape ``StageRunner`` drives)."""

    name, has_state, is_global = "count", True, False

    def __init__(self, in_topic: str, out_topic: str) -> None:
        import threading
        from types import SimpleNamespace

        self.topics, self._out = (in_topic,), out_topic
        self.env = SimpleNamespace(lock=threading.Lock())
        self.counts: dict[str, int] = {}
        self._dirty: dict[tuple[int, str], int] = {}

    def handle(self, batch: Any) -> list[Any]:
        from streams.stages import Outgoing

        out, counts, dirty, dumps, loads = [], self.counts, self._dirty, orjson.dumps, orjson.loads
        for m in batch:
            key = loads(m.value)["key"]
            n = counts[key] = counts.get(key, 0) + 1
            dirty[(m.partition, key)] = n
            out.append(Outgoing(self._out, m.key, dumps({"key": key, "count": n})))
        return out

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        changes = [(p, k.encode(), str(n).encode()) for (p, k), n in self._dirty.items()]
        self._dirty.clear()
        return changes

    def restore(self, partition: int, records: Any) -> None:
        for key, value in records:
            self.counts[key.decode()] = int(value or b"0")

    def forget(self, partition: int) -> None:
        pass


def _engine_worker(bootstrap: str, in_topic: str, out_topic: str, group: str, run_dir: Path, worker_id: str) -> None:
    """The child: a Faust app hosting one engine runner, exactly as ``loopwise worker`` hosts its stages."""
    import faust

    from infra.settings import Settings
    from sinks.prometheus import Metrics
    from streams.app import EngineBoot
    from streams.engine import EngineConfig, StageRunner
    from streams.host import register_engine

    class BenchApp(faust.App):
        BootStrategy = EngineBoot

    settings = Settings(bootstrap_servers=bootstrap, app_id=group, topic_prefix="bench.", is_embedded=True,
                        worker_id=f"w{worker_id}", session_timeout_s=6.0)
    go = run_dir / "go"

    class Runner(StageRunner):
        is_paused = False

        def _on_assign(self, producer: Any) -> Any:
            inner = super()._on_assign(producer)

            def on_assign(consumer: Any, partitions: Any) -> None:
                inner(consumer, partitions)
                if not go.exists():
                    # Measured once the whole group holds its partitions: until then they stay
                    # paused. Not by blocking here: a member stuck in its rebalance callback never
                    # rejoins, so the next worker's join would wait for it (the 2-worker hang).
                    consumer.assign(partitions)
                    consumer.pause(partitions)
                    self.is_paused = True
                (run_dir / f"assigned.{worker_id}").write_text(str(sum(1 for tp in partitions if tp.topic == in_topic)))
            return on_assign

        def _report_lag(self, consumer: Any) -> None:  # called from the runner's loop, between batches
            if self.is_paused and go.exists():
                consumer.resume(consumer.assignment())
                self.is_paused = False
            super()._report_lag(consumer)
            if self.is_paused:
                self._next_lag_s = 0.0  # look for the go file on every turn of the loop

    app = BenchApp(group, broker=f"kafka://{bootstrap}", web_enabled=False, datadir=str(run_dir / f"data-{worker_id}"))
    register_engine(app, [Runner(settings, CountForward(in_topic, out_topic), Metrics(), EngineConfig())])  # type: ignore[arg-type]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faust.Worker(app, loglevel="info", quiet=True, override_logging=False).execute_from_commandline()


if __name__ == "__main__":
    import os

    worker = _worker if os.environ.get("BENCH_LOOPWISE_PATH") == "agents" else _engine_worker
    worker(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5]), sys.argv[6])
