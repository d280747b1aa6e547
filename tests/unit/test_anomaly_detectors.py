"""SeriesDetector: warm-up, spikes, steadiness, scale invariance, score-before-learn, snapshots."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.anomaly.detectors import SeriesDetector
from processors.anomaly.registry import DETECTORS, make_scorer, score_series


def gaussian(n: int, seed: int, mean: float = 100.0, sd: float = 5.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sd) for _ in range(n)]


def run(detector: SeriesDetector, values: list[float], step_ms: int = 60_000) -> list[float]:
    return [detector.step(v, i * step_ms).score for i, v in enumerate(values)]


def test_no_score_above_zero_during_warmup_even_for_wild_values() -> None:
    values = gaussian(50, seed=1)
    values[10] = 1e6
    scores = run(SeriesDetector(warmup=50), values)
    assert scores == [0.0] * 50


def test_clear_spike_after_warmup_scores_high() -> None:
    values = gaussian(500, seed=2) + [100.0 + 20 * 5.0]
    scores = run(SeriesDetector(), values)
    assert scores[-1] > 0.95
    assert max(scores[:-1]) < 0.75


def test_steady_gaussian_series_stays_below_warning_for_10k_points() -> None:
    scores = run(SeriesDetector(), gaussian(10_000, seed=7))
    assert max(scores) < 0.75
    assert sum(s >= 0.5 for s in scores) <= 5


def test_scores_are_scale_and_offset_invariant() -> None:
    values = gaussian(2_000, seed=3)
    values[1_500] += 60.0
    base = run(SeriesDetector(), values)
    scaled = run(SeriesDetector(), [v * 1000.0 for v in values])
    shifted = run(SeriesDetector(), [v * 0.001 + 1e4 for v in values])
    assert max(abs(a - b) for a, b in zip(base, scaled)) < 1e-9
    assert max(abs(a - b) for a, b in zip(base, shifted)) < 1e-4
    assert base[1_500] > 0.8
    assert base.index(max(base)) == 1_500


def test_first_occurrence_of_a_spike_is_flagged_because_scoring_precedes_learning() -> None:
    detector = SeriesDetector()
    run(detector, gaussian(300, seed=4))
    first = detector.step(250.0).score
    assert first > 0.95
    # Had it learned first, the spike would be part of its own baseline: check it is not.
    assert detector.seen == 301


def test_nan_and_inf_score_zero_and_are_not_learned() -> None:
    detector = SeriesDetector(warmup=5)
    run(detector, gaussian(40, seed=5))
    assert detector.step(math.nan).score == 0.0
    assert detector.step(math.inf).score == 0.0
    assert detector.seen == 40


def test_constant_series_scores_zero_everywhere() -> None:
    for name in ("default", "level", "diff", "ewma"):
        assert score_series([42.0] * 1_000, name=name) == [0.0] * 1_000


def test_upward_detector_ignores_drops() -> None:
    detector = SeriesDetector(direction="up")
    run(detector, gaussian(300, seed=6))
    assert detector.step(0.0).score == 0.0
    assert detector.step(200.0).score > 0.9


@pytest.mark.parametrize("season_bins", [0, 48])
def test_snapshot_through_json_gives_identical_subsequent_scores(season_bins: int) -> None:
    values = gaussian(600, seed=8)
    values[450] = 300.0
    original = SeriesDetector(season_bins=season_bins)
    run(original, values[:300])
    restored = SeriesDetector.restore(json.loads(json.dumps(original.snapshot())))
    tail = [(v, (300 + i) * 60_000) for i, v in enumerate(values[300:])]
    assert [original.step(v, t) for v, t in tail] == [restored.step(v, t) for v, t in tail]


def test_expected_range_brackets_the_normal_level() -> None:
    detector = SeriesDetector()
    run(detector, gaussian(500, seed=9))
    scored = detector.step(100.0, 500 * 60_000)
    assert scored.expected_low < 100.0 < scored.expected_high
    assert scored.expected_high - scored.expected_low < 200.0


def test_unknown_method_and_detector_are_refused() -> None:
    with pytest.raises(ValueError):
        SeriesDetector(method="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        make_scorer("magic")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=120),
       st.sampled_from([d for d in DETECTORS if d not in ("hst", "snarimax")]))
def test_scores_always_in_unit_interval_and_input_untouched(values: list[float], name: str) -> None:
    before = list(values)
    scores = score_series(values, name=name, warmup=4)
    assert len(scores) == len(values)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert [repr(v) for v in values] == [repr(v) for v in before]


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=0, max_value=2**31), st.sampled_from(["default", "hst"]))
def test_same_seed_same_scores(seed: int, name: str) -> None:
    values = gaussian(150, seed=seed)
    assert score_series(values, name=name, seed=seed) == score_series(values, name=name, seed=seed)


def test_score_without_learning_leaves_the_detector_unchanged() -> None:
    d = SeriesDetector(warmup=10)
    for i in range(50):
        d.step(100.0 + i % 5)
    before = json.dumps(d.snapshot())
    assert d.score(900.0).score > 0.9
    assert json.dumps(d.snapshot()) == before
    assert d.score(900.0) == d.step(900.0)  # the same judgement, then learned


def test_trend_sees_a_slow_ramp_that_level_and_step_components_follow() -> None:
    rng = random.Random(3)
    values = [rng.gauss(100.0, 3.0) + max(0.0, i - 300) * 0.6 for i in range(420)]
    plain, trended = SeriesDetector(window=48), SeriesDetector(window=48, has_trend=True)
    plain_scores = [plain.step(v).score for v in values]
    trend_scores = [trended.step(v).score for v in values]
    assert max(plain_scores[300:]) < 0.75 <= max(trend_scores[300:])
    assert max(trend_scores[:300]) < 0.75  # steady: the trend component does not page
    restored = SeriesDetector.restore(json.loads(json.dumps(trended.snapshot())))
    assert [restored.step(v).score for v in values[:50]] == [trended.step(v).score for v in values[:50]]
