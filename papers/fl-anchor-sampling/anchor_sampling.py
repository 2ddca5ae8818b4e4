"""FedAMD (anchor sampling) and SCAFFOLD on top of the ``reprobook.fl`` simulator.

Both algorithms keep one stored vector per client, so they are written as round loops over the
simulator's public parts (:func:`~reprobook.fl.make_batches`, :func:`~reprobook.fl.client_gradients`,
:func:`~reprobook.fl.train_local`). Every run returns a :class:`RunTrace` with the evaluation metrics
and the cumulative number of per-sample gradient evaluations after every round, so that rounds and
computation can both be compared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from reprobook import fl

Evaluate = Callable[[fl.Params, int], dict[str, float]]


@dataclass
class RunTrace:
    """Per-round records of one federated run.

    Attributes
    ----------
    rounds : list of int
        Rounds at which ``metrics`` were evaluated (0 is the initial model).
    metrics : dict of str to list of float
        Values returned by the evaluation callback, one list per key.
    sample_gradients : list of int
        Cumulative per-sample gradient evaluations of all clients at each evaluated round,
        including any initial pass over every client's data.
    """

    rounds: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    sample_gradients: list[int] = field(default_factory=list)

    def log(self, round_index: int, values: dict[str, float], sample_gradients: int) -> None:
        """Append one evaluation."""
        self.rounds.append(round_index)
        self.sample_gradients.append(int(sample_gradients))
        for key, value in values.items():
            self.metrics.setdefault(key, []).append(float(value))


def gather(x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return features and targets of the samples ``index`` of shape ``(clients, batch)``."""
    flat = index.reshape(-1)
    return x.index_select(0, flat).reshape(*index.shape, *x.shape[1:]), y.index_select(0, flat).reshape(index.shape)


def full_gradients(
    model: nn.Module,
    params: fl.Params,
    x: torch.Tensor,
    y: torch.Tensor,
    client_indices: Sequence[np.ndarray],
    loss: str = "cross_entropy",
) -> fl.Params:
    """Compute each listed client's gradient on all of its samples at the same global model.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture.
    params : Params
        Global parameters (unstacked).
    x, y : torch.Tensor
        The whole training set; ``client_indices`` index into it.
    client_indices : sequence of numpy.ndarray
        Sample indices of each client.
    loss : str
        Key of :data:`reprobook.fl.LOSSES`.

    Returns
    -------
    Params
        Stacked gradients, one row per listed client.
    """
    dtype = next(iter(params.values())).dtype
    # With batch_size=None the plan pads every client to the largest one with zero weights; no draws are made.
    plan = fl.make_batches(client_indices, 1, None, np.random.default_rng(0), dtype)
    xb, yb = gather(x, y, plan.index[0])
    grads, _ = fl.client_gradients(model, fl.replicate(params, len(client_indices)), xb, yb, plan.weight[0], loss)
    return grads


def sarah_local_steps(
    model: nn.Module,
    start: fl.Params,
    direction: fl.Params,
    x: torch.Tensor,
    y: torch.Tensor,
    batches: fl.Batches,
    lr: float,
    steps: int,
    loss: str = "cross_entropy",
) -> fl.Params:
    """Run the miners' variance-reduced local steps, all miners at once.

    From ``y_0 = start`` and ``d_0 = direction`` every miner takes ``y_{k+1} = y_k - lr * d_k`` with
    ``d_k = d_{k-1} + grad f_i(y_k; B_k) - grad f_i(y_{k-1}; B_k)`` for ``k >= 1``: both gradients use
    the same minibatch ``B_k``, so the correction has small variance when ``y_k`` is close to ``y_{k-1}``.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture.
    start, direction : Params
        Stacked starting weights and initial directions, one row per miner.
    x, y : torch.Tensor
        The whole training set; ``batches`` index into it.
    batches : Batches
        Minibatch plan with at least ``steps`` steps for the same miners.
    lr : float
        Local learning rate.
    steps : int
        Local steps K.
    loss : str
        Key of :data:`reprobook.fl.LOSSES`.

    Returns
    -------
    Params
        Stacked weights ``y_K`` of every miner.
    """
    current = {name: t.detach().clone() for name, t in start.items()}
    d = {name: t.detach().clone() for name, t in direction.items()}
    previous = None
    for k in range(steps):
        if previous is not None:
            xb, yb = gather(x, y, batches.index[k])
            # One vectorised pass evaluates both points: the miners' rows are stacked twice.
            both = {name: torch.cat([current[name], previous[name]]) for name in current}
            grads, _ = fl.client_gradients(
                model, both, torch.cat([xb, xb]), torch.cat([yb, yb]), torch.cat([batches.weight[k]] * 2), loss
            )
            half = xb.shape[0]
            d = {name: d[name] + g[:half] - g[half:] for name, g in grads.items()}
        previous = current
        current = {name: current[name] - lr * d[name] for name in current}
    return current


