"""Datasets with a core label `y` and a bias (spurious) label `b` (paper Sec. 4.1, REPRODUCTION_SPEC 2).

Every builder returns a `SpuriousDataset` (`base`): a training set with exactly round(r * n)
bias-conflicting (BC) samples and an unbiased test set whose bias label is drawn independently of
`y`. The builders live by family, `lrbook.vocabulary.DATASET_FAMILIES` says which family a dataset
is in, and dataset `name` is built by `make_<name>` of that family's module:

* `synthetic`: parity, moon-star (generated);
* `mnist`: Colored MNIST, Double MNIST (torchvision's MNIST under the data root);
* `cifar`: MNIST-CIFAR, Corrupted CIFAR-10 (CIFAR-10 too), whose corruptions are in `corruptions`,
  and CIFAR-10 and CIFAR-100 themselves (standard classification, Sec. 5);
* `standard`: MNIST and Fashion-MNIST (exact background) and their patched versions (page 05);
* `imagenet`: ImageNet-1k, streamed from disk (`lrbook.distributed` trains it).

A family's module is imported only when one of its datasets is built.
"""
from __future__ import annotations

import functools
import importlib
import os
from typing import Callable

from ..config import ConfigError
from ..vocabulary import (CIFAR100_BASED, CIFAR_BASED, DATASET_FAMILIES, FASHION_MNIST_BASED, MNIST_BASED,
                          SEGMENTED_BACKGROUND, STREAMED)
from .base import DATA_ROOT_SETTINGS, DataNotFoundError, SpuriousDataset
from .mnist import require_mnist

# builders that read files under the data root
NEEDS_DATA_ROOT = MNIST_BASED + FASHION_MNIST_BASED + CIFAR_BASED + CIFAR100_BASED + STREAMED


def builder(name: str) -> Callable[..., SpuriousDataset]:
    """The function that builds dataset `name`: `make_<name>` of its family's module."""
    if name not in DATASET_FAMILIES:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {sorted(DATASET_FAMILIES)}")
    module = importlib.import_module(f"{__name__}.{DATASET_FAMILIES[name]}")
    return getattr(module, f"make_{name}")


def make_dataset(name: str, seed: int = 0, root=None, **params) -> SpuriousDataset:
    """Build dataset `name` with its parameters (the keyword arguments of its `make_<name>`)."""
    build = builder(name)
    if name in NEEDS_DATA_ROOT:
        params["root"] = root
    return build(seed=seed, **params)


@functools.lru_cache(maxsize=2)
def _cached(name, seed, root, frozen_params):
    return make_dataset(name, seed=seed, root=root, **dict(frozen_params))


def dataset_for(cfg, root=None) -> SpuriousDataset:
    """The dataset a `RunConfig` asks for (cached per process: sweeps reuse it)."""
    return _cached(cfg.dataset, cfg.data_seed, None if root is None else str(root),
                   tuple(sorted(cfg.dataset_params.items())))


def require_data(datasets, root: str | os.PathLike | None = None, download: bool = True) -> None:
    """Check once, before any run starts, that the files the given datasets read are there (or can
    be downloaded): MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 or ImageNet (never downloaded) as the
    sets need. Raises `DataNotFoundError`; the procedural sets (parity, moon-star) need nothing."""
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    if any(d in MNIST_BASED for d in names):
        require_mnist(root, download)
    if any(d in FASHION_MNIST_BASED for d in names):
        require_mnist(root, download, folder="FashionMNIST")
    if any(d in STREAMED for d in names):
        from .imagenet import require_imagenet

        require_imagenet(root)
    if any(d in SEGMENTED_BACKGROUND for d in names):  # their evaluation needs DeepLabV3's weights (Fig. 10)
        from ..backgrounds import require_configured_segmenter

        require_configured_segmenter()
    if any(d in CIFAR100_BASED for d in names):
        from .cifar import load_cifar100

        try:
            load_cifar100(root, download)
        except FileNotFoundError as e:
            raise DataNotFoundError(f"{e} ({DATA_ROOT_SETTINGS})") from None
    if any(d in CIFAR_BASED for d in names):
        from .cifar import load_cifar10

        try:
            load_cifar10(root, download)
        except FileNotFoundError as e:
            raise DataNotFoundError(f"{e} ({DATA_ROOT_SETTINGS})") from None
