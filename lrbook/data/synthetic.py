"""The synthetic datasets of paper Sec. 4.1 (REPRODUCTION_SPEC 2.1, 2.2): parity and moon-star,
generated procedurally."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..config import ConfigError
from .base import SpuriousDataset, bias_labels, unbiased_labels

# Parity (Qiu, Kuang, Goel 2024): x = [core block, spurious block] in {-1, +1}^(2 * bits).


def parity_label(bits: np.ndarray) -> np.ndarray:
    """Class 1 when the block holds an odd number of -1 entries (product -1), else 0."""
    return (np.prod(bits, axis=-1) < 0).astype(np.int64)


def _parity_block_with_label(labels: np.ndarray, bits: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform blocks in {-1,1}^bits whose first k bits have the requested parity label: draw
    uniformly, then flip one random bit among the first k where the parity is wrong."""
    x = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(len(labels), bits))
    wrong = parity_label(x[:, :k]) != labels
    flip = rng.integers(0, k, size=len(labels))
    rows = np.nonzero(wrong)[0]
    x[rows, flip[rows]] *= -1
    return x


def make_parity(n_train=10000, n_test=10000, bits_per_block=10, core_bits=4, spurious_bits=2,
                bc_ratio=0.05, seed=0, **_) -> SpuriousDataset:
    """Parity task (paper Sec. 4.1, Fig. 3): y = parity of the first `core_bits` core bits,
    b = parity of the first `spurious_bits` spurious bits, the other bits are noise."""
    if not (0 < spurious_bits < core_bits <= bits_per_block):
        raise ConfigError("parity needs 0 < spurious_bits < core_bits <= bits_per_block")
    rng = np.random.default_rng(seed)

    def split(n, biased):
        core = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, bits_per_block))
        y = parity_label(core[:, :core_bits])
        b = bias_labels(y, 2, bc_ratio, rng) if biased else unbiased_labels(n, 2, rng)
        spur = _parity_block_with_label(b, bits_per_block, spurious_bits, rng)
        return torch.from_numpy(np.concatenate([core, spur], 1)), torch.from_numpy(y), torch.from_numpy(b)

    xtr, ytr, btr = split(n_train, True)
    xte, yte, bte = split(n_test, False)
    masks = parity_regions(bits_per_block, core_bits, spurious_bits)
    return SpuriousDataset("parity", xtr, ytr, btr, xte, yte, bte, num_classes=2,
                           params=dict(n_train=n_train, n_test=n_test, bits_per_block=bits_per_block,
                                       core_bits=core_bits, spurious_bits=spurious_bits, bc_ratio=bc_ratio),
                           region_fn=lambda x: {k: v.to(x.device) for k, v in masks.items()})


def parity_regions(bits_per_block: int, core_bits: int, spurious_bits: int) -> dict[str, torch.Tensor]:
    """The three bit blocks of Fig. 3's attribution panels: core, spurious, noise."""
    core = torch.zeros(2 * bits_per_block, dtype=torch.bool)
    core[:core_bits] = True
    spur = torch.zeros_like(core)
    spur[bits_per_block:bits_per_block + spurious_bits] = True
    return {"core": core, "spurious": spur, "noise": ~(core | spur)}


# --------------------------------------------------------------------------------------------
# Moon-star (Geirhos et al. 2020): binary images of a crescent moon (class 0) or a star (class 1);
# the shortcut is the quadrant. Training: moons top-left/bottom-right, stars top-right/bottom-left.

# Quadrants: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right. Class c "owns" these:
QUADRANTS_OF_CLASS = {0: (0, 3), 1: (1, 2)}


def _moon(yy, xx, cy, cx, radius, angle):
    """Crescent: disk minus a disk shifted by 0.55 radius along `angle`."""
    inner_y = cy + 0.55 * radius * np.sin(angle)
    inner_x = cx + 0.55 * radius * np.cos(angle)
    outer = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    inner = (yy - inner_y) ** 2 + (xx - inner_x) ** 2 <= (0.85 * radius) ** 2
    return outer & ~inner


def _star(yy, xx, cy, cx, radius, angle, points=5, inner_ratio=0.45):
    """Five-pointed star with straight edges, via the polar equation of each edge."""
    alpha = math.pi / points
    rho = np.hypot(yy - cy, xx - cx)
    phi = np.mod(np.arctan2(yy - cy, xx - cx) - angle, 2 * alpha)
    phi = np.where(phi > alpha, 2 * alpha - phi, phi)
    r_in = inner_ratio * radius
    boundary = radius * r_in * math.sin(alpha) / (radius * np.sin(phi) - r_in * np.sin(phi - alpha))
    return rho <= boundary


def render_shape(shape: int, quadrant: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One binary image (size x size) with a moon (0) or star (1) placed in `quadrant`."""
    half = size / 2
    radius = rng.uniform(0.25, 0.4) * half
    margin = min(radius + 1, half / 2)
    cy = rng.uniform(margin, half - margin) + (half if quadrant in (2, 3) else 0)
    cx = rng.uniform(margin, half - margin) + (half if quadrant in (1, 3) else 0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    angle = rng.uniform(0, 2 * math.pi)
    mask = _moon(yy, xx, cy, cx, radius, angle) if shape == 0 else _star(yy, xx, cy, cx, radius, angle)
    return mask.astype(np.float32)


def quadrant_class(quadrant: np.ndarray) -> np.ndarray:
    """The class whose training images sit in this quadrant (the spurious label)."""
    return np.isin(quadrant, QUADRANTS_OF_CLASS[1]).astype(np.int64)


def make_moon_star(n_train=4000, n_test=4000, image_size=64, bc_ratio=0.05, seed=0, **_) -> SpuriousDataset:
    """Moon-star shortcut task (Fig. 15). BC samples sit in the other class's quadrants; the test
    set places every shape in a uniformly random quadrant."""
    rng = np.random.default_rng(seed)

    def split(n, biased):
        y = np.arange(n) % 2
        rng.shuffle(y)
        b = bias_labels(y, 2, bc_ratio, rng) if biased else unbiased_labels(n, 2, rng)
        pick = rng.integers(0, 2, size=n)
        quadrant = np.where(b == 0, np.array(QUADRANTS_OF_CLASS[0])[pick], np.array(QUADRANTS_OF_CLASS[1])[pick])
        x = np.stack([render_shape(int(s), int(q), image_size, rng) for s, q in zip(y, quadrant)])
        return torch.from_numpy(x[:, None]), torch.from_numpy(y.astype(np.int64)), torch.from_numpy(b)

    xtr, ytr, btr = split(n_train, True)
    xte, yte, bte = split(n_test, False)
    return SpuriousDataset("moon_star", xtr, ytr, btr, xte, yte, bte, num_classes=2,
                           params=dict(n_train=n_train, n_test=n_test, image_size=image_size, bc_ratio=bc_ratio))
    # No attribution regions: shape (core) and position (spurious) live in the same pixels, and with
    # IG's zero baseline all attribution falls on the object. Training probes record BA/BC accuracy.
