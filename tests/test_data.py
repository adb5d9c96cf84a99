"""Data files, label corruption, long tail and meta split, checked against independent computations."""
import gzip
import io
import math
import os
import pickle
import tarfile
import time

import numpy as np
import pytest
import torch
from PIL import Image

from gdwlib.data import fashion_mnist, memo
from gdwlib.data.cifar import UnsafePickleError, load_cifar, write_cifar
from gdwlib.data.clothing1m import Clothing1M, write_clothing1m
from gdwlib.data.fashion_mnist import load_fashion_mnist
from gdwlib.data.idx import CorruptFileError, read_idx, write_idx
from gdwlib.data.longtail import longtail_counts, longtail_indices
from gdwlib.data.noise import (corrupt_labels, flip_noise_matrix, true_flip_rate,
                               uniform_noise_matrix)
from gdwlib.data.split import meta_split, overlapping_meta_split


# ---------------------------------------------------------------- idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 4) * 7 % 251).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)


def test_idx_header_is_big_endian(tmp_path):
    write_idx(tmp_path / "x", np.zeros((3, 258), dtype=np.uint8))
    assert (tmp_path / "x").read_bytes()[:12] == bytes([0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 1, 2])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_truncated_file_raises(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    write_idx(path, np.arange(1000, dtype=np.uint8).reshape(10, 100))
    raw = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
    raw = raw[:-10]
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    with pytest.raises(CorruptFileError, match="truncated"):
        read_idx(path)
    path.write_bytes(path.read_bytes()[:20])  # a cut-off gzip stream, or a cut-off header
    with pytest.raises(CorruptFileError, match=str(path)):
        read_idx(path)


# ---------------------------------------------------------------- decoded once per process


def write_fashion(directory, images, labels):
    write_idx(directory / "train-images-idx3-ubyte.gz", images)
    write_idx(directory / "train-labels-idx1-ubyte.gz", labels)


def test_fashion_mnist_is_decoded_once_while_its_files_are_unchanged(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), np.arange(6, dtype=np.uint8)
    write_fashion(tmp_path, images, labels)
    reads = []
    counting = lambda path: reads.append(path) or read_idx(path)  # noqa: E731
    monkeypatch.setattr(fashion_mnist, "read_idx", counting)
    first = load_fashion_mnist("train", tmp_path)
    first[0][:] = 0   # the caller's copy: changing it must not reach the next caller
    second = load_fashion_mnist("train", tmp_path)
    assert len(reads) == 2   # the images and the labels, once
    np.testing.assert_array_equal(second[0], images)
    np.testing.assert_array_equal(second[1], labels)
    # a file replaced on disk (new size or time) is decoded again: never a stale copy
    write_fashion(tmp_path, images[:4], labels[:4])
    third = load_fashion_mnist("train", tmp_path)
    assert len(reads) == 4 and len(third[0]) == 4
    np.testing.assert_array_equal(third[0], images[:4])


@pytest.mark.parametrize("how", ["rewritten in place", "replaced by a copy"])
def test_a_file_changed_with_the_same_size_and_time_is_decoded_again(tmp_path, how):
    """A corrected copy of the same size that keeps the old modification time (``cp -p``, ``rsync -t``)."""
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((2, 28, 28), dtype=np.uint8))
    before = os.stat(path)
    assert memo.decoded("images", [path], lambda: (read_idx(path),))[0].max() == 0
    time.sleep(0.05)   # what a real rewrite takes at least: more than a tick of the kernel's file clock
    if how == "rewritten in place":
        write_idx(path, np.ones((2, 28, 28), dtype=np.uint8))
    else:
        write_idx(tmp_path / "copy", np.ones((2, 28, 28), dtype=np.uint8))
        os.replace(tmp_path / "copy", path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert memo.decoded("images", [path], lambda: (read_idx(path),))[0].max() == 1


def test_decoded_keeps_the_newest_entries_and_nothing_for_a_failed_decode(tmp_path):
    files = []
    for i in range(memo.MAX_ENTRIES + 1):
        files.append(tmp_path / f"f{i}")
        files[-1].write_bytes(bytes([i]))
    for i, f in enumerate(files):
        memo.decoded("test", [f], lambda i=i: (np.array([i]),))
    again = memo.decoded("test", [files[0]], lambda: (np.array([-1]),))   # the oldest was dropped
    assert again[0][0] == -1
    assert memo.decoded("test", [files[-1]], lambda: (np.array([-1]),))[0][0] == memo.MAX_ENTRIES  # kept

    def broken():
        raise CorruptFileError("bad")
    with pytest.raises(CorruptFileError):
        memo.decoded("other", [files[1]], broken)
    assert memo.decoded("other", [files[1]], lambda: (np.array([7]),))[0][0] == 7


# ---------------------------------------------------------------- CIFAR


def fake_cifar(num_classes, n_train=23, n_test=7, seed=0):
    rng = np.random.default_rng(seed)
    train = (rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8), rng.integers(0, num_classes, n_train))
    test = (rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8), rng.integers(0, num_classes, n_test))
    return train, test


