"""The LiteLLM adapter's cost per call: the callback alone, and a whole mocked call with and without it.

``python -m bench.litellm [--calls N]``: LiteLLM ``acompletion`` with ``mock_response`` (no network)
through a Router, publishing to the embedded broker. Prints the callback's own time (µs, median
and p99: what the adapter adds to a call's thread) beside the whole call's, with and without it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.litellm")
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    import litellm

    from infra.admin import apply_topics
    from infra.broker import EmbeddedBroker
    from infra.settings import Settings
    from streams.client.litellm import LoopwiseCallback, LoopwisePublisher

    with EmbeddedBroker() as broker:
        settings = Settings().with_bootstrap(broker.bootstrap_servers, is_embedded=True).with_(topic_prefix="bench.")
        apply_topics(settings)
        publisher = LoopwisePublisher(settings)
        callback = LoopwiseCallback(publisher)
        publish, spent = callback._publish, []

        def timed_publish(*a: Any) -> None:
            t = time.perf_counter_ns()
            publish(*a)
            spent.append((time.perf_counter_ns() - t) / 1000)

        callback._publish = timed_publish  # type: ignore[method-assign]
        router = litellm.Router(model_list=[{"model_name": "chat", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_key": "x", "mock_response": "fine"}}], num_retries=0)
        meta = {"loopwise": {"workflow": "bench", "version": "v1", "tenant": "acme", "task": "qa"}}

        async def run(n: int) -> list[float]:
            took = []
            for i in range(n):
                t = time.perf_counter_ns()
                await router.acompletion(model="chat", messages=[{"role": "user", "content": "q"}],
                                         metadata={"loopwise": {**meta["loopwise"], "request_id": f"b{i}"}})
                took.append((time.perf_counter_ns() - t) / 1000)
            await asyncio.sleep(0.5)
            return took

        asyncio.run(run(50))  # warm-up
        bare = asyncio.run(run(args.calls))
        litellm.logging_callback_manager._reset_all_callbacks()  # LiteLLM reads litellm.callbacks once
        litellm.callbacks = [callback]
        spent.clear()
        with_cb = asyncio.run(run(args.calls))
        publisher.flush(10)
        print(f"calls: {args.calls} (mock responses, embedded broker); events sent {publisher.sent}, "
              f"dropped {publisher.dropped}, failed {publisher.failed}")
        print(f"callback alone:           median {statistics.median(spent):8.1f} µs   p99 {_pct(spent, 0.99):8.1f} µs")
        print(f"call without callback:    median {statistics.median(bare):8.1f} µs   p99 {_pct(bare, 0.99):8.1f} µs")
        print(f"call with callback:       median {statistics.median(with_cb):8.1f} µs   p99 {_pct(with_cb, 0.99):8.1f} µs")
        publisher.close(2)


if __name__ == "__main__":
    main()
