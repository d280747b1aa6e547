"""Prompt-variant experiments: top-two Thompson allocation, anytime-valid tests, SRM and guardrails, decisions.

``ExperimentEngine`` is the entry point (one per workflow experiment); the
modules beside it hold its parts: ``sequential`` (mSPRT, confidence sequences,
SRM), ``allocation`` (posteriors, chance to win, shares, sticky buckets),
``guardrails``, ``decision`` (winner and retirement rules) and ``state``
(the JSON-able snapshot).
"""

from processors.experiments.decision import Rules
from processors.experiments.engine import ExperimentConfig, ExperimentEngine, unit_of
from processors.experiments.guardrails import Guardrail

__all__ = ["ExperimentConfig", "ExperimentEngine", "Guardrail", "Rules", "unit_of"]
