"""Tests of lrbook.backgrounds (DeepLabV3 background masks, paper Sec. 5, Fig. 10).

No pretrained weights exist here: the tests use stub segmenters whose output is known, an untrained
DeepLabV3 at a small input size (fast on the CPU), and a fake weights file in a temporary torch hub
cache ($TORCH_HOME) to check where `load_segmenter` looks and that it never downloads.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrbook import backgrounds as B
from lrbook.config import ConfigError

WEIGHTS_FILE = "deeplabv3_resnet50_coco-cd0a2569.pth"


class SquareSegmenter(nn.Module):
    """Class 0 (background) wins exactly on the centre square [h/4, 3h/4) x [w/4, 3w/4) of its
    output, class 7 elsewhere; the output is the input's size divided by `stride`. Records its inputs."""

    def __init__(self, stride: int = 1, everywhere: bool = False):
        super().__init__()
        self.stride, self.everywhere, self.inputs = stride, everywhere, []

    def forward(self, x):
        self.inputs.append(x)
        h, w = x.shape[-2] // self.stride, x.shape[-1] // self.stride
        logits = torch.zeros(len(x), B.VOC_CLASSES, h, w)
        logits[:, 7] = 1.0
        if self.everywhere:
            logits[:, 0] = 5.0
        else:
            logits[:, 0, h // 4:3 * h // 4, w // 4:3 * w // 4] = 5.0
        return {"out": logits, "aux": -logits}


class RedSegmenter(nn.Module):
    """Background wherever the (normalised) red channel is below its ImageNet mean: the mask
    follows each image's content."""

    def forward(self, x):
        logits = torch.zeros(len(x), B.VOC_CLASSES, *x.shape[-2:])
        logits[:, 0], logits[:, 3] = -x[:, 0], x[:, 0]
        return logits  # a bare tensor is accepted too


def square_mask(h, w):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[h // 4:3 * h // 4, w // 4:3 * w // 4] = True
    return m


# ---------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("stride", [1, 8])  # finer than the image (area majority), coarser (nearest)
def test_square_survives_the_resize_round_trip(stride):
    seg = SquareSegmenter(stride)
    x = torch.rand(5, 3, 32, 32)
    mask = B.background_masks(x, seg, batch_size=2, input_size=64)
    assert mask.dtype == torch.bool and tuple(mask.shape) == (5, 32, 32)
    assert torch.equal(mask, square_mask(32, 32).expand(5, -1, -1))
    # three batches (2 + 2 + 1), each upsampled bilinearly to 64 x 64
    assert [tuple(i.shape) for i in seg.inputs] == [(2, 3, 64, 64)] * 2 + [(1, 3, 64, 64)]


def test_inputs_are_imagenet_normalised_and_upsampled():
    seg = SquareSegmenter()
    colour = torch.tensor([0.2, 0.5, 0.9])
    x = colour.view(1, 3, 1, 1).expand(2, 3, 16, 24).clone()
    mask = B.background_masks(x, seg, input_size=48)
    assert tuple(mask.shape) == (2, 16, 24)
    assert torch.equal(mask, square_mask(16, 24).expand(2, -1, -1))
    (seen,) = seg.inputs
    assert tuple(seen.shape) == (2, 3, 48, 72)  # shorter side to 48, aspect kept
    expected = (colour - torch.tensor(B.IMAGENET_MEAN)) / torch.tensor(B.IMAGENET_STD)
    assert torch.allclose(seen, expected.view(1, 3, 1, 1).expand_as(seen), atol=1e-6)
    # images already at least input_size are segmented as they are; grey is replicated to 3 channels
    seg = SquareSegmenter()
    mask = B.background_masks(torch.rand(1, 1, 40, 40), seg, input_size=32)
    assert tuple(seg.inputs[0].shape) == (1, 3, 40, 40) and torch.equal(mask[0], square_mask(40, 40))


def test_masks_follow_each_images_content_across_batches():
    x = torch.zeros(5, 3, 32, 32)
    squares = []
    for i in range(5):  # a bright square at a different place in each image
        m = torch.zeros(32, 32, dtype=torch.bool)
        m[2 * i:2 * i + 10, 20 - 3 * i:28 - 3 * i] = True
        x[i, :, m] = 1.0
        squares.append(m)
    mask = B.background_masks(x, RedSegmenter(), batch_size=2, input_size=64)
    assert torch.equal(mask, ~torch.stack(squares))


def test_untrained_deeplabv3_gives_image_shaped_bool_masks():
    seg = B.load_segmenter(weights=None)
    assert not seg.training and seg.aux_classifier is None
    assert seg.classifier[-1].out_channels == B.VOC_CLASSES
    seg.train()  # background_masks segments in eval mode and restores the mode
    regions, kept = B.background_regions(torch.rand(3, 3, 32, 32), seg, input_size=64)
    assert seg.training
    mask = regions["background"]
    assert mask.dtype == torch.bool and tuple(mask.shape) == (3, 32, 32)
    assert torch.equal(regions["foreground"], ~mask)
    assert kept.dtype == torch.bool and tuple(kept.shape) == (3,)
    assert torch.equal(kept, (~mask).flatten(1).any(1))
    assert B.background_masks(torch.rand(0, 3, 32, 32), seg).shape == (0, 32, 32)
    with pytest.raises(ValueError, match="N, 3, H, W"):
        B.background_masks(torch.rand(3, 32, 32), seg)


# ---------------------------------------------------------------------------------- share
def test_background_share_by_hand():
    maps = torch.tensor([[[1.0, 3.0], [0.0, 0.0]],      # background holds 1 of 4
                         [[-2.0, 2.0], [2.0, 2.0]],     # 4 of 8 (|attribution|)
                         [[5.0, 0.0], [0.0, 0.0]]])     # all background: dropped
    background = torch.tensor([[[True, False], [False, False]],
                               [[True, True], [False, False]],
                               [[True, True], [True, True]]])
    kept = (~background).flatten(1).any(1)
    assert kept.tolist() == [True, True, False]
    share, dropped = B.background_share(maps, background, kept)
    assert share == pytest.approx((0.25 + 0.5) / 2) and dropped == 1


def test_an_all_background_segmenter_drops_and_counts_every_image():
    x = torch.rand(4, 3, 32, 32)
    regions, kept = B.background_regions(x, SquareSegmenter(everywhere=True), input_size=64)
    assert regions["background"].all() and not kept.any()
    share, dropped = B.background_share(torch.rand(4, 32, 32), regions["background"], kept)
    assert math.isnan(share) and dropped == 4
    # with the square stub no image is dropped, and a map uniform over the image puts 1/4 on the square
    regions, kept = B.background_regions(x, SquareSegmenter(), input_size=64)
    assert kept.all()
    assert B.background_share(torch.ones(4, 32, 32), regions["background"], kept) == (pytest.approx(0.25), 0)


# ---------------------------------------------------------------------------------- weights
@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache; any download attempt fails the test."""
    import torch.hub

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path


def test_missing_weights_raise_a_config_error_naming_the_file(torch_home, monkeypatch):
    import torchvision.models.segmentation as S

    monkeypatch.setattr(S, "deeplabv3_resnet50", lambda **k: pytest.fail("torchvision called before the check"))
    expected = torch_home / "hub" / "checkpoints" / WEIGHTS_FILE
    assert B.segmenter_weights_path() == expected
    for check in (B.load_segmenter, B.require_segmenter):
        with pytest.raises(ConfigError) as ei:
            check()
        assert isinstance(ei.value, B.SegmenterNotFoundError) and isinstance(ei.value, FileNotFoundError)
        msg = str(ei.value)
        assert WEIGHTS_FILE in msg and str(expected.parent) in msg
        assert B.FETCH_COMMAND in msg and "TORCH_HOME" in msg and "MNIST" in msg
    with pytest.raises(ConfigError, match="unknown segmenter weights"):
        B.load_segmenter("imagenet")


def test_weights_in_the_hub_cache_are_loaded_without_download(torch_home):
    from torchvision.models.segmentation import deeplabv3_resnet50

    # a stand-in for the real file: an untrained model with DeepLabV3's 21 classes and aux head
    torch.manual_seed(0)
    state = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).state_dict()
    path = torch_home / "hub" / "checkpoints" / WEIGHTS_FILE
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    assert B.require_segmenter() == path
    seg = B.load_segmenter()
    assert not seg.training and seg.aux_classifier is None
    loaded = seg.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("aux_classifier"))
    path.write_bytes(b"truncated")
    with pytest.raises(ConfigError, match="could not be loaded"):
        B.load_segmenter()


def test_training_cifar_or_imagenet_without_deeplab_weights_fails_before_anything_runs(tmp_path, monkeypatch):
    from lrbook.config import make_config
    from lrbook.data import require_data
    from lrbook.distributed import check_streamable

    monkeypatch.delenv("LRBOOK_SEGMENTER", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError, match="DeepLabV3 weights not found"):
        require_data(["cifar10"], tmp_path)
    with pytest.raises(ConfigError, match="DeepLabV3 weights not found"):  # the streamed path checks it too
        check_streamable(make_config("imagenet", "resnet18", scale="smoke"))
    require_data(["parity"], tmp_path)  # the procedural sets need nothing
