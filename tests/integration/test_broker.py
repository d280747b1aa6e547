"""The embedded broker starts on a free port, answers, stops cleanly and never outlives its parent."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from infra.broker import BrokerError, EmbeddedBroker, find_broker_binary, probe_cluster_id
from tests.conftest import wait_until

REPO = Path(__file__).resolve().parents[2]


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_find_broker_binary_returns_an_executable_tansu() -> None:
    path = find_broker_binary()
    assert path.name.startswith("tansu")
    assert os.access(path, os.X_OK)


def test_starts_on_a_free_port_and_answers_kafka_clients(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        host, port = broker.bootstrap_servers.split(":")
        assert host == "127.0.0.1" and 1024 <= int(port) <= 65535
        assert broker.is_running and broker.pid is not None and is_alive(broker.pid)
        assert probe_cluster_id("127.0.0.1", int(port)).startswith("loopwise-")
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=5)
        assert [b.port for b in metadata.brokers.values()] == [int(port)]
    assert "ready in" in (tmp_path / "tansu.log").read_text()


def test_start_is_quick_and_returns_the_address_again_when_running(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    started = time.monotonic()
    address = broker.start()
    try:
        assert time.monotonic() - started < 5.0  # measured ~15 ms; generous for a loaded machine
        assert broker.start() == address
    finally:
        broker.stop()


def test_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    broker.start()
    pid = broker.pid
    assert pid is not None
    broker.stop()
    assert not is_alive(pid)
    assert (broker.is_running, broker.pid) == (False, None)
    broker.stop()
    with pytest.raises(BrokerError, match="not started"):
        _ = broker.bootstrap_servers


def test_stop_is_quick_with_a_client_connected(tmp_path: Path) -> None:
    # SIGTERM would make Tansu wait ~5 s for this connection to close.
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    port = int(broker.start().split(":")[1])
    with socket.create_connection(("127.0.0.1", port)):
        started = time.monotonic()
        broker.stop(timeout_s=10)
        assert time.monotonic() - started < 2.0


_PARENT = """
import signal, sys
from pathlib import Path
from infra.broker import EmbeddedBroker
broker = EmbeddedBroker(log_path=Path(sys.argv[1]))
broker.start()
print(broker.pid, flush=True)
signal.pause()
"""


def test_sigkilled_parent_leaves_no_orphan_broker(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(tmp_path / "tansu.log")], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([parent.stdout], [], [], 15.0)
        assert ready, "the parent never printed the broker pid"
        broker_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert is_alive(broker_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    wait_until(lambda: not is_alive(broker_pid), timeout_s=5.0,
               message=f"broker pid {broker_pid} outlived its SIGKILLed parent")


def test_port_in_use_gives_broker_error_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log")
        with pytest.raises(BrokerError) as caught:
            broker.start(timeout_s=10)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "Address in use" in str(caught.value)  # from the broker's own log
    assert (broker.is_running, broker.pid) == (False, None)


def test_port_held_by_another_broker_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "first.log") as first:
        port = int(first.bootstrap_servers.split(":")[1])
        second = EmbeddedBroker(port=port, log_path=tmp_path / "second.log")
        with pytest.raises(BrokerError, match="exited during start"):
            second.start(timeout_s=10)
        assert first.is_running
        assert re.search(r"AddrInUse|Address in use", (tmp_path / "second.log").read_text())
