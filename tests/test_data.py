"""lrbook.data: the registry and the spurious-correlation datasets of REPRODUCTION_SPEC section 2."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lrbook.config import ConfigError, make_config
from lrbook.data import dataset_for, make_dataset
from lrbook.data.mnist import COLORED_MNIST_COLORS
from lrbook.data.synthetic import QUADRANTS_OF_CLASS, _moon, _star, make_moon_star, make_parity, parity_regions, quadrant_class


def within_sd(count, n, p, k=4.0):
    """`count` successes out of `n` are within k binomial standard deviations of n * p."""
    return abs(count - n * p) <= k * math.sqrt(n * p * (1 - p))


# ------------------------------------------------------------------------------------ parity


@pytest.fixture(scope="module")
def parity():
    return make_parity(n_train=400, n_test=4000, bits_per_block=10, core_bits=4, spurious_bits=2,
                       bc_ratio=0.05, seed=0)


def test_parity_shapes_and_values(parity):
    assert parity.x_train.shape == (400, 20) and parity.x_test.shape == (4000, 20)
    assert parity.x_train.dtype == torch.float32 and parity.y_train.dtype == torch.int64
    assert set(parity.x_train.unique().tolist()) == {-1.0, 1.0}
    assert set(parity.x_test.unique().tolist()) == {-1.0, 1.0}
    assert parity.num_classes == 2 and parity.input_shape == (20,)


def _odd_minus_ones(bits: torch.Tensor) -> torch.Tensor:
    """Parity by counting, independent of the product formula used by lrbook."""
    return ((bits == -1).sum(1) % 2).long()


@pytest.mark.parametrize("split", ["train", "test"])
def test_parity_labels_are_parities_of_the_right_bits(parity, split):
    x, y, b = (getattr(parity, f"{k}_{split}") for k in "xyb")
    assert torch.equal(y, _odd_minus_ones(x[:, :4]))       # first 4 core bits
    assert torch.equal(b, _odd_minus_ones(x[:, 10:12]))    # first 2 spurious bits
    # the other core bits do not determine y: some samples with y=0 have an odd count over 5 bits
    assert not torch.equal(y, _odd_minus_ones(x[:, :5]))


@pytest.mark.parametrize("n, r", [(400, 0.05), (333, 0.05), (400, 0.0), (250, 0.1)])
def test_parity_bc_ratio_is_drawn_exactly(n, r):
    d = make_parity(n_train=n, n_test=10, bc_ratio=r, seed=3)
    assert int((d.y_train != d.b_train).sum()) == round(r * n)
    assert d.bc_ratio_drawn == pytest.approx(round(r * n) / n)


def test_parity_test_set_has_independent_spurious_label(parity):
    y, b, n = parity.y_test, parity.b_test, len(parity.y_test)
    assert within_sd(int((y != b).sum()), n, 0.5)
    assert within_sd(int(y.sum()), n, 0.5)
    # P(b = 1 | y) is the same for both classes
    for c in (0, 1):
        m = y == c
        assert within_sd(int(b[m].sum()), int(m.sum()), 0.5)


def test_parity_spurious_block_is_uniform_given_its_label(parity):
    """Spurious blocks are uniform among blocks of the requested parity: for b = 0 the first two
    bits are (1, 1) or (-1, -1) equally often, the noise bits are fair coins."""
    x, b = parity.x_test, parity.b_test
    for label in (0, 1):
        s = x[b == label, 10:12]
        n = len(s)
        assert within_sd(int((s[:, 0] == 1).sum()), n, 0.5)
    noise = x[:, 12:]
    n = noise.numel()
    assert within_sd(int((noise == 1).sum()), n, 0.5)
    core_noise = x[:, 4:10]
    assert within_sd(int((core_noise == 1).sum()), core_noise.numel(), 0.5)


def test_parity_is_deterministic_in_seed():
    a = make_parity(n_train=100, n_test=100, seed=7)
    b = make_parity(n_train=100, n_test=100, seed=7)
    c = make_parity(n_train=100, n_test=100, seed=8)
    for k in ("x_train", "y_train", "b_train", "x_test", "y_test", "b_test"):
        assert torch.equal(getattr(a, k), getattr(b, k))
    assert not torch.equal(a.x_train, c.x_train)


def test_parity_regions_partition_the_bits(parity):
    masks = parity_regions(10, 4, 2)
    assert masks["core"].nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert masks["spurious"].nonzero().flatten().tolist() == [10, 11]
    total = masks["core"].long() + masks["spurious"].long() + masks["noise"].long()
    assert torch.equal(total, torch.ones(20, dtype=torch.long))
    got = parity.regions(parity.x_test[:3])
    assert set(got) == {"core", "spurious", "noise"}
    assert torch.equal(got["spurious"], masks["spurious"])


def test_parity_rejects_spurious_not_simpler_than_core():
    with pytest.raises(ConfigError, match="spurious_bits < core_bits"):
        make_parity(n_train=10, n_test=10, core_bits=2, spurious_bits=2)


def test_dataset_for_builds_what_the_config_says_and_caches():
    cfg = make_config("parity", lr=0.1, scale="smoke")
    d1, d2 = dataset_for(cfg), dataset_for(cfg)
    assert d1 is d2
    assert len(d1.y_train) == cfg.dataset_params["n_train"]
    ref = make_dataset("parity", seed=cfg.data_seed, **cfg.dataset_params)
    assert torch.equal(d1.x_train, ref.x_train)
    with pytest.raises(ConfigError, match="unknown dataset"):
        make_dataset("nope")


def test_to_device_keeps_everything():
    d = make_parity(n_train=20, n_test=20, seed=0)
    e = d.to("cpu")
    assert torch.equal(e.x_train, d.x_train) and e.region_fn is d.region_fn and e.params == d.params


# ------------------------------------------------------------------------------------ moon-star


@pytest.fixture(scope="module")
def moon_star():
    return make_moon_star(n_train=200, n_test=400, image_size=24, bc_ratio=0.05, seed=0)


def _quadrants(x: torch.Tensor) -> np.ndarray:
    """Quadrant (0 TL, 1 TR, 2 BL, 3 BR) of each image's centre of mass of pixels > 0."""
    x = x[:, 0].numpy()
    n, s, _ = x.shape
    on = x > 0
    rows = np.arange(s)[None, :, None] + 0.5
    cols = np.arange(s)[None, None, :] + 0.5
    cy = (on * rows).sum((1, 2)) / on.sum((1, 2))
    cx = (on * cols).sum((1, 2)) / on.sum((1, 2))
    return 2 * (cy >= s / 2) + (cx >= s / 2)


