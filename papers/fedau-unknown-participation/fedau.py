"""FedAU's online aggregation weights, the baselines' weights, and the two federated experiments of the chapter.

Every arm of an experiment uses the same participation trace (and, for classification, the same
minibatches), so the arms differ only in how the server weights the clients' updates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from reprobook import fl

ARMS = ("average_participating", "average_all", "known_probabilities", "fedau", "fedau_no_cutoff")
"""Aggregation arms: FedAvg over the participants, FedAvg over all clients, the 1/p_n oracle, FedAU with and without cutoff."""


class IntervalWeights:
    """FedAU's estimate of each client's optimal aggregation weight: its mean participation interval.

    Each round every client's counter of rounds since its last recorded interval grows by one. A
    client that participates, or whose counter reaches the cutoff ``K``, records the counter as one
    interval and restarts it. The weight is the mean of the recorded intervals, 1 before the first.
    It estimates ``1 / p_n`` (``E[min(G, K)]`` for a geometric ``G`` with a finite cutoff), with three
    numbers of memory per client.

    Parameters
    ----------
    n_clients : int
        Number of clients.
    cutoff : float
        Cutoff interval length ``K``; ``numpy.inf`` disables it.
    """

    def __init__(self, n_clients: int, cutoff: float = np.inf) -> None:
        if not cutoff >= 1:
            raise ValueError(f"cutoff must be at least 1, got {cutoff}")
        self.cutoff = cutoff
        self.since_last = np.zeros(n_clients)
        self.interval_sum = np.zeros(n_clients)
        self.interval_count = np.zeros(n_clients)

    @property
    def omega(self) -> np.ndarray:
        """Current weight of every client: the mean recorded interval, or 1 before the first."""
        count = np.maximum(self.interval_count, 1)
        return np.where(self.interval_count > 0, self.interval_sum / count, 1.0)

    def step(self, participating: np.ndarray) -> np.ndarray:
        """Return the weights this round's updates get, then record the round's intervals.

        The weights come from the intervals recorded before this round, so a participant's weight
        does not depend on its own participation in the round.
        """
        weights = self.omega
        self.since_last += 1
        closed = participating | (self.since_last >= self.cutoff)
        self.interval_sum[closed] += self.since_last[closed]
        self.interval_count[closed] += 1
        self.since_last[closed] = 0
        return weights


class StickyMarkovParticipation(fl.Participation):
    """Two-state Markov availability with one shared rate of becoming available.

    Every unavailable client becomes available with probability ``q``; an available client leaves
    with probability ``q (1 - p_n) / p_n``, so its stationary availability is ``p_n``. Where that
    exceeds 1, both rates are divided by it (leave with probability 1), as in the authors' code.
    The shared package's ``MarkovParticipation`` fixes the correlation instead of ``q``.

    Parameters
    ----------
    probabilities : numpy.ndarray
        Stationary availability ``p_n`` of every client, in (0, 1].
    to_available : float
        Rate ``q`` of becoming available, in (0, 1].
    rng : numpy.random.Generator
        Source of the first state, drawn from the stationary distribution.
    """

    def __init__(self, probabilities: np.ndarray, to_available: float, rng: np.random.Generator) -> None:
        p = np.asarray(probabilities, dtype=float)
        if np.any(p <= 0) or np.any(p > 1):
            raise ValueError("probabilities must lie in (0, 1]")
        if not 0 < to_available <= 1:
            raise ValueError(f"to_available must lie in (0, 1], got {to_available}")
        leave = to_available * (1 - p) / p
        scale = np.maximum(leave, 1.0)
        self.probabilities = p
        self.n_clients = len(p)
        self.turn_on = to_available / scale
        self.turn_off = leave / scale
        self.state = rng.random(self.n_clients) < p

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        draw = rng.random(self.n_clients)
        self.state = np.where(self.state, draw >= self.turn_off, draw < self.turn_on)
        return self.state.copy()

    def marginal_probabilities(self) -> np.ndarray:
        return self.probabilities.copy()


def participation_trace(participation: fl.Participation, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``rounds`` masks from a participation model, shape ``(rounds, n_clients)``."""
    return np.stack([participation.sample(rng) for _ in range(rounds)])


def label_correlated_probabilities(
    label_fractions: np.ndarray, mean: float, floor: float, alpha: float, rng: np.random.Generator
) -> np.ndarray:
    """Draw participation probabilities that depend on the labels a client holds.

    A multiplier ``m ~ Dirichlet(alpha 1_L)`` over the ``L`` labels gives client ``n`` the probability
    ``max(floor, mean * L * sum_l d_nl m_l)``, capped at 1, where ``d_n`` is its label distribution. Clients whose
    labels draw a small multiplier rarely participate, so participation and data are dependent.

    Parameters
    ----------
    label_fractions : numpy.ndarray
        Label distribution of every client, shape ``(n_clients, L)``, rows summing to 1.
    mean, floor : float
        Average probability before the floor, and the floor.
    alpha : float
        Dirichlet concentration of the multiplier.
    rng : numpy.random.Generator
        Source of the multiplier.
    """
    n_labels = label_fractions.shape[1]
    multiplier = rng.dirichlet(np.full(n_labels, alpha))
    return np.clip(mean * n_labels * label_fractions @ multiplier, floor, 1.0)