def assert_same(loaded, expected):
    images, labels = loaded
    assert images.dtype == np.uint8 and images.shape == expected[0].shape and images.flags.c_contiguous
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


@pytest.mark.parametrize("name, num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_round_trip(tmp_path, name, num_classes):
    train, test = fake_cifar(num_classes)
    write_cifar(tmp_path, name, train, test)
    assert_same(load_cifar(name, "train", tmp_path), train)
    assert_same(load_cifar(name, "test", tmp_path), test)


def test_cifar_files_follow_the_standard_format(tmp_path):
    train, test = fake_cifar(10)
    directory = write_cifar(tmp_path, "cifar10", train, test)
    assert sorted(p.name for p in directory.iterdir()) == [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    with open(directory / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # our own file: a plain load is safe here
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"batch_label"] == b"training batch 1 of 5"
    data = batch[b"data"]
    assert data.dtype == np.uint8 and data.shape == (5, 3072)
    # row-major CHW: the red plane first, then green, then blue, each 32 rows of 32 pixels
    for n, h, w, c in [(0, 0, 0, 0), (1, 5, 7, 1), (4, 31, 30, 2)]:
        assert data[n, c * 1024 + h * 32 + w] == train[0][n, h, w, c]
    assert batch[b"labels"] == train[1][:5].tolist()


def test_cifar100_files_hold_fine_and_coarse_labels(tmp_path):
    train, test = fake_cifar(100)
    directory = write_cifar(tmp_path, "cifar100", train, test)
    with open(directory / "test", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    assert {b"fine_labels", b"coarse_labels", b"data", b"filenames", b"batch_label"} == set(batch)
    assert batch[b"fine_labels"] == test[1].tolist()


def test_cifar_from_archive_via_gdw_data(tmp_path, monkeypatch):
    train, test = fake_cifar(10)
    directory = write_cifar(tmp_path / "build", "cifar10", train, test)
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(directory, arcname="cifar-10-batches-py")
    monkeypatch.setenv("GDW_DATA", str(tmp_path / "data"))
    assert_same(load_cifar("cifar10", "train"), train)
    assert_same(load_cifar("cifar10", "test"), test)


def test_cifar_truncated_archive_raises(tmp_path):
    directory = write_cifar(tmp_path / "build", "cifar10", *fake_cifar(10))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname="cifar-10-batches-py")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match="cifar-10-python.tar.gz"):
        load_cifar("cifar10", "train", tmp_path)


def test_cifar_numpy1_module_name_loads(tmp_path):
    """The distributed files name numpy.core.multiarray, as numpy 1 did."""
    train, test = fake_cifar(10)
    path = write_cifar(tmp_path, "cifar10", train, test) / "test_batch"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray\n_reconstruct" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n_reconstruct", b"numpy.core.multiarray\n_reconstruct"))
    assert_same(load_cifar("cifar10", "test", tmp_path), test)


