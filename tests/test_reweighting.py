"""The public API (gdwlib.GDW, MWNet, L2RW, InstanceWeights, carve_meta_set): the step a user's
loop calls is the book's step; it is Algorithm 1 on any classifier (checked against the double
backward and against autograd with Adam); the recorder's means are hand-checked."""
import copy
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gdwlib
from gdwlib.config import RunConfig
from gdwlib.data.batches import Batch
from gdwlib.data.build import build_data
from gdwlib.gradients import D1
from gdwlib.methods import get_method
from gdwlib.profiles import profile_config
from gdwlib.reweighting import StepWeights

from conftest import write_fashion_mnist_stand_in

DEFAULTS = RunConfig()


def as64(b: Batch) -> Batch:
    return Batch(b.x.double(), b.y, b.y_true, b.index)


def book_method(name, tmp_path):
    """The book's method ``name`` (registry, trainer's set-up) with RunConfig's defaults for every
    field the API has a default for, in float64, at its first epoch."""
    data_dir = write_fashion_mnist_stand_in(tmp_path / "fmnist")
    config = profile_config("smoke", "fashion-mnist", method=name, data_dir=str(data_dir), results_dir=str(tmp_path),
                            device="cpu", outer_lr=DEFAULTS.outer_lr)
    data = build_data(config, torch.device("cpu"))
    method = get_method(name)(config, data, torch.device("cpu"))
    for value in vars(method).values():
        if isinstance(value, nn.Module):
            value.double()
    method.start_epoch(0, 0.07)
    return method, as64(next(iter(method.batches(0)))), as64(next(data.meta_batches(0)))


