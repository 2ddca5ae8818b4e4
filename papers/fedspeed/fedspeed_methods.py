"""FedSpeed and the stateful baselines it is compared with, built on :mod:`reprobook.fl`.

Every method runs the same loop: sample the round's clients, train them in one batched call of
:func:`reprobook.fl.local.train_local` with a method-specific ``LocalSolver`` and per-client
correction, then update the server model and the per-client state. ``x`` is the global model,
``y_i`` the model of active client ``i`` after ``K`` local steps and ``S`` the active set.

- ``fedavg``: ``x <- mean_S y_i``.
- ``fedprox``: local prox term ``mu/2 ||w - x||^2``, then ``x <- mean_S y_i``.
- ``scaffold``: correction ``c - c_i`` and option II control variates
  ``c_i <- c_i - c + (x - y_i) / (K lr)``, ``c <- c + (|S| / n) mean_S (c_i_new - c_i)``.
- ``feddyn``: local objective ``f_i(w) - <g_i, w> + alpha/2 ||w - x||^2``, then
  ``g_i <- g_i - alpha (y_i - x)``, ``s <- s - (alpha / n) sum_S (y_i - x)`` and ``x <- mean_S y_i - s / alpha``.
- ``fedcm``: local direction ``a g + (1 - a) Delta`` with ``Delta = -mean_S (y_i - x) / (K lr)`` of the last round.
- ``fedspeed``: SAM gradient plus ``lambda (w - x + h_i)``, clipped, then ``h_i <- h_i + (y_i - x)``
  and ``x <- mean_S y_i + mean_all h_i`` (the server rule of the authors' FL-Simulator).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reprobook.fl.local import LocalSolver, make_batches, train_local
from reprobook.fl.models import Params, replicate
from reprobook.fl.participation import Participation

METHODS = ("fedavg", "fedprox", "scaffold", "feddyn", "fedcm", "fedspeed")


@dataclass
class Hyperparameters:
    """Local training and method coefficients shared by all methods.

    Attributes
    ----------
    lr : float
        Local learning rate of round 0.
    lr_decay : float
        Factor applied to the local learning rate after every round.
    local_steps : int
        Local steps ``K`` per round.
    batch_size : int or None
        Minibatch size, or None for full-batch gradients.
    weight_decay : float
        L2 coefficient added to every local gradient.
    rho : float
        SAM radius of FedSpeed (0 turns the perturbation off).
    lamb : float
        FedSpeed's prox coefficient ``lambda``.
    mu : float
        FedProx's prox coefficient.
    dyn_alpha : float
        FedDyn's regularisation coefficient.
    cm_alpha : float
        FedCM's weight on the fresh local gradient.
    clip_norm : float or None
        Norm bound on FedSpeed's local direction (10 in the authors' code).
    loss : str
        ``"cross_entropy"`` or ``"mse"``.
    """

    lr: float
    lr_decay: float
    local_steps: int
    batch_size: int | None
    weight_decay: float = 0.0
    rho: float = 0.1
    lamb: float = 0.1
    mu: float = 0.1
    dyn_alpha: float = 0.1
    cm_alpha: float = 0.1
    clip_norm: float | None = 10.0
    loss: str = "cross_entropy"


def _zeros(like: Params, n: int) -> Params:
    return {name: torch.zeros((n, *t.shape), dtype=t.dtype) for name, t in like.items()}


def _mean(stacked: Params) -> Params:
    return {name: t.mean(dim=0) for name, t in stacked.items()}


def run_method(
    method: str,
    model: nn.Module,
    init: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    partition: Sequence[np.ndarray],
    participation: Participation,
    hp: Hyperparameters,
    rounds: int,
    rng: np.random.Generator,
    evaluate: Callable[[Params], float],
) -> tuple[Params, np.ndarray]:
    """Run ``rounds`` federated rounds of one method and evaluate the global model after each.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    model : torch.nn.Module
        Architecture, run functionally on the stacked client weights.
    init : Params
        Initial global parameters (not modified).
    x, y : torch.Tensor
        All training data; ``partition`` indexes into it.
    partition : sequence of numpy.ndarray
        Sample indices of each client.
    participation : Participation
        Draws the active clients of each round.
    hp : Hyperparameters
        Local training settings and method coefficients.
    rounds : int
        Communication rounds.
    rng : numpy.random.Generator
        Source of participation draws and minibatches.
    evaluate : callable
        Maps global parameters to a scalar metric (test accuracy, distance to the optimum).

    Returns
    -------
    tuple
        Final global parameters and the metric before round 1 and after every round, shape ``(rounds + 1,)``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n = len(partition)
    k = hp.local_steps
    global_params = {name: t.detach().clone() for name, t in init.items()}
    state = _zeros(init, n)  # h_i (FedSpeed), c_i (SCAFFOLD) or g_i (FedDyn)
    server_state = {name: torch.zeros_like(t) for name, t in init.items()}  # c, s or Delta
    trace = [evaluate(global_params)]

    for r in range(rounds):
        lr = hp.lr * hp.lr_decay**r
        ids = np.flatnonzero(participation.sample(rng))
        if len(ids) == 0:
            trace.append(trace[-1])
            continue
        index = torch.as_tensor(ids)
        solver, correction = _local_setup(method, hp, lr, state, server_state, index)
        batches = make_batches([partition[i] for i in ids], k, hp.batch_size, rng, x.dtype)
        start = replicate(global_params, len(ids))
        result = train_local(model, start, x, y, batches, solver, correction=correction)
        delta = {name: result.params[name] - start[name] for name in start}
        global_params = _server_update(method, hp, lr, global_params, delta, state, server_state, index, n)
        trace.append(evaluate(global_params))
    return global_params, np.asarray(trace, dtype=float)


