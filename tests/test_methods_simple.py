"""Focal, Balanced, Fine-tuning and Co-teach: their logit gradients against autograd and closed
forms, Fine-tuning's reuse of BaseModel, Co-teaching's small-loss exchange, smoke and resume runs."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gdwlib import train as train_module
from gdwlib.data.batches import Batch
from gdwlib.data.build import build_data
from gdwlib.methods.coteach import CoTeaching
from gdwlib.methods.finetune import FineTuning
from gdwlib.methods.losses import Balanced, Focal, class_balanced_weights, focal_logit_gradient, focal_loss
from gdwlib.profiles import profile_config

CPU = torch.device("cpu")




def smoke(tmp_path, **fields):
    return profile_config("smoke", "fashion-mnist", results_dir=str(tmp_path), device="cpu", **fields)


def random_problem(n=12, C=5, scale=3.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    return scale * torch.randn(n, C, generator=g, dtype=dtype), torch.randint(0, C, (n,), generator=g)


# ----- Focal ---------------------------------------------------------------------------------

def test_focal_gradient_at_gamma_0_is_cross_entropy_gradient():
    z, y = random_problem()
    expected = torch.softmax(z, 1) - F.one_hot(y, 5).double()
    torch.testing.assert_close(focal_logit_gradient(z, y, 0.0), expected, rtol=1e-12, atol=1e-14)


def test_focal_loss_at_gamma_0_is_cross_entropy():
    z, y = random_problem()
    torch.testing.assert_close(focal_loss(z, y, 0.0), F.cross_entropy(z, y, reduction="none"))


@pytest.mark.parametrize("gamma", [0.25, 0.5, 1.0, 2.0, 3.5])
def test_focal_gradient_equals_autograd_of_the_focal_loss(gamma):
    z, y = random_problem()
    z.requires_grad_(True)
    p_t = torch.softmax(z, 1)[torch.arange(len(y)), y]
    (-(1 - p_t) ** gamma * torch.log(p_t)).sum().backward()
    torch.testing.assert_close(focal_logit_gradient(z.detach(), y, gamma), z.grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0, 2.0])
def test_focal_gradient_is_accurate_when_the_target_is_nearly_certain(gamma):
    """Target logit 30 above the others (float32): q = 1 - p_t = 4 e^-30 to first order, and the
    gradient is (1 + gamma) q^gamma (p - y) (as log(p_t)/q -> -1); where p_t rounds to exactly 1
    the gradient is 0, not NaN, also for gamma < 1."""
    z = torch.zeros(2, 5)
    z[0, 2], z[1, 2] = 30.0, 300.0
    y = torch.tensor([2, 2])
    G = focal_logit_gradient(z, y, gamma)
    q = 4 * math.exp(-30)
    expected = (1 + gamma) * q ** gamma * torch.tensor([math.exp(-30)] * 2 + [-q] + [math.exp(-30)] * 2)
    torch.testing.assert_close(G[0], expected, rtol=1e-5, atol=0)
    assert torch.equal(G[1], torch.zeros(5))


def test_focal_refuses_negative_gamma():
    z, y = random_problem()
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        focal_logit_gradient(z, y, -1.0)


# ----- Balanced ------------------------------------------------------------------------------

def test_class_balanced_weights_hand_worked_and_formula():
    # counts (1, 2), beta 1/2: raw weights 0.5/0.5 = 1 and 0.5/0.75 = 2/3, rescaled to sum 2
    torch.testing.assert_close(class_balanced_weights([1, 2], 0.5), torch.tensor([1.2, 0.8], dtype=torch.float64))
    counts = np.array([5000, 2000, 500, 50, 5])
    for beta in (0.9, 0.99, 0.9999):
        effective = np.array([sum(beta ** j for j in range(n)) for n in counts])  # 1 + beta + ... + beta^(n-1)
        expected = (1 / effective) / (1 / effective).sum() * len(counts)
        w = class_balanced_weights(counts, beta)
        np.testing.assert_allclose(w.numpy(), expected, rtol=1e-9)
        assert w.sum().item() == pytest.approx(5)
    assert torch.equal(class_balanced_weights(counts, 0.0), torch.ones(5, dtype=torch.float64))


def test_class_balanced_weights_give_an_empty_class_weight_zero():
    """A class without examples is never a target; it gets weight 0, the others mean 1."""
    w = class_balanced_weights([3, 0, 1], 0.9)
    raw = np.array([0.1 / (1 - 0.9 ** 3), 0.1 / (1 - 0.9)])
    np.testing.assert_allclose(w.numpy(), [*(raw / raw.sum() * 2)[:1], 0.0, *(raw / raw.sum() * 2)[1:]], rtol=1e-12)
    assert torch.equal(class_balanced_weights([3, 0, 1], 0.0), torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="beta must lie in"):
        class_balanced_weights([3, 1], 1.0)


def test_balanced_logit_gradient_equals_autograd_of_weighted_cross_entropy(tmp_path):
    config = smoke(tmp_path, method="Balanced", imbalance=0.1, noise="none", options={"beta": 0.99})
    data = build_data(config)
    counts = np.bincount(data.train.labels.numpy(), minlength=10)
    assert counts.max() > 5 * counts.min()
    w = 1 / np.array([sum(0.99 ** j for j in range(n)) for n in counts])
    w = torch.tensor(w / w.sum() * 10, dtype=torch.float32)
    method = Balanced(config, data, CPU)
    z, y = random_problem(n=20, C=10, dtype=torch.float32)
    z.requires_grad_(True)
    (w[y] * F.cross_entropy(z, y, reduction="none")).mean().backward()
    batch = Batch(torch.zeros(20, 1, 28, 28), y, y, torch.arange(20))
    torch.testing.assert_close(method.logit_gradient(z.detach(), batch), z.grad)


def test_focal_method_sends_the_batch_mean_focal_gradient(tmp_path):
    config = smoke(tmp_path, method="Focal", options={"gamma": 2.0})
    method = Focal(config, build_data(config), CPU)
    z, y = random_problem(n=20, C=10, dtype=torch.float32)
    z.requires_grad_(True)
    p_t = torch.softmax(z, 1)[torch.arange(20), y]
    (-(1 - p_t) ** 2 * torch.log(p_t)).mean().backward()
    batch = Batch(torch.zeros(20, 1, 28, 28), y, y, torch.arange(20))
    torch.testing.assert_close(method.logit_gradient(z.detach(), batch), z.grad)


# ----- Fine-tuning ---------------------------------------------------------------------------

def model_file(config):
    return torch.load(train_module.run_directory(config) / "model.pt", weights_only=True)


def test_fine_tuning_starts_from_an_existing_base_model_without_retraining_it(tmp_path, monkeypatch):
    base = train_module.run(smoke(tmp_path, method="BaseModel"), progress=False)
    config = smoke(tmp_path, method="Fine-tuning", options={"epochs": 1, "lr": 0.01})
    real_run = train_module.run

    def no_base_training(c, **kwargs):
        assert c.method != "BaseModel", "BaseModel was trained again although its result exists"
        return real_run(c, **kwargs)

    monkeypatch.setattr(train_module, "run", no_base_training)
    data = build_data(config)
    start = model_file(smoke(tmp_path, method="BaseModel"))
    method = FineTuning(config, data, CPU)
    method.start_from([train_module.run_directory(smoke(tmp_path, method="BaseModel"))])
    state = method.model.state_dict()
    assert state.keys() == start.keys() and all(torch.equal(state[k], start[k]) for k in start)

    # one epoch = one step on the whole 50-image meta set (batch 50, no augmentation in smoke):
    # SGD from BaseModel's weights with the first momentum buffer equal to the gradient
    assert len(data.meta) == config.batch_size and not config.augment
    reference = copy.deepcopy(method.model).train()
    loss = F.cross_entropy(reference(data.pipeline(data.meta.images, None)), data.meta.labels)
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    result = no_base_training(config, progress=False)
    assert [h["lr"] for h in result["history"]] == [0.01]
    got = model_file(config)
    for (name, p), g in zip(reference.named_parameters(), grads):
        torch.testing.assert_close(got[name], p.detach() - 0.01 * (g + config.weight_decay * p.detach()),
                                   rtol=1e-5, atol=1e-6)
    assert train_module.find_result(smoke(tmp_path, method="BaseModel")) == base


def test_the_method_layer_does_not_import_the_trainer():
    """Methods get what they start from through ``requirements`` and ``start_from``: no module
    of ``gdwlib.methods`` imports the trainer or the sweep, not even inside a function."""
    import ast
    from pathlib import Path

    import gdwlib.methods

    upward = {"train", "sweep", "experiments", "report"}
    for path in Path(gdwlib.methods.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {node.module or ""} | {a.name for a in node.names if node.level and not node.module}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            else:
                continue
            assert not {n.split(".")[-1] for n in names} & upward, f"{path.name} imports {names}"


def test_fine_tuning_trains_a_missing_base_model_once(tmp_path, monkeypatch):
    standalone = train_module.run(smoke(tmp_path / "alone", method="BaseModel"), progress=False)
    real_run, base_runs = train_module.run, []

    def counting(c, **kwargs):
        base_runs.extend([c] if c.method == "BaseModel" else [])
        return real_run(c, **kwargs)

    monkeypatch.setattr(train_module, "run", counting)
    result = counting(smoke(tmp_path / "ft", method="Fine-tuning", options={"epochs": 2}), progress=False)
    assert len(base_runs) == 1 and base_runs[0] == smoke(tmp_path / "ft", method="BaseModel")
    nested = train_module.find_result(base_runs[0])
    assert [h["test_accuracy"] for h in nested["history"]] == [h["test_accuracy"] for h in standalone["history"]]
    assert len(result["history"]) == 2 and all(h["lr"] == 1e-3 for h in result["history"])


# ----- Co-teach ------------------------------------------------------------------------------

def test_co_teach_networks_start_independent(tmp_path):
    config = smoke(tmp_path, method="Co-teach")
    data = build_data(config)
    a, b = CoTeaching(config, data, CPU), CoTeaching(config, data, CPU)
    w1, w2 = a.model.state_dict(), a.model2.state_dict()
    assert not any(torch.equal(w1[k], w2[k]) for k in w1 if w1[k].dim() == 2)
    assert all(torch.equal(w2[k], b.model2.state_dict()[k]) for k in w2)


def test_co_teach_updates_each_network_on_its_partners_small_loss_set(tmp_path, monkeypatch):
    """Every step of a 4-epoch run (tau = 0.5, T_k = 2, batch 50): k = int((1 - min(e/2 * 0.5, 0.5)) 50)
    = 50, 37, 25, 25, and each network's logit gradient is (p - y)/k exactly on the k instances of
    smallest loss under the other network (losses recomputed here on copies), 0 elsewhere."""
    expected_k = {0: 50, 1: 37, 2: 25, 3: 25}
    seen = {"epoch": None, "steps": []}
    real_start, real_step = CoTeaching.start_epoch, CoTeaching.train_step

    def start(self, epoch, lr):
        seen["epoch"] = epoch
        real_start(self, epoch, lr)

    def step(self, batch, meta):
        copies = [copy.deepcopy(m).train() for m in (self.model, self.model2)]
        with torch.no_grad():
            logits = [m(batch.x) for m in copies]
        losses = [-torch.log_softmax(z, 1)[torch.arange(len(batch)), batch.y] for z in logits]
        grads = []

        def record_logit_gradient(module, inputs, out):
            out.register_hook(grads.append)

        hooks = [m.register_forward_hook(record_logit_gradient) for m in (self.model, self.model2)]
        loss = real_step(self, batch, meta)
        for h in hooks:
            h.remove()
        k = expected_k[seen["epoch"]]
        for own, partner, G in ((0, 1, grads[0]), (1, 0, grads[1])):
            smallest = set(np.argsort(losses[partner].numpy(), kind="stable")[:k].tolist())
            assert set(torch.nonzero(G.abs().sum(1)).flatten().tolist()) == smallest
            rows = sorted(smallest)
            d1 = torch.softmax(logits[own], 1) - F.one_hot(batch.y, 10).float()
            torch.testing.assert_close(G[rows], d1[rows] / k, rtol=1e-5, atol=1e-7)
        seen["steps"].append(seen["epoch"])
        return loss

    monkeypatch.setattr(CoTeaching, "start_epoch", start)
    monkeypatch.setattr(CoTeaching, "train_step", step)
    config = smoke(tmp_path, method="Co-teach", epochs=4, options={"forget_rate": 0.5, "num_gradual": 2})
    train_module.run(config, progress=False)
    assert seen["steps"] == [e for e in range(4) for _ in range(8)]


def test_co_teach_schedule_length_scales_with_the_epochs(tmp_path):
    """T_k defaults to an eighth of the epochs: the authors' 10 in GDW's 80-epoch setting."""
    for epochs, expected in ((80, 10), (12, 2), (4, 1)):
        config = smoke(tmp_path, method="Co-teach", epochs=epochs)
        assert CoTeaching(config, build_data(config), CPU).num_gradual == expected


def test_co_teach_forget_rate_is_the_settings_noise_rate_or_a_stated_estimate(tmp_path):
    """Known noise: the ratio; no noise added: clean_forget_rate (0.2, never 0, which would make
    Co-teaching two BaseModels); Clothing1M: 1 - 0.6154 (Xiao et al.); an explicit rate wins."""
    def tau(**fields):
        config = smoke(tmp_path, method="Co-teach", **fields)
        return CoTeaching(config, build_data(config), CPU).tau

    assert tau(noise="uniform", ratio=0.6) == 0.6
    assert tau(noise="flip", ratio=0.2) == 0.2
    assert tau(noise="none") == 0.2
    assert tau(noise="none", options={"clean_forget_rate": 0.1}) == 0.1
    assert tau(noise="uniform", ratio=0.4, options={"forget_rate": 0.3}) == 0.3
    from gdwlib.methods.coteach import setting_forget_rate
    clothing = profile_config("paper", "clothing1m", method="Co-teach")
    assert setting_forget_rate(clothing, 0.2) == pytest.approx(1 - 0.6154)


def test_co_teach_drops_the_hardest_fifth_on_clean_labels(tmp_path):
    """On a clean training set, once the schedule has reached tau = 0.2 (epoch T_k = 1 of 2 here),
    each network keeps int(0.8 * 50) = 40 instances per batch."""
    config = smoke(tmp_path, method="Co-teach", noise="none", options={"num_gradual": 1})
    method = CoTeaching(config, build_data(config), CPU)
    method.start_epoch(1, 0.1)
    batch = next(iter(method.batches(1)))
    grads = []

    def record_logit_gradient(module, inputs, out):
        out.register_hook(grads.append)

    for m in (method.model, method.model2):
        m.register_forward_hook(record_logit_gradient)
    method.train_step(batch, None)
    assert [int((G.abs().sum(1) > 0).sum()) for G in grads] == [40, 40]
