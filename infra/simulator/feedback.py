"""User feedback: who gives which kind, what value it takes given the true quality, and when it arrives.

Per kind, ``rate`` is the share of served requests that get it at quality 0.5;
how it moves with quality ``q`` (in [0, 1], 0 for a failed request):

============== ========================= ==========================================
kind           probability               value
============== ========================= ==========================================
thumbs         rate                      1 if q + 0.15 z > 0.5 else 0
rating         rate                      clip(round(1 + 4 q + 0.5 z), 1, 5)
edit           rate * 2 (1 - q)          clip(1 - q + 0.1 z, 0, 1) (share edited)
delete         rate * 2 (1 - q)          1
dwell          rate                      30 s * (0.5 + q) * exp(0.5 z)
task_completed rate * 2 q                1
============== ========================= ==========================================

Delays are lognormal: ``median_s * exp(sigma * z)``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from infra.simulator.scenario import FEEDBACK_KINDS, FeedbackModel
from schemas.records import FeedbackEvent, FeedbackKind

F64 = npt.NDArray[np.float64]


def feedback_probability(kind: str, rate: float, quality: F64) -> F64:
    """Probability that a request of true ``quality`` gets feedback of ``kind``.

    >>> feedback_probability("edit", 0.1, np.array([0.0, 0.5, 1.0])).tolist()
    [0.2, 0.1, 0.0]
    """
    if kind in ("edit", "delete"):
        return np.clip(rate * 2.0 * (1.0 - quality), 0.0, 1.0)
    if kind == "task_completed":
        return np.clip(rate * 2.0 * quality, 0.0, 1.0)
    return np.full(len(quality), rate)


def feedback_value(kind: str, quality: F64, z: F64) -> F64:
    """The feedback's value for each request, from its true quality and a standard normal draw.

    >>> feedback_value("rating", np.array([0.0, 0.5, 1.0]), np.zeros(3)).tolist()
    [1.0, 3.0, 5.0]
    """
    if kind == "thumbs":
        return (quality + 0.15 * z > 0.5).astype(np.float64)
    if kind == "rating":
        return np.clip(np.round(1.0 + 4.0 * quality + 0.5 * z), 1.0, 5.0)
    if kind == "edit":
        return np.clip(1.0 - quality + 0.1 * z, 0.0, 1.0)
    if kind == "dwell":
        return 30.0 * (0.5 + quality) * np.exp(0.5 * z)
    return np.ones(len(quality))


@dataclass
class FeedbackQueue:
    """Feedback drawn when its request is served, released when event time reaches it."""

    model: FeedbackModel
    _heap: list[tuple[int, int, FeedbackEvent]] = field(default_factory=list)
    _seq: int = 0

    def schedule(self, request_ids: list[str], workflows: list[str], ts_ms: npt.NDArray[np.int64], quality: F64,
                 served: npt.NDArray[np.bool_], draws: tuple[F64, F64, F64]) -> None:
        """Draw the feedback of a slice's requests (``draws`` from ``TrafficSlice.feedback_draws``)."""
        u, z_delay, z_value = draws
        for k, kind in enumerate(FEEDBACK_KINDS):
            spec = self.model.kinds.get(kind)
            if spec is None or spec.rate <= 0:
                continue
            picked = np.flatnonzero(served & (u[k] < feedback_probability(kind, spec.rate, quality)))
            if len(picked) == 0:
                continue
            delay_ms = spec.delay_median_s * 1000.0 * np.exp(spec.delay_sigma * z_delay[k, picked])
            due = (ts_ms[picked] + delay_ms.astype(np.int64)).tolist()
            values = feedback_value(kind, quality[picked], z_value[k, picked]).tolist()
            fb_kind = FeedbackKind(kind)
            for i, due_ms, value in zip(picked.tolist(), due, values):
                event = FeedbackEvent(f"{request_ids[i]}-{kind}", request_ids[i], due_ms, fb_kind, value, workflows[i])
                heapq.heappush(self._heap, (due_ms, self._seq, event))
                self._seq += 1

    def release(self, until_ms: int) -> list[FeedbackEvent]:
        """Pop every feedback due before ``until_ms``, in time order."""
        out = []
        while self._heap and self._heap[0][0] < until_ms:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def __len__(self) -> int:
        return len(self._heap)