def _local_setup(
    method: str, hp: Hyperparameters, lr: float, state: Params, server_state: Params, index: torch.Tensor
) -> tuple[LocalSolver, Params | None]:
    """Build the round's local solver and the additive correction of each active client."""
    base = {"lr": lr, "steps": hp.local_steps, "batch_size": hp.batch_size, "weight_decay": hp.weight_decay,
            "loss": hp.loss}  # fmt: skip
    if method == "fedprox":
        return LocalSolver(**base, prox_mu=hp.mu), None
    if method == "scaffold":
        return LocalSolver(**base), {name: server_state[name] - state[name][index] for name in state}
    if method == "feddyn":
        return LocalSolver(**base, prox_mu=hp.dyn_alpha), {name: -state[name][index] for name in state}
    if method == "fedcm":
        drift = {name: (1 - hp.cm_alpha) * t.expand(len(index), *t.shape) for name, t in server_state.items()}
        return LocalSolver(**base, grad_scale=hp.cm_alpha), drift
    if method == "fedspeed":
        # lambda (w - x) comes from the prox term and lambda h_i from the correction.
        solver = LocalSolver(**base, sam_rho=hp.rho, prox_mu=hp.lamb, clip_norm=hp.clip_norm)
        return solver, {name: hp.lamb * state[name][index] for name in state}
    return LocalSolver(**base), None


def _server_update(
    method: str,
    hp: Hyperparameters,
    lr: float,
    global_params: Params,
    delta: Params,
    state: Params,
    server_state: Params,
    index: torch.Tensor,
    n: int,
) -> Params:
    """Update the per-client and server state in place and return the new global model."""
    mean_delta = _mean(delta)
    if method == "scaffold":
        for name in state:
            new_c = state[name][index] - server_state[name] - delta[name] / (hp.local_steps * lr)
            server_state[name] += (new_c - state[name][index]).sum(dim=0) / n
            state[name][index] = new_c
    elif method == "feddyn":
        for name in state:
            state[name][index] -= hp.dyn_alpha * delta[name]
            server_state[name] -= hp.dyn_alpha * delta[name].sum(dim=0) / n
        return {name: t + mean_delta[name] - server_state[name] / hp.dyn_alpha for name, t in global_params.items()}
    elif method == "fedcm":
        for name in server_state:
            server_state[name] = -mean_delta[name] / (hp.local_steps * lr)
    elif method == "fedspeed":
        for name in state:
            state[name][index] += delta[name]
        return {name: t + mean_delta[name] + state[name].mean(dim=0) for name, t in global_params.items()}
    return {name: t + mean_delta[name] for name, t in global_params.items()}


def rounds_to_target(trace: np.ndarray, target: float) -> int:
    """Return the first round whose metric reaches ``target``, or ``len(trace)`` when none does (censored)."""
    hits = np.flatnonzero(trace >= target)
    return int(hits[0]) if len(hits) else len(trace)


def run_quadratic(
    method: str,
    hessians: np.ndarray,
    linear: np.ndarray,
    lamb: float,
    mu: float,
    lr: float,
    local_steps: int,
    rounds: int,
) -> np.ndarray:
    """Run FedAvg, FedProx or FedSpeed with full participation on ``f_i(w) = w'H_i w / 2 - b_i'w + const``.

    This is the deterministic special case of :func:`run_method` (full-batch gradients, every client
    active, no SAM, no weight decay, no clipping) written with NumPy matrices, so that hundreds of
    rounds cost milliseconds. One local step is ``w <- w - lr (H_i w - b_i + p_i(w))`` with
    ``p_i = 0`` (FedAvg), ``mu (w - x)`` (FedProx) or ``lambda (w - x + h_i)`` (FedSpeed).

    Parameters
    ----------
    method : str
        ``"fedavg"``, ``"fedprox"`` or ``"fedspeed"``.
    hessians : numpy.ndarray
        Client Hessians ``H_i``, shape ``(clients, dim, dim)``.
    linear : numpy.ndarray
        Client linear terms ``b_i``, shape ``(clients, dim)``.
    lamb, mu : float
        FedSpeed's and FedProx's prox coefficients.
    lr : float
        Local learning rate.
    local_steps : int
        Local steps ``K`` per round.
    rounds : int
        Communication rounds.

    Returns
    -------
    numpy.ndarray
        Global model before round 1 and after every round, shape ``(rounds + 1, dim)``.
    """
    if method not in ("fedavg", "fedprox", "fedspeed"):
        raise ValueError(f"method must be fedavg, fedprox or fedspeed, got {method!r}")
    n, dim = linear.shape
    prox = {"fedavg": 0.0, "fedprox": mu, "fedspeed": lamb}[method]
    x = np.zeros(dim)
    h = np.zeros((n, dim))
    path = [x.copy()]
    for _ in range(rounds):
        w = np.tile(x, (n, 1))
        shift = h if method == "fedspeed" else 0.0
        for _ in range(local_steps):
            grad = np.einsum("nij,nj->ni", hessians, w) - linear
            w = w - lr * (grad + prox * (w - x + shift))
        delta = w - x
        x = x + delta.mean(axis=0)
        if method == "fedspeed":
            h = h + delta
            x = x + h.mean(axis=0)
        path.append(x.copy())
    return np.asarray(path)
