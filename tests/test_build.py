"""From a config to splits: meta set, subsets, long tail, corruption, batching, augmentation."""
import numpy as np
import pytest
import torch

from gdwlib.data.augment import random_crop_flip
from gdwlib.data.batches import generator
from gdwlib.data.build import Clothing1MData, build_data
from gdwlib.data.clothing1m import write_clothing1m
from gdwlib.data.fashion_mnist import load_fashion_mnist
from gdwlib.profiles import profile_config


def cfg(**fields):
    return profile_config("smoke", "fashion-mnist", device="cpu", **fields)


def image_keys(split):
    return {bytes(im.numpy().tobytes()) for im in split.images}


def test_meta_set_is_clean_balanced_and_disjoint_from_training():
    data = build_data(cfg(train_size=1000, meta_per_class=7))
    assert np.bincount(data.meta.labels.numpy(), minlength=10).tolist() == [7] * 10
    assert torch.equal(data.meta.labels, data.meta.true_labels)
    assert data.info["meta_in_train"] == 0
    assert not image_keys(data.meta) & image_keys(data.train)


@pytest.mark.parametrize("fields", [dict(noise="uniform", ratio=1.0, noise_variant="paper"),
                                    dict(noise="flip", ratio=0.4), dict(noise="none", imbalance=0.1)])
def test_meta_and_training_sets_carry_the_original_labels_of_their_images(fields):
    """Every meta image carries its label in the data set itself, under any noise (with ratio 1
    every training label is wrong); every training image's true label is its original label."""
    data = build_data(cfg(train_size=1000, meta_per_class=7, **fields))
    images, labels = load_fashion_mnist("train")
    assert np.array_equal(data.meta.images[:, 0].numpy(), images[data.meta_source])
    assert np.array_equal(data.meta.labels.numpy(), labels[data.meta_source])
    assert np.array_equal(data.train.images[:, 0].numpy(), images[data.train_source])
    assert np.array_equal(data.train.true_labels.numpy(), labels[data.train_source])
    if fields.get("ratio") == 1.0:
        assert (data.train.labels != data.train.true_labels).all()


def test_public_code_overlap_option_puts_meta_images_in_training():
    data = build_data(cfg(meta_overlap=True, train_size=None, meta_per_class=5, seed=7))
    assert data.info["meta_in_train"] > 40  # of 50: the two draws are independent


def test_training_subset_is_balanced_and_labels_are_kept_true():
    data = build_data(cfg(train_size=1000, noise="none"))
    assert np.bincount(data.train.true_labels.numpy()).tolist() == [100] * 10
    train_images, train_labels = load_fashion_mnist("train")
    # every kept image carries its original label
    lookup = {im.tobytes(): lab for im, lab in zip(train_images, train_labels)}
    assert all(lookup[im[0].numpy().tobytes()] == t for im, t in zip(data.train.images, data.train.true_labels))


def test_uniform_noise_rate_and_true_labels_beside_noisy_ones():
    data = build_data(cfg(train_size=5000, noise="uniform", ratio=0.6))
    flipped = (data.train.labels != data.train.true_labels).float().mean().item()
    assert flipped == pytest.approx(0.6 * 9 / 10, abs=0.03)  # the code's variant keeps 1/C of redraws
    paper = build_data(cfg(train_size=5000, noise="uniform", ratio=0.6, noise_variant="paper"))
    assert (paper.train.labels != paper.train.true_labels).float().mean().item() == pytest.approx(0.6, abs=0.03)


def test_long_tail_counts_follow_the_formula():
    data = build_data(cfg(train_size=2000, noise="none", imbalance=0.1))
    counts = np.bincount(data.train.true_labels.numpy(), minlength=10)
    assert counts.tolist() == [int(np.floor(200 * 0.1 ** (i / 9))) for i in range(10)]


def test_epoch_batches_are_replayable_and_cover_the_split_once():
    data = build_data(cfg(train_size=400))
    first = [b.index for b in data.train_batches(3)]
    again = [b.index for b in data.train_batches(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert sorted(torch.cat(first).tolist()) == list(range(400))
    assert not torch.equal(torch.cat(first), torch.cat([b.index for b in data.train_batches(4)]))


def test_random_crop_flip_equals_slicing_the_padded_image():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    out = random_crop_flip(x, 2, generator(0, 0, "t"), flip=True)
    g = generator(0, 0, "t")
    top, left = torch.randint(0, 5, (2,), generator=g), torch.randint(0, 5, (2,), generator=g)
    mirror = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        crop = padded[i, :, top[i]:top[i] + 5, left[i]:left[i] + 5]
        torch.testing.assert_close(out[i], crop.flip(2) if mirror[i] else crop)


def test_clothing1m_batches_from_its_standard_files(tmp_path):
    keys = [f"images/0/{k:02d}/{k}.jpg" for k in range(12)]
    noisy = {k: i % 14 for i, k in enumerate(keys)}
    clean = {k: (i + 1) % 14 for i, k in enumerate(keys[:8])}
    root = write_clothing1m(tmp_path, noisy, clean, {"noisy_train": keys, "clean_val": keys[:4],
                                                     "clean_test": keys[4:8]}, size=32)
    config = profile_config("paper", "clothing1m", data_dir=str(root), batch_size=5, meta_batch_size=2)
    data = Clothing1MData(config, workers=0)
    batches = list(data.train_batches(0))
    assert [len(b) for b in batches] == [5, 5, 2]
    b = batches[0]
    assert b.x.shape == (5, 3, 224, 224)
    for y, y_true, i in zip(b.y.tolist(), b.y_true.tolist(), b.index.tolist()):
        assert y == i % 14 and y_true == ((i + 1) % 14 if i < 8 else -1)
    assert [b.y.tolist() for b in data.test_batches(batch_size=4)] == [[5, 6, 7, 8]]
    assert len(next(data.meta_batches(0))) == 2


def test_clothing1m_needs_a_data_dir():
    with pytest.raises(ValueError, match="Clothing1M needs --data-dir"):
        build_data(profile_config("paper", "clothing1m"))


def test_fashion_mnist_download_only_when_asked(tmp_path, monkeypatch):
    """GDW_DOWNLOAD=1 lets torchvision fetch the files into the cache (a stand-in here: no network)."""
    import torchvision

    from gdwlib.data import fashion_mnist
    from gdwlib.data.idx import write_idx

    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "none")
    monkeypatch.setattr(fashion_mnist, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.delenv("GDW_DATA", raising=False)
    fetched = []

    def fake_download(root, train, download):
        raw = tmp_path / "cache" / "FashionMNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
        write_idx(raw / "t10k-labels-idx1-ubyte", np.array([1, 2, 3], np.uint8))
        fetched.append((root, train, download))

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_download)
    monkeypatch.delenv("GDW_DOWNLOAD", raising=False)
    with pytest.raises(FileNotFoundError, match="GDW_DOWNLOAD=1"):
        load_fashion_mnist("test")
    assert fetched == []
    monkeypatch.setenv("GDW_DOWNLOAD", "1")
    images, labels = load_fashion_mnist("test")
    assert fetched == [(str(tmp_path / "cache"), False, True)] and labels.tolist() == [1, 2, 3]
