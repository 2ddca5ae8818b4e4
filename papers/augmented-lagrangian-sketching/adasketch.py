"""AdaSketch-Newton and an inexact l1-penalty SQP baseline for equality-constrained problems.

Both methods solve ``min f(x) s.t. c(x) = 0`` from Newton-KKT systems

    [B  G^T] [dx  ]     [grad_x L]
    [G  0  ] [dlam] = - [c       ],

with ``L = f + lam^T c``, ``G`` the constraint Jacobian and ``B`` the Hessian of ``L``, shifted when
its reduced Hessian is not positive definite. AdaSketch-Newton (Hong, Na, Mahoney and Kolar, ICML
2023) solves the system by randomized iterative sketching up to an adaptive accuracy and searches
along the direction on the exact augmented Lagrangian. The baseline solves it with GMRES up to the
termination tests of inexact SQP (Byrd, Curtis and Nocedal, 2008) and searches on the l1 merit.

Costs are counted in floating-point operations of the linear solves: a product with the
``N x N`` KKT matrix costs ``2 N^2``, a Gram-Schmidt step of GMRES against ``j`` basis vectors
``4 N j``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

# Caps of the official implementation, recorded when they bind.
DELTA_FLOOR = 1e-6
ETA1_CAP = 1e8
ETA2_FLOOR = 1e-8
SINGULAR_GGT = 1e-2


@dataclass
class ConstrainedProblem:
    """Smooth objective with equality constraints, given by callables of ``x`` (and ``lam``).

    Attributes
    ----------
    objective, gradient, hessian : callable
        ``f(x)``, its gradient and its Hessian.
    constraints, jacobian : callable
        ``c(x)`` of length ``m`` and its ``m x n`` Jacobian ``G(x)``.
    constraint_hessian : callable
        ``(x, lam) -> sum_i lam_i hess c_i(x)``.
    """

    objective: callable
    gradient: callable
    hessian: callable
    constraints: callable
    jacobian: callable
    constraint_hessian: callable

    def lagrangian_gradient(self, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """Return ``grad_x L(x, lam) = grad f(x) + G(x)^T lam``."""
        return self.gradient(x) + self.jacobian(x).T @ lam

    def kkt_residual(self, x: np.ndarray, lam: np.ndarray) -> float:
        """Return ``||(grad_x L, c)||``, the stopping measure of both methods."""
        return float(np.linalg.norm(np.concatenate([self.lagrangian_gradient(x, lam), self.constraints(x)])))


def constrained_logistic(features: np.ndarray, labels: np.ndarray, A: np.ndarray, b: np.ndarray) -> ConstrainedProblem:
    """Build mean logistic loss subject to ``A x = b`` and ``||x||^2 = 1``.

    This is the constrained logistic regression of the paper's experiments: labels in {-1, 1},
    ``m`` linear constraints and one norm constraint, so ``c(x)`` has ``m + 1`` entries.
    """
    n_samples, dim = features.shape

    def objective(x: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0.0, -labels * (features @ x))))

    def gradient(x: np.ndarray) -> np.ndarray:
        weights = -labels * _sigmoid(-labels * (features @ x))
        return features.T @ weights / n_samples

    def hessian(x: np.ndarray) -> np.ndarray:
        p = _sigmoid(features @ x)
        return (features.T * (p * (1.0 - p))) @ features / n_samples

    def constraints(x: np.ndarray) -> np.ndarray:
        return np.concatenate([A @ x - b, [x @ x - 1.0]])

    def jacobian(x: np.ndarray) -> np.ndarray:
        return np.vstack([A, 2.0 * x])

    def constraint_hessian(x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return 2.0 * lam[-1] * np.eye(dim)

    return ConstrainedProblem(objective, gradient, hessian, constraints, jacobian, constraint_hessian)


def quadratic_program(Q: np.ndarray, c: np.ndarray, A: np.ndarray, b: np.ndarray) -> ConstrainedProblem:
    """Build ``min x^T Q x / 2 + c^T x s.t. A x = b``, whose KKT point solves one linear system."""
    dim = len(c)
    return ConstrainedProblem(
        objective=lambda x: float(0.5 * x @ Q @ x + c @ x),
        gradient=lambda x: Q @ x + c,
        hessian=lambda x: Q,
        constraints=lambda x: A @ x - b,
        jacobian=lambda x: A,
        constraint_hessian=lambda x, lam: np.zeros((dim, dim)),
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def draw_feasible_constraints(rng: np.random.Generator, m: int, dim: int, max_norm: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Draw Gaussian ``A`` (``m x dim``) and ``b`` until ``{A x = b}`` meets the unit sphere.

    The affine set meets the sphere exactly when its minimum-norm point is inside the ball, so
    redrawing until ``||A^+ b|| <= max_norm`` keeps a strictly feasible problem.
    """
    while True:
        A = rng.standard_normal((m, dim))
        b = rng.standard_normal(m)
        if np.linalg.norm(np.linalg.lstsq(A, b, rcond=None)[0]) <= max_norm:
            return A, b


