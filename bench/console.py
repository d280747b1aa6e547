"""The console's costs: page load with 10 k route segments, and the server's CPU per event it follows and pushes.

Run: ``.venv/bin/python -m bench.console [--segments 10000] [--events 20000]``. On the embedded
broker: a workflow's policy for each of ``--segments`` segments is published, then
``loopwise console`` starts as a child process (its CPU is read from /proc). Printed:
the time to the first routes page (25 of the segments) over HTTP and in Debian's
chromium (if installed: the page's data-ready mark), then, with one SSE client following
every channel, the server's CPU per event while ``--events`` policy updates and as many
outcomes are published — beside the ceiling measured in the same run: the pure views
(``ConsoleViews.apply``) on the same records, decoded already, in this process. Medians.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.request import urlopen

import orjson

from infra.admin import apply_topics
from infra.broker import EmbeddedBroker
from infra.settings import Settings
from schemas.records import Outcome, RouteProbability, RoutingPolicy, Status
from schemas.serde import json_codec
from streams.console.views import ConsoleViews

T0 = 1_800_000_000_000


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _policies(segments: int, n: int, seed: int) -> list[RoutingPolicy]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = rng.random()
        out.append(RoutingPolicy("wf", f"tenant={i % segments:05d}|task=chat", T0 + i, i + 1, "m1", (
            RouteProbability("gpt-large", p, 0.8, 0.05, 100), RouteProbability("claude-mid", 1 - p, 0.75, 0.05, 90)),
            ("thompson on reward posteriors",)))
    return out


def _outcomes(n: int) -> list[Outcome]:
    return [Outcome(f"r{i}", T0 + i, T0 + i, "wf", "v1", "gpt-large", "s", Status.OK, 500.0, 0.001, 0.7, 0.8, 0.9,
                    0.9, 1.0, False) for i in range(n)]


def _produce(settings: Settings, topic: str, records: list[Any], key: Callable[[Any], str]) -> None:
    from confluent_kafka import Producer

    codec = json_codec(type(records[0]))
    producer = Producer({**settings.kafka_config(), "linger.ms": 20, "batch.num.messages": 5000})
    for r in records:
        while True:
            try:
                producer.produce(settings.topic(topic), key=key(r).encode(), value=codec.encode(r))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)


def _health(url: str) -> dict[str, Any]:
    with urlopen(url + "api/health", timeout=5) as response:
        return dict(orjson.loads(response.read()))


def _wait_ingested(url: str, at_least: int, timeout_s: float = 180) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _health(url)["ingested"] >= at_least:
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"console ingested {_health(url)['ingested']} of {at_least}")


class SseClient(threading.Thread):
    """Follows /events on every channel and counts messages, deltas and bytes."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.messages, self.deltas, self.bytes = url, 0, 0, 0

    def run(self) -> None:
        with urlopen(self.url + "events?since=0", timeout=600) as stream:
            for line in stream:
                self.bytes += len(line)
                if line.startswith(b"data: "):
                    self.messages += 1
                    self.deltas += len(orjson.loads(line[6:]))


def _browser_load_ms(url: str, repeats: int) -> tuple[list[float], list[float]]:
    """Page load to data-ready, and (the baseline) a new page's navigation to a blank document."""
    if not Path("/usr/bin/chromium").exists():
        return [], []
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    times, blank = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        for _ in range(repeats):
            page = browser.new_page()
            started = time.perf_counter()
            page.goto("data:text/html,<p>blank</p>")
            blank.append((time.perf_counter() - started) * 1000)
            page.close()
            page = browser.new_page()
            started = time.perf_counter()
            page.goto(url + "#workflows")
            page.wait_for_selector("body[data-ready=workflows]")
            times.append((time.perf_counter() - started) * 1000)
            page.close()
        browser.close()
    return times, blank


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.console", description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    policies = _policies(args.segments, args.segments, seed=1)
    updates, outcomes = _policies(args.segments, args.events, seed=2), _outcomes(args.events)
    # Ceiling: the views alone, on decoded records, in this process.
    views = ConsoleViews(b"k" * 32)
    for p in policies:
        views.apply("decisions.routing", p)
    started = time.process_time()
    for p, o in zip(updates, outcomes):
        views.apply("decisions.routing", p)
        views.apply("outcomes", o)
    ceiling_us = (time.process_time() - started) / (2 * args.events) * 1e6

    with EmbeddedBroker(log_path=Path("build/bench-console-broker.log")) as broker:
        settings = Settings.from_env({}).with_bootstrap(broker.bootstrap_servers, is_embedded=True).with_(
            topic_prefix=f"bc{random.randrange(1 << 30):x}.")
        apply_topics(settings)
        _produce(settings, "decisions.routing", policies, key=lambda p: f"{p.workflow}/{p.segment}")
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
               "LOOPWISE_TOPIC_PREFIX": settings.topic_prefix, "LOOPWISE_CONSOLE_PORT": "0",
               "LOOPWISE_LOG_LEVEL": "warning", "LOOPWISE_FETCH_MAX_WAIT_MS": "10"}
        child = subprocess.Popen([sys.executable, "-m", "streams.cli", "console"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
        try:
            assert child.stdout is not None
            url = child.stdout.readline().split("console on ", 1)[1].strip()
            _wait_ingested(url, args.segments)
            api_ms = []
            for _ in range(20):
                started = time.perf_counter()
                with urlopen(url + "api/view/routes?workflow=wf&limit=25", timeout=10) as response:
                    response.read()
                api_ms.append((time.perf_counter() - started) * 1000)
            browser_ms, blank_ms = _browser_load_ms(url, args.repeats)

            sse = SseClient(url)
            sse.start()
            time.sleep(1.0)
            base = _health(url)["ingested"]
            cpu0, wall0 = _cpu_s(child.pid), time.monotonic()
            _produce(settings, "decisions.routing", updates, key=lambda p: f"{p.workflow}/{p.segment}")
            _produce(settings, "outcomes", outcomes, key=lambda o: o.request_id)
            done = _wait_ingested(url, base + 2 * args.events)
            time.sleep(1.0)  # the last flush of the SSE stream
            cpu = _cpu_s(child.pid) - cpu0
            ingested = _health(url)["ingested"] - base
        finally:
            child.terminate()
            child.wait(10)

    print(f"console bench: {args.segments} segments, {args.events} policy updates + {args.events} outcomes")
    print(f"  first routes page over HTTP (25 of {args.segments}) median {statistics.median(api_ms):.1f} ms")
    if browser_ms:
        print(f"  page load in chromium to data-ready (#workflows)   median {statistics.median(browser_ms):.0f} ms "
              f"(n={len(browser_ms)}, min {min(browser_ms):.0f}, max {max(browser_ms):.0f}); baseline: a blank page "
              f"{statistics.median(blank_ms):.0f} ms")
    print(f"  server CPU per event followed  {cpu / max(ingested, 1) * 1e6:8.1f} µs  "
          f"({ingested} events in {done - wall0:.1f} s, {ingested / max(done - wall0, 1e-9):,.0f} events/s)")
    print(f"  server CPU per delta pushed    {cpu / max(sse.deltas, 1) * 1e6:8.1f} µs  "
          f"({sse.deltas} deltas in {sse.messages} SSE messages, {sse.bytes / 1e6:.1f} MB; coalesced per key)")
    print(f"  ceiling: views alone           {ceiling_us:8.1f} µs per event (decoded, in-process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
