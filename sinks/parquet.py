"""The Parquet data lake: Hive-partitioned files named by source offsets, so a replay overwrites, never duplicates.

Layout: ``<root>/topic=<topic>/date=<YYYY-MM-DD>/hour=<HH>/<topic>+<partition>+<first>+<last>.parquet``,
one file per (topic, partition, event hour) per batch, holding *every* record of
that source partition and hour whose offset lies in ``[first, last]``. That one
invariant makes the lake idempotent without transactions:

- a batch is written (atomically per file: temporary name, then rename) before
  its offsets are committed; after a crash the batch is read again from the
  committed offset ``c``, so every file of that partition whose ``first >= c``
  was written by an uncommitted batch: ``discard_from(c)`` deletes them, then
  the replay writes its own files (same names when its boundaries are the same);
- compaction merges committed files of one (topic, partition, hour) into one
  file named by the merged range, then deletes the parts; a file whose range
  lies inside another's holds nothing new (a compaction that crashed half way),
  so readers (``live_files``) skip it and the next compaction deletes it.

Columns are the topic's Avro schema (``schemas/avro``) as Arrow types, plus the
source position ``_partition``, ``_offset``, ``_key``, ``_kafka_ts_ms``.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache, lru_cache
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute  # noqa: F401 — pa.compute
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from schemas.catalog import schema_of

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
META_FIELDS = (
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_key", pa.string()),
    pa.field("_kafka_ts_ms", pa.int64()),
)
_NAME = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<first>\d+)\+(?P<last>\d+)\.parquet$")
_PRIMITIVES: dict[str, pa.DataType] = {
    "string": pa.string(), "long": pa.int64(), "int": pa.int32(), "double": pa.float64(),
    "float": pa.float32(), "boolean": pa.bool_(), "bytes": pa.binary(),
}


class LakeError(RuntimeError):
    """The lake cannot be written or read (bad URL, unreadable file)."""


# ----------------------------------------------------------------- schemas


def arrow_type(avro: Any, named: dict[str, pa.DataType] | None = None) -> tuple[pa.DataType, bool]:
    """The Arrow type of an Avro type, and whether it is nullable.

    >>> arrow_type(["null", "string"])
    (DataType(string), True)
    >>> arrow_type({"type": "map", "values": "double"})[0]
    MapType(map<string, double>)
    """
    named = {} if named is None else named
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            return pa.string(), True  # a union of several types: kept as its JSON text
        return arrow_type(branches[0], named)[0], len(branches) < len(avro)
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro], False
        return named[avro.rsplit(".", 1)[-1]], False
    kind = avro["type"]
    if kind == "record":
        fields = [pa.field(f["name"], *arrow_type(f["type"], named)) for f in avro["fields"]]
        named[avro["name"]] = struct = pa.struct(fields)
        return struct, False
    if kind == "enum":
        named[avro["name"]] = pa.string()
        return pa.string(), False
    if kind == "array":
        return pa.list_(arrow_type(avro["items"], named)[0]), False
    if kind == "map":
        return pa.map_(pa.string(), arrow_type(avro["values"], named)[0]), False
    if kind == "fixed":
        return pa.binary(), False
    return arrow_type(kind, named)


@cache
def table_schema(record_type: type) -> pa.Schema:
    """The lake's schema of one record type: its Avro fields, then the source position."""
    avro = schema_of(record_type)
    struct, _ = arrow_type(avro)
    return pa.schema([*struct, *META_FIELDS], metadata={"avro_schema": avro["name"]})


# ------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True, order=True)
class LakeFile:
    """One Parquet file of the lake and what its path says: topic, hour, source partition, offset range."""

    topic: str
    date: str
    hour: int
    partition: int
    first: int
    last: int
    path: str

    def covers(self, other: "LakeFile") -> bool:
        """Whether ``other`` (same topic, partition, hour) holds nothing this file does not."""
        return (self.topic, self.partition, self.date, self.hour) == (other.topic, other.partition, other.date,
                                                                     other.hour) \
            and self.first <= other.first and other.last <= self.last and self.path != other.path


