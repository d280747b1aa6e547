"""``make bench``: run every benchmark in turn; each prints its figures beside the target it compares to.

Run one with ``.venv/bin/python -m bench.<name>`` (``--help`` for its options), or several with
``.venv/bin/python -m bench name1 name2``. Medians of repeated runs: this kind of machine is shared and noisy.
"""

from __future__ import annotations

import runpy
import sys
import time

#: In the order a reader wants them: the simulator first (everything else is measured on it).
BENCHES = ("sim_speed", "oracle_gap", "detectors", "detect_quality", "detection", "incidents", "experiments", "routing",
           "remediation", "insights", "rollouts")


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; one of: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    for name in names:
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.perf_counter()
        saved = sys.argv
        sys.argv = [f"bench.{name}"]
        try:
            runpy.run_module(f"bench.{name}", run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (None, 0):
                print(f"bench.{name} exited with {exc.code}", file=sys.stderr)
        finally:
            sys.argv = saved
        print(f"=== bench.{name}: {time.perf_counter() - started:.1f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
