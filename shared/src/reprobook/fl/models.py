"""Small models and helpers for parameters stored as name-to-tensor dictionaries.

Federated code here keeps model weights outside the ``nn.Module`` as a ``dict[str, Tensor]`` (``Params``)
and runs the module with :func:`torch.func.functional_call`. A *stacked* ``Params`` has one extra leading
dimension that indexes clients, so all clients' weights sit in one tensor per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

Params = dict[str, torch.Tensor]


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Build a fully connected network; ``hidden=()`` gives a linear model (softmax or least-squares regression).

    Parameters
    ----------
    in_dim : int
        Input features.
    hidden : sequence of int
        Width of each hidden layer.
    out_dim : int
        Outputs (classes, or 1 for scalar regression).
    activation : type of torch.nn.Module
        Activation after each hidden layer.

    Returns
    -------
    torch.nn.Sequential
        The network, with PyTorch's default initialisation.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), activation()]
        width = size
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def get_params(model: nn.Module) -> Params:
    """Return a detached copy of the module's parameters."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def stack(params: Sequence[Params]) -> Params:
    """Stack per-client parameter dictionaries along a new leading client dimension."""
    if not params:
        raise ValueError("cannot stack an empty list of parameter dictionaries")
    return {name: torch.stack([p[name] for p in params]) for name in params[0]}


def unstack(stacked: Params) -> list[Params]:
    """Split stacked parameters into one dictionary per client."""
    n = next(iter(stacked.values())).shape[0]
    return [{name: t[i] for name, t in stacked.items()} for i in range(n)]


def replicate(params: Params, n: int) -> Params:
    """Return ``n`` stacked copies of one client's parameters (as new memory, safe to update in place)."""
    return {name: t.unsqueeze(0).repeat(n, *([1] * t.dim())) for name, t in params.items()}


def select(stacked: Params, clients: torch.Tensor | Sequence[int]) -> Params:
    """Return the stacked parameters of the given clients (indexing copies the data)."""
    index = torch.as_tensor(clients, dtype=torch.long)
    return {name: t[index] for name, t in stacked.items()}


def flatten(params: Params, stacked: bool = False) -> torch.Tensor:
    """Concatenate the parameters into one vector, or one row per client when ``stacked``."""
    if stacked:
        return torch.cat([t.reshape(t.shape[0], -1) for t in params.values()], dim=1)
    return torch.cat([t.reshape(-1) for t in params.values()])


def unflatten(vector: torch.Tensor, like: Params) -> Params:
    """Split a vector (or a client-by-parameter matrix) back into tensors shaped as in ``like`` (unstacked)."""
    out: Params = {}
    offset = 0
    lead = vector.shape[:-1]
    for name, t in like.items():
        size = t.numel()
        out[name] = vector[..., offset : offset + size].reshape(*lead, *t.shape)
        offset += size
    if offset != vector.shape[-1]:
        raise ValueError(f"vector has {vector.shape[-1]} entries but the parameters need {offset}")
    return out


def num_bytes(params: Params) -> int:
    """Return the size of one copy of the parameters in bytes (what one client sends or receives)."""
    return sum(t.numel() * t.element_size() for t in params.values())


def xavier_params(model: nn.Module, n: int, generator: torch.Generator) -> Params:
    """Draw ``n`` independent initialisations: Glorot-uniform weight matrices and zero biases.

    Parameters
    ----------
    model : torch.nn.Module
        Gives the parameter names and shapes.
    n : int
        Number of copies (clients or gossip nodes).
    generator : torch.Generator
        Source of the draws.

    Returns
    -------
    Params
        Stacked parameters with leading dimension ``n``.
    """
    out: Params = {}
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            fan_out, fan_in = p.shape[0], p[0].numel()
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            out[name] = (torch.rand((n, *p.shape), generator=generator, dtype=p.dtype) * 2 - 1) * bound
        else:
            out[name] = torch.zeros((n, *p.shape), dtype=p.dtype)
    return out
