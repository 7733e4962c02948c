"""The ten CIFAR-10-C corruptions of Corrupted CIFAR-10 ("Type0", Nam et al. 2020).

Corrupted CIFAR-10 (Learning from Failure, alinlab/LfF ``make_dataset.py``) tags each
image with one of ten corruptions; corruption ``j`` is the bias attribute aligned with
CIFAR class ``j`` (see :data:`CORRUPTIONS`).  LfF calls the functions of Hendrycks &
Dietterich's CIFAR-10-C generator with severity ``1..5``; this reproduction uses 5.

Source of the maths and of every parameter in :data:`SEVERITY_PARAMS`:
``hendrycks/robustness``, ``ImageNet-C/create_c/make_cifar_c.py`` (the 32x32 tables,
not the ImageNet-C ones; copied unchanged in LfF's ``data/corrupted_cifar10_protocol.py``).
As in LfF, the float result of a corruption is clipped to [0, 255] and truncated to uint8.

Optional dependencies (checked up front by :func:`check_dependencies`):

* ``snow`` needs ImageMagick's motion blur through Wand
  (``pip install Wand`` plus the system library, e.g. ``apt-get install libmagickwand-dev``).
* ``frost`` needs Hendrycks' frost photographs (``frost1.png`` ... ``frost5.jpg``; the
  CIFAR code draws ``randint(5)`` so ``frost6.jpg`` is never used) in ``frost_dir`` or
  ``$LRBOOK_FROST_DIR``.

The other eight need only numpy, scipy, Pillow and matplotlib.  Deviations from
Hendrycks' code (OpenCV / scikit-image replaced by scipy / numpy / Pillow / matplotlib):

* random numbers come from a ``numpy.random.Generator`` instead of the global state, so
  the draws (not their distributions) differ from the published files;
* skimage's ``gaussian`` -> ``scipy.ndimage.gaussian_filter`` (same maths: skimage wraps it);
  skimage's HSV conversions -> ``matplotlib.colors`` (same formulas);
* ``elastic_transform``: ``cv2.warpAffine`` (bilinear, BORDER_REFLECT_101) ->
  ``scipy.ndimage.affine_transform(order=1, mode="mirror")``; OpenCV quantises the
  sampling positions to 1/32 pixel, scipy does not (differences of ~1/255);
* ``frost``: photographs are decoded with Pillow instead of OpenCV; ``cv2.resize(fx=0.2)``
  (bilinear) samples exactly the source pixels ``5i+2``, which is done by indexing;
* ``spatter`` (liquid variant, severities 1-3 only): OpenCV's Canny, 5x5 chamfer distance
  transform, histogram equalisation and box/2-D filters are re-implemented in numpy/scipy
  (OpenCV 4 arithmetic).  The mud variant (severities 4-5) needs no OpenCV operation.

Checked against the original functions (OpenCV 4, scikit-image, ImageMagick 6.9 through
Wand; frost with synthetic photographs) fed the same random draws, on 40 images x 5
severities: identical output for every corruption, except ``elastic_transform`` (<= 1/255
on ~5 % of images, the 1/32-pixel quantisation above) and one ``spatter`` image at
severity 3 (<= 1/255).  Other ImageMagick versions may blur snow slightly differently.
"""

from __future__ import annotations

import functools
import io
import os
from typing import Sequence

import numpy as np
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from scipy import ndimage

__all__ = [
    "CORRUPTIONS",
    "SEVERITY_PARAMS",
    "FROST_FILES",
    "MissingDependencyError",
    "check_dependencies",
    "corrupt",
    "corrupt_batch",
]

#: Corruption ``j`` is aligned with CIFAR-10 class ``j`` (LfF ``cifar10_type0``).
CORRUPTIONS = ("snow", "frost", "fog", "brightness", "contrast", "spatter",
               "elastic_transform", "jpeg_compression", "pixelate", "saturate")

_S = 32  # IMSIZE of make_cifar_c.py
#: Parameters of make_cifar_c.py for severities 1..5 (index ``severity - 1``).
SEVERITY_PARAMS = {
    # (loc, scale, zoom, threshold, blur radius, blur sigma, grey-blend)
    "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
    # (image weight, frost weight)
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    # (fog strength, plasma wibble decay)
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    # added to V in HSV
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    # factor on the deviation from the per-channel mean
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    # (loc, scale, sigma, threshold, intensity / mud sigma, 0=liquid 1=mud)
    "spatter": [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1)],
    # (displacement amplitude, displacement smoothing sigma, affine jitter), in pixels
    "elastic_transform": [(_S * 0, _S * 0, _S * 0.08), (_S * 0.05, _S * 0.2, _S * 0.07),
                          (_S * 0.08, _S * 0.06, _S * 0.06), (_S * 0.1, _S * 0.04, _S * 0.05),
                          (_S * 0.1, _S * 0.03, _S * 0.03)],
    # JPEG quality
    "jpeg_compression": [80, 65, 58, 50, 40],
    # downscale factor before BOX upscaling back to 32
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    # (factor, offset) on S in HSV
    "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
}

