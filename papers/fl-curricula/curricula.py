"""Ordered local training in FedAvg: difficulty scores, pacing, client ordering and a stacked simulator.

Many federated runs (arms x replicates) advance together: in each round the active clients of every
run are stacked into one :func:`reprobook.fl.train_local` call, then each run averages its own
segment. Runs share nothing but the computation, so each one is an independent FedAvg run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from reprobook import fl

ORDERINGS = ("vanilla", "curriculum", "anti", "random")


def expert_scores(x_expert: np.ndarray, y_expert: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Score every training example by the cross-entropy of an expert model fitted on a held-out split.

    Parameters
    ----------
    x_expert, y_expert : numpy.ndarray
        The expert's training split, disjoint from ``x`` and from the test set.
    x, y : numpy.ndarray
        Examples to score.

    Returns
    -------
    numpy.ndarray
        Per-example loss; a lower score marks an easier example.
    """
    expert = LogisticRegression(C=1.0, max_iter=300).fit(x_expert, y_expert)
    proba = expert.predict_proba(x)
    column = np.searchsorted(expert.classes_, y)
    return -np.log(np.clip(proba[np.arange(len(y)), column], 1e-12, None))


def pacing(round_index: int, rounds: int, start: float, end_fraction: float) -> float:
    """Return the linear pacing g(r) = min(1, a + (1 - a) r / (b R)): the share of data admitted in round r.

    Parameters
    ----------
    round_index : int
        Current round r, counted from 0.
    rounds : int
        Total rounds R.
    start : float
        Share a admitted in the first round.
    end_fraction : float
        Share b of the rounds after which all data is admitted.
    """
    return min(1.0, start + (1.0 - start) * round_index / (end_fraction * rounds))


def order_examples(
    partition: Sequence[np.ndarray], scores: np.ndarray, ordering: str, rng: np.random.Generator
) -> list[np.ndarray]:
    """Sort each client's sample indices for an ordering.

    ``curriculum`` sorts by increasing score (easy first), ``anti`` by decreasing score, ``random`` by
    one fixed random permutation per client, and ``vanilla`` keeps the partition's order (it is not paced).
    """
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
    out = []
    for ix in partition:
        if ordering == "curriculum":
            out.append(ix[np.argsort(scores[ix], kind="stable")])
        elif ordering == "anti":
            out.append(ix[np.argsort(-scores[ix], kind="stable")])
        elif ordering == "random":
            out.append(rng.permutation(ix))
        else:
            out.append(np.asarray(ix))
    return out


@dataclass
class Run:
    """One federated run of the stacked simulation.

    Attributes
    ----------
    label : str
        Arm name, copied to the results.
    examples : list of numpy.ndarray
        Each client's sample indices in training order.
    paced : bool
        Admit only the first g(r) share of each client's ordered data (False: all data every round).
    clients_per_round : int
        Clients sampled per round, without replacement.
    client_order : numpy.ndarray or None
        Clients from easiest to hardest for the ordered selection, or None for uniform sampling.
    params : fl.Params
        Initial global model (unstacked).
    rng : numpy.random.Generator
        Source of the run's client draws and minibatches.
    """

    label: str
    examples: list[np.ndarray]
    paced: bool
    clients_per_round: int
    client_order: np.ndarray | None
    params: fl.Params
    rng: np.random.Generator


def select_clients(run: Run, admitted_share: float) -> np.ndarray:
    """Draw the round's clients: uniformly from all, or from the easiest ``max(m, ceil(g n))`` when ordered."""
    n = len(run.examples)
    if run.client_order is None:
        pool = np.arange(n)
    else:
        size = max(run.clients_per_round, math.ceil(admitted_share * n))
        pool = run.client_order[:size]
    if run.clients_per_round >= len(pool):
        return np.sort(pool)
    return np.sort(run.rng.choice(pool, run.clients_per_round, replace=False))


def run_stacked_fedavg(
    model: nn.Module,
    runs: Sequence[Run],
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    solver: fl.LocalSolver,
    rounds: int,
    pacing_start: float,
    pacing_end_fraction: float,
    evaluate_every: int,
) -> tuple[np.ndarray, np.ndarray, fl.Params]:
    """Run every FedAvg run for ``rounds`` rounds, all active clients of all runs in one batched call.

    Each active client takes ``solver.steps`` minibatch steps on its admitted data, and each run's new
    model is the average of its clients' models weighted by their full local sample counts.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture shared by the runs.
    runs : sequence of Run
        The runs; their ``params`` are not modified.
    x, y : torch.Tensor
        Training data that the runs' ``examples`` index into.
    x_test, y_test : torch.Tensor
        Test data.
    solver : fl.LocalSolver
        Local optimiser.
    rounds : int
        Communication rounds R.
    pacing_start, pacing_end_fraction : float
        Pacing parameters a and b of :func:`pacing`.
    evaluate_every : int
        Test every this many rounds (the last round is always tested).

    Returns
    -------
    tuple
        The tested rounds, shape ``(k,)``, the test accuracy per run and tested round, shape
        ``(runs, k)``, and the final global models stacked over runs.
    """
    dtype = next(iter(runs[0].params.values())).dtype
    global_params = fl.stack([r.params for r in runs])
    tested, accuracy = [], []
    for r in range(rounds):
        share = pacing(r, rounds, pacing_start, pacing_end_fraction)
        segments, batch_parts, weights = [], [], []
        for run in runs:
            ids = select_clients(run, share)
            lists = []
            for c in ids:
                ix = run.examples[c]
                keep = max(1, math.ceil(share * len(ix))) if run.paced else len(ix)
                lists.append(ix[:keep])
            batch_parts.append(fl.make_batches(lists, solver.steps, solver.batch_size, run.rng, dtype))
            weights.append(np.array([len(run.examples[c]) for c in ids], dtype=float))
            segments.append(len(ids))
        batches = fl.Batches(
            torch.cat([b.index for b in batch_parts], dim=1), torch.cat([b.weight for b in batch_parts], dim=1)
        )
        owner = torch.from_numpy(np.repeat(np.arange(len(runs)), segments))
        start = fl.select(global_params, owner)
        local = fl.train_local(model, start, x, y, batches, solver).params
        global_params = aggregate(local, segments, weights)
        if (r + 1) % evaluate_every == 0 or r + 1 == rounds:
            _, acc = fl.evaluate(model, global_params, x_test, y_test, stacked=True)
            tested.append(r + 1)
            accuracy.append(acc)
    return np.array(tested), np.stack(accuracy, axis=1), global_params


def aggregate(local: fl.Params, segments: Sequence[int], weights: Sequence[np.ndarray]) -> fl.Params:
    """Average each run's consecutive block of client models with its sample-count weights."""
    bounds = np.concatenate([[0], np.cumsum(segments)])
    out: fl.Params = {}
    for name, t in local.items():
        blocks = []
        for k in range(len(segments)):
            w = torch.as_tensor(weights[k] / weights[k].sum(), dtype=t.dtype)
            block = t[bounds[k] : bounds[k + 1]]
            blocks.append(torch.tensordot(w, block, dims=1))
        out[name] = torch.stack(blocks)
    return out


def client_difficulty(partition: Sequence[np.ndarray], scores: np.ndarray) -> np.ndarray:
    """Return the clients sorted from easiest to hardest by their mean expert score."""
    return np.argsort([scores[ix].mean() for ix in partition], kind="stable")
