"""The declared topics: explicit configs, unique names, known record types, name lookup."""

from __future__ import annotations

import pytest

import schemas.records
from infra.topics import BY_NAME, DAY_MS, TOPICS, Role, TopicSpec, spec_for


def test_compacted_spec_keeps_everything_forever() -> None:
    spec = TopicSpec("workflows", "workflow", "WorkflowDefinition", Role.INPUT, is_compacted=True)
    assert spec.configs() == {"cleanup.policy": "compact", "retention.ms": "-1"}


def test_deleting_spec_states_its_retention() -> None:
    spec = TopicSpec("metrics", "source", "MetricEvent", Role.INPUT, retention_ms=3 * DAY_MS)
    assert spec.configs() == {"cleanup.policy": "delete", "retention.ms": "259200000"}


def test_every_declared_topic_has_a_unique_name_and_explicit_configs() -> None:
    assert len(TOPICS) >= 20  # each capability adds its own; names stay unique
    assert len(BY_NAME) == len(TOPICS)
    assert all(set(spec.configs()) == {"cleanup.policy", "retention.ms"} for spec in TOPICS)


def test_the_compacted_topics_are_the_latest_state_ones() -> None:
    compacted = sorted(spec.name for spec in TOPICS if spec.is_compacted)
    assert {"approvals", "decisions.experiments", "decisions.routing", "rollouts.splits", "workflows"} <= set(compacted)
    assert not {"requests", "outcomes", "incidents", "dlq", "rollouts"} & set(compacted)


def test_every_record_type_exists_in_the_schemas() -> None:
    missing = [spec.record for spec in TOPICS if not hasattr(schemas.records, spec.record)]
    assert missing == []


def test_roles_split_inputs_outputs_and_the_dead_letter_queue() -> None:
    by_role = {role: sorted(s.name for s in TOPICS if s.role is role) for role in Role}
    assert {"approvals", "feedback", "jobs", "logs", "metrics", "requests", "route.requests", "rollouts.control",
            "workflows"} <= set(by_role[Role.INPUT])
    assert {"dlq", "repartition.rollout"} <= set(by_role[Role.INTERNAL])


@pytest.mark.parametrize("name", ["requests", "lw.requests"])
def test_spec_for_accepts_logical_and_full_names(name: str) -> None:
    assert spec_for(name, prefix="lw.") is BY_NAME["requests"]


def test_spec_for_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown topic 'lw.nope'; known topics: lw.requests, lw.feedback"):
        spec_for("lw.nope", prefix="lw.")
