"""Standard classification with an exact background (paper Sec. 5, page 05): MNIST and Fashion-MNIST,
and, beyond the paper, their versions with a class-dependent patch after Li et al. (2019).

MNIST and Fashion-MNIST are read from torchvision's layout under the data root (`base.data_root`;
downloaded there when absent). Pixels at 0 are background, so the share of attribution that falls
on the background is exact here, where CIFAR and ImageNet need a segmentation model (Fig. 10).

The patch experiment tests the paper's claim that standard tasks hide rare spurious features where we
control them: a fraction `patch_fraction` of the training images carries, in its top-left corner, a
`patch_size` x `patch_size` binary pattern that names the image's class (easy to fit, and useless at
test time); every test image carries the pattern of a class drawn independently of its label. The
bias label `b` of a test image is its patch's class, so bias-aligned (BA) test images are those whose
patch agrees with the label, and BA minus BC accuracy measures how much a model reads the patch.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import SpuriousDataset, subset, unbiased_labels
from .mnist import load_mnist

PATCH_SEED = 1234  # the ten class patterns are the same for every run and data seed


def class_patterns(num_classes: int = 10, size: int = 4) -> torch.Tensor:
    """One fixed random binary `size` x `size` pattern per class (no two equal, none blank)."""
    gen = torch.Generator().manual_seed(PATCH_SEED)
    while True:
        p = torch.randint(0, 2, (num_classes, size, size), generator=gen).float()
        flat = p.flatten(1)
        if len({tuple(r.tolist()) for r in flat}) == num_classes and (flat.sum(1) > 0).all():
            return p


def foreground_regions(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Exact background of MNIST-like images: pixels at 0 (summed over channels)."""
    fg = x.abs().sum(1, keepdim=True) > 0 if x.dim() == 4 else x != 0
    return {"foreground": fg, "background": ~fg}


def _images(folder: str, n_train: int, n_test: int, seed: int, root, download):
    xtr_raw, ytr_raw, xte_raw, yte_raw = load_mnist(None if root is None else str(root), download, folder)
    rng = np.random.default_rng(seed)
    itr, ite = subset(len(ytr_raw), n_train, rng), subset(len(yte_raw), n_test, rng)
    to_x = lambda raw, idx: raw[torch.from_numpy(idx)].float().div_(255)[:, None]  # (N, 1, 28, 28) in [0, 1]
    return (to_x(xtr_raw, itr), ytr_raw[torch.from_numpy(itr)].long(), to_x(xte_raw, ite),
            yte_raw[torch.from_numpy(ite)].long(), rng)


def _standard(name: str, folder: str, n_train: int, n_test: int, seed: int, root, download) -> SpuriousDataset:
    xtr, ytr, xte, yte, _ = _images(folder, n_train, n_test, seed, root, download)
    return SpuriousDataset(name, xtr, ytr, ytr.clone(), xte, yte, yte.clone(), num_classes=10,
                           params=dict(n_train=n_train, n_test=n_test), region_fn=foreground_regions,
                           has_bias=False, attribution_baseline="uniform")


def make_mnist(n_train=60000, n_test=10000, seed=0, root=None, download=True, **_) -> SpuriousDataset:
    """MNIST (LeCun et al. 1998), a random `n_train` / `n_test` subset of the standard splits."""
    return _standard("mnist", "MNIST", n_train, n_test, seed, root, download)


def make_fashion_mnist(n_train=60000, n_test=10000, seed=0, root=None, download=True, **_) -> SpuriousDataset:
    """Fashion-MNIST (Xiao et al. 2017), a random `n_train` / `n_test` subset of the standard splits."""
    return _standard("fashion_mnist", "FashionMNIST", n_train, n_test, seed, root, download)


def stamp(x: torch.Tensor, classes: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """`x` with each image's top-left corner replaced by the pattern of its entry in `classes`."""
    s = patterns.shape[-1]
    out = x.clone()
    out[:, 0, :s, :s] = patterns[classes]
    return out


def _patched(name: str, folder: str, n_train: int, n_test: int, patch_fraction: float, patch_size: int,
             seed: int, root, download) -> SpuriousDataset:
    from ..config import ConfigError

    if not 0.0 <= patch_fraction <= 1.0:
        raise ConfigError(f"patch_fraction must be in [0, 1], got {patch_fraction!r}")
    if not 1 <= patch_size <= 14:
        raise ConfigError(f"patch_size must be 1 to 14 pixels, got {patch_size!r}")
    xtr, ytr, xte, yte, rng = _images(folder, n_train, n_test, seed, root, download)
    patterns = class_patterns(10, patch_size)
    carries = np.sort(rng.choice(n_train, size=int(round(patch_fraction * n_train)), replace=False))
    rows = torch.from_numpy(carries)
    xtr[rows] = stamp(xtr[rows], ytr[rows], patterns)
    bte = torch.from_numpy(unbiased_labels(n_test, 10, rng))
    xte = stamp(xte, bte, patterns)

    def patch_region(x):
        mask = torch.zeros(x.shape[-2:], dtype=torch.bool, device=x.device)
        mask[:patch_size, :patch_size] = True
        return {"patch": mask, "image": ~mask}

    return SpuriousDataset(name, xtr, ytr, ytr.clone(), xte, yte, bte, num_classes=10,
                           params=dict(n_train=n_train, n_test=n_test, patch_fraction=patch_fraction,
                                       patch_size=patch_size, n_patched=len(carries)),
                           region_fn=patch_region, attribution_baseline="uniform")


def make_mnist_patch(n_train=60000, n_test=10000, patch_fraction=0.1, patch_size=4, seed=0, root=None,
                     download=True, **_) -> SpuriousDataset:
    """MNIST with a class patch on `patch_fraction` of the training images (module docstring)."""
    return _patched("mnist_patch", "MNIST", n_train, n_test, patch_fraction, patch_size, seed, root, download)


def make_fashion_mnist_patch(n_train=60000, n_test=10000, patch_fraction=0.1, patch_size=4, seed=0, root=None,
                             download=True, **_) -> SpuriousDataset:
    """Fashion-MNIST with a class patch on `patch_fraction` of the training images (module docstring)."""
    return _patched("fashion_mnist_patch", "FashionMNIST", n_train, n_test, patch_fraction, patch_size, seed,
                    root, download)
