"""GLC: the corruption-matrix estimate on data with a known matrix, the corrected loss's logit
gradient against autograd, the phase switch (epoch, reset, schedule, gold examples), one
phase-2 step against autograd of the closed-form loss, smoke and resume runs across phases."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gdwlib import train as train_module
from gdwlib.data.batches import Pipeline, Split
from gdwlib.data.build import TrainingData, build_data
from gdwlib.methods.glc import GLC, ExampleStream, corrected_logit_gradient, estimate_corruption, gold_due, phase_lengths
from gdwlib.profiles import profile_config

from conftest import assert_same_run, interrupt_then_resume

CPU = torch.device("cpu")




def smoke(tmp_path, **fields):
    return profile_config("smoke", "fashion-mnist", results_dir=str(tmp_path), device="cpu", method="GLC", **fields)


def _row_stochastic(m):
    return m / m.sum(dim=1, keepdim=True)


# ----- the estimate --------------------------------------------------------------------------

def test_estimate_recovers_a_known_corruption_matrix(tmp_path):
    """A perfect classifier of the true label composed with a known corruption C outputs C[y]
    (logits log C[y, :] from one-hot inputs). Its estimate on a meta set with uneven class
    counts is C to float32 round-off (1e-6); class 3, absent from the meta set, gets row e_3."""
    C_true = _row_stochastic(torch.rand(5, 5) + 2 * torch.eye(5))
    labels = torch.tensor([0] * 7 + [1] * 2 + [2] * 5 + [4] * 1)
    images = (255 * F.one_hot(labels, 5)).to(torch.uint8).reshape(-1, 1, 1, 5)
    split = Split(images, labels, labels)
    config = smoke(tmp_path, batch_size=4, epochs=2)
    data = TrainingData(train=split, meta=split, test=split, num_classes=5,
                        pipeline=Pipeline(mean=(0.0,), std=(1.0,)), config=config)
    method = GLC(config, data, CPU)
    method.model = nn.Sequential(nn.Flatten(), nn.Linear(5, 5, bias=False))
    with torch.no_grad():
        method.model[1].weight.copy_(C_true.log().T)
    method.initial = copy.deepcopy(method.model.state_dict())
    method.start_epoch(1, 0.1)  # the first epoch of phase 2
    expected = C_true.clone()
    expected[3] = torch.eye(5)[3]
    torch.testing.assert_close(method.corruption, expected, rtol=0, atol=1e-6)


def test_estimate_is_the_per_class_mean_of_the_outputs():
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(40, 4, generator=g, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 3, (40,), generator=g)  # class 3 absent
    expected = np.eye(4)
    for i in range(3):
        expected[i] = np.mean([probs[j].numpy() for j in range(40) if labels[j] == i], axis=0)
    np.testing.assert_allclose(estimate_corruption(probs, labels, 4).numpy(), expected, rtol=1e-12)


# ----- the corrected loss --------------------------------------------------------------------

def test_corrected_logit_gradient_equals_autograd_of_the_closed_form():
    """d/dz [-log (C^T softmax z)_s] by autograd (float64) = p_k (1 - C[k, s] / q_s), also with a
    zero entry in C and logits 40 apart."""
    g = torch.Generator().manual_seed(2)
    C = _row_stochastic(torch.rand(5, 5, generator=g, dtype=torch.float64) + 2 * torch.eye(5, dtype=torch.float64))
    C[1, 3] = 0.0
    z = 4 * torch.randn(12, 5, generator=g, dtype=torch.float64)
    z[0, 2] += 40.0
    s = torch.randint(0, 5, (12,), generator=g)
    s[1] = 3
    z.requires_grad_(True)
    (-torch.log((torch.softmax(z, 1) @ C)[torch.arange(12), s])).sum().backward()
    got = corrected_logit_gradient(z.detach(), s, C)
    torch.testing.assert_close(got, z.grad, rtol=1e-10, atol=1e-14)
    p = torch.softmax(z.detach(), 1)
    q = (p @ C)[torch.arange(12), s]
    torch.testing.assert_close(got, p * (1 - C[:, s].T / q[:, None]), rtol=1e-10, atol=1e-14)


def test_corrected_gradient_is_cross_entropy_gradient_without_corruption():
    g = torch.Generator().manual_seed(3)
    z, s = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (6,), generator=g)
    torch.testing.assert_close(corrected_logit_gradient(z, s, torch.eye(4, dtype=torch.float64)),
                               torch.softmax(z, 1) - F.one_hot(s, 4).double())


# ----- phases --------------------------------------------------------------------------------

def test_phase_lengths():
    assert phase_lengths(80, 0.5) == (40, 40)
    assert phase_lengths(3, 0.5) == (1, 2)
    assert phase_lengths(2, 0.9) == (1, 1)
    assert phase_lengths(10, 0.25) == (2, 8)
    with pytest.raises(ValueError, match="epochs >= 2"):
        phase_lengths(1, 0.5)
    with pytest.raises(ValueError, match="phase1_fraction"):
        phase_lengths(10, 1.0)


def test_example_stream_cuts_exact_sizes_in_order(tmp_path):
    data = build_data(smoke(tmp_path))
    stream = data.meta_batches(0)  # 50 meta images in batches of 50, reshuffled at each pass
    examples = ExampleStream(data.meta_batches(0))
    sizes = [7, 1, 30, 50, 17]
    chunks = [examples.take(k) for k in sizes]
    assert [len(c) for c in chunks] == sizes
    first_passes = torch.cat([next(stream).index, next(stream).index, next(stream).index])
    assert torch.equal(torch.cat([c.index for c in chunks]), first_passes[:105])


def test_gold_share_of_cifar_batches_is_that_of_the_union():
    """1000 gold and 49,000 silver, batches of 100 (the last of an epoch too): each batch gets 2 or
    3 gold images (2.04 on average, 2.0% of the union), the running total stays within one image
    of the exact share, and the epoch holds exactly the 1000."""
    M, N, b = 1000, 49_000, 100
    counts = [gold_due(s + b, M, N) - gold_due(s, M, N) for s in range(0, N, b)]
    assert set(counts) == {2, 3} and sum(counts) == M
    running = np.cumsum(counts)
    exact = np.arange(1, len(counts) + 1) * b * M / N
    assert np.all((exact - running >= 0) & (exact - running < 1))
    assert sum(counts) / (sum(counts) + N) == pytest.approx(0.02)


def test_each_phase2_epoch_holds_every_gold_image_once(tmp_path):
    """Smoke: 400 silver, 50 gold, batches of 50: 6.25 gold per batch, 50 in all, each image once
    (``ceil`` would give 7 per batch, 56 in all)."""
    config = smoke(tmp_path, epochs=2)
    data = build_data(config)
    method = GLC(config, data, CPU)
    method.start_epoch(1, method.learning_rate(1))
    batches = list(method.batches(1))
    assert [b.num_gold for b in batches] == [6, 6, 6, 7, 6, 6, 6, 7]
    gold = torch.cat([b.index[len(b) - b.num_gold:] for b in batches])
    assert sorted(gold.tolist()) == list(range(50))
    silver = torch.cat([b.index[:len(b) - b.num_gold] for b in batches])
    assert sorted(silver.tolist()) == list(range(400))


def test_phase_switch_at_the_right_epoch_resets_the_network_and_estimates_the_matrix(tmp_path):
    lr = 0.1
    config = smoke(tmp_path, epochs=4)
    data = build_data(config)
    method = GLC(config, data, CPU)
    initial = copy.deepcopy(method.model.state_dict())
    assert [method.learning_rate(e) for e in range(4)] == pytest.approx([lr, lr / 2, lr, lr / 2])

    for epoch in (0, 1):
        method.start_epoch(epoch, method.learning_rate(epoch))
        assert method.corruption is None
        for i, batch in enumerate(method.batches(epoch)):
            assert len(batch) <= config.batch_size and (batch.y == data.train.labels[batch.index]).all()
            method.train_step(batch, None)
    phase1 = copy.deepcopy(method.model).eval()
    assert not torch.equal(phase1.state_dict()["net.1.weight"], initial["net.1.weight"])

    method.start_epoch(2, method.learning_rate(2))
    for k, v in initial.items():
        assert torch.equal(method.model.state_dict()[k], v)
    assert method.optimizer.state_dict()["state"] == {}  # a fresh optimiser: no momentum buffer
    with torch.no_grad():
        probs = torch.softmax(phase1(data.pipeline(data.meta.images, None)), dim=1).numpy()
    labels = data.meta.labels.numpy()
    expected = np.stack([probs[labels == i].mean(axis=0) for i in range(10)])
    np.testing.assert_allclose(method.corruption.numpy(), expected, rtol=1e-5, atol=1e-7)

    k = config.batch_size * len(data.meta) // len(data.train)  # 50 * 50 / 400 = 6.25 -> 6 in the first batch
    batch = next(iter(method.batches(2)))
    silver = len(batch) - k
    assert batch.num_gold == k and silver == config.batch_size
    assert torch.equal(batch.y[:silver], data.train.labels[batch.index[:silver]])
    assert torch.equal(batch.y[silver:], data.meta.labels[batch.index[silver:]])
    assert torch.equal(batch.x[silver:], data.pipeline(data.meta.images[batch.index[silver:]], None))

    method.start_epoch(3, method.learning_rate(3))  # no second switch
    assert torch.equal(method.model.state_dict()["net.1.weight"], initial["net.1.weight"])


def test_phase2_step_is_sgd_on_the_closed_form_loss(tmp_path):
    """(sum_silver -log (C^T p)_s + sum_gold CE) / (number of examples), by autograd."""
    config = smoke(tmp_path, epochs=2)
    data = build_data(config)
    method = GLC(config, data, CPU)
    method.start_epoch(1, 0.05)
    method.corruption = _row_stochastic(torch.rand(10, 10) + 5 * torch.eye(10))
    batch = next(iter(method.batches(1)))
    model, C, silver = copy.deepcopy(method.model), method.corruption.clone(), len(batch) - batch.num_gold
    method.train_step(batch, None)

    p = torch.softmax(model.train()(batch.x), dim=1)
    silver_loss = -torch.log((p[:silver] @ C)[torch.arange(silver), batch.y[:silver]]).sum()
    gold_loss = -torch.log(p[silver:][torch.arange(batch.num_gold), batch.y[silver:]]).sum()
    params = list(model.parameters())
    grads = torch.autograd.grad((silver_loss + gold_loss) / len(batch), params)
    for got, p0, g in zip(method.model.parameters(), params, grads):
        torch.testing.assert_close(got, p0 - 0.05 * (g + config.weight_decay * p0), rtol=1e-5, atol=1e-7)


# ----- runs ----------------------------------------------------------------------------------

def test_smoke_run_beats_chance(tmp_path):
    """Smoke test: one epoch per phase on Fashion-MNIST, better than chance; the matrix is exported."""
    result = train_module.run(smoke(tmp_path), progress=False)
    assert result["final_accuracy"] > 20.0
    C = np.load(train_module.run_directory(smoke(tmp_path)) / "exports.npz")["corruption_matrix"]
    assert C.shape == (10, 10) and np.allclose(C.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("interrupted_epoch", [2, 3, 4], ids=["in-phase-1", "at-the-switch", "in-phase-2"])
def test_resume_across_the_phase_boundary_equals_uninterrupted_run(tmp_path, monkeypatch, interrupted_epoch):
    """4 epochs, 2 per phase; the run is interrupted during epoch 2 (checkpoint after epoch 1, in
    phase 1), 3 (checkpoint after phase 1's last epoch) or 4 (checkpoint in phase 2)."""
    full, resumed = smoke(tmp_path / "a", epochs=4), smoke(tmp_path / "b", epochs=4)
    train_module.run(full, progress=False)
    interrupt_then_resume(monkeypatch, resumed, interrupted_epoch)
    assert_same_run(full, resumed)
