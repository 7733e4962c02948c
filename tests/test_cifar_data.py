"""Tests of lrbook.data.cifar (CIFAR-10, CIFAR-100, MNIST-CIFAR, Corrupted CIFAR-10) on generated
stand-ins.

Real CIFAR is not available here, so the tests write small stand-ins in torchvision's on-disk
layouts (cifar-10-batches-py/ and cifar-100-python/ with the python pickles) and a small stand-in
MNIST (MNIST/raw/ idx files); every image is random, hence unique, so the tests can find where each
built image came from. The snow corruption's ImageMagick blur is stubbed and frost gets synthetic photographs.
"""
from __future__ import annotations

import pickle
import struct
import sys
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from lrbook.data import cifar as CD
from lrbook.data import corruptions as C
from lrbook.config import ConfigError
from stubs import IdentityBlur

REAL_WAND_IMAGE = C._wand_image  # before any test stubs it


def _labels(per_class, rng):
    y = np.repeat(np.arange(10), per_class)
    rng.shuffle(y)
    return y


def write_cifar_standin(root, seed=0):
    """50 train images (5 batch files of 10) and 20 test images, 32x32x3 uint8, as pickles."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    raw = {}
    for split, per_class in (("train", 5), ("test", 2)):
        y = _labels(per_class, rng)
        x = rng.integers(0, 256, size=(len(y), 32, 32, 3), dtype=np.uint8)
        raw[split] = (x, y)
        rows = x.transpose(0, 3, 1, 2).reshape(len(y), 3072)  # CIFAR's row layout: R, G, B planes
        names = [f"data_batch_{k + 1}" for k in range(5)] if split == "train" else ["test_batch"]
        for k, name in enumerate(names):
            sl = slice(10 * k, 10 * k + 10) if split == "train" else slice(None)
            with open(folder / name, "wb") as f:
                pickle.dump({"batch_label": name, "data": rows[sl], "labels": y[sl].tolist()}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CD.CIFAR10_CLASSES), "num_cases_per_batch": 10}, f, protocol=2)
    return raw


def write_cifar100_standin(root, seed=2):
    """200 train images (2 per fine class) and 100 test images (1 per class) in torchvision's
    CIFAR-100 layout: cifar-100-python/ with the `train`, `test` and `meta` pickles."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    raw = {}
    for split, per_class in (("train", 2), ("test", 1)):
        y = np.repeat(np.arange(100), per_class)
        rng.shuffle(y)
        x = rng.integers(0, 256, size=(len(y), 32, 32, 3), dtype=np.uint8)
        raw[split] = (x, y)
        rows = x.transpose(0, 3, 1, 2).reshape(len(y), 3072)
        with open(folder / split, "wb") as f:
            pickle.dump({"filenames": [f"{split}_{i}.png" for i in range(len(y))], "data": rows,
                         "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()}, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class_{c}" for c in range(100)],
                     "coarse_label_names": [f"super_{c}" for c in range(20)]}, f, protocol=2)
    return raw


def _idx(path, array):
    magic = 0x0803 if array.ndim == 3 else 0x0801
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist_standin(root, seed=1):
    """100 train digits (10 per class) and 50 test digits, 28x28 uint8, as idx files."""
    rng = np.random.default_rng(seed)
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    raw = {}
    for split, prefix, per_class in (("train", "train", 10), ("test", "t10k", 5)):
        y = _labels(per_class, rng)
        x = rng.integers(1, 256, size=(len(y), 28, 28), dtype=np.uint8)
        _idx(folder / f"{prefix}-images-idx3-ubyte", x)
        _idx(folder / f"{prefix}-labels-idx1-ubyte", y)
        raw[split] = (x, y)
    return raw


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin")
    return root, write_cifar_standin(root), write_mnist_standin(root)


@pytest.fixture
def cifar_root(standin, tmp_path):
    """A fresh data root (so each test has its own lrbook_cache/) holding the stand-in CIFAR-10."""
    (tmp_path / "cifar-10-batches-py").symlink_to(standin[0] / "cifar-10-batches-py")
    return tmp_path


def find(pool, image):
    """Index of `image` in `pool` (exact match), or fail."""
    hits = np.nonzero((pool == image).reshape(len(pool), -1).all(axis=1))[0]
    assert len(hits) == 1, "image not found in its pool"
    return int(hits[0])


def to_uint8(x):
    u = (x * 255).round()
    assert torch.allclose(u / 255, x, atol=1e-6)  # x holds uint8 values / 255
    return u.to(torch.uint8).numpy()


