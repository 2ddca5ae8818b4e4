"""Local training of many clients at once: SGD with momentum, SAM, a prox term and additive corrections.

:func:`train_local` runs every active client's local steps as one batched computation. The per-client
loss is vectorised over the stacked weights, with batched matrix products for plain ``nn.Sequential``
MLPs and :func:`torch.func.vmap` over :func:`torch.func.functional_call` for any other model. One
backward pass then returns every client's gradient, because the clients' losses are independent and
the gradient of their sum splits by client. ``batched=False`` runs the same
arithmetic in a Python loop over clients; it is kept as the reference that the tests compare with.

One local step of client ``i`` computes, from its minibatch gradient ``g``,

    g      <- grad f_i(w + rho * g / ||g||)            (SAM, when ``sam_rho > 0``)
    d      =  grad_scale * g + c_i + mu * (w - w_anchor) + weight_decay * w
    d      <- d * min(1, clip_norm / ||d||)            (when ``clip_norm`` is set)
    m      <- momentum * m + d,  d <- m                (when ``momentum > 0``)
    w      <- w - lr * d

where ``c_i`` is an optional per-client correction (SCAFFOLD's ``c - c_i``, FedDyn's ``-grad_prev``,
FedAvg-M's ``(1 - beta) g_server``), and norms are over all of the client's parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from .models import Params

logger = logging.getLogger(__name__)

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": lambda out, y: F.cross_entropy(out, y, reduction="none"),
    "mse": lambda out, y: 0.5 * (out.reshape(y.shape) - y) ** 2,
}


@dataclass
class LocalSolver:
    """Hyperparameters of the clients' local optimiser.

    Attributes
    ----------
    lr : float
        Local learning rate.
    steps : int
        Local steps per round (an upper bound when clients run different counts).
    batch_size : int or None
        Minibatch size, or None for full-batch gradients on each client's whole data.
    momentum : float
        Heavy-ball momentum of the local optimiser (0 for plain SGD).
    sam_rho : float
        SAM perturbation radius (0 disables SAM).
    prox_mu : float
        Weight of the prox term ``mu / 2 ||w - w_anchor||^2`` (FedProx; 0 disables it).
    weight_decay : float
        L2 penalty coefficient added to the gradient.
    grad_scale : float
        Factor on the loss gradient before the correction is added.
    clip_norm : float or None
        Clip each client's step direction to this norm.
    loss : str
        ``"cross_entropy"`` (integer labels) or ``"mse"`` (``0.5 * (output - y)^2``).
    """

    lr: float
    steps: int
    batch_size: int | None = None
    momentum: float = 0.0
    sam_rho: float = 0.0
    prox_mu: float = 0.0
    weight_decay: float = 0.0
    grad_scale: float = 1.0
    clip_norm: float | None = None
    loss: str = "cross_entropy"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be non-negative, got {self.steps}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be positive or None, got {self.batch_size}")


@dataclass
class Batches:
    """Sample indices and weights of every local step of every client.

    Attributes
    ----------
    index : torch.Tensor
        ``int64`` indices into the dataset, shape ``(steps, clients, batch)``.
    weight : torch.Tensor
        Weight of each entry, shape ``(steps, clients, batch)``; 0 marks padding. Each client's
        minibatch loss is the weighted mean of its per-sample losses.
    """

    index: torch.Tensor
    weight: torch.Tensor

    @property
    def steps(self) -> int:
        return self.index.shape[0]


def make_batches(
    client_indices: Sequence[np.ndarray],
    steps: int,
    batch_size: int | None,
    rng: np.random.Generator,
    dtype: torch.dtype = torch.float32,
    shuffle: bool = True,
) -> Batches:
    """Plan the minibatches of ``steps`` local steps for each client.

    With a ``batch_size``, each client walks through its samples in epochs, in a fresh permutation
    per epoch or, when ``shuffle=False``, in the given order (for curricula). A client with fewer
    samples than ``batch_size`` reuses samples within a batch. With ``batch_size=None`` every step
    uses the client's full data, padded to the largest client with zero weights.

    Parameters
    ----------
    client_indices : sequence of numpy.ndarray
        Dataset indices of each active client's samples.
    steps : int
        Local steps to plan.
    batch_size : int or None
        Minibatch size, or None for full batches.
    rng : numpy.random.Generator
        Source of the permutations.
    dtype : torch.dtype
        Dtype of the weights (match the model's).
    shuffle : bool
        Permute each epoch; False keeps the order of ``client_indices``.

    Returns
    -------
    Batches
        Index and weight tensors of shape ``(steps, len(client_indices), batch)``.
    """
    n_clients = len(client_indices)
    if any(len(ix) == 0 for ix in client_indices):
        raise ValueError("every client needs at least one sample")
    if batch_size is None:
        width = max(len(ix) for ix in client_indices)
        index = np.zeros((n_clients, width), dtype=np.int64)
        weight = np.zeros((n_clients, width))
        for c, ix in enumerate(client_indices):
            index[c, : len(ix)] = ix
            weight[c, : len(ix)] = 1.0
        index_t = torch.from_numpy(index).unsqueeze(0).expand(steps, -1, -1)
        weight_t = torch.from_numpy(weight).to(dtype).unsqueeze(0).expand(steps, -1, -1)
        return Batches(index_t, weight_t)

    index = np.empty((steps, n_clients, batch_size), dtype=np.int64)
    needed = steps * batch_size
    for c, ix in enumerate(client_indices):
        ix = np.asarray(ix)
        epochs = -(-needed // len(ix))
        order = [rng.permutation(ix) if shuffle else ix for _ in range(epochs)]
        index[:, c, :] = np.concatenate(order)[:needed].reshape(steps, batch_size)
    return Batches(torch.from_numpy(index), torch.ones((steps, n_clients, batch_size), dtype=dtype))


_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Identity)


def stacked_forward(model: nn.Module) -> Callable[[Params, torch.Tensor], torch.Tensor] | None:
    """Return a forward pass over stacked weights built from batched matrix products, if the model allows.

    Supported: an ``nn.Sequential`` of ``nn.Linear``, ``nn.Flatten`` and element-wise activations. The
    returned function maps stacked parameters and inputs ``(clients, batch, ...)`` to outputs
    ``(clients, batch, out)``; it does the same arithmetic as :func:`torch.func.vmap` over
    :func:`torch.func.functional_call` with less per-call overhead. Other models return None and
    :func:`client_gradients` falls back to ``vmap``.
    """
    if not isinstance(model, nn.Sequential):
        return None
    layers = list(model.named_children())
    for _, layer in layers:
        if isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                return None
        elif not isinstance(layer, (nn.Linear, *_ELEMENTWISE)):
            return None

    def forward(params: Params, x: torch.Tensor) -> torch.Tensor:
        for name, layer in layers:
            if isinstance(layer, nn.Linear):
                weight = params[f"{name}.weight"].transpose(1, 2)
                bias = params.get(f"{name}.bias")
                x = torch.bmm(x, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, weight)
            elif isinstance(layer, nn.Flatten):
                x = x.reshape(x.shape[0], x.shape[1], -1)
            else:
                x = layer(x)
        return x

    return forward


def _per_sample_loss(model: nn.Module, loss: str) -> Callable[..., torch.Tensor]:
    loss_fn = LOSSES[loss]

    def client_loss(params: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, params, (x,))
        return (loss_fn(out, y) * w).sum() / w.sum().clamp_min(1e-12)

    return client_loss


def client_gradients(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    loss: str = "cross_entropy",
    batched: bool = True,
) -> tuple[Params, torch.Tensor]:
    """Compute every client's loss and gradient on its own batch.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture, run with :func:`torch.func.functional_call`.
    params : Params
        Stacked parameters, leading dimension = clients.
    x, y, weight : torch.Tensor
        Features ``(clients, batch, ...)``, targets ``(clients, batch)`` and sample weights ``(clients, batch)``.
    loss : str
        Key of :data:`LOSSES`.
    batched : bool
        One vectorised pass (True) or a loop over clients (False).

    Returns
    -------
    tuple
        Stacked gradients and the per-client losses, shape ``(clients,)``.
    """
    client_loss = _per_sample_loss(model, loss)
    leaves = {name: t.detach().requires_grad_(True) for name, t in params.items()}
    if batched:
        forward = stacked_forward(model)
        if forward is None:
            losses = vmap(client_loss)(leaves, x, y, weight)
        else:
            out = forward(leaves, x)
            per_sample = LOSSES[loss](out.reshape(-1, *out.shape[2:]), y.reshape(-1)).reshape(weight.shape)
            losses = (per_sample * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1e-12)
        grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
        return dict(zip(leaves, grads, strict=True)), losses.detach()
    per_client: list[tuple[torch.Tensor, ...]] = []
    loss_values = []
    for c in range(x.shape[0]):
        single = {name: t[c].detach().requires_grad_(True) for name, t in params.items()}
        value = client_loss(single, x[c], y[c], weight[c])
        per_client.append(torch.autograd.grad(value, list(single.values())))
        loss_values.append(value.detach())
    grads = {name: torch.stack([g[k] for g in per_client]) for k, name in enumerate(params)}
    return grads, torch.stack(loss_values)


def _client_norm(tensors: Params) -> torch.Tensor:
    """Return the Euclidean norm of each client's slice over all tensors, shape ``(clients,)``."""
    return torch.sqrt(sum(t.reshape(t.shape[0], -1).pow(2).sum(dim=1) for t in tensors.values()))


def _per_client(scale: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return scale.reshape(-1, *([1] * (t.dim() - 1)))


@dataclass
class LocalResult:
    """Outcome of one round of local training.

    Attributes
    ----------
    params : Params
        Stacked parameters after training.
    steps : numpy.ndarray
        Local steps each client took.
    sample_gradients : numpy.ndarray
        Per-sample gradient evaluations of each client (SAM counts twice).
    last_loss : torch.Tensor
        Each client's minibatch loss at its last step (before the update).
    """

    params: Params
    steps: np.ndarray
    sample_gradients: np.ndarray
    last_loss: torch.Tensor


def train_local(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    batches: Batches,
    solver: LocalSolver,
    anchor: Params | None = None,
    correction: Params | None = None,
    local_steps: np.ndarray | Sequence[int] | None = None,
    batched: bool = True,
) -> LocalResult:
    """Run ``solver.steps`` local steps on every client, all clients at once unless ``batched=False``.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture; its own parameters are not used or changed.
    params : Params
        Stacked starting weights, leading dimension = clients (not modified).
    x, y : torch.Tensor
        The whole dataset's features and targets; ``batches`` indexes into them.
    batches : Batches
        Minibatch plan with at least ``solver.steps`` steps for the same clients.
    solver : LocalSolver
        Local optimiser settings.
    anchor : Params, optional
        Stacked centre of the prox term; defaults to ``params``.
    correction : Params, optional
        Stacked per-client vector added to every step's direction.
    local_steps : array of int, optional
        Steps each client takes (at most ``solver.steps``); a client stops updating after its count.
    batched : bool
        Vectorise over clients (True) or loop over them (False); both give the same result up to
        floating-point rounding.

    Returns
    -------
    LocalResult
        Final weights and counts.

    Notes
    -----
    NOTE: tensors may live on a GPU (each step's batch is moved to ``x.device``), but only the CPU
    path is tested.
    """
    n_clients = next(iter(params.values())).shape[0]
    if batches.index.shape[1] != n_clients:
        raise ValueError(f"batches plan {batches.index.shape[1]} clients but params stack {n_clients}")
    if batches.steps < solver.steps:
        raise ValueError(f"batches plan {batches.steps} steps but the solver runs {solver.steps}")
    steps = np.full(n_clients, solver.steps) if local_steps is None else np.asarray(local_steps, dtype=int)
    if steps.shape != (n_clients,) or np.any(steps < 0) or np.any(steps > solver.steps):
        raise ValueError(f"local_steps must be {n_clients} integers in [0, {solver.steps}], got {steps}")

    w = {name: t.detach().clone() for name, t in params.items()}
    anchor = params if anchor is None else anchor
    buffer = {name: torch.zeros_like(t) for name, t in w.items()} if solver.momentum else None
    active_samples = batches.weight.gt(0).sum(dim=2).numpy()  # (steps, clients)
    device = next(iter(params.values())).device
    last_loss = torch.full((n_clients,), float("nan"), device=device)

    for s in range(solver.steps):
        moving = torch.from_numpy(steps > s).to(device)
        if not bool(moving.any()):
            break
        idx = batches.index[s].to(x.device)
        # index_select on the flattened indices is several times faster than x[idx] on CPU.
        xb = x.index_select(0, idx.reshape(-1)).reshape(*idx.shape, *x.shape[1:])
        yb = y.index_select(0, idx.reshape(-1)).reshape(*idx.shape, *y.shape[1:])
        wb = batches.weight[s].to(x.device)
        grads, loss_values = client_gradients(model, w, xb, yb, wb, solver.loss, batched)
        last_loss = torch.where(moving, loss_values.to(last_loss.dtype), last_loss)
        if solver.sam_rho > 0:
            scale = solver.sam_rho / _client_norm(grads).clamp_min(1e-12)
            perturbed = {n: w[n] + _per_client(scale, g) * g for n, g in grads.items()}
            grads, _ = client_gradients(model, perturbed, xb, yb, wb, solver.loss, batched)

        direction = {}
        for name, g in grads.items():
            d = solver.grad_scale * g
            if correction is not None:
                d = d + correction[name]
            if solver.prox_mu:
                d = d + solver.prox_mu * (w[name] - anchor[name])
            if solver.weight_decay:
                d = d + solver.weight_decay * w[name]
            direction[name] = d
        if solver.clip_norm is not None:
            factor = (solver.clip_norm / _client_norm(direction).clamp_min(1e-12)).clamp(max=1.0)
            direction = {n: _per_client(factor, d) * d for n, d in direction.items()}

        everyone = bool(moving.all())
        for name, d in direction.items():
            mask = _per_client(moving, d)
            if buffer is not None:
                momentum = solver.momentum * buffer[name] + d
                buffer[name] = momentum if everyone else torch.where(mask, momentum, buffer[name])
                d = buffer[name]
            w[name] = w[name] - solver.lr * d if everyone else torch.where(mask, w[name] - solver.lr * d, w[name])

    counts = np.where(np.arange(solver.steps)[:, None] < steps[None, :], active_samples[: solver.steps], 0)
    sample_gradients = counts.sum(axis=0) * (2 if solver.sam_rho > 0 else 1)
    return LocalResult(w, steps, sample_gradients, last_loss)


def evaluate(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "cross_entropy",
    stacked: bool = False,
    chunk: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """Compute loss and accuracy of one model, or of every model in a stack, on the same data.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture.
    params : Params
        One model's parameters, or stacked parameters when ``stacked``.
    x, y : torch.Tensor
        Evaluation data.
    loss : str
        Key of :data:`LOSSES`.
    stacked : bool
        Whether ``params`` has a leading model dimension.
    chunk : int
        Samples per forward pass, to bound memory.

    Returns
    -------
    tuple of numpy.ndarray
        Mean loss and accuracy, each of shape ``(models,)`` (or ``()`` when not ``stacked``).
        Accuracy is NaN for the ``mse`` loss.
    """
    loss_fn = LOSSES[loss]

    def forward(p: Params, xb: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (xb,))

    run = vmap(forward, in_dims=(0, None)) if stacked else forward
    total_loss = 0.0
    correct = 0.0
    with torch.no_grad():
        for start in range(0, len(y), chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            out = run(params, xb)
            if stacked:
                per = torch.stack([loss_fn(o, yb) for o in out])
                total_loss = total_loss + per.sum(dim=1)
                if loss == "cross_entropy":
                    correct = correct + (out.argmax(dim=-1) == yb).sum(dim=1).to(per.dtype)
            else:
                total_loss = total_loss + loss_fn(out, yb).sum()
                if loss == "cross_entropy":
                    correct = correct + (out.argmax(dim=-1) == yb).sum()
    mean_loss = np.asarray(torch.as_tensor(total_loss).cpu().numpy() / len(y), dtype=float)
    if loss != "cross_entropy":
        return mean_loss, np.full(mean_loss.shape, np.nan)
    return mean_loss, np.asarray(torch.as_tensor(correct).cpu().numpy() / len(y), dtype=float)