def write_pickle(path, obj, protocol=4):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def test_cifar_str_keys_accepted(tmp_path):
    images = (np.arange(2 * 3072) % 256).astype(np.uint8).reshape(2, 3072)
    write_pickle(tmp_path / "cifar-100-python" / "test", {"data": images, "fine_labels": [3, 99]})
    loaded_images, labels = load_cifar("cifar100", "test", tmp_path)
    np.testing.assert_array_equal(loaded_images, images.reshape(2, 3, 32, 32).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(labels, [3, 99])


class RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo pwned > {self.marker}",)


def test_cifar_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "pwned"
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch",
                 {b"data": RunsAShellCommand(marker), b"labels": []})
    with pytest.raises(UnsafePickleError, match=r"test_batch: the file tried to load `\w+\.system`.*refused.*run code"):
        load_cifar("cifar10", "test", tmp_path)
    assert not marker.exists()
    assert issubclass(UnsafePickleError, CorruptFileError)
    # the same bytes given to a plain pickle.load do run the command: the file is a real threat
    pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    assert marker.read_text().strip() == "pwned"


def test_cifar_truncated_batch_raises(tmp_path):
    directory = write_cifar(tmp_path, "cifar10", *fake_cifar(10))
    path = directory / "data_batch_3"
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(CorruptFileError, match="data_batch_3.*truncated or corrupt"):
        load_cifar("cifar10", "train", tmp_path)
    path.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="data_batch_3"):
        load_cifar("cifar10", "train", tmp_path)


@pytest.mark.parametrize("batch, message", [
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"\[0, 10\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 integer labels"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "lacks the keys"),
    ([1, 2], "not the dict"),
])
def test_cifar_bad_contents_raise(tmp_path, batch, message):
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", batch)
    with pytest.raises(CorruptFileError, match=f"test_batch.*{message}"):
        load_cifar("cifar10", "test", tmp_path)


