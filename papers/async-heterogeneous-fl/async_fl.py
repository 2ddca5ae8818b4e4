"""Simulated-time federated training: synchronous FedAvg, asynchronous FedAvg and FedFix.

Every scheme drives the same client jobs: client ``i`` needs ``tau_i`` time units per job, receives
the global model when it starts and returns ``Delta_i = x_i - x_received`` when it finishes. The
schemes differ only in when the server aggregates and with which weight ``d_i``. Time is simulated
with :class:`reprobook.fl.AsyncArrivals`. The model is a flat parameter vector. One client's local work
is a short NumPy loop, because the asynchronous schemes train one client per event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reprobook import fl

LocalUpdate = Callable[[int, np.ndarray, np.random.Generator], np.ndarray]
Loss = Callable[[np.ndarray], float]

SCHEMES = ("FL", "Async", "Async-corrected", "FedFix")


@dataclass
class Run:
    """Global loss of one run on a grid of simulated times.

    Attributes
    ----------
    times : numpy.ndarray
        Evaluation times.
    loss : numpy.ndarray
        Global loss of the model in force at each time, ``inf`` once the parameters stop being finite.
    params : numpy.ndarray
        Final global parameters.
    server_steps : int
        Number of global-model updates.
    """

    times: np.ndarray
    loss: np.ndarray
    params: np.ndarray
    server_steps: int


class _Tracker:
    """Evaluate the global loss at grid times, using the model in force just before each update."""

    def __init__(self, times: np.ndarray, loss: Loss) -> None:
        self.times = times
        self.values = np.full(len(times), np.inf)
        self.pending = 0
        self.loss = loss

    def advance(self, time: float, x: np.ndarray) -> None:
        """Record ``x`` at every pending grid time strictly before ``time``."""
        stop = int(np.searchsorted(self.times, time, side="left"))
        if stop > self.pending:
            self.values[self.pending : stop] = self.loss(x) if np.all(np.isfinite(x)) else np.inf
            self.pending = stop


def aggregation_weights(scheme: str, p: np.ndarray, tau: np.ndarray, dt: float) -> np.ndarray:
    """Return the server weight ``d_i`` of one returned update of each client.

    ``FL``: ``p_i`` (all clients return together). ``Async``: 1 for every update, the plain
    asynchronous rule. ``Async-corrected``: ``p_i tau_i sum_j 1/tau_j``, which makes the expected
    contribution per unit time proportional to ``p_i``. ``FedFix``: ``p_i ceil(tau_i / dt)``, because
    client ``i`` returns once every ``ceil(tau_i / dt)`` windows.
    """
    if scheme == "FL":
        return p.copy()
    if scheme == "Async":
        return np.ones_like(p)
    if scheme == "Async-corrected":
        return p * tau * np.sum(1.0 / tau)
    if scheme == "FedFix":
        return p * np.ceil(tau / dt - 1e-9)
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def surrogate_weights(scheme: str, p: np.ndarray, tau: np.ndarray, dt: float) -> np.ndarray:
    """Return the normalised client weights ``q_i`` of the objective a scheme minimises.

    With deterministic job times, client ``i`` returns at rate ``1 / tau_i`` (asynchronous) or
    ``1 / ceil(tau_i / dt)`` per window (FedFix), so ``q_i`` is proportional to ``d_i`` times that rate.
    """
    d = aggregation_weights(scheme, p, tau, dt)
    if scheme == "FL":
        rate = np.ones_like(p)
    elif scheme == "FedFix":
        rate = 1.0 / np.ceil(tau / dt - 1e-9)
    else:
        rate = 1.0 / tau
    q = d * rate
    return q / q.sum()


def simulate(
    scheme: str,
    x0: np.ndarray,
    local_update: LocalUpdate,
    loss: Loss,
    p: np.ndarray,
    tau: np.ndarray,
    horizon: float,
    eval_times: np.ndarray,
    rng: np.random.Generator,
    dt: float = 0.5,
    server_lr: float = 1.0,
) -> Run:
    """Run one scheme until ``horizon`` simulated time units and evaluate it on ``eval_times``.

    Parameters
    ----------
    scheme : str
        One of :data:`SCHEMES`.
    x0 : numpy.ndarray
        Initial flat parameters.
    local_update : callable
        ``local_update(i, x, rng)`` returns client ``i``'s parameters after its local work from ``x``.
    loss : callable
        Global (federated) loss of flat parameters.
    p : numpy.ndarray
        Client importances ``p_i`` of the federated objective, summing to 1.
    tau : numpy.ndarray
        Job duration of every client.
    horizon : float
        Simulated time at which the run stops.
    eval_times : numpy.ndarray
        Increasing times at which the global loss is recorded.
    rng : numpy.random.Generator
        Source of the clients' minibatches.
    dt : float
        FedFix aggregation window.
    server_lr : float
        Global learning rate on the aggregated update.

    Returns
    -------
    Run
        Loss on the grid, final parameters and the number of server steps.
    """
    d = aggregation_weights(scheme, p, tau, dt)
    tracker = _Tracker(np.asarray(eval_times, dtype=float), loss)
    x = x0.copy()
    steps = 0
    arrivals = fl.AsyncArrivals(tau, rng)
    received = {i: x0 for i in range(len(tau))}
    arrivals.start_all(0)

    if scheme == "FL":
        round_time = float(np.max(tau))
        for k in range(1, int(np.floor(horizon / round_time + 1e-9)) + 1):
            tracker.advance(k * round_time, x)
            delta = sum(d[i] * (local_update(i, x, rng) - x) for i in range(len(tau)))
            x = x + server_lr * delta
            steps += 1
            if not np.all(np.isfinite(x)):
                break
    elif scheme == "FedFix":
        for k in range(1, int(np.floor(horizon / dt + 1e-9)) + 1):
            done = arrivals.pop_until(k * dt + 1e-9)
            if not done:
                continue
            tracker.advance(k * dt, x)
            delta = sum(d[a.client] * (local_update(a.client, received[a.client], rng) - received[a.client]) for a in done)
            x = x + server_lr * delta
            steps += 1
            if not np.all(np.isfinite(x)):
                break
            for a in done:
                received[a.client] = x
                arrivals.start(a.client, steps)
    else:
        while arrivals.next_time() <= horizon + 1e-9:
            a = arrivals.pop()
            tracker.advance(a.time, x)
            start = received[a.client]
            x = x + server_lr * d[a.client] * (local_update(a.client, start, rng) - start)
            steps += 1
            if not np.all(np.isfinite(x)):
                break
            received[a.client] = x
            arrivals.start(a.client, steps)

    tracker.advance(np.inf, x)
    return Run(tracker.times, tracker.values, x, steps)


def time_to_target(run: Run, target: float) -> float:
    """Return the first evaluation time at which the loss is at most ``target``, or the last time if never."""
    hit = np.flatnonzero(run.loss <= target)
    return float(run.times[hit[0]] if hit.size else run.times[-1])


class SoftmaxClients:
    """Clients of a multinomial logistic regression with bias, trained by minibatch SGD.

    Parameters
    ----------
    x : numpy.ndarray
        Features of all training samples, shape ``(n, features)``.
    y : numpy.ndarray
        Class indices, shape ``(n,)``.
    partition : list of numpy.ndarray
        Sample indices of each client.
    n_classes : int
        Number of classes.
    lr : float
        Local SGD learning rate.
    steps : int
        Local SGD steps per job.
    batch_size : int
        Minibatch size (a client with fewer samples uses all of them at every step).
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        partition: list[np.ndarray],
        n_classes: int,
        lr: float,
        steps: int,
        batch_size: int,
    ) -> None:
        self.x = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
        self.y = y
        self.partition = partition
        self.n_classes = n_classes
        self.shape = (self.x.shape[1], n_classes)
        self.lr = lr
        self.steps = steps
        self.batch_size = batch_size
        sizes = np.array([len(part) for part in partition], dtype=float)
        self.p = sizes / sizes.sum()

    @property
    def dim(self) -> int:
        """Number of parameters."""
        return self.shape[0] * self.shape[1]

    def _gradient(self, w: np.ndarray, index: np.ndarray) -> np.ndarray:
        logits = self.x[index] @ w
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=1, keepdims=True)
        prob[np.arange(len(index)), self.y[index]] -= 1.0
        return self.x[index].T @ prob / len(index)

    def local_update(self, client: int, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Run ``steps`` minibatch SGD steps of ``client`` from ``params`` and return the result."""
        w = params.reshape(self.shape).copy()
        part = self.partition[client]
        for _ in range(self.steps):
            index = part if len(part) <= self.batch_size else rng.choice(part, self.batch_size, replace=False)
            w -= self.lr * self._gradient(w, index)
            if not np.all(np.isfinite(w)):
                break
        return w.ravel()

    def loss(self, params: np.ndarray) -> float:
        """Return the federated loss ``sum_i p_i f_i``, which is the mean cross-entropy over all samples."""
        logits = self.x @ params.reshape(self.shape)
        top = logits.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        return float(np.mean(log_norm - logits[np.arange(len(self.y)), self.y]))


class LeastSquaresClients:
    """Clients of a federated least-squares problem, one full-batch gradient step per job.

    Parameters
    ----------
    problem : reprobook.fl.FederatedProblem
        Data and partition from :func:`reprobook.fl.make_federated_least_squares`.
    lr : float
        Local learning rate.
    """

    def __init__(self, problem: fl.FederatedProblem, lr: float) -> None:
        self.a = [problem.data.x[part].astype(np.float64) for part in problem.partition]
        self.b = [problem.data.y[part].astype(np.float64) for part in problem.partition]
        sizes = np.array([len(part) for part in problem.partition], dtype=float)
        self.p = sizes / sizes.sum()
        self.lr = lr

    def local_update(self, client: int, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Take one gradient step on ``f_i(w) = ||A_i w - b_i||^2 / (2 n_i)`` (``rng`` is unused)."""
        a, b = self.a[client], self.b[client]
        return params - self.lr * a.T @ (a @ params - b) / len(b)

    def minimiser(self, q: np.ndarray) -> np.ndarray:
        """Return the minimiser of ``sum_i q_i f_i``."""
        hessian = sum(qi * a.T @ a / len(b) for qi, a, b in zip(q, self.a, self.b, strict=True))
        rhs = sum(qi * a.T @ b / len(b) for qi, a, b in zip(q, self.a, self.b, strict=True))
        return np.linalg.solve(hessian, rhs)

    def loss(self, params: np.ndarray) -> float:
        """Return the federated loss ``sum_i p_i f_i``."""
        return float(sum(pi * np.sum((a @ params - b) ** 2) / (2 * len(b)) for pi, a, b in zip(self.p, self.a, self.b, strict=True)))
