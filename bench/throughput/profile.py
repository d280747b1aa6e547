"""``python -m bench.throughput.profile``: py-spy profiles behind the throughput and latency figures.

Three runs, each sampled by ``py-spy record`` (the ``dev`` extra installs it)
and summarised as text in ``bench/profiles/``:

- ``inprocess.txt``: every stage's ``handle`` in process (``processors_inprocess_eps``);
- ``full_bulk.txt``: the full worker working through records produced beforehand
  (``loopwise_full_eps``), with ``--gil`` so only the thread holding the GIL counts;
- ``full_1k.txt``: the full worker at 1,000 events/s (``latency_ms``), all threads,
  with the CPU used by the broker, the worker and the load generator beside it.

A summary lists the threads, then the functions by own time and by inclusive
time, as shares of all samples (``--idle`` is off: waiting in C, e.g. in
``poll``, still counts, waiting on a lock or sleeping does not). py-spy reads
the process without stopping it (``--nonblocking``), so the figures beside
each profile are close to unprofiled ones; a rare sample may be torn.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from bench.throughput.harness import REPO, BenchError, progress

OUT = REPO / "bench" / "profiles"
_TICKS_S = os.sysconf("SC_CLK_TCK")


def summarise(raw: str, top: int = 30) -> str:
    """Threads, own-time and inclusive-time tables from py-spy's ``raw`` (collapsed stacks) output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        total += n
        if not stack.isprintable():  # a torn sample (read while the stack changed): counted, not named
            own["(torn sample)"] += n
            continue
        threads[frames[0]] += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            inclusive[frame] += n
    if not total:
        return "no samples\n"

    def table(title: str, counter: collections.Counter[str], k: int) -> list[str]:
        return [f"== {title}"] + [f"{n / total:6.1%}  {name}" for name, n in counter.most_common(k)]

    lines = [f"samples: {total}"]
    lines += table("threads (first frame)", threads, 10)
    lines += table("own time", own, top)
    lines += table("inclusive time", inclusive, top)
    return "\n".join(lines) + "\n"


