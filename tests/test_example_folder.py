"""The chapter's example folders: real Fashion-MNIST images, each under its given class, with an
answer sheet that is right about which labels are wrong."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
from torchvision import datasets

from gdwlib.data.example_folder import FOLDER_CLASSES, read_truth, write_example_folders, wrong_labels
from gdwlib.data.fashion_mnist import load_fashion_mnist


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_example_folders(tmp_path_factory.mktemp("ex") / "f", train_per_class=20, meta_per_class=3,
                                 test_per_class=4, ratio=0.6, seed=3)


def digests(images):
    return [hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest() for x in images]


def test_each_training_image_is_filed_under_its_given_class_and_the_truth_is_its_fashion_mnist_label(folders):
    images, labels = load_fashion_mnist("train")
    label_of = dict(zip(digests(images), labels))
    train = datasets.ImageFolder(folders.root / "train")
    truth = read_truth(folders.root)
    assert len(train) == len(truth) == 200
    wrong = 0
    for path, index in train.samples:
        given, true = truth[Path(path).relative_to(folders.root).as_posix()]
        assert train.classes[index] == given                   # the folder says the given label
        pixels = np.array(datasets.folder.default_loader(path).convert("L"))
        assert FOLDER_CLASSES[label_of[digests([pixels])[0]]] == true   # the answer sheet says the real one
        wrong += given != true
    assert wrong == wrong_labels([p for p, _ in train.samples], folders.root).sum() == (folders.given != folders.true).sum()
    assert 0.4 < wrong / 200 < 0.7   # uniform 60%: the public code's matrix redraws the true class in 1 of 10, 54% wrong


def test_meta_and_test_images_are_clean_and_balanced(folders):
    for split, per_class, source in (("meta", 3, "train"), ("test", 4, "test")):
        images, labels = load_fashion_mnist(source)
        label_of = dict(zip(digests(images), labels))
        found = datasets.ImageFolder(folders.root / split)
        assert np.bincount(found.targets).tolist() == [per_class] * 10
        for path, index in found.samples:
            pixels = np.array(datasets.folder.default_loader(path).convert("L"))
            assert FOLDER_CLASSES[label_of[digests([pixels])[0]]] == found.classes[index]


def test_bad_arguments_and_a_used_folder_are_refused(folders, tmp_path):
    with pytest.raises(ValueError, match="ratio"):
        write_example_folders(tmp_path / "a", ratio=1.5)
    with pytest.raises(ValueError, match="'uniform' or 'flip'"):
        write_example_folders(tmp_path / "b", noise="pair")
    with pytest.raises(FileExistsError, match="not empty"):
        write_example_folders(folders.root)
    with pytest.raises(ValueError, match="not a training image"):
        wrong_labels([str(tmp_path / "elsewhere.png")], folders.root)