@dataclass
class Run:
    """History of one solver run.

    Attributes
    ----------
    kkt : list of float
        KKT residual at every iterate, starting with the initial point.
    alpha : list of float
        Accepted stepsize at every iteration.
    inner : list of int
        Iterations of the linear solver at every outer iteration, re-solves included.
    solver_flops : list of float
        Flops of the linear solves at every outer iteration.
    status : str
        ``converged``, ``max_iter`` or ``singular`` (``G G^T`` nearly singular, as the official
        code aborts).
    caps : set of str
        Safeguards that bound at least once (``delta_floor``, ``eta_caps``, ``sketch_cap``,
        ``gmres_cap``).
    x, lam : numpy.ndarray or None
        Final primal and dual iterates.
    """

    kkt: list = field(default_factory=list)
    alpha: list = field(default_factory=list)
    inner: list = field(default_factory=list)
    solver_flops: list = field(default_factory=list)
    status: str = "max_iter"
    caps: set = field(default_factory=set)
    x: np.ndarray | None = None
    lam: np.ndarray | None = None


def _modified_hessian(H: np.ndarray, G: np.ndarray, xi_B: float) -> np.ndarray:
    """Shift ``H`` by ``(xi_B + ||H||_F) I`` when its reduced Hessian has an eigenvalue below 1e-2."""
    m, n = G.shape
    if m < n:
        Z = linalg.null_space(G)
        if np.linalg.eigvalsh(Z.T @ H @ Z)[0] < 1e-2:
            return H + (xi_B + np.linalg.norm(H)) * np.eye(n)
    return H


