"""Cost counters of a federated run: rounds, bytes, local steps, gradient evaluations, simulated and wall time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass


@dataclass
class Accountant:
    """Running totals of what a federated run has spent.

    Attributes
    ----------
    rounds : int
        Server aggregation steps.
    bytes_up, bytes_down : int
        Bytes sent by clients to the server and by the server to clients. Messages are model-sized,
        so algorithms that send extra vectors (SCAFFOLD's control variates) pass a multiple.
    local_steps : int
        Local optimiser steps summed over clients.
    sample_gradients : int
        Per-sample gradient evaluations summed over clients.
    simulated_time : float
        Clock of an asynchronous or timed simulation, in its own units.
    wall_time : float
        Seconds of real time spent inside :meth:`timer` blocks.
    """

    rounds: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    local_steps: int = 0
    sample_gradients: int = 0
    simulated_time: float = 0.0
    wall_time: float = 0.0

    def record_round(
        self,
        n_clients: int,
        message_bytes: int,
        local_steps: int = 0,
        sample_gradients: int = 0,
        messages_per_client: float = 1.0,
    ) -> None:
        """Add one round in which ``n_clients`` each download and upload ``messages_per_client`` models."""
        self.rounds += 1
        self.bytes_down += int(n_clients * message_bytes * messages_per_client)
        self.bytes_up += int(n_clients * message_bytes * messages_per_client)
        self.local_steps += int(local_steps)
        self.sample_gradients += int(sample_gradients)

    @contextmanager
    def timer(self) -> Iterator[None]:
        """Add the real time spent in the ``with`` block to :attr:`wall_time`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.wall_time += time.perf_counter() - start

    def as_dict(self) -> dict[str, float]:
        """Return the totals as a plain dictionary (for tables and records)."""
        return asdict(self)