def hour_of(ts_ms: int) -> tuple[str, int]:
    """The UTC (date, hour) of an epoch-millisecond time.

    >>> hour_of(1_700_000_000_000)
    ('2023-11-14', 22)
    """
    return _hour(max(0, ts_ms) // HOUR_MS)


@lru_cache(maxsize=4096)
def _hour(hours: int) -> tuple[str, int]:
    moment = datetime.fromtimestamp(hours * 3600, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d"), moment.hour


def file_name(topic: str, partition: int, first: int, last: int) -> str:
    """``lw.requests+3+00000000000000000100+00000000000000000250.parquet`` (sortable by offset)."""
    return f"{topic}+{partition}+{first:020d}+{last:020d}.parquet"


def parse_path(path: str) -> LakeFile | None:
    """The ``LakeFile`` a path names, or None for anything else (temporary files, strays)."""
    parts = path.rstrip("/").split("/")
    if len(parts) < 4:
        return None
    match = _NAME.match(parts[-1])
    topic_dir, date_dir, hour_dir = parts[-4:-1]
    if match is None or not (topic_dir.startswith("topic=") and date_dir.startswith("date=")
                             and hour_dir.startswith("hour=")):
        return None
    return LakeFile(topic_dir[6:], date_dir[5:], int(hour_dir[5:]), int(match["partition"]),
                    int(match["first"]), int(match["last"]), path)


def live(files: Iterable[LakeFile]) -> tuple[list[LakeFile], list[LakeFile]]:
    """(files to read, redundant files another one covers), each sorted."""
    groups: dict[tuple[str, str, int, int], list[LakeFile]] = defaultdict(list)
    for f in files:
        groups[(f.topic, f.date, f.hour, f.partition)].append(f)
    keep: list[LakeFile] = []
    redundant: list[LakeFile] = []
    for group in groups.values():
        # widest first: a file is redundant when an earlier-kept one covers it
        group.sort(key=lambda f: (f.first, -f.last, f.path))
        kept: list[LakeFile] = []
        for f in group:
            (redundant if any(k.covers(f) for k in kept) else kept).append(f)
        keep.extend(kept)
    return sorted(keep), sorted(redundant)


def open_filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and root path for a lake URL or local folder (s3://, gs://, hdfs://, file://, a path).

    Schemes pyarrow does not know are tried through fsspec when it is installed (``memory://``, ``abfs://``…).
    """
    try:
        fs, root = pafs.FileSystem.from_uri(url)
    except (pa.ArrowInvalid, ValueError) as exc:
        if "://" not in url:
            import os.path

            return pafs.LocalFileSystem(), os.path.abspath(url)
        try:
            import fsspec  # optional: any fsspec filesystem by URL
        except ImportError:
            raise LakeError(f"lake URL {url!r}: pyarrow cannot open it and fsspec is not installed") from exc
        spec_fs, root = fsspec.core.url_to_fs(url)
        return pafs.PyFileSystem(pafs.FSSpecHandler(spec_fs)), root
    return fs, root.rstrip("/")


# ------------------------------------------------------------------ writer


class LakeWriter:
    """Writes, cleans, compacts and expires the lake's files on one filesystem."""

    def __init__(self, url: str, compression: str = "zstd") -> None:
        self.url = url
        self.fs, self.root = open_filesystem(url)
        self.compression = compression
        self.fs.create_dir(self.root, recursive=True)

    def _dir(self, topic: str, date: str, hour: int) -> str:
        return f"{self.root}/topic={topic}/date={date}/hour={hour:02d}"

    def write(self, record_type: type, topic: str, partition: int, date: str, hour: int,
              rows: Sequence[Mapping[str, Any]]) -> LakeFile:
        """Write the rows of one (topic, partition, hour) of a batch, offsets ascending; returns the file."""
        first, last = rows[0]["_offset"], rows[-1]["_offset"]
        table = pa.Table.from_pylist(list(rows), schema=table_schema(record_type))
        directory = self._dir(topic, date, hour)
        path = f"{directory}/{file_name(topic, partition, first, last)}"
        self._put(table, directory, path)
        return LakeFile(topic, date, hour, partition, first, last, path)

    def _put(self, table: pa.Table, directory: str, path: str) -> None:
        self.fs.create_dir(directory, recursive=True)
        temporary = f"{directory}/.tmp-{uuid.uuid4().hex}"
        try:
            pq.write_table(table, temporary, filesystem=self.fs, compression=self.compression)
            self.fs.move(temporary, path)  # atomic on local disks; object stores put whole objects anyway
        except BaseException:
            _delete_quietly(self.fs, temporary)
            raise

    def files(self, topic: str | None = None) -> list[LakeFile]:
        """Every lake file (of one topic), redundant ones included."""
        base = self.root if topic is None else f"{self.root}/topic={topic}"
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except FileNotFoundError:
            return []
        found = (parse_path(info.path) for info in infos if info.type == pafs.FileType.File)
        return sorted(f for f in found if f is not None)

    def files_in_hour(self, topic: str, date: str, hour: int) -> list[LakeFile]:
        """The files of one topic's hour (compaction looks at the hours a batch touched only)."""
        directory = self._dir(topic, date, hour)
        infos = self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        found = (parse_path(info.path) for info in infos if info.type == pafs.FileType.File)
        return sorted(f for f in found if f is not None)

    def discard_from(self, record_type: type, topic: str, partition: int, offset: int) -> int:
        """Remove what one source partition's files hold from ``offset`` on (uncommitted batches' records).

        Files that start there go; a file that straddles the offset (a compaction of a batch
        later replayed, possible only under at-least-once commits) is rewritten without them.
        """
        touched = 0
        for f in self.files(topic):
            if f.partition != partition or f.last < offset:
                continue
            touched += 1
            if f.first >= offset:
                log.info("lake: %s was written by a batch that never committed; the replay rewrites it", f.path)
            else:
                table = pq.read_table(f.path, filesystem=self.fs, schema=table_schema(record_type))
                kept = table.filter(pa.compute.less(table["_offset"], offset))
                last = int(pa.compute.max(kept["_offset"]).as_py())
                directory = self._dir(topic, f.date, f.hour)
                self._put(kept, directory, f"{directory}/{file_name(topic, partition, f.first, last)}")
            self.fs.delete_file(f.path)
        return touched

    def compact(self, record_type: type, topic: str, hours: Iterable[tuple[str, int]],
                committed: Mapping[int, int], min_files: int = 4) -> int:
        """In each of ``hours``: delete redundant files, and merge each partition's committed files
        (``last < committed[partition]``) into one when there are at least ``min_files``.
        Returns how many files went away."""
        removed = 0
        for date, hour in sorted(set(hours)):
            keep, redundant = live(self.files_in_hour(topic, date, hour))
            for f in redundant:
                self.fs.delete_file(f.path)
                removed += 1
            groups: dict[int, list[LakeFile]] = defaultdict(list)
            for f in keep:
                if f.partition in committed and f.last < committed[f.partition]:
                    groups[f.partition].append(f)
            for partition, parts in groups.items():
                if len(parts) >= min_files:
                    removed += self._merge(record_type, topic, date, hour, partition, sorted(parts))
        return removed

    def _merge(self, record_type: type, topic: str, date: str, hour: int, partition: int,
               parts: list[LakeFile]) -> int:
        schema = table_schema(record_type)
        table = pa.concat_tables([pq.read_table(p.path, filesystem=self.fs, schema=schema) for p in parts])
        directory = self._dir(topic, date, hour)
        path = f"{directory}/{file_name(topic, partition, parts[0].first, parts[-1].last)}"
        self._put(table, directory, path)  # first the whole, then the parts go (a crash between: readers skip them)
        removed = 0
        for p in parts:
            if p.path != path:
                self.fs.delete_file(p.path)
                removed += 1
        return removed

    def expire(self, before_ms: int) -> int:
        """Delete whole hours older than ``before_ms`` (retention); returns how many hour folders went away."""
        cutoff_date, cutoff_hour = hour_of(before_ms)
        removed = 0
        for topic_dir in self._subdirs(self.root, "topic="):
            for date_dir in self._subdirs(topic_dir, "date="):
                date = date_dir.rsplit("=", 1)[1]
                if date > cutoff_date:
                    continue
                for hour_dir in self._subdirs(date_dir, "hour="):
                    if date < cutoff_date or int(hour_dir.rsplit("=", 1)[1]) < cutoff_hour:
                        self.fs.delete_dir(hour_dir)
                        removed += 1
        return removed

    def _subdirs(self, base: str, prefix: str) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(prefix))


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass
