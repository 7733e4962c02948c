"""ImageNet-1k (paper Sec. 5, Fig. 11), streamed from disk: it never fits in memory, so it is not
built by the registry (`make_imagenet` says how to train it) but read split by split through a
DataLoader by `lrbook.distributed`.

Layout under the data root (`base.data_root`), nothing is downloaded:

* torchvision's `ImageNet` layout: `<root>/imagenet/meta.bin` (written by torchvision when it parses
  the devkit) with the class folders `<root>/imagenet/train/<wnid>/*.JPEG` and
  `<root>/imagenet/val/<wnid>/*.JPEG`, what `torchvision.datasets.ImageNet(<root>/imagenet, split=...)`
  reads; or
* two plain `ImageFolder`s, `<root>/imagenet/train/<class>/*` and `<root>/imagenet/val/<class>/*`
  (any number of classes: the tests use a tiny one).

Inputs are in [0, 1], without augmentation or normalisation, like every other dataset of this
project: Resize(round(s * 256 / 224)) of the shorter side, CenterCrop(s), ToTensor.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import ConfigError
from .base import DATA_ROOT_SETTINGS, DataNotFoundError, SpuriousDataset, data_root

IMAGENET_DIR = "imagenet"
SPLITS = ("train", "val")
META_FILE = "meta.bin"  # torchvision.datasets.imagenet.META_FILE
ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")
LAYOUTS = (f"torchvision's ImageNet layout (<root>/{IMAGENET_DIR}/{META_FILE}, parsed from the devkit, with "
           f"<root>/{IMAGENET_DIR}/train/<wnid>/*.JPEG and <root>/{IMAGENET_DIR}/val/<wnid>/*.JPEG), or two "
           f"ImageFolders <root>/{IMAGENET_DIR}/train/<class>/* and <root>/{IMAGENET_DIR}/val/<class>/*")


def _first_class_dir(split_dir: Path) -> Path | None:
    """The first class folder of a split folder, or None; reads one directory entry at a time."""
    try:
        with os.scandir(split_dir) as entries:
            return next((Path(e.path) for e in entries if e.is_dir()), None)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _is_nonempty(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is not None


def _split_problem(split_dir: Path) -> str | None:
    """Why a split folder is not usable, or None. Only its first class folder is opened: listing
    ImageNet's 1.3M training files would take minutes."""
    if not split_dir.is_dir():
        return f"{split_dir}/ does not exist"
    first = _first_class_dir(split_dir)
    if first is None:
        return f"{split_dir}/ has no class folders"
    if not _is_nonempty(first):
        return f"its class folder {first}/ is empty"
    return None


def require_imagenet(root: str | os.PathLike | None = None) -> Path:
    """The ImageNet folder `<data_root>/imagenet` once both splits are there (either layout of the
    module docstring); else `DataNotFoundError` naming both layouts, the folder it looked at and the
    settings that choose the data root. Checks folders only (fast); downloads nothing."""
    path = data_root(root).resolve() / IMAGENET_DIR
    problems = [p for p in (_split_problem(path / s) for s in SPLITS) if p]
    if not problems:
        return path
    hint = ""
    archives = [a for a in ARCHIVES if (path / a).is_file()]
    if archives:
        hint = (f" The archives {', '.join(archives)} are there but not unpacked: run "
                f"torchvision.datasets.ImageNet({str(path)!r}, split=...) once for each split to unpack them.")
    raise DataNotFoundError(
        f"ImageNet-1k not found: expected {LAYOUTS}; looked in {path}/, where {'; '.join(problems)}. "
        f"Nothing is downloaded.{hint} Set the data root with {DATA_ROOT_SETTINGS}.")


def _class_folders(split_dir: Path) -> list[str]:
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def _transform(image_size: int):
    from torchvision import transforms

    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"image_size must be a whole number of pixels >= 1, got {image_size!r}")
    return transforms.Compose([transforms.Resize(round(image_size * 256 / 224)), transforms.CenterCrop(image_size),
                               transforms.ToTensor()])


