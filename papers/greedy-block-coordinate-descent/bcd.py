"""Block coordinate descent with random, cyclic and greedy block selection.

Problems
    :class:`SmoothProblem` stores a smooth convex objective through its value, its gradient and
    a fixed matrix ``H`` with ``nabla^2 f(x) <= H`` for every ``x`` (``A^T A`` for least squares,
    ``A^T A / 4`` for logistic regression, ``Q`` for a quadratic). Generators re-create the
    synthetic data sets of the authors' code: the sparse design with badly scaled columns
    (data sets A and B), a label-propagation quadratic on a k-nearest-neighbour graph of two
    moons (data set E) and a lattice quadratic (data set D).

Solvers
    :func:`run_bcd` runs one selection rule, partition and update rule; :func:`run_forest_bcd`
    updates tree-structured blocks exactly by message passing (:func:`solve_forest`);
    :func:`run_nonnegative_lasso` runs the projected and two-metric projection updates on a
    non-negative L1-regularised least-squares problem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize, sparse

SELECTION_RULES = ("Random", "Cyclic", "Lipschitz", "GS", "GSD", "GSL", "GSQ")
UPDATE_RULES = ("Lb", "Hb")


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class SmoothProblem:
    """A smooth convex objective with a global curvature bound.

    Attributes
    ----------
    name : str
        Label of the problem in figures.
    value : callable
        ``f(x)``.
    gradient : callable
        ``nabla f(x)``.
    H : scipy.sparse.csr_matrix
        Symmetric positive semi-definite bound on the Hessian, ``nabla^2 f(x) <= H``.
    f_star : float
        Minimum (or infimum) of ``f``.
    """

    name: str
    value: Callable[[np.ndarray], float]
    gradient: Callable[[np.ndarray], np.ndarray]
    H: sparse.csr_matrix
    f_star: float

    @property
    def dimension(self) -> int:
        """Number of variables."""
        return self.H.shape[0]

    @property
    def coordinate_lipschitz(self) -> np.ndarray:
        """Lipschitz constants ``L_i = H_ii`` of the partial derivatives."""
        return self.H.diagonal()

    @property
    def diagonal_bound(self) -> np.ndarray:
        """Entries ``d_i = sum_j |H_ij|`` of a diagonal matrix ``D >= H`` (Gershgorin)."""
        return np.asarray(abs(self.H).sum(axis=1)).ravel()


def sparse_design(rng: np.random.Generator, n: int, p: int, density_factor: float = 10.0) -> sparse.csc_matrix:
    """Draw the sparse design with badly scaled columns of the authors' data sets A and B.

    Entries are ``N(1, 1)``; column ``j`` is multiplied by ``10 z_j`` with ``z_j ~ N(0, 1)``, and
    each entry is kept with probability ``density_factor * log(n) / n``.
    """
    A = rng.standard_normal((n, p)) + 1.0
    A *= 10.0 * rng.standard_normal(p)
    A *= rng.random((n, p)) < min(1.0, density_factor * np.log(n) / n)
    return sparse.csc_matrix(A)


def sparse_coefficients(rng: np.random.Generator, p: int, fraction: float = 0.1) -> np.ndarray:
    """Draw ``N(0, 1)`` coefficients, each kept non-zero with probability ``fraction``."""
    return rng.standard_normal(p) * (rng.random(p) < fraction)


def least_squares_problem(A: sparse.spmatrix, b: np.ndarray, name: str = "least squares") -> SmoothProblem:
    """Build ``f(x) = ||A x - b||^2 / 2`` with ``H = A^T A`` and ``f*`` from a least-squares solve."""
    A = sparse.csr_matrix(A)
    x_star = np.linalg.lstsq(A.toarray(), b, rcond=None)[0]
    f_star = 0.5 * float(np.sum((A @ x_star - b) ** 2))
    return SmoothProblem(
        name,
        lambda x: 0.5 * float(np.sum((A @ x - b) ** 2)),
        lambda x: A.T @ (A @ x - b),
        sparse.csr_matrix(A.T @ A),
        f_star,
    )


def dataset_a(rng: np.random.Generator, n: int, p: int) -> SmoothProblem:
    """Draw the least-squares data set A: ``b = A w + N(0, 1)`` with sparse ``w``."""
    A = sparse_design(rng, n, p)
    w = sparse_coefficients(rng, p)
    b = A @ w + rng.standard_normal(n)
    return least_squares_problem(A, b, "A: least squares")


def logistic_problem(A: sparse.spmatrix, y: np.ndarray, f_star: float, name: str = "logistic") -> SmoothProblem:
    """Build ``f(x) = sum_i log(1 + exp(-y_i a_i^T x))`` with ``H = A^T A / 4``."""
    A = sparse.csr_matrix(A)

    def value(x: np.ndarray) -> float:
        return float(np.sum(np.logaddexp(0.0, -y * (A @ x))))

    def gradient(x: np.ndarray) -> np.ndarray:
        return A.T @ (-y * np.exp(-np.logaddexp(0.0, y * (A @ x))))

    return SmoothProblem(name, value, gradient, sparse.csr_matrix(0.25 * (A.T @ A)), f_star)


def dataset_b(rng: np.random.Generator, n: int, p: int) -> SmoothProblem:
    """Draw the logistic data set B: labels ``sign(A w)`` flipped with probability 0.1.

    With ``p >= n`` the data are linearly separable almost surely, so the infimum is 0 and is
    not attained; ``f*`` is set to 0.
    """
    A = sparse_design(rng, n, p)
    w = sparse_coefficients(rng, p)
    y = np.sign(A @ w)
    y[y == 0] = 1.0
    y *= np.where(rng.random(n) < 0.1, -1.0, 1.0)
    if p < n:
        raise ValueError(f"data set B needs p >= n so that f* = 0, got n={n}, p={p}")
    return logistic_problem(A, y, 0.0, "B: logistic")


def quadratic_problem(Q: sparse.spmatrix, c: np.ndarray, name: str) -> SmoothProblem:
    """Build ``f(x) = x^T Q x / 2 - c^T x`` with ``H = Q`` and ``f*`` from a sparse solve."""
    Q = sparse.csr_matrix(Q)
    x_star = sparse.linalg.spsolve(sparse.csc_matrix(Q), c)
    f_star = float(-0.5 * c @ x_star)
    return SmoothProblem(name, lambda x: float(0.5 * x @ (Q @ x) - c @ x), lambda x: Q @ x - c, Q, f_star)


def label_propagation(W: sparse.spmatrix, labels: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """Return the system of ``min sum_ij W_ij (y_i - y_j)^2 / 2`` over the unlabelled nodes.

    Nodes with ``labels != 0`` are fixed at their label. The quadratic in the unlabelled values
    ``x`` has ``Q = (D - W)_UU``, with ``D`` the weighted degrees over all nodes, and
    ``c = W_UL y_L``; ``Q`` is positive definite when every connected component contains a label.

    Returns
    -------
    Q, c, unlabelled
        The system and the indices of the unlabelled nodes.
    """
    W = sparse.csr_matrix(W)
    degree = np.asarray(W.sum(axis=1)).ravel()
    unlabelled = np.flatnonzero(labels == 0)
    labelled = np.flatnonzero(labels != 0)
    Q = (sparse.diags(degree) - W)[unlabelled][:, unlabelled]
    c = W[unlabelled][:, labelled] @ labels[labelled]
    return sparse.csr_matrix(Q), c, unlabelled


def dataset_e(rng: np.random.Generator, n_nodes: int, n_labelled: int = 100, k: int = 5) -> SmoothProblem:
    """Draw the label-propagation data set E: two moons, a symmetrised k-NN graph with unit weights.

    Labelled nodes carry +1 or -1 for their moon. A component without a label would make ``Q``
    singular, so one random node of each such component is labelled too.
    """
    half = n_nodes // 2
    angle = np.pi * rng.random(n_nodes)
    moon = np.arange(n_nodes) >= half
    points = np.column_stack([np.cos(angle), np.sin(angle)])
    points[moon] = np.column_stack([1.0 - np.cos(angle[moon]), 0.5 - np.sin(angle[moon])])
    points += 0.1 * rng.standard_normal(points.shape)
    distances = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distances, np.inf)
    neighbours = np.argsort(distances, axis=1)[:, :k]
    W = sparse.csr_matrix((np.ones(n_nodes * k), (np.repeat(np.arange(n_nodes), k), neighbours.ravel())), (n_nodes, n_nodes))
    W = ((W + W.T) > 0).astype(float)
    labels = np.zeros(n_nodes)
    chosen = rng.choice(n_nodes, n_labelled, replace=False)
    labels[chosen] = np.where(moon[chosen], 1.0, -1.0)
    _, component = sparse.csgraph.connected_components(W, directed=False)
    for comp in np.unique(component):
        members = np.flatnonzero(component == comp)
        if not np.any(labels[members]):
            node = rng.choice(members)
            labels[node] = 1.0 if moon[node] else -1.0
    Q, c, _ = label_propagation(W, labels)
    return quadratic_problem(Q, c, "E: label propagation")


def lattice_graph(rows: int, cols: int, weight: float = 1.0) -> sparse.csr_matrix:
    """Return the weighted adjacency of a ``rows x cols`` 4-neighbour lattice; node ``(r, c)`` is ``r * cols + c``."""
    index = np.arange(rows * cols).reshape(rows, cols)
    right = np.column_stack([index[:, :-1].ravel(), index[:, 1:].ravel()])
    down = np.column_stack([index[:-1, :].ravel(), index[1:, :].ravel()])
    edges = np.vstack([right, down])
    W = sparse.coo_matrix((np.full(len(edges), weight), (edges[:, 0], edges[:, 1])), (rows * cols, rows * cols))
    return sparse.csr_matrix(W + W.T)


def dataset_d(rng: np.random.Generator, rows: int, cols: int, n_labelled: int = 100) -> tuple[SmoothProblem, np.ndarray]:
    """Draw the lattice quadratic of data set D: weights ``1e5``, labels ``N(0, 100)`` on random nodes.

    Returns
    -------
    problem, unlabelled
        The quadratic over the unlabelled nodes and their indices in the lattice.
    """
    W = lattice_graph(rows, cols, 1.0e5)
    labels = np.zeros(rows * cols)
    labels[rng.choice(rows * cols, n_labelled, replace=False)] = 10.0 * rng.standard_normal(n_labelled)
    Q, c, unlabelled = label_propagation(W, labels)
    return quadratic_problem(Q, c, "D: lattice quadratic"), unlabelled


# --------------------------------------------------------------------------- block coordinate descent


def sorted_partition(problem: SmoothProblem, block_size: int) -> np.ndarray:
    """Return the fixed blocks, rows of coordinates of similar ``L_i`` (sorted by ``L_i``)."""
    d = problem.dimension
    order = np.argsort(problem.coordinate_lipschitz, kind="stable")
    if d % block_size:
        # The last block re-uses coordinates of the one before it so that all blocks have one size.
        order = np.concatenate([order[: d - d % block_size], order[-block_size:]])
    return order.reshape(-1, block_size)


def _block_lipschitz(H: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    return np.array([linalg.eigvalsh(H[np.ix_(block, block)])[-1] for block in blocks])


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    return np.sort(np.argpartition(scores, -k)[-k:])


def run_bcd(
    problem: SmoothProblem,
    selection: str,
    partition: str,
    update: str,
    block_size: int,
    n_iters: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Run block coordinate descent from ``x = 0`` and return ``f(x^t) - f*`` for ``t = 0..n_iters``.

    Parameters
    ----------
    problem : SmoothProblem
        Objective with its curvature bound ``H``.
    selection : str
        One of :data:`SELECTION_RULES`. With fixed blocks the greedy rules maximise
        ``||g_b||`` (GS), ``||g_b||^2 / L_b`` (GSL), ``g_b^T D_b^{-1} g_b`` (GSD) or
        ``g_b^T H_bb^{-1} g_b`` (GSQ); with variable blocks they take the ``block_size``
        coordinates with the largest ``|g_i|``, ``g_i^2 / L_i`` or ``g_i^2 / d_i`` (GSQ is only
        defined for fixed blocks here). Lipschitz samples a block with probability proportional
        to ``L_b`` (to ``L_i`` without replacement for variable blocks).
    partition : {"fixed", "variable"}
        Fixed blocks sorted by ``L_i`` (:func:`sorted_partition`), or blocks chosen anew each
        iteration.
    update : {"Lb", "Hb"}
        Gradient step ``x_b -= g_b / L_b`` with ``L_b = lambda_max(H_bb)``, or matrix step
        ``x_b -= H_bb^{-1} g_b``.
    block_size : int
        Coordinates per block.
    n_iters : int
        Iterations.
    rng : numpy.random.Generator
        Source of the random and cyclic orders.
    """
    if selection not in SELECTION_RULES or update not in UPDATE_RULES or partition not in ("fixed", "variable"):
        raise ValueError(f"unknown rule combination selection={selection!r}, partition={partition!r}, update={update!r}")
    d = problem.dimension
    L = problem.coordinate_lipschitz
    diag_bound = problem.diagonal_bound
    H = problem.H.toarray()  # dense blocks are extracted far faster than sparse ones
    if partition == "fixed":
        blocks = sorted_partition(problem, block_size)
        block_L = _block_lipschitz(H, blocks)
        if selection == "GSQ":
            block_inverse = [linalg.inv(H[np.ix_(block, block)]) for block in blocks]
    elif selection == "GSQ":
        raise ValueError("the GSQ rule is implemented for fixed blocks only")
    permutation = rng.permutation(d)
    x = np.zeros(d)
    gaps = np.empty(n_iters + 1)
    gaps[0] = problem.value(x) - problem.f_star
    for t in range(n_iters):
        g = problem.gradient(x)
        if partition == "fixed":
            gb = g[blocks]
            if selection == "Random":
                j = rng.integers(len(blocks))
            elif selection == "Cyclic":
                j = t % len(blocks)
            elif selection == "Lipschitz":
                j = rng.choice(len(blocks), p=block_L / block_L.sum())
            elif selection == "GS":
                j = np.argmax(np.sum(gb**2, axis=1))
            elif selection == "GSL":
                j = np.argmax(np.sum(gb**2, axis=1) / block_L)
            elif selection == "GSD":
                j = np.argmax(np.sum(gb**2 / diag_bound[blocks], axis=1))
            else:
                j = np.argmax([gb[i] @ block_inverse[i] @ gb[i] for i in range(len(blocks))])
            block = blocks[j]
        else:
            if selection == "Random":
                block = np.sort(rng.choice(d, block_size, replace=False))
            elif selection == "Cyclic":
                start = (t * block_size) % (d - d % block_size)
                block = np.sort(permutation[start : start + block_size])
            elif selection == "Lipschitz":
                block = np.sort(rng.choice(d, block_size, replace=False, p=L / L.sum()))
            elif selection == "GS":
                block = _top(np.abs(g), block_size)
            elif selection == "GSL":
                block = _top(g**2 / L, block_size)
            else:
                block = _top(g**2 / diag_bound, block_size)
        H_bb = H[np.ix_(block, block)]
        if update == "Lb":
            x[block] -= g[block] / linalg.eigvalsh(H_bb)[-1]
        else:
            x[block] -= linalg.lstsq(H_bb, g[block])[0]
        gaps[t + 1] = problem.value(x) - problem.f_star
    return gaps


