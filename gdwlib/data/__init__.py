"""Data sets (Fashion-MNIST, CIFAR-10/100, Clothing1M), label corruption, long tail, meta split."""
from .cifar import load_cifar
from .clothing1m import Clothing1M
from .fashion_mnist import load_fashion_mnist
from .idx import CorruptFileError
from .longtail import longtail_counts, longtail_indices
from .noise import corrupt_labels, flip_noise_matrix, uniform_noise_matrix
from .split import meta_split, overlapping_meta_split

__all__ = [
    "Clothing1M", "CorruptFileError", "corrupt_labels", "flip_noise_matrix", "load_cifar", "load_fashion_mnist",
    "longtail_counts", "longtail_indices", "meta_split", "overlapping_meta_split", "uniform_noise_matrix",
]
