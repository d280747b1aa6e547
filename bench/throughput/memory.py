"""Memory of the detectors per 100 k entities: RSS growth of a ``DetectorBank`` in a fresh child process.

Each entity × signal series gets ``OBSERVATIONS`` values (past the bank's
warm-up, so its window and score quantiles are full: the steady state). Filling
100 k series takes ~50 s on this machine, so the bench fills fewer and scales
linearly (memory is linear in series: one detector each); the report says so.

Child: ``python -m bench.throughput.memory SERIES`` prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time

from bench.throughput.harness import REPO, BenchError

OBSERVATIONS = 64
PER = 100_000


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def measure(series: int) -> dict[str, float]:
    """RSS growth (bytes) of a bank holding ``series`` warmed series, and seconds it took to fill."""
    from processors.anomaly import DetectorBank

    gc.collect()
    before = _rss_bytes()
    started = time.perf_counter()
    bank = DetectorBank()
    for step in range(OBSERVATIONS):
        for entity in range(series):
            bank.observe(f"svc-{entity:06d}", "service", "rps", 1_767_571_200_000 + 1000 * step,
                         100.0 + (entity + step) % 7)
    gc.collect()
    grown = _rss_bytes() - before
    return {"series": float(len(bank)), "rss_bytes": float(grown), "fill_s": time.perf_counter() - started}


def run_memory(series: int, timeout_s: float = 240.0) -> tuple[float, dict[str, float]]:
    """(MB per 100 k series, raw figures), measured in a child so nothing else shares its heap."""
    try:
        done = subprocess.run([sys.executable, "-m", "bench.throughput.memory", str(series)], cwd=REPO,
                              capture_output=True, timeout=timeout_s, check=True)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"memory: filling {series} series took longer than {timeout_s:.0f} s") from exc
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"memory child failed: {exc.stderr.decode(errors='replace')[-1500:]}") from exc
    figures = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return figures["rss_bytes"] / figures["series"] * PER / 1e6, figures


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