# --------------------------------------------------------------------------- message passing on trees


def solve_forest(Q: sparse.spmatrix, r: np.ndarray) -> np.ndarray:
    """Solve ``Q z = r`` for a positive definite ``Q`` whose graph is a forest, by message passing.

    Gaussian elimination ordered from the leaves to the roots: each node ``c`` sends its parent
    ``p`` the message ``(Q_pc^2 / q_c, Q_pc h_c / q_c)``, which folds the subtree of ``c`` into the
    diagonal ``q_p`` and right-hand side ``h_p``; back-substitution then runs from the roots to the
    leaves. The cost is linear in the number of nodes; the nodes of one depth are processed
    together.

    Raises
    ------
    ValueError
        If the graph of ``Q`` has a cycle.
    """
    Q = sparse.csr_matrix(Q)
    m = Q.shape[0]
    off = sparse.triu(Q, k=1).tocoo()
    edges = sparse.csr_matrix((np.ones(off.nnz), (off.row, off.col)), (m, m))
    n_components, component = sparse.csgraph.connected_components(edges, directed=False)
    if off.nnz != m - n_components:
        raise ValueError(f"the graph of Q has {off.nnz} edges on {m} nodes in {n_components} components, so it has a cycle")

    # A virtual root m joined to one node of each tree turns the forest into one tree, so a
    # single breadth-first search gives every node's depth and parent.
    first = np.unique(component, return_index=True)[1]
    row = np.concatenate([off.row, np.full(len(first), m)])
    col = np.concatenate([off.col, first])
    rooted = sparse.csr_matrix((np.ones(len(row)), (row, col)), (m + 1, m + 1))
    rooted = rooted + rooted.T
    depth, parent = sparse.csgraph.shortest_path(rooted, indices=m, unweighted=True, return_predecessors=True)
    depth, parent = depth[:m].astype(int), parent[:m]
    parent[parent == m] = -1
    coupling = np.zeros(m)
    child = np.flatnonzero(parent >= 0)
    coupling[child] = np.asarray(Q[child, parent[child]]).ravel()

    q = Q.diagonal().astype(float).copy()
    h = np.asarray(r, dtype=float).copy()
    levels = [np.flatnonzero(depth == level) for level in range(depth.max() + 1)]
    for nodes in levels[:0:-1]:
        ratio = coupling[nodes] / q[nodes]
        np.add.at(q, parent[nodes], -ratio * coupling[nodes])
        np.add.at(h, parent[nodes], -ratio * h[nodes])
    z = np.zeros(m)
    z[levels[0]] = h[levels[0]] / q[levels[0]]
    for nodes in levels[1:]:
        z[nodes] = (h[nodes] - coupling[nodes] * z[parent[nodes]]) / q[nodes]
    return z


