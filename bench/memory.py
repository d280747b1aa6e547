"""Bytes per in-window request in the correlator: ``python -m bench.memory [--requests N]``.

Feeds N requests (all within one 1 h feedback window, decoded from JSON as the
worker does, so strings are fresh objects, not shared literals) into one
``OutcomeCorrelator`` and reports, per in-window request: the Python heap growth
(tracemalloc, in a separate pass so tracing does not distort RSS) and the RSS
growth; then the same after the window closes (is the memory released?). The
baseline is the decoded ``RequestEvent`` alone, kept in a list: what any design
that holds the whole record costs. The target of issue #12 is <= 300 bytes.
"""

from __future__ import annotations

import argparse
import gc
import resource
import tracemalloc
from typing import Any, Callable

from processors.correlation import OutcomeCorrelator
from processors.workflows import WorkflowRegistry
from schemas.records import RequestEvent
from schemas.serde import json_codec
from tests.factories import make_request

T0 = 1_700_000_000_000
TARGET_BYTES = 300


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _encoded(n: int) -> list[bytes]:
    codec = json_codec(RequestEvent)
    routes = ("gpt-large", "claude-mid", "mini-hosted", "llama-local")
    return [codec.encode(make_request(f"req-{i:012d}", ts_ms=T0 + i * 10, route=routes[i % 4])) for i in range(n)]


def _measure(n: int, encoded: list[bytes], keep: Callable[[list[RequestEvent]], Any],
             trace: bool) -> float:
    """Bytes per request that ``keep`` holds after it is fed ``n`` decoded requests."""
    codec = json_codec(RequestEvent)
    gc.collect()
    if trace:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = _rss_bytes()
    held = keep([codec.decode(raw) for raw in encoded])
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if trace else _rss_bytes()
    if trace:
        tracemalloc.stop()
    del held
    return (after - before) / n


def _correlator(requests: list[RequestEvent]) -> OutcomeCorrelator:
    correlator = OutcomeCorrelator(WorkflowRegistry())
    for request in requests:
        correlator.on_request(request)
    correlator.drain_changes()
    assert len(correlator) == len(requests)
    return correlator


def _correlator_closed(requests: list[RequestEvent]) -> OutcomeCorrelator:
    correlator = _correlator(requests)
    finals = correlator.advance(requests[-1].ts_ms + 2 * 3_600_000)
    correlator.drain_changes()
    assert len(finals) == len(requests) and len(correlator) == 0
    return correlator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args(argv)
    n = args.requests
    encoded = _encoded(n)
    print(f"bench.memory: {n:,} in-window requests in one OutcomeCorrelator (1 h window)")
    print(f"{'what':<44}{'tracemalloc B/req':>18}{'RSS B/req':>12}")
    for name, keep in (("baseline: the decoded RequestEvents in a list", lambda rs: rs),
                       ("correlator, every request in its window", _correlator),
                       ("correlator, after every window closed", _correlator_closed)):
        traced = _measure(n, encoded, keep, trace=True)
        rss = _measure(n, encoded, keep, trace=False)
        print(f"{name:<44}{traced:>18.0f}{rss:>12.0f}")
    print(f"target (issue #12): <= {TARGET_BYTES} B per in-window request; "
          f"5,000 req/s x 1 h = 18 M requests -> {18e6 * TARGET_BYTES / 1e9:.1f} GB at the target")


if __name__ == "__main__":
    main()
