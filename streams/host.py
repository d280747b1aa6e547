"""Faust hosts the engine: the stage runners start and stop with the worker, and a failed one stops it."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Sequence

import mode

from streams.engine import StageRunner

if TYPE_CHECKING:
    from streams.app import LoopwiseApp

log = logging.getLogger(__name__)


def register_engine(app: "LoopwiseApp", runners: Sequence[StageRunner]) -> None:
    """Start ``runners`` with the app, stop them (committing the batch in hand) when it stops."""

    @app.service
    class Engine(mode.Service):
        """The stage runners, as one Faust service."""

        async def on_start(self) -> None:
            for runner in runners:
                runner.start()
            log.info("engine started: %s", ", ".join(r.stage.name for r in runners))

        async def on_stop(self) -> None:
            await asyncio.get_running_loop().run_in_executor(None, _stop_all, runners)

        @mode.Service.task
        async def _watch(self) -> None:
            # A runner that failed cannot un-apply its batch: stop the worker so that a restart
            # restores every stage from its changelog and resumes at the committed offsets.
            while not self.should_stop:
                failed = next((r for r in runners if r.error is not None), None)
                if failed is not None:
                    await app.crash(failed.error)  # type: ignore[arg-type]
                    return
                await self.sleep(0.5)


def _stop_all(runners: Sequence[StageRunner]) -> None:
    for runner in runners:
        runner.stop()
