"""Topics as code against a real broker: idempotent creation, drift reported and left alone."""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from infra.admin import AdminError, ApplyReport, Mismatch, apply_topics, list_topics, wait_for_broker
from infra.broker import free_port
from infra.settings import Settings
from infra.topics import BY_NAME, DAY_MS, TOPICS
from tests.integration.conftest import consume_messages, produce_messages


def full_names(settings: Settings) -> list[str]:
    return sorted(settings.topic(spec.name) for spec in TOPICS)


def create_raw(settings: Settings, name: str, partitions: int, configs: dict[str, str]) -> None:
    """Create a topic behind loopwise's back, as an operator or another tool would."""
    admin = AdminClient(settings.kafka_config())
    admin.create_topics([NewTopic(name, partitions, 1, config=configs)])[name].result(10)


def test_apply_twice_creates_once_then_reports_all_unchanged(settings: Settings) -> None:
    first = apply_topics(settings)
    second = apply_topics(settings)
    assert (first.created, first.unchanged, first.mismatched) == (full_names(settings), [], [])
    assert (second.created, second.unchanged, second.mismatched) == ([], full_names(settings), [])
    assert second.is_clean


def test_created_topics_have_declared_partitions_and_configs(settings: Settings) -> None:
    apply_topics(settings)
    infos = {info.name: info for info in list_topics(settings)}
    assert sorted(infos) == full_names(settings)
    for spec in TOPICS:
        info = infos[settings.topic(spec.name)]
        assert (info.partitions, info.is_declared) == (spec.partitions or settings.partitions, True)
        assert {key: info.configs.get(key) for key in ("cleanup.policy", "retention.ms")} == spec.configs()


def test_compacted_topics_have_cleanup_policy_compact(settings: Settings) -> None:
    apply_topics(settings)
    policies = {info.name: info.configs["cleanup.policy"] for info in list_topics(settings)}
    compacted = sorted(name for name, policy in policies.items() if policy == "compact")
    # The broker reports compaction on exactly the topics declared compacted (the latest value per key
    # is what readers need: workflows, policies, splits, forecasts, approvals), and on no other.
    declared = sorted(settings.topic(spec.name) for spec in TOPICS if spec.is_compacted)
    assert compacted == declared
    assert {settings.topic(n) for n in ("workflows", "decisions.routing", "decisions.experiments")} <= set(compacted)


def test_existing_topic_with_other_settings_is_reported_and_left_alone(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    name = settings.topic("requests")
    create_raw(settings, name, 2, {"cleanup.policy": "delete", "retention.ms": "1000"})
    with caplog.at_level(logging.WARNING, logger="infra.admin"):
        report = apply_topics(settings, specs=[BY_NAME["requests"], BY_NAME["workflows"]])
    assert report.created == [settings.topic("workflows")]
    assert report.unchanged == []
    assert report.mismatched == [
        Mismatch(name, "partitions", "4", "2"),
        Mismatch(name, "retention.ms", str(7 * DAY_MS), "1000"),
    ]
    assert f"topic {name}: retention.ms is 1000, declared {7 * DAY_MS}" in caplog.text
    info = next(i for i in list_topics(settings) if i.name == name)
    assert (info.partitions, info.configs["retention.ms"]) == (2, "1000")


def test_topic_created_without_configs_reports_the_missing_ones(settings: Settings) -> None:
    name = settings.topic("workflows")
    create_raw(settings, name, settings.partitions, {})
    report = apply_topics(settings, specs=[BY_NAME["workflows"]])
    # A real Kafka reports its defaults (delete, 7 days); the embedded broker reports nothing.
    assert [(m.setting, m.wanted) for m in report.mismatched] == [("cleanup.policy", "compact"), ("retention.ms", "-1")]


def test_concurrent_applies_tolerate_already_exists(settings: Settings) -> None:
    reports: list[ApplyReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(apply_topics(settings))
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert [sorted(r.created + r.unchanged) for r in reports] == [full_names(settings)] * 2
    assert set(reports[0].created).isdisjoint(reports[1].created)


def test_list_topics_marks_undeclared_topics_under_the_prefix(settings: Settings) -> None:
    apply_topics(settings, specs=[BY_NAME["logs"]])
    create_raw(settings, settings.topic("scratch"), 1, {"cleanup.policy": "delete", "retention.ms": "60000"})
    infos = list_topics(settings)
    assert [(i.name, i.partitions, i.is_declared) for i in infos] == [
        (settings.topic("logs"), 4, True),
        (settings.topic("scratch"), 1, False),
    ]


def test_produce_and_consume_helpers_round_trip_in_order(settings: Settings) -> None:
    apply_topics(settings, specs=[BY_NAME["requests"]])
    topic = settings.topic("requests")
    values = [{"request_id": "r1", "n": i} for i in range(5)]
    assert produce_messages(settings, topic, values, key="r1") == 5
    messages = consume_messages(settings, topic, 5, timeout_s=10)
    assert [(m.key(), m.value()) for m in messages] == [(b"r1", f'{{"request_id":"r1","n":{i}}}'.encode())
                                                        for i in range(5)]
    assert len({m.partition() for m in messages}) == 1


def test_consume_says_what_arrived_when_too_few(settings: Settings) -> None:
    apply_topics(settings, specs=[BY_NAME["logs"]])
    produce_messages(settings, settings.topic("logs"), [b"only-one"], key="svc")
    with pytest.raises(AssertionError, match=r"1 of 2 messages .*only-one"):
        consume_messages(settings, settings.topic("logs"), 2, timeout_s=0.5)


def test_wait_for_broker_raises_admin_error_when_nothing_listens(settings: Settings) -> None:
    nowhere = settings.with_bootstrap(f"127.0.0.1:{free_port()}", is_embedded=True)
    with pytest.raises(AdminError, match=r"no Kafka broker answered at 127\.0\.0\.1:\d+"):
        wait_for_broker(nowhere, timeout_s=0.5)


def test_wait_for_broker_returns_when_the_broker_answers(settings: Settings) -> None:
    wait_for_broker(settings, timeout_s=5)
