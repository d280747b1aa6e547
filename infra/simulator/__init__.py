"""Closed-loop simulator of an AI platform: scenarios as data, seeded event time, baselines, oracle, scorecards.

Entry points: ``offline.run_offline`` / ``offline.compare`` (in process),
``environment.Environment`` + ``environment.drive`` (the transport seam the
live Kafka driver builds on), ``cli.simulate_main`` (``loopwise simulate``).
The simulator may import ``schemas`` and ``processors``; they never import it.
"""
