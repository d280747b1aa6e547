"""Application-side helpers: consume loopwise's commands safely (verified, fresh, once)."""

from streams.client.commands import CommandClient, CommandGate, Verdict

__all__ = ["CommandClient", "CommandGate", "Verdict"]
