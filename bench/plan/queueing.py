"""Closed-form M/M/c results: the planner's check on its own simulation, and cloud GPU sizing."""

from __future__ import annotations

import math

__all__ = ["erlang_c", "mmc_mean_wait", "mmc_servers_for"]


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits, for ``offered`` = arrival rate x mean service time (Erlangs)."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    # The Erlang B recursion is stable for large server counts; C follows from B.
    b = 1.0
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    rho = offered / servers
    return b / (1 - rho + rho * b)


def mmc_mean_wait(arrival_rate: float, service_s: float, servers: int) -> float:
    """Mean time in queue (seconds) of an M/M/c queue; infinite when it is unstable."""
    offered = arrival_rate * service_s
    if offered >= servers:
        return math.inf
    return erlang_c(servers, offered) * service_s / (servers - offered)


def mmc_servers_for(arrival_rate: float, service_s: float, max_wait_probability: float) -> int:
    """The fewest servers for which an arrival waits with at most this probability."""
    servers = max(1, math.ceil(arrival_rate * service_s))
    while erlang_c(servers, arrival_rate * service_s) > max_wait_probability:
        servers += 1
    return servers
