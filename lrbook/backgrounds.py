"""Image backgrounds from DeepLabV3 for the background attribution share (paper Sec. 5, Fig. 10).

The paper: "Utilizing the DeepLabV3 segmentation algorithm to extract background maps, we compute the
percentage of attributions that fall within vs. outside these image background segments". We use
torchvision's `deeplabv3_resnet50` with its default weights (COCO images, the 21 Pascal VOC classes);
a pixel is background where the most likely class is VOC class 0 ("__background__"). Images in
which DeepLabV3 finds no foreground pixel at all are dropped from the share and counted.

DeepLabV3 is trained on images of a few hundred pixels, so a CIFAR image (32 x 32) is upsampled
bilinearly until its shorter side is `SEGMENTER_INPUT` pixels before it is segmented; the mask is
then brought back to the image's own size by area majority (a pixel is background when at least
half of the segmented pixels it covers are) where the segmentation is finer than the image, by
nearest neighbour where it is coarser. Images at least that large (ImageNet at 224) are segmented
as they are.

The weights are never downloaded here: `load_segmenter` reads them from torch hub's cache and
raises `SegmenterNotFoundError` (a `ConfigError`) saying where the file is expected and how to put
it there. MNIST and Fashion-MNIST need no segmenter: their background (pixels at 0) is exact.

`$LRBOOK_SEGMENTER=untrained` makes `configured_segmenter` (what a run's evaluation uses) return an
untrained DeepLabV3 instead: for tests only (their shares mean nothing); the record says which one
computed its shares (`segmenter_name`).
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from .attribution import region_shares
from .config import ConfigError

SEGMENTER_INPUT = 224  # shorter side, in pixels, that small images are upsampled to
VOC_BACKGROUND = 0  # index of "__background__" among DeepLabV3's 21 Pascal VOC classes
VOC_CLASSES = 21
# DeepLabV3's weights expect ImageNet-normalised inputs (torchvision's SemanticSegmentation transform).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FETCH_COMMAND = ("python -c \"import torchvision; "
                 "torchvision.models.segmentation.deeplabv3_resnet50(weights='DEFAULT')\"")


class SegmenterNotFoundError(FileNotFoundError, ConfigError):
    """DeepLabV3's weights are not in torch hub's cache; the message says where they are expected
    and how to get them there."""


def _default_weights():
    from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights

    return DeepLabV3_ResNet50_Weights.DEFAULT


def segmenter_weights_path() -> Path:
    """Where torch hub keeps DeepLabV3's default weights: `torch.hub.get_dir()/checkpoints/<file
    name of the weights url>` (follows $TORCH_HOME, read at each call)."""
    url = _default_weights().url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def require_segmenter() -> Path:
    """Check, without loading or downloading anything, that DeepLabV3's weights are on this machine
    (so that a sweep on CIFAR or ImageNet fails at once, before training). Returns their path."""
    path = segmenter_weights_path()
    if not path.is_file():
        raise SegmenterNotFoundError(
            f"DeepLabV3 weights not found: expected the file {path.name} in {path.parent} (torch hub's "
            f"cache; torchvision's DeepLabV3_ResNet50_Weights.DEFAULT, {_default_weights().url}). The "
            "background attribution share of CIFAR and ImageNet (paper Sec. 5, Fig. 10) needs them, and "
            f"lrbook never downloads them. To get them: run `{FETCH_COMMAND}` on a machine with internet "
            f"access (it saves {path.name} into that machine's torch hub cache, "
            "<torch hub dir>/checkpoints/), then copy the file into "
            f"{path.parent}; or set $TORCH_HOME to a folder whose hub/checkpoints/ holds it. "
            "MNIST and Fashion-MNIST need no segmenter (their background is exact).")
    return path


def load_segmenter(weights: str | None = "default") -> nn.Module:
    """torchvision's DeepLabV3 (ResNet-50) in eval mode. `weights="default"`: its
    `DeepLabV3_ResNet50_Weights.DEFAULT`, read from torch hub's cache (`require_segmenter`; never
    downloaded). `weights=None`: an untrained model of the same architecture (for tests), always with
    the same random weights."""
    from torchvision.models.segmentation import deeplabv3_resnet50

    if weights is None:  # the same random weights every time, drawn without touching the caller's RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=VOC_CLASSES, aux_loss=False)
    elif isinstance(weights, str) and weights.lower() == "default":
        path = require_segmenter()
        try:
            model = deeplabv3_resnet50(weights=_default_weights())
        except Exception as e:  # a truncated or foreign file fails in torch.load with any of many types
            raise SegmenterNotFoundError(
                f"DeepLabV3 weights at {path} could not be loaded ({type(e).__name__}: {e}); delete the "
                f"file and fetch it again with `{FETCH_COMMAND}` on a machine with internet access.") from e
        model.aux_classifier = None  # the auxiliary head only serves training: skip its compute
    else:
        raise ConfigError(f"unknown segmenter weights {weights!r}; use 'default' or None (untrained)")
    return model.eval()


def segmenter_name() -> str:
    """Which segmenter a run's evaluation uses: "deeplabv3_resnet50 (default weights)", or
    "deeplabv3_resnet50 (untrained, tests only)" when $LRBOOK_SEGMENTER is "untrained"."""
    untrained = os.environ.get("LRBOOK_SEGMENTER", "").strip().lower() == "untrained"
    return "deeplabv3_resnet50 (untrained, tests only)" if untrained else "deeplabv3_resnet50 (default weights)"


def require_configured_segmenter() -> None:
    """`require_segmenter` unless $LRBOOK_SEGMENTER asks for the untrained test model."""
    if "untrained" not in segmenter_name():
        require_segmenter()


def configured_segmenter() -> nn.Module:
    """The segmenter `segmenter_name` names."""
    return load_segmenter(None if "untrained" in segmenter_name() else "default")


def _logits(segmenter: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = segmenter(x)
    return out["out"] if isinstance(out, dict) else out  # torchvision returns {"out": ..., "aux": ...}


def _to_size(background: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) bool -> (N, H, W) bool: area majority where (h, w) is finer than (H, W) (ties go to
    background), nearest neighbour otherwise."""
    if tuple(background.shape[-2:]) == tuple(size):
        return background
    b = background[:, None].float()
    if background.shape[-2] >= size[0] and background.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(b, size)[:, 0] >= 0.5
    return F.interpolate(b, size=size, mode="nearest")[:, 0] > 0.5


@torch.no_grad()
def background_masks(x: torch.Tensor, segmenter: nn.Module, batch_size: int = 32,
                     input_size: int = SEGMENTER_INPUT) -> torch.Tensor:
    """Background masks (N, H, W), bool, on x's device, of images `x` (N, 3, H, W) in [0, 1]
    (grey (N, 1, H, W) is replicated to 3 channels): ImageNet normalisation, bilinear upsampling to
    a shorter side of `input_size` when smaller, DeepLabV3, argmax over the VOC classes,
    background = class 0, back to (H, W) (module docstring)."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 3, H, W), got shape {tuple(x.shape)}")
    size = tuple(x.shape[-2:])
    scale = input_size / min(size)
    seg_size = (round(size[0] * scale), round(size[1] * scale)) if scale > 1 else size
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    was_training = segmenter.training
    segmenter.to(x.device).eval()
    try:
        masks = []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].float().expand(-1, 3, -1, -1)
            xb = (xb - mean) / std
            if seg_size != size:
                xb = F.interpolate(xb, size=seg_size, mode="bilinear", align_corners=False)
            masks.append(_to_size(_logits(segmenter, xb).argmax(1) == VOC_BACKGROUND, size))
    finally:
        segmenter.train(was_training)
    if not masks:
        return torch.zeros(0, *size, dtype=torch.bool, device=x.device)
    return torch.cat(masks)


def background_regions(x: torch.Tensor, segmenter: nn.Module, **kwargs) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({"background": mask, "foreground": ~mask}, kept) for images `x`: masks (N, H, W) from
    `background_masks` (kwargs go there); `kept` (N,) bool is False for images with no foreground
    pixel, which the share leaves out and counts (Fig. 10)."""
    background = background_masks(x, segmenter, **kwargs)
    kept = (~background).flatten(1).any(1)
    return {"background": background, "foreground": ~background}, kept


def background_share(maps: torch.Tensor, background: torch.Tensor, kept: torch.Tensor) -> tuple[float, int]:
    """(share, n_dropped): the mean over kept images of the share of |attribution| mass (maps (N, H, W))
    inside the background mask (N, H, W), as `lrbook.attribution.region_shares` computes it, and how
    many images were dropped (no foreground). The share is NaN when every image was dropped."""
    kept = kept.to(torch.bool)
    n_dropped = int((~kept).sum())
    if not bool(kept.any()):
        return float("nan"), n_dropped
    maps_kept = maps[kept.to(maps.device)].abs()
    share = region_shares(maps_kept, {"background": background[kept.to(background.device)].to(maps.device)})
    return share["background"], n_dropped
