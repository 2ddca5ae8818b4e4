"""Fully connected ReLU networks in the NTK parameterisation, their tangent kernels and GD training.

The network follows Jacot, Gabriel and Hongler (2018), Section 2: every weight and bias is drawn
from N(0, 1), and layer l computes

    h^{l+1} = W^l a^l / sqrt(n_l) + beta * b^l,    a^0 = x,    a^l = relu(h^l),

with a scalar output f(x) = h^L(x).

The empirical NTK is computed layer by layer. The gradient of f with respect to W^l is the outer
product delta^{l+1} (a^l)^T / sqrt(n_l), where delta^{l+1} = df / dh^{l+1}, and the gradient with
respect to b^l is beta * delta^{l+1}. The kernel is therefore

    Theta(x, x') = sum_l <delta^{l+1}(x), delta^{l+1}(x')> * (<a^l(x), a^l(x')> / n_l + beta^2),

which never materialises a Jacobian with one column per parameter. :func:`jacobian_ntk` computes
the same kernel from per-example autograd gradients and serves as the reference on small networks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

Params = list[tuple[torch.Tensor, torch.Tensor]]


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """Return a torch generator seeded from a NumPy generator, so one seed drives both libraries."""
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def init_mlp(layer_widths: Sequence[int], generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Params:
    """Draw the weights and biases of an MLP with i.i.d. N(0, 1) entries.

    Parameters
    ----------
    layer_widths : sequence of int
        ``[n_0, n_1, ..., n_L]``: input dimension, hidden widths, output dimension.
    generator : torch.Generator
        Source of randomness.
    dtype : torch.dtype
        Floating type of the returned tensors. Samples are drawn in float32 and then cast: at
        width 4096 this took 0.75 s against about 1 s for float64 draws (torch 2.13, one CPU core).

    Returns
    -------
    list of (W, b)
        ``W`` has shape ``(n_{l+1}, n_l)`` and ``b`` has shape ``(n_{l+1},)``.
    """
    params = []
    for fan_in, fan_out in zip(layer_widths[:-1], layer_widths[1:], strict=True):
        weight = torch.randn(fan_out, fan_in, generator=generator).to(dtype)
        bias = torch.randn(fan_out, generator=generator).to(dtype)
        params.append((weight, bias))
    return params


def forward(
    params: Params, x: torch.Tensor, beta: float
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Evaluate the network and keep the activations and pre-activations of every layer.

    Returns
    -------
    f : torch.Tensor
        Outputs, shape ``(N,)``.
    activations : list of torch.Tensor
        ``a^0 = x, a^1, ..., a^{L-1}``, the inputs of each weight layer.
    preactivations : list of torch.Tensor
        ``h^1, ..., h^L``.
    """
    a = x
    activations, preactivations = [], []
    for layer, (weight, bias) in enumerate(params):
        activations.append(a)
        h = a @ weight.T / math.sqrt(weight.shape[1]) + beta * bias
        preactivations.append(h)
        if layer < len(params) - 1:
            a = torch.relu(h)
    return h[:, 0], activations, preactivations


def _backpropagated_deltas(params: Params, preactivations: list[torch.Tensor]) -> list[torch.Tensor]:
    """Return delta^{l+1} = df / dh^{l+1} for l = 0, ..., L - 1, each of shape ``(N, n_{l+1})``."""
    n_points = preactivations[-1].shape[0]
    delta = torch.ones((n_points, 1), dtype=preactivations[-1].dtype)
    deltas = [delta]
    for layer in range(len(params) - 1, 0, -1):
        weight = params[layer][0]
        delta = (delta @ weight / math.sqrt(weight.shape[1])) * (preactivations[layer - 1] > 0)
        deltas.append(delta)
    return deltas[::-1]


