"""Long-running entry points: the embedded broker, a worker, and ``up`` (everything at once)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from infra.admin import apply_topics
from infra.broker import EmbeddedBroker
from infra.settings import ConfigError, Settings

log = logging.getLogger("loopwise")


def run_broker(settings: Settings, port: int) -> int:
    """Run the embedded broker until Ctrl-C or SIGTERM."""
    with EmbeddedBroker(port=port, log_path=settings.data_dir / "broker.log") as broker:
        print(f"embedded broker on {broker.bootstrap_servers} (log: {broker.log_path}); Ctrl-C stops it", flush=True)
        _wait_for_signal()
    return 0


def run_worker(settings: Settings, *, apply: bool = True) -> int:
    """Run a Faust worker until SIGTERM/SIGINT; offsets of processed batches are committed on the way out."""
    if not settings.bootstrap_servers:
        raise ConfigError("no Kafka cluster: set KAFKA_BOOTSTRAP_SERVERS, or run `loopwise up` for the embedded broker")
    import faust

    from streams.app import create_app

    from streams.connectivity import check_connection

    check_connection(settings)  # one clear error, after a bounded number of attempts, instead of endless retries
    if apply:
        _apply(settings)
    app = create_app(settings)
    if settings.metrics_host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("metrics and probes on %s:%d are reachable from other hosts", settings.metrics_host,
                    settings.metrics_port)
    port = app.metrics.serve(settings.metrics_port, settings.metrics_host)
    log.info("worker %s on %s, metrics on :%d", settings.app_id, settings.bootstrap_servers, port)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, override_logging=False)
    worker.execute_from_commandline()
    return 0  # pragma: no cover — execute_from_commandline exits


def run_up(settings: Settings, args: argparse.Namespace) -> int:
    """Broker (unless a cluster is given) + topics + worker (+ the simulator's closed loop)."""
    broker = None
    if not settings.bootstrap_servers:
        broker = EmbeddedBroker(port=args.port or settings.broker_port, log_path=settings.data_dir / "broker.log")
        settings = settings.with_bootstrap(broker.start(), is_embedded=True)
        print(f"embedded broker on {settings.bootstrap_servers}", flush=True)
    worker = console = None
    try:
        _apply(settings)
        worker = _spawn_worker(settings)
        print(f"worker started (pid {worker.pid}); metrics on :{settings.metrics_port}/metrics", flush=True)
        console = _start_console(settings)
        if args.simulate:
            from infra.simulator.kafka_loop import run_live_from_args

            return run_live_from_args(settings, args)
        print("loopwise is up; Ctrl-C stops everything", flush=True)
        _wait_for_signal(lambda: worker.poll() is not None)
        if worker.poll() is not None:
            print(f"worker exited with code {worker.returncode}; see {settings.data_dir / 'worker.log'}", file=sys.stderr)
            return 1
        return 0
    finally:
        if console is not None:
            console.stop()
        if worker is not None:
            _stop(worker)
        if broker is not None:
            broker.stop()


def _start_console(settings: Settings):  # type: ignore[no-untyped-def]
    """The web console beside the worker (its address is printed); ``None`` when it cannot start."""
    from streams.console.server import ConsoleServer

    console = ConsoleServer(settings)
    try:
        print(f"console on {console.start()} (live workflows, experiments, incidents, approvals)", flush=True)
    except (OSError, RuntimeError) as exc:
        log.warning("console not started: %s", exc)
        return None
    return console


def _apply(settings: Settings) -> None:
    report = apply_topics(settings)
    log.info("topics: %d created, %d unchanged, %d differ", len(report.created), len(report.unchanged), len(report.mismatched))
    for mismatch in report.mismatched:
        log.warning("topic %s: %s is %s, declared %s", mismatch.topic, mismatch.setting, mismatch.actual, mismatch.wanted)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a worker child process: the parent's, pointed at ``settings``' cluster."""
    env = dict(os.environ)
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers or ""
    env["LOOPWISE_TOPIC_PREFIX"] = settings.topic_prefix
    env["LOOPWISE_APP_ID"] = settings.app_id
    env["LOOPWISE_METRICS_PORT"] = str(settings.metrics_port)
    env["LOOPWISE_DATA_DIR"] = str(settings.data_dir)
    env["LOOPWISE_WORKER_ID"] = settings.worker_id
    env["LOOPWISE_PROCESSING_GUARANTEE"] = settings.processing_guarantee
    env["LOOPWISE_REMEDIATION_DRY_RUN"] = "true" if settings.is_remediation_dry_run else "false"
    env["LOOPWISE_STAGES"] = ",".join(settings.stages)
    if settings.effective_fetch_max_wait_ms is not None:
        env["LOOPWISE_FETCH_MAX_WAIT_MS"] = str(settings.effective_fetch_max_wait_ms)
    return env


def _spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    log_path = Path(settings.data_dir) / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--no-apply"],
            env=worker_env(settings), stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("worker did not stop within %.0f s; killing it", timeout_s)
            process.kill()
            process.wait()


def _wait_for_signal(should_stop: "callable[[], bool] | None" = None) -> None:  # type: ignore[valid-type]
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if should_stop is not None and should_stop():
                return
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
