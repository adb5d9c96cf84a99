"""Soft-label and Gen-label: their logit gradients against autograd and the closed forms of
methods.md, their meta-gradients against central finite differences of the meta loss after a
look-ahead built here with plain autograd, one whole iteration against a hand-written SGD step,
the warm-up, smoke runs and resuming."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gdwlib import train as train_module
from gdwlib.data.batches import Batch
from gdwlib.data.build import build_data
from gdwlib.methods import labels
from gdwlib.methods.labels import GenLabel, SoftLabel
from gdwlib.profiles import profile_config
from gdwlib.train import run, run_directory

from conftest import assert_same_run, interrupt_then_resume

C = 10




def smoke(tmp_path, **fields):
    return profile_config("smoke", "fashion-mnist", results_dir=str(tmp_path), device="cpu", **fields)


def float64_batch(b: Batch) -> Batch:
    return Batch(b.x.double(), b.y, b.y_true, b.index)


def small_setup(tmp_path, cls, meta_method="jvp", **options):
    """A float64 method on the smoke data with batches of 8, plus one training and one meta batch.

    The plain MLP: BatchNorm over 8 examples curves the meta loss enough that central finite
    differences lose the precision these tests ask for."""
    config = smoke(tmp_path, method=cls.name, model="mlp", batch_size=8, meta_batch_size=8, meta_method=meta_method,
                   options=options)
    data = build_data(config)
    torch.manual_seed(0)
    method = cls(config, data, torch.device("cpu"))
    return method, float64_batch(next(data.train_batches(0))), float64_batch(next(data.meta_batches(0)))


def meta_loss_after_lookahead(model, x, train_loss, x_meta, y_meta, step):
    """L_meta(theta - step * grad_theta train_loss(model(x))), on a throwaway copy (no gdwlib)."""
    m = copy.deepcopy(model)
    params = list(m.parameters())
    grads = torch.autograd.grad(train_loss(m(x)), params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= step * g
    return F.cross_entropy(m(x_meta), y_meta)


def central_differences(f, point, eps=1e-6):
    """(f(point + eps e_k) - f(point - eps e_k)) / (2 eps) for every entry k of ``point``."""
    fd = torch.zeros(point.numel())
    for k in range(point.numel()):
        e = torch.zeros(point.numel())
        e[k] = eps
        fd[k] = (f(point + e.view_as(point)) - f(point - e.view_as(point))) / (2 * eps)
    return fd.view_as(point)


def sgd_first_step(model, loss, lr, weight_decay):
    """torch.optim.SGD's first step written out (the momentum buffer starts as the gradient)."""
    m = copy.deepcopy(model)
    params = list(m.parameters())
    grads = torch.autograd.grad(loss(m), params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * (g + weight_decay * p)
    return m


def assert_same_parameters(a, b, rtol=1e-10, atol=1e-12):
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol)


def soft_ce(logits, targets, alpha):
    """mean_i CE(z_i, (1 - alpha_i) e_{y_i} + alpha_i / C), written out here."""
    target = (1 - alpha[:, None]) * F.one_hot(targets, C).double() + alpha[:, None] / C
    return -(target * torch.log_softmax(logits, 1)).sum(1).mean()


def reverse_kl(logits, label_logits):
    """(1/(nC)) sum_i KL(p_i || softmax(y^_i)), written out here."""
    p, s = torch.softmax(logits, 1), torch.softmax(label_logits, 1)
    return (p * (p.log() - s.log())).sum() / logits.numel()


def entropy(logits):
    p = torch.softmax(logits, 1)
    return -(p * p.log()).sum() / logits.numel()


# --- Soft-label ------------------------------------------------------------------------------

def test_soft_label_gradient_is_autograd_of_ce_with_the_soft_target(float64):
    z, y, alpha = torch.randn(6, C), torch.randint(0, C, (6,)), torch.rand(6)
    target = (1 - alpha[:, None]) * F.one_hot(y, C) + alpha[:, None] / C
    zz = z.clone().requires_grad_()
    (expected,) = torch.autograd.grad(F.cross_entropy(zz, target), zz)  # torch's CE with probability targets
    torch.testing.assert_close(labels.soft_label_gradient(z, y, alpha), expected, rtol=1e-12, atol=1e-14)


