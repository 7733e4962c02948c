"""What every dataset builder shares: the `SpuriousDataset` container, bias labels with an exact
number of bias-conflicting (BC) samples, and where data files live (REPRODUCTION_SPEC section 2)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import ConfigError


@dataclass
class SpuriousDataset:
    """In-memory train/test tensors. `x_*` float32 (N, ...), `y_*`/`b_*` int64 (N,)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    b_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    b_test: torch.Tensor
    num_classes: int
    params: dict = field(default_factory=dict)
    # Maps a batch of inputs to named boolean masks (broadcastable to the inputs) used for
    # attribution shares: e.g. parity's core / spurious / noise bit blocks.
    region_fn: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None
    # compose_fn(core_src, spurious_src): inputs with the core feature of the first batch and the
    # spurious feature of the second (e.g. a digit's shape in another digit's colour); used by the
    # feature-Shapley attribution where the two features overlap in pixel space.
    compose_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    # False for standard classification (MNIST, CIFAR, ImageNet): there is no bias label, `b_*`
    # repeats `y_*`, and the bias metrics (BA/BC accuracies, BSI, BC loss ratio) are not recorded.
    has_bias: bool = True
    # The IG baseline (`lrbook.attribution`): "uniform" where many input pixels are exactly 0.
    attribution_baseline: str = "zero"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def bc_ratio_drawn(self) -> float:
        return float((self.y_train != self.b_train).float().mean())

    def regions(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.region_fn is None:
            return {}
        return self.region_fn(x)

    def to(self, device) -> "SpuriousDataset":
        moved = {k: getattr(self, k).to(device) for k in
                 ("x_train", "y_train", "b_train", "x_test", "y_test", "b_test")}
        return SpuriousDataset(self.name, num_classes=self.num_classes, params=self.params,
                               region_fn=self.region_fn, compose_fn=self.compose_fn, has_bias=self.has_bias,
                               attribution_baseline=self.attribution_baseline,
                               **moved)


def bias_labels(y: np.ndarray, num_classes: int, bc_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Bias labels equal to `y` except on exactly round(r * n) random samples, which get a
    uniformly drawn different class."""
    n = len(y)
    b = y.copy()
    n_bc = int(round(bc_ratio * n))
    idx = rng.choice(n, size=n_bc, replace=False)
    b[idx] = (y[idx] + rng.integers(1, num_classes, size=n_bc)) % num_classes
    return b


def unbiased_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, num_classes, size=n)


def subset(n_avail: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if n > n_avail:
        raise ConfigError(f"asked for {n} samples but the split has only {n_avail}")
    return np.sort(rng.choice(n_avail, size=n, replace=False)) if n < n_avail else np.arange(n_avail)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: the argument, else $LRBOOK_DATA, else ./data."""
    return Path(root or os.environ.get("LRBOOK_DATA") or "data").expanduser()


DATA_ROOT_SETTINGS = "data_root= in a notebook, --data-root on the command line, or $LRBOOK_DATA"


class DataNotFoundError(FileNotFoundError, ConfigError):
    """A dataset's files are neither under the data root nor downloadable; the message says where
    they are expected and which setting chooses the data root (so it is also a `ConfigError`)."""
