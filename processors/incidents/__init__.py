"""Incidents: anomalies and error-log bursts correlated into grouped, deduplicated, inhibited incidents."""

from processors.incidents.bursts import LogBurstDetector, Signal
from processors.incidents.config import GROUP_LABELS, GroupingConfig
from processors.incidents.correlator import IncidentCorrelator
from processors.incidents.groups import incident_id, root_cause

__all__ = ["GROUP_LABELS", "GroupingConfig", "IncidentCorrelator", "LogBurstDetector", "Signal",
           "incident_id", "root_cause"]
