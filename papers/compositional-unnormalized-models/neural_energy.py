"""MECO and noise-contrastive estimation for neural energy models on 2-D densities.

Every run (a density, a seed and a method) owns its own two-hidden-layer MLP, and all runs are
stored as one batched network whose weights carry a leading run axis, so a single Adam step
updates every run at once. Adam acts element-wise, so summing the runs' losses leaves each
run's update unchanged. The model is ``log p~(x) = f(x)``, the output of the MLP.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from sklearn.datasets import make_moons

DENSITIES = ("8 Gaussians", "ring", "two moons")


def sample_density(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw ``size`` points of a 2-D test density, shape ``(size, 2)``.

    ``8 Gaussians`` puts eight components of standard deviation 0.2 on the circle of radius 2,
    ``ring`` is the circle of radius 2 blurred radially by 0.15, and ``two moons`` is
    scikit-learn's ``make_moons`` with noise 0.1, centred and scaled by 1.5.
    """
    if name == "8 Gaussians":
        angle = rng.integers(0, 8, size) * np.pi / 4
        centres = 2.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return centres + 0.2 * rng.standard_normal((size, 2))
    if name == "ring":
        angle = rng.uniform(0.0, 2.0 * np.pi, size)
        radius = 2.0 + 0.15 * rng.standard_normal(size)
        return radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    if name == "two moons":
        points, _ = make_moons(size, noise=0.1, random_state=int(rng.integers(2**31)))
        return 1.5 * (points - np.array([0.5, 0.25]))
    raise ValueError(f"unknown density {name!r}; expected one of {DENSITIES}")


class GaussianNoise2D:
    """Gaussian noise ``q = N(mean, cov)`` per run, for batched sampling and log-density.

    Parameters
    ----------
    mean : torch.Tensor
        Means, shape ``(runs, 2)``.
    cov : torch.Tensor
        Covariances, shape ``(runs, 2, 2)``.
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        self.mean = mean
        self.chol = torch.linalg.cholesky(cov)
        self.log_norm = -torch.log(torch.diagonal(self.chol, dim1=1, dim2=2)).sum(1) - math.log(2.0 * math.pi)

    def sample(self, generator: torch.Generator, size: int) -> torch.Tensor:
        """Draw ``size`` points per run, shape ``(runs, size, 2)``."""
        eps = torch.randn(len(self.mean), size, 2, generator=generator, dtype=self.mean.dtype)
        return self.mean[:, None] + eps @ self.chol.transpose(1, 2)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """Evaluate ``log q(z)`` for ``z`` of shape ``(runs, size, 2)``."""
        white = torch.linalg.solve_triangular(self.chol, (z - self.mean[:, None]).transpose(1, 2), upper=False)
        return self.log_norm[:, None] - 0.5 * (white**2).sum(1)


class BatchedMLP(torch.nn.Module):
    """Independent MLPs ``2 -> width -> width -> 1`` with SiLU activations, one per run."""

    def __init__(self, runs: int, width: int, generator: torch.Generator) -> None:
        super().__init__()
        shapes = [(2, width), (width, width), (width, 1)]
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(runs, a, b, generator=generator) / math.sqrt(a)) for a, b in shapes
        )
        self.biases = torch.nn.ParameterList(torch.nn.Parameter(torch.zeros(runs, 1, b)) for _, b in shapes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``f(x)`` for ``x`` of shape ``(runs, size, 2)``, shape ``(runs, size)``."""
        h = x
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if k < len(self.weights) - 1:
                h = torch.nn.functional.silu(h)
        return h[..., 0]


