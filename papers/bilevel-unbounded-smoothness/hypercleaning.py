"""Data hyper-cleaning with a recurrent classifier on the scikit-learn digits, as a bilevel problem.

Lower level: the weights w of an Elman RNN that reads an 8 x 8 digit row by row minimise
g(lambda, w) = mean_i sigmoid(lambda_i) CE(w; x_i, y_i) + (mu / 2) ||w||^2 over the training set,
whose labels are partly corrupted. Upper level: the per-example weights lambda minimise the
cross-entropy f(w*(lambda)) on a clean validation set.

Oracle calls are counted as in the bilevel literature. A stochastic gradient of g or f, a
Hessian-vector product grad_ww^2 g z and a Jacobian-vector product grad_lambda,w^2 g z each
count one call, even where one double-backward pass returns the last two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F

N_CLASSES = 10
ROW_LENGTH = 8


@dataclass
class CleaningTask:
    """Train (noisy), validation (clean) and test (clean) splits of the digits.

    Attributes
    ----------
    x_train, x_val, x_test : torch.Tensor
        Images as sequences, shape ``(n, 8, 8)``, pixel values scaled to [0, 1].
    y_train, y_val, y_test : torch.Tensor
        Labels; ``y_train`` contains the corrupted labels.
    corrupted : numpy.ndarray
        Boolean mask of the training examples whose label was replaced.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    corrupted: np.ndarray


def make_task(rng: np.random.Generator, n_train: int, n_val: int, label_noise: float) -> CleaningTask:
    """Split the 1797 digits at random and replace a ``label_noise`` share of training labels.

    A corrupted label is drawn uniformly from the nine wrong classes. The test split is every
    image outside the training and validation splits.
    """
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)
    labels = digits.target.copy()
    order = rng.permutation(len(labels))
    train, val, test = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    noisy = labels[train].copy()
    corrupted = rng.random(n_train) < label_noise
    noisy[corrupted] = (noisy[corrupted] + rng.integers(1, N_CLASSES, corrupted.sum())) % N_CLASSES
    as_long = lambda a: torch.tensor(a, dtype=torch.long)
    return CleaningTask(
        images[train], as_long(noisy), images[val], as_long(labels[val]),
        images[test], as_long(labels[test]), corrupted,
    )


@dataclass
class RNNShapes:
    """Layout of the flat parameter vector of the Elman RNN with a linear read-out."""

    hidden: int
    sizes: list[tuple[int, ...]] = field(init=False)

    def __post_init__(self) -> None:
        h = self.hidden
        self.sizes = [(h, ROW_LENGTH), (h, h), (h,), (N_CLASSES, h), (N_CLASSES,)]

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector."""
        return sum(int(np.prod(s)) for s in self.sizes)

    def init(self, generator: torch.Generator) -> torch.Tensor:
        """Draw uniform(-1/sqrt(hidden), 1/sqrt(hidden)) weights, as torch.nn.RNN does."""
        bound = 1.0 / np.sqrt(self.hidden)
        return (2 * torch.rand(self.n_params, generator=generator) - 1) * bound

    def logits(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Read each image row by row, h_t = tanh(W_x r_t + W_h h_{t-1} + b), and return V h_8 + c."""
        parts, start = [], 0
        for size in self.sizes:
            n = int(np.prod(size))
            parts.append(w[start : start + n].view(size))
            start += n
        W_x, W_h, b, V, c = parts
        h = torch.zeros(x.shape[0], self.hidden)
        for t in range(x.shape[1]):
            h = torch.tanh(x[:, t] @ W_x.T + h @ W_h.T + b)
        return h @ V.T + c


