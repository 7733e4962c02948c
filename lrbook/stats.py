"""Correlations used to score the LR trends (Spearman with a seed bootstrap) and Fig. 12 (Pearson)."""
from __future__ import annotations

import numpy as np


def _rank_corr(x_ranks: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of fixed x ranks with the average ranks of each row of y."""
    from scipy.stats import rankdata

    ry = rankdata(y, axis=-1)
    xc = x_ranks - x_ranks.mean()
    yc = ry - ry.mean(axis=-1, keepdims=True)
    denom = np.sqrt((xc ** 2).sum() * (yc ** 2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (yc * xc).sum(axis=-1) / denom, np.nan)


def spearman(x, y) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with < 3 points or a constant side."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(_rank_corr(rankdata(x), y))


def pearson(x, y) -> float:
    """Pearson correlation over finite pairs; NaN with < 3 points or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def bootstrap_spearman(df, metric: str, n_boot: int = 1000, seed: int = 0, by: str = "lr") -> tuple[float, float]:
    """95% interval of Spearman(`by`, metric), resampling seeds within each value of `by` (the LR,
    or an intervention's hyperparameter). NaN when no value has two seeds: resampling one seed per
    value gives back the same runs, a point rather than an interval."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    ok = df[np.isfinite(df[metric].to_numpy(float))]
    groups = [g[metric].to_numpy(float) for _, g in ok.groupby(by)]
    if len(groups) < 2 or sum(len(g) for g in groups) < 3 or all(len(g) < 2 for g in groups):
        return float("nan"), float("nan")
    x = np.concatenate([[v] * len(g) for v, g in zip(sorted(ok[by].unique()), groups)])
    y = np.concatenate([g[rng.integers(0, len(g), size=(n_boot, len(g)))] for g in groups], axis=1)
    stats = _rank_corr(rankdata(x), y)
    stats = stats[np.isfinite(stats)]
    if len(stats) == 0:
        return float("nan"), float("nan")
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))