def lattice_forests(rows: int, cols: int) -> list[np.ndarray]:
    """Partition a lattice into two combs, each inducing a tree.

    Comb 1 contains the even rows except their last node, joined by the first node of every odd row;
    comb 2 contains the rest: the odd rows from the second node on, joined by the last column.
    """
    r, c = np.divmod(np.arange(rows * cols), cols)
    first = ((r % 2 == 0) & (c < cols - 1)) | ((r % 2 == 1) & (c == 0))
    return [np.flatnonzero(first), np.flatnonzero(~first)]


def lattice_red_black(rows: int, cols: int) -> list[np.ndarray]:
    """Return the two colours of the lattice's checkerboard; each induces a graph without edges."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    return [np.flatnonzero((r + c) % 2 == 0), np.flatnonzero((r + c) % 2 == 1)]


def restrict(blocks: Sequence[np.ndarray], kept: np.ndarray) -> list[np.ndarray]:
    """Map blocks of lattice nodes to indices among the ``kept`` (unlabelled) nodes, dropping the others."""
    position = np.full(int(max(kept.max(), max(b.max() for b in blocks))) + 1, -1)
    position[kept] = np.arange(len(kept))
    return [np.sort(position[b][position[b] >= 0]) for b in blocks]


def greedy_forest(order: np.ndarray, adjacency: sparse.csr_matrix) -> np.ndarray:
    """Grow a forest by visiting nodes in ``order`` and keeping each node that closes no cycle.

    A node joins when its kept neighbours all lie in different trees; union-find tracks the trees.
    """
    m = adjacency.shape[0]
    root = np.arange(m)
    kept = np.zeros(m, dtype=bool)
    indptr, indices = adjacency.indptr, adjacency.indices

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for node in order:
        trees = [find(j) for j in indices[indptr[node] : indptr[node + 1]] if kept[j]]
        if len(trees) == len(set(trees)):
            kept[node] = True
            for tree_root in trees:
                root[tree_root] = node
    return np.flatnonzero(kept)


def run_forest_bcd(
    problem: SmoothProblem,
    rule: str,
    n_iters: int,
    rng: np.random.Generator,
    fixed_blocks: Sequence[np.ndarray] = (),
    block_size: int = 0,
) -> np.ndarray:
    """Run BCD with exact block updates on a sparse quadratic and return ``f(x^t) - f*``.

    Parameters
    ----------
    problem : SmoothProblem
        Quadratic ``x^T Q x / 2 - c^T x`` with ``H = Q``.
    rule : {"cycle", "random-forest", "greedy-forest", "greedy-small"}
        ``cycle`` visits ``fixed_blocks`` in turn (tree partition or red-black colouring);
        ``random-forest`` and ``greedy-forest`` grow a maximal forest from a random order or from
        the order of decreasing ``|g_i|``; ``greedy-small`` takes the ``block_size`` coordinates
        with the largest ``|g_i|`` and solves their block densely.
    """
    Q = problem.H
    adjacency = sparse.csr_matrix((Q - sparse.diags(Q.diagonal())) != 0, dtype=float)
    x = np.zeros(problem.dimension)
    gaps = np.empty(n_iters + 1)
    gaps[0] = problem.value(x) - problem.f_star
    for t in range(n_iters):
        g = problem.gradient(x)
        if rule == "cycle":
            block = fixed_blocks[t % len(fixed_blocks)]
        elif rule == "random-forest":
            block = greedy_forest(rng.permutation(len(x)), adjacency)
        elif rule == "greedy-forest":
            block = greedy_forest(np.argsort(-np.abs(g), kind="stable"), adjacency)
        elif rule == "greedy-small":
            block = _top(np.abs(g), block_size)
        else:
            raise ValueError(f"unknown forest rule {rule!r}")
        Q_bb = Q[block][:, block]
        # Exact minimisation over the block: Q_bb dx = -g_b.
        if rule == "greedy-small":
            x[block] -= linalg.solve(Q_bb.toarray(), g[block], assume_a="pos")
        else:
            x[block] -= solve_forest(Q_bb, g[block])
        gaps[t + 1] = problem.value(x) - problem.f_star
    return gaps


# --------------------------------------------------------------------------- non-negative lasso


@dataclass(frozen=True)
class NonnegativeLasso:
    """``F(x) = ||A x - b||^2 / 2 + lam * sum(x)`` subject to ``x >= 0``, with its exact minimiser.

    Attributes
    ----------
    A : numpy.ndarray
        Design, dense.
    b : numpy.ndarray
        Targets.
    lam : float
        L1 strength.
    x_star : numpy.ndarray
        Minimiser, certified by the KKT conditions.
    F_star : float
        Minimum.
    """

    A: np.ndarray
    b: np.ndarray
    lam: float
    x_star: np.ndarray
    F_star: float

    def value(self, x: np.ndarray) -> float:
        """Return ``F(x)``."""
        return 0.5 * float(np.sum((self.A @ x - self.b) ** 2)) + self.lam * float(np.sum(x))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """Return the gradient of the smooth objective ``F`` on the orthant."""
        return self.A.T @ (self.A @ x - self.b) + self.lam


def nonnegative_lasso(A: np.ndarray, b: np.ndarray, lam: float, tol: float = 1e-9) -> NonnegativeLasso:
    """Solve the non-negative lasso exactly and certify the solution by its KKT conditions.

    L-BFGS-B finds the support; the minimiser on that support then solves the normal equations
    ``A_S^T A_S x_S = A_S^T b - lam``. The KKT conditions (``x_S > 0``, ``g_S = 0``, ``g >= 0``
    off the support) are checked to relative tolerance ``tol``.
    """
    problem = NonnegativeLasso(A, b, lam, np.zeros(A.shape[1]), 0.0)
    result = optimize.minimize(
        lambda x: (problem.value(x), problem.gradient(x)), np.zeros(A.shape[1]), jac=True, method="L-BFGS-B",
        bounds=[(0.0, None)] * A.shape[1], options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-12},
    )
    support = np.flatnonzero(result.x > 1e-8 * max(1.0, result.x.max()))
    x = np.zeros(A.shape[1])
    A_S = A[:, support]
    x[support] = linalg.solve(A_S.T @ A_S, A_S.T @ b - lam, assume_a="pos")
    g = problem.gradient(x)
    scale = np.abs(A.T @ b).max()
    if np.any(x[support] <= 0) or np.abs(g[support]).max() > tol * scale or g.min() < -tol * scale:
        raise ValueError("the KKT conditions of the non-negative lasso failed at the refined L-BFGS-B support")
    return NonnegativeLasso(A, b, lam, x, problem.value(x))


def run_nonnegative_lasso(
    problem: NonnegativeLasso, update: str, block_size: int, n_iters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run greedy projected BCD on a non-negative lasso.

    Blocks are the ``block_size`` coordinates whose projected coordinate step (step ``1/L_i``,
    clipped at 0) decreases the quadratic bound most, the variable-block GS-q rule.

    Parameters
    ----------
    update : {"PG", "TMP", "QP"}
        ``PG``: projected gradient step ``x_b = max(x_b - g_b / L_b, 0)``. ``TMP``: two-metric
        projection, a Newton step on the block's free variables and a diagonally scaled step on
        those at the bound with positive gradient, projected, with Armijo backtracking. ``QP``:
        exact minimisation over the block (a non-negative least-squares solve).

    Returns
    -------
    gaps, support_changes, x
        ``F(x^t) - F*`` for ``t = 0..n_iters``, per iteration whether the set of non-zero
        variables changed, and the last iterate.
    """
    A, L = problem.A, np.sum(problem.A**2, axis=0)
    x = np.zeros(A.shape[1])
    gaps = np.empty(n_iters + 1)
    changes = np.zeros(n_iters, dtype=bool)
    gaps[0] = problem.value(x) - problem.F_star
    for t in range(n_iters):
        g = problem.gradient(x)
        step = np.maximum(x - g / L, 0.0) - x
        block = _top(-(g * step + 0.5 * L * step**2), block_size)
        A_b, g_b, x_b = A[:, block], g[block], x[block]
        H_bb = A_b.T @ A_b
        if update == "PG":
            new = np.maximum(x_b - g_b / linalg.eigvalsh(H_bb)[-1], 0.0)
        elif update == "TMP":
            bound = (x_b <= 1e-12) & (g_b > 0)
            free = ~bound
            direction = np.zeros(block_size)
            direction[bound] = -g_b[bound] / L[block][bound]
            if free.any():
                direction[free] = -linalg.lstsq(H_bb[np.ix_(free, free)], g_b[free])[0]
            x_trial, alpha, f0 = x.copy(), 1.0, problem.value(x)
            while True:
                new = np.maximum(x_b + alpha * direction, 0.0)
                x_trial[block] = new
                if problem.value(x_trial) <= f0 + 1e-4 * g_b @ (new - x_b) or alpha < 1e-12:
                    break
                alpha *= 0.5
        elif update == "QP":
            # min 0.5 z^T H z + (g_b - H x_b)^T z over z >= 0, as NNLS through a Cholesky factor.
            R = linalg.cholesky(H_bb + 1e-12 * np.trace(H_bb) * np.eye(block_size))
            linear = g_b - H_bb @ x_b
            new = optimize.nnls(R, -linalg.solve_triangular(R, linear, trans="T"))[0]
        else:
            raise ValueError(f"unknown non-negative update {update!r}")
        changes[t] = np.any((x_b > 0) != (new > 0))
        x[block] = new
        gaps[t + 1] = problem.value(x) - problem.F_star
    return gaps, changes, x