def imagenet_split(root: str | os.PathLike | None, split: str, image_size: int):
    """One split ("train" or "val") of ImageNet under the data root `root` as a torchvision Dataset of
    (image (3, s, s) in [0, 1], class index): `torchvision.datasets.ImageNet` when `meta.bin` is there,
    else an `ImageFolder`. Resize(round(s * 256 / 224)) + CenterCrop(s) + ToTensor, with no
    augmentation and no normalisation (as every dataset of this project; the paper, Sec. 4.2, states
    none). Class indices follow the sorted class folders of train/, also for val/."""
    import torchvision

    if split not in SPLITS:
        raise ConfigError(f"unknown ImageNet split {split!r}; choose one of {list(SPLITS)}")
    path = require_imagenet(root)
    transform = _transform(image_size)
    if (path / META_FILE).is_file():
        return torchvision.datasets.ImageNet(str(path), split=split, transform=transform)
    classes = _class_folders(path / "train")
    extra = sorted(set(_class_folders(path / split)) - set(classes))
    if extra:
        shown = ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")
        raise DataNotFoundError(f"{path / split}/ has class folders that {path / 'train'}/ lacks ({shown}); "
                                f"both splits need the same classes ({LAYOUTS})")
    try:
        folder = torchvision.datasets.ImageFolder(str(path / split), transform=transform)
    except FileNotFoundError as e:  # a class folder without images
        raise DataNotFoundError(f"{e} ({LAYOUTS})") from None
    if folder.classes != classes:  # a val/ without some class: index its images by train/'s classes
        index = {c: i for i, c in enumerate(classes)}
        folder.samples = [(p, index[folder.classes[t]]) for p, t in folder.samples]
        folder.imgs, folder.targets = folder.samples, [t for _, t in folder.samples]
        folder.classes, folder.class_to_idx = classes, index
    return folder


def num_classes(dataset) -> int:
    """The number of classes of a split built by `imagenet_split` (1000 for ImageNet-1k)."""
    return len(getattr(dataset, "wnids", None) or dataset.classes)


def make_imagenet(**_) -> SpuriousDataset:
    """Registry entry (`lrbook.data.builder`): ImageNet cannot be held in memory, so it has none."""
    raise ConfigError("ImageNet-1k is streamed from disk and cannot be built in memory: train it with "
                      "`python -m lrbook.distributed --dataset imagenet --model resnet18 --lr 0.1 ...` on one "
                      "process, or `torchrun --nproc_per_node=N -m lrbook.distributed ...` on N GPUs "
                      "(see lrbook.distributed)")


def _stack(dataset, indices: torch.Tensor, num_workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(Subset(dataset, indices.tolist()), batch_size=64, num_workers=num_workers)
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys).long()


def probe_set(root: str | os.PathLike | None, image_size: int, n: int, seed: int = 0,
              num_workers: int = 0) -> SpuriousDataset:
    """An in-memory `SpuriousDataset` of a fixed random subset (drawn with `seed`) of `n` validation
    images (x_test, y_test) and `n` training images (x_train, y_train); fewer where a split is
    smaller. No bias label (b = y, `has_bias=False`). It is the evaluation set of the metrics that
    need tensors in memory (prunability curves, activation metrics, attribution; Fig. 11), while
    `lrbook.distributed` streams the whole validation split for the test accuracy."""
    return probe_from_splits(imagenet_split(root, "train", image_size), imagenet_split(root, "val", image_size),
                             n, seed, num_workers)


def probe_from_splits(train, val, n: int, seed: int = 0, num_workers: int = 0) -> SpuriousDataset:
    """`probe_set` from splits already built by `imagenet_split` (listing ImageNet's files again
    would take a while)."""
    gen = torch.Generator().manual_seed(seed)
    pick = lambda ds: torch.randperm(len(ds), generator=gen)[:n].sort().values
    x_train, y_train = _stack(train, pick(train), num_workers)
    x_test, y_test = _stack(val, pick(val), num_workers)
    return SpuriousDataset("imagenet", x_train, y_train, y_train.clone(), x_test, y_test, y_test.clone(),
                           num_classes=num_classes(train),
                           params=dict(image_size=int(x_test.shape[-1]), probe_n=n, n_train=len(train),
                                       n_val=len(val)),
                           has_bias=False)