def test_moon_star_images_are_binary_and_nonempty(moon_star):
    for x in (moon_star.x_train, moon_star.x_test):
        assert x.shape[1:] == (1, 24, 24)
        assert set(x.unique().tolist()) <= {0.0, 1.0}
        assert (x.flatten(1).sum(1) >= 5).all()
    assert set(moon_star.y_train.tolist()) == {0, 1}
    assert abs(int(moon_star.y_train.sum()) - 100) <= 1  # classes balanced


def test_moon_star_train_objects_sit_in_their_class_quadrants(moon_star):
    q = _quadrants(moon_star.x_train)
    y, b = moon_star.y_train.numpy(), moon_star.b_train.numpy()
    ba = y == b
    assert int((~ba).sum()) == round(0.05 * 200)
    for i in range(len(y)):
        own = QUADRANTS_OF_CLASS[int(y[i])]
        if ba[i]:
            assert q[i] in own, i
        else:
            assert q[i] in QUADRANTS_OF_CLASS[1 - int(y[i])], i
    assert np.array_equal(quadrant_class(q), b)
    # both quadrants of a class are used
    assert set(q[ba & (y == 0)]) == {0, 3} and set(q[ba & (y == 1)]) == {1, 2}


def test_moon_star_objects_lie_wholly_inside_one_quadrant(moon_star):
    x = moon_star.x_train[:, 0].numpy() > 0
    q = _quadrants(moon_star.x_train)
    for img, qq in zip(x, q):
        rows, cols = np.nonzero(img)
        top, left = qq in (0, 1), qq in (0, 2)
        assert (rows < 12).all() if top else (rows >= 12).all()
        assert (cols < 12).all() if left else (cols >= 12).all()


def test_moon_star_test_quadrants_are_uniform(moon_star):
    q = _quadrants(moon_star.x_test)
    n = len(q)
    for k in range(4):
        assert within_sd(int((q == k).sum()), n, 0.25)
    assert np.array_equal(quadrant_class(q), moon_star.b_test.numpy())
    agree = int((quadrant_class(q) == moon_star.y_test.numpy()).sum())
    assert within_sd(agree, n, 0.5)


