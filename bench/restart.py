"""A worker restarted in the middle of a live run: does loopwise decide as well after as before?

``python -m bench.restart [--scenario drift] [--minutes 30] [--rate 20] [--speed 10] [--kill]``
starts the embedded broker and a worker, runs the scenario live (the
simulator follows the published policies), stops the worker half way
(SIGTERM, or SIGKILL with ``--kill``) and starts a new one on the same
changelogs. It prints reward / oracle over the 10 minutes of event time
before and after the restart (target: after ≥ 0.98 × before) and the total
variation between each segment's last policy before and first policy after
(target: ≤ 0.05), beside the floor: the total variation between two
consecutive publications of a segment before the restart (a policy is only
republished when it moved by ``publish_tv`` = 0.05, or on its heartbeat).
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from infra.admin import apply_topics
from infra.broker import EmbeddedBroker
from infra.settings import Settings
from infra.simulator.kafka_loop import run_live
from infra.simulator.loader import load_scenario
from infra.simulator.offline import run_offline
from tests.integration.worker_proc import decoded, read_topic, start_worker

_MIN_MS = 60_000


def _window_ratio(live: dict[str, list[float]], oracle: dict[str, list[float]], lo_s: float, hi_s: float) -> float:
    rows = [(r, o) for t, r, o in zip(live["t_s"], live["reward"], oracle["reward"]) if lo_s <= t < hi_s]
    return sum(r for r, _ in rows) / max(1e-9, sum(o for _, o in rows))


def _tv(a: dict[str, Any], b: dict[str, Any]) -> float:
    pa = {r["route"]: r["probability"] for r in a["routes"]}
    pb = {r["route"]: r["probability"] for r in b["routes"]}
    return 0.5 * sum(abs(pa.get(k, 0.0) - pb.get(k, 0.0)) for k in set(pa) | set(pb))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="drift")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    duration_s = args.minutes * 60
    restart_at_s = duration_s / 2
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker:
        settings = (Settings.from_env({}).with_bootstrap(broker.bootstrap_servers, is_embedded=True)
                    .with_(topic_prefix="bench.", app_id="bench-restart", metrics_port=0, data_dir=Path(tmp)))
        apply_topics(settings)
        env = {"LOOPWISE_WORKER_ID": "w1"}
        worker = start_worker(settings, Path(tmp) / "first.log", env)
        results: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: results.update(run=run_live(
            settings, scenario, seed=args.seed, duration_s=duration_s, rate=args.rate, speed=args.speed)))
        started = time.monotonic()
        runner.start()
        time.sleep(max(0.0, started + restart_at_s / args.speed - time.monotonic()))  # the restart point, wall clock
        restart_wall = time.monotonic()
        if args.kill:
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait(10)
        else:
            worker.terminate()
        policies_before = decoded(read_topic(settings, settings.topic("decisions.routing"), timeout_s=60.0))
        worker = start_worker(settings, Path(tmp) / "second.log", env)
        runner.join()
        worker.terminate()
        policies = decoded(read_topic(settings, settings.topic("decisions.routing"), timeout_s=60.0))
    live = results["run"]
    oracle = run_offline(scenario, "oracle", args.seed, duration_s, args.rate)
    before = _window_ratio(live.series, oracle.series, restart_at_s - 600, restart_at_s)
    after = _window_ratio(live.series, oracle.series, restart_at_s, restart_at_s + 600)
    seen = {(p["segment"], p["policy_version"], p["ts_ms"]) for p in policies_before}
    last: dict[str, dict[str, Any]] = {}
    for p in policies_before:
        last[p["segment"]] = p
    first: dict[str, dict[str, Any]] = {}
    for p in policies:
        if (p["segment"], p["policy_version"], p["ts_ms"]) not in seen:
            first.setdefault(p["segment"], p)
    tvs = sorted(_tv(last[s], first[s]) for s in set(last) & set(first))
    previous: dict[str, dict[str, Any]] = {}
    floor = []
    for p in policies_before:
        if p["segment"] in previous:
            floor.append(_tv(previous[p["segment"]], p))
        previous[p["segment"]] = p
    floor.sort()
    kind = "SIGKILL" if args.kill else "SIGTERM"
    print(f"{args.scenario}, {args.minutes:g} min at {args.rate:g} req/s, speed {args.speed:g}; worker {kind} at "
          f"{restart_at_s / 60:.1f} min of event time ({time.monotonic() - restart_wall:.0f} s wall after it)")
    print(f"reward / oracle, 10 min before: {before:.3f}; 10 min after: {after:.3f}; after / before = "
          f"{after / before:.3f} (target ≥ 0.98)")
    if tvs:
        print(f"policy total variation, last before → first after, over {len(tvs)} segments: median "
              f"{tvs[len(tvs) // 2]:.3f}, max {tvs[-1]:.3f} (target ≤ 0.05); floor, consecutive publications "
              f"without a restart: median {floor[len(floor) // 2] if floor else float('nan'):.3f} over {len(floor)} pairs")
    else:
        print("no segment published a policy on both sides of the restart")


if __name__ == "__main__":
    main()
