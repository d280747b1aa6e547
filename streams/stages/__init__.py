"""Stages: what the worker does with each batch of raw messages, free of Kafka and Faust.

``base`` holds the contract every stage follows; each module beside it holds the
stages of one capability. ``STAGES`` is the list a worker picks from
(``LOOPWISE_STAGES``), in start order.
"""

from __future__ import annotations

from streams.stages.base import DEDUP_FIELDS, Outgoing, Stage, StageEnv, wall_clock_ms
from streams.stages.lake import LakeStage
from streams.stages.core import (
    CorrelateStage, IncidentStage, LearnStage, ObserveStage, RemediateStage, RouteStage, WorkflowStage,
)

STAGES: tuple[type[Stage], ...] = (WorkflowStage, CorrelateStage, ObserveStage, IncidentStage, RemediateStage,
                                   LearnStage, RouteStage, LakeStage)

__all__ = [
    "DEDUP_FIELDS", "STAGES", "CorrelateStage", "IncidentStage", "LakeStage", "LearnStage", "ObserveStage", "Outgoing",
    "RemediateStage", "RouteStage", "Stage", "StageEnv", "WorkflowStage", "wall_clock_ms",
]