def _rotation_overlap(img: np.ndarray, degrees: float = 72.0) -> float:
    """Share of an object's pixels that land on the object again after rotating it about its
    centre of mass."""
    yy, xx = np.nonzero(img > 0)
    cy, cx = yy.mean(), xx.mean()
    t = math.radians(degrees)
    ry = np.rint(cy + (yy - cy) * math.cos(t) - (xx - cx) * math.sin(t)).astype(int)
    rx = np.rint(cx + (yy - cy) * math.sin(t) + (xx - cx) * math.cos(t)).astype(int)
    s = img.shape[0]
    ok = (ry >= 0) & (ry < s) & (rx >= 0) & (rx < s)
    hit = np.zeros(len(yy), bool)
    hit[ok] = img[ry[ok], rx[ok]] > 0
    return hit.mean()


def test_stars_have_five_fold_symmetry_and_moons_do_not():
    d = make_moon_star(n_train=120, n_test=2, image_size=48, bc_ratio=0.05, seed=1)
    x, y = d.x_train[:, 0].numpy(), d.y_train.numpy()
    overlap = np.array([_rotation_overlap(im) for im in x])
    assert overlap[y == 1].min() > 0.7, "stars should map onto themselves under a 72 degree turn"
    assert overlap[y == 0].max() < 0.6, "moons should not"


def test_star_and_moon_geometry_match_their_formulas():
    s, R, c = 400, 150.0, 200.0
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64) + 0.5
    angle = 0.3
    star = _star(yy, xx, c, c, R, angle)
    # five-pointed star with inner radius 0.45 R: area = 5 R r sin(pi / 5)
    assert star.sum() == pytest.approx(5 * R * 0.45 * R * math.sin(math.pi / 5), rel=0.01)
    # tips at radius R along angle + k * 72 deg, notches at 0.45 R in between
    for k in range(5):
        a = angle + k * 2 * math.pi / 5
        at = lambda r, a=a: bool(_star(np.array(c + r * math.sin(a)), np.array(c + r * math.cos(a)), c, c, R, angle))
        assert at(0.97 * R) and not at(1.03 * R)
        a2 = a + math.pi / 5
        at2 = lambda r, a2=a2: bool(_star(np.array(c + r * math.sin(a2)), np.array(c + r * math.cos(a2)), c, c, R, angle))
        assert at2(0.97 * 0.45 * R) and not at2(1.03 * 0.45 * R)
    moon = _moon(yy, xx, c, c, R, angle)
    r, d = 0.85 * R, 0.55 * R
    lens = (r ** 2 * math.acos((d ** 2 + r ** 2 - R ** 2) / (2 * d * r))
            + R ** 2 * math.acos((d ** 2 + R ** 2 - r ** 2) / (2 * d * R))
            - 0.5 * math.sqrt((-d + r + R) * (d + r - R) * (d - r + R) * (d + r + R)))
    assert moon.sum() == pytest.approx(math.pi * R ** 2 - lens, rel=0.01)
    assert moon.sum() > 0.1 * math.pi * R ** 2  # a real crescent, not a sliver


def test_moon_star_is_deterministic_in_seed():
    a = make_moon_star(n_train=20, n_test=20, image_size=16, seed=5)
    b = make_moon_star(n_train=20, n_test=20, image_size=16, seed=5)
    c = make_moon_star(n_train=20, n_test=20, image_size=16, seed=6)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.b_train, b.b_train)
    assert torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_train, c.x_train)


# ------------------------------------------------------------------------------------ MNIST sets


@pytest.fixture(scope="module")
def mnist(mnist_root):
    """Raw MNIST plus look-ups from image content to (index, label) per split."""
    from lrbook.data.mnist import load_mnist

    xtr, ytr, xte, yte = load_mnist(str(mnist_root), download=False)
    out = {}
    for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        xn, yn = x.numpy(), y.numpy()
        by_bytes = {img.tobytes(): int(lab) for img, lab in zip(xn, yn)}
        by_support: dict[bytes, list[int]] = {}
        for i, img in enumerate(xn):
            by_support.setdefault(np.packbits(img > 0).tobytes(), []).append(i)
        out[split] = dict(x=xn, y=yn, by_bytes=by_bytes, by_support=by_support)
    return out


def _decompose_colored(img: np.ndarray, split: dict):
    """Find the raw MNIST image behind a coloured one: (raw index, fitted RGB colour, max residual)."""
    support = np.packbits(img.sum(0) > 0).tobytes()
    best = None
    for idx in split["by_support"].get(support, []):
        raw = split["x"][idx].astype(np.float64) / 255
        color = (img * raw).sum((1, 2)) / (raw ** 2).sum()
        resid = np.abs(img - color[:, None, None] * raw).max()
        if best is None or resid < best[2]:
            best = (idx, color, resid)
    return best


