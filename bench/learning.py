"""The learn stage's state: restore time and memory of many workflow × segment policies, CPU per outcome.

``python -m bench.learning [--workflows 1000] [--segments 10]`` builds one
``LearningCore`` holding workflows × segments learned policies (one outcome
per segment), then prints: the snapshot's size, the time to encode it and to
restore it (JSON decode + ``LearningCore.restore``, what a worker does when a
partition is assigned; target: 10 k policies in under 5 s), the memory per
state (tracemalloc) and the CPU per outcome of ``LearnStage`` driven in memory
with the outcomes spread over 1, 2 and 3 stages (each one worker's share; the
per-outcome cost must not grow with the number of workers). Medians of
``--repeats`` runs; CPU time, not wall time, so a busy machine does not skew it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc

from infra.settings import Settings
from processors.correlation import OutcomeCorrelator
from processors.learning import LearningCore
from processors.workflows import WorkflowRegistry
from schemas.records import Outcome, RequestContext
from schemas.serde import json_codec
from sinks.prometheus import Metrics
from streams.edge import RawMessage
from streams.stages import LearnStage, StageEnv
from tests.factories import make_request, make_workflow

T0 = 1_700_000_000_000


def _outcomes(registry: WorkflowRegistry, workflows: int, segments: int, per_segment: int) -> list[Outcome]:
    correlator = OutcomeCorrelator(registry)
    out: list[Outcome] = []
    for w in range(workflows):
        registry.update(make_workflow(f"wf{w}", context_keys=("task",)))
    i = 0
    for k in range(per_segment):
        for w in range(workflows):
            for s in range(segments):
                request = make_request(f"r{i}", ts_ms=T0 + i, workflow=f"wf{w}",
                                       context=RequestContext(tenant="t", task=f"task{s}"))
                outcome = correlator.on_request(request)
                assert outcome is not None
                out.append(outcome)
                i += 1
    return out


def _core(workflows: int, segments: int) -> tuple[LearningCore, float]:
    registry = WorkflowRegistry()
    core = LearningCore(registry)
    outcomes = _outcomes(registry, workflows, segments, 1)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for outcome in outcomes:
        core.observe_outcome(outcome)
    core.decisions()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return core, used / max(1, len(core.router.segments))


def _restore_s(core: LearningCore, repeats: int) -> tuple[float, float, int]:
    encode, restore = [], []
    blob = b""
    for _ in range(repeats):
        started = time.process_time()
        blob = json.dumps(core.snapshot(), separators=(",", ":")).encode()
        encode.append(time.process_time() - started)
        started = time.process_time()
        LearningCore.restore(core.registry, json.loads(blob))
        restore.append(time.process_time() - started)
    return statistics.median(encode), statistics.median(restore), len(blob)


def _cpu_per_outcome_us(workers: int, outcomes: list[Outcome], registry: WorkflowRegistry) -> float:
    """CPU µs per outcome when ``workers`` learn stages each take the workflows hashed to them."""
    codec = json_codec(Outcome)
    stages = []
    for _ in range(workers):
        env = StageEnv(Settings(bootstrap_servers="unused:9092", topic_prefix="b."), Metrics(),
                       now_ms=lambda: T0 + 10**9)
        for definition in registry:
            env.registry.update(definition)
        stages.append(LearnStage(env))
    shares: list[list[RawMessage]] = [[] for _ in range(workers)]
    for i, o in enumerate(outcomes):
        w = int(o.workflow[2:]) % workers
        shares[w].append(RawMessage("b.repartition.loopwise.learn.outcomes", 0, i, o.workflow.encode(),
                                    codec.encode(o), T0))
    started = time.process_time()
    for stage, share in zip(stages, shares):
        for n in range(0, len(share), 500):
            stage.handle(share[n:n + 500])
            stage.state_changes()
    return (time.process_time() - started) / len(outcomes) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    core, bytes_per_state = _core(args.workflows, args.segments)
    n = len(core.router.segments)
    encode_s, restore_s, size = _restore_s(core, args.repeats)
    print(f"learning core: {n} workflow × segment policies, snapshot {size / 1e6:.1f} MB")
    print(f"  encode {encode_s:.2f} s, restore {restore_s:.2f} s CPU (target: 10 k policies restored in < 5 s)")
    print(f"  memory {bytes_per_state / 1e3:.1f} KB per state: {bytes_per_state * 100_000 / 1e9:.2f} GB "
          "per 100 k workflow × segment states")
    registry = WorkflowRegistry()
    outcomes = _outcomes(registry, 200, 5, 20)
    cpu = {w: statistics.median(_cpu_per_outcome_us(w, outcomes, registry) for _ in range(args.repeats))
           for w in (1, 2, 3)}
    print("learn stage CPU per outcome (µs), workflows spread over 1 / 2 / 3 workers: "
          + " / ".join(f"{cpu[w]:.0f}" for w in (1, 2, 3))
          + f"  (3 workers / 1 = {cpu[3] / cpu[1]:.2f}; target ≤ 1.10)")


if __name__ == "__main__":
    main()
