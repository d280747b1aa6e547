"""The routing client follows the compacted policy topic on a real broker and routes from memory."""

from __future__ import annotations

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import RouteProbability, RoutingPolicy, WorkflowDefinition
from schemas.serde import json_codec
from streams.client import RoutingClient
from tests.conftest import wait_until
from tests.factories import make_context, make_workflow
from tests.integration.worker_proc import produce_tracked


def test_client_routes_by_the_newest_published_policy(settings: Settings) -> None:
    apply_topics(settings)
    encode = json_codec(RoutingPolicy).encode
    older = RoutingPolicy("support-bot", "tenant=acme", 1, 1, "m", (RouteProbability("gpt-large", 1.0, 0.5, 0.1, 9),))
    newer = RoutingPolicy("support-bot", "tenant=acme", 2, 2, "m", (RouteProbability("local-small", 1.0, 0.6, 0.1, 9),))
    produce_tracked(settings, [
        (settings.topic("workflows"), b"support-bot", json_codec(WorkflowDefinition).encode(make_workflow(context_keys=("tenant",)))),
        (settings.topic("decisions.routing"), b"support-bot/tenant=acme", encode(older)),
    ])
    with RoutingClient(settings) as client:
        wait_until(lambda: client.choose("support-bot", make_context(), "r1") == "gpt-large", 20,
                   message="the client never saw the first policy")
        produce_tracked(settings, [(settings.topic("decisions.routing"), b"support-bot/tenant=acme", encode(newer))])
        wait_until(lambda: client.choose("support-bot", make_context(), "r1") == "local-small", 20,
                   message="the client never switched to the newer policy")
        assert client.choose("other-workflow", make_context(), "r1", default="fallback") == "fallback"