def test_cifar_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    """A directory given as an argument is the only place looked in, even with GDW_DATA set."""
    monkeypatch.setenv("GDW_DATA", str(tmp_path / "env"))
    write_cifar(tmp_path / "env", "cifar100", *fake_cifar(100))  # a copy the argument must not fall back to
    with pytest.raises(FileNotFoundError) as info:
        load_cifar("cifar100", "train", tmp_path / "arg")
    message = str(info.value)
    for part in [str(tmp_path / "arg" / "cifar-100-python"), str(tmp_path / "arg" / "cifar-100-python.tar.gz"),
                 "https://www.cs.toronto.edu/~kriz/cifar.html", "GDW_DATA", "--data-dir"]:
        assert part in message
    assert str(tmp_path / "env") not in message
    monkeypatch.setenv("GDW_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="elsewhere/cifar-100-python.tar.gz"):
        load_cifar("cifar100", "train")


def test_cifar_missing_batch_file_is_named(tmp_path):
    directory = write_cifar(tmp_path, "cifar10", *fake_cifar(10))
    (directory / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        load_cifar("cifar10", "train", tmp_path)


def test_cifar_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="cifar10"):
        load_cifar("cifar20", "train", tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_cifar("cifar10", "val", tmp_path)


# ---------------------------------------------------------------- label noise


def test_uniform_matrices():
    code = uniform_noise_matrix(10, 0.4)
    assert np.allclose(np.diag(code), 0.64) and np.allclose(code[0, 1:], 0.04)
    paper = uniform_noise_matrix(10, 0.4, variant="paper")
    assert np.allclose(np.diag(paper), 0.6) and np.allclose(paper[3, [0, 1, 2, 4]], 0.4 / 9)
    for m in (code, paper):
        assert np.allclose(m.sum(1), 1)
    assert math.isclose(true_flip_rate(code), 0.36) and math.isclose(true_flip_rate(paper), 0.4)
    with pytest.raises(ValueError, match="variant"):
        uniform_noise_matrix(10, 0.4, variant="other")


def test_flip_matrix_one_target_per_row_reproducible():
    m = flip_noise_matrix(10, 0.4, seed=1)
    off = m - np.diag(np.diag(m))
    assert np.allclose(np.diag(m), 0.6)
    assert ((off > 0).sum(1) == 1).all() and np.allclose(off.sum(1), 0.4)
    np.testing.assert_array_equal(m, flip_noise_matrix(10, 0.4, seed=1))
    # the public code: one np.random.choice among the other classes per row, after seeding with 1
    rng = np.random.RandomState(1)
    rows = np.arange(10)
    expected = [rng.choice(rows[rows != i]) for i in rows]
    np.testing.assert_array_equal(off.argmax(1), expected)
    assert any(not np.array_equal(m, flip_noise_matrix(10, 0.4, seed=s)) for s in (2, 3))


@pytest.mark.parametrize("matrix", [
    uniform_noise_matrix(10, 0.4), uniform_noise_matrix(10, 0.4, "paper"), flip_noise_matrix(10, 0.4),
    flip_noise_matrix(4, 0.25, seed=7),
])
def test_corrupted_label_frequencies_match_the_matrix(matrix):
    num_classes = len(matrix)
    labels = np.random.default_rng(0).integers(0, num_classes, 200_000)
    noisy = corrupt_labels(labels, matrix, np.random.default_rng(1))
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (labels, noisy), 1)
    n = counts.sum(1, keepdims=True)
    stderr = np.sqrt(matrix * (1 - matrix) / n)
    assert (np.abs(counts / n - matrix) <= 4 * stderr).all()


def test_code_uniform_noise_flips_fewer_labels_than_its_ratio():
    labels = np.repeat(np.arange(10), 20_000)
    noisy = corrupt_labels(labels, uniform_noise_matrix(10, 0.4), np.random.RandomState(0))
    rate = (noisy != labels).mean()
    assert abs(rate - 0.36) < 4 * math.sqrt(0.36 * 0.64 / labels.size)


def test_corrupt_labels_repeats_the_codes_per_label_choice():
    matrix = flip_noise_matrix(10, 0.45)
    labels = np.random.default_rng(3).integers(0, 10, 2000)
    rng = np.random.RandomState(1)
    expected = [rng.choice(10, p=matrix[y]) for y in labels]
    np.testing.assert_array_equal(corrupt_labels(labels, matrix, np.random.RandomState(1)), expected)


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan")])
def test_bad_noise_ratio_raises(ratio):
    for make in (uniform_noise_matrix, flip_noise_matrix):
        with pytest.raises(ValueError, match=r"noise ratio must lie in \[0, 1\], got"):
            make(10, ratio)


def test_corrupt_labels_checks_its_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="sum to 1"):
        corrupt_labels(np.zeros(3, int), np.full((3, 3), 0.3), rng)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        corrupt_labels(np.array([0, 3]), np.eye(3), rng)
    with pytest.raises(ValueError, match="square"):
        corrupt_labels(np.zeros(3, int), np.ones((3, 1)), rng)


def test_no_noise_keeps_labels():
    labels = np.arange(100) % 10
    noisy = corrupt_labels(labels, uniform_noise_matrix(10, 0.0), np.random.default_rng(0))
    np.testing.assert_array_equal(noisy, labels)


# ---------------------------------------------------------------- long tail


@pytest.mark.parametrize("mu, total, smallest", [(0.1, 20021, 490), (0.01, 12156, 49), (1.0, 49000, 4900)])
def test_cifar10_longtail_counts(mu, total, smallest):
    counts = longtail_counts(4900, 10, mu)
    assert counts == [math.floor(4900 * mu ** (i / 9)) for i in range(10)]
    assert sum(counts) == total and counts[0] == 4900 and counts[-1] == smallest


def test_longtail_indices_hold_the_counts():
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 4900))
    counts = longtail_counts(4900, 10, 0.01)
    kept = longtail_indices(labels, counts, np.random.default_rng(1))
    assert np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(np.bincount(labels[kept], minlength=10), counts)
    other = longtail_indices(labels, counts, np.random.default_rng(2))
    assert not np.array_equal(kept, other)


@pytest.mark.parametrize("mu", [0, -0.5, 1.5, float("nan")])
def test_bad_imbalance_factor_raises(mu):
    with pytest.raises(ValueError, match=r"imbalance factor must lie in \(0, 1\]"):
        longtail_counts(4900, 10, mu)