def train(
    model: BatchedMLP,
    is_meco: torch.Tensor,
    data: torch.Tensor,
    noise: GaussianNoise2D,
    generator: torch.Generator,
    iterations: int,
    lr: float,
    beta: float,
    batch_data: int,
    batch_noise: int,
    checkpoints: list[int],
    evaluate: Callable[[], torch.Tensor],
) -> np.ndarray:
    """Train every run with Adam, MECO where ``is_meco`` is true and NCE elsewhere.

    MECO keeps ``log u``, the log of a moving average of the batch mean of the weights
    ``w_j = exp(f(z_j)) / q(z_j)``, and minimises the surrogate
    ``-mean_i f(x_i) + mean_j w_j / u`` with ``u`` held fixed, whose gradient is the chain rule
    through ``log u``. NCE learns an extra log-normaliser ``c`` per run and minimises the logistic
    loss of :func:`nce_loss` with ``nu = batch_noise / batch_data``. Both see the same batches.

    Parameters
    ----------
    model : BatchedMLP
        The energies, trained in place.
    is_meco : torch.Tensor
        Boolean mask over runs.
    data : torch.Tensor
        Training points per run, shape ``(runs, n, 2)``.
    noise : GaussianNoise2D
        Noise distribution per run.
    generator : torch.Generator
        Source of the mini-batches.
    iterations, lr, beta, batch_data, batch_noise
        Adam steps, Adam step size, MECO's moving-average weight and the batch sizes.
    checkpoints : list[int]
        Step counts (0 to ``iterations``) after which ``evaluate`` is called.
    evaluate : callable
        Returns one score per run, shape ``(runs,)``.

    Returns
    -------
    numpy.ndarray
        Scores at the checkpoints, shape ``(len(checkpoints), runs)``.
    """
    runs, n, _ = data.shape
    c = torch.nn.Parameter(torch.zeros(runs))
    optimiser = torch.optim.Adam([*model.parameters(), c], lr=lr)
    log_nu = math.log(batch_noise / batch_data)
    log_u = None
    rows = torch.arange(runs)[:, None]
    scores = [evaluate()] if 0 in checkpoints else []
    for t in range(1, iterations + 1):
        x = data[rows, torch.randint(0, n, (runs, batch_data), generator=generator)]
        z = noise.sample(generator, batch_noise)
        f_x, f_z = model(x), model(z)
        log_q_z = noise.log_density(z)
        log_w = f_z - log_q_z
        batch_log_mean = torch.logsumexp(log_w.detach(), 1) - math.log(batch_noise)
        if log_u is None:
            log_u = batch_log_mean
        else:
            log_u = torch.logaddexp(math.log(1.0 - beta) + log_u, math.log(beta) + batch_log_mean)
        # Each loss is built from its own runs only: a zero gradient through an overflowed
        # exp would still give NaN, so NCE runs must never enter MECO's weights.
        meco, other = is_meco, ~is_meco
        meco_loss = -f_x[meco].mean(1) + torch.exp(log_w[meco] - log_u[meco, None]).mean(1)
        log_ratio_x = f_x[other] + c[other, None] - noise.log_density(x)[other]
        nce = nce_loss(log_ratio_x, log_w[other] + c[other, None], log_nu)
        loss = meco_loss.sum() + nce.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if t in checkpoints:
            scores.append(evaluate())
    return torch.stack(scores).numpy()


def nce_loss(log_ratio_x: torch.Tensor, log_ratio_z: torch.Tensor, log_nu: float) -> torch.Tensor:
    """Return the NCE loss per run from ``log p_model - log q`` at data and noise points.

    With logits ``s = log_ratio - log nu`` the loss is
    ``-mean_x log sigmoid(s(x)) - nu mean_z log(1 - sigmoid(s(z)))``.
    """
    nu = math.exp(log_nu)
    s_x, s_z = log_ratio_x - log_nu, log_ratio_z - log_nu
    return -torch.nn.functional.logsigmoid(s_x).mean(1) - nu * torch.nn.functional.logsigmoid(-s_z).mean(1)


def grid_log_partition(
    log_density: Callable[[torch.Tensor], torch.Tensor], half_width: float, points: int
) -> torch.Tensor:
    """Compute ``log Z`` of ``exp(log_density)`` on the box ``[-half_width, half_width]^2`` by the midpoint rule.

    Parameters
    ----------
    log_density : callable
        Maps points of shape ``(size, 2)`` to unnormalised log-densities of shape ``(runs, size)``.
    half_width : float
        Half the side of the box.
    points : int
        Grid points per axis.

    Returns
    -------
    torch.Tensor
        ``log Z`` per run, shape ``(runs,)``.
    """
    step = 2.0 * half_width / points
    axis = -half_width + step * (torch.arange(points, dtype=torch.get_default_dtype()) + 0.5)
    with torch.no_grad():
        values = log_density(torch.cartesian_prod(axis, axis))
    return torch.logsumexp(values, 1) + 2.0 * math.log(step)


def held_out_nll(model: BatchedMLP, test: torch.Tensor, half_width: float, points: int) -> torch.Tensor:
    """Return the mean negative log-likelihood of ``test`` under ``exp(f)`` normalised on the box.

    Test points outside the box are moved to its edge; ``test`` has shape ``(runs, size, 2)``.
    """
    runs = len(test)
    log_z = grid_log_partition(lambda g: model(g.expand(runs, -1, -1)), half_width, points)
    with torch.no_grad():
        return log_z - model(test.clamp(-half_width, half_width)).mean(1)


def true_log_density(name: str, x: np.ndarray) -> np.ndarray | None:
    """Return the exact log-density of :func:`sample_density` at ``x`` (shape ``(size, 2)``), or None.

    The ring's density is that of its polar construction, ``N(r; 2, 0.15^2) / (2 pi r)``; the
    two moons have no closed form here and give None.
    """
    if name == "8 Gaussians":
        angle = np.arange(8) * np.pi / 4
        centres = 2.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        squared = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        log_components = -squared / (2 * 0.2**2) - np.log(2 * np.pi * 0.2**2)
        return np.logaddexp.reduce(log_components, axis=1) - np.log(8)
    if name == "ring":
        radius = np.linalg.norm(x, axis=1)
        log_radial = -0.5 * ((radius - 2.0) / 0.15) ** 2 - np.log(0.15 * np.sqrt(2 * np.pi))
        return log_radial - np.log(2 * np.pi * radius)
    return None
