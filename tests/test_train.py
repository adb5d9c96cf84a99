"""The training engine: resume after interruption, no retraining, NaN handling, one GDW and one
MW-Net iteration against a step-by-step reference, and smoke runs."""
import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gdwlib import train as train_module
from gdwlib.bilevel import meta_gradient
from gdwlib.config import RunConfig
from gdwlib.data.build import build_data
from gdwlib.methods import METHODS, NonFiniteLossError, get_method
from gdwlib.profiles import profile_config
from gdwlib.results import read_json, write_json

from conftest import assert_same_run, interrupt_then_resume
from gdwlib.train import find_result, run

ROOT = Path(__file__).resolve().parent.parent


def smoke(tmp_path, **fields) -> RunConfig:
    return profile_config("smoke", "fashion-mnist", results_dir=str(tmp_path), device="cpu", **fields)


# Gen-label's first epoch of three is its warm-up: interrupt after its first meta epoch, so that
# the checkpoint holds learned labels
INTERRUPT_AT = {"Gen-label": 3}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, monkeypatch, method):
    fields = {"options": {"epochs": 3}} if method == "Fine-tuning" else {"epochs": 3}
    full = smoke(tmp_path / "a", method=method, **fields)
    run(full, progress=False)
    resumed = smoke(tmp_path / "b", method=method, **fields)
    for required in get_method(method).requirements(resumed):  # so that the interruption falls in this run
        run(required, progress=False)
    interrupt_then_resume(monkeypatch, resumed, INTERRUPT_AT.get(method, 2))
    assert_same_run(full, resumed)
    assert not (train_module.run_directory(resumed) / "checkpoint.pt").exists()