#: The frost photographs make_cifar_c.py can draw (``np.random.randint(5)``).
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
_FROST_URL = "https://github.com/hendrycks/robustness/tree/master/ImageNet-C/create_c"


class MissingDependencyError(ImportError):
    """An optional dependency of a requested corruption is missing."""


# ----------------------------------------------------------------------------- checks
def _resolve_name(name) -> str:
    if isinstance(name, (int, np.integer)):
        if not 0 <= name < len(CORRUPTIONS):
            raise ValueError(f"corruption index {name} not in 0..{len(CORRUPTIONS) - 1}")
        return CORRUPTIONS[int(name)]
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {CORRUPTIONS}")
    return name


def _wand_image():
    """Return ``wand.image.Image`` or raise :class:`MissingDependencyError`."""
    try:
        from wand.image import Image as WandImage
    except (ImportError, OSError) as exc:  # Wand missing, or libMagickWand missing
        raise MissingDependencyError(
            "corruption 'snow' needs ImageMagick's motion blur through Wand: "
            "`pip install Wand` and the system ImageMagick library "
            "(Debian/Ubuntu: `apt-get install libmagickwand-dev`; macOS: `brew install "
            f"imagemagick`). Import failed with: {exc}") from exc
    return WandImage


def _frost_dir(frost_dir: str | None) -> str:
    """Return the frost directory or raise :class:`MissingDependencyError`."""
    frost_dir = frost_dir or os.environ.get("LRBOOK_FROST_DIR")
    hint = (f"corruption 'frost' needs Hendrycks' frost photographs {', '.join(FROST_FILES)} "
            f"(from {_FROST_URL}) in a directory passed as frost_dir= or set in the "
            "environment variable LRBOOK_FROST_DIR")
    if not frost_dir:
        raise MissingDependencyError(hint + "; neither is set.")
    missing = [f for f in FROST_FILES if not os.path.isfile(os.path.join(frost_dir, f))]
    if missing:
        raise MissingDependencyError(f"{hint}; missing in {frost_dir!r}: {', '.join(missing)}.")
    return frost_dir


def check_dependencies(names, frost_dir: str | None = None) -> None:
    """Raise :class:`MissingDependencyError` if a corruption in ``names`` cannot run.

    ``names`` holds corruption names or indices into :data:`CORRUPTIONS`.
    """
    wanted = {_resolve_name(n) for n in names}
    if "snow" in wanted:
        _wand_image()
    if "frost" in wanted:
        _frost_dir(frost_dir)


# ---------------------------------------------------------------------------- helpers
def _gray(x: np.ndarray) -> np.ndarray:
    """OpenCV's RGB2GRAY weights."""
    return x @ np.array([0.299, 0.587, 0.114], dtype=x.dtype)


def _clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    """Zoom into the centre of an HxWxC array, keeping its size (make_cifar_c.py)."""
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = ndimage.zoom(img[top:top + ch, top:top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top:trim_top + h, trim_top:trim_top + h]


def _plasma_fractal(rng: np.random.Generator, mapsize: int = 32,
                    wibbledecay: float = 3) -> np.ndarray:
    """Diamond-square height map in [0, 1] (make_cifar_c.py, after FLHerne/mapgen)."""
    assert mapsize & (mapsize - 1) == 0
    a = np.empty((mapsize, mapsize), dtype=np.float64)
    a[0, 0] = 0
    step, wibble = mapsize, 100.0

    def wibbled_mean(arr):
        return arr / 4 + wibble * rng.uniform(-wibble, wibble, arr.shape)

    while step >= 2:
        half = step // 2
        # squares: centre of each square = mean of its corners + noise
        corners = a[0:mapsize:step, 0:mapsize:step]
        acc = corners + np.roll(corners, -1, axis=0)
        acc += np.roll(acc, -1, axis=1)
        a[half:mapsize:step, half:mapsize:step] = wibbled_mean(acc)
        # diamonds
        dr = a[half:mapsize:step, half:mapsize:step]
        ul = a[0:mapsize:step, 0:mapsize:step]
        a[0:mapsize:step, half:mapsize:step] = wibbled_mean(
            dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1))
        a[half:mapsize:step, 0:mapsize:step] = wibbled_mean(
            dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0))
        step //= 2
        wibble /= wibbledecay
    a -= a.min()
    return a / a.max()


