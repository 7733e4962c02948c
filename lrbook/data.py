"""Datasets with a core label `y` and a bias (spurious) label `b` (REPRODUCTION_SPEC section 2).

Every builder returns a `SpuriousDataset`: training set with exactly round(r * n) bias-conflicting
(BC) samples, and an unbiased test set whose bias label is drawn independently of `y`.
Synthetic sets (parity, moon-star) are generated procedurally; MNIST-based sets read torchvision's
MNIST from a data root (argument, or the `LRBOOK_DATA` environment variable, or `./data`).
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import ConfigError


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
                               region_fn=self.region_fn, compose_fn=self.compose_fn, **moved)


def _bias_labels(y: np.ndarray, num_classes: int, bc_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Bias labels equal to `y` except on exactly round(r * n) random samples, which get a
    uniformly drawn different class."""
    n = len(y)
    b = y.copy()
    n_bc = int(round(bc_ratio * n))
    idx = rng.choice(n, size=n_bc, replace=False)
    b[idx] = (y[idx] + rng.integers(1, num_classes, size=n_bc)) % num_classes
    return b


def _unbiased_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, num_classes, size=n)


# --------------------------------------------------------------------------------------------
# Parity (Qiu, Kuang, Goel 2024): x = [core block, spurious block] in {-1, +1}^(2 * bits).


def parity_label(bits: np.ndarray) -> np.ndarray:
    """Class 1 when the block holds an odd number of -1 entries (product -1), else 0."""
    return (np.prod(bits, axis=-1) < 0).astype(np.int64)


