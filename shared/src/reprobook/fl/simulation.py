"""A synchronous FedAvg-family driver built from the simulator's parts.

:func:`run_fedavg` covers FedAvg, FedProx (``solver.prox_mu``), FedSAM (``solver.sam_rho``), local
momentum, server learning rate / momentum / Adam (``server``) and any aggregation rule (``rule``).
Algorithms with per-client state (SCAFFOLD, FedDyn, FedSpeed, FedAU, ...) are short loops over the same
parts: :func:`~reprobook.fl.local.make_batches`, :func:`~reprobook.fl.local.train_local` with a
``correction``, and :class:`~reprobook.fl.server.ServerOptimizer`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .accounting import Accountant
from .datasets import Dataset
from .local import LocalSolver, make_batches, train_local
from .models import Params, num_bytes, replicate, stack
from .participation import AnarchicParticipation, Participation
from .server import AggregationRule, ServerOptimizer, fedavg_rule

logger = logging.getLogger(__name__)


def to_tensors(data: Dataset, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a dataset's features as ``dtype`` and its targets as ``int64`` (classes) or ``dtype`` (regression)."""
    x = torch.as_tensor(data.x, dtype=dtype)
    y = torch.as_tensor(data.y, dtype=torch.long if data.n_classes is not None else dtype)
    return x, y


@dataclass
class History:
    """Per-round records of a run.

    Attributes
    ----------
    rounds : list of int
        Rounds (1-based, after aggregation) at which ``metrics`` were evaluated.
    metrics : dict of str to list of float
        Values returned by the evaluation callback, one list per key.
    participants : list of numpy.ndarray
        Client ids that took part in each round.
    accountant : Accountant
        Cost totals at the end of the run.
    """

    rounds: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    participants: list[np.ndarray] = field(default_factory=list)
    accountant: Accountant = field(default_factory=Accountant)

    def log(self, round_index: int, values: dict[str, float]) -> None:
        """Append one evaluation."""
        self.rounds.append(round_index)
        for key, value in values.items():
            self.metrics.setdefault(key, []).append(float(value))


def run_fedavg(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    partition: Sequence[np.ndarray],
    solver: LocalSolver,
    participation: Participation,
    rounds: int,
    rng: np.random.Generator,
    server: ServerOptimizer | None = None,
    rule: AggregationRule | None = None,
    evaluate: Callable[[Params, int], dict[str, float]] | None = None,
    evaluate_every: int = 1,
    batched: bool = True,
) -> tuple[Params, History]:
    """Run synchronous federated rounds: sample clients, train locally, aggregate, update the server model.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture.
    params : Params
        Initial global parameters (unstacked; not modified).
    x, y : torch.Tensor
        All training data; ``partition`` indexes into it.
    partition : sequence of numpy.ndarray
        Each client's sample indices.
    solver : LocalSolver
        Local optimiser.
    participation : Participation
        Who takes part each round. With :class:`~reprobook.fl.participation.AnarchicParticipation`,
        each active client also runs its own drawn number of local steps (at most ``solver.steps``)
        from the global model of ``staleness`` rounds ago, and the rule receives its update added to the
        current model, ``x + (x_i - x_start_i)``.
    rounds : int
        Number of rounds.
    rng : numpy.random.Generator
        Source of participation draws and minibatches.
    server : ServerOptimizer, optional
        Defaults to ``ServerOptimizer(lr=1)``, i.e. the new model is the aggregate.
    rule : AggregationRule, optional
        Defaults to :func:`~reprobook.fl.server.fedavg_rule` with sample-count weights.
    evaluate : callable, optional
        ``evaluate(params, round) -> dict`` called before the first round (round 0) and every
        ``evaluate_every`` rounds.
    evaluate_every : int
        Evaluation interval in rounds; the last round is always evaluated.
    batched : bool
        Train the round's clients in one vectorised pass (True) or a loop (False).

    Returns
    -------
    tuple
        Final global parameters and the :class:`History`.
    """
    if participation.n_clients != len(partition):
        raise ValueError(f"participation has {participation.n_clients} clients, partition {len(partition)}")
    anarchic = isinstance(participation, AnarchicParticipation)
    if anarchic and participation.max_steps > solver.steps:
        raise ValueError(
            f"participation draws up to {participation.max_steps} local steps but solver.steps is {solver.steps}; "
            "raise solver.steps to at least max_steps"
        )
    server = ServerOptimizer() if server is None else server
    rule = fedavg_rule("samples") if rule is None else rule
    history = History()
    message = num_bytes(params)
    dtype = next(iter(params.values())).dtype
    global_params = {name: t.detach().clone() for name, t in params.items()}
    sizes = np.array([len(p) for p in partition])
    # Past global models, newest last, for clients that start from a stale model.
    past: deque[Params] = deque([global_params], maxlen=participation.max_staleness + 1 if anarchic else 1)
    if evaluate is not None:
        history.log(0, evaluate(global_params, 0))

    for r in range(1, rounds + 1):
        with history.accountant.timer():
            if anarchic:
                plan = participation.sample_plan(rng)
                ids = np.flatnonzero(plan.active)
                local_steps = plan.local_steps[ids]
                # Early rounds have fewer past models than max_staleness, so the oldest one is used instead.
                lags = np.minimum(plan.staleness[ids], len(past) - 1)
            else:
                ids = np.flatnonzero(participation.sample(rng))
                local_steps = None
                lags = np.zeros(len(ids), dtype=int)
            history.participants.append(ids)
            if len(ids) == 0:
                logger.debug("round %d: no client participated; the model is unchanged", r)
                history.accountant.record_round(0, message)
            else:
                batches = make_batches([partition[i] for i in ids], solver.steps, solver.batch_size, rng, dtype)
                if lags.any():
                    start = stack([past[-1 - lag] for lag in lags])
                else:
                    start = replicate(global_params, len(ids))
                result = train_local(model, start, x, y, batches, solver, local_steps=local_steps, batched=batched)
                client_models = result.params
                if lags.any():
                    # Stale clients' updates are applied to the current model: x + (x_i - x_start_i).
                    client_models = {n: global_params[n] + result.params[n] - start[n] for n in global_params}
                pseudo_gradient = rule(global_params, client_models, ids, sizes[ids])
                global_params = server.step(global_params, pseudo_gradient)
                past.append(global_params)
                history.accountant.record_round(
                    len(ids), message, int(result.steps.sum()), int(result.sample_gradients.sum())
                )
        if evaluate is not None and (r % evaluate_every == 0 or r == rounds):
            history.log(r, evaluate(global_params, r))
    return global_params, history
