"""Client participation models: who takes part in a round, with how many local steps, and when updates arrive.

Round-based models return a boolean mask of shape ``(n_clients,)`` from ``sample(rng)``. Their
``marginal_probabilities()`` is the long-run fraction of rounds in which each client takes part. The server-side algorithms should treat these probabilities as
unknown unless they implement an oracle baseline. :class:`AsyncArrivals` is an event queue for
asynchronous training in simulated time.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


def _as_probabilities(probabilities: np.ndarray | list[float]) -> np.ndarray:
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 1 or len(p) == 0:
        raise ValueError(f"probabilities must be a non-empty vector, got shape {p.shape}")
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"probabilities must lie in [0, 1], got min {p.min()} and max {p.max()}")
    return p


def heterogeneous_probabilities(
    n_clients: int, low: float, high: float, rng: np.random.Generator, log_uniform: bool = True
) -> np.ndarray:
    """Draw one participation probability per client, uniform or log-uniform in ``[low, high]``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_clients,)``.
    """
    if not 0 < low <= high <= 1:
        raise ValueError(f"need 0 < low <= high <= 1, got low={low}, high={high}")
    if log_uniform:
        return np.exp(rng.uniform(np.log(low), np.log(high), n_clients))
    return rng.uniform(low, high, n_clients)


class Participation:
    """Base class of round-based participation models."""

    n_clients: int

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Return the boolean participation mask of the next round."""
        raise NotImplementedError

    def marginal_probabilities(self) -> np.ndarray:
        """Return each client's long-run fraction of rounds with participation."""
        raise NotImplementedError


class UniformSampling(Participation):
    """Sample exactly ``m`` of ``n`` clients uniformly without replacement each round (FedAvg's default)."""

    def __init__(self, n_clients: int, m: int) -> None:
        if not 1 <= m <= n_clients:
            raise ValueError(f"need 1 <= m <= n_clients, got m={m}, n_clients={n_clients}")
        self.n_clients = n_clients
        self.m = m

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        mask = np.zeros(self.n_clients, dtype=bool)
        mask[rng.choice(self.n_clients, self.m, replace=False)] = True
        return mask

    def marginal_probabilities(self) -> np.ndarray:
        return np.full(self.n_clients, self.m / self.n_clients)


class BernoulliParticipation(Participation):
    """Let client ``i`` take part in each round independently with a fixed probability ``p_i``.

    With heterogeneous ``p_i`` that the server does not see, this is the "unknown participation
    statistics" setting. A round may have no participant.
    """

    def __init__(self, probabilities: np.ndarray | list[float]) -> None:
        self.probabilities = _as_probabilities(probabilities)
        self.n_clients = len(self.probabilities)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return rng.random(self.n_clients) < self.probabilities

    def marginal_probabilities(self) -> np.ndarray:
        return self.probabilities.copy()


class MarkovParticipation(Participation):
    """Let each client switch between available and unavailable as a two-state Markov chain.

    The chain of client ``i`` has stationary probability ``p_i`` of being available and lag-one
    autocorrelation ``correlation``: ``P(off -> on) = p_i (1 - correlation)`` and
    ``P(on -> off) = (1 - p_i)(1 - correlation)``. ``correlation = 0`` gives independent Bernoulli
    rounds; values near 1 give long runs of presence and absence. The first state is drawn from the
    stationary distribution.
    """

    def __init__(self, probabilities: np.ndarray | list[float], correlation: float) -> None:
        if not 0 <= correlation < 1:
            raise ValueError(f"correlation must lie in [0, 1), got {correlation}")
        self.probabilities = _as_probabilities(probabilities)
        self.n_clients = len(self.probabilities)
        self.correlation = correlation
        self.turn_on = self.probabilities * (1 - correlation)
        self.turn_off = (1 - self.probabilities) * (1 - correlation)
        self.state: np.ndarray | None = None

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        if self.state is None:
            self.state = rng.random(self.n_clients) < self.probabilities
        else:
            draw = rng.random(self.n_clients)
            self.state = np.where(self.state, draw >= self.turn_off, draw < self.turn_on)
        return self.state.copy()

    def marginal_probabilities(self) -> np.ndarray:
        return self.probabilities.copy()