def layer_grams(
    params: Params, x1: torch.Tensor, x2: torch.Tensor, beta: float
) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Compute, for every weight layer l, the Gram matrices of delta^{l+1} and of a^l between x1 and x2.

    Entry l is ``(delta_gram, activation_gram, n_l)`` with ``delta_gram[i, j] =
    <delta^{l+1}(x1_i), delta^{l+1}(x2_j)>`` and ``activation_gram[i, j] = <a^l(x1_i), a^l(x2_j)>``.
    :func:`kernel_from_grams` combines them, so one forward and backward pass serves both
    parameterisations.
    """
    _, acts1, pre1 = forward(params, x1, beta)
    deltas1 = _backpropagated_deltas(params, pre1)
    if x2 is x1:
        acts2, deltas2 = acts1, deltas1
    else:
        _, acts2, pre2 = forward(params, x2, beta)
        deltas2 = _backpropagated_deltas(params, pre2)
    return [(d1 @ d2.T, a1 @ a2.T, a1.shape[1]) for a1, a2, d1, d2 in zip(acts1, acts2, deltas1, deltas2, strict=True)]


def kernel_from_grams(
    grams: list[tuple[torch.Tensor, torch.Tensor, int]], beta: float, parameterisation: str = "ntk"
) -> torch.Tensor:
    """Combine the per-layer Gram matrices of :func:`layer_grams` into a tangent kernel.

    Parameters
    ----------
    grams : list of (delta_gram, activation_gram, n_l)
        Output of :func:`layer_grams`.
    beta : float
        Bias scale.
    parameterisation : {"ntk", "standard"}
        ``"ntk"`` differentiates with respect to the N(0, 1) parameters of the NTK
        parameterisation. ``"standard"`` differentiates the same function with respect to the
        parameters of the standard (LeCun) parameterisation, W_std = W / sqrt(n_l) and
        b_std = beta * b, whose gradients are sqrt(n_l) and 1 / beta times larger, so each layer
        contributes <delta, delta'> (<a, a'> + 1).
    """
    if parameterisation not in ("ntk", "standard"):
        raise ValueError(f"parameterisation must be 'ntk' or 'standard', got {parameterisation!r}")
    kernel = torch.zeros_like(grams[0][0])
    for delta_gram, activation_gram, fan_in in grams:
        if parameterisation == "ntk":
            kernel += delta_gram * (activation_gram / fan_in + beta**2)
        else:
            kernel += delta_gram * (activation_gram + 1.0)
    return kernel


def empirical_ntk(params: Params, x1: torch.Tensor, x2: torch.Tensor, beta: float) -> torch.Tensor:
    """Compute the empirical NTK Theta(x1_i, x2_j) of the network at ``params``, shape ``(N1, N2)``."""
    return kernel_from_grams(layer_grams(params, x1, x2, beta), beta)


def jacobian_ntk(params: Params, x: torch.Tensor, beta: float) -> torch.Tensor:
    """Compute Theta(x_i, x_j) as J J^T, with row i of J the full gradient of f(x_i) from autograd.

    Memory grows with (number of inputs) x (number of parameters): use it on small networks only.
    """
    leaves = [tensor.detach().requires_grad_(True) for pair in params for tensor in pair]
    pairs = list(zip(leaves[0::2], leaves[1::2], strict=True))
    rows = []
    for point in x:
        output = forward(pairs, point[None, :], beta)[0][0]
        gradients = torch.autograd.grad(output, leaves)
        rows.append(torch.cat([gradient.reshape(-1) for gradient in gradients]))
    jacobian = torch.stack(rows)
    return jacobian @ jacobian.T


def relu_gaussian_moments(s11: np.ndarray, s22: np.ndarray, s12: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for centred Gaussians (u, v).

    The covariance of (u, v) is [[s11, s12], [s12, s22]]. With cos(phi) = s12 / sqrt(s11 s22),
    the arc-cosine kernels of order 1 and 0 give
    sqrt(s11 s22) (sin(phi) + (pi - phi) cos(phi)) / (2 pi) and (pi - phi) / (2 pi).
    """
    norm = np.sqrt(s11 * s22)
    cosine = np.clip(s12 / norm, -1.0, 1.0)
    angle = np.arccos(cosine)
    relu_moment = norm * (np.sin(angle) + (np.pi - angle) * cosine) / (2 * np.pi)
    step_moment = (np.pi - angle) / (2 * np.pi)
    return relu_moment, step_moment


