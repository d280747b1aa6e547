"""Offline scoring core of ``loopwise detect``: CSV ``timestamp,value`` in, ``anomaly_score`` out, same detectors as the stream."""

from __future__ import annotations

import argparse
import csv
import math
from datetime import datetime, timezone
from typing import TextIO

from processors.anomaly.registry import DETECTORS, score_series

EPOCH_MS_ABOVE = 1e11  # 1e11 s is year 5138, 1e11 ms is 1973: larger numbers are milliseconds


class DetectInputError(ValueError):
    """The CSV on stdin cannot be read as ``timestamp,value`` rows."""


def add_detect_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``detect`` sub-command's options to ``parser``."""
    parser.add_argument("--detector", default="default", choices=DETECTORS,
                        help="scoring model (default: the measured best, see bench/detect_quality.py)")
    parser.add_argument("--warmup", type=int, default=32,
                        help="rows learned before any score above 0 (default: 32)")


def parse_timestamp_ms(text: str) -> int | None:
    """Epoch milliseconds from ISO-8601 (naive = UTC), epoch seconds or epoch milliseconds; None if unreadable.

    >>> parse_timestamp_ms("2014-04-01 00:05:00"), parse_timestamp_ms("1396310700")
    (1396310700000, 1396310700000)
    >>> parse_timestamp_ms("1396310700000"), parse_timestamp_ms("n/a")
    (1396310700000, None)
    """
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return int(moment.timestamp() * 1000)
    if not math.isfinite(number):
        return None
    return int(number) if abs(number) >= EPOCH_MS_ABOVE else int(number * 1000)


def parse_value(text: str) -> float:
    """The value as a float; NaN when empty or unreadable (scored 0, not learned)."""
    try:
        return float(text.strip())
    except ValueError:
        return math.nan


def read_series(stdin: TextIO) -> tuple[list[int | None], list[float]]:
    """Rows of a ``timestamp,value`` CSV (header names matched case-insensitively, any column order).

    Without a recognisable header the first column is the timestamp and the
    last one the value, and the first row is data.

    Raises:
        DetectInputError: a header without a ``value`` column.
    """
    rows = [row for row in csv.reader(stdin) if row and any(cell.strip() for cell in row)]
    if not rows:
        return [], []
    header = [cell.strip().lower().lstrip("\ufeff") for cell in rows[0]]
    if "value" not in header and math.isnan(parse_value(header[-1])):
        raise DetectInputError(f"no 'value' column in header {rows[0]!r}")
    if "value" in header:
        ts_col = header.index("timestamp") if "timestamp" in header else None
        value_col, body = header.index("value"), rows[1:]
    else:
        ts_col, value_col, body = (0 if len(header) > 1 else None), len(header) - 1, rows
    ts = [parse_timestamp_ms(r[ts_col]) if ts_col is not None and ts_col < len(r) else None
          for r in body]
    values = [parse_value(r[value_col]) if value_col < len(r) else math.nan for r in body]
    return ts, values


def detect_main(stdin: TextIO, stdout: TextIO, detector: str = "default", warmup: int = 32,
                stderr: TextIO | None = None) -> int:
    """Score every row of stdin's CSV and write ``anomaly_score`` rows in the same order.

    Args:
        stdin: CSV with header ``timestamp,value``.
        stdout: receives ``anomaly_score`` and one score in [0, 1] per input row.
        detector: a name from :data:`processors.anomaly.registry.DETECTORS`.
        warmup: rows learned before any score above 0.
        stderr: where to say why the input was unreadable.

    Returns:
        0 on success; 2 when the header has no ``value`` column (only the
        output header is written).
    """
    try:
        ts, values = read_series(stdin)
    except DetectInputError as exc:
        if stderr is not None:
            stderr.write(f"loopwise detect: {exc}\n")
        stdout.write("anomaly_score\n")
        return 2
    scores = score_series(values, ts, detector, warmup=warmup)
    out = ["anomaly_score"]
    out.extend(f"{s:.6f}" if math.isfinite(s) else "0.000000" for s in scores)
    stdout.write("\n".join(out) + "\n")
    return 0
