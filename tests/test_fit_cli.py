"""``python -m gdwlib fit`` on image folders and .npz files the tests write: end to end, every bad
input of the issue in one line with nothing written, and a fit killed with SIGKILL resuming to
the numbers of an uninterrupted one."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gdwlib import cli
from gdwlib.data.user import write_image_folder

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["ant", "bee", "cat"]


def images(n: int, seed: int, side: int = 16):
    """Each class a different brightness, so that a small CNN learns something in two epochs."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    x = np.clip(rng.normal(60 + 70 * labels[:, None, None], 25, (n, side, side)), 0, 255).astype(np.uint8)
    return x, labels


@pytest.fixture
def folders(tmp_path):
    for name, n, seed in (("train", 60, 1), ("meta", 9, 2), ("test", 15, 3)):
        write_image_folder(tmp_path / name, *images(n, seed), CLASSES)
    return tmp_path


def fit(folders, *extra, out="out"):
    argv = ["fit", "--train", str(folders / "train"), "--meta", str(folders / "meta"), "--test", str(folders / "test"),
            "--out", str(folders / out), "--epochs", "2", "--batch-size", "20", "--meta-batch-size", "9", "--quiet"]
    return cli.main(argv + list(extra))


def test_fit_on_image_folders_end_to_end(folders, capsys):
    assert fit(folders) == 0
    out = folders / "out"
    assert capsys.readouterr().out.startswith(f"{out}: GDW on 60 training images, accuracy ")
    result = json.loads((out / "result.json").read_text())
    assert result["evaluated_on"] == "test" and len(result["history"]) == 2 and result["num_classes"] == 3
    rows = list(csv.DictReader(open(out / "label_issues.csv")))
    assert len(rows) == 60 and {Path(r["path"]).parent.name for r in rows} == set(CLASSES)
    assert all(Path(r["path"]).parent.name == r["given"] != r["suggested"] in CLASSES for r in rows)
    assert np.load(out / "weights.npz")["mean_target_weight"].shape == (60,)


def test_fit_on_npz_files(tmp_path, capsys):
    for name, n, seed in (("train", 60, 1), ("meta", 9, 2)):
        x, y = images(n, seed)
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
    assert cli.main(["fit", "--train", str(tmp_path / "train.npz"), "--meta", str(tmp_path / "meta.npz"), "--out",
                     str(tmp_path / "out"), "--epochs", "1", "--batch-size", "20", "--method", "MWNet", "--quiet"]) == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["evaluated_on"] == "meta (no test set given)" and result["settings"]["method"] == "MWNet"
    rows = list(csv.DictReader(open(tmp_path / "out" / "label_issues.csv")))
    assert {r["path"] for r in rows} == {f"train.npz[{i}]" for i in range(60)}


def truncate_one(folders):
    victim = sorted((folders / "train" / "bee").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:60])
    return victim


def break_input(folders, how):
    """Make the input bad in one way; returns the extra arguments and the expected message."""
    if how == "classes differ":
        shutil.rmtree(folders / "meta" / "cat")
        return [], "the meta set's classes ['ant', 'bee'] differ from the training set's ['ant', 'bee', 'cat']"
    if how == "class without meta images":
        for p in (folders / "meta" / "cat").iterdir():
            p.unlink()
        return [], "Found no valid file for the classes cat"
    if how == "empty folder":
        shutil.rmtree(folders / "train")
        (folders / "train").mkdir()
        return [], "has no class folders"
    if how == "truncated image":
        return [], f"{truncate_one(folders)}: cannot be read as an image"
    if how == "sizes differ":
        write_image_folder(folders / "train", *images(3, 9, side=20), CLASSES)   # overwrites three with 20x20
        return [], "images of different sizes"
    if how == "budget larger than a class":
        shutil.rmtree(folders / "meta")
        return ["--meta", None, "--meta-per-class", "999"], "fewer than the 999 asked for the meta set"
    if how == "unknown model":
        return ["--model", "no_such_net"], "unknown model 'no_such_net'"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["classes differ", "class without meta images", "empty folder", "truncated image",
                                 "sizes differ", "budget larger than a class", "unknown model"])
def test_bad_input_one_line_and_nothing_written(folders, capsys, how):
    extra, message = break_input(folders, how)
    if "--meta" in extra:   # no meta folder: carve the meta set from the training set instead
        argv = ["fit", "--train", str(folders / "train"), "--out", str(folders / "out"), "--quiet"] + extra[2:]
        code = cli.main(argv)
    else:
        code = fit(folders, *extra)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err
    assert not (folders / "out").exists()


def test_unreadable_images_are_skipped_and_listed_when_asked(folders, capsys):
    victim = truncate_one(folders)
    assert fit(folders, "--skip-bad") == 0
    assert f"skipped (cannot be read): {victim}" in capsys.readouterr().err
    rows = list(csv.DictReader(open(folders / "out" / "label_issues.csv")))
    assert len(rows) == 59 and str(victim) not in {r["path"] for r in rows}


def test_images_of_different_sizes_train_with_resize(folders):
    write_image_folder(folders / "train", *images(3, 9, side=20), CLASSES)
    assert fit(folders, "--resize", "16") == 0


def test_a_meta_set_that_shares_images_with_the_training_set_gets_a_warning(folders, capsys):
    for p in sorted((folders / "train" / "ant").iterdir())[:2]:
        shutil.copy(p, folders / "meta" / "ant" / f"copy-{p.name}")
    assert fit(folders) == 0
    assert "warning: 2 meta image(s) are also in the training set" in capsys.readouterr().err


def test_a_fit_killed_with_sigkill_resumes_to_the_uninterrupted_numbers(folders):
    argv = [sys.executable, "-m", "gdwlib", "fit", "--train", str(folders / "train"), "--meta", str(folders / "meta"),
            "--epochs", "4", "--batch-size", "10", "--quiet", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(argv + ["--out", str(folders / "whole")], env=env, check=True, capture_output=True)
    killed = subprocess.Popen(argv + ["--out", str(folders / "killed")], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (folders / "killed" / "checkpoint.pt").exists() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (folders / "killed" / "result.json").exists(), "the fit finished before it could be killed"
    subprocess.run(argv + ["--out", str(folders / "killed")], env=env, check=True, capture_output=True)
    whole, resumed = (json.loads((folders / d / "result.json").read_text()) for d in ("whole", "killed"))
    assert resumed["resumed_after_epochs"] and resumed["resumed_after_epochs"][0] >= 1
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(whole["history"])
    assert (folders / "whole" / "label_issues.csv").read_text() == (folders / "killed" / "label_issues.csv").read_text()


def test_any_torchvision_classifier_by_name_with_local_weights(tmp_path):
    import torch
    import torchvision

    from gdwlib.models import user_model

    torch.manual_seed(0)
    imagenet = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "w.pth")
    model = user_model("mobilenet_v3_small", 3, 3, 32, weights=tmp_path / "w.pth").eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.3.")}
    assert all(torch.equal(v, imagenet.state_dict()[k]) for k, v in body.items()) and len(body) > 100
    assert user_model("mobilenet_v3_small", 5, 3, 32)(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match="takes 3-channel images"):
        user_model("mobilenet_v3_small", 3, 1, 32)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        user_model("mobilenet_v3_small", 3, 3, 32, weights=tmp_path / "none.pth")
