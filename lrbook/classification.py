"""Analysis for page 05, standard classification (paper Sec. 5, Fig. 8, 10, 11, 35, 36) and the patch
experiment beyond it (after Li et al. 2019): which test images to show, when the patch is learned, and
whether each effect goes the way the paper claims."""
from __future__ import annotations

import numpy as np

from .selection import scored_runs
from .stats import bootstrap_spearman, spearman
from .vocabulary import METRIC_LABELS

# The direction the paper claims for each variable as LR grows (Sec. 5: accuracy, compressibility,
# CSI and class separation rise; Fig. 10: attribution entropy and the background share fall). For
# the patch experiment the same claim means less reliance on the patch: BA - BC accuracy on the
# shuffled-patch test set, the attribution share inside the patch and the units' selectivity for the
# patch's class (BSI) fall.
CLAIMED_DIRECTION = {"test_acc": +1, "prunability": +1, "act_compressibility": +1, "csi": +1,
                     "class_separation": +1, "attr_entropy": -1, "attr_background": -1,
                     "test_ba_minus_bc": -1, "attr_patch": -1, "bsi": -1}
MARKS = {"yes": "✓", "no": "✗", "unclear": "?"}


def contrast_samples(correct_high: np.ndarray, correct_low: np.ndarray, k: int) -> np.ndarray:
    """Supplement E ("Creation of attribution maps for CIFAR datasets"): the test images most likely to
    be predicted correctly by the high-LR models compared with the low-LR ones. `correct_*`: bool
    (runs, images). The paper keeps the images correct for [a share lost in our copy of the text] of
    the high-LR and [lost] of the low-LR runs; we rank by the difference of the two shares, then by
    the high-LR share, then by index, and return the first `k` indices."""
    high, low = np.asarray(correct_high, float).mean(0), np.asarray(correct_low, float).mean(0)
    order = np.lexsort((np.arange(len(high)), -high, -(high - low)))
    return order[:k]


def patch_gap_curve(trace: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and BA - BC test accuracy at each attribution probe of one run (`attribution_trace`):
    how much the model reads the patch over training."""
    points = [p for p in trace if p.get("test_ba_acc") is not None and p.get("test_bc_acc") is not None]
    return (np.array([p["epoch"] for p in points], float),
            np.array([p["test_ba_acc"] - p["test_bc_acc"] for p in points], float))


def learned_epoch(epochs: np.ndarray, gap: np.ndarray, share: float = 0.5) -> float:
    """When the patch is learned: the first probe epoch from which the BA - BC gap stays at or above
    `share` of its final value for the rest of training (a gap of a few points at initialisation is
    noise of the small BA group, so a first crossing alone would mislead). NaN when the final gap
    is not above 0."""
    if len(gap) == 0 or not gap[-1] > 0:
        return float("nan")
    below = np.nonzero(gap < share * gap[-1])[0]
    return float(epochs[below[-1] + 1] if len(below) else epochs[0])


def trend_scores(runs, cells, metrics) -> "pd.DataFrame":
    """One row per cell (its scored runs at the scale they were selected at): per metric the Spearman
    correlation with LR, marked ✓ when its 95% seed-bootstrap interval lies on the side the paper
    claims (`CLAIMED_DIRECTION`), ✗ on the other side, ? when it includes 0 or when there is no
    interval (one seed per LR)."""
    import pandas as pd

    from .vocabulary import cell_title

    rows = []
    for d, m in cells:
        sub = scored_runs(runs[(runs.dataset == d) & (runs.model == m)])
        if sub.empty:
            continue
        row = {"cell": cell_title(d, m), "scale": sub.scale.iloc[0], "runs used": len(sub), "LRs": sub.lr.nunique()}
        for metric in metrics:
            if metric not in sub or sub[metric].isna().all() or sub.lr.nunique() < 2:
                continue
            sign, rho = CLAIMED_DIRECTION[metric], spearman(sub.lr, sub[metric])
            label = f"{METRIC_LABELS[metric]} ({'↑' if sign > 0 else '↓'})"
            lo, hi = bootstrap_spearman(sub, metric)
            if not np.isfinite(lo):
                rho_text = f"{rho:+.2f}" if np.isfinite(rho) else "—"
                row[label] = f"{MARKS['unclear']} {rho_text} (no interval: one seed per LR)"
                continue
            verdict = "yes" if sign * lo > 0 and sign * hi > 0 else "no" if sign * lo < 0 and sign * hi < 0 else "unclear"
            row[label] = f"{MARKS[verdict]} {rho:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Frequency bands (beyond the paper, after Sadrtdinov et al. 2024's frequency-band feature
# importance): accuracy on test images that keep a single band of 2-D spatial frequencies.

FREQUENCY_BANDS = 8


def band_mask(height: int, width: int, band: int, n_bands: int = FREQUENCY_BANDS):
    """Boolean (height, width) mask over `torch.fft.fft2`'s frequencies: those whose radius
    sqrt(fy² + fx²), in cycles per pixel and divided by its largest value sqrt(0.5² + 0.5²), lies in
    [band / n_bands, (band + 1) / n_bands); the last band also holds radius 1. Band 0 holds the
    constant term. The bands partition the spectrum, so the band-limited images sum to the image."""
    import torch

    if not 0 <= band < n_bands:
        raise ValueError(f"band must be in 0..{n_bands - 1}, got {band}")
    fy, fx = torch.fft.fftfreq(height), torch.fft.fftfreq(width)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / (0.5 ** 2 + 0.5 ** 2) ** 0.5
    scaled = (radius * n_bands).floor().clamp(max=n_bands - 1)
    return scaled == band


def keep_band(x, band: int, n_bands: int = FREQUENCY_BANDS):
    """`x` (..., H, W) with every spatial frequency outside `band` removed (real part of the inverse
    FFT of the masked spectrum)."""
    import torch

    mask = band_mask(x.shape[-2], x.shape[-1], band, n_bands).to(x.device)
    return torch.fft.ifft2(torch.fft.fft2(x) * mask).real.to(x.dtype)


def band_accuracies(model, x, y, n_bands: int = FREQUENCY_BANDS) -> list[float]:
    """Accuracy of `model` on `x` reduced to each single frequency band (`keep_band`), low to high."""
    from .metrics import predict

    return [(predict(model, keep_band(x, b, n_bands)) == y).float().mean().item() for b in range(n_bands)]
