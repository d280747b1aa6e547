"""The input edge: decode, validate, deduplicate and dead-letter raw messages.

Kept free of Faust so the same code serves every transport (Faust agents,
the fast batch path, tests) and can be driven in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

from processors.dedup import Admission, Deduplicator
from schemas.records import DeadLetter
from schemas.serde import Codec, SchemaError

R = TypeVar("R")

#: The DLQ keeps the original bytes, but never more than this (a huge payload
#: is the usual reason it is there, and the DLQ must stay producible).
DLQ_MAX_VALUE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed Kafka message, transport-neutral."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    #: Kafka headers, as (name, value) pairs; None when the message has none.
    headers: tuple[tuple[str, bytes], ...] | None = None


@dataclass(slots=True)
class Admitted(Generic[R]):
    """What the gate made of a batch: valid records (with their message) and dead letters."""

    records: list[tuple[RawMessage, R]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


class InputGate(Generic[R]):
    """Admits the valid, new events of one input topic; everything else becomes a ``DeadLetter``.

    Args:
        codec: decodes and validates the topic's values.
        key_field: the record field the message key must equal (when a key is given).
        dedup_field: the record field that identifies an event, or None for no deduplication.
        dedup: the deduplicator (its horizon also bounds how late an event may arrive).
        now_ms: wall clock for the dead letter's timestamp and the future check (injected for tests).
        max_future_ms: how far ahead of ``now_ms`` an event's ``ts_ms`` may be; further is
            ``from_future`` (one such event would otherwise move a clock for good). None: no check.
        rule: a cross-field check of the record (``schemas.validation.record_rule``).
    """

    def __init__(
        self,
        codec: Codec[R],
        *,
        key_field: str | None,
        dedup_field: str | None,
        dedup: Deduplicator | None,
        now_ms: Callable[[], int],
        max_future_ms: int | None = None,
        rule: Callable[[R], None] | None = None,
    ) -> None:
        self._codec, self._key_field, self._now_ms = codec, key_field, now_ms
        self._dedup_field, self._dedup = dedup_field, dedup
        self._max_future_ms, self._rule = max_future_ms, rule

    def admit(self, messages: Sequence[RawMessage]) -> Admitted[R]:
        """Sort a batch into valid new records and dead letters, keeping order."""
        out: Admitted[R] = Admitted()
        for message in messages:
            result = self.admit_one(message)
            if isinstance(result, DeadLetter):
                out.dead.append(result)
            else:
                out.records.append((message, result))
        return out

    def admit_one(self, message: RawMessage) -> R | DeadLetter:
        """The message's record if it is valid and new, else its dead letter."""
        try:
            record = self._codec.decode(message.value)
            self._check_key(message, record)
            if self._rule is not None:
                self._rule(record)
            if self._max_future_ms is not None:
                self._check_not_future(record)
        except SchemaError as exc:
            return self.dead_letter(message, exc.reason, str(exc))
        verdict = self._admission(record)
        if verdict is Admission.NEW:
            return record
        what = getattr(record, self._dedup_field or "", "?")
        error = (
            f"duplicate {self._dedup_field}={what!r}: already processed"
            if verdict is Admission.DUPLICATE
            else f"{self._dedup_field}={what!r} is older than the deduplication horizon"
        )
        return self.dead_letter(message, str(verdict), error)

    def _check_key(self, message: RawMessage, record: R) -> None:
        if self._key_field is None:
            return
        if message.key is None:
            raise SchemaError(
                "missing_key", f"the message has no key; it must be the {self._key_field} "
                "so related events share a partition", self._key_field,
            )
        expected = str(getattr(record, self._key_field))
        actual = message.key.decode("utf-8", "replace")
        if actual != expected:
            raise SchemaError(
                "key_mismatch",
                f"message key {actual[:80]!r} differs from {expected[:80]!r}; "
                f"the key must be the {self._key_field} so related events share a partition",
                self._key_field,
            )

    def _check_not_future(self, record: R) -> None:
        ts_ms = getattr(record, "ts_ms", None)
        if ts_ms is None or self._max_future_ms is None:
            return
        now_ms = self._now_ms()
        if ts_ms > now_ms + self._max_future_ms:
            raise SchemaError(
                "from_future", f"ts_ms={ts_ms} is {(ts_ms - now_ms) / 1000:.0f} s ahead of the wall clock "
                f"(at most {self._max_future_ms / 1000:.0f} s of clock skew is accepted)", "ts_ms",
            )

    def _admission(self, record: R) -> Admission:
        if self._dedup is None or self._dedup_field is None:
            return Admission.NEW
        ts_ms = int(getattr(record, "ts_ms", 0))
        return self._dedup.admit(str(getattr(record, self._dedup_field)), ts_ms)

    def dead_letter(self, message: RawMessage, reason: str, error: str) -> DeadLetter:
        value = message.value or b""
        if len(value) > DLQ_MAX_VALUE_BYTES:
            error = f"{error} (value truncated from {len(value)} to {DLQ_MAX_VALUE_BYTES} bytes in the DLQ)"
            value = value[:DLQ_MAX_VALUE_BYTES]
        return DeadLetter(
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=value,
            error=error[:4096],
            reason=reason,
            ts_ms=self._now_ms(),
        )
