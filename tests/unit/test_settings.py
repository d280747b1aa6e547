"""Settings.from_env: parsing, refusals with clear messages, secrets kept out of text, librdkafka config."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings as hypothesis_settings
from hypothesis import strategies as st

from infra.settings import ConfigError, Secret, Settings

SASL_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
    "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "loopwise",
    "KAFKA_SASL_PASSWORD": "pw-s3cret value",
    "KAFKA_SSL_CA_LOCATION": "/etc/ssl/ca.pem",
}
PROD_KEY = "k" * 32


def test_empty_env_gives_the_documented_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.bootstrap_servers, settings.topic_prefix, settings.partitions) == (None, "lw.", 4)
    assert (settings.session_timeout_s, settings.fetch_max_wait_ms, settings.data_dir) == (6.0, None, Path(".loopwise"))
    assert (settings.mode, settings.is_embedded, settings.security_protocol) == ("dev", False, "PLAINTEXT")


def test_values_are_parsed_trimmed_and_normalised() -> None:
    settings = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": " k1:9092 ", "LOOPWISE_PARTITIONS": "12", "LOOPWISE_SESSION_TIMEOUT_S": "2.5",
        "LOOPWISE_FETCH_MAX_WAIT_MS": "0", "LOOPWISE_TOPIC_PREFIX": "acme.", "LOOPWISE_LOG_LEVEL": "DEBUG",
        "LOOPWISE_MODE": "Production", "LOOPWISE_SIGNING_KEY": PROD_KEY, "LOOPWISE_DATA_DIR": "/var/lw",
        "KAFKA_SECURITY_PROTOCOL": "ssl",
    })
    assert (settings.bootstrap_servers, settings.partitions, settings.session_timeout_s) == ("k1:9092", 12, 2.5)
    assert (settings.fetch_max_wait_ms, settings.topic_prefix, settings.log_level) == (0, "acme.", "debug")
    assert (settings.mode, settings.data_dir, settings.security_protocol) == ("production", Path("/var/lw"), "SSL")
    assert settings.topic("requests") == "acme.requests"


@pytest.mark.parametrize(("env", "message"), [
    ({"LOOPWISE_PARTITIONS": "four"}, "LOOPWISE_PARTITIONS='four': expected a whole number"),
    ({"LOOPWISE_PARTITIONS": "0"}, "LOOPWISE_PARTITIONS=0: must be at least 1"),
    ({"LOOPWISE_MAX_EVENT_BYTES": "10"}, "LOOPWISE_MAX_EVENT_BYTES=10: must be at least 64"),
    ({"LOOPWISE_SESSION_TIMEOUT_S": "soon"}, "LOOPWISE_SESSION_TIMEOUT_S='soon': expected a number"),
    ({"LOOPWISE_SESSION_TIMEOUT_S": "0.5"}, "LOOPWISE_SESSION_TIMEOUT_S=0.5: must be at least 1.0"),
    ({"LOOPWISE_FETCH_MAX_WAIT_MS": "-1"}, "LOOPWISE_FETCH_MAX_WAIT_MS=-1: must be at least 0"),
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS': expected one of"),
    ({"LOOPWISE_MODE": "staging"}, "LOOPWISE_MODE='staging': expected one of"),
])
def test_bad_values_raise_config_error_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("missing", ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"])
def test_sasl_needs_mechanism_username_and_password(missing: str) -> None:
    env = {name: value for name, value in SASL_ENV.items() if name != missing}
    with pytest.raises(ConfigError, match="KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM"):
        Settings.from_env(env)


def test_production_needs_a_signing_key_of_32_characters() -> None:
    with pytest.raises(ConfigError, match="LOOPWISE_MODE=production needs LOOPWISE_SIGNING_KEY"):
        Settings.from_env({"LOOPWISE_MODE": "production"})
    with pytest.raises(ConfigError, match="at least 32 characters"):
        Settings.from_env({"LOOPWISE_MODE": "production", "LOOPWISE_SIGNING_KEY": "k" * 31})
    assert Settings.from_env({"LOOPWISE_MODE": "production", "LOOPWISE_SIGNING_KEY": PROD_KEY}).signing_key_bytes == (
        PROD_KEY.encode())


def test_dev_mode_without_a_key_generates_a_private_key_per_installation(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    first = Settings.from_env({"LOOPWISE_DATA_DIR": str(tmp_path / "a")})
    key = first.signing_key_bytes
    assert len(key) >= 32 and b"loopwise" not in key  # no public constant
    assert first.signing_key_bytes == key == Settings.from_env({"LOOPWISE_DATA_DIR": str(tmp_path / "a")}).signing_key_bytes
    path = tmp_path / "a" / "signing.key"
    assert path.read_bytes().strip() == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings.from_env({"LOOPWISE_DATA_DIR": str(tmp_path / "b")}).signing_key_bytes != key
    logged = [r.getMessage() for r in caplog.records if "generated" in r.getMessage()]
    assert len(logged) == 2 and str(path) in logged[0]
    assert not any(key.decode() in r.getMessage() for r in caplog.records)  # the path, never the secret


@hypothesis_settings(max_examples=25)  # unit tests stay in milliseconds
@given(password=st.text(min_size=1, max_size=40), key=st.text(min_size=32, max_size=64))
def test_secrets_never_appear_in_repr_or_str(password: str, key: str) -> None:
    env = {**SASL_ENV, "KAFKA_SASL_PASSWORD": f"pw-{password}", "LOOPWISE_MODE": "production",
           "LOOPWISE_SIGNING_KEY": f"sk-{key}"}
    settings = Settings.from_env(env)
    for text in (repr(settings), str(settings), f"{settings}", repr(settings.sasl_password)):
        assert f"pw-{password}" not in text and f"sk-{key}" not in text
    assert "Secret('***')" in repr(settings)
    assert settings.sasl_password.reveal() == f"pw-{password}"


def test_secret_equality_and_truth_follow_the_value() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b") and Secret("a") != "a"
    assert (bool(Secret("")), bool(Secret("x")), repr(Secret(""))) == (False, True, "Secret('')")


def test_kafka_config_passes_sasl_and_ssl_through() -> None:
    assert Settings.from_env(SASL_ENV).kafka_config() == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "loopwise",
        "sasl.password": "pw-s3cret value",
        "ssl.ca.location": "/etc/ssl/ca.pem",
    }


def test_kafka_config_on_plaintext_has_only_servers_and_protocol() -> None:
    config = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k:9092"}).kafka_config()
    assert config == {"bootstrap.servers": "k:9092", "security.protocol": "PLAINTEXT"}


def test_kafka_config_without_a_cluster_raises() -> None:
    with pytest.raises(ConfigError, match="no Kafka cluster"):
        Settings.from_env({}).kafka_config()


def test_with_bootstrap_marks_embedded_and_shrinks_the_fetch_wait() -> None:
    embedded = Settings.from_env({}).with_bootstrap("127.0.0.1:1234", is_embedded=True)
    cluster = Settings.from_env({}).with_bootstrap("k:9092", is_embedded=False)
    assert (embedded.bootstrap_servers, embedded.effective_fetch_max_wait_ms) == ("127.0.0.1:1234", 10)
    assert cluster.effective_fetch_max_wait_ms is None
    assert Settings.from_env({"LOOPWISE_FETCH_MAX_WAIT_MS": "50"}).with_bootstrap(
        "x:1", is_embedded=True).effective_fetch_max_wait_ms == 50


def test_with_returns_a_changed_copy() -> None:
    base = Settings.from_env({})
    changed = base.with_(topic_prefix="t1.", metrics_port=0)
    assert (base.topic_prefix, changed.topic_prefix, changed.metrics_port) == ("lw.", "t1.", 0)