def test_soft_label_gradient_is_linear_in_alpha_with_slope_e_y_minus_uniform(float64):
    z, y, alpha, R = torch.randn(6, C), torch.randint(0, C, (6,)), torch.rand(6), torch.randn(6, C)
    a = alpha.clone().requires_grad_()
    (got,) = torch.autograd.grad((labels.soft_label_gradient(z, y, a) * R).sum(), a)
    expected = (R.gather(1, y[:, None])[:, 0] - R.mean(1)) / 6  # R_i . (e_{y_i} - 1/C) / n
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("meta_method", ["jvp", "reference"])
def test_soft_label_meta_gradient_matches_finite_differences(tmp_path, float64, monkeypatch, meta_method):
    method, batch, meta = small_setup(tmp_path, SoftLabel, meta_method, init=0.5, meta_lr=1e-3)
    lr = 0.5
    method.start_epoch(0, lr)
    model = copy.deepcopy(method.model)
    seen = []
    real_step = labels.normalised_step
    monkeypatch.setattr(labels, "normalised_step", lambda g, step: seen.append(g.clone()) or real_step(g, step))

    method.train_step(batch, iter([meta]))

    fd = central_differences(lambda a: meta_loss_after_lookahead(
        model, batch.x, lambda z: soft_ce(z, batch.y, a), meta.x, meta.y, lr), torch.full((8,), 0.5))
    torch.testing.assert_close(seen[0], fd, rtol=1e-6, atol=1e-10)
    # the step: alpha - meta_lr * g / mean|g| (no clamping from 0.5 with a step this small)
    torch.testing.assert_close(method.alpha[batch.index], 0.5 - 1e-3 * fd / fd.abs().mean(), rtol=0, atol=1e-11)


def test_soft_label_iteration_steps_with_the_updated_alpha_and_keeps_other_instances(tmp_path, float64):
    method, batch, meta = small_setup(tmp_path, SoftLabel)
    lr, c = 0.05, method.config
    method.start_epoch(0, lr)
    model = copy.deepcopy(method.model)

    method.train_step(batch, iter([meta]))

    alpha = method.alpha[batch.index]
    assert ((alpha >= 0) & (alpha <= 1)).all() and (alpha > 0).any()  # from one-hot, clamped at 0
    others = torch.ones(len(method.alpha), dtype=torch.bool)
    others[batch.index] = False
    assert (method.alpha[others] == 0).all()
    expected = sgd_first_step(model, lambda m: soft_ce(m(batch.x), batch.y, alpha), lr, c.weight_decay)
    assert_same_parameters(method.model, expected)


# --- Gen-label -------------------------------------------------------------------------------

def test_gen_label_losses_match_torch_kl_and_entropy(float64):
    z, y_hat = torch.randn(6, C), 3 * torch.randn(6, C)
    kl = F.kl_div(torch.log_softmax(y_hat, 1), torch.softmax(z, 1), reduction="sum") / (6 * C)
    assert labels.kl_label_loss(z, y_hat).item() == pytest.approx(kl.item(), rel=1e-12)
    p = torch.softmax(z, 1)
    assert labels.entropy_loss(z).item() == pytest.approx(-(p * p.log()).sum().item() / (6 * C), rel=1e-12)


