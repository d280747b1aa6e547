"""The console in a real browser (Debian's chromium driven by Playwright) against topics on the embedded broker.

Pages load without console errors; the workflow page shows a route's probability change after a policy change;
an approval clicked on the page is applied once by ``CommandClient``; screenshots go to build/artifacts/console/.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Iterator
from urllib.request import Request, urlopen

import pytest

from infra.admin import apply_topics
from infra.settings import Secret, Settings
from schemas.records import Command
from streams.client import CommandClient
from streams.console.server import ConsoleServer
from tests.conftest import unique_name, wait_until
from tests.integration.console_feed import feed_outage, policy, risky_command, send

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts" / "console"
PAGES = ("workflows", "experiments", "incidents", "insights", "run")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
                                reason="Debian's chromium is missing: `make test` installs it (.ci/install-chromium.sh)")


@pytest.fixture
def console(settings: Settings) -> Iterator[tuple[ConsoleServer, Settings]]:
    settings = settings.with_(console_port=0)
    apply_topics(settings)
    server = ConsoleServer(settings)
    server.start()
    yield server, settings
    server.stop()


def test_console_pages_live_updates_and_an_approval_in_the_browser(console: tuple[ConsoleServer, Settings]) -> None:
    from playwright.sync_api import sync_playwright

    server, settings = console
    now_ms = int(time.time() * 1000)
    feed_outage(settings, now_ms)
    command = risky_command(settings)
    send(settings, "commands.remediation", [command], command.target)
    wait_until(lambda: server.hub.views.book.commands.get(command.command_id) and len(server.hub.views.dlq) == 1,
               timeout_s=20, message="the console did not follow the topics")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    applied: list[Command] = []
    load_ms: dict[str, float] = {}
    with sync_playwright() as pw, CommandClient(settings, settings.topic("commands.remediation"),
                                                settings.signing_key_bytes, applied.append,
                                                group_id=unique_name("gateway-")) as client:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        for name in PAGES:
            started = time.perf_counter()
            page.goto(f"{server.url}#{name}")
            page.wait_for_selector(f"body[data-ready={name}]", timeout=10_000)
            load_ms[name] = (time.perf_counter() - started) * 1000
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

        # The workflow page follows a policy change live (no reload).
        page.goto(f"{server.url}#workflows")
        page.wait_for_selector("body[data-ready=workflows]")
        cell = page.locator('[data-route="support-bot/default/gpt-large"] .prob')
        assert cell.inner_text() == "0.900"
        send(settings, "decisions.routing", [policy(2, 0.1, now_ms)], "support-bot/default")
        page.wait_for_function("""() => document.querySelector('[data-route="support-bot/default/gpt-large"] .prob')
                                  .textContent === '0.100'""", timeout=10_000)
        assert "gpt-large circuit open" in page.locator("#timeline").inner_text()
        assert "61 segments" in page.locator(".pager").inner_text()  # paged: 25 shown of 61
        page.screenshot(path=str(ARTIFACTS / "workflows-after-outage.png"))

        # Nothing is applied before a person decides; the click publishes a signed approval; applied once.
        client.poll(1.0)
        assert applied == []
        page.goto(f"{server.url}#incidents")
        page.wait_for_selector(f'#queue tr[data-command="{command.command_id}"]')
        page.fill("#operator", "ana")
        page.click(f'#queue button.approve[data-id="{command.command_id}"]')
        page.wait_for_selector(f'#commands tr[data-command="{command.command_id}"] .b-approved', timeout=10_000)
        wait_until(lambda: client.poll(0.2) >= 0 and applied, timeout_s=20, message=lambda: f"stats {client.stats}")
        for _ in range(5):
            client.poll(0.2)
        assert [c.command_id for c in applied] == [command.command_id]
        assert client.book.decision(command.command_id).operator == "ana"  # type: ignore[union-attr]
        page.screenshot(path=str(ARTIFACTS / "incidents-approved.png"))
        browser.close()
    assert errors == []
    (ARTIFACTS / "load_ms.json").write_text(json.dumps(load_ms, indent=1))


def test_a_token_guards_the_console_off_localhost_and_every_approval(settings: Settings) -> None:
    settings = settings.with_(console_port=0, console_token=Secret("s3cret-token"))
    server = ConsoleServer(settings)
    server.start()
    try:
        def status(path: str, method: str = "GET", token: str = "") -> int:
            request = Request(server.url.rstrip("/") + path, method=method, data=b"{}" if method == "POST" else None,
                              headers={"Authorization": f"Bearer {token}"} if token else {})
            try:
                with urlopen(request, timeout=5) as response:
                    return int(response.status)
            except Exception as exc:  # urllib raises HTTPError for 4xx
                return int(getattr(exc, "code", 0))

        assert status("/api/view/commands") == 200  # reads on 127.0.0.1 need no token
        assert status("/api/approvals", "POST") == 401
        assert status("/api/approvals", "POST", token="wrong") == 401
        assert status("/api/approvals", "POST", token="s3cret-token") == 400  # authorised, but no such command
    finally:
        server.stop()
