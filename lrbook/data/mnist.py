"""The MNIST-based datasets of paper Sec. 4.1 (REPRODUCTION_SPEC 2.3, 2.6): Colored MNIST and Double
MNIST, from torchvision's MNIST under the data root (`base.data_root`)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from .base import DATA_ROOT_SETTINGS, DataNotFoundError, SpuriousDataset, bias_labels, data_root, subset, unbiased_labels

# --------------------------------------------------------------------------------------------
# MNIST-based sets (spec 2.3 and 2.6).

# LfF class colours (Nam et al. 2020), RGB in [0, 1].
COLORED_MNIST_COLORS = torch.tensor([
    [0.984, 0.313, 0.169], [0.991, 0.916, 0.352], [0.673, 0.461, 0.580], [0.783, 0.832, 0.601],
    [0.088, 0.778, 0.982], [0.321, 0.961, 0.446], [0.025, 0.236, 0.759], [0.555, 0.102, 0.762],
    [0.208, 0.393, 0.019], [0.834, 0.202, 0.267]])


# torchvision's MNIST layout: these four files (unpacked) in <root>/MNIST/raw/; Fashion-MNIST has the
# same four names in <root>/FashionMNIST/raw/.
MNIST_RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                   "t10k-labels-idx1-ubyte")
TORCHVISION_CLASSES = {"MNIST": "MNIST", "FashionMNIST": "FashionMNIST"}  # folder name -> torchvision class
SHOWN_AS = {"MNIST": "MNIST", "FashionMNIST": "Fashion-MNIST"}


def mnist_files_missing(root: str | os.PathLike | None = None, folder: str = "MNIST") -> list[str]:
    """The files torchvision needs that `<data_root>/<folder>/raw/` lacks (none when torchvision's
    older processed/ files are there instead); `folder` is "MNIST" or "FashionMNIST". Looks only:
    creates nothing."""
    base = data_root(root) / folder
    if all((base / "processed" / f).is_file() for f in ("training.pt", "test.pt")):
        return []
    return [f for f in MNIST_RAW_FILES if not (base / "raw" / f).is_file()]


def _download_mnist(path: Path, folder: str = "MNIST") -> str | None:
    """Download MNIST (or Fashion-MNIST) into `path` through torchvision; None on success, else the
    reason in one line. A failed download leaves no folder behind that it created (no empty raw/)."""
    import shutil

    import torchvision

    # The topmost folder the download will create (torchvision makes <root>/<folder>/raw/ first).
    created = next((p for p in (path, path / folder, path / folder / "raw") if not p.exists()), None)
    try:
        getattr(torchvision.datasets, TORCHVISION_CLASSES[folder])(str(path), train=True, download=True)
        return None
    except (RuntimeError, OSError) as e:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        return lines[-1] if lines else type(e).__name__


def require_mnist(root: str | os.PathLike | None = None, download: bool = True, folder: str = "MNIST") -> Path:
    """The data root once MNIST (or Fashion-MNIST, `folder="FashionMNIST"`) is readable there
    (downloaded first when absent and `download`); else `DataNotFoundError` naming the expected
    layout and the settings that choose the root."""
    path = data_root(root)
    missing = mnist_files_missing(path, folder)
    tried = "downloading is off"
    if missing and download:
        tried = f"downloading it failed: {_download_mnist(path, folder) or 'files still missing'}"
        missing = mnist_files_missing(path, folder)
    if missing:
        raw = path.resolve() / folder / "raw"
        lacks = "them" if len(missing) == len(MNIST_RAW_FILES) else ", ".join(missing)
        raise DataNotFoundError(
            f"{SHOWN_AS[folder]} not found: torchvision's layout <root>/{folder}/raw/ holds "
            f"{', '.join(MNIST_RAW_FILES)}, and {raw}/ lacks {lacks} ({tried}). Set the data root with "
            f"{DATA_ROOT_SETTINGS}.")
    return path


@functools.lru_cache(maxsize=4)
def load_mnist(root: str | None = None, download: bool = True, folder: str = "MNIST") -> tuple[torch.Tensor, ...]:
    """Raw MNIST (or Fashion-MNIST) as uint8 tensors (x_train, y_train, x_test, y_test) from
    torchvision (see `require_mnist` for where it is looked for and when it is downloaded)."""
    import torchvision

    path = str(require_mnist(root, download, folder))
    cls = getattr(torchvision.datasets, TORCHVISION_CLASSES[folder])
    train = cls(path, train=True, download=False)
    test = cls(path, train=False, download=False)
    return train.data, train.targets, test.data, test.targets


def make_colored_mnist(n_train=60000, n_test=10000, bc_ratio=0.01, color_std=0.005, seed=0, root=None,
                       download=True, **_) -> SpuriousDataset:
    """Colored MNIST (LfF): strokes coloured clamp(mu_b + eps, 0, 1), one RGB jitter per image."""
    xtr_raw, ytr_raw, xte_raw, yte_raw = load_mnist(None if root is None else str(root), download)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)

    def split(x_raw, y_raw, n, biased):
        idx = subset(len(y_raw), n, rng)
        y = y_raw.numpy()[idx].astype(np.int64)
        b = bias_labels(y, 10, bc_ratio, rng) if biased else unbiased_labels(n, 10, rng)
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
        idx = subset(len(y_raw), n, rng)
        labels_all = y_raw.numpy()
        y = labels_all[idx].astype(np.int64)
        b = bias_labels(y, 10, bc_ratio, rng) if biased else unbiased_labels(n, 10, rng)
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

