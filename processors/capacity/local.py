"""Local vs hosted capacity by real-time cost: a local route's cost is its capacity's, spread over what it serves.

A local model server costs its replicas by the hour whether busy or idle, so
the cost of one more request on it is what the hour costs divided by the
requests it serves (falling as it fills), and the *marginal* cost of work
sent to free local capacity is nothing: the capacity is paid anyway. Once it
saturates, more work waits or fails, so it goes hosted. ``choose_capacity``
says where a piece of work should go now.

>>> local_cost_per_request_usd(replicas=2, cost_per_replica_hour_usd=3.6, served_rps=10.0)
0.0002
>>> choose_capacity(local_headroom=0.4)
'local'
>>> choose_capacity(local_headroom=0.05)  # saturated
'hosted'
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

from schemas.records import RouteSpec

Capacity = Literal["local", "hosted"]


def local_cost_per_request_usd(*, replicas: int, cost_per_replica_hour_usd: float, served_rps: float) -> float:
    """The hour's cost of the local replicas spread over the requests they serve (average cost per request)."""
    return replicas * cost_per_replica_hour_usd / (3600.0 * max(served_rps, 1e-6))


def hosted_cost_per_request_usd(cost_per_1k_in_usd: float, cost_per_1k_out_usd: float, tokens_in: float,
                                tokens_out: float) -> float:
    """What a hosted route bills for a request of this size.

    >>> round(hosted_cost_per_request_usd(0.003, 0.006, 1000, 500), 6)
    0.006
    """
    return (cost_per_1k_in_usd * tokens_in + cost_per_1k_out_usd * tokens_out) / 1000.0


def choose_capacity(*, local_headroom: float, min_headroom: float = 0.15) -> Capacity:
    """Local while it has free capacity (its marginal cost is then nothing: the replicas are paid
    anyway); hosted once it saturates (headroom below ``min_headroom``)."""
    return "local" if local_headroom >= min_headroom else "hosted"


def pick_route(routes: Sequence[RouteSpec], headroom: Mapping[str, float], min_headroom: float = 0.15,
               ) -> tuple[str | None, str]:
    """Where work without a route of its own should run: the local route with the most headroom
    while it has some, else the hosted route with the lowest token prices; and why.

    >>> from schemas.records import PrivacyLevel
    >>> gpu = RouteSpec("llama-local", "vllm", True, PrivacyLevel.RESTRICTED, 0.0001, 0.0001, capacity_rps=20)
    >>> api = RouteSpec("mini-hosted", "openai", False, PrivacyLevel.PUBLIC, 0.00015, 0.0006)
    >>> pick_route([gpu, api], {"llama-local": 0.5})[0], pick_route([gpu, api], {"llama-local": 0.05})[0]
    ('llama-local', 'mini-hosted')
    """
    local = sorted(((headroom.get(r.name, 0.0), r.name) for r in routes if r.is_local and r.capacity_rps),
                   reverse=True)
    if local and choose_capacity(local_headroom=local[0][0], min_headroom=min_headroom) == "local":
        return local[0][1], f"local capacity free ({local[0][0]:.0%} headroom): no marginal cost"
    hosted = sorted(routes, key=lambda r: (r.is_local, r.cost_per_1k_in_usd + r.cost_per_1k_out_usd))
    if not hosted:
        return None, "no route"
    why = "local capacity saturated" if local else "no local capacity"
    return hosted[0].name, f"{why}: cheapest hosted route"
