"""kill -9 the lake worker mid-stream, restart it: every record of every topic is in the lake exactly once."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from pathlib import Path

import orjson

from infra.admin import apply_topics
from infra.settings import Settings
from infra.topics import TOPICS
from schemas.records import Anomaly, FeedbackEvent, LogEvent, MetricEvent, RequestEvent
from schemas.serde import json_codec
from sinks.lake_query import query
from sinks.parquet import LakeWriter, hour_of
from tests.conftest import wait_until
from tests.factories import make_anomaly, make_feedback, make_log, make_metric, make_request
from tests.integration.worker_proc import produce_tracked, start_worker

T0 = 1_700_000_000_000
CHUNKS, CHUNK = 8, 100  # 800 requests plus feedback, metrics, logs and anomalies over ~3 h of event time
RECORD_OF = {spec.name: spec.record for spec in TOPICS}


def _items(settings: Settings, chunk: int) -> list[tuple[str, bytes, bytes]]:
    codecs = {t: json_codec(t) for t in (RequestEvent, FeedbackEvent, MetricEvent, LogEvent, Anomaly)}
    items = []
    for i in range(chunk * CHUNK, (chunk + 1) * CHUNK):
        ts = T0 + i * 9_000
        rid = f"r-{i:05d}"
        items.append((settings.topic("requests"), rid.encode(), codecs[RequestEvent].encode(make_request(rid, ts_ms=ts))))
        if i % 2 == 0:
            fb = make_feedback(rid, ts_ms=ts + 1000, feedback_id=f"f-{i}")
            items.append((settings.topic("feedback"), rid.encode(), codecs[FeedbackEvent].encode(fb)))
        if i % 4 == 0:
            metric = make_metric(f"gw-{i % 3}", ts_ms=ts)
            items.append((settings.topic("metrics"), metric.source.encode(), codecs[MetricEvent].encode(metric)))
            log = make_log(ts_ms=ts)
            items.append((settings.topic("logs"), log.service.encode(), codecs[LogEvent].encode(log)))
        if i % 25 == 0:
            anomaly = make_anomaly(ts_ms=ts)
            items.append((settings.topic("anomalies"), anomaly.entity.encode(), codecs[Anomaly].encode(anomaly)))
    return items


def _lake_counts(lake: Path, settings: Settings) -> tuple[Counter[tuple[str, int, int]], int]:
    """(copies of each (topic, partition, offset), rows in all) across the per-topic views."""
    copies: Counter[tuple[str, int, int]] = Counter()
    for view in ("requests", "feedback", "metrics", "logs", "anomalies"):
        try:
            _cols, rows = query(str(lake), f"SELECT topic, _partition, _offset FROM {view}", settings.topic_prefix,
                                RECORD_OF)
        except Exception:  # noqa: BLE001 — a view not written yet, or a file compacted away while listed
            continue
        copies.update((t, p, o) for t, p, o in rows)
    return copies, sum(copies.values())


def _leave_uncommitted_files(lake: Path, settings: Settings) -> int:
    """What a worker killed between writing a batch's files and committing its offsets leaves: for each requests
    partition, a file for the 40 offsets after the last one in the lake (the kill rarely lands in that window
    by itself). The restarted worker must discard them, or those offsets end up in the lake twice."""
    writer = LakeWriter(str(lake))
    topic = settings.topic("requests")
    newest: dict[int, int] = {}
    for f in writer.files(topic):
        newest[f.partition] = max(newest.get(f.partition, -1), f.last)
    for partition, last in newest.items():
        rows = []
        for offset in range(last + 1, last + 41):
            row = orjson.loads(orjson.dumps(make_request(f"ghost-{partition}-{offset}", ts_ms=T0)))
            row.update(_partition=partition, _offset=offset, _key=None, _kafka_ts_ms=None)
            rows.append(row)
        writer.write(RequestEvent, topic, partition, *hour_of(T0), rows)
    return len(newest)


def test_kill_9_mid_stream_then_restart_leaves_every_record_in_the_lake_exactly_once(
        settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    lake = tmp_path / "lake"
    env = {"LOOPWISE_STAGES": "lake", "LOOPWISE_LAKE_DIR": str(lake), "LOOPWISE_LAKE_COMPACT_INTERVAL_S": "0.5"}
    produced: set[tuple[str, int, int]] = set()
    half_written = threading.Event()

    def produce_all() -> None:
        for chunk in range(CHUNKS):
            items = _items(settings, chunk)
            for (topic, _k, _v), (partition, offset) in zip(items, produce_tracked(settings, items)):
                produced.add((topic, int(partition or 0), int(offset or 0)))
            if chunk == CHUNKS // 3:
                half_written.wait(60)  # the rest arrives while the worker is dead or restarting

    first = start_worker(settings, tmp_path / "first.log", env)
    producer = threading.Thread(target=produce_all, daemon=True)
    try:
        producer.start()
        wait_until(lambda: _lake_counts(lake, settings)[1] >= CHUNK * 2, 60, interval_s=0.2,
                   message=lambda: f"lake rows: {_lake_counts(lake, settings)[1]}; log:\n{first.log_tail()}")
        first.process.send_signal(signal.SIGKILL)  # mid-stream: files written, offsets maybe not committed
        assert first.process.wait(10) == -signal.SIGKILL
    finally:
        half_written.set()
        if first.is_running:
            first.process.kill()
    leftovers = _leave_uncommitted_files(lake, settings)
    second = start_worker(settings, tmp_path / "second.log", env)
    try:
        producer.join(120)
        assert not producer.is_alive()
        wait_until(lambda: set(_lake_counts(lake, settings)[0]) >= produced, 90, interval_s=0.5,
                   message=lambda: f"{len(produced - set(_lake_counts(lake, settings)[0]))} of {len(produced)} "
                                   f"records not in the lake; log:\n{second.log_tail()}")
    finally:
        second.terminate()
    copies, rows = _lake_counts(lake, settings)
    assert set(copies) == produced, "the lake holds exactly the produced records"
    assert rows == len(produced) and max(copies.values()) == 1, \
        f"duplicates: {[k for k, n in copies.items() if n > 1][:5]}"
    assert leftovers and "never committed" in (tmp_path / "second.log").read_text()
    assert {t for t, _p, _o in produced} == {settings.topic(n) for n in ("requests", "feedback", "metrics", "logs",
                                                                         "anomalies")}
