"""Synchronous gossip learning with plain or variance-corrected neighbourhood averaging.

Every round each node runs local SGD on its own data, then replaces its model by the average of its
own and its neighbours' models. The variance-corrected variant rescales every averaged tensor, about
its own mean, so that its element variance equals the mean element variance of the models that went
into the average. Both variants act on stacked parameters (one leading node dimension), so all nodes
are trained and averaged at once with the ``reprobook.fl`` building blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from reprobook import fl

# Added to both variances before the ratio, so the scale factor of a near-constant tensor stays bounded.
VARIANCE_EPSILON = 1e-4


def element_variance(stacked: fl.Params) -> dict[str, torch.Tensor]:
    """Compute the unbiased variance over the elements of every tensor, one value per node.

    Parameters
    ----------
    stacked : Params
        Stacked parameters with a leading node dimension.

    Returns
    -------
    dict of str to torch.Tensor
        For each tensor name, a vector of shape ``(nodes,)``.
    """
    return {name: t.reshape(t.shape[0], -1).var(dim=1) for name, t in stacked.items()}


def gossip_average(
    stacked: fl.Params,
    mixing: np.ndarray,
    correct_variance: bool,
) -> fl.Params:
    """Average every node's model with its neighbours', optionally restoring the element variance.

    Parameters
    ----------
    stacked : Params
        Stacked node parameters before the exchange.
    mixing : numpy.ndarray
        Row-stochastic matrix ``W`` with ``W_ij > 0`` when node ``i`` averages the model of node ``j``.
    correct_variance : bool
        Rescale each averaged tensor of node ``i`` to the target variance ``sum_j W_ij var(x_j)``,
        the weighted mean of the variances of the models it averaged. Tensors with a single element
        are left as averaged.

    Returns
    -------
    Params
        Stacked parameters after the exchange.
    """
    averaged = fl.gossip_mix(stacked, mixing)
    if not correct_variance:
        return averaged
    weights = torch.as_tensor(mixing, dtype=next(iter(stacked.values())).dtype)
    received = element_variance(stacked)
    current = element_variance(averaged)
    out: fl.Params = {}
    for name, t in averaged.items():
        if t[0].numel() == 1:
            out[name] = t
            continue
        target = weights @ received[name]
        scale = torch.sqrt((target + VARIANCE_EPSILON) / (current[name] + VARIANCE_EPSILON))
        flat = t.reshape(t.shape[0], -1)
        mean = flat.mean(dim=1, keepdim=True)
        out[name] = ((flat - mean) * scale[:, None] + mean).reshape(t.shape)
    return out


def run_gossip(
    model: nn.Module,
    params: fl.Params,
    x: torch.Tensor,
    y: torch.Tensor,
    partition: Sequence[np.ndarray],
    solver: fl.LocalSolver,
    mixing: np.ndarray,
    rounds: int,
    rng: np.random.Generator,
    correct_variance: bool,
    evaluate: Callable[[fl.Params], dict[str, float]],
) -> dict[str, np.ndarray]:
    """Run synchronous gossip rounds: local training on every node, then one neighbourhood average.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture.
    params : Params
        Stacked initial parameters, one independent draw per node (not modified).
    x, y : torch.Tensor
        All training data; ``partition`` indexes into it.
    partition : sequence of numpy.ndarray
        Sample indices of each node.
    solver : LocalSolver
        Local optimiser of every node.
    mixing : numpy.ndarray
        Row-stochastic averaging matrix of the graph.
    rounds : int
        Number of train-then-average rounds.
    rng : numpy.random.Generator
        Source of the minibatches.
    correct_variance : bool
        Use the variance-corrected average instead of the plain one.
    evaluate : callable
        Maps stacked parameters to named metrics (for example the mean test accuracy over nodes).

    Returns
    -------
    dict of str to numpy.ndarray
        Each metric before the first round and after every round, shape ``(rounds + 1,)``.
    """
    dtype = next(iter(params.values())).dtype
    current = {name: t.clone() for name, t in params.items()}
    history = [evaluate(current)]
    for _ in range(rounds):
        batches = fl.make_batches(list(partition), solver.steps, solver.batch_size, rng, dtype)
        trained = fl.train_local(model, current, x, y, batches, solver).params
        current = gossip_average(trained, mixing, correct_variance)
        history.append(evaluate(current))
    return {key: np.array([h[key] for h in history]) for key in history[0]}


class FullParticipation(fl.Participation):
    """Let every client take part in every round without drawing from the generator.

    ``fl.UniformSampling(n, n)`` selects the same clients but consumes random numbers each round, so
    FedAvg would then see other minibatches than gossip run from a generator with the same seed.
    """

    def __init__(self, n_clients: int) -> None:
        self.n_clients = n_clients

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Return an all-true mask without drawing from ``rng``."""
        return np.ones(self.n_clients, dtype=bool)

    def marginal_probabilities(self) -> np.ndarray:
        """Return ones: every client takes part in every round."""
        return np.ones(self.n_clients)


def rounds_to_reach(accuracy: np.ndarray, target: float) -> int:
    """Return the first round whose accuracy reaches ``target``, or ``len(accuracy)`` if none does.

    The second case is a censored count: the true number of rounds is at least that value.
    """
    hits = np.flatnonzero(accuracy >= target)
    return int(hits[0]) if len(hits) else len(accuracy)
