"""The record types that travel as topic values, and their Avro schemas on disk."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Final

from schemas import records

AVRO_DIR: Final = Path(__file__).parent / "avro"
BASELINE_DIR: Final = Path(__file__).parent / "baseline"

# Names match ``infra.topics.TopicSpec.record``.
RECORD_TYPES: Final[dict[str, type]] = {
    cls.__name__: cls
    for cls in (
        records.RequestEvent, records.FeedbackEvent, records.MetricEvent, records.LogEvent,
        records.WorkflowDefinition, records.JobSubmission, records.RouteRequest, records.Outcome,
        records.Anomaly, records.Incident, records.RoutingPolicy, records.RouteDecision,
        records.ExperimentDecision, records.Command, records.RolloutStep, records.Insight,
        records.DeadLetter, records.ModelVersion, records.Approval, records.Forecast, records.LoadCount,
    )
}


def schema_file_name(record_type: type) -> str:
    """``RequestEvent`` -> ``request_event.avsc``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", record_type.__name__).lower() + ".avsc"


@cache
def _parsed(record_type: type) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads((AVRO_DIR / schema_file_name(record_type)).read_text("utf-8"))
    return parsed


def schema_of(record_type: type) -> dict[str, Any]:
    """The parsed ``.avsc`` of a record type (read once; each call gets its own copy).

    Raises:
        KeyError: The type is not a topic value (nested records have no file of their own).
    """
    if RECORD_TYPES.get(record_type.__name__) is not record_type:
        known = ", ".join(RECORD_TYPES)
        raise KeyError(f"{record_type.__name__} is not a topic value type; known: {known}")
    return copy.deepcopy(_parsed(record_type))
