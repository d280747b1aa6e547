"""The console's edge: a thread that follows the topics into ``ConsoleViews``, and an aiohttp server that pushes deltas.

``GET /api/view/{name}`` returns one page of a view and the sequence number it is
current to; ``GET /events?ch=routes,commands&since=SEQ`` is a server-sent-events
stream of the deltas after it (coalesced per key every ``flush_s``; never the whole
state). ``POST /api/approvals`` publishes the same signed ``Approval`` as
``loopwise commands approve``; ``POST /api/dlq/replay`` sends selected dead letters
back to their source topic. Bound to 127.0.0.1 by default; elsewhere every request
needs ``LOOPWISE_CONSOLE_TOKEN``, and writes always need it when one is set.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable

import orjson
from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from infra.settings import Settings
from infra.topics import BY_NAME
from schemas.records import ApprovalDecision, DeadLetter
from schemas.serde import RECORD_TYPES, SchemaError, make_codec
from streams.approvals import ApprovalError, publish, sign_decision
from streams.console.views import CHANNELS, ConsoleViews

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
FOLLOWED = ("workflows", "decisions.routing", "decisions.experiments", "rollouts", "incidents", "commands.remediation",
            "commands.scaling", "commands.jobs", "approvals", "insights", "dlq", "outcomes")
#: High-volume topics are followed from this many messages before their end per partition, not from the start.
TAIL_ONLY = {"outcomes": 20_000}


def wall_ms() -> int:
    return int(time.time() * 1000)


class ConsoleHub:
    """The views, a bounded log of their deltas (with sequence numbers), and what woke the SSE streams."""

    def __init__(self, settings: Settings, max_log: int = 50_000) -> None:
        self.settings = settings
        self.views = ConsoleViews(settings.approval_key_bytes)
        self.lock = threading.Lock()
        self.log: deque[tuple[int, dict[str, Any]]] = deque(maxlen=max_log)
        self.seq = 0
        self.ingested = 0
        self.pushed = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.changed: asyncio.Event | None = None

    def ingest(self, logical: str, record: Any, where: str) -> None:
        """Fold one record in (any thread) and wake the streams."""
        with self.lock:
            deltas = self.views.apply(logical, record, where, wall_ms())
            self.ingested += 1
            for delta in deltas:
                self.seq += 1
                self.log.append((self.seq, delta))
        if deltas and self.loop is not None and self.changed is not None:
            self.loop.call_soon_threadsafe(self.changed.set)

    def page(self, name: str, **kwargs: Any) -> dict[str, Any]:
        with self.lock:
            return {**self.views.page(name, now_ms=wall_ms(), **kwargs), "seq": self.seq}

    def since(self, seq: int, channels: frozenset[str]) -> tuple[int, list[dict[str, Any]], bool]:
        """Deltas after ``seq`` on ``channels``, the latest per key; ``gap`` when the log no longer reaches back."""
        with self.lock:
            gap = bool(self.log) and self.log[0][0] > seq + 1
            latest: dict[tuple[str, str], dict[str, Any]] = {}
            for n, delta in reversed(self.log):
                if n <= seq:
                    break
                if delta["ch"] in channels:
                    latest.setdefault((delta["ch"], delta["key"]), delta)
            return self.seq, list(reversed(latest.values())), gap


class TopicFollower(threading.Thread):
    """Reads every followed topic (all partitions, no group offsets) into the hub until ``stop``."""

    def __init__(self, hub: ConsoleHub) -> None:
        super().__init__(name="console-follower", daemon=True)
        self.hub, self.settings = hub, hub.settings
        self.stopping = threading.Event()
        self.codecs = {self.settings.topic(n): (n, make_codec(RECORD_TYPES[BY_NAME[n].record], topic=self.settings.topic(n),
                                                              registry_url=self.settings.schema_registry_url))
                       for n in FOLLOWED if n in BY_NAME}
        self.assigned: set[str] = set()

    def run(self) -> None:
        consumer = Consumer({**self.settings.kafka_config(), "group.id": f"loopwise-console-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "fetch.wait.max.ms": self.settings.effective_fetch_max_wait_ms or 100,
                             "fetch.queue.backoff.ms": 0})
        try:
            next_assign = 0.0
            while not self.stopping.is_set():
                if len(self.assigned) < len(self.codecs) and time.monotonic() >= next_assign:
                    self._assign(consumer)
                    next_assign = time.monotonic() + 2.0
                for message in consumer.consume(num_messages=1000, timeout=0.2) if self.assigned else ():
                    if message.error() is None:
                        self._handle(message)
                if not self.assigned:
                    self.stopping.wait(0.2)
        except Exception:  # the console must say why it stopped following, not die silently
            log.exception("console follower stopped")
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> None:
        partitions = []
        for topic, (logical, _) in self.codecs.items():
            if topic in self.assigned:
                continue
            meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                continue
            self.assigned.add(topic)
            for p in meta.partitions:
                offset = OFFSET_BEGINNING
                if logical in TAIL_ONLY:
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                    offset = max(low, high - TAIL_ONLY[logical])
                partitions.append(TopicPartition(topic, p, offset))
        if partitions:
            consumer.incremental_assign(partitions)

    def _handle(self, message: Any) -> None:
        logical, codec = self.codecs[message.topic()]
        try:
            record = codec.decode(message.value())
        except SchemaError:
            return  # unreadable input is the stages' to dead-letter; the console shows what they decided
        self.hub.ingest(logical, record, f"{message.topic()}:{message.partition()}:{message.offset()}")


def _is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def _authorised(request: web.Request, settings: Settings, is_write: bool) -> bool:
    token = settings.console_token.reveal() if settings.console_token else ""
    if not token or (not is_write and _is_local(settings.console_host)):
        return True
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, default=_default), status=status, content_type="application/json")


def _default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, deque):
        return list(value)
    raise TypeError(type(value).__name__)


def create_app(hub: ConsoleHub, flush_s: float = 0.25) -> web.Application:
    """The aiohttp application (routes, auth middleware, SSE); ``hub`` is fed by a ``TopicFollower``."""
    settings = hub.settings
    producer: list[Producer] = []

    @web.middleware
    async def auth(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        path = request.path
        if (path.startswith("/api/") or path == "/events") and not _authorised(request, settings, request.method == "POST"):
            return _json({"error": "a valid LOOPWISE_CONSOLE_TOKEN is required"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def view(request: web.Request) -> web.Response:
        q = request.query
        try:
            page = hub.page(request.match_info["name"], workflow=q.get("workflow", ""), offset=int(q.get("offset", 0)),
                            limit=int(q.get("limit", 50)), query=q.get("q", ""))
        except (KeyError, ValueError) as exc:
            return _json({"error": str(exc)}, status=404)
        return _json(page)

    async def events(request: web.Request) -> web.StreamResponse:
        channels = frozenset(c for c in request.query.get("ch", ",".join(CHANNELS)).split(",") if c in CHANNELS)
        seq = int(request.query.get("since", request.headers.get("Last-Event-ID", "0")) or 0)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        try:
            await _stream(response, seq, channels)
        except ConnectionResetError:
            pass  # the page went away
        return response

    async def _stream(response: web.StreamResponse, seq: int, channels: frozenset[str]) -> None:
        last_beat = time.monotonic()
        while True:
            seq_now, deltas, gap = hub.since(seq, channels)
            if gap:
                await response.write(b"event: reset\ndata: {}\n\n")  # the page reloads its views
            if deltas:
                hub.pushed += len(deltas)
                await response.write(b"id: %d\ndata: %s\n\n" % (seq_now, orjson.dumps(deltas, default=_default)))
            elif time.monotonic() - last_beat > 15:
                await response.write(b": keep-alive\n\n")
                last_beat = time.monotonic()
            seq = seq_now
            waited = 0.0
            while hub.seq == seq and waited < 15:  # one cheap check per flush: a burst becomes one message per key
                await asyncio.sleep(flush_s)
                waited += flush_s

    async def approve(request: web.Request) -> web.Response:
        body = await request.json()
        command_id, operator = str(body.get("command_id", "")), str(body.get("operator", "")).strip()
        try:
            decision = ApprovalDecision(body.get("decision", ""))
            with hub.lock:
                state = hub.views.book.state(command_id, wall_ms())
                command = hub.views.book.commands.get(command_id)
            if command is None or state.value != "pending":
                raise ApprovalError(f"command {command_id!r} is {state.value}, not pending")
            approval = sign_decision(settings, command, decision, operator, str(body.get("reason", "")), wall_ms())
            if not producer:
                producer.append(Producer({**settings.kafka_config(), "enable.idempotence": True}))
            await asyncio.get_running_loop().run_in_executor(None, publish, settings, approval, producer[0])
        except (ApprovalError, ValueError) as exc:
            return _json({"error": str(exc)}, status=400)
        hub.ingest("approvals", approval, "console")
        return _json({"command_id": command_id, "decision": approval.decision.value, "operator": approval.operator})

    async def replay(request: web.Request) -> web.Response:
        ids = [str(i) for i in (await request.json()).get("ids", [])]
        with hub.lock:
            letters = [hub.views.dlq[i] for i in ids if i in hub.views.dlq]
        if not letters:
            return _json({"error": "no such dead letters"}, status=400)
        sent = await asyncio.get_running_loop().run_in_executor(None, _replay, settings, letters)
        return _json({"replayed": sent})

    async def health(request: web.Request) -> web.Response:
        return _json({"ingested": hub.ingested, "pushed": hub.pushed, "seq": hub.seq})

    app = web.Application(middlewares=[auth])
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/view/{name}", view)
    app.router.add_get("/api/health", health)
    app.router.add_get("/events", events)
    app.router.add_post("/api/approvals", approve)
    app.router.add_post("/api/dlq/replay", replay)
    return app


def _replay(settings: Settings, letters: list[dict[str, Any]]) -> int:
    """Send the original bytes of dead letters back to their source topics (the DLQ's copy is read again, whole)."""
    dlq = settings.topic("dlq")
    codec = make_codec(DeadLetter, topic=dlq, registry_url=settings.schema_registry_url,
                       max_event_bytes=settings.max_event_bytes)
    consumer = Consumer({**settings.kafka_config(), "group.id": f"loopwise-console-replay-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    producer = Producer({**settings.kafka_config(), "enable.idempotence": True})
    sent = 0
    try:
        for letter in letters:
            topic, partition, offset = letter["id"].rsplit(":", 2)
            consumer.assign([TopicPartition(topic, int(partition), int(offset))])
            messages = consumer.consume(1, timeout=5)
            if not messages or messages[0].error() is not None:
                continue
            dead = codec.decode(messages[0].value())
            producer.produce(dead.source_topic, key=dead.key, value=dead.value,
                             headers=[("lw.replayed-from", f"{topic}:{partition}:{offset}".encode())])
            sent += 1
        producer.flush(10)
    finally:
        consumer.close()
    return sent


class ConsoleServer:
    """Follower + aiohttp server on a thread of their own (``loopwise up``, tests); ``url`` once started."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = ConsoleHub(settings)
        self.follower = TopicFollower(self.hub)
        self.url = ""
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="console-server", daemon=True)
        self._stop: asyncio.Event | None = None

    def start(self, timeout_s: float = 10.0) -> str:
        self.follower.start()
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise RuntimeError("the console did not start")
        return self.url

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.hub.loop, self.hub.changed = asyncio.get_running_loop(), asyncio.Event()
        self._stop = asyncio.Event()
        runner = web.AppRunner(create_app(self.hub), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.console_host, self.settings.console_port)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://{self.settings.console_host}:{port}/"
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    def stop(self) -> None:
        self.follower.stopping.set()
        if self._stop is not None and self.hub.loop is not None:
            self.hub.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
        self.follower.join(5)


def run_console(settings: Settings) -> int:
    """``loopwise console``: serve until Ctrl-C."""
    server = ConsoleServer(settings)
    url = server.start()
    print(f"console on {url}", flush=True)
    try:
        while server._thread.is_alive():
            server._thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
