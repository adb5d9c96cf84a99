"""The three-step bi-level loop and GDW's two-stage weight generation (Section 3.4, Eq. 9-12).

Step 1 takes a virtual SGD step ``theta_hat = theta - lr * D2^T G`` with the ``(n, C)`` matrix
``G`` sent into the training batch's logits (Eq. 9). Step 2 needs the meta loss's gradient with
respect to whatever shaped ``G``. Because ``theta_hat`` is linear in ``G``,

    dL_meta / dG = -lr * (J v),   J = dlogits/dtheta (training batch),   v = grad L_meta(theta_hat),

and ``J v`` is a Jacobian-vector product, with no second-order graph. :func:`meta_gradient`
computes it that way by default: read off the graph of the real forward of the training batch
when the caller passes it (:func:`gdwlib.tangents.graph_jvp`, no forward recomputed), else by one
forward-mode pass (:func:`torch.func.jvp`). It also computes it by the classic double backward
through a functional copy of the model (``method="reference"``), which is slower but obviously
correct; the tests check that the three agree.

Any ``nn.Module`` works, BatchNorm in train mode included: each functional call gets its own
copy of the buffers, so look-ahead forwards never touch the model's running statistics, which
are updated once per iteration by the real forward, as in the public code.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jvp

from ._checks import NumericalError, check_matrix, check_same_shape, check_targets, defer
from .constraint import zero_mean_constraint
from .gradients import D1, f_omega, logit_backward
from .tangents import graph_jvp

MetaMethod = Literal["jvp", "functional-jvp", "reference"]
StepRule = Literal["code", "paper"]


def trainable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """The parameters that training updates, detached from the module, keyed by name."""
    return {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}


def functional_logits(model: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """``model(x)`` evaluated at ``params`` instead of the module's own parameters.

    Buffers are passed as fresh copies: a BatchNorm layer in train mode then normalises with
    the batch statistics and writes its running statistics into the throwaway copy.
    """
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    return functional_call(model, ({**params, **buffers}), (x,), strict=False)


def lookahead(params: Mapping[str, Tensor], grads: Mapping[str, Tensor], lr: float) -> dict[str, Tensor]:
    """Step 1 / Eq. 9: the virtual step ``theta_hat = theta - lr * grad``.

    Plain gradient descent, without momentum or weight decay, as in the public code.
    """
    missing = set(params) - set(grads)
    if missing:
        raise ValueError(f"`grads` lacks entries for parameters {sorted(missing)[:5]}")
    return {k: p - lr * grads[k] for k, p in params.items()}


@dataclass
class MetaGradient:
    """The meta loss at the look-ahead parameters and its gradient with respect to ``G``."""

    grad_G: Tensor
    meta_loss: Tensor


def meta_gradient(
    model: nn.Module,
    x: Tensor,
    G: Tensor,
    x_meta: Tensor,
    y_meta: Tensor,
    lr: float,
    *,
    method: MetaMethod = "jvp",
    step_grads: Mapping[str, Tensor] | None = None,
    logits: Tensor | None = None,
) -> MetaGradient:
    """``dL_meta(theta_hat)/dG`` for ``theta_hat = theta - lr * J^T G`` (Steps 1-2).

    ``G`` is the ``(n, C)`` matrix sent into the logits of the training batch ``x`` at the
    model's current parameters ``theta``; ``L_meta`` is the mean cross-entropy of the meta batch
    at ``theta_hat``. ``step_grads``, when given, is ``J^T G`` already computed by the caller
    from its own forward pass (the training loop reuses Step 1's forward), keyed by parameter
    name; it is used by the forward-mode methods only. So is ``logits``: the caller's forward of
    ``x`` at ``theta`` in the same mode, graph still held; ``J v`` is then read off that graph.

    ``method="jvp"``: one backward at ``theta_hat`` gives ``v``, one forward-mode pass gives
    ``J v`` (read off ``logits``' graph where it can be). ``"functional-jvp"`` always runs
    :func:`torch.func.jvp`, a second forward with dual numbers, as before the graph path existed.
    ``method="reference"``: ``theta_hat`` is built with ``create_graph=True`` and the meta loss is
    differentiated through it (the double backward of MW-Net-style code).
    """
    check_matrix(G, "G")
    params = trainable_parameters(model)
    if method in ("jvp", "functional-jvp"):
        leaves = dict(model.named_parameters())   # the tensors the caller's forward was made from
        if step_grads is None:
            leaves = {k: p.clone().requires_grad_() for k, p in params.items()}
            logits = functional_logits(model, leaves, x)
            check_same_shape(G, "G", logits, "logits of x")
            step_grads = dict(zip(leaves, logit_backward(logits, G, leaves.values(), retain_graph=True)))
        theta_hat = {k: p.detach().requires_grad_() for k, p in lookahead(params, step_grads, lr).items()}
        meta_loss = F.cross_entropy(functional_logits(model, theta_hat, x_meta), y_meta)
        v = dict(zip(theta_hat, torch.autograd.grad(meta_loss, list(theta_hat.values()))))
        jv = None if logits is None or method != "jvp" else graph_jvp(logits, {leaves[k]: t for k, t in v.items()})
        if jv is None:  # no forward given, or one with an operation graph_jvp has no rule for
            with warnings.catch_warnings():
                # torch's first forward-mode call scripts its decompositions and warns about it
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated")
                _, jv = jvp(lambda p: functional_logits(model, p, x), (params,), (v,))
        return MetaGradient(grad_G=-lr * jv, meta_loss=meta_loss.detach())
    if method == "reference":
        G = G.detach().requires_grad_()
        theta = {k: p.clone().requires_grad_() for k, p in params.items()}
        logits = functional_logits(model, theta, x)
        check_same_shape(G, "G", logits, "logits of x")
        grads = dict(zip(theta, logit_backward(logits, G, theta.values(), create_graph=True)))
        meta_loss = F.cross_entropy(functional_logits(model, lookahead(theta, grads, lr), x_meta), y_meta)
        (grad_G,) = torch.autograd.grad(meta_loss, G)
        return MetaGradient(grad_G=grad_G, meta_loss=meta_loss.detach())
    raise ValueError(f"unknown `method` {method!r}: use 'jvp' (fast), 'functional-jvp' (a second forward) "
                     "or 'reference' (double backward)")


def first_stage_weights(w: Tensor, num_classes: int) -> Tensor:
    """Eq. 9: the first-stage class-level weights ``omega_i = w_i 1``, ``w_i`` cloned C times."""
    if w.dim() == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.dim() != 1:
        raise ValueError(f"`w` must hold one weight per instance, shape (n,), got {tuple(w.shape)}")
    bad = ~torch.isfinite(w).all()
    if not defer(bad, "`w` contains NaN or infinite weights") and bad:
        raise NumericalError("`w` contains NaN or infinite weights")
    return w[:, None].expand(-1, num_classes)


def intermediate_gradient(grad_G: Tensor, d1: Tensor) -> Tensor:
    """The intermediate gradient ``g = dL_meta/domega`` of Fig. 2, for ``G = omega (x) D1 / n``.

    By the chain rule ``g = dL_meta/dG (x) D1 / n``: it comes for free with Step 2's backward.
    """
    check_same_shape(grad_G, "grad_G", d1, "d1")
    return grad_G * d1 / d1.shape[0]


def paper_step(omega: Tensor, g: Tensor, omega_lr: float) -> Tensor:
    """Eq. 11 as printed: ``omega' = omega - eta_omega g``."""
    check_same_shape(g, "g", omega, "omega")
    return omega - omega_lr * g


def code_step(
    omega: Tensor, g: Tensor, outer_lr: float, *, clip: float = 0.2, bounds: tuple[float, float] = (1e-6, 1e6),
) -> Tensor:
    """The public code's Step-2 update of the class-level weights.

    ``omega' = clamp(omega - clamp(outer_lr * g / sum|g|, -clip, clip), *bounds)``, where the sum
    runs over the whole ``(n, C)`` batch. The mean step per entry is ``outer_lr / (n C)``. Where
    ``g`` is all zero the weights are left unchanged (the public code would divide by zero): the
    sum is then replaced by 1, decided on the device, without reading it back.
    """
    check_same_shape(g, "g", omega, "omega")
    total = g.abs().sum()
    total = torch.where(total == 0, torch.ones_like(total), total)
    return (omega - (outer_lr * g / total).clamp(-clip, clip)).clamp(*bounds)


def meta_backward(
    model: nn.Module,
    logits: Tensor,
    x: Tensor,
    G: Tensor,
    x_meta: Tensor,
    y_meta: Tensor,
    lr: float,
    meta_optimizer: torch.optim.Optimizer | None = None,
    *,
    method: MetaMethod = "jvp",
) -> MetaGradient:
    """Steps 1-2 for any method whose logit gradient ``G`` is built, with autograd, from meta
    parameters (a weighting network, per-instance weights or labels, ...).

    The virtual step sends ``G`` into ``logits`` (the model's forward of ``x``, graph kept for
    Step 3), the meta-gradient ``dL_meta/dG`` is computed by :func:`meta_gradient`, and the
    chain rule finishes with one backward of ``G`` itself: the meta parameters' ``.grad`` then
    hold ``dL_meta/dparameter``. ``meta_optimizer``, if given, is zeroed before and stepped after.
    """
    step_grads = None
    if method != "reference":  # the reference path builds its own virtual step, with create_graph
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        grads = logit_backward(logits, G.detach(), [p for _, p in named], retain_graph=True)
        step_grads = dict(zip([k for k, _ in named], grads))
    mg = meta_gradient(model, x, G.detach(), x_meta, y_meta, lr, method=method, step_grads=step_grads,
                       logits=logits)
    if meta_optimizer is not None:
        meta_optimizer.zero_grad()
    if G.requires_grad:
        torch.autograd.backward(G, mg.grad_G)
    if meta_optimizer is not None:
        meta_optimizer.step()
    return mg


@dataclass
class MetaStep:
    """Steps 1-2 as MW-Net and GDW share them (the weighting network already updated)."""

    logits: Tensor          # the real forward of the batch (graph kept for Step 3's backward)
    d1: Tensor              # D1 = p - y of the training batch
    losses: Tensor          # per-instance cross-entropy, the weighting network's input
    w: Tensor               # instance weights the weighting network gave before its update
    omega: Tensor           # first-stage class-level weights (Eq. 9; with the Step-1 constraint)
    grad_G: Tensor          # dL_meta/dG
    meta_loss: Tensor       # 0-dim, on the device (reading it would stall a GPU)


def weighted_meta_step(
    model: nn.Module,
    vnet: nn.Module,
    x: Tensor,
    targets: Tensor,
    x_meta: Tensor,
    y_meta: Tensor,
    lr: float,
    *,
    vnet_optimizer: torch.optim.Optimizer | None = None,
    clamp_max: float | None = 0.999,
    constraint: bool = True,
    method: MetaMethod = "jvp",
) -> MetaStep:
    """Steps 1-2 of Algorithm 1 with MW-Net's weighting network ``vnet``.

    1. Forward the batch (the only real forward: BatchNorm statistics update here), get
       ``w_i`` from ``vnet`` on the detached per-instance losses, clone it into ``omega``
       (Eq. 9; with ``constraint`` the zero-mean constraint is applied to it, as the public
       code does in GDW mode) and take the virtual step with ``G = omega (x) D1 / n``.
    2. Back-propagate the meta loss at the look-ahead parameters to ``vnet`` (its gradient lands
       in ``.grad``; ``vnet_optimizer`` steps, if given).
    """
    n = x.shape[0]
    logits = model(x)
    C = logits.shape[1]
    check_targets(targets, n, C)
    d1 = D1(logits.detach(), targets, clamp_max=clamp_max)
    losses = F.cross_entropy(logits.detach(), targets, reduction="none")
    w = vnet(losses[:, None]).reshape(n)
    omega = first_stage_weights(w, C)
    if constraint:
        omega = zero_mean_constraint(omega, d1, targets)
    G = f_omega(omega, d1) / n
    mg = meta_backward(model, logits, x, G, x_meta, y_meta, lr, vnet_optimizer, method=method)
    return MetaStep(logits=logits, d1=d1, losses=losses, w=w.detach(), omega=omega.detach(), grad_G=mg.grad_G,
                    meta_loss=mg.meta_loss)


@dataclass(kw_only=True)
class GDWIteration(MetaStep):
    """Everything one GDW iteration computes, for inspection (notebook 04, statistics)."""

    g: Tensor               # intermediate gradient on omega
    omega_step: Tensor      # after the Step-2 update (Eq. 11 or the code's step)
    omega_prime: Tensor     # second-stage weights after the zero-mean constraint
    G_step3: Tensor         # omega' (x) D1 / n, sent into the logits in Step 3 (Eq. 12)


def gdw_iteration(
    model: nn.Module,
    vnet: nn.Module,
    x: Tensor,
    targets: Tensor,
    x_meta: Tensor,
    y_meta: Tensor,
    lr: float,
    *,
    vnet_optimizer: torch.optim.Optimizer | None = None,
    rule: StepRule = "code",
    outer_lr: float = 100.0,
    omega_lr: float | None = None,
    clip: float = 0.2,
    clamp_max: float | None = 0.999,
    constraint: bool = True,
    method: MetaMethod = "jvp",
) -> GDWIteration:
    """Steps 1-2 of Algorithm 1 for one batch, ending with the matrix Step 3 sends back.

    Steps 1-2 are :func:`weighted_meta_step`. From the intermediate gradient
    ``g = dL_meta/domega`` the second-stage weights follow (``rule="code"``: the public code's
    normalised, clipped step with ``outer_lr``; ``rule="paper"``: Eq. 11 with ``omega_lr``), then
    the zero-mean constraint (Eq. 4). The caller finishes Step 3 with
    ``result.logits.backward(result.G_step3)`` and its optimizer.

    ``constraint=False`` drops the zero-mean constraint in both stages (Section 4.1's ablation).
    """
    if rule == "paper" and omega_lr is None:
        raise ValueError("`omega_lr` (eta_omega of Eq. 11) is required with rule='paper'")
    if rule not in ("code", "paper"):
        raise ValueError(f"unknown `rule` {rule!r}: use 'code' or 'paper'")
    s = weighted_meta_step(model, vnet, x, targets, x_meta, y_meta, lr, vnet_optimizer=vnet_optimizer,
                           clamp_max=clamp_max, constraint=constraint, method=method)
    g = intermediate_gradient(s.grad_G, s.d1)
    omega_step = code_step(s.omega, g, outer_lr, clip=clip) if rule == "code" else paper_step(s.omega, g, omega_lr)
    omega_prime = zero_mean_constraint(omega_step, s.d1, targets) if constraint else omega_step
    return GDWIteration(**vars(s), g=g, omega_step=omega_step, omega_prime=omega_prime,
                        G_step3=f_omega(omega_prime, s.d1) / x.shape[0])
