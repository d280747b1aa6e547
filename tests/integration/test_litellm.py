"""The LiteLLM adapter end to end: calls through LiteLLM (mock responses) → events on the broker →
outcomes → a routing policy → LiteLLM's next calls follow it; and a broker outage never slows a call."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of the price list
litellm = pytest.importorskip("litellm")

from infra.admin import apply_topics  # noqa: E402
from infra.settings import Settings  # noqa: E402
from schemas.records import PrivacyLevel, RequestEvent  # noqa: E402
from schemas.serde import json_codec  # noqa: E402
from streams.client import RoutingClient  # noqa: E402
from streams.client.litellm import LoopwiseCallback, LoopwisePublisher, LoopwiseRoutingPlugin  # noqa: E402
from tests.conftest import wait_until  # noqa: E402
from tests.factories import make_route, make_workflow  # noqa: E402
from tests.integration.conftest import produce_messages  # noqa: E402
from tests.integration.worker_proc import read_topic, running_worker  # noqa: E402

GOOD, BAD = "openai/gpt-good", "openai/gpt-bad"
META = {"workflow": "llm-bot", "version": "v1", "tenant": "acme", "task": "qa"}


def _forget_callbacks() -> None:
    """LiteLLM copies ``litellm.callbacks`` into its own lists once, and keeps one logger per class: reset both."""
    litellm.logging_callback_manager._reset_all_callbacks()


def router(plugin: Any | None) -> Any:
    deployments = [
        {"model_name": "chat", "litellm_params": {"model": GOOD, "api_key": "x", "mock_response": "fine"}},
        {"model_name": "chat", "litellm_params": {"model": BAD, "api_key": "x",
                                                   "mock_response": "litellm.InternalServerError"}},
    ]
    return litellm.Router(model_list=deployments, num_retries=0, disable_cooldowns=True,
                         plugins=[plugin] if plugin else None)


async def calls(r: Any, n: int, start: int) -> Counter[str]:
    served: Counter[str] = Counter()
    for i in range(start, start + n):
        try:
            answer = await r.acompletion(model="chat", messages=[{"role": "user", "content": f"q{i}"}],
                                         metadata={"loopwise": {**META, "request_id": f"r{i}"}})
            served[answer.model] += 1
        except litellm.InternalServerError:
            served["error"] += 1
    return served


def test_litellm_calls_teach_a_policy_that_steers_the_next_calls(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    workflow = make_workflow("llm-bot", context_keys=("task",), routes=(
        make_route(GOOD, max_privacy=PrivacyLevel.RESTRICTED), make_route(BAD, max_privacy=PrivacyLevel.RESTRICTED)))
    produce_messages(settings, settings.topic("workflows"), [json_codec(type(workflow)).encode(workflow)], key="llm-bot")
    publisher = LoopwisePublisher(settings)
    _forget_callbacks()
    litellm.callbacks = [LoopwiseCallback(publisher)]
    try:
        with running_worker(settings, tmp_path / "worker.log"), RoutingClient(settings) as routing:
            plugin = LoopwiseRoutingPlugin(routing)
            r = router(plugin)
            before = asyncio.run(calls(r, 80, 0))
            assert plugin.fallbacks == 80 and before["error"] > 10 and before["gpt-good"] > 10  # LiteLLM's shuffle
            assert publisher.flush(10) == 0
            events = [json_codec(RequestEvent).decode(m.value()) for m in read_topic(settings, settings.topic("requests"), 80)]
            by_route = Counter((e.route, e.status.value, e.error_type) for e in events)
            assert by_route[(GOOD, "ok", None)] == before["gpt-good"]
            assert by_route[(BAD, "error", "InternalServerError")] == before["error"]
            assert {(e.workflow, e.workflow_version, e.context.tenant, e.context.task) for e in events} == {
                ("llm-bot", "v1", "acme", "qa")}

            def policy_avoids_bad() -> bool:
                from schemas.records import RequestContext
                picks = Counter(routing.choose("llm-bot", RequestContext("acme", "qa"), f"p{i}") for i in range(200))
                return picks[GOOD] >= 180

            wait_until(policy_avoids_bad, 45, interval_s=0.5, message="no policy moving traffic off the failing route")
            after = asyncio.run(calls(r, 60, 1000))
            assert plugin.chosen >= 54 and after["gpt-good"] >= 54, (after, plugin.chosen, plugin.fallbacks)
    finally:
        _forget_callbacks()
        publisher.close(2)


def test_a_broker_outage_never_fails_or_slows_a_call(settings: Settings) -> None:
    dead = settings.with_bootstrap("127.0.0.1:9", is_embedded=False)  # nothing listens: every send waits
    publisher = LoopwisePublisher(dead, buffer_max_messages=50)
    callback = LoopwiseCallback(publisher)
    publish, spent = callback._publish, []

    def timed_publish(*args: Any) -> None:
        t = time.perf_counter()
        publish(*args)
        spent.append(time.perf_counter() - t)

    callback._publish = timed_publish  # type: ignore[method-assign]
    _forget_callbacks()
    litellm.callbacks = [callback]
    try:
        r = litellm.Router(model_list=[{"model_name": "chat", "litellm_params": {
            "model": GOOD, "api_key": "x", "mock_response": "fine"}}], num_retries=0)

        async def timed(n: int) -> list[float]:
            took = []
            for i in range(n):
                t = time.perf_counter()
                await r.acompletion(model="chat", messages=[{"role": "user", "content": "q"}],
                                    metadata={"loopwise": {**META, "request_id": f"o{i}"}})
                took.append(time.perf_counter() - t)
            await asyncio.sleep(0.5)  # LiteLLM runs async callbacks after the call returns: let them finish
            return took

        took = asyncio.run(timed(120))
        queued = len(publisher._producer)
        assert (len(spent), publisher.sent, queued, publisher.dropped) == (120, 0, 50, 70)  # 50 held, the rest dropped
        took.sort()
        assert took[len(took) // 2] < 0.5, f"median call {took[len(took) // 2]:.3f} s"  # calls go on
        spent.sort()
        # Never waits for the broker (a blocking send would wait out message.timeout.ms, 60 s); the slowest calls
        # here are the shared machine's scheduling noise, not the adapter.
        assert spent[len(spent) // 2] < 0.002 and spent[-1] < 0.5, f"callback median {spent[60] * 1e3:.2f} ms, max {spent[-1] * 1e3:.1f} ms"
    finally:
        _forget_callbacks()
        publisher.close(0.1)
