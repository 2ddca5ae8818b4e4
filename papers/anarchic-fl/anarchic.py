"""Anarchic federated averaging (AFA-CD, AFA-CS) and its baselines on top of ``reprobook.fl``.

Every round a set of workers returns an update. Worker ``i`` starts from a server model that is
``s_i`` rounds old, runs ``K_i`` local SGD steps with rate ``eta_L`` and reports the mean of its
``K_i`` stochastic gradients, ``G_i = (x_start - x_end) / (eta_L K_i)``. The server then moves

    x <- x - eta * eta_L * D,

where the aggregate ``D`` is

* ``"afa-cd"``: the mean of the ``G_i`` that arrived this round;
* ``"afa-cs"``: the mean over every worker of the latest ``G_i`` it has ever reported;
* ``"naive"``: the mean of the raw model changes ``eta_L K_i G_i`` divided by ``eta_L K_nominal``,
  which weights each worker by the work it happened to do;
* ``"fedavg"``: the ``"afa-cd"`` formula, used with synchronous plans (fresh models, equal ``K``),
  where ``eta = K`` gives FedAvg with server learning rate 1.

Two back ends share this logic: a NumPy one for heterogeneous least squares, where the exact
gradient norm is known, and a torch one that trains softmax regression with ``reprobook.fl.train_local``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reprobook import fl
from reprobook.fl.participation import AnarchicParticipation, RoundPlan

AGGREGATIONS = ("afa-cd", "afa-cs", "naive", "fedavg")


@dataclass
class WorkerBehaviour:
    """Anarchic worker behaviour: when each worker reports, how stale its model is and how many local steps it runs.

    Attributes
    ----------
    participation : AnarchicParticipation
        Draws the active set and the staleness of each active worker.
    min_steps, max_steps : numpy.ndarray
        Per-worker bounds of the local step count, drawn uniformly in between every round.
    """

    participation: AnarchicParticipation
    min_steps: np.ndarray
    max_steps: np.ndarray

    @property
    def n_workers(self) -> int:
        return self.participation.n_clients

    @property
    def nominal_steps(self) -> float:
        """Mean local step count over workers and rounds, the scale of the naive rule."""
        return float(np.mean((self.min_steps + self.max_steps) / 2))

    def sample(self, rng: np.random.Generator) -> RoundPlan:
        """Draw the next round's active workers, their step counts and their staleness."""
        plan = self.participation.sample_plan(rng)
        steps = rng.integers(self.min_steps, self.max_steps + 1)
        return RoundPlan(plan.active, np.where(plan.active, steps, 0), plan.staleness)


def anarchic_behaviour(
    probabilities: np.ndarray,
    min_steps: np.ndarray | int,
    max_steps: np.ndarray | int,
    max_staleness: int,
    workers_per_round: int | None = None,
) -> WorkerBehaviour:
    """Build a behaviour with per-worker arrival probabilities, step ranges and bounded staleness.

    With ``workers_per_round = m`` the server waits for ``m`` arrivals (cross-device). Without it,
    each worker arrives independently with its probability (cross-silo).
    """
    n = len(probabilities)
    low = np.broadcast_to(np.asarray(min_steps, dtype=int), (n,)).copy()
    high = np.broadcast_to(np.asarray(max_steps, dtype=int), (n,)).copy()
    participation = AnarchicParticipation(probabilities, 1, int(high.max()), max_staleness, workers_per_round)
    return WorkerBehaviour(participation, low, high)


def synchronous_behaviour(n_workers: int, workers_per_round: int, local_steps: int) -> WorkerBehaviour:
    """Build FedAvg's behaviour: ``m`` of ``n`` workers uniformly, fresh models, ``K`` steps each."""
    return anarchic_behaviour(np.ones(n_workers), local_steps, local_steps, 0, workers_per_round)


class ServerState:
    """Server model, its recent history and AFA-CS's table of latest worker updates.

    Parameters
    ----------
    x0 : numpy.ndarray or torch.Tensor
        Initial flat model.
    n_workers : int
        Number of workers.
    max_staleness : int
        Largest staleness a plan may request.
    """

    def __init__(self, x0: np.ndarray | torch.Tensor, n_workers: int, max_staleness: int) -> None:
        self.x = x0
        self.history = [x0] * (max_staleness + 1)
        if isinstance(x0, torch.Tensor):
            self.table = torch.zeros(n_workers, x0.numel(), dtype=x0.dtype)
        else:
            self.table = np.zeros((n_workers, len(x0)))
        self.reported = np.zeros(n_workers, dtype=bool)
        self.round = 0

    def start_models(self, workers: np.ndarray, staleness: np.ndarray) -> list:
        """Return the model each worker starts from, capped by the rounds run so far."""
        lag = np.minimum(staleness[workers], self.round)
        return [self.history[-1 - int(s)] for s in lag]

    def apply(
        self, aggregation: str, workers: np.ndarray, G: np.ndarray | torch.Tensor, steps: np.ndarray, step_size: float, nominal_steps: float
    ) -> None:
        """Aggregate this round's mean gradients ``G`` (one row per worker) and move the model."""
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        direction = None
        if aggregation == "afa-cs":
            if len(workers):
                self.table[workers] = G
                self.reported[workers] = True
            if self.reported.any():
                direction = self.table[self.reported].mean(0)
        elif len(workers):
            if aggregation == "naive":
                weights = steps[workers] / nominal_steps
                if isinstance(G, torch.Tensor):
                    weights = torch.as_tensor(weights, dtype=G.dtype)
                G = G * weights[:, None]
            direction = G.mean(0)
        if direction is not None:
            self.x = self.x - step_size * direction
        self.history = self.history[1:] + [self.x]
        self.round += 1


