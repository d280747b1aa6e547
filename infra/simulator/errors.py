"""The simulator's error tree.

::

    SimulatorError          anything the simulator refuses to do
     └── ScenarioError      a scenario file is missing, unreadable or invalid (names the bad key)
"""

from __future__ import annotations


class SimulatorError(Exception):
    """The simulator cannot do what was asked (bad arguments, unsupported mode)."""


class ScenarioError(SimulatorError):
    """A scenario is missing or invalid; the message names the offending key path."""
