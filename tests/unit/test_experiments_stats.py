"""Statistics of experiments: moments, mixture SPRT and confidence sequence, SRM, shares, buckets, guardrails."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from processors.experiments.allocation import (
    Chances, Posterior, bucket, chance_to_win, pick, posteriors, top_two_shares, with_floor,
)
from processors.experiments.guardrails import Guardrail
from processors.experiments.sequential import Moments, compare, cs_radius, mixture_log_lr, srm_p_value


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=50))
def test_moments_agree_with_numpy(values: list[float]) -> None:
    m = Moments()
    for v in values:
        m.add(v)
    assert m.n == len(values)
    assert m.mean == pytest.approx(float(np.mean(values)), abs=1e-9)
    assert m.variance == pytest.approx(float(np.var(values, ddof=1)), rel=1e-7, abs=1e-7)
    assert Moments.from_dict(m.to_dict()) == m


def test_mixture_lr_matches_johari_two_sample_formula() -> None:
    # Johari et al., equal n per arm and known sigma^2: V = 2 sigma^2 / n.
    n, sigma2, tau2, diff = 400, 0.09, 0.0009, 0.05
    expected = math.sqrt(2 * sigma2 / (2 * sigma2 + n * tau2)) * math.exp(
        n * n * tau2 * diff * diff / (4 * sigma2 * (2 * sigma2 + n * tau2)))
    assert math.exp(mixture_log_lr(diff, 2 * sigma2 / n, tau2)) == pytest.approx(expected, rel=1e-12)


@given(st.floats(1e-6, 1.0), st.floats(1e-6, 1.0), st.floats(0.001, 0.2))
def test_confidence_sequence_edge_is_exactly_the_rejection_boundary(var: float, tau2: float, alpha: float) -> None:
    r = cs_radius(var, tau2, alpha)
    assert mixture_log_lr(r, var, tau2) == pytest.approx(math.log(1 / alpha), rel=1e-9, abs=1e-9)


def test_compare_is_antisymmetric_and_none_without_data() -> None:
    a, b = Moments(500, 0.50, 0.09 * 499), Moments(500, 0.55, 0.09 * 499)
    ab, ba = compare(a, b, 0.1, 0.05), compare(b, a, 0.1, 0.05)
    assert ab is not None and ba is not None
    assert (ab.delta, ab.p_value) == pytest.approx((-ba.delta, ba.p_value), abs=1e-15)
    assert round(ab.p_value, 6) == 0.156644  # log LR = 0.5 ln(0.36/1.26) + 0.5 * 2.25e-6 / 4.536e-7
    assert compare(Moments(1, 0.5, 0.0), b, 0.1, 0.05) is None


def test_aa_mixture_sprt_rarely_crosses_under_continuous_monitoring() -> None:
    # 200 A/A streams of 2,000 pairs, tested after every 10 pairs: Ville's bound says <= 5 % ever cross.
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.3, (200, 2000, 2))
    n = np.arange(1, 2001)
    means = np.cumsum(x, axis=1) / n[None, :, None]
    var = 2 * 0.09 / n  # known variance keeps this test exact and fast
    tau2 = (0.1 * 0.3) ** 2
    delta = means[:, :, 1] - means[:, :, 0]
    log_lr = 0.5 * np.log(var / (var + tau2)) + tau2 * delta**2 / (2 * var * (var + tau2))
    crossed = (log_lr[:, 9::10] >= math.log(20)).any(axis=1).mean()
    assert crossed == 0.03  # 6 of 200 streams: under alpha = 0.05 although looked at 200 times


def test_srm_p_values() -> None:
    assert srm_p_value([600, 400], [500, 500]) == pytest.approx(2.539629e-10, rel=1e-5)  # chi2 = 40, 1 dof
    assert srm_p_value([510, 490], [500, 500]) == pytest.approx(0.5270893, rel=1e-6)  # chi2 = 0.4
    assert srm_p_value([10, 5], [15, 0]) == 0.0  # traffic where none was meant to go
    assert srm_p_value([0, 0], [0, 0]) == 1.0
    # An arm nobody should get is left out; the rest agrees with scipy's chi-square test (chi2 = 13.33).
    assert srm_p_value([300, 700, 0], [250, 750, 0]) == pytest.approx(
        float(stats.chisquare([300, 700], [250, 750]).pvalue), rel=1e-12)


def test_posteriors_and_two_arm_chances_are_exact() -> None:
    posts = posteriors([Moments(400, 0.50, 0.09 * 399), Moments(400, 0.53, 0.09 * 399)], prior_sd=1.0)
    assert [round(p.sd, 6) for p in posts] == [0.014998, 0.014998]
    c = chance_to_win(posts, np.random.default_rng(0))
    z = (posts[1].mean - posts[0].mean) / math.hypot(posts[0].sd, posts[1].sd)
    assert c.p_best[1] == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))), rel=1e-12)
    assert c.p_best[0] + c.p_best[1] == pytest.approx(1.0, abs=1e-15)
    assert c.expected_loss[0] - c.expected_loss[1] == pytest.approx(posts[1].mean - posts[0].mean, abs=1e-12)


def test_monte_carlo_chances_are_seeded_and_close_to_truth() -> None:
    posts = [Posterior(0.0, 1.0), Posterior(0.0, 1.0), Posterior(0.0, 1.0)]
    a = chance_to_win(posts, np.random.default_rng(5), draws=30_000)
    b = chance_to_win(posts, np.random.default_rng(5), draws=30_000)
    assert a == b
    assert a.p_best == pytest.approx([1 / 3] * 3, abs=0.01)
    assert a.best_without[0] == pytest.approx([0.0, 0.5, 0.5], abs=0.01)


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6), st.floats(0.0, 0.3), st.data())
def test_floor_gives_every_active_arm_its_minimum(raw: list[float], min_share: float, data: st.DataObject) -> None:
    active = data.draw(st.lists(st.booleans(), min_size=len(raw), max_size=len(raw)).filter(any))
    shares = with_floor(raw, active, min_share)
    floor = min(min_share, 1 / sum(active))
    assert sum(shares) == pytest.approx(1.0, abs=1e-9)
    assert all(s >= floor - 1e-12 if a else s == 0.0 for s, a in zip(shares, active))


def test_top_two_with_two_arms_is_even_whatever_the_leader() -> None:
    for p in (0.5, 0.9, 1.0):
        assert top_two_shares(Chances([1 - p, p], [0, 0], [[0, 1], [1, 0]]), 0.5) == pytest.approx([0.5, 0.5])
    assert top_two_shares(Chances([0.1, 0.9], [0, 0], [[0, 1], [1, 0]]), None) == [0.1, 0.9]


def test_buckets_are_uniform_and_pick_follows_the_split() -> None:
    positions = [bucket("exp", f"u{i}") for i in range(20_000)]
    assert 0.0 <= min(positions) and max(positions) < 1.0
    counts = [sum(1 for u in positions if pick(u, ["a", "b", "c"], [0.2, 0.3, 0.5]) == v) for v in "abc"]
    assert counts == [3918, 5974, 10108]  # within sampling error of 20 / 30 / 50 %


def test_moving_the_split_moves_only_the_units_in_between() -> None:
    units = [f"u{i}" for i in range(10_000)]
    before = [pick(bucket("exp", u), ["a", "b"], [0.5, 0.5]) for u in units]
    after = [pick(bucket("exp", u), ["a", "b"], [0.6, 0.4]) for u in units]
    moved = [(x, y) for x, y in zip(before, after) if x != y]
    assert set(moved) == {("b", "a")}
    assert len(moved) == 1006  # ~10 %: exactly the units whose position lies in [0.5, 0.6)


def test_guardrail_parsing() -> None:
    assert Guardrail.parse("latency_ms:15%") == Guardrail("latency_ms", 0.15, True)
    assert Guardrail.parse("error_rate:0.01") == Guardrail("error_rate", 0.01, False)
    assert Guardrail.parse("cost_usd") == Guardrail("cost_usd", 0.10, True)
    assert Guardrail.parse("latency_ms:15%").limit(1000.0) == pytest.approx(150.0)
    for bad in ("quality", "latency_ms:-1", "error_rate:x"):
        with pytest.raises(ValueError):
            Guardrail.parse(bad)