def _canny(img: np.ndarray, low: float = 50, high: float = 150) -> np.ndarray:
    """``cv2.Canny(img, low, high)`` (3x3 Sobel, L1 magnitude) on a 2-D uint8 array."""
    f = img.astype(np.int64)
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    dx = ndimage.correlate(f, kx, mode="nearest")
    dy = ndimage.correlate(f, kx.T, mode="nearest")
    mag = np.abs(dx) + np.abs(dy)
    p = np.pad(mag, 1)  # OpenCV compares border pixels with zero magnitude
    n = lambda r, c: p[1 + r:p.shape[0] - 1 + r, 1 + c:p.shape[1] - 1 + c]  # noqa: E731
    ax, ay = np.abs(dx), np.abs(dy) << 15
    tg22 = ax * 13573  # round(tan(22.5 deg) * 2**15), OpenCV's fixed point
    horiz, vert = ay < tg22, ay > tg22 + (ax << 16)
    same_sign = (dx ^ dy) >= 0
    diag = np.where(same_sign, (mag > n(-1, -1)) & (mag > n(1, 1)),
                    (mag > n(-1, 1)) & (mag > n(1, -1)))
    nms = np.where(horiz, (mag > n(0, -1)) & (mag >= n(0, 1)),
                   np.where(vert, (mag > n(-1, 0)) & (mag >= n(1, 0)), diag))
    cand = nms & (mag > low)
    labels, _ = ndimage.label(cand, structure=np.ones((3, 3)))  # hysteresis, 8-connected
    keep = np.unique(labels[cand & (mag > high)])
    return np.where(np.isin(labels, keep[keep > 0]), 255, 0).astype(np.uint8)


def _distance_5x5(nonzero: np.ndarray) -> np.ndarray:
    """``cv2.distanceTransform(src, cv2.DIST_L2, 5)`` (OpenCV 4): two-pass 5x5 chamfer
    distance to the nearest zero pixel, weights (1, 1.4, 2.1969), float32 sums."""
    hv, dg, lg = np.float32(1), np.float32(1.4), np.float32(2.1969)
    h, w = nonzero.shape
    t = np.full((h + 4, w + 4), np.float32(1e30), dtype=np.float32)  # 2-pixel border at "infinity"
    fwd = [(-2, -1, lg), (-2, 1, lg), (-1, -2, lg), (-1, -1, dg), (-1, 0, hv), (-1, 1, dg),
           (-1, 2, lg), (0, -1, hv)]
    for i in range(2, h + 2):
        for j in range(2, w + 2):
            if nonzero[i - 2, j - 2]:
                t[i, j] = min(t[i + di, j + dj] + d for di, dj, d in fwd)
            else:
                t[i, j] = 0
    for i in range(h + 1, 1, -1):
        for j in range(w + 1, 1, -1):
            if t[i, j] > hv:
                t[i, j] = min(t[i, j], min(t[i - di, j - dj] + d for di, dj, d in fwd))
    return t[2:-2, 2:-2]


def _equalize_hist(img: np.ndarray) -> np.ndarray:
    """``cv2.equalizeHist`` on a uint8 array."""
    hist = np.bincount(img.ravel(), minlength=256)
    first = int(np.flatnonzero(hist)[0])
    if hist[first] == img.size:
        return np.full_like(img, first)
    scale = 255.0 / (img.size - hist[first])
    cdf = np.cumsum(hist) - hist[first]
    lut = np.clip(np.rint(cdf * scale), 0, 255).astype(np.uint8)
    lut[:first + 1] = 0
    return lut[img]


def _box3(x: np.ndarray) -> np.ndarray:
    """``cv2.blur(x, (3, 3))`` (BORDER_REFLECT_101): exact sum times 1/9, as float32."""
    s = ndimage.correlate(x.astype(np.float64), np.ones((3, 3)), mode="mirror")
    return (s * (1.0 / 9)).astype(np.float32)