def test_longtail_too_few_examples_raises():
    labels = np.repeat(np.arange(3), 5)
    with pytest.raises(ValueError, match="class 0 has 5 examples, fewer than the 6"):
        longtail_indices(labels, [6, 1, 1], np.random.default_rng(0))


# ---------------------------------------------------------------- meta split


def synthetic_labels(num_classes=10, n=50_000, seed=0):
    return np.random.default_rng(seed).permutation(np.arange(n) % num_classes)


def test_meta_split_balanced_and_disjoint():
    labels = synthetic_labels()
    meta, train = meta_split(labels, 100, np.random.default_rng(0))
    assert len(meta) == 1000 and len(train) == 49_000
    np.testing.assert_array_equal(np.bincount(labels[meta]), [100] * 10)
    assert len(np.intersect1d(meta, train)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([meta, train])), np.arange(50_000))


def test_meta_split_per_class_list():
    labels = synthetic_labels(num_classes=3, n=30)
    meta, train = meta_split(labels, [1, 0, 4], np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(labels[meta], minlength=3), [1, 0, 4])
    assert len(train) == 25
    with pytest.raises(ValueError, match="class 2 has 10 examples, fewer than the 11"):
        meta_split(labels, [1, 1, 11], np.random.default_rng(0))


def test_overlapping_split_reuses_most_meta_images():
    labels = synthetic_labels()
    meta, train = overlapping_meta_split(labels, 100, meta_seed=1, train_seed=100)
    np.testing.assert_array_equal(np.bincount(labels[meta]), [100] * 10)
    assert len(train) == 49_000 and len(np.unique(train)) == 49_000
    overlap = np.isin(meta, train).sum()
    assert overlap > 900  # about 1000 * 4900/5000 expected
    # the meta set is exactly a seed-1 draw; equal seeds give one draw, hence disjoint sets
    np.testing.assert_array_equal(meta, meta_split(labels, 100, np.random.RandomState(1))[0])
    same_meta, same_train = overlapping_meta_split(labels, 100, meta_seed=7, train_seed=7)
    assert not np.isin(same_meta, same_train).any()


# ---------------------------------------------------------------- Clothing1M


def clothing_spec():
    noisy_keys = [f"images/{i % 3}/{i:02d}/n{i}.{'jpg' if i % 2 else 'png'}" for i in range(20)]
    noisy = {k: i % 14 for i, k in enumerate(noisy_keys)}
    clean_keys = [f"images/9/99/c{i}.png" for i in range(12)]
    clean = {k: (3 * i) % 14 for i, k in enumerate(clean_keys)}
    clean.update({noisy_keys[0]: 5, noisy_keys[3]: 3})  # two noisy images also have a clean label
    splits = {"noisy_train": noisy_keys, "clean_train": clean_keys[:4], "clean_val": clean_keys[4:8],
              "clean_test": clean_keys[8:]}
    return noisy, clean, splits


@pytest.fixture
def clothing(tmp_path):
    noisy, clean, splits = clothing_spec()
    return write_clothing1m(tmp_path / "clothing1m", noisy, clean, splits), noisy, clean, splits


def test_clothing1m_labels(clothing):
    root, noisy, clean, splits = clothing
    train = Clothing1M(root, "noisy_train")
    assert train.keys == splits["noisy_train"] and len(train) == 20
    np.testing.assert_array_equal(train.labels, [noisy[k] for k in splits["noisy_train"]])
    expected_true = np.full(20, -1)
    expected_true[[0, 3]] = [5, 3]
    np.testing.assert_array_equal(train.true_labels, expected_true)
    for split in ("clean_train", "clean_val", "clean_test"):
        data = Clothing1M(root, split)
        np.testing.assert_array_equal(data.labels, [clean[k] for k in splits[split]])
        np.testing.assert_array_equal(data.true_labels, data.labels)


