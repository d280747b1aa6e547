"""``loopwise console``: the live web console (see ``streams.console``)."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from infra.settings import Settings


def register(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``console`` to the ``loopwise`` parser."""
    parser = command(sub, "console", "serve the live web console (workflows, experiments, incidents, approvals)",
                     _run_console)
    parser.add_argument("--host", help="address to bind (default: LOOPWISE_CONSOLE_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: LOOPWISE_CONSOLE_PORT or 8765)")


def _run_console(args: argparse.Namespace, settings: Settings) -> int:
    from streams.console.server import run_console

    if args.host:
        settings = settings.with_(console_host=args.host)
        settings.validate()
    if args.port is not None:
        settings = settings.with_(console_port=args.port)
    return run_console(settings)
