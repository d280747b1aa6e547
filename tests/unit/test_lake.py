"""The Parquet lake in memory (files in a temp folder): schemas, replays without duplicates, compaction, SQL."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import pyarrow.parquet as pq

from infra.settings import Settings
from infra.topics import BY_NAME, TOPICS
from schemas.records import DeadLetter, RequestEvent
from schemas.serde import json_codec
from sinks.lake_query import query
from sinks.parquet import LakeWriter, hour_of, live, parse_path, table_schema
from sinks.prometheus import Metrics
from streams.edge import RawMessage
from streams.stages.base import StageEnv
from streams.stages.lake import LakeStage
from tests.factories import make_metric, make_request

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000
RECORD_OF = {spec.name: spec.record for spec in TOPICS}


def stage(lake: Path, compact_interval_s: float = 3600.0) -> LakeStage:
    settings = Settings(bootstrap_servers="unused:9092", topic_prefix="p.", lake_url=str(lake),
                        lake_compact_interval_s=compact_interval_s, lake_retention_days=0)
    return LakeStage(StageEnv(settings, Metrics(), now_ms=lambda: T0 + 365 * 86_400_000))


def requests(first: int, last: int, partition: int = 0, step_ms: int = 60_000) -> list[RawMessage]:
    codec = json_codec(RequestEvent)
    return [RawMessage("p.requests", partition, i, f"r{i}".encode(),
                       codec.encode(make_request(f"r{i}", ts_ms=T0 + i * step_ms)), T0)
            for i in range(first, last + 1)]


def offsets(lake: Path, topic: str = "requests") -> list[tuple[int, int]]:
    _cols, rows = query(str(lake), f"SELECT _partition, _offset FROM {topic} ORDER BY 1, 2", "p.", RECORD_OF)
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_every_topic_schema_comes_from_its_avro_schema() -> None:
    for spec in TOPICS:
        schema = table_schema(__import__("schemas.serde", fromlist=["RECORD_TYPES"]).RECORD_TYPES[spec.record])
        assert schema.names[-4:] == ["_partition", "_offset", "_key", "_kafka_ts_ms"]
    schema = table_schema(RequestEvent)
    assert schema.field("ts_ms").type == pa.int64() and not schema.field("ts_ms").nullable
    assert schema.field("variant").nullable and schema.field("status").type == pa.string()
    assert pa.types.is_struct(schema.field("context").type)
    assert pa.types.is_map(schema.field("context").type.field("attributes").type)
    assert table_schema(DeadLetter).field("value").type == pa.binary()


def test_stage_writes_hive_partitions_named_by_offsets_with_typed_columns(tmp_path: Path) -> None:
    lake = stage(tmp_path)
    lake.handle(requests(0, 89))  # 90 minutes of event time: two hours
    files = LakeWriter(str(tmp_path)).files()
    assert {(f.topic, f.date, f.hour) for f in files} == {("p.requests", *hour_of(T0)),
                                                          ("p.requests", *hour_of(T0 + 89 * 60_000))}
    assert files[0].path.split("/")[-4:-1] == ["topic=p.requests", "date=2023-11-14", "hour=22"]
    table = pq.read_table(files[0].path)
    assert table.schema.field("latency_ms").type == pa.float64()
    assert table.column("_offset").to_pylist() == list(range(files[0].first, files[0].last + 1))
    assert offsets(tmp_path) == [(0, i) for i in range(90)]


def test_a_replay_after_a_crash_rewrites_instead_of_duplicating(tmp_path: Path) -> None:
    first = stage(tmp_path)
    first.handle(requests(0, 39))
    first.handle(requests(40, 79))  # written, then the worker dies before committing offsets 40..79
    replay = stage(tmp_path)  # restarted: resumes at the committed offset 40, in batches of another size
    replay.handle(requests(40, 59))
    replay.handle(requests(60, 99))
    assert offsets(tmp_path) == [(0, i) for i in range(100)]


def test_a_rebalance_away_and_back_discards_what_another_owner_left_uncommitted(tmp_path: Path) -> None:
    lake = stage(tmp_path)
    lake.handle(requests(0, 19))
    lake.forget(0)
    stage(tmp_path).handle(requests(20, 29))  # another worker, which crashed before committing 20..29
    lake.handle(requests(20, 24))
    assert offsets(tmp_path) == [(0, i) for i in range(25)]


def test_compaction_merges_committed_files_and_keeps_each_record_once(tmp_path: Path) -> None:
    lake = stage(tmp_path, compact_interval_s=0.0)
    for start in range(0, 50, 5):  # ten small batches within one hour
        lake.handle(requests(start, start + 4, step_ms=1000))
    files = LakeWriter(str(tmp_path)).files()
    assert len(files) < 5 and files[0].first == 0  # merged: the newest (uncommitted) batches stay apart
    assert offsets(tmp_path) == [(0, i) for i in range(50)]
    assert lake.env.metrics.value("loopwise_lake_files_total", action="compacted") > 0


def test_a_file_covered_by_another_is_redundant_after_a_half_done_compaction() -> None:
    merged = parse_path("/l/topic=t/date=2023-11-14/hour=22/" + "t+0+00000000000000000000+00000000000000000099.parquet")
    part = parse_path("/l/topic=t/date=2023-11-14/hour=22/" + "t+0+00000000000000000050+00000000000000000099.parquet")
    other = parse_path("/l/topic=t/date=2023-11-14/hour=22/" + "t+1+00000000000000000050+00000000000000000099.parquet")
    assert merged and part and other
    keep, redundant = live([part, merged, other])
    assert keep == sorted([merged, other]) and redundant == [part]


def test_straddling_file_is_cut_at_the_replayed_offset(tmp_path: Path) -> None:
    writer = LakeWriter(str(tmp_path))
    rows = [r for r in (stage_row(i) for i in range(10))]
    writer.write(RequestEvent, "p.requests", 0, *hour_of(T0), rows)
    writer.discard_from(RequestEvent, "p.requests", 0, 6)
    (only,) = writer.files()
    assert (only.first, only.last) == (0, 5)
    assert pq.read_table(only.path).column("_offset").to_pylist() == list(range(6))


def stage_row(offset: int) -> dict[str, object]:
    import orjson

    row = orjson.loads(orjson.dumps(make_request(f"r{offset}", ts_ms=T0)))
    row.update(_partition=0, _offset=offset, _key=None, _kafka_ts_ms=None)
    return row


def test_retention_deletes_whole_old_hours(tmp_path: Path) -> None:
    writer = LakeWriter(str(tmp_path))
    writer.write(RequestEvent, "p.requests", 0, *hour_of(T0), [stage_row(0)])
    writer.write(RequestEvent, "p.requests", 0, *hour_of(T0 + 5 * HOUR_MS), [stage_row(1)])
    assert writer.expire(T0 + 2 * HOUR_MS) == 1
    assert [f.first for f in writer.files()] == [1]


def test_invalid_records_are_skipped_and_other_topics_get_their_views(tmp_path: Path) -> None:
    lake = stage(tmp_path)
    metric = make_metric(ts_ms=T0)
    batch = [RawMessage("p.metrics", 1, 7, metric.source.encode(), json_codec(type(metric)).encode(metric), T0),
             RawMessage("p.metrics", 1, 8, b"x", b"{not json", T0)]
    assert lake.handle(batch) == []  # nothing sent: not even a dead letter (the owner stage sends those)
    assert lake.skipped == 1
    cols, rows = query(str(tmp_path), "SELECT name, value, _offset, topic, hour FROM metrics", "p.", RECORD_OF)
    assert cols == ["name", "value", "_offset", "topic", "hour"] and rows == [("cpu", metric.value, 7, "p.metrics", 22)]
    assert "lake" not in BY_NAME and "p.metrics" not in lake._owned


def test_loopwise_lake_query_prints_sql_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli import main

    stage(tmp_path).handle(requests(0, 9))
    monkeypatch.setenv("LOOPWISE_LAKE_DIR", str(tmp_path))
    monkeypatch.setenv("LOOPWISE_TOPIC_PREFIX", "p.")
    assert main(["lake", "query", "SELECT route, count(*) AS n FROM requests GROUP BY route", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["route,n", "gpt-large,10"]
    assert main(["lake", "views"]) == 0
    assert "requests" in capsys.readouterr().out