def test_gen_label_logit_gradients_equal_the_closed_forms_of_methods_md(float64):
    n = 6
    z, y_hat = torch.randn(n, C), 3 * torch.randn(n, C)
    p, s = torch.softmax(z, 1), torch.softmax(y_hat, 1)
    kl_i = (p * (p / s).log()).sum(1, keepdim=True)
    kl_closed = p * ((p / s).log() - kl_i) / (n * C)
    torch.testing.assert_close(labels.logit_gradient(lambda u: labels.kl_label_loss(u, y_hat), z), kl_closed,
                               rtol=1e-10, atol=1e-14)
    entropy_closed = -p * (p.log() - (p * p.log()).sum(1, keepdim=True)) / (n * C)
    torch.testing.assert_close(labels.logit_gradient(labels.entropy_loss, z), entropy_closed, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(labels.logit_gradient(lambda u: labels.ce_label_loss(u, y_hat), z), (p - s) / (n * C),
                               rtol=1e-10, atol=1e-14)


def test_gen_label_warmup_is_a_share_of_the_epochs(tmp_path):
    data = build_data(smoke(tmp_path))
    for epochs, warmup in [(80, 29), (120, 44), (2, 1), (1, 0)]:  # round(epochs * 44 / 120)
        config = smoke(tmp_path, method="Gen-label", epochs=epochs)
        assert GenLabel(config, data, torch.device("cpu")).warmup_epochs() == warmup


def test_gen_label_warmup_epoch_is_plain_cross_entropy(tmp_path, float64):
    method, batch, _ = small_setup(tmp_path, GenLabel)
    lr, c = 0.05, method.config
    method.start_epoch(0, lr)
    model = copy.deepcopy(method.model)
    initial = method.label_logits.clone()

    def no_meta():
        pytest.fail("the warm-up drew a meta batch")
        yield

    method.train_step(batch, no_meta())

    assert torch.equal(method.label_logits, initial)
    torch.testing.assert_close(initial, 10.0 * F.one_hot(method.data.train.labels, C).double())
    expected = sgd_first_step(model, lambda m: F.cross_entropy(m(batch.x), batch.y), lr, c.weight_decay)
    assert_same_parameters(method.model, expected)


@pytest.mark.parametrize("loss", ["kl", "ce"])
@pytest.mark.parametrize("meta_method", ["jvp", "reference"])
def test_gen_label_meta_gradient_matches_finite_differences(tmp_path, float64, meta_method, loss):
    # labels far from saturation (init_scale 1): the "ce" loss sees them only through softmax(y^)
    method, batch, meta = small_setup(tmp_path, GenLabel, meta_method, meta_lr=1.0, loss=loss, init_scale=1.0)
    method.start_epoch(method.warmup_epochs(), 0.05)
    model = copy.deepcopy(method.model)
    y_hat = method.label_logits[batch.index].clone()

    method.train_step(batch, iter([meta]))

    def train_loss(a):
        if loss == "kl":
            return lambda z: reverse_kl(z, a)
        return lambda z: -(torch.softmax(a, 1) * torch.log_softmax(z, 1)).sum() / z.numel()

    # the MSLG default inner step 0.5, not the SGD learning rate
    fd = central_differences(lambda a: meta_loss_after_lookahead(model, batch.x, train_loss(a), meta.x, meta.y, 0.5),
                             y_hat)
    got = y_hat - method.label_logits[batch.index]  # meta_lr = 1
    assert fd.abs().max() > 1e-6
    torch.testing.assert_close(got, fd, rtol=1e-5, atol=1e-11)


def test_gen_label_iteration_steps_with_the_updated_labels_and_keeps_other_instances(tmp_path, float64):
    method, batch, meta = small_setup(tmp_path, GenLabel)
    lr, c = 0.05, method.config
    method.start_epoch(method.warmup_epochs(), lr)
    model = copy.deepcopy(method.model)
    initial = method.label_logits.clone()

    method.train_step(batch, iter([meta]))

    y_new = method.label_logits[batch.index]
    assert not torch.equal(y_new, initial[batch.index])
    others = torch.ones(len(initial), dtype=torch.bool)
    others[batch.index] = False
    assert torch.equal(method.label_logits[others], initial[others])
    expected = sgd_first_step(model, lambda m: reverse_kl(m(batch.x), y_new) + entropy(m(batch.x)), lr, c.weight_decay)
    assert_same_parameters(method.model, expected)


# --- both ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [SoftLabel, GenLabel])
def test_reference_path_gives_the_same_update_as_the_fast_path(tmp_path, float64, cls):
    fast, batch, meta = small_setup(tmp_path / "a", cls, "jvp")
    ref, _, _ = small_setup(tmp_path / "b", cls, "reference")
    for m in (fast, ref):
        m.start_epoch(1, 0.05)  # after the Gen-label warm-up
        m.train_step(batch, iter([meta]))
    learned = "alpha" if cls is SoftLabel else "label_logits"
    torch.testing.assert_close(getattr(fast, learned), getattr(ref, learned), rtol=1e-8, atol=1e-12)
    assert_same_parameters(fast.model, ref.model)


@pytest.mark.parametrize("name", ["Soft-label", "Gen-label"])
def test_smoke_run_beats_chance(tmp_path, name):
    """Smoke test: two short epochs on Fashion-MNIST (Gen-label: one warm-up, one meta epoch)."""
    result = run(smoke(tmp_path, method=name), progress=False)
    assert result["final_accuracy"] > 20.0
    exports = np.load(run_directory(smoke(tmp_path, method=name)) / "exports.npz")
    if name == "Soft-label":
        assert exports["alpha"].shape == (400,) and (exports["alpha"] >= 0).all() and (exports["alpha"] <= 1).all()
    else:
        assert exports["label_logits"].shape == (400, C)
        np.testing.assert_allclose(exports["soft_labels"].sum(1), 1.0, rtol=1e-5)


def learned(state: dict) -> torch.Tensor:
    return state["alpha"] if "alpha" in state else state["label_logits"]


def moved(values: torch.Tensor) -> bool:
    """Whether the learned labels left their start (alpha = 0; label logits 10 e_y)."""
    return bool(((values != 0) & (values != 10)).any())


@pytest.mark.parametrize("name, interrupt_at", [("Soft-label", 2), ("Gen-label", 3)])
def test_resume_checkpoint_holds_learned_labels(tmp_path, monkeypatch, name, interrupt_at):
    """The interrupted run's checkpoint already holds moved labels, and resuming reproduces the
    uninterrupted run (Gen-label is interrupted after its first meta epoch; its first is warm-up)."""
    full, resumed = smoke(tmp_path / "a", method=name, epochs=3), smoke(tmp_path / "b", method=name, epochs=3)
    run(full, progress=False)
    checkpoints, real_save = [], train_module.save_torch
    monkeypatch.setattr(train_module, "save_torch", lambda path, obj: (checkpoints.append(obj), real_save(path, obj)))
    interrupt_then_resume(monkeypatch, resumed, interrupt_at)
    assert moved(learned(checkpoints[interrupt_at - 2]["method"]))  # the checkpoint resumed from
    assert_same_run(full, resumed)
