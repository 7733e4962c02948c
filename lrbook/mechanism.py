"""Analysis of stored runs for the mechanism of large LRs (paper Sec. 6, supplement D.2 and
"Mechanism of LR's Effects"); the propositions themselves are in `lrbook.theory`.

* `max_bc_ratio_table` (Fig. 12): correlation of the maximum BC loss ratio met in training with
  unbiased test accuracy, per cell;
* `ba_bc_loss_ratio`, `ba_bc_ratio_by_lr`, `ba_bc_verdict`: the supplement's BA/BC average-loss ratio
  at low vs high LR (it reports ratios closer to 1 at low LR on Colored MNIST and Double MNIST);
* `epoch_steps`, `curve`: the per-epoch curves of Fig. 13 against the training step;
* `neuron_persistence` (Fig. 18, top) and `unit_trace_events`, `reset_summary`, `reset_units`
  (Fig. 18, bottom).
"""
from __future__ import annotations

import math

import numpy as np

from .prose import ba_bc_sentence
from .selection import select_runs
from .stats import pearson, spearman
from .vocabulary import BA_BC_DATASETS

# ----------------------------------------------------------------------------------------------
# Fig. 12: maximum BC loss ratio vs unbiased test accuracy
# ----------------------------------------------------------------------------------------------


def max_bc_ratio_table(df):
    """Per (dataset, model, scale) cell: Pearson and Spearman correlation, over runs, of
    `max_bc_loss_ratio` (the largest per-minibatch BC loss / total loss met in training; Sec. 6) with
    `test_acc` (unbiased test accuracy). Only `selection.scored_runs` count, and only runs with both
    values.
    The paper (Fig. 12, ResNet18) reports a very strong positive correlation."""
    import pandas as pd

    cols = ["dataset", "model", "scale", "runs", "LRs", "seeds", "pearson", "spearman"]
    if df is None or len(df) == 0 or "max_bc_loss_ratio" not in df or "test_acc" not in df:
        return pd.DataFrame(columns=cols)
    ok = select_runs(df, scale="all", scored=True)
    ok = ok[np.isfinite(ok.max_bc_loss_ratio.astype(float)) & np.isfinite(ok.test_acc.astype(float))]
    rows = []
    for (d, m, sc), g in ok.groupby(["dataset", "model", "scale"], sort=True):
        rows.append({"dataset": d, "model": m, "scale": sc, "runs": len(g), "LRs": g.lr.nunique(),
                     "seeds": g.seed.nunique(), "pearson": pearson(g.max_bc_loss_ratio, g.test_acc),
                     "spearman": spearman(g.max_bc_loss_ratio, g.test_acc)})
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------------------------------------
# Supplement "Mechanism of LR's Effects": average BA loss / average BC loss
# ----------------------------------------------------------------------------------------------


def curve(record, key) -> np.ndarray:
    vals = ((record.get("curves") or {}).get("per_epoch") or {}).get(key) or []
    return np.array([np.nan if v is None else v for v in vals], dtype=float)


def ba_bc_loss_ratio(record: dict, which: str = "mean") -> float:
    """Average BA training loss / average BC training loss of one run, from its per-epoch curves.

    `ba_loss[e]` is the mean over epoch e's minibatches of the mean loss of their BA samples and
    `bc_loss[e]` the mean, over the minibatches that hold BC samples, of the mean loss of those BC
    samples (lrbook.train). Only epochs where both are finite count (an epoch with no BC sample in
    any minibatch has no BC loss). `which="mean"`: mean BA loss over those epochs / mean BC loss over
    them (the whole of training); `which="final"`: the ratio in the last such epoch. A ratio closer
    to 1 means BA and BC samples incur more similar losses. NaN for a diverged run or no usable epoch.
    """
    if which not in ("mean", "final"):
        raise ValueError("which must be 'mean' or 'final'")
    if record.get("status") == "diverged":
        return float("nan")
    ba, bc = curve(record, "ba_loss"), curve(record, "bc_loss")
    n = min(len(ba), len(bc))
    ba, bc = ba[:n], bc[:n]
    ok = np.isfinite(ba) & np.isfinite(bc) & (bc > 0)
    if not ok.any():
        return float("nan")
    if which == "final":
        i = np.flatnonzero(ok)[-1]
        return float(ba[i] / bc[i])
    return float(ba[ok].mean() / bc[ok].mean())


