"""Count-and-forward as Faust's docs write it: a Record, ``async for event in stream``, a Table, ``send`` per event.

faust-streaming 0.15.3 defaults (aiokafka transport, json serializer, memory
store, changelog-backed table) except what a sane deployment on the embedded
broker must set: a 6 s session timeout (the broker holds a join for half of
it), ``-l info`` (faust's default ``-l warn`` sets the root logger to DEBUG:
every debug call formatted, ~27 % of the time), no web server (two benches
would fight over port 6066).

Child: ``python -m bench.throughput.faust_idiomatic BOOTSTRAP IN OUT APP_ID DATA_DIR``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import faust

from bench.throughput.harness import Child, Result, first_stopped, unique, watch_output


class Event(faust.Record, serializer="json"):
    """The 200-byte input event (see ``bench.throughput.data.make_events``)."""

    key: str
    seq: int
    ts_ms: int
    route: str
    latency_ms: float
    status: str
    pad: str


class Count(faust.Record, serializer="json"):
    """The forwarded running count of a key."""

    key: str
    count: int


def build_app(bootstrap: str, in_topic: str, out_topic: str, app_id: str, data_dir: str) -> faust.App:
    """The app, as the docs' word-count example builds it."""
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", broker_session_timeout=6.0, topic_partitions=4,
                    web_enabled=False, datadir=data_dir)
    events = app.topic(in_topic, key_type=str, value_type=Event)
    counts_out = app.topic(out_topic, key_type=str, value_type=Count)
    counts = app.Table("counts", default=int)

    @app.agent(events)
    async def count_events(stream: faust.StreamT[Event]) -> None:
        async for event in stream:
            counts[event.key] += 1
            await counts_out.send(key=event.key, value=Count(key=event.key, count=counts[event.key]))

    return app


def run_faust_idiomatic(bootstrap: str, in_topic: str, out_topic: str, n_events: int, log_dir: Path,
                        timeout_s: float = 120.0) -> Result:
    """Forward the ``n_events`` already in ``in_topic``; the rate seen on ``out_topic``."""
    data_dir = tempfile.mkdtemp(prefix="bench-faust-")
    child = Child(["-m", "bench.throughput.faust_idiomatic", bootstrap, in_topic, out_topic, unique("bench-faust"),
                   data_dir], log_dir / f"{in_topic}.log")
    try:
        return watch_output(bootstrap, out_topic, n_events, timeout_s, first_stopped([child]), "faust idiomatic")
    finally:
        child.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    bench_app = build_app(*sys.argv[1:6])
    sys.argv = [sys.argv[0], "worker", "-l", "info"]
    bench_app.main()
