"""Deduplication by key within an event-time horizon."""

from __future__ import annotations

from hypothesis import given, strategies as st

from processors.dedup import Admission, Deduplicator


def test_duplicate_within_horizon_and_too_late_beyond() -> None:
    d = Deduplicator(horizon_ms=1_000)
    assert d.admit("a", 0) is Admission.NEW
    assert d.admit("a", 500) is Admission.DUPLICATE
    assert d.admit("b", 2_000) is Admission.NEW
    assert d.admit("c", 999) is Admission.TOO_LATE
    assert "a" not in d and len(d) == 1


def test_max_keys_bounds_memory() -> None:
    d = Deduplicator(horizon_ms=10**9, max_keys=3)
    for i in range(10):
        assert d.admit(f"k{i}", i) is Admission.NEW
    assert len(d) == 3 and "k9" in d and "k6" not in d


def test_snapshot_restore_keeps_decisions() -> None:
    d = Deduplicator(horizon_ms=1_000)
    for i in range(5):
        d.admit(f"k{i}", i * 100)
    restored = Deduplicator.restore(d.snapshot())
    assert [restored.admit(f"k{i}", 1_000) for i in range(6)] == [Admission.DUPLICATE] * 5 + [Admission.NEW]


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 5_000)), max_size=60))
def test_each_key_is_new_at_most_once_while_remembered(events: list[tuple[str, int]]) -> None:
    d = Deduplicator(horizon_ms=10**9)
    admitted = [key for key, ts in events if d.admit(key, ts) is Admission.NEW]
    assert len(admitted) == len(set(admitted)) == len({key for key, _ in events})
