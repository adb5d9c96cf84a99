"""The meta-gradient (fast JVP path vs double backward vs finite differences) and the two-stage scheme."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gdwlib.bilevel import (
    code_step, first_stage_weights, gdw_iteration, intermediate_gradient, lookahead, meta_gradient, paper_step,
)
from gdwlib.constraint import zero_mean_constraint

from conftest import small_convnet

LR = 0.3


def meta_loss_after_virtual_step(model, x, G, x_meta, y_meta, lr):
    """L_meta(theta - lr * J^T G), built with plain modules on a throwaway copy (no gdwlib)."""
    m = copy.deepcopy(model)
    params = list(m.parameters())
    grads = torch.autograd.grad(m(x), params, grad_outputs=G)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * g
    return F.cross_entropy(m(x_meta), y_meta)


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_fast_and_reference_meta_gradients_agree(convnet, batches):
    x, _, x_meta, y_meta = batches
    G = 0.2 * torch.randn(6, 5)
    fast = meta_gradient(convnet, x, G, x_meta, y_meta, LR, method="jvp")
    ref = meta_gradient(convnet, x, G, x_meta, y_meta, LR, method="reference")
    assert relative_error(fast.grad_G, ref.grad_G) < 1e-6
    assert fast.meta_loss.item() == pytest.approx(ref.meta_loss.item(), rel=1e-12)


@pytest.mark.parametrize("method", ["jvp", "functional-jvp", "reference"])
def test_meta_gradient_matches_central_finite_differences(convnet, batches, method):
    x, _, x_meta, y_meta = batches
    G = 0.2 * torch.randn(6, 5)
    got = meta_gradient(convnet, x, G, x_meta, y_meta, LR, method=method).grad_G
    eps = 1e-6
    fd = torch.zeros_like(G)
    for i in range(6):
        for c in range(5):
            E = torch.zeros_like(G)
            E[i, c] = eps
            up = meta_loss_after_virtual_step(convnet, x, G + E, x_meta, y_meta, LR)
            down = meta_loss_after_virtual_step(convnet, x, G - E, x_meta, y_meta, LR)
            fd[i, c] = (up - down) / (2 * eps)
    assert relative_error(got, fd) < 1e-6


def test_meta_loss_is_the_loss_at_the_lookahead_parameters(convnet, batches):
    x, _, x_meta, y_meta = batches
    G = 0.2 * torch.randn(6, 5)
    got = meta_gradient(convnet, x, G, x_meta, y_meta, LR).meta_loss
    expected = meta_loss_after_virtual_step(convnet, x, G, x_meta, y_meta, LR)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_given_step_grads_are_used(convnet, batches):
    """``step_grads`` computed for 2G (not G) give the look-ahead of 2G: the meta loss and
    meta-gradient of ``meta_gradient(2G)``, not those of G (J does not depend on G)."""
    x, _, x_meta, y_meta = batches
    G = 0.2 * torch.randn(6, 5)
    params = list(convnet.parameters())
    step = dict(zip([k for k, _ in convnet.named_parameters()], torch.autograd.grad(convnet(x), params, 2 * G)))
    given = meta_gradient(convnet, x, G, x_meta, y_meta, LR, step_grads=step)
    doubled, plain = (meta_gradient(convnet, x, m * G, x_meta, y_meta, LR) for m in (2, 1))
    torch.testing.assert_close(given.grad_G, doubled.grad_G, rtol=1e-12, atol=1e-14)
    assert given.meta_loss.item() == pytest.approx(doubled.meta_loss.item(), rel=1e-12)
    assert given.meta_loss.item() != pytest.approx(plain.meta_loss.item(), rel=1e-6)


def test_meta_gradient_leaves_model_untouched(convnet, batches):
    x, _, x_meta, y_meta = batches
    before = copy.deepcopy(convnet.state_dict())
    for method in ("jvp", "reference"):
        meta_gradient(convnet, x, 0.1 * torch.randn(6, 5), x_meta, y_meta, LR, method=method)
    for k, v in convnet.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in convnet.parameters())


def test_frozen_parameters_stay_out_of_the_virtual_step(batches):
    x, _, x_meta, y_meta = batches
    model = small_convnet()
    model[0].weight.requires_grad_(False)
    G = 0.2 * torch.randn(6, 5)
    fast = meta_gradient(model, x, G, x_meta, y_meta, LR)
    ref = meta_gradient(model, x, G, x_meta, y_meta, LR, method="reference")
    assert relative_error(fast.grad_G, ref.grad_G) < 1e-6


def test_lookahead_is_plain_sgd(float64):
    params = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor(3.0)}
    grads = {"a": torch.tensor([0.5, -1.0]), "b": torch.tensor(2.0)}
    out = lookahead(params, grads, 0.1)
    torch.testing.assert_close(out["a"], torch.tensor([0.95, 2.1]))
    torch.testing.assert_close(out["b"], torch.tensor(2.8))
    with pytest.raises(ValueError, match="`grads` lacks"):
        lookahead(params, {"a": grads["a"]}, 0.1)


# A two-stage iteration on a hand-sized example (n = 2, C = 3), values worked by hand:
#   p = [[.2, .5, .3], [.6, .1, .3]], targets [1, 0]  ->  D1 = [[.2, -.5, .3], [-.4, .1, .3]]
#   w = [.5, .8]  ->  omega = [[.5, .5, .5], [.8, .8, .8]]
#   dL/dG = [[1, 2, -1], [.5, -1, 2]]  ->  g = dL/dG * D1 / 2 = [[.1, -.5, -.15], [-.1, -.05, .3]]
P = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], dtype=torch.float64)
Y = torch.tensor([1, 0])
D1_HAND = P - F.one_hot(Y, 3)
GRAD_G = torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0]], dtype=torch.float64)


def test_hand_worked_two_stage_iteration_code_rule():
    omega = first_stage_weights(torch.tensor([0.5, 0.8], dtype=torch.float64), 3)
    g = intermediate_gradient(GRAD_G, D1_HAND)
    torch.testing.assert_close(g, torch.tensor([[0.1, -0.5, -0.15], [-0.1, -0.05, 0.3]], dtype=torch.float64))
    # sum|g| = 1.2 and outer_lr = 1.2, so the update is g itself, clipped to [-.2, .2]
    stepped = code_step(omega, g, outer_lr=1.2)
    torch.testing.assert_close(stepped, torch.tensor([[0.4, 0.7, 0.65], [0.9, 0.85, 0.6]], dtype=torch.float64))
    # Eq. 4: (.4*.2 + .65*.3) / .5 = .55 ; (.85*.1 + .6*.3) / .4 = .6625
    out = zero_mean_constraint(stepped, D1_HAND, Y)
    torch.testing.assert_close(out, torch.tensor([[0.4, 0.55, 0.65], [0.6625, 0.85, 0.6]], dtype=torch.float64))


def test_hand_worked_two_stage_iteration_paper_rule():
    omega = first_stage_weights(torch.tensor([0.5, 0.8], dtype=torch.float64), 3)
    stepped = paper_step(omega, intermediate_gradient(GRAD_G, D1_HAND), omega_lr=2.0)
    torch.testing.assert_close(stepped, torch.tensor([[0.3, 1.5, 0.8], [1.0, 0.9, 0.2]], dtype=torch.float64))
    # Eq. 4: (.3*.2 + .8*.3) / .5 = .6 ; (.9*.1 + .2*.3) / .4 = .375
    out = zero_mean_constraint(stepped, D1_HAND, Y)
    torch.testing.assert_close(out, torch.tensor([[0.3, 0.6, 0.8], [0.375, 0.9, 0.2]], dtype=torch.float64))


def test_code_step_bounds_and_zero_gradient():
    omega = torch.tensor([[1e-6, 5.0]], dtype=torch.float64)
    torch.testing.assert_close(code_step(omega, torch.zeros(1, 2, dtype=torch.float64), 100.0), omega)
    out = code_step(omega, torch.tensor([[1.0, -1.0]], dtype=torch.float64), 100.0)
    torch.testing.assert_close(out, torch.tensor([[1e-6, 5.2]], dtype=torch.float64))


def test_first_stage_weights_bad_input():
    with pytest.raises(ValueError, match="`w`"):
        first_stage_weights(torch.ones(2, 3), 3)
    with pytest.raises(ValueError, match="`w`"):
        first_stage_weights(torch.tensor([1.0, float("nan")]), 3)


def vnet64():
    return nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid()).double()


def reference_iteration(model, vnet, x, y, x_meta, y_meta, lr, *, rule, constraint, outer_lr=50.0, omega_lr=30.0):
    """Steps 1-2 written out with plain autograd and the formulas typed in here (no gdwlib): the
    public code's recipe with create_graph, then the Step-2 update (``rule``: the code's
    ``clamp(omega - clamp(outer_lr g / sum|g|, -0.2, 0.2), 1e-6, 1e6)`` or Eq. 11's
    ``omega - omega_lr g``) and Eq. 4 ``omega_t = sum_{j != t} omega_j p_j / (1 - p_t)``.
    Returns (meta loss, omega, g, omega', D1); ``vnet``'s gradients are left in ``.grad``."""
    logits = model(x)
    n, C = logits.shape
    onehot = F.one_hot(y, C).bool()
    p = torch.softmax(logits.detach(), 1).clamp(max=0.999)
    d1 = p - onehot.double()

    def constrain(w):
        off_target = (w * p).masked_fill(onehot, 0.0).sum(1)
        return torch.where(onehot, (off_target / (1 - p[range(n), y]))[:, None], w)

    w = vnet(F.cross_entropy(logits.detach(), y, reduction="none")[:, None])
    omega = w.expand(n, C)
    if constraint:
        omega = constrain(omega)
    omega.retain_grad()
    params = list(model.parameters())
    grads = torch.autograd.grad(logits, params, omega * d1 / n, create_graph=True)
    names = [k for k, _ in model.named_parameters()]
    theta_hat = {k: q - lr * gq for k, q, gq in zip(names, params, grads)}
    meta_loss = F.cross_entropy(torch.func.functional_call(copy.deepcopy(model), theta_hat, (x_meta,)), y_meta)
    meta_loss.backward()
    g = omega.grad
    if rule == "code":
        stepped = (omega.detach() - (outer_lr * g / g.abs().sum()).clamp(-0.2, 0.2)).clamp(1e-6, 1e6)
    else:
        stepped = omega.detach() - omega_lr * g
    return meta_loss.item(), omega.detach(), g, constrain(stepped) if constraint else stepped, d1


@pytest.mark.parametrize("rule", ["code", "paper"])
@pytest.mark.parametrize("constraint", [True, False])
def test_gdw_iteration_matches_a_double_backward_reference(batches, constraint, rule):
    """The whole of Steps 1-2 against :func:`reference_iteration`, for both Step-2 rules."""
    x, y, x_meta, y_meta = batches
    model, vnet = small_convnet(), vnet64()
    ref_model, ref_vnet = copy.deepcopy(model), copy.deepcopy(vnet)

    it = gdw_iteration(model, vnet, x, y, x_meta, y_meta, LR, rule=rule, outer_lr=50.0, omega_lr=30.0,
                       constraint=constraint)
    meta_loss, omega, g, expected, d1 = reference_iteration(ref_model, ref_vnet, x, y, x_meta, y_meta, LR, rule=rule,
                                                           constraint=constraint)
    assert it.meta_loss == pytest.approx(meta_loss, rel=1e-12)
    torch.testing.assert_close(it.omega, omega, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(it.g, g, rtol=1e-8, atol=1e-14)
    for a, b in zip(vnet.parameters(), ref_vnet.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-14)
    assert not torch.allclose(expected, omega)  # the step moved the weights
    torch.testing.assert_close(it.omega_prime, expected, rtol=1e-8, atol=1e-14)
    torch.testing.assert_close(it.G_step3, expected * d1 / 6, rtol=1e-8, atol=1e-14)
    if constraint:
        assert (it.G_step3.sum(1)).abs().max() < 1e-15


def test_gdw_iteration_paper_rule_needs_a_step_size(batches):
    x, y, x_meta, y_meta = batches
    with pytest.raises(ValueError, match="`omega_lr`"):
        gdw_iteration(small_convnet(), vnet64(), x, y, x_meta, y_meta, LR, rule="paper")


def test_unknown_meta_method(convnet, batches):
    x, _, x_meta, y_meta = batches
    with pytest.raises(ValueError, match="unknown `method`"):
        meta_gradient(convnet, x, torch.zeros(6, 5), x_meta, y_meta, LR, method="magic")
