"""Fail fast, with one clear error, when the cluster cannot be reached or refuses our credentials.

librdkafka retries a connection forever and reports each failure (a SASL worker
pointed at a plaintext broker wrote 1,148 log lines in 25 s and never exited).
Before any stage starts, ``check_connection`` asks the cluster for its metadata a
bounded number of times; an authentication failure ends it at once (retrying
cannot fix credentials), an unreachable cluster after the last attempt.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from infra.settings import Settings

log = logging.getLogger(__name__)

_AUTH = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL,
                   KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                   KafkaError.ILLEGAL_SASL_STATE, KafkaError.UNSUPPORTED_SASL_MECHANISM})


class ConnectionFailure(RuntimeError):
    """The cluster is unreachable or refuses this client (the worker does not start)."""


def check_connection(settings: Settings, *, attempts: int = 3, timeout_s: float = 10.0) -> None:
    """Return once the cluster answers a metadata request; raise ``ConnectionFailure`` otherwise."""
    errors: list[KafkaError] = []
    admin = AdminClient({**settings.kafka_config(), "error_cb": errors.append, "log_level": 0})
    where = f"{settings.bootstrap_servers} ({settings.security_protocol}" + (
        f", SASL {settings.sasl_mechanism})" if settings.sasl_mechanism else ")")
    last = "no answer"
    for attempt in range(1, attempts + 1):
        try:
            admin.list_topics(timeout=timeout_s)
            return
        except KafkaException as exc:
            last = exc.args[0].str()
        auth = [e for e in errors if e.code() in _AUTH]
        if auth:
            raise ConnectionFailure(f"Kafka at {where} refused this client: {auth[0].str()}; check "
                                    "KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_CA_LOCATION")
        if attempt < attempts:
            log.warning("Kafka at %s does not answer (attempt %d of %d): %s", where, attempt, attempts,
                        errors[-1].str() if errors else last)
            time.sleep(min(5.0, 1.0 * attempt))
    detail = errors[-1].str() if errors else last
    raise ConnectionFailure(f"cannot reach Kafka at {where} after {attempts} attempts of {timeout_s:.0f} s: "
                            f"{detail}; check KAFKA_BOOTSTRAP_SERVERS and the security settings")