class CyclicParticipation(Participation):
    """Make client ``i`` available for a contiguous block of ``round(p_i * period)`` rounds in every cycle.

    Each client's block starts at a random phase drawn once at construction, so clients are
    available at different times, as with devices that are online at certain hours of the day.
    """

    def __init__(self, probabilities: np.ndarray | list[float], period: int, rng: np.random.Generator) -> None:
        if period < 1:
            raise ValueError(f"period must be at least 1, got {period}")
        probabilities = _as_probabilities(probabilities)
        self.n_clients = len(probabilities)
        self.period = period
        self.window = np.rint(probabilities * period).astype(int)
        self.phase = rng.integers(0, period, self.n_clients)
        self.round = 0

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        position = (self.round + self.phase) % self.period
        self.round += 1
        return position < self.window

    def marginal_probabilities(self) -> np.ndarray:
        return self.window / self.period


@dataclass
class RoundPlan:
    """Plan of one round of anarchic participation: who is active, for how many steps, from which model.

    Attributes
    ----------
    active : numpy.ndarray
        Boolean mask of the clients that return an update.
    local_steps : numpy.ndarray
        Local steps each active client runs (0 for inactive clients).
    staleness : numpy.ndarray
        How many rounds old the model is from which each active client started (0 = current).
    """

    active: np.ndarray
    local_steps: np.ndarray
    staleness: np.ndarray


class AnarchicParticipation(Participation):
    """Let each client decide when to work, how many local steps to run and how stale its model is.

    Each round client ``i`` is active with probability ``p_i``. With ``workers_per_round = m``, exactly
    ``m`` clients are active instead, drawn without replacement with probability proportional to
    ``p_i``. This models a server that waits for the first ``m`` arrivals when frequent workers arrive sooner. An active client runs a
    number of local steps drawn uniformly from ``[min_steps, max_steps]`` and starts from a model that
    is ``s ~ Uniform{0, ..., max_staleness}`` rounds old.
    """

    def __init__(
        self,
        probabilities: np.ndarray | list[float],
        min_steps: int,
        max_steps: int,
        max_staleness: int = 0,
        workers_per_round: int | None = None,
    ) -> None:
        self.probabilities = _as_probabilities(probabilities)
        self.n_clients = len(self.probabilities)
        if not 1 <= min_steps <= max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
        if max_staleness < 0:
            raise ValueError(f"max_staleness must be non-negative, got {max_staleness}")
        if workers_per_round is not None:
            if not 1 <= workers_per_round <= np.count_nonzero(self.probabilities):
                raise ValueError(
                    f"workers_per_round={workers_per_round} must be between 1 and the "
                    f"{np.count_nonzero(self.probabilities)} clients with positive probability"
                )
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.max_staleness = max_staleness
        self.workers_per_round = workers_per_round

    def sample_plan(self, rng: np.random.Generator) -> RoundPlan:
        """Draw the next round's active set, local step counts and staleness."""
        if self.workers_per_round is None:
            active = rng.random(self.n_clients) < self.probabilities
        else:
            chosen = rng.choice(
                self.n_clients, self.workers_per_round, replace=False, p=self.probabilities / self.probabilities.sum()
            )
            active = np.zeros(self.n_clients, dtype=bool)
            active[chosen] = True
        steps = rng.integers(self.min_steps, self.max_steps + 1, self.n_clients)
        staleness = rng.integers(0, self.max_staleness + 1, self.n_clients)
        return RoundPlan(active, np.where(active, steps, 0), np.where(active, staleness, 0))

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return self.sample_plan(rng).active

    def marginal_probabilities(self) -> np.ndarray:
        """Return ``p_i``, exact without ``workers_per_round``.

        NOTE: with ``workers_per_round``, the inclusion probabilities of weighted sampling without
        replacement have no closed form. This returns ``m * p_i / sum(p)`` clipped to 1, a first-order
        estimate that is exact only for equal ``p_i``.
        """
        if self.workers_per_round is None:
            return self.probabilities.copy()
        return np.minimum(1.0, self.workers_per_round * self.probabilities / self.probabilities.sum())