def round_weights(masks: np.ndarray, probabilities: np.ndarray, cutoff: float) -> dict[str, np.ndarray]:
    """Compute every arm's weight ``q_n`` on each client's update in each round.

    The server adds ``gamma * sum_n q_n Delta_n`` to the model; non-participants get ``q_n = 0``.

    Parameters
    ----------
    masks : numpy.ndarray
        Participation trace, shape ``(rounds, n_clients)``.
    probabilities : numpy.ndarray
        True participation probabilities, used only by the oracle arm.
    cutoff : float
        FedAU's cutoff ``K`` for the ``fedau`` arm.

    Returns
    -------
    dict of str to numpy.ndarray
        Weights of shape ``(rounds, n_clients)`` per arm, and ``"omega_fedau"`` and
        ``"omega_fedau_no_cutoff"``: FedAU's weights after the last round, shape ``(n_clients,)``.
    """
    rounds, n = masks.shape
    m = masks.astype(float)
    size = np.maximum(m.sum(axis=1, keepdims=True), 1)
    weights = {
        "average_participating": m / size,
        "average_all": m / n,
        # A client that is never available (p_n = 0, as when a cyclic block rounds to zero rounds) gets weight 0.
        "known_probabilities": np.divide(m, n * probabilities, out=np.zeros_like(m), where=probabilities > 0),
    }
    for arm, k in (("fedau", cutoff), ("fedau_no_cutoff", np.inf)):
        estimator = IntervalWeights(n, k)
        omega = np.stack([estimator.step(mask) for mask in masks])
        weights[arm] = m * omega / n
        weights[f"omega_{arm}"] = estimator.omega
    return weights


def run_quadratic(
    centres: np.ndarray, weights: dict[str, np.ndarray], lr_local: float, local_steps: int, lr_global: dict[str, float]
) -> dict[str, np.ndarray]:
    """Run every arm on the clients ``f_n(x) = ||x - c_n||^2 / 2`` from ``x = 0``.

    ``local_steps`` gradient steps of size ``eta`` move a client from ``x`` to
    ``x + a (c_n - x)`` with ``a = 1 - (1 - eta)^I``, so a round is
    ``x <- x + gamma a sum_n q_n (c_n - x)``.

    Returns
    -------
    dict of str to numpy.ndarray
        The iterates of each arm after every round, shape ``(rounds, d)``.
    """
    contraction = 1 - (1 - lr_local) ** local_steps
    out = {}
    for arm in ARMS:
        q = weights[arm]
        pull = q @ centres  # (rounds, d)
        mass = q.sum(axis=1)
        x = np.zeros(centres.shape[1])
        path = np.empty((len(q), centres.shape[1]))
        step = lr_global[arm] * contraction
        for t in range(len(q)):
            x = x + step * (pull[t] - mass[t] * x)
            path[t] = x
        out[arm] = path
    return out


def run_classification(
    model: nn.Module,
    init: fl.Params,
    x: torch.Tensor,
    y: torch.Tensor,
    partition: Sequence[np.ndarray],
    weights: dict[str, np.ndarray],
    solver: fl.LocalSolver,
    lr_global: dict[str, float],
    rng: np.random.Generator,
    checkpoints: Sequence[int],
) -> tuple[fl.Params, list[fl.Params]]:
    """Run every arm of FedAvg-style training with the given round weights, all arms in one batch.

    Each round the participants of every arm start from that arm's model and train on the same
    minibatches. The clients of all arms are stacked and trained in one ``train_local`` call. The server
    applies ``x <- x + gamma sum_n q_n (x_n - x)``.

    Returns
    -------
    tuple
        The final models stacked over ``ARMS``, and the stacked models after each round in
        ``checkpoints``.
    """
    n_arms = len(ARMS)
    models = fl.replicate(init, n_arms)
    gamma = torch.tensor([lr_global[arm] for arm in ARMS], dtype=x.dtype)
    q_all = np.stack([weights[arm] for arm in ARMS], axis=1)  # (rounds, arms, clients)
    saved = []
    for t in range(q_all.shape[0]):
        ids = np.flatnonzero(q_all[t].any(axis=0))
        if len(ids):
            batches = fl.make_batches([partition[i] for i in ids], solver.steps, solver.batch_size, rng, x.dtype)
            tiled = fl.Batches(batches.index.repeat(1, n_arms, 1), batches.weight.repeat(1, n_arms, 1))
            start = {name: value.repeat_interleave(len(ids), dim=0) for name, value in models.items()}
            trained = fl.train_local(model, start, x, y, tiled, solver).params
            q = torch.as_tensor(q_all[t][:, ids], dtype=x.dtype) * gamma[:, None]  # (arms, clients)
            for name, value in models.items():
                delta = (trained[name] - start[name]).reshape(n_arms, len(ids), *value.shape[1:])
                models[name] = value + torch.einsum("ac,ac...->a...", q, delta)
        if t + 1 in checkpoints:
            saved.append({name: value.clone() for name, value in models.items()})
    return models, saved


def tail_average(path: np.ndarray) -> np.ndarray:
    """Average each prefix of a trajectory over its second half.

    Row ``t`` (0-based) is the mean of rows ``(t + 1) // 2`` to ``t``, so the last row is the mean over
    the second half of the run.

    Parameters
    ----------
    path : numpy.ndarray
        Iterates, shape ``(rounds, d)``.
    """
    cumulative = np.vstack([np.zeros(path.shape[1]), np.cumsum(path, axis=0)])
    end = np.arange(1, len(path) + 1)
    start = end // 2
    return (cumulative[end] - cumulative[start]) / (end - start)[:, None]
