"""``loopwise lake query "SQL"`` (DuckDB over the Parquet lake) and ``loopwise lake files``."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from infra.settings import Settings

Command = Callable[..., argparse.ArgumentParser]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", command: Command) -> None:
    """Add ``lake query`` and ``lake views`` under ``lake``."""
    lake = sub.add_parser("lake", help="the Parquet data lake (LOOPWISE_LAKE_URL / LOOPWISE_LAKE_DIR)")
    actions = lake.add_subparsers(metavar="ACTION")
    query = command(actions, "query", "run SQL over the lake with DuckDB: one view per topic (requests, outcomes, "
                    "decisions_routing, …) and lake_files", _run_query)
    query.add_argument("sql", help='e.g. "SELECT route, count(*) FROM requests GROUP BY route"')
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    command(actions, "views", "list the lake's views and how many files each reads", _run_views)


def _record_of() -> dict[str, str]:
    from infra.topics import TOPICS

    return {spec.name: spec.record for spec in TOPICS}


def _run_query(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.lake_query import query

    columns, rows = query(settings.lake_location, args.sql, settings.topic_prefix, _record_of())
    _print(columns, rows, args.format)
    return 0


def _run_views(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.lake_query import connect

    con, counts = connect(settings.lake_location, settings.topic_prefix, _record_of())
    con.close()
    _print(["view", "files"], sorted(counts.items()), "table")
    return 0


def _print(columns: list[str], rows: list[Any], fmt: str) -> None:
    import csv

    import orjson

    if fmt == "json":
        for row in rows:
            sys.stdout.write(orjson.dumps(dict(zip(columns, row)), default=str).decode() + "\n")
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        for i, row in enumerate(cells):
            sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
            if i == 0:
                sys.stdout.write("  ".join("-" * w for w in widths) + "\n")