def _parity_block_with_label(labels: np.ndarray, bits: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform blocks in {-1,1}^bits whose first k bits have the requested parity label: draw
    uniformly, then flip one random bit among the first k where the parity is wrong."""
    x = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(len(labels), bits))
    wrong = parity_label(x[:, :k]) != labels
    flip = rng.integers(0, k, size=len(labels))
    rows = np.nonzero(wrong)[0]
    x[rows, flip[rows]] *= -1
    return x


def make_parity(n_train=10000, n_test=10000, bits_per_block=10, core_bits=4, spurious_bits=2,
                bc_ratio=0.05, seed=0, **_) -> SpuriousDataset:
    """Parity task (paper Sec. 4.1, Fig. 3): y = parity of the first `core_bits` core bits,
    b = parity of the first `spurious_bits` spurious bits, the other bits are noise."""
    if not (0 < spurious_bits < core_bits <= bits_per_block):
        raise ConfigError("parity needs 0 < spurious_bits < core_bits <= bits_per_block")
    rng = np.random.default_rng(seed)

    def split(n, biased):
        core = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, bits_per_block))
        y = parity_label(core[:, :core_bits])
        b = _bias_labels(y, 2, bc_ratio, rng) if biased else _unbiased_labels(n, 2, rng)
        spur = _parity_block_with_label(b, bits_per_block, spurious_bits, rng)
        return torch.from_numpy(np.concatenate([core, spur], 1)), torch.from_numpy(y), torch.from_numpy(b)

    xtr, ytr, btr = split(n_train, True)
    xte, yte, bte = split(n_test, False)
    masks = parity_regions(bits_per_block, core_bits, spurious_bits)
    return SpuriousDataset("parity", xtr, ytr, btr, xte, yte, bte, num_classes=2,
                           params=dict(n_train=n_train, n_test=n_test, bits_per_block=bits_per_block,
                                       core_bits=core_bits, spurious_bits=spurious_bits, bc_ratio=bc_ratio),
                           region_fn=lambda x: {k: v.to(x.device) for k, v in masks.items()})


def parity_regions(bits_per_block: int, core_bits: int, spurious_bits: int) -> dict[str, torch.Tensor]:
    """The three bit blocks of Fig. 3's attribution panels: core, spurious, noise."""
    core = torch.zeros(2 * bits_per_block, dtype=torch.bool)
    core[:core_bits] = True
    spur = torch.zeros_like(core)
    spur[bits_per_block:bits_per_block + spurious_bits] = True
    return {"core": core, "spurious": spur, "noise": ~(core | spur)}


# --------------------------------------------------------------------------------------------
# Moon-star (Geirhos et al. 2020): binary images of a crescent moon (class 0) or a star (class 1);
# the shortcut is the quadrant. Training: moons top-left/bottom-right, stars top-right/bottom-left.

# Quadrants: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right. Class c "owns" these:
QUADRANTS_OF_CLASS = {0: (0, 3), 1: (1, 2)}


def _moon(yy, xx, cy, cx, radius, angle):
    """Crescent: disk minus a disk shifted by 0.55 radius along `angle`."""
    inner_y = cy + 0.55 * radius * np.sin(angle)
    inner_x = cx + 0.55 * radius * np.cos(angle)
    outer = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    inner = (yy - inner_y) ** 2 + (xx - inner_x) ** 2 <= (0.85 * radius) ** 2
    return outer & ~inner


def _star(yy, xx, cy, cx, radius, angle, points=5, inner_ratio=0.45):
    """Five-pointed star with straight edges, via the polar equation of each edge."""
    alpha = math.pi / points
    rho = np.hypot(yy - cy, xx - cx)
    phi = np.mod(np.arctan2(yy - cy, xx - cx) - angle, 2 * alpha)
    phi = np.where(phi > alpha, 2 * alpha - phi, phi)
    r_in = inner_ratio * radius
    boundary = radius * r_in * math.sin(alpha) / (radius * np.sin(phi) - r_in * np.sin(phi - alpha))
    return rho <= boundary


def render_shape(shape: int, quadrant: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One binary image (size x size) with a moon (0) or star (1) placed in `quadrant`."""
    half = size / 2
    radius = rng.uniform(0.25, 0.4) * half
    margin = min(radius + 1, half / 2)
    cy = rng.uniform(margin, half - margin) + (half if quadrant in (2, 3) else 0)
    cx = rng.uniform(margin, half - margin) + (half if quadrant in (1, 3) else 0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    angle = rng.uniform(0, 2 * math.pi)
    mask = _moon(yy, xx, cy, cx, radius, angle) if shape == 0 else _star(yy, xx, cy, cx, radius, angle)
    return mask.astype(np.float32)


def quadrant_class(quadrant: np.ndarray) -> np.ndarray:
    """The class whose training images sit in this quadrant (the spurious label)."""
    return np.isin(quadrant, QUADRANTS_OF_CLASS[1]).astype(np.int64)


def make_moon_star(n_train=4000, n_test=4000, image_size=64, bc_ratio=0.05, seed=0, **_) -> SpuriousDataset:
    """Moon-star shortcut task (Fig. 15). BC samples sit in the other class's quadrants; the test
    set places every shape in a uniformly random quadrant."""
    rng = np.random.default_rng(seed)

    def split(n, biased):
        y = np.arange(n) % 2
        rng.shuffle(y)
        b = _bias_labels(y, 2, bc_ratio, rng) if biased else _unbiased_labels(n, 2, rng)
        pick = rng.integers(0, 2, size=n)
        quadrant = np.where(b == 0, np.array(QUADRANTS_OF_CLASS[0])[pick], np.array(QUADRANTS_OF_CLASS[1])[pick])
        x = np.stack([render_shape(int(s), int(q), image_size, rng) for s, q in zip(y, quadrant)])
        return torch.from_numpy(x[:, None]), torch.from_numpy(y.astype(np.int64)), torch.from_numpy(b)

    xtr, ytr, btr = split(n_train, True)
    xte, yte, bte = split(n_test, False)
    return SpuriousDataset("moon_star", xtr, ytr, btr, xte, yte, bte, num_classes=2,
                           params=dict(n_train=n_train, n_test=n_test, image_size=image_size, bc_ratio=bc_ratio))
    # No attribution regions: shape (core) and position (spurious) live in the same pixels, and with
    # IG's zero baseline all attribution falls on the object. Training probes record BA/BC accuracy.


# --------------------------------------------------------------------------------------------
# MNIST-based sets (spec 2.3 and 2.6).

# LfF class colours (Nam et al. 2020), RGB in [0, 1].
COLORED_MNIST_COLORS = torch.tensor([
    [0.984, 0.313, 0.169], [0.991, 0.916, 0.352], [0.673, 0.461, 0.580], [0.783, 0.832, 0.601],
    [0.088, 0.778, 0.982], [0.321, 0.961, 0.446], [0.025, 0.236, 0.759], [0.555, 0.102, 0.762],
    [0.208, 0.393, 0.019], [0.834, 0.202, 0.267]])


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: the argument, else $LRBOOK_DATA, else ./data."""
    return Path(root or os.environ.get("LRBOOK_DATA") or "data").expanduser()


# torchvision's MNIST layout: these four files (unpacked) in <root>/MNIST/raw/.
MNIST_RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                   "t10k-labels-idx1-ubyte")
DATA_ROOT_SETTINGS = "data_root= in a notebook, --data-root on the command line, or $LRBOOK_DATA"


class DataNotFoundError(FileNotFoundError, ConfigError):
    """A dataset's files are neither under the data root nor downloadable; the message says where
    they are expected and which setting chooses the data root (so it is also a `ConfigError`)."""


def mnist_files_missing(root: str | os.PathLike | None = None) -> list[str]:
    """The MNIST files torchvision needs that `<data_root>/MNIST/raw/` lacks (none when torchvision's
    older processed/ files are there instead). Looks only: creates nothing."""
    mnist = data_root(root) / "MNIST"
    if all((mnist / "processed" / f).is_file() for f in ("training.pt", "test.pt")):
        return []
    return [f for f in MNIST_RAW_FILES if not (mnist / "raw" / f).is_file()]


def _download_mnist(path: Path) -> str | None:
    """Download MNIST into `path` through torchvision; None on success, else the reason in one line.
    A failed download leaves no folder behind that it created (no empty MNIST/raw/)."""
    import shutil

    import torchvision

    # The topmost folder the download will create (torchvision makes <root>/MNIST/raw/ first).
    created = next((p for p in (path, path / "MNIST", path / "MNIST" / "raw") if not p.exists()), None)
    try:
        torchvision.datasets.MNIST(str(path), train=True, download=True)
        return None
    except (RuntimeError, OSError) as e:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        return lines[-1] if lines else type(e).__name__


def require_mnist(root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The data root once MNIST is readable there (downloaded first when absent and `download`);
    else `DataNotFoundError` naming the expected layout and the settings that choose the root."""
    path = data_root(root)
    missing = mnist_files_missing(path)
    tried = "downloading is off"
    if missing and download:
        tried = f"downloading it failed: {_download_mnist(path) or 'files still missing'}"
        missing = mnist_files_missing(path)
    if missing:
        raw = path.resolve() / "MNIST" / "raw"
        lacks = "them" if len(missing) == len(MNIST_RAW_FILES) else ", ".join(missing)
        raise DataNotFoundError(
            f"MNIST not found: torchvision's layout <root>/MNIST/raw/ holds {', '.join(MNIST_RAW_FILES)}, "
            f"and {raw}/ lacks {lacks} ({tried}). Set the data root with "
            f"{DATA_ROOT_SETTINGS}.")
    return path


@functools.lru_cache(maxsize=4)
def load_mnist(root: str | None = None, download: bool = True) -> tuple[torch.Tensor, ...]:
    """Raw MNIST as uint8 tensors (x_train, y_train, x_test, y_test) from torchvision (see
    `require_mnist` for where it is looked for and when it is downloaded)."""
    import torchvision

    path = str(require_mnist(root, download))
    train = torchvision.datasets.MNIST(path, train=True, download=False)
    test = torchvision.datasets.MNIST(path, train=False, download=False)
    return train.data, train.targets, test.data, test.targets


MNIST_DATASETS = ("colored_mnist", "double_mnist", "mnist_cifar")
CIFAR_DATASETS = ("mnist_cifar", "corrupted_cifar10")


def require_data(datasets, root: str | os.PathLike | None = None, download: bool = True) -> None:
    """Check once, before any run starts, that the files the given datasets read are there (or can
    be downloaded): MNIST for the MNIST-based sets, CIFAR-10 for the CIFAR-based ones. Raises
    `DataNotFoundError`; the procedural sets (parity, moon-star) need nothing."""
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    if any(d in MNIST_DATASETS for d in names):
        require_mnist(root, download)
    if any(d in CIFAR_DATASETS for d in names):
        from .cifar_data import load_cifar10

        try:
            load_cifar10(root, download)
        except FileNotFoundError as e:
            raise DataNotFoundError(f"{e} ({DATA_ROOT_SETTINGS})") from None


def _subset(n_avail: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if n > n_avail:
        raise ConfigError(f"asked for {n} samples but the split has only {n_avail}")
    return np.sort(rng.choice(n_avail, size=n, replace=False)) if n < n_avail else np.arange(n_avail)


def make_colored_mnist(n_train=60000, n_test=10000, bc_ratio=0.01, color_std=0.005, seed=0, root=None,
                       download=True, **_) -> SpuriousDataset:
    """Colored MNIST (LfF): strokes coloured clamp(mu_b + eps, 0, 1), one RGB jitter per image."""
    xtr_raw, ytr_raw, xte_raw, yte_raw = load_mnist(None if root is None else str(root), download)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)

    def split(x_raw, y_raw, n, biased):
        idx = _subset(len(y_raw), n, rng)
        y = y_raw.numpy()[idx].astype(np.int64)
        b = _bias_labels(y, 10, bc_ratio, rng) if biased else _unbiased_labels(n, 10, rng)
        color = COLORED_MNIST_COLORS[torch.from_numpy(b)] + color_std * torch.randn(n, 3, generator=gen)
        x = x_raw[torch.from_numpy(idx)].float().div_(255)[:, None] * color.clamp(0, 1)[:, :, None, None]
        return x, torch.from_numpy(y), torch.from_numpy(b)

    xtr, ytr, btr = split(xtr_raw, ytr_raw, n_train, True)
    xte, yte, bte = split(xte_raw, yte_raw, n_test, False)
    return SpuriousDataset("colored_mnist", xtr, ytr, btr, xte, yte, bte, num_classes=10,
                           params=dict(n_train=n_train, n_test=n_test, bc_ratio=bc_ratio, color_std=color_std),
                           compose_fn=recolor)


def stroke_color(x: torch.Tensor) -> torch.Tensor:
    """The RGB stroke colour of Colored MNIST images (N, 3): each channel's brightest pixel (MNIST
    digits reach 255, so the brightest pixel carries the full colour)."""
    return x.flatten(2).amax(2)


def recolor(shape_src: torch.Tensor, color_src: torch.Tensor) -> torch.Tensor:
    """Colored MNIST images with the digit strokes of `shape_src` in the colours of `color_src`."""
    c = stroke_color(shape_src)
    k = c.argmax(1)
    rows = torch.arange(len(shape_src), device=shape_src.device)
    gray = shape_src[rows, k] / c[rows, k].clamp_min(1e-12)[:, None, None]
    return gray[:, None] * stroke_color(color_src)[:, :, None, None]


def make_double_mnist(n_train=60000, n_test=10000, bc_ratio=0.01, left_intensity=0.5, right_intensity=1.0,
                      seed=0, root=None, download=True, **_) -> SpuriousDataset:
    """Double MNIST (the authors'): core digit left at intensity 0.5, brighter spurious digit
    right (label b), drawn from the same split's pool. Input 1 x 28 x 56."""
    xtr_raw, ytr_raw, xte_raw, yte_raw = load_mnist(None if root is None else str(root), download)
    rng = np.random.default_rng(seed)

    def split(x_raw, y_raw, n, biased):
        idx = _subset(len(y_raw), n, rng)
        labels_all = y_raw.numpy()
        y = labels_all[idx].astype(np.int64)
        b = _bias_labels(y, 10, bc_ratio, rng) if biased else _unbiased_labels(n, 10, rng)
        pools = [np.nonzero(labels_all == c)[0] for c in range(10)]
        right = np.empty(n, dtype=np.int64)
        for c in range(10):
            rows = np.nonzero(b == c)[0]
            right[rows] = rng.choice(pools[c], size=len(rows))
        x = torch.cat([x_raw[torch.from_numpy(idx)].float() * (left_intensity / 255),
                       x_raw[torch.from_numpy(right)].float() * (right_intensity / 255)], dim=2)
        return x[:, None], torch.from_numpy(y), torch.from_numpy(b)

    xtr, ytr, btr = split(xtr_raw, ytr_raw, n_train, True)
    xte, yte, bte = split(xte_raw, yte_raw, n_test, False)

    def halves(x):
        right = torch.zeros(x.shape[-2:], dtype=torch.bool, device=x.device)
        right[:, 28:] = True
        return {"core": ~right, "spurious": right}

    def swap_halves(core_src, spurious_src):
        return torch.cat([core_src[..., :28], spurious_src[..., 28:]], dim=-1)

    return SpuriousDataset("double_mnist", xtr, ytr, btr, xte, yte, bte, num_classes=10,
                           params=dict(n_train=n_train, n_test=n_test, bc_ratio=bc_ratio,
                                       left_intensity=left_intensity, right_intensity=right_intensity),
                           region_fn=halves, compose_fn=swap_halves)


DATASETS: dict[str, Callable[..., SpuriousDataset]] = {
    "parity": make_parity,
    "moon_star": make_moon_star,
    "colored_mnist": make_colored_mnist,
    "double_mnist": make_double_mnist,
}


def make_dataset(name: str, seed: int = 0, root=None, **params) -> SpuriousDataset:
    """Build dataset `name` with its parameters (see `DATASETS`)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    if name in ("colored_mnist", "double_mnist", "mnist_cifar", "corrupted_cifar10"):
        params["root"] = root
    return DATASETS[name](seed=seed, **params)


@functools.lru_cache(maxsize=2)
def _cached(name, seed, root, frozen_params):
    return make_dataset(name, seed=seed, root=root, **dict(frozen_params))


def dataset_for(cfg, root=None) -> SpuriousDataset:
    """The dataset a `RunConfig` asks for (cached per process: sweeps reuse it)."""
    return _cached(cfg.dataset, cfg.data_seed, None if root is None else str(root),
                   tuple(sorted(cfg.dataset_params.items())))


def make_mnist_cifar(**params) -> SpuriousDataset:
    """MNIST-CIFAR (spec 2.5); see `lrbook.cifar_data.make_mnist_cifar`."""
    from .cifar_data import make_mnist_cifar as build

    return build(**params)


def make_corrupted_cifar10(**params) -> SpuriousDataset:
    """Corrupted CIFAR-10 (spec 2.4); see `lrbook.cifar_data.make_corrupted_cifar10`."""
    from .cifar_data import make_corrupted_cifar10 as build

    return build(**params)


DATASETS["mnist_cifar"] = make_mnist_cifar
DATASETS["corrupted_cifar10"] = make_corrupted_cifar10
