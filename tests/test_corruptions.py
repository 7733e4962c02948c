"""Tests of lrbook.data.corruptions (CIFAR-10-C corruptions of Corrupted CIFAR-10)."""

import io
import sys

import numpy as np
import pytest
from matplotlib.colors import rgb_to_hsv
from PIL import Image

from lrbook.data import corruptions as C
from stubs import IdentityBlur

NO_OPTIONAL = [n for n in C.CORRUPTIONS if n not in ("snow", "frost")]
RANDOM = ["fog", "spatter", "elastic_transform"]


def make_image():
    """Colour gradient plus a reddish square; no channel saturated."""
    r = np.arange(32)
    img = np.empty((32, 32, 3), np.uint8)
    img[..., 0] = 40 + 5 * r[None, :]
    img[..., 1] = 30 + 6 * r[:, None]
    img[..., 2] = 120
    img[10:22, 10:22] = (220, 60, 90)
    return img


def hsv(img):
    return rgb_to_hsv(img.astype(np.float64) / 255.0)


def run(name, seed=0, img=None, severity=5):
    img = make_image() if img is None else img
    return C.corrupt(img, name, severity, np.random.default_rng(seed))


# --------------------------------------------------------------------------- tables
def test_order_and_severity5_parameters_match_make_cifar_c():
    assert C.CORRUPTIONS == ("snow", "frost", "fog", "brightness", "contrast", "spatter",
                             "elastic_transform", "jpeg_compression", "pixelate", "saturate")
    p5 = {k: v[4] for k, v in C.SEVERITY_PARAMS.items()}
    assert p5 == {
        "snow": (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        "frost": (0.75, 0.45),
        "fog": (1.5, 1.75),
        "brightness": 0.3,
        "contrast": 0.15,
        "spatter": (0.65, 0.1, 0.5, 0.68, 0.6, 1),
        "elastic_transform": pytest.approx((3.2, 0.96, 0.96)),
        "jpeg_compression": 40,
        "pixelate": 0.65,
        "saturate": (2.5, 0.2),
    }
    assert all(len(v) == 5 for v in C.SEVERITY_PARAMS.values())


# ------------------------------------------------------------------ generic contract
@pytest.mark.parametrize("name", NO_OPTIONAL)
def test_shape_dtype_determinism_and_change(name):
    img = make_image()
    before = img.copy()
    a, b = run(name, 3), run(name, 3)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(img, before)  # input untouched
    assert np.abs(a.astype(int) - img).mean() > 1.0
    # the name's index gives the same corruption
    np.testing.assert_array_equal(C.corrupt(img, C.CORRUPTIONS.index(name), 5, 3), a)


@pytest.mark.parametrize("name", RANDOM)
def test_random_corruptions_depend_on_seed(name):
    outs = [run(name, s) for s in range(6)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])


def test_global_numpy_random_state_untouched():
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    for name in NO_OPTIONAL:
        run(name)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_invalid_arguments():
    img = make_image()
    with pytest.raises(ValueError, match="unknown corruption"):
        C.corrupt(img, "motion_blur", 5, 0)
    with pytest.raises(ValueError, match="32x32x3 uint8"):
        C.corrupt(img.astype(np.float32), "contrast", 5, 0)
    with pytest.raises(ValueError, match="severity"):
        C.corrupt(img, "contrast", 6, 0)
    with pytest.raises(ValueError, match="index"):
        C.corrupt(img, 10, 5, 0)
    with pytest.raises(ValueError, match="index"):
        C.corrupt(img, -1, 5, 0)


# ---------------------------------------------------------------- hand-checked maths
def test_brightness_adds_0p3_to_value_clipped():
    img = make_image()
    out = run("brightness", img=img)
    v_in, v_out = hsv(img)[..., 2], hsv(out)[..., 2]
    expect = np.minimum(v_in + 0.3, 1.0)
    assert np.abs(v_out - expect).max() <= 1.5 / 255
    assert v_out.mean() - v_in.mean() == pytest.approx(np.mean(expect - v_in), abs=1 / 255)
    assert (v_in > 0.7).any() and (v_out[v_in > 0.7] >= 254 / 255).all()  # clipped at 1
    # hue unchanged
    h_in, h_out = hsv(img)[..., 0], hsv(out)[..., 0]
    dh = np.abs(h_in - h_out)
    assert np.minimum(dh, 1 - dh).max() < 0.02


def test_contrast_shrinks_towards_channel_mean():
    img = make_image()
    out = run("contrast", img=img).astype(np.float64)
    x = img.astype(np.float64)
    mean = x.mean(axis=(0, 1), keepdims=True)
    expect = (x - mean) * 0.15 + mean
    assert np.abs(out - expect).max() <= 1.0  # truncation to uint8
    ratio = out.std(axis=(0, 1))[:2] / x.std(axis=(0, 1))[:2]
    np.testing.assert_allclose(ratio, 0.15, atol=0.01)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), mean.ravel(), atol=1.0)