@pytest.fixture(scope="module")
def colored(mnist_root):
    from lrbook.data.mnist import make_colored_mnist

    return make_colored_mnist(n_train=600, n_test=500, bc_ratio=0.01, color_std=0.005, seed=0,
                              root=str(mnist_root), download=False)


@pytest.mark.mnist
@pytest.mark.parametrize("split", ["train", "test"])
def test_colored_mnist_strokes_have_bias_colour_and_background_stays_black(colored, mnist, split):
    x = getattr(colored, f"x_{split}").numpy().astype(np.float64)
    y, b = getattr(colored, f"y_{split}").numpy(), getattr(colored, f"b_{split}").numpy()
    assert x.shape[1:] == (3, 28, 28)
    deviations, used = [], set()
    for i in range(len(x)):
        found = _decompose_colored(x[i], mnist[split])
        assert found is not None, f"sample {i} is not a coloured {split} MNIST image"
        idx, color, resid = found
        assert resid < 1e-5, "pixel must equal raw / 255 * one RGB colour per image"
        assert mnist[split]["y"][idx] == y[i], "core label must be the digit's label"
        raw = mnist[split]["x"][idx]
        assert (x[i][:, raw == 0] == 0).all(), "background must stay 0"
        deviations.append(color - COLORED_MNIST_COLORS[b[i]].numpy())
        used.add(idx)
    dev = np.array(deviations)
    assert np.abs(dev).max() < 5 * 0.005, "stroke colour must be the bias class colour up to the jitter"
    assert 0.003 < dev.std() < 0.007, "colour jitter should have std 0.005"
    assert len(used) == len(x), "samples are distinct MNIST images"
    if split == "train":
        ba = y == b
        assert np.abs(dev[ba]).max() < 5 * 0.005  # BA: colour of its own class


@pytest.mark.mnist
def test_colored_mnist_bc_ratio_and_uniform_test_colours(colored):
    assert int((colored.y_train != colored.b_train).sum()) == 6
    assert colored.bc_ratio_drawn == pytest.approx(0.01)
    counts = torch.bincount(colored.b_test, minlength=10)
    assert all(within_sd(int(c), 500, 0.1) for c in counts)
    assert within_sd(int((colored.y_test != colored.b_test).sum()), 500, 0.9)


@pytest.fixture(scope="module")
def double(mnist_root):
    from lrbook.data.mnist import make_double_mnist

    return make_double_mnist(n_train=600, n_test=500, bc_ratio=0.01, seed=0, root=str(mnist_root),
                             download=False)


@pytest.mark.mnist
@pytest.mark.parametrize("split", ["train", "test"])
def test_double_mnist_halves(double, mnist, split):
    x = getattr(double, f"x_{split}")
    y, b = getattr(double, f"y_{split}").numpy(), getattr(double, f"b_{split}").numpy()
    assert x.shape[1:] == (1, 28, 56)
    left, right = x[:, 0, :, :28].numpy().astype(np.float64), x[:, 0, :, 28:].numpy().astype(np.float64)
    assert left.max() == pytest.approx(0.5) and right.max() == pytest.approx(1.0)
    assert (left.reshape(len(x), -1).max(1) <= 0.5 + 1e-6).all()
    left_raw, right_raw = left * 510, right * 255
    assert np.abs(left_raw - np.rint(left_raw)).max() < 1e-3
    assert np.abs(right_raw - np.rint(right_raw)).max() < 1e-3
    lookup = mnist[split]["by_bytes"]
    for i in range(len(x)):
        lk = np.rint(left_raw[i]).astype(np.uint8).tobytes()
        rk = np.rint(right_raw[i]).astype(np.uint8).tobytes()
        assert lk in lookup and rk in lookup, f"both digits must come from the {split} split"
        assert lookup[lk] == y[i], "left digit is the core digit"
        assert lookup[rk] == b[i], "right digit is a digit of the bias class"


@pytest.mark.mnist
def test_double_mnist_bc_ratio_regions_and_uniform_test_bias(double):
    assert int((double.y_train != double.b_train).sum()) == 6
    counts = torch.bincount(double.b_test, minlength=10)
    assert all(within_sd(int(c), 500, 0.1) for c in counts)
    r = double.regions(double.x_test[:2])
    assert r["core"].shape == (28, 56)
    assert r["core"][:, :28].all() and not r["core"][:, 28:].any()
    assert torch.equal(r["spurious"], ~r["core"])


@pytest.mark.parametrize("name", ["colored_mnist", "double_mnist"])
def test_missing_mnist_without_download_names_lrbook_data(tmp_path, name):
    from lrbook.data import builder

    with pytest.raises(FileNotFoundError) as exc:
        builder(name)(n_train=10, n_test=10, root=str(tmp_path), download=False)
    msg = str(exc.value)
    assert "LRBOOK_DATA" in msg and str(tmp_path) in msg and "MNIST/raw" in msg


