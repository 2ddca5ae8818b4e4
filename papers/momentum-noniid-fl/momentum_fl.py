"""FedAvg-M and SCAFFOLD-M (client-side momentum on the server direction) and their quadratic test bed.

Both methods keep a server direction ``g``. In round ``r`` every active client starts from the global
model ``x`` and takes ``K`` steps

    y <- y - eta * (beta * (grad f_i(y) + c - c_i) + (1 - beta) * g)

(the control variates ``c, c_i`` are zero for FedAvg-M), the server sets ``g`` to the average
displacement ``mean_i (x - y_i) / (eta * K)`` over the active clients and moves ``x <- x - gamma * g``.
With ``beta = 1`` and ``gamma = eta * K`` these are FedAvg and SCAFFOLD (control variates of
SCAFFOLD's option II, the average local gradient of the round), so one code path serves the methods
and their baselines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reprobook import fl
from reprobook.fl import Params


@dataclass
class HeterogeneousQuadratics:
    """Clients ``f_i(x) = 0.5 (x - b_i)' diag(h_i) (x - b_i)`` with ``b_i = x_star + zeta * u_i``.

    Attributes
    ----------
    curvatures : numpy.ndarray
        Diagonal Hessians ``h_i``, shape ``(clients, dim)``.
    directions : numpy.ndarray
        Offsets ``u_i`` with ``mean_i h_i * u_i = 0``, so that ``x_star`` minimises the average for every
        ``zeta``; their mean norm is 1.
    x_star : numpy.ndarray
        Minimiser of ``f = mean_i f_i``, of unit norm.
    """

    curvatures: np.ndarray
    directions: np.ndarray
    x_star: np.ndarray

    @property
    def smoothness(self) -> float:
        """Largest curvature over clients and coordinates (the ``L`` of every ``f_i``)."""
        return float(self.curvatures.max())

    def centres(self, zeta: float) -> np.ndarray:
        """Return the client minimisers ``b_i`` at dissimilarity ``zeta``."""
        return self.x_star + zeta * self.directions

    def gradient(self, x: np.ndarray, zeta: float) -> np.ndarray:
        """Return the gradient of ``f = mean_i f_i`` at ``x``."""
        return np.mean(self.curvatures * (x - self.centres(zeta)), axis=0)


def make_quadratics(
    n_clients: int, dim: int, curvature_range: tuple[float, float], rng: np.random.Generator
) -> HeterogeneousQuadratics:
    """Draw clients whose Hessians differ, so that local steps drift (identical Hessians would hide drift).

    Curvatures are log-uniform in ``curvature_range``. The offsets are Gaussian, shifted so that the minimiser
    of the average does not move with ``zeta``, and scaled to mean norm 1.
    """
    low, high = np.log(curvature_range[0]), np.log(curvature_range[1])
    curvatures = np.exp(rng.uniform(low, high, (n_clients, dim)))
    directions = rng.standard_normal((n_clients, dim)) / np.sqrt(dim)
    shift = np.mean(curvatures * directions, axis=0) / np.mean(curvatures, axis=0)
    directions = directions - shift
    directions /= np.linalg.norm(directions, axis=1).mean()
    x_star = rng.standard_normal(dim)
    x_star /= np.linalg.norm(x_star)
    return HeterogeneousQuadratics(curvatures, directions, x_star)


def run_quadratic(
    problem: HeterogeneousQuadratics,
    zeta: float,
    rounds: int,
    local_steps: int,
    eta: float,
    gamma: float,
    beta: float,
) -> np.ndarray:
    """Run FedAvg-M with exact gradients and full participation from ``x = 0`` (``beta = 1``: FedAvg).

    The server direction starts at the gradient of ``f`` at ``x = 0``.

    Returns
    -------
    numpy.ndarray
        ``||grad f(x_r)||^2`` for ``r = 0, ..., rounds``.
    """
    h, b = problem.curvatures, problem.centres(zeta)
    x = np.zeros(h.shape[1])
    g = problem.gradient(x, zeta)
    norms = [float(g @ g)]
    for _ in range(rounds):
        y = np.broadcast_to(x, h.shape).copy()
        for _ in range(local_steps):
            y -= eta * (beta * h * (y - b) + (1 - beta) * g)
        g = np.mean(x - y, axis=0) / (eta * local_steps)
        x = x - gamma * g
        grad = problem.gradient(x, zeta)
        norms.append(float(grad @ grad))
    return np.array(norms)


def _zeros_like(params: Params, n: int) -> Params:
    return {name: torch.zeros((n, *t.shape), dtype=t.dtype) for name, t in params.items()}


def full_gradient(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    partition: Sequence[np.ndarray],
    weight_decay: float = 0.0,
) -> Params:
    """Return the gradient of ``f = mean_i f_i`` (each client's full-data loss weighted equally)."""
    batches = fl.make_batches(partition, 1, None, np.random.default_rng(0))
    stacked = fl.replicate(params, len(partition))
    grads, _ = fl.client_gradients(model, stacked, *_gather(x, y, batches.index[0]), batches.weight[0])
    return {name: g.mean(dim=0) + weight_decay * params[name] for name, g in grads.items()}


def _gather(x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = index.reshape(-1)
    return x.index_select(0, flat).reshape(*index.shape, *x.shape[1:]), y.index_select(0, flat).reshape(index.shape)


def run_momentum_fl(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    partition: Sequence[np.ndarray],
    participation: fl.Participation,
    rounds: int,
    local_steps: int,
    eta: float,
    beta: float,
    rng: np.random.Generator,
    scaffold: bool = False,
    gamma: float | None = None,
    batch_size: int | None = 32,
    weight_decay: float = 0.0,
    evaluate: Callable[[Params], dict[str, float]] | None = None,
    evaluate_every: int = 1,
) -> tuple[Params, dict[str, list[float]]]:
    """Run FedAvg-M (``scaffold=False``) or SCAFFOLD-M on a torch model; ``beta = 1`` gives FedAvg / SCAFFOLD.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture (its own parameters are not used).
    params : Params
        Initial global parameters.
    x, y : torch.Tensor
        Training data; ``partition`` indexes into it.
    partition : sequence of numpy.ndarray
        Each client's sample indices; ``f`` weights every client equally.
    participation : reprobook.fl.Participation
        Which clients are active in each round.
    rounds, local_steps : int
        Communication rounds ``R`` and local steps ``K``.
    eta, beta : float
        Local learning rate and weight of the fresh (corrected) gradient in the local direction.
    rng : numpy.random.Generator
        Source of the client sampling and the minibatches.
    scaffold : bool
        Add SCAFFOLD's control variates ``c - c_i``.
    gamma : float, optional
        Server learning rate; defaults to ``eta * local_steps``, so that ``beta = 1`` is plain averaging.
    batch_size : int or None
        Local minibatch size (None: full client data).
    weight_decay : float
        L2 coefficient added to every gradient.
    evaluate : callable, optional
        Maps the global parameters to named metrics; called at round 0 and every ``evaluate_every`` rounds.

    Returns
    -------
    tuple
        Final global parameters and the metric histories (with a ``round`` key).
    """
    gamma = eta * local_steps if gamma is None else gamma
    n = len(partition)
    # Scaling the L2 term by beta keeps it inside beta * grad f_i, so the control variates see it too.
    solver = fl.LocalSolver(
        lr=eta, steps=local_steps, batch_size=batch_size, grad_scale=beta, weight_decay=beta * weight_decay
    )
    w = {name: t.detach().clone() for name, t in params.items()}
    # NOTE: g starts at the full gradient of f at the initial model, which costs one extra round of
    # communication. How Cheng et al. (ICLR 2024) initialise g was not checked.
    g = full_gradient(model, w, x, y, partition, weight_decay)
    c_clients = _zeros_like(w, n)
    c = {name: torch.zeros_like(t) for name, t in w.items()}
    history: dict[str, list[float]] = {"round": []}

    def log(round_index: int) -> None:
        if evaluate is None:
            return
        history["round"].append(round_index)
        for key, value in evaluate(w).items():
            history.setdefault(key, []).append(value)

    log(0)
    for r in range(1, rounds + 1):
        active = np.flatnonzero(participation.sample(rng))
        batches = fl.make_batches([partition[i] for i in active], local_steps, batch_size, rng)
        correction = {name: (1 - beta) * g[name].expand(len(active), *g[name].shape).clone() for name in w}
        if scaffold:
            for name in w:
                correction[name] += beta * (c[name] - c_clients[name][active])
        start = fl.replicate(w, len(active))
        local = fl.train_local(model, start, x, y, batches, solver, correction=correction).params
        displacement = {name: (start[name] - local[name]) / (eta * local_steps) for name in w}
        if scaffold:
            # The average local step direction minus the mixing and correction terms is beta times the
            # average local gradient, which becomes the new control variate c_i (SCAFFOLD option II).
            for name in w:
                new_ci = (displacement[name] - correction[name]) / beta
                c[name] += (new_ci - c_clients[name][active]).sum(dim=0) / n
                c_clients[name][active] = new_ci
        g = {name: d.mean(dim=0) for name, d in displacement.items()}
        w = {name: w[name] - gamma * g[name] for name in w}
        if r % evaluate_every == 0 or r == rounds:
            log(r)
    return w, history


def objective(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    partition: Sequence[np.ndarray],
    weight_decay: float = 0.0,
) -> torch.Tensor:
    """Return ``f(w) = mean_i f_i(w) + weight_decay / 2 * ||w||^2``, where ``f_i`` is client i's mean cross-entropy."""
    weights = torch.zeros(len(y), dtype=x.dtype)
    for indices in partition:
        weights[torch.as_tensor(indices)] = 1.0 / (len(partition) * len(indices))
    logits = torch.func.functional_call(model, params, (x,))
    loss = (weights * torch.nn.functional.cross_entropy(logits, y, reduction="none")).sum()
    return loss + 0.5 * weight_decay * sum((t**2).sum() for t in params.values())


def minimise_objective(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    partition: Sequence[np.ndarray],
    weight_decay: float,
    iterations: int = 500,
) -> float:
    """Return the minimum of :func:`objective` found by full-batch L-BFGS from ``params``."""
    w = {name: t.detach().clone().requires_grad_(True) for name, t in params.items()}
    optimiser = torch.optim.LBFGS(
        list(w.values()),
        max_iter=iterations,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = objective(model, w, x, y, partition, weight_decay)
        value.backward()
        return value

    optimiser.step(closure)
    with torch.no_grad():
        return float(objective(model, w, x, y, partition, weight_decay))