@dataclass
class Oracles:
    """Stochastic oracles of the hyper-cleaning problem on minibatches, with a call counter."""

    task: CleaningTask
    shapes: RNNShapes
    mu: float
    batch_size: int
    generator: torch.Generator
    calls: int = 0

    def _batch(self, n: int) -> torch.Tensor:
        return torch.randint(n, (self.batch_size,), generator=self.generator)

    def g(self, lam: torch.Tensor, w: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Return the weighted training loss plus (mu / 2) ||w||^2 on the examples idx."""
        losses = F.cross_entropy(self.shapes.logits(w, self.task.x_train[idx]), self.task.y_train[idx], reduction="none")
        return torch.mean(torch.sigmoid(lam[idx]) * losses) + 0.5 * self.mu * w.pow(2).sum()

    def grad_w_g(self, lam: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Return a stochastic gradient of g in w."""
        self.calls += 1
        w = w.detach().requires_grad_(True)
        return torch.autograd.grad(self.g(lam.detach(), w, self._batch(len(self.task.y_train))), w)[0]

    def grad_w_f(self, w: torch.Tensor) -> torch.Tensor:
        """Return a stochastic gradient of the validation loss in w."""
        self.calls += 1
        w = w.detach().requires_grad_(True)
        idx = self._batch(len(self.task.y_val))
        loss = F.cross_entropy(self.shapes.logits(w, self.task.x_val[idx]), self.task.y_val[idx])
        return torch.autograd.grad(loss, w)[0]

    def second_order(self, lam: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (grad_ww^2 g z, grad_lambda,w^2 g z) on one minibatch, counted as two calls."""
        self.calls += 2
        w = w.detach().requires_grad_(True)
        lam = lam.detach().requires_grad_(True)
        grad_w = torch.autograd.grad(self.g(lam, w, self._batch(len(self.task.y_train))), w, create_graph=True)[0]
        hvp, jvp = torch.autograd.grad(grad_w @ z, (w, lam))
        return hvp, jvp

    def hvp(self, lam: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Return a stochastic Hessian-vector product grad_ww^2 g z."""
        self.calls += 1
        w = w.detach().requires_grad_(True)
        grad_w = torch.autograd.grad(self.g(lam.detach(), w, self._batch(len(self.task.y_train))), w, create_graph=True)[0]
        return torch.autograd.grad(grad_w @ z, w)[0]

    def jvp(self, lam: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Return a stochastic Jacobian-vector product grad_lambda,w^2 g z."""
        self.calls += 1
        w = w.detach().requires_grad_(True)
        lam = lam.detach().requires_grad_(True)
        grad_w = torch.autograd.grad(self.g(lam, w, self._batch(len(self.task.y_train))), w, create_graph=True)[0]
        return torch.autograd.grad(grad_w @ z, lam)[0]

    def lower_sgd(self, lam: torch.Tensor, w: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
        """Run ``steps`` SGD steps on g(lambda, .) from w."""
        for _ in range(steps):
            w = w - lr * self.grad_w_g(lam, w)
        return w

    def polish(self, lam: torch.Tensor, w: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
        """Run ``steps`` SGD steps on g(lambda, .) at a step decaying linearly to 0, outside the budget.

        Every method gets the same polish before its test accuracy is read, so the accuracy reflects
        the weights lambda that the method found more than the noise of its last lower-level iterate.
        """
        for k in range(steps):
            w = w - lr * (1 - k / steps) * self.grad_w_g(lam, w)
        return w

    def test_accuracy(self, w: torch.Tensor) -> float:
        """Return the accuracy of the classifier w on the clean test split."""
        with torch.no_grad():
            predicted = self.shapes.logits(w, self.task.x_test).argmax(dim=1)
        return float((predicted == self.task.y_test).float().mean())


@dataclass
class CleaningResult:
    """Final lower-level weights and upper-level weights of one hyper-cleaning run."""

    w: torch.Tensor
    lam: torch.Tensor
    iterations: int


def run_bo_rep(
    oracles: Oracles, w0: torch.Tensor, budget: int, eta: float, beta: float, nu: float,
    inner_lr: float, period: int, inner_steps: int, refine_steps: int,
) -> CleaningResult:
    """Run BO-REP on the hyper-cleaning problem until ``budget`` oracle calls are spent.

    Refinement, periodic lower-level updates, one step on z per iteration and the normalised
    momentum step on lambda follow :func:`synthetic.bo_rep`; lambda starts at 0 (weights 1/2).
    """
    n_train = len(oracles.task.y_train)
    lam = torch.zeros(n_train)
    w = oracles.lower_sgd(lam, w0, refine_steps, inner_lr)
    z = torch.zeros_like(w)
    m = torch.zeros(n_train)
    t = 0
    while oracles.calls < budget:
        if t > 0 and t % period == 0:
            w = oracles.lower_sgd(lam, w, inner_steps, inner_lr)
        grad_f = oracles.grad_w_f(w)
        hvp, jvp = oracles.second_order(lam, w, z)
        h = -jvp
        z = z - nu * (hvp - grad_f)
        m = beta * m + (1 - beta) * h
        lam = lam - eta * m / m.norm().clamp_min(1e-12)
        t += 1
    return CleaningResult(w, lam, t)


def run_stocbio(
    oracles: Oracles, w0: torch.Tensor, budget: int, outer_lr: float, inner_lr: float,
    inner_steps: int, neumann_terms: int, neumann_lr: float,
) -> CleaningResult:
    """Run stocBiO: warm-started inner SGD, Neumann-series inverse-Hessian estimate, SGD on lambda.

    Per iteration: ``inner_steps`` SGD steps on w, z = neumann_lr sum_{q=0}^{Q} (I - neumann_lr H)^q
    grad_w f with Q = ``neumann_terms`` Hessian-vector products, h = -grad_lambda,w^2 g z and
    lambda <- lambda - outer_lr h.
    """
    lam = torch.zeros(len(oracles.task.y_train))
    w = w0
    t = 0
    while oracles.calls < budget:
        w = oracles.lower_sgd(lam, w, inner_steps, inner_lr)
        v = oracles.grad_w_f(w)
        total = v.clone()
        for _ in range(neumann_terms):
            v = v - neumann_lr * oracles.hvp(lam, w, v)
            total = total + v
        lam = lam + outer_lr * oracles.jvp(lam, w, neumann_lr * total)
        t += 1
    return CleaningResult(w, lam, t)


def run_ttsa(
    oracles: Oracles, w0: torch.Tensor, budget: int, outer_lr: float, inner_lr: float, nu: float,
) -> CleaningResult:
    """Run a single-loop two-timescale method (TTSA style) with plain SGD on lambda.

    Per iteration: one SGD step on w, one step on z as in BO-REP, and lambda <- lambda - outer_lr h.
    """
    lam = torch.zeros(len(oracles.task.y_train))
    w = w0
    z = torch.zeros_like(w)
    t = 0
    while oracles.calls < budget:
        w = oracles.lower_sgd(lam, w, 1, inner_lr)
        grad_f = oracles.grad_w_f(w)
        hvp, jvp = oracles.second_order(lam, w, z)
        z = z - nu * (hvp - grad_f)
        lam = lam + outer_lr * jvp
        t += 1
    return CleaningResult(w, lam, t)
