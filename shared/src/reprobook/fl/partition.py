"""Split a dataset's sample indices over federated clients.

Every partition function returns a list with one sorted ``int64`` index array per client. Together the
arrays contain every sample index exactly once, so no sample is dropped or duplicated.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

Partition = list[np.ndarray]


def _check_counts(n_samples: int, n_clients: int) -> None:
    if n_clients < 1:
        raise ValueError(f"n_clients must be at least 1, got {n_clients}")
    if n_samples < n_clients:
        raise ValueError(f"cannot give each of {n_clients} clients a sample from only {n_samples} samples")


def iid_partition(n_samples: int, n_clients: int, rng: np.random.Generator) -> Partition:
    """Shuffle the indices and cut them into ``n_clients`` parts whose sizes differ by at most one.

    Parameters
    ----------
    n_samples : int
        Number of samples in the dataset.
    n_clients : int
        Number of clients.
    rng : numpy.random.Generator
        Source of the shuffle.

    Returns
    -------
    list of numpy.ndarray
        One sorted index array per client.
    """
    _check_counts(n_samples, n_clients)
    order = rng.permutation(n_samples)
    return [np.sort(part).astype(np.int64) for part in np.array_split(order, n_clients)]


def dirichlet_partition(
    labels: np.ndarray,
    n_clients: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 1,
    max_tries: int = 1000,
) -> Partition:
    """Split by label skew: each class is shared among clients in Dirichlet(alpha) proportions.

    For every class ``c`` a vector ``q_c ~ Dirichlet(alpha * 1_n)`` is drawn and the shuffled samples of
    class ``c`` are cut in the proportions ``q_c``. Small ``alpha`` gives clients that hold few classes;
    large ``alpha`` approaches an IID split. The draw is repeated until every client has at least
    ``min_size`` samples.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer class label of every sample, shape ``(n_samples,)``.
    n_clients : int
        Number of clients.
    alpha : float
        Dirichlet concentration, positive.
    rng : numpy.random.Generator
        Source of the proportions and shuffles.
    min_size : int
        Minimum number of samples per client.
    max_tries : int
        Number of redraws before giving up.

    Returns
    -------
    list of numpy.ndarray
        One sorted index array per client.

    Raises
    ------
    ValueError
        If ``alpha`` is not positive, or no draw in ``max_tries`` gave every client ``min_size`` samples.
    """
    labels = np.asarray(labels)
    _check_counts(len(labels), n_clients)
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if min_size * n_clients > len(labels):
        raise ValueError(f"min_size={min_size} times n_clients={n_clients} exceeds the {len(labels)} samples")
    classes = np.unique(labels)
    for attempt in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for c in classes:
            members = rng.permutation(np.flatnonzero(labels == c))
            proportions = rng.dirichlet(np.full(n_clients, alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(int)
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].append(chunk)
        result = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(len(p) for p in result) >= min_size:
            if attempt:
                logger.debug("dirichlet_partition needed %d redraws to reach min_size=%d", attempt, min_size)
            return result
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) draw in {max_tries} tries gave all {n_clients} clients "
        f"{min_size} samples; lower min_size or n_clients, or raise alpha"
    )


def shard_partition(labels: np.ndarray, n_clients: int, shards_per_client: int, rng: np.random.Generator) -> Partition:
    """Sort samples by label, cut them into equal shards and deal each client ``shards_per_client`` shards.

    This is the pathological non-IID split of McMahan et al. (2017): with two shards per client most
    clients see only two classes.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer class label of every sample.
    n_clients : int
        Number of clients.
    shards_per_client : int
        Shards dealt to each client.
    rng : numpy.random.Generator
        Source of the tie-breaking order within a class and of the dealing.

    Returns
    -------
    list of numpy.ndarray
        One sorted index array per client.
    """
    labels = np.asarray(labels)
    n_shards = n_clients * shards_per_client
    _check_counts(len(labels), n_shards)
    # Shuffle first so that the stable sort orders by label but picks random samples within each label.
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    shards = np.array_split(by_label, n_shards)
    dealt = rng.permutation(n_shards).reshape(n_clients, shards_per_client)
    return [np.sort(np.concatenate([shards[s] for s in row])).astype(np.int64) for row in dealt]


def quantity_skew_partition(
    n_samples: int, n_clients: int, alpha: float, rng: np.random.Generator, min_size: int = 1
) -> Partition:
    """Split IID in label but with client sizes in Dirichlet(alpha) proportions.

    Each client first gets ``min_size`` samples, and the rest are shared in proportions
    ``q ~ Dirichlet(alpha * 1_n)``; smaller ``alpha`` gives more unequal sizes.

    Parameters
    ----------
    n_samples : int
        Number of samples in the dataset.
    n_clients : int
        Number of clients.
    alpha : float
        Dirichlet concentration of the size proportions, positive.
    rng : numpy.random.Generator
        Source of the proportions and the shuffle.
    min_size : int
        Samples every client gets before the rest is shared.

    Returns
    -------
    list of numpy.ndarray
        One sorted index array per client.
    """
    _check_counts(n_samples, n_clients)
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if min_size * n_clients > n_samples:
        raise ValueError(f"min_size={min_size} times n_clients={n_clients} exceeds the {n_samples} samples")
    rest = n_samples - min_size * n_clients
    extra = rng.multinomial(rest, rng.dirichlet(np.full(n_clients, alpha)))
    sizes = extra + min_size
    order = rng.permutation(n_samples)
    return [np.sort(part).astype(np.int64) for part in np.split(order, np.cumsum(sizes)[:-1])]


def label_counts(labels: np.ndarray, partition: Partition, n_classes: int | None = None) -> np.ndarray:
    """Count each client's samples per class.

    Returns
    -------
    numpy.ndarray
        Integer matrix of shape ``(n_clients, n_classes)``.
    """
    labels = np.asarray(labels)
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    return np.stack([np.bincount(labels[part], minlength=n_classes) for part in partition])


def label_skew(labels: np.ndarray, partition: Partition, n_classes: int | None = None) -> float:
    """Measure label skew as the sample-weighted mean total-variation distance to the global label mix.

    The value is 0 when every client has the global class proportions and approaches 1 when each
    client has a single class of a many-class problem.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer class label of every sample.
    partition : list of numpy.ndarray
        Index array per client.
    n_classes : int, optional
        Number of classes; defaults to ``max(labels) + 1``.

    Returns
    -------
    float
        ``sum_i (n_i / n) * 0.5 * ||p_i - p||_1`` with ``p_i`` client ``i``'s label distribution.
    """
    counts = label_counts(labels, partition, n_classes).astype(float)
    sizes = counts.sum(axis=1)
    nonempty = sizes > 0
    client_mix = counts[nonempty] / sizes[nonempty, None]
    global_mix = counts.sum(axis=0) / counts.sum()
    distances = 0.5 * np.abs(client_mix - global_mix).sum(axis=1)
    return float(np.average(distances, weights=sizes[nonempty]))