@dataclass
class Quadratic:
    """Heterogeneous least squares ``f = mean_i f_i``, ``f_i(x) = x^T H_i x / 2 - c_i^T x + const``.

    Attributes
    ----------
    H : numpy.ndarray
        Client Hessians, shape ``(n, d, d)``.
    c : numpy.ndarray
        Client linear terms, shape ``(n, d)``.
    """

    H: np.ndarray
    c: np.ndarray

    @classmethod
    def from_problem(cls, problem: fl.FederatedProblem) -> Quadratic:
        """Turn equal-size least-squares clients into their exact quadratics."""
        a, y = problem.data.x.astype(float), problem.data.y.astype(float)
        H = np.stack([a[ix].T @ a[ix] / len(ix) for ix in problem.partition])
        c = np.stack([a[ix].T @ y[ix] / len(ix) for ix in problem.partition])
        return cls(H, c)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """Return the exact global gradient ``mean_i (H_i x - c_i)``."""
        return self.H.mean(0) @ x - self.c.mean(0)


def local_sgd_quadratic(
    problem: Quadratic, workers: np.ndarray, starts: np.ndarray, steps: np.ndarray, eta_local: float, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Run each worker's local SGD with Gaussian gradient noise and return its mean gradient ``G_i``."""
    x = starts.copy()
    total = np.zeros_like(x)
    for k in range(int(steps.max())):
        g = np.einsum("wij,wj->wi", problem.H[workers], x) - problem.c[workers]
        g += noise * rng.standard_normal(g.shape)
        moving = (k < steps)[:, None]
        total += moving * g
        x -= eta_local * moving * g
    return total / steps[:, None]


def run_quadratic(
    problem: Quadratic,
    behaviour: WorkerBehaviour,
    aggregation: str,
    rounds: int,
    eta: float,
    eta_local: float,
    noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Run one algorithm on a quadratic and return ``||grad f(x_t)||^2`` after every round."""
    max_staleness = behaviour.participation.max_staleness
    server = ServerState(np.zeros(problem.c.shape[1]), behaviour.n_workers, max_staleness)
    trace = np.empty(rounds)
    for t in range(rounds):
        plan = behaviour.sample(rng)
        workers = np.flatnonzero(plan.active)
        G = np.zeros((0, problem.c.shape[1]))
        if len(workers):
            starts = np.stack(server.start_models(workers, plan.staleness))
            G = local_sgd_quadratic(problem, workers, starts, plan.local_steps[workers], eta_local, noise, rng)
        server.apply(aggregation, workers, G, plan.local_steps, eta * eta_local, behaviour.nominal_steps)
        trace[t] = np.sum(problem.gradient(server.x) ** 2)
    return trace


def run_classification(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    partition: list[np.ndarray],
    behaviour: WorkerBehaviour,
    aggregation: str,
    rounds: int,
    eta: float,
    eta_local: float,
    batch_size: int | None,
    rng: np.random.Generator,
    eval_every: int,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Train a classifier with one algorithm and return evaluation rounds, test accuracies and the final model.

    Local steps use ``reprobook.fl.train_local``, all active workers batched, each from its own stale model.
    """
    like = fl.get_params(model)
    server = ServerState(torch.zeros_like(fl.flatten(like)), behaviour.n_workers, behaviour.participation.max_staleness)
    solver = fl.LocalSolver(lr=eta_local, steps=int(behaviour.max_steps.max()), batch_size=batch_size)
    x, y = train
    checkpoints, accuracy = [], []
    for t in range(rounds):
        plan = behaviour.sample(rng)
        workers = np.flatnonzero(plan.active)
        G = torch.zeros(0, server.x.numel())
        if len(workers):
            starts = torch.stack(server.start_models(workers, plan.staleness))
            steps = plan.local_steps[workers]
            batches = fl.make_batches([partition[i] for i in workers], solver.steps, batch_size, rng)
            result = fl.train_local(model, fl.unflatten(starts, like), x, y, batches, solver, local_steps=steps)
            ends = fl.flatten(result.params, stacked=True)
            G = (starts - ends) / (eta_local * torch.as_tensor(steps, dtype=starts.dtype)[:, None])
        server.apply(aggregation, workers, G, plan.local_steps, eta * eta_local, behaviour.nominal_steps)
        if (t + 1) % eval_every == 0 or t + 1 == rounds:
            _, acc = fl.evaluate(model, fl.unflatten(server.x, like), *test)
            checkpoints.append(t + 1)
            accuracy.append(float(acc))
    return np.array(checkpoints), np.array(accuracy), server.x
