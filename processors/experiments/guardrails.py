"""Guardrail metrics of an experiment: what they read from an outcome and how much regression they tolerate.

A guardrail is declared in ``ExperimentSpec.guardrails`` as ``"metric"`` or
``"metric:tolerance"``. Every guardrail metric is lower-is-better (errors,
latency, cost, penalties). A tolerance ending in ``%`` is relative to the
control's mean (``"latency_ms:10%"``: at most 10 % slower); otherwise it is
absolute in the metric's unit (``"error_rate:0.02"``: at most 2 points more
errors). Without a tolerance the default of ``DEFAULT_TOLERANCES`` applies
(10 % for anything not listed there).

A variant breaches a guardrail when the anytime-valid confidence sequence of
``variant - control`` lies wholly above the tolerance: noise alone retires a
variant with probability at most the guardrail's alpha, however often one looks.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.records import Outcome, Status

#: Tolerance used when a guardrail names none: (value, is_relative).
DEFAULT_TOLERANCES: dict[str, tuple[float, bool]] = {
    "error_rate": (0.02, False),
    "latency_ms": (0.10, True),
    "cost_usd": (0.10, True),
}

_NUMERIC_FIELDS = frozenset({"latency_ms", "cost_usd", "reward_latency", "reward_cost", "reward_error"})


@dataclass(frozen=True, slots=True)
class Guardrail:
    """One lower-is-better metric and the regression it tolerates.

    >>> Guardrail.parse("latency_ms:15%")
    Guardrail(metric='latency_ms', tolerance=0.15, is_relative=True)
    >>> Guardrail.parse("error_rate")
    Guardrail(metric='error_rate', tolerance=0.02, is_relative=False)
    """

    metric: str
    tolerance: float
    is_relative: bool

    @classmethod
    def parse(cls, text: str) -> Guardrail:
        """Read ``"metric"`` or ``"metric:tolerance"`` (``%`` suffix: relative to control).

        Raises:
            ValueError: An unknown metric or a tolerance that is not a nonnegative number.
        """
        metric, _, raw = text.strip().partition(":")
        if metric != "error_rate" and metric not in _NUMERIC_FIELDS:
            raise ValueError(f"unknown guardrail metric {metric!r} in {text!r}")
        if not raw:
            value, relative = DEFAULT_TOLERANCES.get(metric, (0.10, True))
            return cls(metric, value, relative)
        relative = raw.endswith("%")
        value = float(raw[:-1]) / 100.0 if relative else float(raw)
        if value < 0:
            raise ValueError(f"negative tolerance in {text!r}")
        return cls(metric, value, relative)

    def limit(self, control_mean: float) -> float:
        """The largest tolerated ``variant - control`` difference.

        >>> Guardrail("latency_ms", 0.1, True).limit(800.0), Guardrail("error_rate", 0.02, False).limit(0.05)
        (80.0, 0.02)
        """
        return self.tolerance * abs(control_mean) if self.is_relative else self.tolerance

    def key(self) -> str:
        """A stable name for snapshots and evidence."""
        return f"{self.metric}:{self.tolerance:g}{'%' if self.is_relative else ''}"


def metric_value(outcome: Outcome, metric: str) -> float | None:
    """The value of a metric in one outcome; None when the outcome does not carry it.

    ``error_rate`` reads 1.0 for any request that did not end ``ok``; the
    primary metric may also be ``reward``, ``reward_quality`` or ``quality``
    (None while no feedback came).
    """
    if metric == "error_rate":
        return 0.0 if outcome.status is Status.OK else 1.0
    value = getattr(outcome, metric, None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
