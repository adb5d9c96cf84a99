"""L2RW and INSW: weights and meta-gradients against brute force (one autograd call per
instance) and central finite differences in float64, one training iteration against a
step-by-step reference, the all-zero L2RW case, smoke and resume runs."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gdwlib import reweighting
from gdwlib import train as train_module
from gdwlib.data.batches import Batch
from gdwlib.data.build import build_data
from gdwlib.methods.insw import INSW, insw_meta_gradient
from gdwlib.methods.l2rw import L2RW
from gdwlib.reweighting import l2rw_instance_weights, l2rw_weights
from gdwlib.profiles import profile_config

CLASSES = {cls.name: cls for cls in (L2RW, INSW)}
CPU = torch.device("cpu")
LR = 0.3




def smoke(tmp_path, **fields):
    return profile_config("smoke", "fashion-mnist", results_dir=str(tmp_path), device="cpu", **fields)


def per_instance_gradients(model, x, y):
    """grad_theta l_i(theta) for each i, one autograd call per instance (flattened rows)."""
    losses = F.cross_entropy(model(x), y, reduction="none")
    params = list(model.parameters())
    return torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(losses[i], params, retain_graph=True)])
                        for i in range(len(y))])


def flat_gradient(model, x, y):
    loss = F.cross_entropy(model(x), y)
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])


def sgd_first_step(params, grads, lr, weight_decay):
    """torch.optim.SGD's first step (the momentum buffer starts as the gradient itself)."""
    return [p - lr * (g + weight_decay * p) for p, g in zip(params, grads)]


def method_and_batches(tmp_path, name, **fields):
    config = smoke(tmp_path, method=name, **fields)
    data = build_data(config)
    method = CLASSES[name](config, data, CPU)
    method.start_epoch(0, 0.05)
    return method, data, next(data.train_batches(0)), next(data.meta_batches(0))


# ----- L2RW ----------------------------------------------------------------------------------

@pytest.mark.parametrize("meta_method", ["jvp", "functional-jvp", "reference"])
def test_l2rw_weights_are_clipped_normalised_gradient_inner_products(convnet, batches, meta_method):
    """w_i = max(<grad l_i, grad L_meta>, 0) / sum_j max(...), by brute force (BatchNorm net, float64)."""
    x, y, x_meta, y_meta = batches
    model = copy.deepcopy(convnet)  # the brute-force forwards must not touch convnet's BatchNorm statistics
    scores = per_instance_gradients(model, x, y) @ flat_gradient(model, x_meta, y_meta)
    assert (scores > 0).any() and (scores < 0).any(), "the check needs examples on both sides of the clip"
    expected = scores.clamp(min=0) / scores.clamp(min=0).sum()
    w, meta_loss = l2rw_instance_weights(convnet, convnet(x), x, y, x_meta, y_meta, LR, method=meta_method)
    torch.testing.assert_close(w, expected, rtol=1e-9, atol=1e-12)
    assert meta_loss.item() == pytest.approx(F.cross_entropy(model(x_meta), y_meta).item(), rel=1e-12)


def test_l2rw_weights_of_hand_worked_scores():
    """-dL/deps = (3, -1, 1, 0) gives (0.75, 0, 0.25, 0); all non-positive gives zeros, not NaN."""
    torch.testing.assert_close(l2rw_weights(torch.tensor([-3.0, 1.0, -1.0, 0.0])), torch.tensor([0.75, 0, 0.25, 0]))
    assert torch.equal(l2rw_weights(torch.tensor([1.0, 0.0, 2.0])), torch.zeros(3))


