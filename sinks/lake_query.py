"""SQL over the Parquet lake with DuckDB: one view per topic, over the live files only (never a redundant one)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from schemas.serde import RECORD_TYPES
from sinks.parquet import LakeFile, LakeWriter, live, table_schema

_HIVE = (pa.field("topic", pa.string()), pa.field("date", pa.string()), pa.field("hour", pa.int32()))


def view_name(topic: str, prefix: str) -> str:
    """``lw.decisions.routing`` → ``decisions_routing`` (the prefix dropped, dots made underscores).

    >>> view_name("lw.commands.remediation", "lw.")
    'commands_remediation'
    """
    logical = topic[len(prefix):] if prefix and topic.startswith(prefix) else topic
    return logical.replace(".", "_").replace("-", "_")


def connect(url: str, prefix: str, record_of: dict[str, str]) -> tuple[Any, dict[str, int]]:
    """A DuckDB connection with a view per topic found in the lake; returns it and the files per view.

    Args:
        record_of: record type name per logical topic name (``infra.topics``), for each view's schema.
    """
    import duckdb  # pinned; imported here so that the worker never pays for it

    writer = LakeWriter(url)
    files, _redundant = live(writer.files())
    by_topic: dict[str, list[LakeFile]] = defaultdict(list)
    for f in files:
        by_topic[f.topic].append(f)
    con = duckdb.connect()
    counts: dict[str, int] = {}
    for topic, parts in sorted(by_topic.items()):
        name = view_name(topic, prefix)
        record = record_of.get(topic[len(prefix):] if topic.startswith(prefix) else topic)
        schema = None
        if record:  # the current schema: files of an older (compatible) version read with nulls for new fields
            schema = pa.schema([*table_schema(RECORD_TYPES[record]), *_HIVE])
        dataset = ds.dataset([f.path for f in parts], schema=schema, format="parquet", filesystem=writer.fs,
                             partitioning=ds.partitioning(pa.schema(_HIVE), flavor="hive"),
                             partition_base_dir=writer.root)
        con.register(f"_{name}_dataset", dataset)
        con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_{name}_dataset"')
        counts[name] = len(parts)
    con.register("lake_files", _files_table(files))
    return con, counts


def _files_table(parts: list[LakeFile]) -> pa.Table:
    return pa.table({"topic": [p.topic for p in parts], "date": [p.date for p in parts],
                     "hour": [p.hour for p in parts], "partition": [p.partition for p in parts],
                     "first_offset": [p.first for p in parts], "last_offset": [p.last for p in parts],
                     "path": [p.path for p in parts]})


def query(url: str, sql: str, prefix: str, record_of: dict[str, str]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` over the lake's views; returns (column names, rows)."""
    con, _counts = connect(url, prefix, record_of)
    try:
        result = con.execute(sql)
        columns = [d[0] for d in result.description or []]
        return columns, result.fetchall()
    finally:
        con.close()