def test_saturate_scales_saturation_keeps_value():
    img = make_image()
    out = run("saturate", img=img)
    hi, ho = hsv(img), hsv(out)
    expect = np.clip(hi[..., 1] * 2.5 + 0.2, 0, 1)
    assert np.abs(ho[..., 1] - expect).max() < 0.03
    assert np.abs(ho[..., 2] - hi[..., 2]).max() <= 1.5 / 255
    assert ho[..., 1].mean() > hi[..., 1].mean() + 0.3


def test_pixelate_is_blockwise_constant():
    img = make_image()
    out = run("pixelate", img=img)
    # BOX 32 -> 20 -> 32: upsampling picks source pixel floor((j + 0.5) * 20 / 32)
    src = np.floor((np.arange(32) + 0.5) * 20 / 32).astype(int)
    same = np.flatnonzero(src[1:] == src[:-1])
    assert len(same) == 12
    for j in same:
        np.testing.assert_array_equal(out[:, j], out[:, j + 1])
        np.testing.assert_array_equal(out[j], out[j + 1])
    assert len({tuple(row.ravel()) for row in out}) <= 20
    # a constant image is left unchanged
    flat = np.full((32, 32, 3), 77, np.uint8)
    np.testing.assert_array_equal(run("pixelate", img=flat), flat)


def test_jpeg_is_a_lossy_approximation_at_quality_40():
    img = make_image()
    out = run("jpeg_compression", img=img)
    mse = np.mean((out.astype(float) - img) ** 2)
    psnr = 10 * np.log10(255 ** 2 / mse)
    assert 25 < psnr < 45
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=80)
    q80 = np.asarray(Image.open(buf))
    assert np.mean((q80.astype(float) - img) ** 2) < mse  # severity 5 is the lossier one


def test_fog_adds_same_fractal_to_every_channel():
    img = make_image()
    out = run("fog", img=img).astype(np.float64) / 255
    x = img / 255.0
    m = x.max()
    scale = m / (m + 1.5)
    fractal = out / scale - x  # = 1.5 * plasma (per pixel, same in all channels)
    assert fractal.min() >= -0.02 and fractal.max() <= 1.5 + 0.02
    assert np.abs(fractal - fractal.mean(axis=2, keepdims=True)).max() < 0.02
    assert fractal.max() - fractal.min() > 1.0  # plasma spans [0, 1] before scaling


def test_plasma_fractal_range():
    p = C._plasma_fractal(np.random.default_rng(0), 32, 1.75)
    assert p.shape == (32, 32) and p.min() == 0 and p.max() == 1


def test_spatter_mud_replaces_pixels_with_brown():
    img = make_image()
    mud = np.array([63, 42, 20])
    n_changed = 0
    for seed in range(10):
        out = run("spatter", seed, img).astype(int)
        changed = np.abs(out - img).max(axis=2) > 1
        n_changed += changed.sum()
        # m in [0.8, 1]: a changed pixel is within 20% of its distance from mud
        dist_in = np.abs(img[changed].astype(int) - mud).max(axis=1)
        dist_out = np.abs(out[changed] - mud).max(axis=1)
        assert (dist_out <= 0.2 * dist_in + 1.5).all()
    assert n_changed > 10


