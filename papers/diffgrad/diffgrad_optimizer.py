"""diffGrad: Adam whose first moment is scaled by a friction coefficient of the gradient change."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


class DiffGrad(torch.optim.Optimizer):
    r"""diffGrad of Dubey et al. (2020), written from the update rule of the paper.

    For every parameter element, with gradient :math:`g_t` and :math:`g_0 = 0`,

    .. math::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \qquad
        \xi_t = \frac{1}{1 + e^{-|g_{t-1} - g_t|}},

        \theta_t = \theta_{t-1} - \eta \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
                   \frac{\xi_t m_t}{\sqrt{v_t} + \epsilon}.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups to optimise.
    lr : float
        Step size :math:`\eta`.
    betas : tuple of float
        Decay rates :math:`(\beta_1, \beta_2)` of the two moments.
    eps : float
        :math:`\epsilon` added to :math:`\sqrt{v_t}`.
    friction : str
        ``"abs"`` applies the rule above, and ``"none"`` sets :math:`\xi_t = 1`, which is Adam.
        ``"aliased"`` reproduces the authors' first release: its stored previous gradient is the
        gradient tensor itself, so :math:`g_{t-1} - g_t = 0` and :math:`\xi_t = 1/2` from the
        second step on.
    """

    frictions = ("abs", "none", "aliased")

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        friction: str = "abs",
    ) -> None:
        if friction not in self.frictions:
            raise ValueError(f"friction must be one of {self.frictions}, got {friction!r}")
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError("lr and eps must be non-negative and both betas in [0, 1)")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "friction": friction})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Take one diffGrad step with the gradients stored in ``p.grad``.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss.

        Returns
        -------
        float or None
            The loss returned by ``closure``, if one was given.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                    state["previous_grad"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["m"], state["v"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)

                if group["friction"] == "none":
                    xi = torch.ones_like(p)
                elif group["friction"] == "aliased" and t > 1:
                    xi = torch.full_like(p, 0.5)
                else:
                    xi = torch.sigmoid((state["previous_grad"] - g).abs())
                state["previous_grad"].copy_(g)

                step_size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
                p.addcdiv_(xi * m, v.sqrt().add_(group["eps"]), value=-step_size)
        return loss
