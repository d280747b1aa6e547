"""Canary rollouts of workflow versions: version assignment, concurrent canary-vs-baseline verdicts, the controller.

``assign`` picks the version of one request from the published split (sticky
keyed hash); ``verdict`` compares a canary with its baseline over the same
window; ``controller`` steps, holds, promotes and rolls back.
"""

from processors.rollout.assign import assign_version, bucket
from processors.rollout.book import VersionBook
from processors.rollout.flags import evaluate, evaluate_all
from processors.rollout.controller import CONTROL_ACTIONS, Rollout, RolloutController, RolloutOutput, RolloutStatus
from processors.rollout.verdict import Judgement, MetricVerdict, VerdictConfig, VersionSample, judge, overall

__all__ = ["CONTROL_ACTIONS", "Judgement", "MetricVerdict", "Rollout", "RolloutController", "RolloutOutput",
           "RolloutStatus", "VerdictConfig", "VersionBook", "VersionSample", "assign_version", "bucket", "evaluate", "evaluate_all", "judge", "overall"]
