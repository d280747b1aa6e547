"""Online anomaly detection: robust score-then-learn detectors, calibration, and the per-entity bank."""

from processors.anomaly.bank import DetectorBank, SeverityPolicy, anomaly_id
from processors.anomaly.detectors import METHODS, Scored, SeriesDetector
from processors.anomaly.registry import DETECTORS, make_scorer, score_series

__all__ = ["DETECTORS", "METHODS", "DetectorBank", "Scored", "SeriesDetector", "SeverityPolicy",
           "anomaly_id", "make_scorer", "score_series"]
