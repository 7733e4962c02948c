"""Correlations used to score the LR trends (Spearman with a seed bootstrap) and Fig. 12 (Pearson)."""
from __future__ import annotations

import numpy as np


def _rank_corr(x_ranks: np.ndarray, y_ranks: np.ndarray) -> np.ndarray:
    """Pearson correlation of fixed x ranks with each row of y ranks."""
    xc = x_ranks - x_ranks.mean()
    yc = y_ranks - y_ranks.mean(axis=-1, keepdims=True)
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
    return float(_rank_corr(rankdata(x), rankdata(y)))


def _resample_ranks(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Average ranks of each resample `values[idx[b]]`, in which the copies of one run tie only if
    the run ties with another run. A resampled run stands for a new seed: giving its copies one
    average rank, as plain ranking does, shrinks the spread of the ranks and pulls a Spearman with
    tied LRs towards +-1 even when no resample changes the order of the runs."""
    from scipy.stats import rankdata

    dense = rankdata(values, method="dense").astype(np.int64)
    alone = np.bincount(dense)[dense] == 1
    order = np.argsort(idx, axis=-1, kind="stable")
    ranked = np.take_along_axis(idx, order, axis=-1)
    pos = np.broadcast_to(np.arange(idx.shape[-1]), idx.shape)
    block_start = np.maximum.accumulate(np.where(np.diff(ranked, axis=-1, prepend=-1) != 0, pos, 0), axis=-1)
    copy = np.empty_like(idx)
    np.put_along_axis(copy, order, pos - block_start, axis=-1)
    key = dense[idx] * (idx.shape[-1] + 1) + np.where(alone[idx], copy, 0)
    return rankdata(key, axis=-1)


def pearson(x, y) -> float:
    """Pearson correlation over finite pairs; NaN with < 3 points or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def bootstrap_spearman(df, metric: str, n_boot: int = 1000, seed: int = 0, by: str = "lr") -> tuple[float, float]:
    """95% percentile interval of Spearman(`by`, metric), resampling seeds within each value of `by`
    (the LR, or an intervention's hyperparameter), copies of a run ranked as new seeds
    (`_resample_ranks`). NaN when no value has two seeds: resampling one seed per value gives back
    the same runs, a point rather than an interval."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    ok = df[np.isfinite(df[metric].to_numpy(float))].sort_values(by, kind="stable")
    sizes = ok.groupby(by, sort=True).size().to_numpy()
    if len(sizes) < 2 or sizes.sum() < 3 or all(sizes < 2):
        return float("nan"), float("nan")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    idx = np.concatenate([start + rng.integers(0, n, size=(n_boot, n)) for start, n in zip(starts, sizes)], axis=1)
    stats = _rank_corr(rankdata(ok[by].to_numpy(float)), _resample_ranks(ok[metric].to_numpy(float), idx))
    stats = stats[np.isfinite(stats)]
    if len(stats) == 0:
        return float("nan"), float("nan")
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))
