"""The full loopwise worker (``python -m streams.cli worker``) as a child: start it, scrape its metrics, measure it.

``run_full`` produces simulator records to the input topics first, then
starts the worker and measures, from its ``loopwise_events_in_total``
counters (scraped every 0.1 s), how fast it works through them: from the
first scrape that shows 1 % of the requests done to the one that shows every
record done. Start-up is not counted, as for every pipeline of the bench: the
stages join their groups and restore their state one by one, and the stages
that read small topics (logs, metrics) start seconds before the correlator
does; the events they handled before the clock starts are not counted either.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.throughput.data import SimRecord
from bench.throughput.harness import BenchError, Child, Result, produce_all, progress, remaining
from infra.broker import free_port
from infra.settings import Settings

INPUTS = ("requests", "feedback", "metrics", "logs", "workflows", "jobs", "route.requests")


def full_settings(bootstrap: str, name: str) -> Settings:
    """Settings of one worker run: its own topic prefix, app id, metrics port and data dir."""
    return Settings(bootstrap_servers=bootstrap, topic_prefix=f"{name}.", app_id=name, metrics_port=free_port(),
                    data_dir=Path(tempfile.mkdtemp(prefix="bench-full-")), is_embedded=True, session_timeout_s=6.0)


class FullWorker:
    """A running ``loopwise worker`` on ``settings``' topics, logging to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        from streams.runner import worker_env

        env = worker_env(settings)
        env.update({"LOOPWISE_SESSION_TIMEOUT_S": "6", "LOOPWISE_LOG_LEVEL": "info"})
        self.settings = settings
        self.child = Child(["-m", "streams.cli", "worker", "--no-apply"], log_path, env=env)

    def input_events(self) -> float:
        """Valid plus dead-lettered events consumed from the input topics so far (0 before metrics are up)."""
        return sum(self.input_events_by_topic().values())

    def input_events_by_topic(self) -> dict[str, float]:
        """``input_events`` per logical input topic."""
        url = f"http://127.0.0.1:{self.settings.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return {}
        logical = {self.settings.topic(name): name for name in INPUTS}
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = logical.get(sample.labels.get("topic", ""))
                if name and sample.name in ("loopwise_events_in_total", "loopwise_dlq_total"):
                    out[name] = out.get(name, 0.0) + sample.value
        return out

    def stop(self) -> None:
        """SIGTERM (the worker commits on the way out), SIGKILL after 20 s; drop its data dir."""
        self.child.stop(timeout_s=20.0)
        shutil.rmtree(self.settings.data_dir, ignore_errors=True)


def apply(settings: Settings) -> None:
    """Create the worker's declared topics (explicit configs)."""
    from infra.admin import apply_topics

    apply_topics(settings)


def produce_records(settings: Settings, records: Sequence[SimRecord], timeout_s: float = 60.0) -> None:
    """Produce simulator records to their input topics, keyed as the platform would."""
    produce_all(settings.bootstrap_servers or "", [(settings.topic(r.logical), r.key, r.value) for r in records],
                timeout_s)


def run_full(bootstrap: str, records: Sequence[SimRecord], name: str, log_dir: Path, timeout_s: float) -> Result:
    """Events per second the full worker consumes, all agents running, over ``records`` produced beforehand."""
    settings = full_settings(bootstrap, name)
    apply(settings)
    produce_records(settings, records)
    worker = FullWorker(settings, log_dir / f"{name}.log")
    try:
        return _measure(worker, len(records), sum(1 for r in records if r.logical == "requests"), timeout_s)
    finally:
        worker.stop()


def _measure(worker: FullWorker, expected: int, requests: int, timeout_s: float) -> Result:
    deadline = time.monotonic() + timeout_s
    first_at, first_count, next_note = 0.0, 0.0, time.monotonic() + 5
    # Start the clock once the bulk is flowing through every stage: when the correlator (the
    # last stage to be up, and the one that reads the requests) has done 1 % of them.
    start_at_requests = max(1.0, requests / 100)
    while True:
        by_topic = worker.input_events_by_topic()
        count = sum(by_topic.values())
        now = time.monotonic()
        if by_topic.get("requests", 0.0) >= start_at_requests and not first_at:
            first_at, first_count = now, count
        if count >= expected:
            break
        stopped = worker.child.why_stopped()
        if stopped:
            raise BenchError(f"loopwise worker stopped after {count:,.0f} of {expected:,} events: {stopped}")
        if not remaining(deadline):
            raise BenchError(f"loopwise worker: {count:,.0f} of {expected:,} events in {timeout_s:.0f} s "
                             f"(stuck?); log {worker.child.log_path}:\n{worker.child.log_tail()}")
        if now >= next_note:
            progress(f"  loopwise full: {count:,.0f}/{expected:,} in")
            next_note = now + 5
        time.sleep(0.1)
    if now <= first_at or count <= first_count:
        raise BenchError("loopwise full: all events were consumed between two scrapes; use more events")
    return Result(eps=(count - first_count) / (now - first_at), events=int(count), seconds=now - first_at)
