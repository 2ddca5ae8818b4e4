"""A small CNN, trained for several seeds at once as one grouped network."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import reprobook as rb

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, 0.1),
    "elu": F.elu,
    "selu": F.selu,
}


class EnsembleCNN(nn.Module):
    """``n_models`` independent CNNs conv(c0, c1) - max-pool - conv(c1, c2) - linear(10).

    Model k reads channel block k of the input, so one forward pass trains every model on its
    own mini-batch. Grouped convolutions keep the weights of different models apart.

    Parameters
    ----------
    n_models : int
        Number of independent networks (one per seed).
    channels : tuple of int
        Output channels ``(c1, c2)`` of the two 3x3 convolutions.
    activation : str
        Key of :data:`ACTIVATIONS`.
    image_shape : tuple of int
        ``(c0, height, width)`` of the input images; height and width even.
    """

    def __init__(
        self,
        n_models: int,
        channels: tuple[int, int] = (8, 16),
        activation: str = "relu",
        image_shape: tuple[int, int, int] = (1, 8, 8),
    ) -> None:
        super().__init__()
        c0, height, width = image_shape
        c1, c2 = channels
        self.n_models = n_models
        self.activation = ACTIVATIONS[activation]
        self.conv1 = nn.Conv2d(n_models * c0, n_models * c1, 3, padding=1, groups=n_models)
        self.conv2 = nn.Conv2d(n_models * c1, n_models * c2, 3, padding=1, groups=n_models)
        fan_in = c2 * (height // 2) * (width // 2)
        bound = 1 / np.sqrt(fan_in)
        self.weight = nn.Parameter(torch.empty(n_models, fan_in, 10).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_models, 10).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(n_models, batch, c0, height, width)`` to logits ``(n_models, batch, 10)``."""
        batch = x.shape[1]
        x = x.transpose(0, 1).reshape(batch, -1, *x.shape[-2:])
        h = F.max_pool2d(self.activation(self.conv1(x)), 2)
        h = self.activation(self.conv2(h))
        h = h.reshape(batch, self.n_models, -1).transpose(0, 1)
        return torch.baddbmm(self.bias[:, None, :], h, self.weight)


def train_ensemble(
    make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    seeds: list[int],
    batch_size: int,
    epochs: int,
    activation: str = "relu",
    channels: tuple[int, int] = (8, 16),
    decay_at: float = 0.8,
    device: str = "cpu",
) -> np.ndarray:
    """Train one CNN per seed with the same optimiser and return their test accuracies.

    The initial weights and the mini-batch order of model k come from ``rb.seed_everything(seeds[k])`` only, so two
    optimisers run with the same seeds start from the same weights and see the same batches.

    Parameters
    ----------
    make_optimizer : callable
        Builds the optimiser from a list of parameters.
    data : tuple of Tensor
        ``(x_train, y_train, x_test, y_test)``, images ``(n, c0, height, width)`` and integer labels.
    seeds : list of int
        One seed per model.
    batch_size, epochs : int
        Mini-batch size and number of passes over the training set.
    activation : str
        Key of :data:`ACTIVATIONS`.
    channels : tuple of int
        Output channels of the two convolutions.
    decay_at : float
        Fraction of the epochs after which the learning rate is divided by 10.
    device : str
        Torch device of the models and the data.

    Returns
    -------
    ndarray
        Test accuracy of each model after the last epoch, shape ``(len(seeds),)``.
    """
    x_train, y_train, x_test, y_test = (t.to(device) for t in data)
    n_models, n = len(seeds), len(y_train)
    shape = tuple(x_train.shape[1:])
    model = EnsembleCNN(n_models, channels, activation, shape)
    generators = []
    with torch.no_grad():
        for k, seed in enumerate(seeds):
            generators.append(rb.seed_everything(seed))
            single = dict(EnsembleCNN(1, channels, activation, shape).named_parameters())
            for name, p in model.named_parameters():
                q = single[name]
                if name.startswith("conv"):
                    p[k * q.shape[0] : (k + 1) * q.shape[0]] = q
                else:
                    p[k] = q[0]
    model.to(device)
    optimizer = make_optimizer(list(model.parameters()))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(decay_at * epochs)], 0.1)
    for _ in range(epochs):
        order = torch.from_numpy(np.stack([g.permutation(n) for g in generators])).to(device)
        for start in range(0, n, batch_size):
            idx = order[:, start : start + batch_size]
            logits = model(x_train[idx])
            loss = F.cross_entropy(logits.reshape(-1, 10), y_train[idx].reshape(-1)) * n_models
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    with torch.no_grad():
        logits = model(x_test.expand(n_models, *x_test.shape))
    return (logits.argmax(-1) == y_test).float().mean(1).cpu().numpy()