def test_l2rw_one_iteration_matches_a_brute_force_reference(tmp_path):
    """train_step = one SGD step sending w_i (p_i - y_i) (no 1/n) with brute-force weights."""
    method, _, batch, meta = method_and_batches(tmp_path, "L2RW")
    model = copy.deepcopy(method.model)
    scores = per_instance_gradients(model, batch.x, batch.y) @ flat_gradient(model, meta.x, meta.y)
    w = scores.clamp(min=0) / scores.clamp(min=0).sum()
    method.train_step(batch, iter([meta]))
    loss = (w * F.cross_entropy(model(batch.x), batch.y, reduction="none")).sum()
    params = list(model.parameters())
    expected = sgd_first_step(params, torch.autograd.grad(loss, params), 0.05, method.config.weight_decay)
    for got, exp in zip(method.model.parameters(), expected):
        torch.testing.assert_close(got, exp, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("meta_method", ["jvp", "functional-jvp", "reference"])
def test_l2rw_zero_meta_gradient_gives_zero_weights_and_a_weight_decay_only_step(tmp_path, meta_method):
    """A bias-free linear model and an all-zero meta batch: grad L_meta = 0 exactly, every weight
    is 0 (no NaN) and the step only applies weight decay: theta <- theta (1 - lr wd)."""
    method, _, batch, meta = method_and_batches(tmp_path, "L2RW", meta_method=meta_method)
    method.model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10, bias=False))
    method.optimizer = torch.optim.SGD(method.model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    method.reweighter = reweighting.L2RW(method.model, method.optimizer, meta_method=meta_method)
    zero_meta = Batch(torch.zeros_like(meta.x), meta.y, meta.y, meta.index)
    logits = method.model(batch.x)
    w, _ = l2rw_instance_weights(method.model, logits, batch.x, batch.y, zero_meta.x, zero_meta.y, 0.05,
                                 method=meta_method)
    assert torch.equal(w, torch.zeros(len(batch)))
    before = method.model[1].weight.detach().clone()
    method.train_step(batch, iter([zero_meta]))
    torch.testing.assert_close(method.model[1].weight, before * (1 - 0.05 * 5e-4), rtol=1e-6, atol=0)


# ----- INSW ----------------------------------------------------------------------------------

def meta_loss_after_lookahead(model, x, y, phi, x_meta, y_meta, lr):
    """L_meta(theta - lr grad_theta sum_i phi_i l_i(theta)), on a throwaway copy with plain autograd."""
    m = copy.deepcopy(model)
    params = list(m.parameters())
    grads = torch.autograd.grad((phi * F.cross_entropy(m(x), y, reduction="none")).sum(), params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * g
    return F.cross_entropy(m(x_meta), y_meta)


@pytest.mark.parametrize("meta_method", ["jvp", "functional-jvp", "reference"])
def test_insw_meta_gradient_matches_central_finite_differences(convnet, batches, meta_method):
    x, y, x_meta, y_meta = batches
    phi = torch.rand(len(y)) + 0.5
    got, meta_loss = insw_meta_gradient(convnet, convnet(x), x, y, phi, x_meta, y_meta, LR, method=meta_method)
    h = 1e-6
    fd = torch.stack([(meta_loss_after_lookahead(convnet, x, y, phi + h * e, x_meta, y_meta, LR)
                       - meta_loss_after_lookahead(convnet, x, y, phi - h * e, x_meta, y_meta, LR)) / (2 * h)
                      for e in torch.eye(len(y))])
    torch.testing.assert_close(got, fd, rtol=1e-6, atol=1e-9)
    assert meta_loss.item() == pytest.approx(meta_loss_after_lookahead(convnet, x, y, phi, x_meta, y_meta, LR).item(),
                                             rel=1e-12)


def test_insw_one_iteration_updates_the_batch_weights_only_and_steps_with_them(tmp_path):
    """phi_i <- max(phi_i / w_decay - meta_lr dL/dphi_i, 1e-5) for the batch only, with
    dL/dphi_i = -lr <grad l_i(theta), grad L_meta(theta_hat)> by brute force; then one SGD step
    sending w_i (p_i - y_i), w = phi / sum phi over the batch."""
    init, w_decay, meta_lr, lr = 0.7, 2.0, 3.0, 0.05
    method, data, batch, meta = method_and_batches(tmp_path, "INSW", options={"init": init, "meta_lr": meta_lr})
    model = copy.deepcopy(method.model)
    phi0 = torch.full((len(batch),), init)
    step = torch.autograd.grad((phi0 * F.cross_entropy(model(batch.x), batch.y, reduction="none")).sum(),
                               list(model.parameters()))
    lookahead = copy.deepcopy(model)
    with torch.no_grad():
        for p, g in zip(lookahead.parameters(), step):
            p -= lr * g
    grad_phi = -lr * per_instance_gradients(model, batch.x, batch.y) @ flat_gradient(lookahead, meta.x, meta.y)
    phi = (phi0 / w_decay - meta_lr * grad_phi).clamp(min=1e-5)
    assert (phi == 1e-5).any() and (phi > 1e-5).any(), "the check needs clamped and free weights"

    method.train_step(batch, iter([meta]))

    outside = torch.ones(len(data.train), dtype=torch.bool)
    outside[batch.index] = False
    assert torch.equal(method.phi[outside], torch.full((int(outside.sum()),), init))
    torch.testing.assert_close(method.phi[batch.index], phi, rtol=1e-4, atol=1e-6)
    loss = (phi / phi.sum() * F.cross_entropy(model(batch.x), batch.y, reduction="none")).sum()
    params = list(model.parameters())
    expected = sgd_first_step(params, torch.autograd.grad(loss, params), lr, method.config.weight_decay)
    for got, exp in zip(method.model.parameters(), expected):
        torch.testing.assert_close(got, exp, rtol=1e-4, atol=1e-6)


# ----- runs ----------------------------------------------------------------------------------

def test_insw_updates_every_instance_weight(tmp_path):
    """Smoke run: after two epochs every instance's phi has left its initial value."""
    config = smoke(tmp_path, method="INSW")
    result = train_module.run(config, progress=False)
    phi = np.load(train_module.run_directory(config) / "exports.npz")["phi"]
    assert len(phi) == result["data"]["train_size"] and (phi != 1.0).all()
