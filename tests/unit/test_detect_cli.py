"""``detect_main``: CSV in, one score per row out, for any scale, timestamps, gaps and bad values."""

from __future__ import annotations

import argparse
import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.detect import add_detect_arguments, detect_main, parse_timestamp_ms


def run(text: str, detector: str = "default") -> tuple[int, list[str]]:
    out = io.StringIO()
    rc = detect_main(io.StringIO(text), out, detector)
    return rc, out.getvalue().splitlines()


def csv_of(values: list[float], start_s: int = 1_396_310_400, step_s: int = 300) -> str:
    rows = [f"{start_s + i * step_s},{v!r}" for i, v in enumerate(values)]
    return "timestamp,value\n" + "\n".join(rows) + "\n"


def series(n: int, seed: int, spike_at: int | None = None) -> list[float]:
    rng = random.Random(seed)
    values = [50.0 + rng.gauss(0.0, 2.0) for _ in range(n)]
    if spike_at is not None:
        values[spike_at] += 40.0
    return values


def test_header_and_exactly_one_score_per_row_with_the_spike_on_top() -> None:
    rc, lines = run(csv_of(series(3000, seed=1, spike_at=2000)))
    assert rc == 0 and lines[0] == "anomaly_score" and len(lines) == 3001
    scores = [float(s) for s in lines[1:]]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores.index(max(scores)) == 2000 and scores[2000] > 0.9
    assert scores[:32] == [0.0] * 32


def test_iso_epoch_seconds_and_milliseconds_give_the_same_scores() -> None:
    values = series(400, seed=2, spike_at=300)
    iso = "timestamp,value\n" + "\n".join(
        f"2014-04-{1 + i // 288:02d} {(i % 288) // 12:02d}:{(i % 12) * 5:02d}:00,{v!r}"
        for i, v in enumerate(values)) + "\n"
    seconds = csv_of(values)
    millis = "timestamp,value\n" + "\n".join(
        f"{(1_396_310_400 + 300 * i) * 1000},{v!r}" for i, v in enumerate(values)) + "\n"
    assert run(iso) == run(seconds) == run(millis)


def test_irregular_timestamps_missing_values_and_junk_score_zero_without_breaking_order() -> None:
    values = series(300, seed=3)
    text = "timestamp,value\n" + "\n".join(
        f"{1_396_310_400 + i * i},{'' if i == 100 else 'NaN' if i == 150 else 'n/a' if i == 200 else v}"
        for i, v in enumerate(values)) + "\n"
    rc, lines = run(text)
    assert rc == 0 and len(lines) == 301
    assert [lines[101], lines[151], lines[201]] == ["0.000000"] * 3


def test_constant_series_scores_zero() -> None:
    assert run(csv_of([7.0] * 1000))[1][1:] == ["0.000000"] * 1000


def test_scale_does_not_matter() -> None:
    values = series(1500, seed=4, spike_at=1200)
    small = [float(s) for s in run(csv_of(values))[1][1:]]
    large = [float(s) for s in run(csv_of([v * 1000.0 for v in values]))[1][1:]]
    assert max(abs(a - b) for a, b in zip(small, large)) <= 2e-6


def test_columns_in_any_order_extra_columns_and_headerless_input() -> None:
    values = series(200, seed=5, spike_at=150)
    reordered = "value,timestamp,is_anomaly\n" + "\n".join(
        f"{v!r},{1_396_310_400 + 300 * i},0" for i, v in enumerate(values)) + "\n"
    headerless = csv_of(values).split("\n", 1)[1]
    expected = run(csv_of(values))
    assert run(reordered) == expected
    assert run(headerless) == expected


def test_empty_input_gives_the_header_only_and_a_bad_header_exit_code_2() -> None:
    assert run("") == (0, ["anomaly_score"])
    assert run("timestamp,value\n") == (0, ["anomaly_score"])
    assert run("when,what\nx,y\n") == (2, ["anomaly_score"])


def test_every_detector_name_is_accepted_by_the_parser_and_runs() -> None:
    parser = argparse.ArgumentParser()
    add_detect_arguments(parser)
    assert parser.parse_args([]).detector == "default"
    for name in ("default", "level", "diff", "ewma", "ensemble", "seasonal", "hst", "gaussian",
                 "holtwinters", "snarimax"):
        rc, lines = run(csv_of(series(80, seed=6)), parser.parse_args(["--detector", name]).detector)
        assert rc == 0 and len(lines) == 81
    with pytest.raises(SystemExit):
        parser.parse_args(["--detector", "nope"])


def test_timestamp_parsing() -> None:
    assert parse_timestamp_ms("2014-04-01T00:00:00Z") == 1_396_310_400_000
    assert parse_timestamp_ms("2014-04-01T02:00:00+02:00") == 1_396_310_400_000
    assert parse_timestamp_ms("1396310400.5") == 1_396_310_400_500
    assert parse_timestamp_ms("7") == 7000
    assert parse_timestamp_ms("") is None


@settings(max_examples=20, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just("x")),
                max_size=60))
def test_any_values_give_one_score_per_row_in_unit_interval(values: list[object]) -> None:
    text = "timestamp,value\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values))
    rc, lines = run(text)
    assert rc == 0 and len(lines) == len(values) + 1
    assert all(0.0 <= float(s) <= 1.0 for s in lines[1:])