def _spy(pid: int, seconds: float, raw_path: Path, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    binary = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if binary is None:
        raise BenchError("py-spy is not installed: pip install -e '.[dev]'")
    return subprocess.Popen([binary, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                             "--rate", "200", "--format", "raw", "--output", str(raw_path), "--nonblocking", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_S


def _write(name: str, header: str, raw_path: Path) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.txt"
    raw = raw_path.read_text() if raw_path.exists() else ""
    path.write_text(header.rstrip() + "\n\n" + summarise(raw))
    progress(f"  wrote {path}")
    return path


def profile_inprocess(records: Sequence[object], work: Path) -> None:
    """py-spy over a child running ``run_inprocess`` three times on the same records."""
    code = ("import pickle, sys; from bench.throughput.inprocess import run_inprocess; "
            "records = pickle.load(open(sys.argv[1], 'rb')); import time; time.sleep(1); "
            "print([round(run_inprocess(records).eps) for _ in range(3)])")
    import pickle

    data = work / "records.pickle"
    data.write_bytes(pickle.dumps(list(records)))
    child = subprocess.Popen([sys.executable, "-c", code, str(data)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    time.sleep(0.8)  # imports done, sampling the work only
    raw = work / "inprocess.raw"
    spy = _spy(child.pid, 30, raw)
    out, _ = child.communicate(timeout=300)
    spy.wait(timeout=60)
    _write("inprocess", f"processors_inprocess: every stage's handle() in process, {len(records):,} simulator "
                        f"records, 3 runs: {out.strip()} events/s\n"
                        "command: python -m bench.throughput.profile --only inprocess", raw)


def profile_full_bulk(bootstrap: str, broker_pid: int, records: Sequence[object], work: Path) -> None:
    """py-spy --gil over the full worker while it works through ``records`` produced beforehand."""
    from bench.throughput.fullworker import FullWorker, apply, full_settings, produce_records

    settings = full_settings(bootstrap, f"prof-bulk-{int(time.time())}")
    apply(settings)
    produce_records(settings, records)  # type: ignore[arg-type]
    worker = FullWorker(settings, work / "full-bulk.log")
    raw = work / "full_bulk.raw"
    try:
        spy = None
        deadline = time.monotonic() + 120
        first: tuple[float, float, float, float] | None = None
        requests = sum(1 for r in records if getattr(r, "logical", "") == "requests")
        while True:
            by_topic = worker.input_events_by_topic()
            count = sum(by_topic.values())
            if first is None and by_topic.get("requests", 0.0) >= requests / 100:  # as run_full's clock
                spy = _spy(worker.child.process.pid, 30, raw, ["--gil"])
                first = (time.monotonic(), count, _cpu_s(worker.child.process.pid), 0.0)
            if count >= len(records) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if first is None:
            raise BenchError("the full worker never started working")
        seconds = time.monotonic() - first[0]
        eps = (count - first[1]) / seconds
        cores = (_cpu_s(worker.child.process.pid) - first[2]) / seconds
    finally:
        worker.stop()
    if spy is not None:
        spy.wait(timeout=60)  # ends with the worker
    _write("full_bulk", f"loopwise_full: the full worker through {len(records):,} simulator records produced "
                        f"beforehand: {eps:,.0f} events/s, worker process {cores:.2f} cores\n"
                        "py-spy --gil: only the thread holding the GIL is sampled\n"
                        "command: python -m bench.throughput.profile --only full_bulk", raw)


def profile_full_1k(bootstrap: str, broker_pid: int, records: Sequence[object], work: Path,
                    rate: float = 1000.0, seconds: float = 8.0) -> None:
    """py-spy over the full worker at ``rate`` events/s; CPU of broker, worker and load generator beside it."""
    from confluent_kafka import Consumer

    from bench.throughput.fullworker import FullWorker, apply, full_settings
    from bench.throughput.harness import all_partitions, watcher_config
    from bench.throughput.latency import WARMUP_RECORDS, _warm_up, paced_latency

    settings = full_settings(bootstrap, f"prof-1k-{int(time.time())}")
    apply(settings)
    worker = FullWorker(settings, work / "full-1k.log")
    raw = work / "full_1k.raw"
    try:
        consumer = Consumer(watcher_config(bootstrap))
        consumer.assign(all_partitions(consumer, settings.topic("outcomes"), time.monotonic() + 15))
        _warm_up(settings, records[:WARMUP_RECORDS], consumer, worker)  # type: ignore[arg-type]
        pids = {"broker": broker_pid, "worker": worker.child.process.pid, "load generator": os.getpid()}
        before = {name: _cpu_s(pid) for name, pid in pids.items() if pid}
        started = time.monotonic()
        spy = _spy(worker.child.process.pid, seconds, raw)
        paced = records[WARMUP_RECORDS:WARMUP_RECORDS + int(rate * seconds)]
        found = paced_latency(bootstrap, settings.topic, paced, rate, consumer, worker.child)  # type: ignore[arg-type]
        took = time.monotonic() - started
        cores = {name: (_cpu_s(pid) - before[name]) / took for name, pid in pids.items() if pid}
        spy.wait(timeout=60)
        consumer.close()
    finally:
        worker.stop()
    _write("full_1k", f"latency at {rate:,.0f} events/s through the full worker: p50 {found.p50_ms:.1f} ms, "
                      f"p99 {found.p99_ms:.1f} ms ({found.requests} requests)\n"
                      "CPU while paced: " + ", ".join(f"{k} {v:.2f} cores" for k, v in cores.items()) + "\n"
                      "py-spy (all threads, not --gil): waiting in C (poll, commit) shows as own time\n"
                      "command: python -m bench.throughput.profile --only full_1k", raw)


PROFILES: dict[str, Callable[..., None]] = {"inprocess": profile_inprocess, "full_bulk": profile_full_bulk,
                                           "full_1k": profile_full_1k}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput.profile", description=__doc__)
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(PROFILES)}")
    parser.add_argument("--records", type=int, default=30_000, help="simulator records (default 30000)")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(PROFILES)
    from bench.throughput.data import make_sim_records
    from infra.broker import EmbeddedBroker

    progress(f"generating {args.records:,} simulator records")
    records = make_sim_records(max(args.records, 8_300))
    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    if "inprocess" in chosen:
        progress("profiling inprocess ...")
        profile_inprocess(records[:args.records], work)
    for name in ("full_bulk", "full_1k"):
        if name in chosen:
            progress(f"profiling {name} ...")
            with EmbeddedBroker() as broker:
                PROFILES[name](broker.bootstrap_servers, broker.pid or 0,
                               records[:args.records] if name == "full_bulk" else records, work)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