def linear_compute_times(n_clients: int, spread: float) -> np.ndarray:
    """Return per-client job durations ``tau_i = 1 - spread * i / (n - 1)``.

    ``spread = 0.8`` makes the fastest client 80% faster than the slowest, as in the "F-80" time
    scenario of Fraboni et al. (2023).
    """
    if not 0 <= spread < 1:
        raise ValueError(f"spread must lie in [0, 1), got {spread}")
    if n_clients == 1:
        return np.ones(1)
    return 1.0 - spread * np.arange(n_clients) / (n_clients - 1)


@dataclass(order=True)
class Arrival:
    """An update that reaches the server.

    Attributes
    ----------
    time : float
        Simulated time at which it arrives.
    client : int
        Client index.
    version : int
        Server model version the client started from (staleness = current version - version).
    start_time : float
        Simulated time at which the client started the job.
    """

    time: float
    client: int
    version: int
    start_time: float


class AsyncArrivals:
    """Event queue of client jobs in simulated time, for asynchronous and buffered aggregation.

    A job started by client ``i`` at time ``t`` arrives at ``t + tau_i + delay``, where ``delay`` is 0
    (``delay="none"``), ``Exponential(mean=delay_scale * tau_i)`` or ``Uniform(0, 2 * delay_scale * tau_i)``.
    Ties are broken by client index so runs are reproducible.

    Parameters
    ----------
    compute_times : numpy.ndarray
        Mean job duration ``tau_i`` of every client, positive.
    rng : numpy.random.Generator
        Source of the random delays.
    delay : str
        ``"none"``, ``"exponential"`` or ``"uniform"``.
    delay_scale : float
        Mean delay as a multiple of ``tau_i``.
    """

    DELAYS = ("none", "exponential", "uniform")

    def __init__(
        self, compute_times: np.ndarray, rng: np.random.Generator, delay: str = "none", delay_scale: float = 0.0
    ) -> None:
        self.compute_times = np.asarray(compute_times, dtype=float)
        if np.any(self.compute_times <= 0):
            raise ValueError("compute_times must be positive")
        if delay not in self.DELAYS:
            raise ValueError(f"delay must be one of {self.DELAYS}, got {delay!r}")
        if delay_scale < 0:
            raise ValueError(f"delay_scale must be non-negative, got {delay_scale}")
        self.n_clients = len(self.compute_times)
        self.rng = rng
        self.delay = delay
        self.delay_scale = delay_scale
        self.now = 0.0
        self._queue: list[Arrival] = []
        self._busy = np.zeros(self.n_clients, dtype=bool)

    def mean_durations(self) -> np.ndarray:
        """Return the expected time from a job's start to its arrival, per client."""
        factor = 1.0 if self.delay == "none" else 1.0 + self.delay_scale
        return self.compute_times * factor

    def _duration(self, client: int) -> float:
        tau = self.compute_times[client]
        if self.delay == "exponential":
            return tau + self.rng.exponential(self.delay_scale * tau) if self.delay_scale > 0 else tau
        if self.delay == "uniform":
            return tau + self.rng.uniform(0, 2 * self.delay_scale * tau)
        return tau

    def start(self, client: int, version: int) -> None:
        """Start a job of ``client`` at the current time from server model ``version``."""
        if self._busy[client]:
            raise RuntimeError(f"client {client} is already running a job")
        self._busy[client] = True
        heapq.heappush(self._queue, Arrival(self.now + self._duration(client), client, version, self.now))

    def start_all(self, version: int) -> None:
        """Start a job on every idle client."""
        for client in np.flatnonzero(~self._busy):
            self.start(int(client), version)

    def next_time(self) -> float:
        """Return the arrival time of the next job, or ``inf`` if none is running."""
        return self._queue[0].time if self._queue else float("inf")

    def pop(self) -> Arrival:
        """Advance the clock to the next arrival and return it."""
        if not self._queue:
            raise RuntimeError("no job is running; start one before popping an arrival")
        arrival = heapq.heappop(self._queue)
        self._busy[arrival.client] = False
        self.now = arrival.time
        return arrival

    def pop_until(self, time: float) -> list[Arrival]:
        """Return every arrival up to and including ``time`` in order, and move the clock to ``time``."""
        if time < self.now:
            raise ValueError(f"cannot move the clock back from {self.now} to {time}")
        arrivals = []
        while self._queue and self._queue[0].time <= time:
            arrivals.append(self.pop())
        self.now = time
        return arrivals
