"""Stages: what the worker does with each batch of raw messages, free of Kafka and Faust.

``base`` holds the contract every stage follows; each module beside it holds the
stages of one capability. ``STAGES`` is the list a worker picks from
(``LOOPWISE_STAGES``), in start order.
"""

from __future__ import annotations

from streams.stages.base import DEDUP_FIELDS, Outgoing, RekeyStage, Stage, StageEnv, wall_clock_ms
from streams.stages.lake import LakeStage
from streams.stages.capacity import ForecastStage, LoadStage, ScaleStage, ScheduleStage
from streams.stages.core import (
    CorrelateStage, IncidentStage, LearnRekeyStage, LearnStage, ObserveStage, RemediateStage, RouteStage,
    WorkflowStage,
)

STAGES: tuple[type[Stage], ...] = (WorkflowStage, CorrelateStage, ObserveStage, IncidentStage, RemediateStage,
                                   LearnRekeyStage, LearnStage, RouteStage, LakeStage,
                                   LoadStage, ForecastStage, ScaleStage, ScheduleStage)

__all__ = [
    "ForecastStage", "LoadStage", "ScaleStage", "ScheduleStage",
    "DEDUP_FIELDS", "STAGES", "CorrelateStage", "IncidentStage", "LakeStage", "LearnRekeyStage", "LearnStage", "ObserveStage",
    "Outgoing", "RekeyStage", "RemediateStage", "RouteStage", "Stage", "StageEnv", "WorkflowStage", "wall_clock_ms",
]

# Insight stages (error patterns, satisfaction, cache opportunities): issue 15.
from streams.stages.insights import CacheStage, PatternStage, SatisfactionStage  # noqa: E402

STAGES += (PatternStage, SatisfactionStage, CacheStage)
__all__ += ["CacheStage", "PatternStage", "SatisfactionStage"]

# Canary rollouts of workflow versions: issue 14.
from streams.stages.rollout import RolloutFeedStage, RolloutStage  # noqa: E402

STAGES += (RolloutFeedStage, RolloutStage)
__all__ += ["RolloutFeedStage", "RolloutStage"]

# Domain metrics read back from the decision and output topics: issue 17.
from streams.stages.telemetry import MetricsStage  # noqa: E402

STAGES += (MetricsStage,)
__all__ += ["MetricsStage"]

# Notifications of incidents and commands to receivers (opt-in): issue 17.
from streams.stages.notify import NotifyStage  # noqa: E402

STAGES += (NotifyStage,)
__all__ += ["NotifyStage"]

# OpenTelemetry GenAI spans (Collector Kafka exporter) → requests (opt-in, loopwise[otlp]): issue 18.
from streams.stages.otlp import OtlpStage  # noqa: E402

STAGES += (OtlpStage,)
__all__ += ["OtlpStage"]