def mean_over_clients(stacked: fl.Params) -> fl.Params:
    """Return the uniform average over the leading client dimension."""
    return {name: t.mean(dim=0) for name, t in stacked.items()}


def run_fedamd(
    model: nn.Module,
    params: fl.Params,
    x: torch.Tensor,
    y: torch.Tensor,
    partition: Sequence[np.ndarray],
    participation: fl.Participation,
    lr: float,
    steps: int,
    batch_size: int,
    anchor_prob: float,
    rounds: int,
    rng: np.random.Generator,
    evaluate: Evaluate,
    loss: str = "cross_entropy",
    server_lr: float = 1.0,
    refresh_all: bool = False,
) -> tuple[fl.Params, RunTrace]:
    """Run FedAMD with a constant anchor probability.

    Before the first round every client sends its full local gradient at ``x_0``; the server stores
    one gradient ``g_i`` per client. In round t the server samples clients and each of them joins the
    anchor group with probability ``anchor_prob``. Anchors send their full local gradient at ``x_t``,
    which replaces their stored ``g_i`` after the round, and do not move the model. Miners start from
    ``x_t`` with ``d_0 = v = (1/n) sum_i g_i`` over all clients and run :func:`sarah_local_steps`. The
    server applies ``x_{t+1} = x_t - server_lr * mean over miners of (x_t - y_K)``; a round with no
    miner leaves the model unchanged.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture.
    params : Params
        Initial global parameters (unstacked, not modified).
    x, y : torch.Tensor
        The whole training set; ``partition`` indexes into it.
    partition : sequence of numpy.ndarray
        Each client's sample indices.
    participation : Participation
        Which clients take part in each round.
    lr : float
        Local learning rate of the miners.
    steps : int
        Local steps K of the miners.
    batch_size : int
        Minibatch size of the miners.
    anchor_prob : float
        Probability that a sampled client joins the anchor group.
    rounds : int
        Communication rounds.
    rng : numpy.random.Generator
        Source of participation, group coins and minibatches.
    evaluate : callable
        ``evaluate(params, round) -> dict``, called at round 0 and after every round.
    loss : str
        Key of :data:`reprobook.fl.LOSSES`.
    server_lr : float
        Global learning rate.
    refresh_all : bool
        Idealised variant for diagnosis, not the paper's method: every client recomputes its stored
        gradient at ``x_t`` at the start of every round, so ``v_t`` is the exact full gradient. The extra
        passes are counted in the cost.

    Returns
    -------
    tuple
        Final global parameters and the :class:`RunTrace`.
    """
    sizes = np.array([len(p) for p in partition])
    dtype = next(iter(params.values())).dtype
    global_params = {name: t.detach().clone() for name, t in params.items()}
    stored = full_gradients(model, global_params, x, y, partition, loss)
    cost = int(sizes.sum())
    trace = RunTrace()
    trace.log(0, evaluate(global_params, 0), cost)

    for r in range(1, rounds + 1):
        ids = np.flatnonzero(participation.sample(rng))
        is_anchor = rng.random(len(ids)) < anchor_prob
        anchors, miners = ids[is_anchor], ids[~is_anchor]
        if refresh_all and r > 1:
            stored = full_gradients(model, global_params, x, y, partition, loss)
            cost += int(sizes.sum())
        v = mean_over_clients(stored)
        if len(miners):
            batches = fl.make_batches([partition[i] for i in miners], steps, batch_size, rng, dtype)
            start = fl.replicate(global_params, len(miners))
            final = sarah_local_steps(model, start, fl.replicate(v, len(miners)), x, y, batches, lr, steps, loss)
            update = mean_over_clients({name: start[name] - final[name] for name in start})
            cost += len(miners) * 2 * max(steps - 1, 0) * batch_size
        if len(anchors):
            fresh = full_gradients(model, global_params, x, y, [partition[i] for i in anchors], loss)
            index = torch.as_tensor(anchors, dtype=torch.long)
            for name in stored:
                stored[name][index] = fresh[name]
            cost += int(sizes[anchors].sum())
        if len(miners):
            global_params = {name: global_params[name] - server_lr * update[name] for name in global_params}
        trace.log(r, evaluate(global_params, r), cost)
    return global_params, trace