@pytest.mark.parametrize("name", ["GDW", "MWNet", "L2RW"])
def test_the_api_step_is_the_books_step(float64, tmp_path, name):
    """A user's copy of the model and optimiser, the API object with its own defaults: one step
    gives the update the book's method gives from the same state."""
    method, batch, meta = book_method(name, tmp_path)
    model = copy.deepcopy(method.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    optimizer.load_state_dict(method.optimizer.state_dict())   # lr 0.07, momentum, weight decay
    api = getattr(gdwlib, name)(model, optimizer)
    api.load_state_dict(copy.deepcopy(method.reweighter.state_dict()))
    loss_book = method.train_step(batch, iter([meta]))
    loss_api = api.step(batch.x, batch.y, meta.x, meta.y)
    assert loss_api.item() == loss_book.item()
    for a, b in zip(model.parameters(), method.model.parameters()):
        assert torch.equal(a, b)
    if name != "L2RW":
        for a, b in zip(api.vnet.parameters(), method.vnet.parameters()):
            assert torch.equal(a, b)


class Tabular(nn.Module):
    """A user's own classifier: tabular input, BatchNorm in train mode."""

    def __init__(self, features=7, classes=4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x):
        return self.net(x)


class OddConv(nn.Module):
    """Another: 3 x 17 x 13 images, BatchNorm2d, global pooling."""

    def __init__(self, classes=4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(5, classes)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def user_batches(net, n=12, classes=4):
    shape = (7,) if isinstance(net, Tabular) else (3, 17, 13)
    return (torch.randn(n, *shape), torch.randint(0, classes, (n,)), torch.randn(n, *shape),
            torch.randint(0, classes, (n,)))


@pytest.mark.parametrize("name", ["GDW", "MWNet", "L2RW"])
@pytest.mark.parametrize("net", [Tabular, OddConv])
def test_any_classifier_matches_the_double_backward(float64, name, net):
    """The fast meta gradient (J v off the graph, or forward mode) against the classic double
    backward, on classifiers the package never saw: the same update."""
    x, y, xm, ym = user_batches(net())
    updated = []
    for meta_method in ("jvp", "reference"):
        torch.manual_seed(3)
        model = net()
        api = getattr(gdwlib, name)(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                                    meta_method=meta_method)
        for _ in range(2):
            api.step(x, y, xm, ym)
        updated.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert ((updated[0] - updated[1]).norm() / updated[1].norm()).item() < 1e-10


def test_adam_makes_the_real_update_from_eq_12(float64):
    """Step 3 with Adam: the first step moves each parameter by -lr g / (|g| + eps), where
    g = D2^T G with G = omega' (x) D1 / n (Eq. 12), computed here by autograd."""
    x, y, xm, ym = user_batches(Tabular())
    model = Tabular()
    before = copy.deepcopy(model)
    lr, eps = 1e-3, 1e-2   # eps comparable to |g|: the update then depends on the scale of G too
    gdw = gdwlib.GDW(model, torch.optim.Adam(model.parameters(), lr=lr, eps=eps), lookahead_lr=0.1)
    gdw.step(x, y, xm, ym)
    logits = before.train()(x)
    G = gdw.last.omega_prime * D1(logits.detach(), y, clamp_max=DEFAULTS.clamp_max) / len(x)
    grads = torch.autograd.grad((logits * G).sum(), list(before.parameters()))
    for p0, p1, g in zip(before.parameters(), model.parameters(), grads):
        assert torch.allclose(p1 - p0, -lr * g / (g.abs() + eps), atol=1e-12)


def test_the_lookahead_step_size_follows_the_optimiser_unless_given():
    model = Tabular()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    gdw = gdwlib.GDW(model, optimizer)
    optimizer.param_groups[0]["lr"] = 0.05   # as a scheduler would
    assert gdw.current_lookahead_lr() == 0.05
    assert gdwlib.GDW(model, optimizer, lookahead_lr=0.2).current_lookahead_lr() == 0.2


def test_bad_input_says_what_is_wrong():
    model = Tabular()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        gdwlib.GDW(lambda x: x, optimizer)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        gdwlib.GDW(model, 0.1)
    with pytest.raises(ValueError, match="lookahead_lr"):
        gdwlib.MWNet(model, optimizer, lookahead_lr=0)
    with pytest.raises(ValueError, match="omega_lr"):
        gdwlib.GDW(model, optimizer, step_rule="paper")
    gdw = gdwlib.GDW(model, optimizer, recorder=gdwlib.InstanceWeights(100, 4))
    gdw.recorder.start_epoch(0)
    with pytest.raises(ValueError, match="pass `index`"):
        gdw.step(*user_batches(model))
    x, y, xm, ym = user_batches(model)
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
        gdw.step(x, y + 4, xm, ym, index=torch.arange(12))


# ----- the recorder ------------------------------------------------------------------------------

def weights(losses, w, rows=None):
    t = lambda v: None if v is None else torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return StepWeights(t(losses), t(w), t(rows), t(rows))


def test_instance_weights_by_hand():
    rec = gdwlib.InstanceWeights(4, 3, average_from_epoch=1, keep_epochs=True)
    labels = torch.tensor([0, 2])
    rec.start_epoch(0)   # outside the averaging window
    rec.record(torch.tensor([0, 1]), labels, weights([9.0, 9.0], [9.0, 9.0], [[9.0, 9, 9], [9, 9, 9]]))
    rec.end_epoch()
    rec.start_epoch(1)
    rec.record(torch.tensor([0, 1]), labels, weights([1.0, 2.0], [0.5, 0.25], [[0.2, 1.0, 1.0], [1.0, 1.0, 0.4]]))
    rec.end_epoch()
    rec.start_epoch(2)   # instance 1 not seen this epoch; instance 3 never
    rec.record(torch.tensor([0, 2]), labels, weights([3.0, 4.0], [1.0, 0.75], [[0.6, 1.0, 1.0], [1.0, 1.0, 0.8]]))
    rec.end_epoch()
    a = rec.arrays()
    nan = float("nan")
    # instance 0: epochs 1 and 2 -> target (0.2 + 0.6) / 2, loss (1 + 3) / 2, w (0.5 + 1) / 2
    np.testing.assert_allclose(a["mean_target_weight"], [0.4, 0.4, 0.8, nan])
    np.testing.assert_allclose(a["mean_loss"], [2.0, 2.0, 4.0, nan])
    np.testing.assert_allclose(a["mean_instance_weight"], [0.75, 0.25, 0.75, nan])
    np.testing.assert_allclose(a["mean_rows"][0], [0.4, 1.0, 1.0])
    np.testing.assert_array_equal(a["epochs_averaged"], [2, 1, 1, 0])
    np.testing.assert_allclose(a["target_weight_per_epoch"][:, 1], [9.0, 0.4, nan])
    assert rec.epochs_averaged == [1, 2]


def test_instance_weights_of_a_method_without_class_level_weights_are_nan_not_zero():
    rec = gdwlib.InstanceWeights(2, 3)
    rec.start_epoch(0)
    rec.record(torch.tensor([0, 1]), torch.tensor([0, 1]), weights([1.0, 2.0], [0.5, 0.5]))   # L2RW
    rec.end_epoch()
    a = rec.arrays()
    assert np.isnan(a["mean_target_weight"]).all() and np.isnan(a["mean_rows"]).all()
    np.testing.assert_allclose(a["mean_instance_weight"], [0.5, 0.5])


def test_instance_weights_resume_from_their_state():
    def epoch(rec, e):
        rec.start_epoch(e)
        rec.record(torch.tensor([1]), torch.tensor([0]), weights([float(e)], [0.1 * e], [[0.1 * e, 1.0]]))
        rec.end_epoch()

    whole, first = gdwlib.InstanceWeights(3, 2), gdwlib.InstanceWeights(3, 2)
    for e in range(3):
        epoch(whole, e)
    epoch(first, 0)
    resumed = gdwlib.InstanceWeights(3, 2)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    for e in (1, 2):
        epoch(resumed, e)
    for k, v in whole.arrays().items():
        np.testing.assert_array_equal(v, resumed.arrays()[k])


def test_the_recorder_sees_every_instance_of_an_epoch_through_the_api(float64):
    model = Tabular()
    rec = gdwlib.InstanceWeights(24, 4)
    gdw = gdwlib.GDW(model, torch.optim.SGD(model.parameters(), lr=0.1), recorder=rec)
    x, y = torch.randn(24, 7), torch.randint(0, 4, (24,))
    rec.start_epoch(0)
    for index in torch.arange(24).split(12):
        gdw.step(x[index], y[index], x[:6], y[:6], index=index)
    rec.end_epoch()
    a = rec.arrays()
    assert (a["epochs_averaged"] == 1).all() and np.isfinite(a["mean_target_weight"]).all()
    np.testing.assert_allclose(a["mean_target_weight"][12:],
                               gdw.last.omega_prime.gather(1, y[12:, None]).squeeze(1).numpy(), rtol=1e-6)


# ----- the meta set ------------------------------------------------------------------------------

def test_carve_a_meta_set_by_budget_or_trusted_indices():
    labels = np.repeat(np.arange(3), [5, 4, 6])
    meta, train = gdwlib.carve_meta_set(labels, per_class=2, seed=1)
    assert np.bincount(labels[meta]).tolist() == [2, 2, 2]
    assert sorted(itertools.chain(meta, train)) == list(range(15))
    meta, train = gdwlib.carve_meta_set(labels, trusted=[0, 5, 14])
    assert meta.tolist() == [0, 5, 14] and len(train) == 12 and not set(meta) & set(train)
    with pytest.raises(ValueError, match="class 1 has 4 examples, fewer than the 5"):
        gdwlib.carve_meta_set(labels, per_class=5)
    with pytest.raises(ValueError, match=r"no trusted instance of class\(es\) \[2\]"):
        gdwlib.carve_meta_set(labels, trusted=[0, 5])
    with pytest.raises(ValueError, match="exactly one"):
        gdwlib.carve_meta_set(labels)
    with pytest.raises(ValueError, match="twice"):
        gdwlib.carve_meta_set(labels, trusted=[0, 0, 5, 14])
    with pytest.raises(ValueError, match="outside"):
        gdwlib.carve_meta_set(labels, trusted=[0, 5, 15])


def test_cross_entropy_reported_is_the_unweighted_mean(float64):
    model = Tabular()
    x, y, xm, ym = user_batches(model)
    expected = F.cross_entropy(copy.deepcopy(model).train()(x), y)
    loss = gdwlib.MWNet(model, torch.optim.SGD(model.parameters(), lr=0.1)).step(x, y, xm, ym)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
