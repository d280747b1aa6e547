"""The worker's HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` (alive) and ``/readyz`` (serving).

``/healthz`` and ``/readyz`` answer 200 or 503 with a small JSON body saying
why, from probes the worker installs (``Metrics.probes``). A bearer token, when
given, is required for ``/metrics`` (bind beyond localhost only with one); the
probes stay open, as orchestrators call them without credentials and they
reveal nothing but a reason string.
"""

from __future__ import annotations

import hmac
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, str]]


def start_server(registry: CollectorRegistry, probes: Mapping[str, Probe], port: int, addr: str = "127.0.0.1",
                 token: str | None = None) -> ThreadingHTTPServer:
    """Serve in a daemon thread; returns the server (``server_address`` has the bound port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 — http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                if token and not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
                    self._send(401, b"unauthorized\n", "text/plain")
                    return
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                probe = probes.get(path[1:])
                ok, reason = probe() if probe is not None else (True, "no probe installed")
                self._send(200 if ok else 503, orjson.dumps({"ok": ok, "reason": reason}) + b"\n", "application/json")
            else:
                self._send(404, b"not found: /metrics, /healthz, /readyz\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 — scrapes are not news
            log.debug("http: " + format, *args)

    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="loopwise-http", daemon=True).start()
    return server
