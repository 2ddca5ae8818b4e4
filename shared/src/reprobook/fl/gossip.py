"""Communication graphs and mixing matrices for decentralised (gossip) learning.

Graphs are symmetric boolean adjacency matrices without self-loops. A mixing matrix ``W`` is applied
to stacked node parameters as ``x_i <- sum_j W_ij x_j`` (:func:`gossip_mix`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .models import Params

logger = logging.getLogger(__name__)


def ring_graph(n: int) -> np.ndarray:
    """Return the cycle on ``n >= 3`` nodes (each node linked to its two neighbours)."""
    if n < 3:
        raise ValueError(f"a ring needs at least 3 nodes, got {n}")
    adjacency = np.zeros((n, n), dtype=bool)
    nodes = np.arange(n)
    adjacency[nodes, (nodes + 1) % n] = True
    adjacency[(nodes + 1) % n, nodes] = True
    return adjacency


def complete_graph(n: int) -> np.ndarray:
    """Return the complete graph on ``n`` nodes."""
    return ~np.eye(n, dtype=bool)


def random_regular_graph(n: int, degree: int, rng: np.random.Generator, max_tries: int = 1000) -> np.ndarray:
    """Draw a connected simple ``degree``-regular graph by the pairing (configuration) model with rejection.

    Each try pairs ``n * degree`` half-edges at random and is rejected if it makes a self-loop, a
    repeated edge or a disconnected graph, so accepted graphs are uniform among connected simple
    regular graphs. Rejection is fast for the small degrees used in gossip experiments
    (acceptance is about ``exp(-(degree^2 - 1) / 4)``).

    Raises
    ------
    ValueError
        If ``n * degree`` is odd, ``degree >= n``, or no try in ``max_tries`` succeeds.
    """
    if not 1 <= degree < n:
        raise ValueError(f"need 1 <= degree < n, got degree={degree}, n={n}")
    if (n * degree) % 2:
        raise ValueError(f"n * degree must be even, got n={n}, degree={degree}")
    stubs = np.repeat(np.arange(n), degree)
    for _ in range(max_tries):
        pairs = rng.permutation(stubs).reshape(-1, 2)
        if np.any(pairs[:, 0] == pairs[:, 1]):
            continue
        adjacency = np.zeros((n, n), dtype=int)
        np.add.at(adjacency, (pairs[:, 0], pairs[:, 1]), 1)
        adjacency = adjacency + adjacency.T
        if adjacency.max() > 1:
            continue
        graph = adjacency.astype(bool)
        if is_connected(graph):
            return graph
    raise ValueError(f"no connected simple {degree}-regular graph on {n} nodes found in {max_tries} tries")


def is_connected(adjacency: np.ndarray) -> bool:
    """Check connectivity by breadth-first search from node 0."""
    n = len(adjacency)
    seen = np.zeros(n, dtype=bool)
    seen[0] = True
    frontier = [0]
    while frontier:
        neighbours = np.flatnonzero(adjacency[frontier].any(axis=0) & ~seen)
        seen[neighbours] = True
        frontier = neighbours.tolist()
    return bool(seen.all())


def metropolis_weights(adjacency: np.ndarray) -> np.ndarray:
    """Return the Metropolis-Hastings mixing matrix ``W_ij = 1 / (1 + max(d_i, d_j))`` on edges.

    ``W`` is symmetric and doubly stochastic for any undirected graph, so repeated mixing on a
    connected graph converges to the exact average.
    """
    adjacency = np.asarray(adjacency, dtype=bool)
    degree = adjacency.sum(axis=1)
    weights = np.where(adjacency, 1.0 / (1.0 + np.maximum(degree[:, None], degree[None, :])), 0.0)
    weights[np.diag_indices_from(weights)] = 1.0 - weights.sum(axis=1)
    return weights


def neighbour_average_weights(adjacency: np.ndarray) -> np.ndarray:
    """Return the mixing matrix in which each node averages itself and its neighbours equally.

    ``W_ij = 1 / (d_i + 1)`` for ``j = i`` or a neighbour. It is row-stochastic; it is doubly stochastic
    (and so preserves the average) only when all degrees are equal, as on ring, regular and complete graphs.
    """
    adjacency = np.asarray(adjacency, dtype=bool)
    closed = adjacency | np.eye(len(adjacency), dtype=bool)
    return closed / closed.sum(axis=1, keepdims=True)


def spectral_gap(weights: np.ndarray) -> float:
    """Return ``1 - |lambda_2|`` of a symmetric mixing matrix; consensus error shrinks like ``|lambda_2|^t``."""
    eigenvalues = np.sort(np.abs(np.linalg.eigvalsh(weights)))[::-1]
    return float(1.0 - eigenvalues[1]) if len(eigenvalues) > 1 else 1.0


def gossip_mix(stacked: Params, weights: np.ndarray | torch.Tensor) -> Params:
    """Apply one synchronous gossip step ``x_i <- sum_j W_ij x_j`` to every parameter tensor."""
    first = next(iter(stacked.values()))
    w = torch.as_tensor(np.asarray(weights), dtype=first.dtype, device=first.device)
    if w.shape != (first.shape[0], first.shape[0]):
        raise ValueError(f"mixing matrix must be {first.shape[0]}x{first.shape[0]}, got {tuple(w.shape)}")
    return {name: torch.tensordot(w, t, dims=1) for name, t in stacked.items()}


def consensus_distance(stacked: Params) -> float:
    """Return ``sqrt(mean_i ||x_i - mean_j x_j||^2)`` over nodes, summed over all tensors."""
    total = 0.0
    for t in stacked.values():
        flat = t.reshape(t.shape[0], -1)
        total += float((flat - flat.mean(dim=0)).pow(2).sum(dim=1).mean())
    return total**0.5