def run_scaffold(
    model: nn.Module,
    params: fl.Params,
    x: torch.Tensor,
    y: torch.Tensor,
    partition: Sequence[np.ndarray],
    participation: fl.Participation,
    solver: fl.LocalSolver,
    rounds: int,
    rng: np.random.Generator,
    evaluate: Evaluate,
    server_lr: float = 1.0,
) -> tuple[fl.Params, RunTrace]:
    """Run SCAFFOLD (Karimireddy et al., 2020) with option II control variates.

    Each sampled client runs ``solver.steps`` SGD steps on ``grad f_i(y; B) - c_i + c``, then sets
    ``c_i <- c_i - c + (x - y_K) / (K lr)``. The server moves ``x`` by ``server_lr`` times the mean
    update and keeps ``c`` equal to the mean of all stored ``c_i``. The control variates start at every
    client's full gradient at ``x_0``, as FedAMD's stored gradients do, and that pass is counted.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture.
    params : Params
        Initial global parameters (unstacked, not modified).
    x, y : torch.Tensor
        The whole training set; ``partition`` indexes into it.
    partition : sequence of numpy.ndarray
        Each client's sample indices.
    participation : Participation
        Which clients take part in each round.
    solver : LocalSolver
        Local SGD settings (``lr``, ``steps``, ``batch_size``, ``loss``).
    rounds : int
        Communication rounds.
    rng : numpy.random.Generator
        Source of participation and minibatches.
    evaluate : callable
        ``evaluate(params, round) -> dict``, called at round 0 and after every round.
    server_lr : float
        Global learning rate.

    Returns
    -------
    tuple
        Final global parameters and the :class:`RunTrace`.
    """
    sizes = np.array([len(p) for p in partition])
    dtype = next(iter(params.values())).dtype
    global_params = {name: t.detach().clone() for name, t in params.items()}
    control = full_gradients(model, global_params, x, y, partition, solver.loss)
    cost = int(sizes.sum())
    trace = RunTrace()
    trace.log(0, evaluate(global_params, 0), cost)

    for r in range(1, rounds + 1):
        ids = np.flatnonzero(participation.sample(rng))
        index = torch.as_tensor(ids, dtype=torch.long)
        c = mean_over_clients(control)
        c_i = fl.select(control, index)
        correction = {name: c[name].unsqueeze(0) - c_i[name] for name in c}
        batches = fl.make_batches([partition[i] for i in ids], solver.steps, solver.batch_size, rng, dtype)
        start = fl.replicate(global_params, len(ids))
        result = fl.train_local(model, start, x, y, batches, solver, correction=correction)
        delta = {name: start[name] - result.params[name] for name in start}
        for name in control:
            control[name][index] = -correction[name] + delta[name] / (solver.steps * solver.lr)
        update = mean_over_clients(delta)
        global_params = {name: global_params[name] - server_lr * update[name] for name in global_params}
        cost += int(result.sample_gradients.sum())
        trace.log(r, evaluate(global_params, r), cost)
    return global_params, trace


def run_fedavg(
    model: nn.Module,
    params: fl.Params,
    x: torch.Tensor,
    y: torch.Tensor,
    partition: Sequence[np.ndarray],
    participation: fl.Participation,
    solver: fl.LocalSolver,
    rounds: int,
    rng: np.random.Generator,
    evaluate: Evaluate,
) -> tuple[fl.Params, RunTrace]:
    """Run FedAvg with the shared simulator and return its records as a :class:`RunTrace`.

    Clients are averaged with equal weights, as in FedAMD's server step. The cost after round r is
    ``r`` times the per-round sample gradients, which are the same in every round because every
    sampled client runs ``solver.steps`` minibatch steps.
    """
    final, history = fl.run_fedavg(
        model, params, x, y, partition, solver, participation, rounds, rng,
        rule=fl.fedavg_rule("uniform"), evaluate=evaluate,
    )
    per_round = history.accountant.sample_gradients // max(history.accountant.rounds, 1)
    trace = RunTrace(history.rounds, history.metrics, [r * per_round for r in history.rounds])
    return final, trace


def rounds_to_target(values: Sequence[float], rounds: Sequence[int], target: float) -> float:
    """Return the first round at which ``values`` reach ``target``, or ``inf`` if they never do."""
    hits = np.flatnonzero(np.asarray(values) >= target)
    return float(np.asarray(rounds)[hits[0]]) if len(hits) else float("inf")


def cost_at_round(trace: RunTrace, round_index: float) -> float:
    """Return the cumulative sample gradients at ``round_index``, or ``inf`` for an unreached target."""
    if not np.isfinite(round_index):
        return float("inf")
    return float(trace.sample_gradients[trace.rounds.index(int(round_index))])