def analytic_ntk(x1: np.ndarray, x2: np.ndarray, depth: int, beta: float) -> np.ndarray:
    """Compute the infinite-width NTK Theta_infinity^(depth) of the ReLU network in float64.

    The recursion of Theorem 1 of Jacot, Gabriel and Hongler (2018), with unit-variance weights:
    Sigma^1(x, x') = x.x' / n_0 + beta^2 and Theta^1 = Sigma^1; then for l = 1, ..., depth - 1,
    Sigma^{l+1} = E[relu(u) relu(v)] + beta^2 and Theta^{l+1} = Theta^l E[relu'(u) relu'(v)]
    + Sigma^{l+1}, where (u, v) is centred Gaussian with the covariance given by Sigma^l.

    Parameters
    ----------
    x1, x2 : numpy.ndarray
        Inputs of shapes ``(N1, n_0)`` and ``(N2, n_0)``.
    depth : int
        Number of weight layers L.
    beta : float
        Bias scale.

    Returns
    -------
    numpy.ndarray
        Kernel matrix of shape ``(N1, N2)``.
    """
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = np.asarray(x2, dtype=np.float64)
    n0 = x1.shape[1]
    s12 = x1 @ x2.T / n0 + beta**2
    s11 = (np.sum(x1 * x1, axis=1) / n0 + beta**2)[:, None]
    s22 = (np.sum(x2 * x2, axis=1) / n0 + beta**2)[None, :]
    theta = s12.copy()
    for _ in range(depth - 1):
        relu_moment, step_moment = relu_gaussian_moments(s11, s22, s12)
        diag11, _ = relu_gaussian_moments(s11, s11, s11)
        diag22, _ = relu_gaussian_moments(s22, s22, s22)
        s12 = relu_moment + beta**2
        s11, s22 = diag11 + beta**2, diag22 + beta**2
        theta = theta * step_moment + s12
    return theta


def train_gd(
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    steps: int,
    beta: float,
) -> tuple[Params, torch.Tensor]:
    """Train by full-batch gradient descent on C = mean_i (f(x_i) - y_i)^2 / 2.

    The cost averages over the training set, like the cost over the empirical input distribution
    in Section 5 of Jacot et al. (2018), so one step moves the outputs by about -lr Theta (f - y) / N.

    Returns
    -------
    params : list of (W, b)
        Parameters after ``steps`` steps (new tensors, the input is not modified).
    outputs : torch.Tensor
        Training outputs f_t(x_i) for t = 0, ..., steps, shape ``(steps + 1, N)``.
    """
    trained = [(w.clone().requires_grad_(True), b.clone().requires_grad_(True)) for w, b in params]
    flat = [tensor for pair in trained for tensor in pair]
    outputs = []
    for step in range(steps + 1):
        f = forward(trained, x, beta)[0]
        outputs.append(f.detach().clone())
        if step == steps:
            break
        cost = 0.5 * torch.mean((f - y) ** 2)
        gradients = torch.autograd.grad(cost, flat)
        with torch.no_grad():
            for tensor, gradient in zip(flat, gradients, strict=True):
                tensor -= lr * gradient
    return [(w.detach(), b.detach()) for w, b in trained], torch.stack(outputs)


def linear_prediction(theta: np.ndarray, f0: np.ndarray, y: np.ndarray, lr: float, steps: int) -> np.ndarray:
    """Return the training outputs of GD on the model linearised at initialisation.

    f_t = y + (I - lr Theta / N)^t (f_0 - y) for t = 0, ..., steps, shape ``(steps + 1, N)``.
    As lr -> 0 with t lr fixed this tends to the kernel gradient flow y + exp(-t lr Theta / N)(f_0 - y).
    """
    n_points = len(y)
    step_matrix = np.eye(n_points) - lr * theta / n_points
    residual = f0 - y
    outputs = [f0]
    for _ in range(steps):
        residual = step_matrix @ residual
        outputs.append(y + residual)
    return np.array(outputs)


def decay_rate(coefficient: np.ndarray, floor: float = 0.05) -> float:
    """Fit the exponential decay rate of |c_t| by least squares on log |c_t|.

    The fit uses the steps before |c_t| first falls below ``floor * |c_0|`` (and at least the
    first three), so that the noise floor reached by a fast mode does not bias its rate.
    """
    magnitude = np.abs(coefficient)
    below = np.flatnonzero(magnitude < floor * magnitude[0])
    stop = max(int(below[0]) if below.size else len(magnitude), 3)
    steps = np.arange(stop)
    slope = np.polyfit(steps, np.log(magnitude[:stop]), 1)[0]
    return float(-slope)