# ------------------------------------------------------------------------ corruptions
# Each takes float/uint8 HxWx3 RGB in [0, 255] and returns an array in [0, 255].
def _snow(x, c, rng, **_):
    WandImage = _wand_image()
    x = np.asarray(x, dtype=np.float32) / 255.0
    layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = _clipped_zoom(layer[..., None], c[2])
    layer[layer < c[3]] = 0
    buf = io.BytesIO()
    Image.fromarray((np.clip(layer.squeeze(), 0, 1) * 255).astype(np.uint8)).save(buf, "PNG")
    with WandImage(blob=buf.getvalue()) as im:  # MagickMotionBlurImage, as MotionImage did
        im.motion_blur(radius=c[4], sigma=c[5], angle=rng.uniform(-135, -45))
        blob = im.make_blob("png")
    out = Image.open(io.BytesIO(blob))
    if out.mode.startswith("I;16"):
        layer = np.asarray(out, dtype=np.float64) / 65535.0
    else:
        layer = np.asarray(out.convert("L"), dtype=np.float64) / 255.0
    layer = layer[..., None]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, _gray(x)[..., None] * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


@functools.lru_cache(maxsize=None)
def _frost_photo(path: str) -> np.ndarray:
    """RGB photograph downscaled like ``cv2.resize(fx=0.2, fy=0.2)``: pixels ``5i+2``."""
    a = np.asarray(Image.open(path).convert("RGB"))
    rows = np.minimum(5 * np.arange(int(np.rint(a.shape[0] * 0.2))) + 2, a.shape[0] - 1)
    cols = np.minimum(5 * np.arange(int(np.rint(a.shape[1] * 0.2))) + 2, a.shape[1] - 1)
    return a[rows][:, cols]


def _frost(x, c, rng, frost_dir=None, **_):
    d = _frost_dir(frost_dir)
    frost = _frost_photo(os.path.abspath(os.path.join(d, FROST_FILES[rng.integers(5)])))
    r0 = rng.integers(0, frost.shape[0] - 32)
    c0 = rng.integers(0, frost.shape[1] - 32)
    frost = frost[r0:r0 + 32, c0:c0 + 32]
    return np.clip(c[0] * np.asarray(x, dtype=np.float64) + c[1] * frost, 0, 255)


