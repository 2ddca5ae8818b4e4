"""Server-side aggregation: weighted averaging, server learning rate and momentum, server Adam.

An aggregation rule maps the round's client results to a *pseudo-gradient* ``Delta = x - aggregate``
(the negative of the averaged update), and a :class:`ServerOptimizer` applies it to the global model.
With ``lr = 1`` and no momentum this is FedAvg's ``x <- weighted mean of client models``. A paper's own
rule plugs in as any callable with the signature of :data:`AggregationRule`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .models import Params

logger = logging.getLogger(__name__)

AggregationRule = Callable[[Params, Params, np.ndarray, np.ndarray], Params]
"""``rule(global_params, client_params, client_ids, client_sizes) -> pseudo_gradient``.

``client_params`` is stacked over the round's participants (in ``client_ids`` order) and the result is
the direction that the server optimiser subtracts, e.g. ``x - mean_i x_i``.
"""


def weighted_average(stacked: Params, weights: np.ndarray | torch.Tensor) -> Params:
    """Return ``sum_i weights_i * params_i``; pass normalised weights for an average.

    Parameters
    ----------
    stacked : Params
        Stacked parameters, leading dimension = clients.
    weights : array
        One weight per client.
    """
    first = next(iter(stacked.values()))
    w = torch.as_tensor(np.asarray(weights), dtype=first.dtype, device=first.device)
    if w.shape != (first.shape[0],):
        raise ValueError(f"need {first.shape[0]} weights, got shape {tuple(w.shape)}")
    return {name: torch.tensordot(w, t, dims=1) for name, t in stacked.items()}


def fedavg_rule(weighting: str = "samples") -> AggregationRule:
    """Build FedAvg's rule: ``Delta = x - sum_i q_i x_i`` over the participants.

    Parameters
    ----------
    weighting : str
        ``"samples"``: ``q_i`` proportional to the client's sample count (McMahan et al., 2017);
        ``"uniform"``: ``q_i = 1 / |S|``.
    """
    if weighting not in ("samples", "uniform"):
        raise ValueError(f"weighting must be 'samples' or 'uniform', got {weighting!r}")

    def rule(global_params: Params, client_params: Params, client_ids: np.ndarray, sizes: np.ndarray) -> Params:
        q = np.asarray(sizes, dtype=float) if weighting == "samples" else np.ones(len(client_ids))
        mean = weighted_average(client_params, q / q.sum())
        return {name: global_params[name] - mean[name] for name in global_params}

    return rule


@dataclass
class ServerOptimizer:
    """Apply a pseudo-gradient to the global model with a server learning rate, momentum or Adam.

    ``kind="sgd"``: ``m <- momentum * m + Delta`` (``m = Delta`` without momentum), ``x <- x - lr * m``.
    ``kind="adam"``: FedAdam of Reddi et al. (2021), ``m <- b1 m + (1 - b1) Delta``,
    ``v <- b2 v + (1 - b2) Delta^2``, ``x <- x - lr * m / (sqrt(v) + eps)`` (no bias correction, as there).

    Attributes
    ----------
    lr : float
        Server learning rate (1 with ``kind="sgd"`` and no momentum gives plain FedAvg).
    momentum : float
        Heavy-ball coefficient for ``sgd``, ``b1`` for ``adam``.
    kind : str
        ``"sgd"`` or ``"adam"``.
    beta2, eps : float
        Adam's second-moment decay and denominator offset.
    """

    lr: float = 1.0
    momentum: float = 0.0
    kind: str = "sgd"
    beta2: float = 0.99
    eps: float = 1e-3
    _m: Params | None = field(default=None, init=False, repr=False)
    _v: Params | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("sgd", "adam"):
            raise ValueError(f"kind must be 'sgd' or 'adam', got {self.kind!r}")

    def step(self, params: Params, pseudo_gradient: Params) -> Params:
        """Return the new global parameters (the inputs are not modified)."""
        if self.kind == "adam":
            if self._m is None or self._v is None:
                self._m = {n: torch.zeros_like(t) for n, t in params.items()}
                self._v = {n: torch.zeros_like(t) for n, t in params.items()}
            out = {}
            for name, delta in pseudo_gradient.items():
                self._m[name] = self.momentum * self._m[name] + (1 - self.momentum) * delta
                self._v[name] = self.beta2 * self._v[name] + (1 - self.beta2) * delta**2
                out[name] = params[name] - self.lr * self._m[name] / (self._v[name].sqrt() + self.eps)
            return out
        if self.momentum:
            if self._m is None:
                self._m = {n: torch.zeros_like(t) for n, t in params.items()}
            self._m = {n: self.momentum * self._m[n] + pseudo_gradient[n] for n in params}
            direction = self._m
        else:
            direction = pseudo_gradient
        return {name: params[name] - self.lr * direction[name] for name in params}
