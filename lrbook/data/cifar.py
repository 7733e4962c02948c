"""CIFAR-10-based datasets with a spurious feature (REPRODUCTION_SPEC sections 2.4 and 2.5).

* `make_mnist_cifar`: MNIST-CIFAR "domino" (Shah et al. 2020, 10 classes). Image 3 x 64 x 32: the
  MNIST digit (zero-padded to 32 x 32, replicated to 3 channels) on top, the CIFAR-10 image below.
  y = CIFAR class (core), b = MNIST digit class (spurious).
* `make_corrupted_cifar10`: Corrupted CIFAR-10 "Type0" (Nam et al. 2020). b = corruption type;
  corruption j (`lrbook.data.corruptions.CORRUPTIONS[j]`) is aligned with class j. The corrupted
  images are cached on disk under `<data_root>/lrbook_cache/` after the first build.
* `make_cifar10`, `make_cifar100`: CIFAR-10 and CIFAR-100 themselves as standard classification
  sets (paper Sec. 5): no bias label (`b` repeats `y`); their backgrounds come from DeepLabV3
  (`lrbook.backgrounds`, Fig. 10), so they carry no `region_fn`.

Both follow `lrbook.data.base`'s conventions: exactly round(r * n) bias-conflicting training samples,
an unbiased test set (b uniform and independent of y), everything deterministic from `seed`.

CIFAR-10 is read through torchvision's `CIFAR10` (layout `<root>/cifar-10-batches-py/` with
`data_batch_1..5`, `test_batch`, `batches.meta`), CIFAR-100 through its `CIFAR100` (layout
`<root>/cifar-100-python/` with `train`, `test`, `meta`; the 100 fine labels). CHOICE: torchvision
verifies the md5 of every file when the dataset is opened, which rejects any stand-in with the real
layout (the tests use one). `_CIFAR10Files` / `_CIFAR100Files` therefore replace that check by "the
files exist" plus a structural check of what was read (uint8 32x32x3 images, one label in range per
image); downloading still goes through torchvision, whose download verifies the archive's md5.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError
from . import corruptions
from .base import SpuriousDataset, bias_labels, data_root, subset, unbiased_labels
from .mnist import load_mnist

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"

# Bump when the generation of Corrupted CIFAR-10 changes: old cache files are then ignored.
_CACHE_VERSION = 1


# --------------------------------------------------------------------------------------------
# Raw CIFAR-10


def _existence_checked(base):
    """torchvision's `base` (CIFAR10 or CIFAR100) with the per-file md5 check replaced by an
    existence check, and class names read leniently (numbered names when the meta file is odd)."""

    class _Files(base):
        def _check_integrity(self) -> bool:
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, name))
                       for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            try:
                with open(path, "rb") as f:
                    self.classes = list(pickle.load(f, encoding="latin1")[self.meta["key"]])
            except (OSError, KeyError, pickle.UnpicklingError, EOFError):
                self.classes = (list(CIFAR10_CLASSES) if self.base_folder == CIFAR10_DIR
                                else [str(c) for c in range(100)])
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    _Files.__name__ = _Files.__qualname__ = f"_{base.__name__}Files"
    return _Files


def _cifar10_class():
    import torchvision

    return _existence_checked(torchvision.datasets.CIFAR10)


def _cifar100_class():
    import torchvision

    return _existence_checked(torchvision.datasets.CIFAR100)


_LAYOUTS = {
    "CIFAR-10": (CIFAR10_DIR, "data_batch_1 ... data_batch_5, test_batch, batches.meta",
                 "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "CIFAR-100": (CIFAR100_DIR, "train, test, meta",
                  "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}


def _missing_cifar(path: Path, why: str, which: str = "CIFAR-10") -> FileNotFoundError:
    folder, files, url = _LAYOUTS[which]
    return FileNotFoundError(
        f"{which} not found under {path.resolve()} and could not be downloaded ({why}). Point "
        f"LRBOOK_DATA (or data_root=) at a folder that holds {folder}/ in torchvision's layout "
        f"({files}: the python pickles of {url}), or run once with internet access to download it.")


def load_cifar10(root=None, download: bool = True) -> tuple[torch.Tensor, ...]:
    """Raw CIFAR-10 as tensors (x_train uint8 (N,32,32,3), y_train int64, x_test, y_test).

    Read from `data_root(root)` through torchvision (downloaded there when `download` and
    absent); FileNotFoundError naming LRBOOK_DATA when it is neither there nor downloadable.
    Cached per resolved root.
    """
    return _load_cifar10(str(data_root(root).resolve()), bool(download))


def load_cifar100(root=None, download: bool = True) -> tuple[torch.Tensor, ...]:
    """Raw CIFAR-100 as tensors (x_train uint8 (N,32,32,3), y_train int64 fine labels 0..99,
    x_test, y_test); as `load_cifar10`, from `<root>/cifar-100-python/`."""
    return _load_cifar100(str(data_root(root).resolve()), bool(download))


@functools.lru_cache(maxsize=2)
def _load_cifar10(path: str, download: bool) -> tuple[torch.Tensor, ...]:
    return _read_cifar(_cifar10_class(), "CIFAR-10", 10, path, download)


@functools.lru_cache(maxsize=2)
def _load_cifar100(path: str, download: bool) -> tuple[torch.Tensor, ...]:
    return _read_cifar(_cifar100_class(), "CIFAR-100", 100, path, download)


def _read_cifar(cls, which: str, num_classes: int, path: str, download: bool) -> tuple[torch.Tensor, ...]:
    try:
        train = cls(path, train=True, download=download)
        test = cls(path, train=False, download=download)
    except (RuntimeError, OSError, ValueError) as e:  # no files; URLError is an OSError
        raise _missing_cifar(Path(path), f"{type(e).__name__}: {e}", which) from None
    out = []
    for split, ds in (("train", train), ("test", test)):
        x = np.ascontiguousarray(ds.data)
        y = np.asarray(ds.targets, dtype=np.int64)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3) or len(y) != len(x):
            raise ValueError(f"{which} {split} split under {path} is malformed: images "
                             f"{x.shape} {x.dtype}, {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() > num_classes - 1):
            raise ValueError(f"{which} {split} labels under {path} fall outside 0..{num_classes - 1}")
        out += [torch.from_numpy(x), torch.from_numpy(y)]
    return tuple(out)


# --------------------------------------------------------------------------------------------
# CIFAR-10 and CIFAR-100 as standard classification (Sec. 5)


def _standard_cifar(name: str, load, num_classes: int, n_train: int, n_test: int, seed: int, root,
                    download) -> SpuriousDataset:
    x_tr, y_tr, x_te, y_te = load(root, download)
    rng = np.random.default_rng(seed)
    itr, ite = subset(len(y_tr), n_train, rng), subset(len(y_te), n_test, rng)

    def images(raw, idx):  # uint8 (N, 32, 32, 3) -> float32 (n, 3, 32, 32) in [0, 1]
        return raw[torch.from_numpy(idx)].permute(0, 3, 1, 2).float().div_(255).contiguous()

    ytr, yte = y_tr[torch.from_numpy(itr)].clone(), y_te[torch.from_numpy(ite)].clone()
    return SpuriousDataset(name, images(x_tr, itr), ytr, ytr.clone(), images(x_te, ite), yte, yte.clone(),
                           num_classes=num_classes, params=dict(n_train=n_train, n_test=n_test),
                           region_fn=None, has_bias=False)


def make_cifar10(n_train=50000, n_test=10000, seed=0, root=None, download=True, **_) -> SpuriousDataset:
    """CIFAR-10 (Krizhevsky 2009; paper Sec. 5), a random `n_train` / `n_test` subset of the
    standard splits, float32 (N, 3, 32, 32) in [0, 1]; no bias label (`b` repeats `y`)."""
    return _standard_cifar("cifar10", load_cifar10, 10, n_train, n_test, seed, root, download)


def make_cifar100(n_train=50000, n_test=10000, seed=0, root=None, download=True, **_) -> SpuriousDataset:
    """CIFAR-100 (Krizhevsky 2009; paper Sec. 5) with its 100 fine labels, as `make_cifar10`."""
    return _standard_cifar("cifar100", load_cifar100, 100, n_train, n_test, seed, root, download)


# --------------------------------------------------------------------------------------------
# MNIST-CIFAR


def mnist_cifar_regions(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """(H, W) masks of a 64 x 32 MNIST-CIFAR image: spurious = top 32 rows (digit), core = bottom."""
    top = torch.zeros(x.shape[-2:], dtype=torch.bool, device=x.device)
    top[:32] = True
    return {"core": ~top, "spurious": top}


def make_mnist_cifar(n_train=50000, n_test=10000, bc_ratio=0.05, seed=0, root=None, download=True,
                     **_) -> SpuriousDataset:
    """MNIST-CIFAR (spec 2.5): y = CIFAR-10 class of the bottom image; b = class of the MNIST
    digit on top, = y except on exactly round(r * n_train) training samples. Each digit image is
    drawn at random from the MNIST pool of class b (MNIST train for the training set, MNIST test
    for the test set, where b is uniform and independent of y). Float32 (N, 3, 64, 32) in [0, 1]."""
    xc_tr, yc_tr, xc_te, yc_te = load_cifar10(root, download)
    xm_tr, ym_tr, xm_te, ym_te = load_mnist(None if root is None else str(root), download)
    rng = np.random.default_rng(seed)

    def split(xc, yc, xm, ym, n, biased):
        idx = subset(len(yc), n, rng)
        y = yc.numpy()[idx].astype(np.int64)
        b = bias_labels(y, 10, bc_ratio, rng) if biased else unbiased_labels(n, 10, rng)
        digit_labels = ym.numpy()
        digit = np.empty(n, dtype=np.int64)
        for c in range(10):
            rows = np.nonzero(b == c)[0]
            pool = np.nonzero(digit_labels == c)[0]
            if len(rows) and not len(pool):
                raise ConfigError(f"MNIST split has no digit of class {c}")
            digit[rows] = rng.choice(pool, size=len(rows))
        x = torch.zeros(n, 3, 64, 32)
        for s in range(0, n, 4096):  # in chunks: no full-size temporaries
            sl = slice(s, min(s + 4096, n))
            x[sl, :, 2:30, 2:30] = (xm[torch.from_numpy(digit[sl])].float() / 255)[:, None]
            x[sl, :, 32:] = xc[torch.from_numpy(idx[sl])].permute(0, 3, 1, 2).float() / 255
        return x, torch.from_numpy(y), torch.from_numpy(b)

    xtr, ytr, btr = split(xc_tr, yc_tr, xm_tr, ym_tr, n_train, True)
    xte, yte, bte = split(xc_te, yc_te, xm_te, ym_te, n_test, False)
    return SpuriousDataset("mnist_cifar", xtr, ytr, btr, xte, yte, bte, num_classes=10,
                           params=dict(n_train=n_train, n_test=n_test, bc_ratio=bc_ratio),
                           region_fn=mnist_cifar_regions)


# --------------------------------------------------------------------------------------------
# Corrupted CIFAR-10


def corruption_seeds(seed: int) -> tuple[int, int]:
    """The `corrupt_batch` seeds of the training and test splits (distinct, so train image i and
    test image i never share their random draws)."""
    return tuple(int(np.random.SeedSequence([int(seed), k]).generate_state(1, np.uint64)[0])
                 for k in (0, 1))


def corrupted_cifar10_cache_path(n_train, n_test, bc_ratio, severity, seed, root=None) -> Path:
    key = json.dumps(dict(version=_CACHE_VERSION, n_train=int(n_train), n_test=int(n_test),
                          bc_ratio=float(bc_ratio), severity=int(severity), seed=int(seed)),
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return data_root(root) / "lrbook_cache" / f"corrupted_cifar10-{digest}.npz"


_CACHE_KEYS = ("x_train", "y_train", "b_train", "x_test", "y_test", "b_test")


def _read_cache(path: Path, n_train: int, n_test: int) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in _CACHE_KEYS}
    except FileNotFoundError:
        return None
    except Exception as e:  # truncated or foreign file: rebuild it
        warnings.warn(f"ignoring unreadable Corrupted CIFAR-10 cache {path} ({e}); rebuilding it")
        return None
    for split, n in (("train", n_train), ("test", n_test)):
        x = arrays[f"x_{split}"]
        if x.shape != (n, 32, 32, 3) or x.dtype != np.uint8 or arrays[f"y_{split}"].shape != (n,):
            warnings.warn(f"ignoring Corrupted CIFAR-10 cache {path} with unexpected shapes; rebuilding it")
            return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic: a temporary file in the same folder, then os.replace."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        warnings.warn(f"could not write the Corrupted CIFAR-10 cache {path} ({e}); it will be "
                      "generated again next time")
        tmp.unlink(missing_ok=True)


def make_corrupted_cifar10(n_train=50000, n_test=10000, bc_ratio=0.05, severity=5, seed=0, root=None,
                           download=True, frost_dir=None, cache=True, progress=False,
                           **_) -> SpuriousDataset:
    """Corrupted CIFAR-10 "Type0" (spec 2.4): y = CIFAR-10 class, b = index of the corruption in
    `corruptions.CORRUPTIONS` applied at `severity`, = y except on exactly round(r * n_train)
    training samples; uniform and independent of y on the test set. Float32 (N, 3, 32, 32) in
    [0, 1]. The uint8 images are cached under `<data_root>/lrbook_cache/` (`cache=True`); a cache
    hit needs neither CIFAR-10 nor the corruptions' optional dependencies (Wand for snow, the frost
    photographs for frost), which are otherwise checked before any image is corrupted."""
    if not 1 <= int(severity) <= 5:
        raise ConfigError(f"severity must be in 1..5, got {severity}")
    params = dict(n_train=n_train, n_test=n_test, bc_ratio=bc_ratio, severity=severity)
    path = corrupted_cifar10_cache_path(n_train, n_test, bc_ratio, severity, seed, root)
    arrays = _read_cache(path, n_train, n_test) if cache else None
    if arrays is None:
        arrays = _build_corrupted_cifar10(n_train, n_test, bc_ratio, severity, seed, root, download,
                                          frost_dir, progress)
        if cache:
            _write_cache(path, arrays)

    def tensors(split):
        x = torch.from_numpy(arrays[f"x_{split}"]).permute(0, 3, 1, 2).float().div_(255)
        return (x.contiguous(), torch.from_numpy(arrays[f"y_{split}"].astype(np.int64)),
                torch.from_numpy(arrays[f"b_{split}"].astype(np.int64)))

    return SpuriousDataset("corrupted_cifar10", *tensors("train"), *tensors("test"), num_classes=10,
                           params=params)
    # No attribution regions: the corruption covers the whole image.


def _build_corrupted_cifar10(n_train, n_test, bc_ratio, severity, seed, root, download, frost_dir,
                             progress) -> dict[str, np.ndarray]:
    x_tr, y_tr, x_te, y_te = load_cifar10(root, download)
    rng = np.random.default_rng(seed)
    draws = {}
    for split, x_raw, y_raw, n, biased in (("train", x_tr, y_tr, n_train, True),
                                           ("test", x_te, y_te, n_test, False)):
        idx = subset(len(y_raw), n, rng)
        y = y_raw.numpy()[idx].astype(np.int64)
        b = bias_labels(y, 10, bc_ratio, rng) if biased else unbiased_labels(n, 10, rng)
        draws[split] = (x_raw.numpy()[idx], y, b)
    # Fail at once (before corrupting anything) when a needed corruption cannot run.
    needed = sorted({int(c) for _, _, b in draws.values() for c in np.unique(b)})
    corruptions.check_dependencies(needed, frost_dir)
    out = {}
    for (split, (x, y, b)), s in zip(draws.items(), corruption_seeds(seed)):
        out[f"x_{split}"] = corruptions.corrupt_batch(x, b.tolist(), seed=s, frost_dir=frost_dir,
                                                      progress=progress, severity=int(severity))
        out[f"y_{split}"], out[f"b_{split}"] = y, b
    return out
