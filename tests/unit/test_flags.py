"""Feature flags: evaluation, route answers carry them, the OpenFeature provider reads the same values."""

from __future__ import annotations

import pytest

pytest.importorskip("openfeature")  # the `openfeature` extra

from openfeature import api  # noqa: E402
from openfeature.evaluation_context import EvaluationContext  # noqa: E402
from openfeature.exception import ErrorCode  # noqa: E402

from processors.rollout import VersionBook, evaluate  # noqa: E402
from schemas.records import FlagRule, FlagShare, FlagSpec, RequestContext, WorkflowDefinition
from streams.client.openfeature import LoopwiseProvider
from tests.factories import make_route

FLAGS = (FlagSpec("new-retriever", rules=(FlagRule("tenant", ("acme",), "on"),), rollout=(FlagShare("on", 0.2),),
                  sticky_by="user"),
         FlagSpec("tone", variants=("formal", "casual", "pirate"), default="formal",
                  rollout=(FlagShare("casual", 0.5), FlagShare("pirate", 0.1))))
DEFINITION = WorkflowDefinition("wf", "v1", 0, (make_route(),), flags=FLAGS)


def test_rules_win_then_the_percentage_split_then_the_default() -> None:
    new = FLAGS[0]
    assert evaluate(new, "wf", RequestContext("acme", "chat", user_id="u1"), "r1") == "on"
    users = [evaluate(new, "wf", RequestContext("t", "chat", user_id=f"u{i}"), f"r{i}") for i in range(4000)]
    assert 0.17 < users.count("on") / 4000 < 0.23 and set(users) == {"on", "off"}
    again = [evaluate(new, "wf", RequestContext("t", "chat", user_id=f"u{i}"), "other") for i in range(4000)]
    assert users == again  # sticky by user, whatever the request
    tones = [evaluate(FLAGS[1], "wf", RequestContext("t", "x"), f"r{i}") for i in range(4000)]
    assert 0.45 < tones.count("casual") / 4000 < 0.55 and 0.07 < tones.count("pirate") / 4000 < 0.13


def test_the_openfeature_provider_answers_what_the_route_stage_would() -> None:
    book = VersionBook()
    book.update_workflow(DEFINITION)
    api.set_provider(LoopwiseProvider(book, workflow="wf"))
    client = api.get_client()
    assert client.get_boolean_value("new-retriever", False, EvaluationContext("u1", {"tenant": "acme"})) is True
    for i in range(50):
        ctx = RequestContext("t", "chat", user_id=f"u{i}")
        expected = book.flags_for("wf", ctx, f"u{i}")
        assert client.get_boolean_value("wf/new-retriever", False, EvaluationContext(f"u{i}", {"tenant": "t", "task": "chat"})) \
            is (expected["new-retriever"] == "on")
        assert client.get_string_value("tone", "x", EvaluationContext(f"u{i}", {"tenant": "t", "task": "chat"})) \
            == expected["tone"]
    missing = client.get_boolean_details("nope", True, EvaluationContext("u1"))
    assert missing.value is True and missing.error_code is ErrorCode.FLAG_NOT_FOUND
    mismatch = client.get_boolean_details("tone", False, EvaluationContext("u1"))
    assert mismatch.value is False and mismatch.error_code is ErrorCode.TYPE_MISMATCH