def test_kill_9_then_rerun_resumes_and_matches(tmp_path):
    """A real process killed with SIGKILL mid-run, then the same command again."""
    base = [sys.executable, "-m", "gdwlib", "run", "--method", "GDW", "--profile", "smoke", "--epochs", "6",
            "--device", "cpu", "--quiet", "--set", "train_size=2000"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(base + ["--results-dir", str(tmp_path / "a")], check=True, env=env, capture_output=True)
    killed = subprocess.Popen(base + ["--results-dir", str(tmp_path / "b")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "b" / "runs"
    deadline = time.time() + 120
    while not list(runs.glob("*/checkpoint.pt")) and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    assert killed.poll() is None, "the run finished before it could be killed; make it longer"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    (directory,) = runs.iterdir()
    assert not (directory / "result.json").exists()
    done = torch.load(directory / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= done < 6
    subprocess.run(base + ["--results-dir", str(tmp_path / "b")], check=True, env=env, capture_output=True)
    config = profile_config("smoke", "fashion-mnist", method="GDW", epochs=6, device="cpu", train_size=2000)
    assert_same_run(config.replace(results_dir=str(tmp_path / "a")), config.replace(results_dir=str(tmp_path / "b")))


def test_finished_run_is_not_retrained(tmp_path, monkeypatch):
    config = smoke(tmp_path, method="BaseModel")
    first = run(config, progress=False)
    monkeypatch.setattr(train_module, "build_data", lambda *a: pytest.fail("retrained a finished run"))
    assert run(config, progress=False) == first
    assert find_result(config) == first


def test_two_processes_with_the_same_config_train_it_once(tmp_path):
    cmd = [sys.executable, "-m", "gdwlib", "run", "--method", "GDW", "--profile", "smoke", "--device", "cpu",
           "--quiet", "--results-dir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outputs[0] == outputs[1]  # the second reads the first's result (same wall time printed)
    (directory,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "model.pt", "result.json", "weights.npz"]


@pytest.mark.parametrize("method", ["GDW", "Co-teach", "L2RW", "Gen-label"])
def test_deferred_checks_leave_the_numbers_unchanged(tmp_path, monkeypatch, method):
    """Checking every value at once (a device read per check) and deferring the checks (one read
    every CHECK_EVERY iterations) train the same run bit for bit: history, model and weights."""
    deferred = run(smoke(tmp_path / "a", method=method), progress=False)
    monkeypatch.setattr(train_module, "CHECK_EVERY", None)
    at_once = run(smoke(tmp_path / "b", method=method), progress=False)
    strip = lambda r: [{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]]  # noqa: E731
    assert strip(deferred) == strip(at_once)
    a, b = (torch.load(tmp_path / d / "runs" / r["run_id"] / "model.pt") for d, r in (("a", deferred), ("b", at_once)))
    assert all(torch.equal(a[k], b[k]) for k in a)
    if "weights" in deferred["files"]:
        wa, wb = (np.load(tmp_path / d / "runs" / r["run_id"] / "weights.npz") for d, r in (("a", deferred), ("b", at_once)))
        assert all(np.array_equal(wa[k], wb[k], equal_nan=True) for k in wa.files)


def test_same_seed_same_numbers_different_seed_different_numbers(tmp_path):
    a = run(smoke(tmp_path / "a", method="MWNet"), progress=False)
    b = run(smoke(tmp_path / "b", method="MWNet"), progress=False)
    c = run(smoke(tmp_path / "c", method="MWNet", seed=2), progress=False)
    assert a["history"] == [{**h, "seconds": a["history"][i]["seconds"]} for i, h in enumerate(b["history"])]
    assert [h["train_loss"] for h in a["history"]] != [h["train_loss"] for h in c["history"]]


def test_result_file_records_what_produced_it(tmp_path):
    result = run(smoke(tmp_path, method="GDW"), progress=False)
    assert result["config"]["method"] == "GDW" and result["config"]["ratio"] == 0.4
    assert result["device"]["type"] == "cpu" and result["device"]["torch"] == torch.__version__
    assert result["code"]["gdwlib"] and result["code"]["commit"]
    assert len(result["history"]) == 2
    expected = np.mean([h["test_accuracy"] for h in result["history"]][-5:])
    assert result["final_accuracy"] == pytest.approx(expected)
    weights = np.load(train_module.run_directory(smoke(tmp_path, method="GDW")) / "weights.npz")
    assert weights["target_weight"].shape == (2, 400)
    assert not np.isnan(weights["target_weight"]).any()  # every instance was seen each epoch


def test_final_accuracy_is_the_mean_of_the_last_final_epochs(tmp_path):
    """7 epochs, final_epochs = 5 (the public code's): the mean of epochs 3-7, not of all 7."""
    result = run(smoke(tmp_path, method="BaseModel", epochs=7, lr=0.3), progress=False)
    accuracies = [h["test_accuracy"] for h in result["history"]]
    assert len(accuracies) == 7 and result["final_epochs"] == 5
    assert result["final_accuracy"] == pytest.approx(sum(accuracies[2:]) / 5, rel=1e-12)
    assert sum(accuracies[2:]) / 5 != pytest.approx(sum(accuracies) / 7, rel=1e-6)  # the test can tell them apart


@pytest.mark.parametrize("check_every", [50, 2, None])   # deferred, read at the epoch's end or every 2; at once
def test_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, check_every):
    monkeypatch.setattr(train_module, "CHECK_EVERY", check_every)
    config = smoke(tmp_path, method="BaseModel", epochs=3)
    real_step = METHODS["BaseModel"].train_step
    seen = {"n": 0}

    def poisoned(self, batch, meta):
        seen["n"] += 1
        if seen["n"] == 8 + 3:  # epoch 2 (8 iterations per epoch), iteration 3
            batch.x[:] = float("nan")
        return real_step(self, batch, meta)

    monkeypatch.setattr(METHODS["BaseModel"], "train_step", poisoned)
    with pytest.raises(NonFiniteLossError,
                       match=r"loss is NaN( or infinite)? at epoch 2, iteration 3; the checkpoint after epoch 1"):
        run(config, progress=False)
    directory = train_module.run_directory(config)
    assert torch.load(directory / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (directory / "result.json").exists()


def test_cosine_schedule_closed_form(tmp_path):
    config = smoke(tmp_path, method="BaseModel", lr=0.1, epochs=80)
    method = get_method("BaseModel")(config, build_data(config), torch.device("cpu"))
    assert method.learning_rate(0) == pytest.approx(0.1)
    assert method.learning_rate(40) == pytest.approx(0.05)
    assert method.learning_rate(20) == pytest.approx(0.1 * (1 + 2 ** -0.5) / 2)
    assert get_method("BaseModel")(config.replace(schedule="constant"), build_data(config),
                                   torch.device("cpu")).learning_rate(79) == 0.1


def test_atomic_json_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_json(path, {"a": 1})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_json(path, {"a": 2})
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def sgd_step(params, grads, bufs, lr, momentum, wd):
    """torch.optim.SGD's update written out (momentum buffer starts as the first gradient)."""
    out = []
    for p, g, b in zip(params, grads, bufs):
        d = g + wd * p
        b = d.clone() if b is None else momentum * b + d
        out.append((p - lr * b, b))
    return out


def eq4(omega, p, y):
    """Eq. 4 typed in: ``omega_t = sum_{j != t} omega_j p_j / (1 - p_t)``, the other entries kept."""
    onehot = F.one_hot(y, omega.shape[1]).bool()
    t = (omega * p).masked_fill(onehot, 0.0).sum(1) / (1 - p[torch.arange(len(y)), y])
    return torch.where(onehot, t[:, None], omega)


@pytest.mark.parametrize("name, rule", [("GDW", "code"), ("GDW", "paper"), ("MWNet", "code")])
def test_one_iteration_matches_a_step_by_step_reference(tmp_path, name, rule):
    """The method's train_step against the iteration assembled here: the double-backward
    meta-gradient, the Step-2 update and Eq. 4 typed in (the code's normalised, clipped step or
    Eq. 11's ``omega - eta_omega g``), and a hand-written SGD step for Step 3."""
    config = smoke(tmp_path, method=name)
    if rule == "paper":
        config = config.replace(step_rule="paper", omega_lr=40.0)
    data = build_data(config)
    torch.manual_seed(0)
    method = get_method(name)(config, data, torch.device("cpu"))
    method.start_epoch(0, 0.05)
    batch, meta = next(data.train_batches(0)), next(data.meta_batches(0))
    model, vnet = copy.deepcopy(method.model), copy.deepcopy(method.vnet)
    vnet_opt = torch.optim.Adam(vnet.parameters(), lr=config.vnet_lr, weight_decay=config.vnet_weight_decay)
    vnet_opt.load_state_dict(method.vnet_optimizer.state_dict())

    method.train_step(batch, iter([meta]))

    n, C = len(batch), 10
    logits = model(batch.x)
    p = torch.softmax(logits.detach(), 1).clamp(max=0.999)
    d1 = p - F.one_hot(batch.y, C)
    losses = F.cross_entropy(logits.detach(), batch.y, reduction="none")
    w = vnet(losses[:, None]).reshape(n)
    omega = w[:, None].expand(n, C)
    if name == "GDW":
        omega = eq4(omega, p, batch.y)
    G = omega * d1 / n
    grad_G = meta_gradient(model, batch.x, G.detach(), meta.x, meta.y, 0.05, method="reference").grad_G
    vnet_opt.zero_grad()
    torch.autograd.backward(G, grad_G)
    vnet_opt.step()
    if name == "GDW":
        g = grad_G * d1 / n
        if rule == "code":
            stepped = (omega.detach() - (config.outer_lr * g / g.abs().sum()).clamp(-0.2, 0.2)).clamp(1e-6, 1e6)
        else:
            stepped = omega.detach() - 40.0 * g
        G3 = eq4(stepped, p, batch.y) * d1 / n
    else:
        G3 = vnet(losses[:, None]).detach() * d1 / n
    params = list(model.parameters())
    grads = torch.autograd.grad(logits, params, G3)
    expected = sgd_step(params, grads, [None] * len(params), 0.05, config.momentum, config.weight_decay)
    for (p_exp, _), p_got in zip(expected, method.model.parameters()):
        torch.testing.assert_close(p_got, p_exp, rtol=1e-5, atol=1e-6)
    for a, b in zip(method.vnet.parameters(), vnet.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_smoke_every_method_trains_a_few_iterations(tmp_path, name):
    """Smoke test: each registered method runs two short epochs and beats chance."""
    result = run(smoke(tmp_path, method=name), progress=False)
    assert result["final_accuracy"] > 20.0


def test_unknown_method_and_bad_ratio_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown method 'GWD'; known methods: "):
        get_method("GWD")
    with pytest.raises(ValueError, match=r"noise ratio must lie in \[0, 1\], got 1.5"):
        smoke(tmp_path, ratio=1.5)
    with pytest.raises(ValueError, match=r"imbalance factor must lie in \(0, 1\], got 0"):
        smoke(tmp_path, imbalance=0)


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "gdwlib", "run", "--ratio", "-0.1", "--results-dir", str(tmp_path)],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: noise ratio must lie in [0, 1], got -0.1"
    out = subprocess.run([sys.executable, "-m", "gdwlib", "run", "--method", "Nope", "--profile", "smoke",
                          "--results-dir", str(tmp_path)], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "unknown method 'Nope'" in out.stderr


def test_missing_data_set_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr("gdwlib.data.fashion_mnist.DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("GDW_DATA", raising=False)
    monkeypatch.setattr("gdwlib.data.fashion_mnist.CACHE_DIR", tmp_path / "no-cache")
    with pytest.raises(FileNotFoundError, match="looked in: .*nowhere.*no-cache.*apt-get install dataset-fashion-mnist"):
        build_data(smoke(tmp_path))
