"""Straight-line arithmetic programs, their evolution, and the polynomial baselines.

A program is a list of binary instructions over ``+ - * /``. Each operand is the input
``x``, a fitted constant, or the result of an earlier instruction, and the last
instruction is the output. The cost of a program is its number of instructions, so a
multiplication by a constant costs one operation, the same as in a Horner evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

OPS = ("+", "-", "*", "/")

# Operand kinds: the input x, a constant slot, the result of an earlier instruction.
X, CONST, VAR = 0, 1, 2


@dataclass
class Program:
    """A straight-line program: instructions ``(op, left, right)`` with operands ``(kind, value)``.

    For a ``CONST`` operand the value is the constant itself, for a ``VAR`` operand the
    index of an earlier instruction, for ``X`` it is unused.
    """

    instructions: list[tuple[str, tuple[int, float], tuple[int, float]]] = field(default_factory=list)

    @property
    def cost(self) -> int:
        return len(self.instructions)

    def constants(self) -> np.ndarray:
        """Return the constants in operand order."""
        return np.array([v for _, *operands in self.instructions for k, v in operands if k == CONST], dtype=float)

    def with_constants(self, values: np.ndarray) -> Program:
        """Return a copy whose constant slots hold ``values`` (operand order)."""
        it = iter(values)
        new = []
        for op, *operands in self.instructions:
            left, right = ((k, float(next(it))) if k == CONST else (k, v) for k, v in operands)
            new.append((op, left, right))
        return Program(new)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        values: list[np.ndarray] = []

        def fetch(operand: tuple[int, float]) -> np.ndarray | float:
            kind, value = operand
            if kind == X:
                return x
            if kind == CONST:
                return value
            return values[int(value)]

        with np.errstate(all="ignore"):
            for op, left, right in self.instructions:
                a, b = fetch(left), fetch(right)
                if op == "+":
                    values.append(a + b)
                elif op == "-":
                    values.append(a - b)
                elif op == "*":
                    values.append(a * b)
                else:
                    values.append(a / b)
        return np.broadcast_to(values[-1], x.shape)

    def __str__(self) -> str:
        def name(operand: tuple[int, float]) -> str:
            kind, value = operand
            if kind == X:
                return "x"
            if kind == CONST:
                return f"{value:.10g}"
            return f"v{int(value)}"

        return "; ".join(f"v{i} = {name(a)} {op} {name(b)}" for i, (op, a, b) in enumerate(self.instructions))


def prune(program: Program) -> Program:
    """Remove the instructions the output does not depend on and renumber the rest."""
    n = len(program.instructions)
    used = [False] * n
    used[-1] = True
    for i in range(n - 1, -1, -1):
        if used[i]:
            for kind, value in program.instructions[i][1:]:
                if kind == VAR:
                    used[int(value)] = True
    index = {old: new for new, old in enumerate(i for i in range(n) if used[i])}
    kept = []
    for i, (op, *operands) in enumerate(program.instructions):
        if used[i]:
            left, right = ((k, float(index[int(v)])) if k == VAR else (k, v) for k, v in operands)
            kept.append((op, left, right))
    return Program(kept)


def _random_operand(rng: np.random.Generator, position: int) -> tuple[int, float]:
    """Draw x, a new constant, or the result of one of the first ``position`` instructions."""
    choices = [X, CONST] + ([VAR] if position > 0 else [])
    kind = choices[rng.integers(len(choices))]
    if kind == CONST:
        return (CONST, float(rng.normal()))
    if kind == VAR:
        return (VAR, float(rng.integers(position)))
    return (X, 0.0)


def mutate(program: Program, rng: np.random.Generator, max_cost: int) -> Program:
    """Apply one random mutation: insert, remove, rewire an operand or change an operator.

    The child inherits every constant of the parent that it keeps, so constant fitting
    starts from the parent's optimum. Dead code is pruned afterwards.
    """
    instructions = list(program.instructions)
    n = len(instructions)
    moves = ["rewire", "op"] + (["insert"] if n < max_cost else []) + (["remove"] if n > 1 else [])
    move = moves[rng.integers(len(moves))]

    if move == "insert":
        position = int(rng.integers(n + 1))
        if position == n:
            # A new output that consumes the old one.
            new = (OPS[rng.integers(4)], (VAR, float(n - 1)), _random_operand(rng, n))
            if rng.random() < 0.5:
                new = (new[0], new[2], new[1])
            instructions.append(new)
        else:
            new = (OPS[rng.integers(4)], _random_operand(rng, position), _random_operand(rng, position))
            shifted = []
            for op, *operands in instructions[position:]:
                left, right = ((k, v + 1) if k == VAR and v >= position else (k, v) for k, v in operands)
                shifted.append((op, left, right))
            # Rewire one operand of a later instruction to read the new value.
            target = int(rng.integers(len(shifted)))
            op, left, right = shifted[target]
            if rng.random() < 0.5:
                left = (VAR, float(position))
            else:
                right = (VAR, float(position))
            shifted[target] = (op, left, right)
            instructions = instructions[:position] + [new] + shifted
    elif move == "remove":
        position = int(rng.integers(n - 1))
        replacement = instructions[position][1 + int(rng.integers(2))]
        rest = []
        for op, *operands in instructions[position + 1 :]:
            new_operands = []
            for k, v in operands:
                if k == VAR and v == position:
                    new_operands.append(replacement)
                elif k == VAR and v > position:
                    new_operands.append((k, v - 1))
                else:
                    new_operands.append((k, v))
            rest.append((op, *new_operands))
        instructions = instructions[:position] + rest
    elif move == "rewire":
        position = int(rng.integers(n))
        op, left, right = instructions[position]
        if rng.random() < 0.5:
            left = _random_operand(rng, position)
        else:
            right = _random_operand(rng, position)
        instructions[position] = (op, left, right)
    else:
        position = int(rng.integers(n))
        op, left, right = instructions[position]
        instructions[position] = (OPS[rng.integers(4)], left, right)
    # An instruction on two constants is a constant that costs an operation: read x instead.
    instructions = [
        (op, left, (X, 0.0)) if left[0] == CONST and right[0] == CONST else (op, left, right)
        for op, left, right in instructions
    ]
    return prune(Program(instructions))


@dataclass
class Target:
    """A function to approximate on ``[low, high]`` and the error metric."""

    name: str
    function: Callable[[np.ndarray], np.ndarray]
    low: float
    high: float
    relative: bool  # max relative error if true, max absolute error otherwise

    def errors(self, values: np.ndarray, x: np.ndarray) -> np.ndarray:
        truth = self.function(x)
        with np.errstate(all="ignore"):
            error = values - truth
            return error / truth if self.relative else error

    def max_error(self, approximation: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> float:
        """Return the maximum error on ``x``; NaN or infinity counts as infinite error."""
        error = np.abs(self.errors(approximation(x), x))
        return float(np.max(error)) if np.all(np.isfinite(error)) else math.inf


def _slots(program: Program) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
    """Replace each constant operand by the index of its slot in ``program.constants()``."""
    compiled, slot = [], 0
    for op, *operands in program.instructions:
        refs = []
        for kind, value in operands:
            if kind == CONST:
                refs.append((CONST, slot))
                slot += 1
            else:
                refs.append((kind, int(value)))
        compiled.append((op, refs[0], refs[1]))
    return compiled


def evaluate_with_jacobian(program: Program, constants: np.ndarray,
                           x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate the program and its derivatives with respect to its constants by forward mode.

    Returns the values, shape ``(n,)``, and the Jacobian, shape ``(n, number of constants)``.
    """
    n, k = x.size, constants.size
    zero = np.zeros((n, k))
    values: list[tuple[np.ndarray, np.ndarray]] = []

    def fetch(ref: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        kind, index = ref
        if kind == X:
            return x, zero
        if kind == CONST:
            unit = np.zeros((n, k))
            unit[:, index] = 1.0
            return np.full(n, constants[index]), unit
        return values[index]

    with np.errstate(all="ignore"):
        for op, left, right in _slots(program):
            (a, da), (b, db) = fetch(left), fetch(right)
            if op == "+":
                values.append((a + b, da + db))
            elif op == "-":
                values.append((a - b, da - db))
            elif op == "*":
                values.append((a * b, a[:, None] * db + b[:, None] * da))
            else:
                quotient = a / b
                values.append((quotient, (da - quotient[:, None] * db) / b[:, None]))
    return values[-1]


def fit_constants(program: Program, target: Target, x: np.ndarray, lawson_rounds: int = 0,
                  max_nfev: int = 30) -> tuple[Program, float]:
    """Fit the constants of ``program`` and return the fitted program and its max error on ``x``.

    Levenberg-Marquardt on the pointwise errors (least squares, exact Jacobian by forward
    mode) starts from the current constants. Each Lawson round then multiplies the weights
    by the absolute errors and refits, which moves the least-squares solution toward the
    minimax one. The function returns the program with the lowest max error seen.
    """
    c0 = program.constants()
    if c0.size == 0:
        return program, target.max_error(program, x)

    truth = target.function(x)
    scale = 1.0 / truth if target.relative else np.ones_like(x)
    weights = np.ones_like(x)

    def residual(c: np.ndarray) -> np.ndarray:
        value, _ = evaluate_with_jacobian(program, c, x)
        r = (value - truth) * scale * np.sqrt(weights)
        # Clipping keeps overflowing programs from overflowing the solver's own sums.
        return np.clip(np.where(np.isfinite(r), r, 1e6), -1e6, 1e6)

    def jacobian(c: np.ndarray) -> np.ndarray:
        _, jac = evaluate_with_jacobian(program, c, x)
        jac = jac * (scale * np.sqrt(weights))[:, None]
        return np.clip(np.where(np.isfinite(jac), jac, 0.0), -1e12, 1e12)

    best, best_error = program, target.max_error(program, x)
    c = c0
    for _ in range(1 + lawson_rounds):
        # Levenberg-Marquardt needs at least as many points as constants, so fall back to a trust region.
        method = "lm" if x.size >= c.size else "trf"
        c = least_squares(residual, c, jac=jacobian, method=method, max_nfev=max_nfev * (c.size + 1)).x
        candidate = program.with_constants(c)
        error = target.max_error(candidate, x)
        if error < best_error:
            best, best_error = candidate, error
        pointwise = np.abs(target.errors(candidate(x), x))
        if not np.all(np.isfinite(pointwise)):
            break
        weights = weights * pointwise
        weights = weights / weights.sum() * x.size
    return best, best_error


@dataclass
class EvolutionResult:
    best: Program
    best_error: float
    history: np.ndarray  # best training error after each child


def regularized_evolution(target: Target, x_train: np.ndarray, max_cost: int, population_size: int,
                          tournament_size: int, n_children: int, rng: np.random.Generator,
                          n_polish: int = 5, lawson_rounds: int = 6) -> EvolutionResult:
    """Run regularized (ageing) evolution from the one-instruction program ``x * c``.

    Each step samples ``tournament_size`` members, mutates the one with the lowest max
    error, fits the child's constants by least squares and replaces the oldest member.
    At the end the ``n_polish`` best distinct programs ever seen get Lawson rounds toward
    minimax constants, and the best of them is returned.
    """
    seed_program = Program([("*", (X, 0.0), (CONST, 1.0))])
    population: list[tuple[Program, float]] = []
    for _ in range(population_size):
        child, error = fit_constants(mutate(seed_program, rng, max_cost), target, x_train)
        population.append((child, error))

    seen: dict[str, tuple[Program, float]] = {}
    history = np.empty(n_children)
    best_error = min(e for _, e in population)
    for step in range(n_children):
        contenders = rng.choice(len(population), size=tournament_size, replace=False)
        parent = min((population[i] for i in contenders), key=lambda item: item[1])[0]
        child, error = fit_constants(mutate(parent, rng, max_cost), target, x_train)
        population.pop(0)
        population.append((child, error))
        key = _structure(child)
        if key not in seen or error < seen[key][1]:
            seen[key] = (child, error)
        best_error = min(best_error, error)
        history[step] = best_error

    finalists = sorted(list(seen.values()) + population, key=lambda item: item[1])[:n_polish]
    polished = [fit_constants(p, target, x_train, lawson_rounds=lawson_rounds) for p, _ in finalists]
    best, best_polished = min(polished, key=lambda item: item[1])
    return EvolutionResult(best, best_polished, history)


def _structure(program: Program) -> str:
    """Return a key for the program's structure with constants masked."""
    return str(program.with_constants(np.zeros(program.constants().size)))


def horner_program(coefficients: np.ndarray) -> Program:
    """Build the Horner program of a monomial polynomial (2 * degree operations)."""
    c = np.asarray(coefficients, dtype=float)
    degree = c.size - 1
    instructions = [("*", (X, 0.0), (CONST, float(c[degree])))]
    for k in range(degree - 1, -1, -1):
        instructions.append(("+", (VAR, float(len(instructions) - 1)), (CONST, float(c[k]))))
        if k > 0:
            instructions.append(("*", (VAR, float(len(instructions) - 1)), (X, 0.0)))
    return Program(instructions)


def taylor_coefficients(derivatives: Callable[[int], float], center: float, degree: int) -> np.ndarray:
    """Return the monomial coefficients of the Taylor polynomial about ``center``.

    ``derivatives(k)`` is the k-th derivative of the target at ``center``.
    """
    shifted = np.array([derivatives(k) / math.factorial(k) for k in range(degree + 1)])
    return np.polynomial.polynomial.Polynomial(shifted)(np.polynomial.polynomial.Polynomial([-center, 1.0])).coef


@dataclass
class RemezResult:
    coefficients: np.ndarray  # monomial coefficients, lowest degree first
    levelled_error: float  # |E| of the last reference
    reference: np.ndarray  # the n + 2 alternation points
    reference_errors: np.ndarray  # the weighted errors there
    iterations: int


def remez(target: Target, degree: int, n_grid: int = 20_001, tol: float = 1e-8,
          max_iter: int = 50) -> RemezResult:
    """Compute the minimax polynomial of ``degree`` by the Remez exchange algorithm.

    The error is relative or absolute as ``target.relative`` selects. Each step solves
    ``p(x_i) - f(x_i) = (-1)^i E w(x_i)`` on the reference (``w = f`` for relative
    error, ``w = 1`` for absolute), then takes as new reference one extremum of the
    error per run of constant sign on a dense grid, keeping ``degree + 2`` alternating
    points that include the global maximum. It stops when the maximum error exceeds
    ``|E|`` by less than ``tol`` relatively.
    """
    low, high = target.low, target.high
    grid = np.linspace(low, high, n_grid)
    n = degree + 2
    reference = 0.5 * (low + high) - 0.5 * (high - low) * np.cos(np.pi * np.arange(n) / (n - 1))

    def to_unit(x: np.ndarray) -> np.ndarray:
        return (2 * x - low - high) / (high - low)

    iterations = 0
    for _ in range(max_iter):
        iterations += 1
        f_ref = target.function(reference)
        weight = np.abs(f_ref) if target.relative else np.ones(n)
        basis = np.polynomial.chebyshev.chebvander(to_unit(reference), degree)
        system = np.column_stack([basis, -((-1.0) ** np.arange(n)) * weight])
        solution = np.linalg.solve(system, f_ref)
        cheb, levelled = solution[:-1], abs(solution[-1])
        error = target.errors(np.polynomial.chebyshev.chebval(to_unit(grid), cheb), grid)

        # One extremum per run of constant sign.
        signs = np.sign(error)
        breaks = np.flatnonzero(np.diff(signs) != 0) + 1
        runs = np.split(np.arange(n_grid), breaks)
        extrema = np.array([run[np.argmax(np.abs(error[run]))] for run in runs])
        while extrema.size > n:
            drop = 0 if abs(error[extrema[0]]) < abs(error[extrema[-1]]) else -1
            extrema = np.delete(extrema, drop)
        if extrema.size < n:
            break
        reference = grid[extrema]
        max_error = np.max(np.abs(error))
        if max_error - levelled <= tol * max_error:
            break

    monomial = np.polynomial.chebyshev.cheb2poly(cheb)
    # Re-express in x: substitute the affine map to [-1, 1].
    scale, shift = 2 / (high - low), -(low + high) / (high - low)
    coefficients = np.polynomial.polynomial.Polynomial(monomial)(np.polynomial.polynomial.Polynomial([shift, scale])).coef
    ref_errors = target.errors(np.polynomial.polynomial.polyval(reference, coefficients), reference)
    return RemezResult(coefficients, levelled, reference, ref_errors, iterations)
