"""ImageNet's data layer (`lrbook.data.imagenet`) on tiny folders written here: both layouts, the
missing-data message, the transform, the in-memory probe set."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lrbook.config import ConfigError
from lrbook.data import make_dataset, require_data
from lrbook.data.base import DataNotFoundError
from lrbook.data.imagenet import imagenet_split, make_imagenet, num_classes, probe_set, require_imagenet


def write_image_folder(data_root: Path, classes: int = 3, n_train: int = 8, n_val: int = 4, size: int = 16,
                       seed: int = 0) -> Path:
    """`<data_root>/imagenet/{train,val}/class<c>/<i>.png`: RGB PNGs of deterministic random pixels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in range(classes):
            folder = data_root / "imagenet" / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return data_root


def test_missing_imagenet_names_both_layouts_the_path_and_the_setting(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        require_imagenet(tmp_path)
    message = str(err.value)
    for expected in ("imagenet/train", "imagenet/val", "meta.bin", "ImageFolder", "LRBOOK_DATA", "--data-root",
                     str(tmp_path.resolve() / "imagenet")):
        assert expected in message
    assert isinstance(err.value, ConfigError)  # the CLIs turn it into one line and exit status 2
    with pytest.raises(DataNotFoundError):
        require_data(["imagenet"], tmp_path)


def test_an_empty_class_folder_or_a_missing_split_is_missing_data(tmp_path):
    (tmp_path / "imagenet" / "train" / "n01").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="is empty"):
        require_imagenet(tmp_path)
    write_image_folder(tmp_path, classes=1)
    (tmp_path / "imagenet" / "train" / "n01").rmdir()
    assert require_imagenet(tmp_path) == tmp_path.resolve() / "imagenet"
    for f in (tmp_path / "imagenet" / "val" / "class0").iterdir():
        f.unlink()
    with pytest.raises(DataNotFoundError, match="val"):
        require_imagenet(tmp_path)


def test_unpacked_archives_are_pointed_out(tmp_path):
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet" / "ILSVRC2012_img_val.tar").write_bytes(b"")
    with pytest.raises(DataNotFoundError, match="not unpacked"):
        require_imagenet(tmp_path)


def test_make_imagenet_says_to_use_torchrun(tmp_path):
    with pytest.raises(ConfigError, match="torchrun") as err:
        make_imagenet(image_size=64)
    assert "python -m lrbook.distributed" in str(err.value)
    with pytest.raises(ConfigError, match="torchrun"):
        make_dataset("imagenet", root=tmp_path, image_size=64)


def test_image_folder_split_resizes_crops_and_keeps_inputs_in_unit_range(tmp_path):
    write_image_folder(tmp_path, size=20)
    train, val = imagenet_split(tmp_path, "train", 16), imagenet_split(tmp_path, "val", 16)
    assert (len(train), len(val), num_classes(train)) == (24, 12, 3)
    x, y = val[5]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 1
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    with pytest.raises(ConfigError, match="split"):
        imagenet_split(tmp_path, "test", 16)


def test_val_without_a_class_keeps_train_class_indices(tmp_path):
    write_image_folder(tmp_path)
    for f in (tmp_path / "imagenet" / "val" / "class0").iterdir():
        f.unlink()
    (tmp_path / "imagenet" / "val" / "class0").rmdir()
    val = imagenet_split(tmp_path, "val", 16)
    assert sorted(set(val.targets)) == [1, 2] and val.classes == ["class0", "class1", "class2"]
    (tmp_path / "imagenet" / "val" / "extra").mkdir()
    with pytest.raises(DataNotFoundError, match="extra"):
        imagenet_split(tmp_path, "val", 16)


def test_torchvision_layout_is_read_with_torchvision_imagenet(tmp_path):
    import torchvision

    write_image_folder(tmp_path, classes=2, n_train=2, n_val=2)
    wnids = ["class0", "class1"]
    torch.save(({w: (f"name of {w}",) for w in wnids}, wnids * 2), tmp_path / "imagenet" / "meta.bin")
    val = imagenet_split(tmp_path, "val", 16)
    assert isinstance(val, torchvision.datasets.ImageNet)
    assert num_classes(val) == 2 and len(val) == 4 and val[0][0].shape == (3, 16, 16)


def test_probe_set_is_a_fixed_in_memory_subset_without_bias(tmp_path):
    write_image_folder(tmp_path)
    probe = probe_set(tmp_path, 16, n=6, seed=0)
    assert probe.x_test.shape == (6, 3, 16, 16) and probe.x_train.shape == (6, 3, 16, 16)
    assert probe.num_classes == 3 and probe.name == "imagenet" and not probe.has_bias
    assert torch.equal(probe.b_test, probe.y_test) and torch.equal(probe.b_train, probe.y_train)
    val = imagenet_split(tmp_path, "val", 16)
    # each probe image is one of the validation images, with its label
    for x, y in zip(probe.x_test, probe.y_test):
        matches = [i for i in range(len(val)) if torch.equal(val[i][0], x)]
        assert len(matches) == 1 and val.targets[matches[0]] == int(y)
    again = probe_set(tmp_path, 16, n=6, seed=0)
    assert torch.equal(again.x_test, probe.x_test) and torch.equal(again.y_train, probe.y_train)
    other = probe_set(tmp_path, 16, n=6, seed=1)
    assert not torch.equal(other.x_test, probe.x_test)
    assert len(probe_set(tmp_path, 16, n=100).y_test) == 12  # capped at the split's size