def _sketch_solve(
    K: np.ndarray,
    rhs: np.ndarray,
    z: np.ndarray,
    r: np.ndarray,
    tolerance: float,
    sketch: str,
    rng: np.random.Generator,
    max_iterations: int,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Run sketch-and-project iterations on ``K z = rhs`` from ``z`` until ``||r|| <= tolerance``.

    ``r = K z - rhs``. One step projects ``z`` onto ``{z : S^T K z = S^T rhs}``:
    ``z <- z - (S^T r) / ||K^T S||^2 K^T S`` with ``S ~ N(0, I)`` (``gaussian``) or ``S = e_i``
    with ``P(i)`` proportional to ``||K_i||^2`` (``kaczmarz``, randomized Kaczmarz). ``K`` is
    symmetric, so ``K^T S = K S``.

    NOTE: the official code samples Kaczmarz rows uniformly, not by squared row norm.

    Returns ``z``, ``r``, the iterations and whether the cap bound.
    """
    N = len(rhs)
    row_norms = np.einsum("ij,ij->i", K, K)
    rows = None
    if sketch == "kaczmarz":
        batch = max(64, min(max_iterations, 4096))
        rows = iter(())
    iterations = 0
    while np.linalg.norm(r) > tolerance:
        if iterations >= max_iterations:
            return z, r, iterations, True
        if sketch == "gaussian":
            s = rng.standard_normal(N)
            v = K @ s
            step = (s @ r) / (v @ v)
        else:
            i = next(rows, None)
            if i is None:
                rows = iter(rng.choice(N, size=batch, p=row_norms / row_norms.sum()))
                i = next(rows)
            v = K[i]
            step = r[i] / row_norms[i]
        z = z - step * v
        r = r - step * (K @ v)
        iterations += 1
    return z, r, iterations, False


def sketch_flops(sketch: str, N: int) -> float:
    """Flops of one sketch iteration: two KKT products (Gaussian) or one (Kaczmarz row step)."""
    return (4.0 * N * N if sketch == "gaussian" else 2.0 * N * N) + 6.0 * N


def adasketch_newton(
    problem: ConstrainedProblem,
    x0: np.ndarray,
    lam0: np.ndarray,
    rng: np.random.Generator,
    sketch: str = "gaussian",
    theta: str = "constant",
    eta1: float = 1.0,
    eta2: float = 0.1,
    delta: float = 0.1,
    xi_B: float = 0.1,
    beta: float = 0.1,
    nu: float = 1.5,
    kkt_tol: float = 1e-4,
    max_iter: int = 1000,
    max_sketch_iterations: int = 10**6,
    accuracy: float | None = None,
) -> Run:
    """Run AdaSketch-Newton.

    Parameters
    ----------
    problem : ConstrainedProblem
        Objective and constraints.
    x0, lam0 : numpy.ndarray
        Starting primal and dual points.
    rng : numpy.random.Generator
        Source of the sketches.
    sketch : {"gaussian", "kaczmarz"}
        Sketching solver (Gaussian vector sketch or randomized Kaczmarz).
    theta : {"constant", "sharpened"}
        Accuracy schedule: ``theta_k = 1`` or ``theta_k = min(1, KKT_k)``.
    eta1, eta2, delta : float
        Initial penalty parameters and accuracy parameter; adapted during the run.
    xi_B, beta, nu : float
        Hessian-shift constant, Armijo constant and penalty growth factor.
    kkt_tol, max_iter : float, int
        Stop when the KKT residual is at most ``kkt_tol`` or after ``max_iter`` iterations.
    max_sketch_iterations : int
        Cap on sketch iterations per solve.
    accuracy : float or None
        When set, the accuracy test is ``||r|| <= theta_k * accuracy * ||rhs||`` instead of the
        paper's ``||K|| psi ||r|| <= theta_k delta ||rhs||``; used to expose the local rate.

    Returns
    -------
    Run
    """
    x, lam = x0.astype(float).copy(), lam0.astype(float).copy()
    n, m = len(x), len(lam)
    run = Run()
    for k in range(max_iter + 1):
        grad_L = problem.lagrangian_gradient(x, lam)
        c = problem.constraints(x)
        run.kkt.append(float(np.linalg.norm(np.concatenate([grad_L, c]))))
        if run.kkt[-1] <= kkt_tol:
            run.status = "converged"
            break
        if k == max_iter:
            break
        G = problem.jacobian(x)
        xi_G = np.linalg.eigvalsh(G @ G.T)[0]
        if xi_G < SINGULAR_GGT:
            run.status = "singular"
            break
        H = problem.hessian(x) + problem.constraint_hessian(x, lam)
        B = _modified_hessian(H, G, xi_B)
        K = np.block([[B, G.T], [G, np.zeros((m, m))]])
        rhs = -np.concatenate([grad_L, c])
        psi = 20.0 * max(np.linalg.norm(B) ** 2, 1.0) / (min(xi_G, 1.0) * min(xi_B, 1.0))
        upsilon = max(np.linalg.norm(G), np.linalg.norm(H), 1.0)
        delta = min(delta, _delta_trial(beta, eta1, eta2, upsilon, psi))
        if delta < DELTA_FLOOR:
            delta = DELTA_FLOOR
            run.caps.add("delta_floor")
        theta_k = 1.0 if theta == "constant" else min(1.0, run.kkt[-1])
        norm_K = np.linalg.norm(K)
        z, r = np.zeros(n + m), -rhs
        inner, flops = 0, 0.0
        while True:
            if accuracy is None:
                tolerance = theta_k * delta * np.linalg.norm(rhs) / (norm_K * psi)
            else:
                tolerance = theta_k * accuracy * np.linalg.norm(rhs)
            z, r, steps, capped = _sketch_solve(K, rhs, z, r, tolerance, sketch, rng, max_sketch_iterations)
            inner += steps
            flops += steps * sketch_flops(sketch, n + m)
            if capped:
                run.caps.add("sketch_cap")
            # Exact gradient of the augmented Lagrangian: it uses the Hessian of L, not of f alone.
            merit_grad = np.concatenate([grad_L + eta2 * H @ grad_L + eta1 * G.T @ c, c + eta2 * G @ grad_L])
            slope = merit_grad @ z
            if eta1 > ETA1_CAP or eta2 < ETA2_FLOOR:
                run.caps.add("eta_caps")
                break
            if slope <= -0.5 * eta2 * rhs @ rhs:
                break
            eta1 *= nu**2
            eta2 /= nu
            delta = max(min(delta / nu**4, _delta_trial(beta, eta1, eta2, upsilon, psi)), DELTA_FLOOR)
        merit = _augmented_lagrangian(problem, x, lam, eta1, eta2)
        alpha = 1.0
        while _augmented_lagrangian(problem, x + alpha * z[:n], lam + alpha * z[n:], eta1, eta2) > merit + alpha * beta * slope:
            alpha *= 0.5
            if alpha < 1e-12:
                break
        x, lam = x + alpha * z[:n], lam + alpha * z[n:]
        run.alpha.append(alpha)
        run.inner.append(inner)
        run.solver_flops.append(flops)
    run.x, run.lam = x, lam
    return run


def _delta_trial(beta: float, eta1: float, eta2: float, upsilon: float, psi: float) -> float:
    """Return the largest accuracy parameter ``delta`` that the convergence analysis allows."""
    return (0.5 - beta) * eta2 / ((1.0 + eta1 + eta2) * upsilon**2 * psi**2)


def _augmented_lagrangian(problem: ConstrainedProblem, x: np.ndarray, lam: np.ndarray, eta1: float, eta2: float) -> float:
    """Return ``f + lam^T c + eta1/2 ||c||^2 + eta2/2 ||grad_x L||^2``."""
    c = problem.constraints(x)
    grad_L = problem.lagrangian_gradient(x, lam)
    return problem.objective(x) + lam @ c + 0.5 * eta1 * c @ c + 0.5 * eta2 * grad_L @ grad_L


def _gmres_iterations(K: np.ndarray, rhs: np.ndarray, z0: np.ndarray, restart: int):
    """Yield ``(z, flops)`` after every GMRES iteration on ``K z = rhs`` from ``z0``, restarting every ``restart``."""
    N = len(rhs)
    z = z0.copy()
    while True:
        r0 = rhs - K @ z
        flops = 2.0 * N * N
        beta0 = np.linalg.norm(r0)
        if beta0 == 0.0:
            yield z, flops
            continue
        V = np.zeros((N, restart + 1))
        Hm = np.zeros((restart + 1, restart))
        V[:, 0] = r0 / beta0
        for j in range(restart):
            w = K @ V[:, j]
            for i in range(j + 1):
                Hm[i, j] = V[:, i] @ w
                w = w - Hm[i, j] * V[:, i]
            Hm[j + 1, j] = np.linalg.norm(w)
            flops += 2.0 * N * N + 4.0 * N * (j + 1)
            if Hm[j + 1, j] > 1e-14 * beta0:
                V[:, j + 1] = w / Hm[j + 1, j]
            e1 = np.zeros(j + 2)
            e1[0] = beta0
            y = np.linalg.lstsq(Hm[: j + 2, : j + 1], e1, rcond=None)[0]
            yield z + V[:, : j + 1] @ y, flops
            flops = 0.0
            if Hm[j + 1, j] <= 1e-14 * beta0:
                break
        z = z + V[:, : j + 1] @ y


def gmres_l1_sqp(
    problem: ConstrainedProblem,
    x0: np.ndarray,
    lam0: np.ndarray,
    mu: float = 1.0,
    kappa: float = 1.0,
    kappa1: float = 0.1,
    epsilon: float = 0.1,
    tau: float = 0.1,
    eta: float = 1e-8,
    xi_B: float = 0.1,
    kkt_tol: float = 1e-4,
    max_iter: int = 1000,
    restart: int = 20,
    max_gmres_iterations: int = 10**5,
) -> Run:
    """Run inexact SQP on the l1 merit ``f + mu ||c||_1`` with GMRES solves.

    GMRES stops at the first iterate that passes termination test 1 (small residual and
    sufficient model reduction) or test 2 (residual small relative to ``||c||_1``) of inexact
    SQP; test 2 raises the penalty ``mu`` so that the model reduction holds. Parameters are those
    of the official implementation's baseline.
    """
    x, lam = x0.astype(float).copy(), lam0.astype(float).copy()
    n, m = len(x), len(lam)
    sigma = tau * (1.0 - epsilon)
    run = Run()
    # Constant of termination test 2, fixed at the starting point as in the official code.
    kappa2 = max(np.abs(problem.lagrangian_gradient(x, lam)).sum() / (np.abs(problem.constraints(x)).sum() + 1.0), 1.0)
    for k in range(max_iter + 1):
        grad_f = problem.gradient(x)
        G = problem.jacobian(x)
        c = problem.constraints(x)
        grad_L = grad_f + G.T @ lam
        run.kkt.append(float(np.linalg.norm(np.concatenate([grad_L, c]))))
        if run.kkt[-1] <= kkt_tol:
            run.status = "converged"
            break
        if k == max_iter:
            break
        if np.linalg.eigvalsh(G @ G.T)[0] < SINGULAR_GGT:
            run.status = "singular"
            break
        H = problem.hessian(x) + problem.constraint_hessian(x, lam)
        B = _modified_hessian(H, G, xi_B)
        K = np.block([[B, G.T], [G, np.zeros((m, m))]])
        rhs = -np.concatenate([grad_L, c])
        c1 = np.abs(c).sum()
        inner, flops = 0, 0.0
        z = np.zeros(n + m)
        for z_inner, step_flops in _gmres_iterations(K, rhs, np.zeros(n + m), restart):
            z = z_inner
            inner += 1
            flops += step_flops
            r = K @ z - rhs
            dx = z[:n]
            linearised = np.abs(G @ dx + c).sum()
            test1 = (
                np.abs(r).sum() <= kappa * np.abs(rhs).sum()
                and np.abs(r[n:]).sum() <= max(kappa1 * np.abs(rhs[:n]).sum(), kappa2 * np.abs(rhs[n:]).sum())
                and _model_reduction(grad_f, B, G, c, mu, dx) >= sigma * mu * max(c1, linearised - c1)
            )
            test2 = np.abs(r[:n]).sum() <= epsilon * c1 and np.abs(r[n:]).sum() <= kappa2 * c1
            if test1 or test2 or inner >= max_gmres_iterations:
                break
        if inner >= max_gmres_iterations:
            run.caps.add("gmres_cap")
        dx = z[:n]
        linearised = np.abs(G @ dx + c).sum()
        if _model_reduction(grad_f, B, G, c, mu, dx) < sigma * mu * max(c1, linearised - c1) and c1 - linearised > 0:
            mu = max((grad_f @ dx + max(0.5 * dx @ B @ dx, 0.0)) / ((1.0 - tau) * (c1 - linearised)), mu) + 1e-4
        slope = grad_f @ dx - mu * (c1 - linearised)
        merit = problem.objective(x) + mu * c1
        alpha = 1.0
        while problem.objective(x + alpha * dx) + mu * np.abs(problem.constraints(x + alpha * dx)).sum() > merit + alpha * eta * slope:
            alpha *= 0.5
            if alpha < 1e-12:
                break
        x, lam = x + alpha * dx, lam + alpha * z[n:]
        run.alpha.append(alpha)
        run.inner.append(inner)
        run.solver_flops.append(flops)
    run.x, run.lam = x, lam
    return run



def _model_reduction(grad_f: np.ndarray, B: np.ndarray, G: np.ndarray, c: np.ndarray, mu: float, dx: np.ndarray) -> float:
    """Return the reduction of the l1 model, ``-grad f^T dx - max(dx^T B dx / 2, 0) + mu (||c||_1 - ||c + G dx||_1)``."""
    return -grad_f @ dx - max(0.5 * dx @ B @ dx, 0.0) + mu * (np.abs(c).sum() - np.abs(G @ dx + c).sum())