@pytest.mark.mnist
def test_recolor_swaps_shape_and_colour_exactly(colored, mnist):
    """Colored MNIST's compose_fn: strokes of the first image in the colour of the second."""
    from lrbook.data.mnist import recolor, stroke_color

    x = colored.x_test[:50]
    other = x.flip(0)
    assert torch.allclose(recolor(x, x), x, atol=1e-6), "shape and colour of the same image: unchanged"
    mixed = colored.compose_fn(x, other)
    assert torch.allclose(stroke_color(mixed), stroke_color(other), atol=1e-6)
    for i in range(5):
        idx, _, _ = _decompose_colored(x[i].numpy().astype(np.float64), mnist["test"])
        raw = torch.from_numpy(mnist["test"]["x"][idx]).double() / 255
        want = raw[None] * stroke_color(other[i:i + 1])[0].double()[:, None, None]
        assert torch.allclose(mixed[i].double(), want, atol=1e-5)


@pytest.mark.mnist
def test_double_mnist_compose_swaps_the_right_half(double):
    x = double.x_test[:8]
    other = x.flip(0)
    mixed = double.compose_fn(x, other)
    assert torch.equal(mixed[..., :28], x[..., :28]) and torch.equal(mixed[..., 28:], other[..., 28:])


# ------------------------------------------------------------------- finding MNIST before a sweep


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_mnist_files_missing_reads_torchvision_layout_and_creates_nothing(tmp_path):
    from lrbook.data.mnist import MNIST_RAW_FILES, mnist_files_missing

    assert mnist_files_missing(tmp_path) == list(MNIST_RAW_FILES)
    assert mnist_files_missing(tmp_path / "absent") == list(MNIST_RAW_FILES)
    assert _tree(tmp_path) == [], "looking must not create MNIST/raw"
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"")
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"")
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"")  # torchvision reads the unpacked files only
    assert mnist_files_missing(tmp_path) == ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]
    processed = tmp_path / "MNIST" / "processed"  # torchvision's older layout also loads
    processed.mkdir()
    (processed / "training.pt").write_bytes(b"")
    (processed / "test.pt").write_bytes(b"")
    assert mnist_files_missing(tmp_path) == []


def test_missing_mnist_without_download_fails_with_layout_and_settings(tmp_path):
    from lrbook.data import DataNotFoundError, require_data

    root = tmp_path / "data"
    with pytest.raises(DataNotFoundError) as exc:
        require_data(["parity", "colored_mnist"], root, download=False)
    msg = str(exc.value)
    assert isinstance(exc.value, ConfigError) and isinstance(exc.value, FileNotFoundError)
    assert f"{root}/MNIST/raw/ lacks them (downloading is off)" in msg
    assert "<root>/MNIST/raw/" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "data_root=" in msg and "--data-root" in msg and "LRBOOK_DATA" in msg
    assert "\n" not in msg
    assert not root.exists()


def test_failed_download_removes_the_folders_it_made(tmp_path, monkeypatch):
    """torchvision makes <root>/MNIST/raw/ before it downloads; a failed download must not leave it."""
    import torchvision

    from lrbook.data import DataNotFoundError
    from lrbook.data.mnist import require_mnist

    class Offline:
        def __init__(self, root, train=True, download=False):
            (tmp_path / "MNIST" / "raw").mkdir(parents=True)
            (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
                               "<urlopen error one>\nTried http://b/, got:\n<urlopen error refused>\n")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    (tmp_path / "keep.txt").write_text("the user's file")
    with pytest.raises(DataNotFoundError, match=r"downloading it failed: <urlopen error refused>\)"):
        require_mnist(tmp_path, download=True)
    assert _tree(tmp_path) == ["keep.txt"]


def test_require_data_asks_only_for_what_the_datasets_read(tmp_path):
    from lrbook.data import DataNotFoundError, require_data

    require_data(["parity", "moon_star"], tmp_path, download=False)  # generated: no files needed
    with pytest.raises(DataNotFoundError, match="MNIST not found"):
        require_data("double_mnist", tmp_path, download=False)


@pytest.mark.mnist
def test_require_data_passes_on_real_mnist(mnist_root):
    from lrbook.data import require_data
    from lrbook.data.mnist import require_mnist

    assert require_mnist(mnist_root, download=False) == mnist_root
    require_data(["colored_mnist", "double_mnist"], mnist_root, download=False)