# ------------------------------------------------------------------------------- raw CIFAR
def test_load_cifar10_reads_the_standin(standin):
    root, cifar, _ = standin
    x_tr, y_tr, x_te, y_te = CD.load_cifar10(root, download=False)
    assert x_tr.dtype == torch.uint8 and tuple(x_tr.shape) == (50, 32, 32, 3)
    assert tuple(x_te.shape) == (20, 32, 32, 3) and y_tr.dtype == torch.int64
    np.testing.assert_array_equal(x_tr.numpy(), cifar["train"][0])
    np.testing.assert_array_equal(y_tr.numpy(), cifar["train"][1])
    np.testing.assert_array_equal(x_te.numpy(), cifar["test"][0])
    np.testing.assert_array_equal(y_te.numpy(), cifar["test"][1])
    # present files are not downloaded again (torchvision's md5 would reject the stand-in)
    assert CD.load_cifar10(str(root), download=True)[0].shape == x_tr.shape


def test_missing_cifar_names_lrbook_data(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    for download in (False, True):
        with pytest.raises(FileNotFoundError, match="LRBOOK_DATA") as ei:
            CD.load_cifar10(tmp_path / "nowhere", download=download)
        assert "cifar-10-batches-py" in str(ei.value)
    monkeypatch.setenv("LRBOOK_DATA", str(tmp_path / "env_root"))
    with pytest.raises(FileNotFoundError, match="env_root"):
        CD.load_cifar10(download=True)
    with pytest.raises(FileNotFoundError, match="LRBOOK_DATA"):
        CD.make_corrupted_cifar10(n_train=10, n_test=10, download=True)
    with pytest.raises(FileNotFoundError, match="LRBOOK_DATA"):
        CD.make_mnist_cifar(n_train=10, n_test=10, download=True)


# -------------------------------------------------- CIFAR-10 / CIFAR-100 as standard sets (Sec. 5)
@pytest.fixture(scope="module")
def cifar100_standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin100")
    return root, write_cifar100_standin(root)


def test_load_cifar100_reads_the_standin(cifar100_standin):
    root, raw = cifar100_standin
    x_tr, y_tr, x_te, y_te = CD.load_cifar100(root, download=False)
    assert x_tr.dtype == torch.uint8 and tuple(x_tr.shape) == (200, 32, 32, 3)
    assert tuple(x_te.shape) == (100, 32, 32, 3) and y_tr.dtype == torch.int64
    np.testing.assert_array_equal(x_tr.numpy(), raw["train"][0])
    np.testing.assert_array_equal(y_tr.numpy(), raw["train"][1])  # the fine labels
    np.testing.assert_array_equal(x_te.numpy(), raw["test"][0])
    np.testing.assert_array_equal(y_te.numpy(), raw["test"][1])
    assert set(y_tr.tolist()) == set(range(100))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_standard_cifar_shapes_range_and_labels(name, standin, cifar100_standin):
    root, raw = (standin[0], standin[1]) if name == "cifar10" else cifar100_standin
    make = CD.make_cifar10 if name == "cifar10" else CD.make_cifar100
    n_classes = 10 if name == "cifar10" else 100
    ds = make(n_train=30, n_test=15, seed=5, root=root, download=False)
    assert ds.name == name and ds.num_classes == n_classes and ds.input_shape == (3, 32, 32)
    assert not ds.has_bias and ds.region_fn is None and ds.regions(ds.x_test) == {}
    assert ds.params == dict(n_train=30, n_test=15)
    for split, n in (("train", 30), ("test", 15)):
        x, y, b = (getattr(ds, f"{k}_{split}") for k in "xyb")
        assert x.dtype == torch.float32 and tuple(x.shape) == (n, 3, 32, 32)
        assert 0 <= x.min() and x.max() <= 1
        assert y.dtype == torch.int64 and torch.equal(b, y) and b.data_ptr() != y.data_ptr()
        # each image is one of the split's raw images (CHW), distinct, with its raw label
        u = to_uint8(x).transpose(0, 2, 3, 1)
        rows = [find(raw[split][0], u[i]) for i in range(n)]
        assert len(set(rows)) == n
        np.testing.assert_array_equal(raw[split][1][rows], y.numpy())


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_standard_cifar_subset_is_determined_by_the_seed(name, standin, cifar100_standin):
    root = standin[0] if name == "cifar10" else cifar100_standin[0]
    make = CD.make_cifar10 if name == "cifar10" else CD.make_cifar100
    kw = dict(n_train=20, n_test=10, root=root, download=False)
    a, b, c = make(seed=0, **kw), make(seed=0, **kw), make(seed=1, **kw)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert not torch.equal(a.x_train, c.x_train) and not torch.equal(a.x_test, c.x_test)
    # the full split keeps the raw order
    full = make(n_train=50 if name == "cifar10" else 200, n_test=10, seed=3, root=root, download=False)
    raw_y = (CD.load_cifar10 if name == "cifar10" else CD.load_cifar100)(root, download=False)[1]
    assert torch.equal(full.y_train, raw_y)
    with pytest.raises(ConfigError, match="only"):
        make(n_train=10_000, n_test=10, seed=0, root=root, download=False)


def test_missing_cifar100_names_the_layout_and_lrbook_data(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    for download in (False, True):
        with pytest.raises(FileNotFoundError, match="LRBOOK_DATA") as ei:
            CD.load_cifar100(tmp_path / "nowhere", download=download)
        msg = str(ei.value)
        assert "CIFAR-100" in msg and "cifar-100-python" in msg and "cifar-10-batches-py" not in msg
        assert str((tmp_path / "nowhere").resolve()) in msg
    monkeypatch.setenv("LRBOOK_DATA", str(tmp_path / "env_root"))
    with pytest.raises(FileNotFoundError, match="env_root"):
        CD.make_cifar100(n_train=10, n_test=10, download=False)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        CD.make_cifar10(n_train=10, n_test=10, download=False)


def test_builders_are_found_by_name(standin, cifar100_standin):
    from lrbook.data import make_dataset

    ds = make_dataset("cifar100", seed=0, root=cifar100_standin[0], n_train=10, n_test=5, download=False)
    assert ds.num_classes == 100 and tuple(ds.x_train.shape) == (10, 3, 32, 32)
    ds = make_dataset("cifar10", seed=0, root=standin[0], n_train=10, n_test=5, download=False)
    assert ds.num_classes == 10 and not ds.has_bias


# ----------------------------------------------------------------------------- MNIST-CIFAR
def test_mnist_cifar_composition_and_labels(standin):
    root, cifar, mnist = standin
    ds = CD.make_mnist_cifar(n_train=40, n_test=20, bc_ratio=0.25, seed=3, root=root, download=False)
    assert ds.name == "mnist_cifar" and ds.num_classes == 10 and ds.input_shape == (3, 64, 32)
    assert ds.x_train.dtype == torch.float32 and tuple(ds.x_test.shape) == (20, 3, 64, 32)
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert int((ds.y_train != ds.b_train).sum()) == 10  # exactly round(0.25 * 40)
    assert ds.bc_ratio_drawn == 0.25
    for split, cif, mn in (("train", cifar["train"], mnist["train"]), ("test", cifar["test"], mnist["test"])):
        x = getattr(ds, f"x_{split}")
        y, b = getattr(ds, f"y_{split}").numpy(), getattr(ds, f"b_{split}").numpy()
        u = to_uint8(x)
        top, bottom = u[:, :, :32], u[:, :, 32:]
        # top: the digit, zero-padded by 2 pixels, the same in all three channels
        assert (top[:, :, :2] == 0).all() and (top[:, :, 30:] == 0).all()
        assert (top[:, :, :, :2] == 0).all() and (top[:, :, :, 30:] == 0).all()
        assert (top == top[:, :1]).all()
        # its digit comes from this split's MNIST pool, of class b
        digits = [find(mn[0], top[i, 0, 2:30, 2:30]) for i in range(len(u))]
        np.testing.assert_array_equal(mn[1][digits], b)
        # bottom: the CIFAR image (CHW), of class y; a subset without repeats
        rows = [find(cif[0], bottom[i].transpose(1, 2, 0)) for i in range(len(u))]
        np.testing.assert_array_equal(cif[1][rows], y)
        assert len(set(rows)) == len(rows)


def test_mnist_cifar_unbiased_test_and_determinism(standin):
    root = standin[0]
    kw = dict(n_train=50, n_test=20, bc_ratio=0.1, root=root, download=False)
    a, b = CD.make_mnist_cifar(seed=0, **kw), CD.make_mnist_cifar(seed=0, **kw)
    for k in ("x_train", "y_train", "b_train", "x_test", "y_test", "b_test"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    c = CD.make_mnist_cifar(seed=1, **kw)
    assert not torch.equal(a.x_train, c.x_train) and not torch.equal(a.b_test, c.b_test)
    # test bias labels: independent of y (about 90% BC), every class appears
    bc, seen = [], set()
    for seed in range(6):
        d = a if seed == 0 else CD.make_mnist_cifar(seed=seed, **kw)
        bc.append(float((d.y_test != d.b_test).float().mean()))
        seen |= set(d.b_test.tolist())
        assert int((d.y_train != d.b_train).sum()) == 5
    assert 0.7 < np.mean(bc) <= 1 and seen == set(range(10))


def test_mnist_cifar_regions_and_errors(standin):
    root = standin[0]
    ds = CD.make_mnist_cifar(n_train=20, n_test=10, root=root, download=False)
    masks = ds.regions(ds.x_test)
    assert set(masks) == {"core", "spurious"} and masks["core"].shape == (64, 32)
    assert masks["spurious"][:32].all() and not masks["spurious"][32:].any()
    assert torch.equal(masks["core"], ~masks["spurious"])
    assert ds.params == dict(n_train=20, n_test=10, bc_ratio=0.05)
    with pytest.raises(ConfigError, match="only 50"):
        CD.make_mnist_cifar(n_train=51, n_test=10, root=root, download=False)


# ----------------------------------------------------------------------- Corrupted CIFAR-10
@pytest.fixture
def optional_deps(tmp_path_factory, monkeypatch):
    """Stub snow's ImageMagick blur; synthetic frost photographs. Returns the frost folder."""
    monkeypatch.setattr(C, "_wand_image", lambda: IdentityBlur)
    frost = tmp_path_factory.mktemp("frost")
    for k, name in enumerate(C.FROST_FILES):
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 256, (200, 250, 3), dtype=np.uint8)).save(frost / name, quality=100)
    monkeypatch.delenv("LRBOOK_FROST_DIR", raising=False)
    return str(frost)


@pytest.fixture
def no_wand(monkeypatch):
    for mod in [m for m in sys.modules if m == "wand" or m.startswith("wand.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "wand", None)  # makes `import wand...` fail
    monkeypatch.setitem(sys.modules, "wand.image", None)


def test_corrupted_cifar10_images_are_the_seeded_corruptions(standin, cifar_root, optional_deps):
    cifar = standin[1]
    ds = CD.make_corrupted_cifar10(n_train=50, n_test=20, bc_ratio=0.1, seed=4, root=cifar_root,
                                   download=False, frost_dir=optional_deps, cache=False)
    assert ds.name == "corrupted_cifar10" and ds.input_shape == (3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert int((ds.y_train != ds.b_train).sum()) == 5  # exactly round(0.1 * 50)
    assert ds.params == dict(n_train=50, n_test=20, bc_ratio=0.1, severity=5)
    seeds = dict(zip(("train", "test"), CD.corruption_seeds(4)))
    for split in ("train", "test"):
        raw_x, raw_y = cifar[split]
        u = to_uint8(getattr(ds, f"x_{split}")).transpose(0, 2, 3, 1)
        y, b = getattr(ds, f"y_{split}").numpy(), getattr(ds, f"b_{split}").numpy()
        np.testing.assert_array_equal(y, raw_y)  # full split: the raw order is kept
        for i in range(len(u)):
            rng = np.random.default_rng(np.random.SeedSequence(seeds[split], spawn_key=(i,)))
            expect = C.corrupt(raw_x[i], int(b[i]), 5, rng, frost_dir=optional_deps)
            np.testing.assert_array_equal(u[i], expect, err_msg=f"{split} {i} {C.CORRUPTIONS[b[i]]}")
            assert not np.array_equal(u[i], raw_x[i])
    assert seeds["train"] != seeds["test"]
    # BA samples of class j carry corruption j
    ba = ds.y_train == ds.b_train
    assert ba.sum() == 45 and torch.equal(ds.b_train[ba], ds.y_train[ba])


def test_corrupted_cifar10_subset_determinism_and_unbiased_test(standin, cifar_root, optional_deps):
    kw = dict(n_train=30, n_test=20, bc_ratio=0.2, root=cifar_root, download=False,
              frost_dir=optional_deps, cache=False)
    a, b = CD.make_corrupted_cifar10(seed=0, **kw), CD.make_corrupted_cifar10(seed=0, **kw)
    for k in ("x_train", "y_train", "b_train", "x_test", "y_test", "b_test"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    c = CD.make_corrupted_cifar10(seed=1, **kw)
    assert not torch.equal(a.y_train, c.y_train) and not torch.equal(a.b_test, c.b_test)
    assert int((a.y_train != a.b_train).sum()) == 6
    assert float((a.y_test != a.b_test).float().mean()) > 0.5  # b independent of y
    # the subset: distinct raw training images whose labels are y (contrast is deterministic:
    # recognise the source image through it)
    raw_x, raw_y = standin[1]["train"]
    contrast = C.corrupt_batch(raw_x, ["contrast"] * len(raw_x), seed=0)
    u = to_uint8(a.x_train).transpose(0, 2, 3, 1)
    rows = [find(contrast, u[i]) for i in np.nonzero(a.b_train.numpy() == 4)[0]]
    assert rows and len(set(rows)) == len(rows)
    np.testing.assert_array_equal(raw_y[rows], a.y_train.numpy()[a.b_train.numpy() == 4])


def test_corrupted_cifar10_cache_is_written_and_reused(cifar_root, optional_deps, monkeypatch, no_wand):
    kw = dict(n_train=20, n_test=10, bc_ratio=0.1, seed=2, root=cifar_root, download=False,
              frost_dir=optional_deps)
    path = CD.corrupted_cifar10_cache_path(20, 10, 0.1, 5, 2, root=cifar_root)
    assert path.parent == cifar_root / "lrbook_cache" and path.name.startswith("corrupted_cifar10-")
    assert not path.exists()
    first = CD.make_corrupted_cifar10(**kw)  # snow stubbed by optional_deps despite no_wand
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no tmp left

    def boom(*args, **kwargs):
        raise AssertionError("corrupt_batch called although the cache exists")

    monkeypatch.setattr(C, "corrupt_batch", boom)
    monkeypatch.setattr(C, "_wand_image", REAL_WAND_IMAGE)  # and no_wand: Wand is missing now
    (cifar_root / "cifar-10-batches-py").unlink()  # a cache hit needs no CIFAR-10 and no Wand
    CD._load_cifar10.cache_clear()  # (raw CIFAR-10 is also cached in memory, per root)
    second = CD.make_corrupted_cifar10(**kw)
    for k in ("x_train", "y_train", "b_train", "x_test", "y_test", "b_test"):
        assert torch.equal(getattr(first, k), getattr(second, k)), k
    # other parameters: other file, so it is built (and fails here: no CIFAR, no corrupt_batch)
    with pytest.raises(FileNotFoundError):
        CD.make_corrupted_cifar10(**{**kw, "seed": 3})
    with pytest.raises(FileNotFoundError):
        CD.make_corrupted_cifar10(**{**kw, "cache": False})


def test_corrupted_cifar10_unreadable_cache_is_rebuilt(cifar_root, optional_deps):
    kw = dict(n_train=20, n_test=10, bc_ratio=0.1, seed=2, root=cifar_root, download=False,
              frost_dir=optional_deps)
    path = CD.corrupted_cifar10_cache_path(20, 10, 0.1, 5, 2, root=cifar_root)
    path.parent.mkdir()
    path.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="unreadable"):
        ds = CD.make_corrupted_cifar10(**kw)
    assert torch.equal(ds.x_train, CD.make_corrupted_cifar10(**{**kw, "cache": False}).x_train)
    assert np.load(path)["x_train"].shape == (20, 32, 32, 3)


def test_missing_wand_fails_before_any_work(cifar_root, no_wand, optional_deps, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("an image was corrupted before the dependency check")

    monkeypatch.setattr(C, "_wand_image", REAL_WAND_IMAGE)  # undo optional_deps' stub
    monkeypatch.setattr(C, "corrupt_batch", boom)
    with pytest.raises(C.MissingDependencyError) as ei:
        CD.make_corrupted_cifar10(n_train=20, n_test=10, root=cifar_root, download=False,
                                  frost_dir=optional_deps)
    assert "pip install Wand" in str(ei.value) and "libmagickwand-dev" in str(ei.value)
    assert not (cifar_root / "lrbook_cache").exists()


def test_missing_frost_fails_before_any_work(cifar_root, optional_deps, monkeypatch):
    monkeypatch.setattr(C, "corrupt_batch", lambda *a, **k: pytest.fail("corrupted before the check"))
    with pytest.raises(C.MissingDependencyError, match="LRBOOK_FROST_DIR"):
        CD.make_corrupted_cifar10(n_train=20, n_test=10, root=cifar_root, download=False)


def test_corrupted_cifar10_bad_severity(cifar_root):
    with pytest.raises(ConfigError, match="severity"):
        CD.make_corrupted_cifar10(n_train=10, n_test=10, severity=6, root=cifar_root, download=False)