def ba_bc_ratio_by_lr(records, which: str = "mean"):
    """Per LR over the given records of one cell: runs, mean and sd (over seeds) of the BA/BC loss
    ratio, and its mean distance from 1 in orders of magnitude (mean over seeds of |log10 ratio|)."""
    import pandas as pd

    by_lr: dict[float, list[float]] = {}
    for r in records:
        by_lr.setdefault(float(r["config"]["lr"]), []).append(ba_bc_loss_ratio(r, which))
    rows = []
    for lr in sorted(by_lr):
        v = np.array(by_lr[lr], float)
        v = v[np.isfinite(v) & (v > 0)]
        rows.append({"lr": lr, "runs": len(v), "ratio_mean": v.mean() if len(v) else np.nan,
                     "ratio_sd": v.std(ddof=1) if len(v) > 1 else np.nan,
                     "ratio_min": v.min() if len(v) else np.nan, "ratio_max": v.max() if len(v) else np.nan,
                     "log10_distance": np.abs(np.log10(v)).mean() if len(v) else np.nan})
    return pd.DataFrame(rows, columns=["lr", "runs", "ratio_mean", "ratio_sd", "ratio_min", "ratio_max",
                                       "log10_distance"])



def ba_bc_verdict(table, dataset: str, low_lr: float | None = None, high_lr: float | None = None,
                  model: str | None = None) -> dict:
    """Compare the BA/BC loss ratio at a low and a high LR of one cell (default: the lowest and
    highest LR in `table`, a `ba_bc_ratio_by_lr` result). Returns a dict with `closer` ("low",
    "high", "tie" or None), `agrees` ("yes"/"no" when the per-seed ranges of the two LRs are disjoint,
    "unclear" when they overlap, "n/a" for datasets the paper reports nothing on: it reports only
    Colored MNIST and Double MNIST, where it finds the low LR closer to 1), `separated` (whether
    the per-seed ranges of the two LRs are disjoint; False with fewer than two runs at either LR) and
    `sentence` (`prose.ba_bc_sentence`)."""
    t = table[table.runs > 0]
    if len(t) < 2:
        return {"closer": None, "agrees": "n/a", "separated": None, "sentence": ba_bc_sentence(
            dataset, model, reason="fewer than two LRs with a BA/BC loss ratio; no comparison possible.")}
    lo = t[t.lr == (t.lr.min() if low_lr is None else low_lr)]
    hi = t[t.lr == (t.lr.max() if high_lr is None else high_lr)]
    if lo.empty or hi.empty:
        return {"closer": None, "agrees": "n/a", "separated": None, "sentence": ba_bc_sentence(
            dataset, model, reason="the requested LRs have no stored ratio; no comparison possible.")}
    lo, hi = lo.iloc[0], hi.iloc[0]
    dl, dh = lo.log10_distance, hi.log10_distance
    closer = "tie" if np.isclose(dl, dh, rtol=0, atol=1e-12) else ("low" if dl < dh else "high")
    # Seed variation can only be judged with at least two runs at each LR.
    enough = lo.runs >= 2 and hi.runs >= 2
    separated = bool(enough and (lo.ratio_max < hi.ratio_min or hi.ratio_max < lo.ratio_min))
    if dataset not in BA_BC_DATASETS:
        agrees = "n/a"
    elif not separated or closer == "tie":
        agrees = "unclear"
    else:
        agrees = "yes" if closer == "low" else "no"
    return {"closer": closer, "agrees": agrees, "separated": separated,
            "sentence": ba_bc_sentence(dataset, model, lo, hi, closer, separated, agrees)}


def steps_per_epoch(record: dict) -> float:
    """Minibatches per epoch: record['steps'] / record['epochs'] (training runs whole epochs), else
    ceil(n_train / batch_size) from the config."""
    if record.get("steps") and record.get("epochs"):
        return record["steps"] / record["epochs"]
    cfg = record["config"]
    return math.ceil(cfg["dataset_params"]["n_train"] / cfg["batch_size"])


def epoch_steps(record: dict) -> np.ndarray:
    """Training step at the end of each stored epoch (the per-epoch curves are epoch averages)."""
    n = len(curve(record, "loss"))
    return np.arange(1, n + 1) * steps_per_epoch(record)


# ----------------------------------------------------------------------------------------------
# Fig. 18 (top): persistence of class- and bias-dominant neurons
# ----------------------------------------------------------------------------------------------


