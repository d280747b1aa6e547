"""Kafka headers loopwise reads and writes: W3C trace context, and the error context of dead letters.

Trace context (``traceparent``, ``tracestate``, https://www.w3.org/TR/trace-context/)
is carried from an input record to every message its handling produces
(outcomes, route decisions, anomalies, dead letters), so a trace that starts in
the caller's gateway continues through loopwise.

A dead letter keeps its record (``DeadLetter``, unchanged for its consumers) as
the value, and says in headers, as Kafka Connect's ``errors.deadletterqueue.context.headers.enable``
does with its ``__connect.errors.*`` headers, where the input came from and why
it failed; the input's own headers are kept beside them, so a replay can restore them.
"""

from __future__ import annotations

from typing import Sequence

from schemas.records import DeadLetter

#: Headers as confluent-kafka gives and takes them.
Headers = tuple[tuple[str, bytes], ...]

TRACE_HEADERS = frozenset({"traceparent", "tracestate"})

ERROR_PREFIX = "loopwise.error."
ERROR_TOPIC = ERROR_PREFIX + "topic"
ERROR_PARTITION = ERROR_PREFIX + "partition"
ERROR_OFFSET = ERROR_PREFIX + "offset"
ERROR_REASON = ERROR_PREFIX + "reason"
ERROR_MESSAGE = ERROR_PREFIX + "message"
ERROR_TS_MS = ERROR_PREFIX + "ts_ms"
#: Set on a record ``loopwise dlq replay`` re-published: ``<dlq topic>/<partition>/<offset>``.
REPLAYED_FROM = "loopwise.replayed_from"

_MAX_MESSAGE_BYTES = 1024


def as_headers(raw: Sequence[tuple[str, bytes | str | None]] | None) -> Headers | None:
    """confluent-kafka's ``Message.headers()`` as a tuple (None when there are none)."""
    if not raw:
        return None
    return tuple((name, value if isinstance(value, bytes) else (value or "").encode()) for name, value in raw)


def trace_headers(headers: Headers | None) -> Headers | None:
    """Only the W3C trace context of ``headers`` (None when it has none).

    >>> trace_headers((("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ("x", b"1")))
    (('traceparent', b'00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'),)
    """
    if not headers:
        return None
    found = tuple((name, value) for name, value in headers if name in TRACE_HEADERS)
    return found or None


def dead_letter_headers(letter: DeadLetter, original: Headers | None) -> Headers:
    """The input's own headers (its ``loopwise.error.*`` ones dropped), then the dead letter's error context."""
    kept = tuple((name, value) for name, value in original or () if not name.startswith(ERROR_PREFIX))
    return kept + (
        (ERROR_TOPIC, letter.source_topic.encode()),
        (ERROR_PARTITION, str(letter.partition).encode()),
        (ERROR_OFFSET, str(letter.offset).encode()),
        (ERROR_REASON, letter.reason.encode()),
        (ERROR_MESSAGE, letter.error.encode()[:_MAX_MESSAGE_BYTES]),
        (ERROR_TS_MS, str(letter.ts_ms).encode()),
    )


def replay_headers(dlq_headers: Headers | None, dlq_topic: str, partition: int, offset: int) -> Headers:
    """The headers a replayed record gets: its original ones, and where it was replayed from."""
    kept = tuple((name, value) for name, value in dlq_headers or ()
                 if not name.startswith(ERROR_PREFIX) and name != REPLAYED_FROM)
    return kept + ((REPLAYED_FROM, f"{dlq_topic}/{partition}/{offset}".encode()),)
