"""Application-side helpers: consume loopwise's commands safely (verified, fresh, once) and route from its policies."""

from streams.client.commands import CommandClient, CommandGate, Verdict
from streams.client.routing import PolicyBook, RoutingClient

__all__ = ["CommandClient", "CommandGate", "PolicyBook", "RoutingClient", "Verdict"]