def neuron_persistence(record: dict):
    """From a run trained with `neuron_probes=True`: at each probe step t, the share of units that are
    class-dominant (CSI > BSI) at t and still class-dominant at the end of training, and likewise for
    bias-dominant units (CSI <= BSI); units that never fire are left out (supplement D.2, Fig. 18)."""
    import pandas as pd

    trace = [p for p in record.get("attribution_trace") or [] if "unit_csi" in p]
    if not trace:
        return pd.DataFrame()

    def dominance(point):
        csi = np.array([np.nan if v is None else v for v in point["unit_csi"]], float)
        bsi = np.array([np.nan if v is None else v for v in point["unit_bsi"]], float)
        fires = np.isfinite(csi) & np.isfinite(bsi)
        return fires & (csi > bsi), fires & ~(csi > bsi)

    final_class, final_bias = dominance(trace[-1])
    rows = []
    for p in trace:
        cls, bias = dominance(p)
        rows.append({"step": p["step"], "class_dominant": int(cls.sum()), "bias_dominant": int(bias.sum()),
                     "class_persist": (cls & final_class).sum() / cls.sum() if cls.any() else np.nan,
                     "bias_persist": (bias & final_bias).sum() / bias.sum() if bias.any() else np.nan})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Fig. 18 (bottom): per-unit update size and spurious share ("reset" events)
# ----------------------------------------------------------------------------------------------


def unit_trace_events(trace: dict):
    """From a run's `unit_trace` artefact (`train.UnitTrace`): one row per unit and interval between
    consecutive trace points, with the unit's spurious share before and after the interval, its change,
    and the size of the updates to the unit's incoming weights in the interval (sum and largest single
    step). Units silent on the probe inputs (NaN share) at either end are left out."""
    import pandas as pd

    share = np.asarray(trace["spurious_share"], float)
    steps = np.asarray(trace["step"])
    t, u = share.shape
    before, after = share[:-1], share[1:]
    frame = pd.DataFrame({
        "unit": np.tile(np.arange(u), t - 1), "step": np.repeat(steps[1:], u),
        "share_before": before.ravel(), "share_after": after.ravel(), "delta": (after - before).ravel(),
        "update_sum": np.asarray(trace["update_sum"], float)[1:].ravel(),
        "update_max": np.asarray(trace["update_max"], float)[1:].ravel()})
    return frame[np.isfinite(frame.share_before) & np.isfinite(frame.share_after)].reset_index(drop=True)


def reset_summary(events, big_quantile: float = 0.95) -> dict:
    """Do large per-unit updates reset rising spurious use? Among intervals that start with a spurious
    share above the median (where a reset is possible), compare the change in share after the largest
    updates (top 5% of `update_sum`) with the change after the others, and give the Spearman
    correlation of update size with that change. Comparing within high-share intervals controls for
    regression to the mean, which alone makes high shares fall."""
    from scipy.stats import spearmanr

    if events.empty:
        return {"intervals": 0}
    high = events[events.share_before > events.share_before.median()]
    cut = events.update_sum.quantile(big_quantile)
    big, rest = high[high.update_sum >= cut], high[high.update_sum < cut]
    rho = spearmanr(high.update_sum, high.delta).statistic if len(high) > 2 else float("nan")
    return {"intervals": int(len(events)), "high_share_intervals": int(len(high)),
            "big_update_threshold": float(cut), "big_updates": int(len(big)),
            "mean_delta_after_big": float(big.delta.mean()) if len(big) else float("nan"),
            "mean_delta_after_rest": float(rest.delta.mean()) if len(rest) else float("nan"),
            "drop_rate_after_big": float((big.delta < 0).mean()) if len(big) else float("nan"),
            "drop_rate_after_rest": float((rest.delta < 0).mean()) if len(rest) else float("nan"),
            "spearman_update_vs_delta": float(rho)}


def reset_units(events, n: int = 4) -> list[int]:
    """The `n` units with the largest single-interval drop in spurious share (the clearest resets),
    among the units active (finite share) at every trace point: a unit that dies is no reset."""
    counts = events.groupby("unit").size()
    active = events[events.unit.isin(counts.index[counts == counts.max()])]
    drops = active.groupby("unit").delta.min().sort_values()
    return [int(u) for u in drops.index[:n]]