def _fog(x, c, rng, **_):
    x = np.asarray(x, dtype=np.float64) / 255.0
    max_val = x.max()
    x = x + c[0] * _plasma_fractal(rng, wibbledecay=c[1])[:32, :32][..., None]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def _brightness(x, c, rng, **_):
    hsv = rgb_to_hsv(np.asarray(x, dtype=np.float64) / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


def _contrast(x, c, rng, **_):
    x = np.asarray(x, dtype=np.float64) / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _spatter(x, c, rng, **_):
    x = np.asarray(x, dtype=np.float32) / 255.0
    liquid = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    liquid = ndimage.gaussian_filter(liquid, sigma=c[2], mode="nearest")
    liquid[liquid < c[3]] = 0
    if c[5] == 0:  # liquid: pale turquoise splashes
        liquid = (liquid * 255).astype(np.uint8)
        edges = _canny(liquid, 50, 150)
        dist = np.minimum(_distance_5x5(edges == 0), 20)
        dist = _equalize_hist(_box3(dist).astype(np.uint8))
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = ndimage.correlate(dist.astype(np.int64), ker, mode="mirror")
        dist = np.clip(np.rint(dist), 0, 255)
        dist = np.clip(np.rint(_box3(dist)), 0, 255).astype(np.float32)
        m = liquid * dist
        m = m / m.max() if m.max() > 0 else m
        color = np.array([175, 238, 238], dtype=np.float32) / 255.0
        return np.clip(x + (m * c[4])[..., None] * color, 0, 1) * 255
    # mud: brown blotches replace the image
    m = ndimage.gaussian_filter((liquid > c[3]).astype(np.float32), sigma=c[4], mode="nearest")
    m[m < 0.8] = 0
    color = np.array([63, 42, 20], dtype=np.float32) / 255.0
    m = m[..., None]
    return np.clip(x * (1 - m) + color * m, 0, 1) * 255


def _elastic_transform(x, c, rng, **_):
    image = np.asarray(x, dtype=np.float32) / 255.0
    h, w, ch = image.shape
    # random affine: cv2.getAffineTransform(pts1, pts2) + cv2.warpAffine(BORDER_REFLECT_101)
    center, size = np.float32([h, w]) // 2, min(h, w) // 3
    pts1 = np.float32([center + size, [center[0] + size, center[1] - size], center - size])
    pts2 = pts1 + rng.uniform(-c[2], c[2], size=pts1.shape).astype(np.float32)
    fwd = np.eye(3)
    fwd[:2] = np.linalg.solve(np.c_[pts1, np.ones(3)], pts2).T  # (x, y) -> (x', y')
    inv = np.linalg.inv(fwd)  # warpAffine samples src at inv @ (x, y, 1)
    mat = np.array([[inv[1, 1], inv[1, 0]], [inv[0, 1], inv[0, 0]]])  # (row, col) order
    off = np.array([inv[1, 2], inv[0, 2]])
    image = np.stack([ndimage.affine_transform(image[..., k], mat, off, order=1, mode="mirror")
                      for k in range(ch)], axis=-1)
    # smooth random displacement field
    dx, dy = (
        (ndimage.gaussian_filter(rng.uniform(-1, 1, size=(h, w)), c[1], mode="reflect", truncate=3)
         * c[0]).astype(np.float32)[..., None]
        for _ in range(2))
    yy, xx, zz = np.meshgrid(np.arange(h), np.arange(w), np.arange(ch), indexing="ij")
    out = ndimage.map_coordinates(image, [yy + dy, xx + dx, zz], order=1, mode="reflect")
    return np.clip(out, 0, 1) * 255


def _jpeg_compression(x, c, rng, **_):
    buf = io.BytesIO()
    Image.fromarray(np.asarray(x, dtype=np.uint8)).save(buf, "JPEG", quality=c)
    return np.asarray(Image.open(buf).convert("RGB"))


def _pixelate(x, c, rng, **_):
    im = Image.fromarray(np.asarray(x, dtype=np.uint8))
    small = im.resize((int(32 * c), int(32 * c)), Image.BOX)
    return np.asarray(small.resize((32, 32), Image.BOX))


def _saturate(x, c, rng, **_):
    hsv = rgb_to_hsv(np.asarray(x, dtype=np.float64) / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


_FUNCS = {"snow": _snow, "frost": _frost, "fog": _fog, "brightness": _brightness,
          "contrast": _contrast, "spatter": _spatter, "elastic_transform": _elastic_transform,
          "jpeg_compression": _jpeg_compression, "pixelate": _pixelate, "saturate": _saturate}


# ------------------------------------------------------------------------------- API
def corrupt(image: np.ndarray, name: str | int, severity: int = 5,
            rng: np.random.Generator | int | None = None, *,
            frost_dir: str | None = None) -> np.ndarray:
    """Apply corruption ``name`` (or its index) at ``severity`` to one 32x32x3 uint8 image.

    All randomness is drawn from ``rng`` (a Generator or a seed; ``None`` means fresh
    entropy).  Returns uint8 of the same shape, truncated like LfF's ``astype(np.uint8)``.
    """
    name = _resolve_name(name)
    image = np.asarray(image)
    if image.shape != (32, 32, 3) or image.dtype != np.uint8:
        raise ValueError(f"expected a 32x32x3 uint8 image, got {image.shape} {image.dtype}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be in 1..5, got {severity}")
    check_dependencies([name], frost_dir)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out = _FUNCS[name](image, SEVERITY_PARAMS[name][severity - 1], rng, frost_dir=frost_dir)
    return np.clip(np.asarray(out, dtype=np.float64), 0, 255).astype(np.uint8)


def corrupt_batch(images: np.ndarray, names: Sequence[str | int], seed: int,
                  frost_dir: str | None = None, progress: bool = False,
                  severity: int = 5) -> np.ndarray:
    """Corrupt ``images[i]`` (N x 32 x 32 x 3 uint8) with ``names[i]``, deterministically.

    Image ``i`` uses ``default_rng(SeedSequence(seed, spawn_key=(i,)))`` (the ``i``-th
    child of ``SeedSequence(seed).spawn``), so its result depends only on ``seed``, ``i``,
    the image and its corruption.  Missing optional dependencies raise
    :class:`MissingDependencyError` before any image is processed.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8:
        raise ValueError(
            f"expected N x 32 x 32 x 3 uint8 images, got {images.shape} {images.dtype}")
    names = [_resolve_name(n) for n in names]
    if len(names) != len(images):
        raise ValueError(f"{len(names)} corruption names for {len(images)} images")
    check_dependencies(set(names), frost_dir)
    out = np.empty_like(images)
    it = range(len(images))
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="corrupting", unit="img")
    for i in it:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        out[i] = corrupt(images[i], names[i], severity, rng, frost_dir=frost_dir)
    return out