def test_clothing1m_items(clothing):
    root, noisy, clean, splits = clothing
    all_keys = sorted(set(noisy) | set(clean))
    data = Clothing1M(root, "clean_val")
    image, label, index = data[2]
    key = splits["clean_val"][2]
    k = all_keys.index(key)
    assert (label, index) == (clean[key], 2)
    assert image.mode == "RGB" and image.size == (8, 8)
    assert image.getpixel((3, 4)) == (k % 256, 2 * k % 256, 3 * k % 256)  # PNG: lossless
    jpeg = Clothing1M(root, "noisy_train", transform=lambda im: torch.tensor(np.asarray(im)).permute(2, 0, 1))
    tensor, label, index = jpeg[1]
    assert tensor.shape == (3, 8, 8) and (label, index) == (1, 1)


def corrupt_text(root, name, text):
    (root / name).write_text(text)


@pytest.mark.parametrize("name, text, split, message", [
    ("noisy_label_kv.txt", "images/0/00/n0.png 3\nimages/0/00/n1.jpg\n", "noisy_train",
     r"noisy_label_kv.txt:2: expected '<image key> <label>'"),
    ("clean_label_kv.txt", "images/9/99/c4.png x\n", "clean_val", r"clean_label_kv.txt:1: label 'x' is not an integer"),
    ("clean_label_kv.txt", "images/9/99/c4.png 3\n\nimages/9/99/c5.png 14\n", "clean_val",
     r"clean_label_kv.txt:3: label 14 lies outside \[0, 14\)"),
    ("clean_label_kv.txt", "images/9/99/c4.png -1\n", "clean_val", r"clean_label_kv.txt:1: label -1"),
    ("clean_val_key_list.txt", "images/9/99/c4.png\nimages/9/99/zzz.png\n", "clean_val",
     r"clean_val_key_list.txt:2: images/9/99/zzz.png has no label in clean_label_kv.txt"),
    ("clean_val_key_list.txt", "images/9/99/c4.png extra\n", "clean_val", r"clean_val_key_list.txt:1: expected"),
    ("clean_test_key_list.txt", "../outside.png\n", "clean_test", r"clean_test_key_list.txt:1: image key"),
])
def test_clothing1m_malformed_files_raise(clothing, name, text, split, message):
    root = clothing[0]
    corrupt_text(root, name, text)
    with pytest.raises(CorruptFileError, match=message):
        Clothing1M(root, split)


@pytest.mark.parametrize("missing, split", [
    ("noisy_label_kv.txt", "noisy_train"), ("clean_label_kv.txt", "noisy_train"),
    ("noisy_train_key_list.txt", "noisy_train"), ("clean_val_key_list.txt", "clean_val"),
    ("clean_test_key_list.txt", "clean_test"), ("clean_train_key_list.txt", "clean_train"),
])
def test_clothing1m_missing_file_is_named(clothing, missing, split):
    root = clothing[0]
    (root / missing).unlink()
    with pytest.raises(FileNotFoundError, match=f"{missing} is missing.*Expected layout"):
        Clothing1M(root, split)


def test_clothing1m_missing_root_and_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*Expected layout"):
        Clothing1M(tmp_path / "nowhere", "clean_val")
    with pytest.raises(ValueError, match="unknown Clothing1M split"):
        Clothing1M(tmp_path, "val")


def test_clothing1m_missing_or_corrupt_image_raises_on_access(clothing):
    root, _, _, splits = clothing
    data = Clothing1M(root, "clean_test")
    (root / splits["clean_test"][1]).unlink()
    (root / splits["clean_test"][2]).write_bytes(b"not an image")
    data[0]
    with pytest.raises(FileNotFoundError, match=str(root / splits["clean_test"][1])):
        data[1]
    with pytest.raises(CorruptFileError, match=str(root / splits["clean_test"][2])):
        data[2]


def test_write_clothing1m_writes_real_image_files(clothing):
    root, noisy, _, _ = clothing
    jpg = next(k for k in noisy if k.endswith(".jpg"))
    with Image.open(root / jpg) as im:
        assert im.format == "JPEG"
    with Image.open(io.BytesIO((root / "images/9/99/c0.png").read_bytes())) as im:
        assert im.format == "PNG"