@pytest.mark.parametrize("severity", [1, 2, 3])
def test_spatter_liquid_adds_pale_turquoise(severity):
    img = (make_image() // 3).astype(np.uint8)  # dark, so nothing saturates
    added = [run("spatter", s, img, severity).astype(int) - img for s in range(4)]
    added = np.stack(added)
    assert added.min() >= -1
    wet = added[..., 1] > 10
    assert wet.sum() > 10
    # added colour is m * (175, 238, 238) / 255: R/G = 175/238, G == B
    np.testing.assert_allclose(added[wet][:, 0] / added[wet][:, 1], 175 / 238, atol=0.1)
    assert np.abs(added[wet][:, 1] - added[wet][:, 2]).max() <= 1


def test_canny_finds_the_square_outline():
    a = np.zeros((32, 32), np.uint8)
    a[8:24, 8:24] = 200
    e = C._canny(a)
    assert set(np.unique(e)) == {0, 255}
    rows, cols = np.nonzero(e)
    assert rows.min() >= 6 and rows.max() <= 25 and cols.min() >= 6 and cols.max() <= 25
    assert e[12:20, 12:20].max() == 0 and e[:5].max() == 0  # not inside, not far outside
    assert C._canny(np.full((32, 32), 9, np.uint8)).max() == 0


def test_canny_non_maximum_suppression_keeps_one_column_of_a_ramp():
    a = np.zeros((32, 32), np.uint8)
    a[:] = np.clip((np.arange(32) - 12) * 30, 0, 240)  # Sobel |dx|: 120, 240 x 7, 120
    rows, cols = np.nonzero(C._canny(a))
    np.testing.assert_array_equal(rows, np.arange(32))
    assert set(cols) == {13}  # first of the equal maxima (m > left and m >= right)


def test_chamfer_distance_weights():
    nonzero = np.ones((9, 9), bool)
    nonzero[4, 4] = False
    d = C._distance_5x5(nonzero)
    assert d[4, 4] == 0
    for (r, c), expect in {(4, 5): 1, (5, 5): 1.4, (5, 6): 2.1969, (4, 7): 3, (6, 6): 2.8,
                           (0, 0): 5.6, (0, 8): 5.6}.items():
        assert d[r, c] == pytest.approx(expect, abs=1e-5), (r, c)


def test_equalize_hist():
    a = np.array([[10, 10, 20, 30]], np.uint8)
    np.testing.assert_array_equal(C._equalize_hist(a), [[0, 0, 128, 255]])
    np.testing.assert_array_equal(C._equalize_hist(np.full((2, 2), 7, np.uint8)), 7)


def test_elastic_displacement_field_has_severity5_size():
    """Read the sampling positions off a linear ramp image and split them into the random
    affine (control points moved by <= 0.96 px) and the smooth field (3.2 x blurred noise)."""
    r = np.arange(32)
    ramp = np.empty((32, 32, 3), np.uint8)
    ramp[..., 0] = 10 + 7 * r[None, :]
    ramp[..., 1] = 10 + 7 * r[:, None]
    ramp[..., 2] = 128
    rr, cc = np.mgrid[4:28, 4:28]
    X = np.c_[rr.ravel(), cc.ravel(), np.ones(rr.size)]
    verts = np.array([[26, 26, 1], [6, 26, 1], [6, 6, 1]], float)  # make_cifar_c's pts1
    disps = []
    for seed in range(4):
        out = run("elastic_transform", seed, ramp).astype(float)
        src = (out[4:28, 4:28, 1::-1].reshape(-1, 2) + 0.5 - 10) / 7  # (row, col)
        A = np.linalg.lstsq(X, src, rcond=None)[0]
        resid = src - X @ A
        assert 0.35 < resid.std(axis=0).min() and resid.std(axis=0).max() < 0.75
        disps.append(np.abs(verts @ A - verts[:, :2]).max())
    assert 0.3 < max(disps) < 1.4


def test_elastic_transform_is_a_small_smooth_warp():
    img = make_image()
    out = run("elastic_transform", img=img)
    corr = np.corrcoef(out.astype(float).ravel(), img.astype(float).ravel())[0, 1]
    assert 0.8 < corr < 0.9999
    flat = np.full((32, 32, 3), 150, np.uint8)
    assert np.abs(run("elastic_transform", img=flat).astype(int) - 150).max() <= 1


# ------------------------------------------------------------------------------ frost
def write_frost_photos(directory, colours):
    for fname, colour in zip(C.FROST_FILES, colours):
        photo = Image.fromarray(np.full((200, 250, 3), colour, np.uint8))
        photo.save(directory / fname, quality=100)


def test_frost_blends_a_frost_crop(tmp_path, monkeypatch):
    colours = [(0, 0, 0), (250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 250)]
    write_frost_photos(tmp_path, colours)
    monkeypatch.delenv("LRBOOK_FROST_DIR", raising=False)
    img = make_image()
    seen = set()
    for seed in range(12):
        out = C.corrupt(img, "frost", 5, np.random.default_rng(seed), frost_dir=str(tmp_path))
        errs = [np.abs(out - np.clip(0.75 * img + 0.45 * np.array(c), 0, 255)).max()
                for c in colours]
        k = int(np.argmin(errs))
        assert errs[k] <= 3  # JPEG-coded photos 4-5 are only nearly constant
        seen.add(k)
    assert len(seen) >= 3
    # the environment variable is honoured as well
    monkeypatch.setenv("LRBOOK_FROST_DIR", str(tmp_path))
    np.testing.assert_array_equal(C.corrupt(img, "frost", 5, 1),
                                  C.corrupt(img, "frost", 5, 1, frost_dir=str(tmp_path)))


def test_frost_photo_downscale_samples_every_fifth_pixel(tmp_path):
    a = np.zeros((200, 250, 3), np.uint8)
    a[..., 0] = np.arange(200)[:, None]
    a[..., 1] = np.arange(250)[None, :] % 256
    Image.fromarray(a).save(tmp_path / "p.png")
    small = C._frost_photo(str(tmp_path / "p.png"))
    np.testing.assert_array_equal(small, a[2::5, 2::5])
    assert small.shape == (40, 50, 3)


def test_frost_missing_directory_or_files(tmp_path, monkeypatch):
    monkeypatch.delenv("LRBOOK_FROST_DIR", raising=False)
    with pytest.raises(C.MissingDependencyError, match="LRBOOK_FROST_DIR") as ei:
        C.check_dependencies(["frost"])
    assert "frost1.png" in str(ei.value) and "hendrycks/robustness" in str(ei.value)
    with pytest.raises(C.MissingDependencyError, match="LRBOOK_FROST_DIR"):
        C.corrupt(make_image(), "frost", 5, 0)
    (tmp_path / "frost1.png").write_bytes(b"")
    missing = "frost2.png, frost3.png, frost4.jpg, frost5.jpg"
    with pytest.raises(C.MissingDependencyError, match=missing):
        C.check_dependencies([1], frost_dir=str(tmp_path))
    assert isinstance(C.MissingDependencyError("x"), ImportError)


# ------------------------------------------------------------------------------- snow
@pytest.fixture
def no_wand(monkeypatch):
    for mod in [m for m in sys.modules if m == "wand" or m.startswith("wand.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "wand", None)  # makes `import wand...` fail
    monkeypatch.setitem(sys.modules, "wand.image", None)


def test_snow_without_wand_names_the_install(no_wand):
    for call in (lambda: C.check_dependencies(["snow"]),
                 lambda: C.check_dependencies([0]),
                 lambda: C.corrupt(make_image(), "snow", 5, 0)):
        with pytest.raises(C.MissingDependencyError) as ei:
            call()
        assert "pip install Wand" in str(ei.value)
        assert "libmagickwand-dev" in str(ei.value)
    C.check_dependencies(NO_OPTIONAL)  # the others need nothing optional


def test_batch_fails_before_any_work(no_wand, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("an image was processed before the dependency check")

    monkeypatch.setitem(C._FUNCS, "brightness", boom)
    images = np.stack([make_image()] * 2)
    with pytest.raises(C.MissingDependencyError, match="pip install Wand"):
        C.corrupt_batch(images, ["brightness", "snow"], seed=0)


def test_snow_maths_with_stub_blur(monkeypatch):
    monkeypatch.setattr(C, "_wand_image", lambda: IdentityBlur)
    img = make_image()
    a = C.corrupt(img, "snow", 5, 0)
    np.testing.assert_array_equal(a, C.corrupt(img, "snow", 5, 0))
    assert (a.astype(int) >= img.astype(int) - 1).all()  # snow only brightens
    assert a.mean() > img.mean() + 5


def test_snow_layer_is_added_twice_rotated_by_180_degrees(monkeypatch):
    monkeypatch.setattr(C, "_wand_image", lambda: IdentityBlur)
    img = make_image() // 3
    out = C.corrupt(img, "snow", 5, 4).astype(np.float64) / 255
    x = img.astype(np.float32) / 255
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    base = 0.8 * x + 0.2 * np.maximum(x, grey[..., None] * 1.5 + 0.5)
    delta = out - base  # = layer + rot180(layer) where not clipped
    ok = (out < 254 / 255).all(axis=2)
    ok &= np.rot90(ok, 2)
    assert ok.sum() > 500
    assert np.abs(delta - np.rot90(delta, 2))[ok].max() <= 2 / 255
    assert np.abs(delta[..., 0] - delta[..., 2])[ok].max() <= 1 / 255  # grey layer
    assert delta[ok].min() >= -1 / 255 and delta[ok].max() > 0.2


def test_snow_with_real_wand():
    pytest.importorskip("wand.image")
    img = make_image()
    a = C.corrupt(img, "snow", 5, 0)
    np.testing.assert_array_equal(a, C.corrupt(img, "snow", 5, 0))
    assert (a.astype(int) >= img.astype(int) - 1).all() and a.mean() > img.mean() + 5


# ------------------------------------------------------------------------------ batch
def test_corrupt_batch_matches_per_image_calls():
    images = np.stack([make_image(), 255 - make_image(), make_image()[::-1].copy()])
    names = ["fog", 3, "elastic_transform"]
    out = C.corrupt_batch(images, names, seed=7)
    assert out.shape == images.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, C.corrupt_batch(images, names, seed=7))
    for i, name in enumerate(names):
        rng = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(i,)))
        np.testing.assert_array_equal(out[i], C.corrupt(images[i], name, 5, rng))
    assert not np.array_equal(out[0], C.corrupt_batch(images, names, seed=8)[0])
    with pytest.raises(ValueError, match="names"):
        C.corrupt_batch(images, names[:2], seed=0)


def test_corrupt_batch_progress_bar(capsys):
    pytest.importorskip("tqdm")
    images = np.stack([make_image()] * 2)
    out = C.corrupt_batch(images, ["contrast", "contrast"], seed=0, progress=True)
    np.testing.assert_array_equal(out[0], out[1])
    assert "corrupting" in capsys.readouterr().err
