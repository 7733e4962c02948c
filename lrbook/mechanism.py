"""The mechanism of large LRs (paper Sec. 6, supplement D.1/D.2 and "Mechanism of LR's Effects").

The paper's argument, in words (its equations were lost in text extraction): early in training a
network predicts by the simple spurious rule, so bias-aligned (BA) samples are right and
bias-conflicting (BC) samples wrong. Large LRs grow the parameter and logit norms fast; with
cross-entropy, up-scaled logits make the BC mispredictions *confident*, so the minibatch loss, and
its gradient, is dominated by the few BC samples: an implicit reweighting of the data in favour of
BC samples, which pushes the network off the spurious rule.

This module holds

* `bc_loss_share`: Proposition 1 (Sec. 6, proof in D.1) evaluated exactly: the share of the
  minibatch CE loss that comes from BC samples, as a function of the logit-scaling factor;
* `gradient_norm_shares`: Proposition 2 (D.2) on a small bias-decomposable network, with autograd:
  gradient norms of the core and spurious subnetworks and the share of each coming from BC samples;
* `max_bc_ratio_table` (Fig. 12): correlation of the maximum BC loss ratio met in training with
  unbiased test accuracy, per cell;
* `ba_bc_loss_ratio`, `ba_bc_ratio_by_lr`, `ba_bc_verdict`: the supplement's BA/BC average-loss
  ratio at low vs high LR (it reports ratios closer to 1 at low LR on Colored MNIST and Double MNIST);
* plotting helpers for the section's figures (Fig. 12, Fig. 13 and the two propositions).
"""
from __future__ import annotations

import math

import numpy as np

from .reference import DATASET_NAMES, MODEL_NAMES, pearson, scored_runs, spearman

# ----------------------------------------------------------------------------------------------
# Proposition 1 (Sec. 6; proof D.1)
# ----------------------------------------------------------------------------------------------


def _softplus(x):
    """log(1 + exp(x)) without overflow (numpy's logaddexp is the stable form)."""
    return np.logaddexp(0.0, x)


def bc_loss_share(logit_scale, margin_bc: float = 1.0, margin_ba: float = 1.0, bc_fraction: float = 0.05,
                  batch: int = 100):
    """Share of a binary minibatch's total cross-entropy loss that comes from its BC samples.

    Setting of Proposition 1: a minibatch of `batch` samples, `n_bc = round(bc_fraction * batch)`
    of them bias-conflicting (at least one, and at least one BA sample). The predictor follows the
    spurious rule: on every BC sample the wrong logit exceeds the right one by `s * margin_bc`, on
    every BA sample the right logit exceeds the wrong one by `s * margin_ba`, where `s` is the
    logit-scaling factor (`logit_scale`; the paper's proof assumes shared margins w.l.o.g.). With
    two classes the CE loss of a sample whose right-minus-wrong logit gap is `g` is
    `softplus(-g) = log(1 + exp(-g))`, so

        share(s) = n_bc * softplus(s m_bc) / (n_bc * softplus(s m_bc) + n_ba * softplus(-s m_ba)).

    At s = 0 every sample has loss log 2 and the share is n_bc / batch; as s grows the BC loss grows
    like s m_bc while the BA loss vanishes like exp(-s m_ba), so the share tends to 1 (Eq. 1 of the
    paper, in words). Vectorised over `logit_scale`; returns a float for a scalar input.
    """
    if not (margin_bc > 0 and margin_ba > 0):
        raise ValueError("margins must be > 0 (BC mispredicted, BA predicted correctly)")
    n_bc = int(round(bc_fraction * batch))
    if not 1 <= n_bc < batch:
        raise ValueError(f"bc_fraction * batch must round to 1..{batch - 1} BC samples, got {bc_fraction} * {batch}")
    n_ba = batch - n_bc
    s = np.asarray(logit_scale, dtype=float)
    if np.any(s < 0):
        raise ValueError("logit_scale must be >= 0")
    loss_bc = n_bc * _softplus(s * margin_bc)
    loss_ba = n_ba * _softplus(-s * margin_ba)  # underflows to 0 for huge s: share is then exactly 1
    share = loss_bc / (loss_bc + loss_ba)
    return float(share) if share.ndim == 0 else share


# ----------------------------------------------------------------------------------------------
# Proposition 2 (supplement D.2) on a small bias-decomposable network
# ----------------------------------------------------------------------------------------------


def _branch(direction, strength, dim, hidden, gen, torch):
    """A bias-free 1-hidden-layer ReLU branch with two outputs whose logit margin (class 0 minus
    class 1) is exactly `strength * (direction . x)`: hidden units 0 and 1 read `+direction` and
    `-direction` and feed class 0 and class 1 with weight `strength`; the other hidden units are random
    features whose output weights are equal for both classes (they shift both logits alike, so they
    change no margin, but they have gradients, as real units would)."""
    w1 = torch.randn(hidden, dim, generator=gen, dtype=torch.float64) / math.sqrt(dim)
    w1[0], w1[1] = direction, -direction
    w2 = torch.zeros(2, hidden, dtype=torch.float64)
    w2[0, 0] = w2[1, 1] = strength
    shared = 0.1 * torch.randn(hidden - 2, generator=gen, dtype=torch.float64)
    w2[0, 2:] = w2[1, 2:] = shared
    return {"w1": w1, "w2": w2}


def _unit(dim, gen, torch):
    v = torch.randn(dim, generator=gen, dtype=torch.float64)
    return v / v.norm()


def _features(signs, direction, noise, gen, torch):
    """x = sign * direction + Gaussian noise orthogonal to `direction` (so `direction . x = sign`)."""
    eps = noise * torch.randn(len(signs), len(direction), generator=gen, dtype=torch.float64)
    eps -= (eps @ direction)[:, None] * direction[None, :]
    return signs[:, None] * direction[None, :] + eps


def gradient_norm_shares(logit_scales=None, bc_fraction: float = 0.05, batch: int = 100, dim: int = 10,
                         hidden: int = 8, core_strength: float = 0.5, spurious_strength: float = 2.0,
                         noise: float = 0.3, seed: int = 0):
    """Proposition 2 (supplement D.2), computed with autograd on a bias-decomposable network.

    Network (Definition 1, binary): `f(x) = s * (f_core(x_core) + f_spur(x_spur))`, with `s` the
    logit-scaling factor and `f_core`, `f_spur` bias-free 1-hidden-layer ReLU branches (`hidden`
    units, two outputs) on separate `dim`-dimensional core and spurious feature blocks. Data: one
    minibatch of `batch` samples with labels alternating 0/1, of which `round(bc_fraction * batch)` are
    BC (spurious label b = 1 - y) and the rest BA (b = y). Features: `x_core = +-u_c + noise`, sign
    set by y; `x_spur = +-u_s + noise`, sign set by b; `u_c`, `u_s` random unit vectors and the
    Gaussian noise (sd `noise`) orthogonal to them. The branches are built, not trained, so that
    `f_core` favours the true class y by exactly `core_strength` on every sample (core subnetwork
    correct) and `f_spur` favours b by `spurious_strength` > `core_strength` (spurious subnetwork
    dominant): the network predicts by the spurious rule, BA samples right with margin
    `s*(spurious_strength + core_strength)`, BC samples wrong with margin
    `s*(spurious_strength - core_strength)`.

    For each scale `s`, with the minibatch loss L = mean CE (as in training):

    * `grad_core`, `grad_spur`: Frobenius norm of dL/d(parameters of that branch), all its weight
      matrices together; `grad_ratio = grad_spur / grad_core`;
    * `bc_share_core`, `bc_share_spur`: per branch, sum over BC samples of the per-sample gradient
      norms ||d l_i / d theta|| divided by the sum over all samples (the proof sums per-sample norms
      over the minibatch, Eq. 18-19 in words). Proposition 2: BC samples dominate both sums, so
      these shares tend to 1 as s grows, and both branches' gradient norms grow linearly with s;
    * `loss_bc_share`: share of the minibatch loss from BC samples (Proposition 1 on this network).

    Per-sample gradient norms use the outer-product identity: sample i's loss depends only on row i
    of each layer's output, so d l_i/dW = outer(d l_i/d out_i, input_i), whose Frobenius norm is the
    product of the two vector norms (the output gradients come from autograd on the summed loss).

    Deterministic: float64 on the CPU, data and weights drawn from `seed`. Returns a DataFrame, one
    row per scale; `attrs` records the setting, the BC count and that the spurious rule holds.
    """
    import pandas as pd
    import torch

    if logit_scales is None:
        logit_scales = np.geomspace(0.01, 100, 41)
    if not 0 < core_strength < spurious_strength:
        raise ValueError("need 0 < core_strength < spurious_strength (core correct but weak, spurious dominant)")
    if hidden < 3:
        raise ValueError("hidden must be >= 3")
    n_bc = int(round(bc_fraction * batch))
    if not 1 <= n_bc < batch:
        raise ValueError(f"bc_fraction * batch must round to 1..{batch - 1} BC samples")

    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(batch) % 2
    bc = torch.zeros(batch, dtype=torch.bool)
    bc[torch.randperm(batch, generator=gen)[:n_bc]] = True
    b = torch.where(bc, 1 - y, y)
    u_c, u_s = _unit(dim, gen, torch), _unit(dim, gen, torch)
    x_core = _features(1.0 - 2.0 * y.double(), u_c, noise, gen, torch)
    x_spur = _features(1.0 - 2.0 * b.double(), u_s, noise, gen, torch)
    params = {"core": _branch(u_c, core_strength, dim, hidden, gen, torch),
              "spur": _branch(u_s, spurious_strength, dim, hidden, gen, torch)}

    def branch_out(p, x):
        return torch.relu(x @ p["w1"].T) @ p["w2"].T

    with torch.no_grad():
        out_core, out_spur = branch_out(params["core"], x_core), branch_out(params["spur"], x_spur)
        core_margin = (out_core[:, 0] - out_core[:, 1]) * (1.0 - 2.0 * y.double())
        pred = (out_core + out_spur).argmax(1)
    spurious_rule = bool((pred == b).all())
    core_correct = bool((core_margin > 0).all())

    inputs = {"core": x_core, "spur": x_spur}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add contention
    try:
        rows = [_prop2_row(s, params, inputs, y, bc) for s in np.asarray(logit_scales, dtype=float)]
    finally:
        torch.set_num_threads(threads)
    out = pd.DataFrame(rows)
    out.attrs.update(dict(bc_fraction=bc_fraction, batch=batch, n_bc=n_bc, dim=dim, hidden=hidden,
                          core_strength=core_strength, spurious_strength=spurious_strength, noise=noise,
                          seed=seed, spurious_rule=spurious_rule, core_correct=core_correct,
                          margin_bc=spurious_strength - core_strength,
                          margin_ba=spurious_strength + core_strength))
    return out


def _prop2_row(s, params, inputs, y, bc) -> dict:
    """One row of `gradient_norm_shares` at logit scale `s`."""
    import torch
    import torch.nn.functional as F

    p = {k: {n: w.clone().requires_grad_(True) for n, w in v.items()} for k, v in params.items()}
    pre = {k: inputs[k] @ p[k]["w1"].T for k in p}
    act = {k: torch.relu(pre[k]) for k in p}
    out = {k: act[k] @ p[k]["w2"].T for k in p}
    per = F.cross_entropy(s * (out["core"] + out["spur"]), y, reduction="none")
    # Minibatch gradient (mean loss) w.r.t. the weights; and, since sample i's loss depends only
    # on row i of each layer's output, the gradient of the summed loss w.r.t. the layer outputs
    # gives every per-sample gradient: d l_i / dW = outer(d l_i / d out_i, layer input_i), whose
    # Frobenius norm is the product of the two vector norms.
    names = [(k, n) for k in ("core", "spur") for n in ("w1", "w2")]
    grads = torch.autograd.grad(per.mean(), [p[k][n] for k, n in names], retain_graph=True)
    gnorm = {k: math.sqrt(sum(float((g ** 2).sum()) for (kk, _), g in zip(names, grads) if kk == k)) for k in p}
    d_out = torch.autograd.grad(per.sum(), [out["core"], out["spur"], pre["core"], pre["spur"]])
    d_out = dict(zip(["out_core", "out_spur", "pre_core", "pre_spur"], d_out))
    row = {"scale": s, "grad_core": gnorm["core"], "grad_spur": gnorm["spur"],
           "grad_ratio": gnorm["spur"] / gnorm["core"] if gnorm["core"] > 0 else float("nan")}
    for k in ("core", "spur"):
        w2_norm = d_out[f"out_{k}"].norm(dim=1) * act[k].detach().norm(dim=1)
        w1_norm = d_out[f"pre_{k}"].norm(dim=1) * inputs[k].norm(dim=1)
        norms = torch.sqrt(w1_norm ** 2 + w2_norm ** 2)
        total = float(norms.sum())
        row[f"bc_share_{k}"] = float(norms[bc].sum()) / total if total > 0 else float("nan")
    per = per.detach()
    row["loss_bc_share"] = float(per[bc].sum() / per.sum())
    return row


# ----------------------------------------------------------------------------------------------
# Fig. 12: maximum BC loss ratio vs unbiased test accuracy
# ----------------------------------------------------------------------------------------------


def max_bc_ratio_table(df):
    """Per (dataset, model, scale) cell: Pearson and Spearman correlation, over runs, of
    `max_bc_loss_ratio` (the largest per-minibatch BC loss / total loss met in training; Sec. 6) with
    `test_acc` (unbiased test accuracy). Diverged and under-trained runs (`reference.scored_runs`)
    and runs missing either value are left out.
    The paper (Fig. 12, ResNet18) reports a very strong positive correlation."""
    import pandas as pd

    cols = ["dataset", "model", "scale", "runs", "LRs", "seeds", "pearson", "spearman"]
    if df is None or len(df) == 0 or "max_bc_loss_ratio" not in df or "test_acc" not in df:
        return pd.DataFrame(columns=cols)
    ok = scored_runs(df)
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


def _curve(record, key) -> np.ndarray:
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
    ba, bc = _curve(record, "ba_loss"), _curve(record, "bc_loss")
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


PAPER_BA_BC_CELLS = ("colored_mnist", "double_mnist")  # datasets the supplement reports the ratio for


def ba_bc_verdict(table, dataset: str, low_lr: float | None = None, high_lr: float | None = None,
                  model: str | None = None) -> dict:
    """Compare the BA/BC loss ratio at a low and a high LR of one cell (default: the lowest and
    highest LR in `table`, a `ba_bc_ratio_by_lr` result). Returns a dict with `closer` ("low",
    "high", "tie" or None), `agrees` ("yes"/"no" when the per-seed ranges of the two LRs are disjoint,
    "unclear" when they overlap, "n/a" for datasets the paper reports nothing on: it reports only
    Colored MNIST and Double MNIST, where it finds the low LR closer to 1), `separated` (whether
    the per-seed ranges of the two LRs are disjoint; False with fewer than two runs at either LR) and
    `sentence`, a plain-words statement generated from the numbers, naming the cell (`model` given)
    or the dataset."""
    t = table[table.runs > 0]
    name = cell_title(dataset, model) if model else DATASET_NAMES.get(dataset, dataset)
    if len(t) < 2:
        return {"closer": None, "agrees": "n/a", "separated": None,
                "sentence": f"{name}: fewer than two LRs with a BA/BC loss ratio; no comparison possible."}
    lo = t[t.lr == (t.lr.min() if low_lr is None else low_lr)]
    hi = t[t.lr == (t.lr.max() if high_lr is None else high_lr)]
    if lo.empty or hi.empty:
        return {"closer": None, "agrees": "n/a", "separated": None,
                "sentence": f"{name}: the requested LRs have no stored ratio; no comparison possible."}
    lo, hi = lo.iloc[0], hi.iloc[0]
    dl, dh = lo.log10_distance, hi.log10_distance
    closer = "tie" if np.isclose(dl, dh, rtol=0, atol=1e-12) else ("low" if dl < dh else "high")
    # Seed variation can only be judged with at least two runs at each LR.
    enough = lo.runs >= 2 and hi.runs >= 2
    separated = bool(enough and (lo.ratio_max < hi.ratio_min or hi.ratio_max < lo.ratio_min))

    def desc(row):
        sd = "" if not np.isfinite(row.ratio_sd) else f" ± {row.ratio_sd:.3g}"
        return f"{row.ratio_mean:.3g}{sd} at LR {row.lr:g} ({plural(int(row.runs), 'run')})"

    which = {"low": f"the low LR ({lo.lr:g})", "high": f"the high LR ({hi.lr:g})", "tie": "neither LR"}[closer]
    text = (f"{name}: BA/BC loss ratio {desc(lo)} vs {desc(hi)}; {which} gives the ratio closer to 1 "
            f"({dl:.3f} vs {dh:.3f} orders of magnitude from 1)")
    text += ("; with a single run at an LR the seed variation is unknown" if not enough
             else "; the per-seed ranges do not overlap" if separated
             else "; the per-seed ranges overlap, so the difference is within seed variation")
    if dataset in PAPER_BA_BC_CELLS:
        paper = "the paper, which reports ratios closer to 1 at low LR on this dataset"
        if not separated or closer == "tie":
            agrees = "unclear"
            text += f". This neither supports nor contradicts {paper}."
        elif closer == "low":
            agrees = "yes"
            text += f". This agrees with {paper}."
        else:
            agrees = "no"
            text += f". This disagrees with {paper}."
    else:
        agrees = "n/a"
        text += (". The paper reports this ratio only for Colored MNIST and Double MNIST, so there is no "
                 "paper value to compare with here.")
    return {"closer": closer, "agrees": agrees, "separated": separated, "sentence": text}


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def cell_title(dataset: str, model: str) -> str:
    return f"{DATASET_NAMES.get(dataset, dataset)} / {MODEL_NAMES.get(model, model)}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def describe_runs(df) -> str:
    """'scale paper: 15 runs plotted, 5 LRs, seeds 0-2' (+ how many diverged or under-trained runs,
    `reference.scored_runs`, are left out)."""
    ok = scored_runs(df)
    seeds = sorted(int(v) for v in ok.seed.unique())
    seed_text = "no seeds" if not seeds else (f"seed {seeds[0]}" if len(seeds) == 1 else
                                             f"seeds {', '.join(map(str, seeds))}")
    text = f"scale {df.scale.iloc[0]}: {plural(len(ok), 'run')} plotted, {plural(ok.lr.nunique(), 'LR')}, {seed_text}"
    n_div = int((df.status == "diverged").sum())
    n_under = len(df) - len(ok) - n_div
    left_out = [f"{n_div} diverged"] * bool(n_div) + [f"{n_under} under-trained"] * bool(n_under)
    return text + (f"; {' and '.join(left_out)}, not plotted" if left_out else "")


def plot_bc_loss_share(ax, scales, bc_fractions=(0.01, 0.05, 0.1), margin_bc=1.0, margin_ba=1.0, batch=100):
    """Proposition 1: BC share of the minibatch loss against the logit scale, one line per BC fraction."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(bc_fractions):
        ax.plot(scales, bc_loss_share(scales, margin_bc, margin_ba, r, batch), color=cmap(i / max(1, len(bc_fractions) - 1)),
                label=f"BC fraction {r:.0%}")
    ax.set_xlabel("logit scale s")
    ax.set_ylabel("BC share of minibatch loss")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"margins: BC {margin_bc:g}, BA {margin_ba:g}")
    ax.legend(fontsize=8, frameon=False)
    return ax


def plot_max_bc_scatter(ax, df, title=None):
    """Fig. 12 panel: max BC loss ratio (x) vs unbiased test accuracy (y), one point per run, colour
    = LR on a log scale (with a colorbar); diverged and under-trained runs are not plotted."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    ok = scored_runs(df)
    lrs = ok.lr.astype(float)
    norm = LogNorm(vmin=lrs.min(), vmax=lrs.max() if lrs.max() > lrs.min() else lrs.min() * 1.0001)
    sc = ax.scatter(ok.max_bc_loss_ratio, 100 * ok.test_acc, c=lrs, cmap="viridis", norm=norm, s=28,
                    edgecolor="k", linewidth=0.4)
    cb = plt.colorbar(sc, ax=ax)
    cb.set_label("learning rate (log scale)")
    ticks = sorted(lrs.unique())
    cb.minorticks_off()
    cb.set_ticks(ticks)
    cb.set_ticklabels([f"{v:g}" for v in ticks])
    ax.set_xlabel("max BC loss ratio in training")
    ax.set_ylabel("unbiased test accuracy (%)")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def steps_per_epoch(record: dict) -> float:
    """Minibatches per epoch: record['steps'] / record['epochs'] (training runs whole epochs), else
    ceil(n_train / batch_size) from the config."""
    if record.get("steps") and record.get("epochs"):
        return record["steps"] / record["epochs"]
    cfg = record["config"]
    return math.ceil(cfg["dataset_params"]["n_train"] / cfg["batch_size"])


def epoch_steps(record: dict) -> np.ndarray:
    """Training step at the end of each stored epoch (the per-epoch curves are epoch averages)."""
    n = len(_curve(record, "loss"))
    return np.arange(1, n + 1) * steps_per_epoch(record)


def plot_dynamics(axes, low_recs, high_recs):
    """Fig. 13 for one cell: per-epoch curves of low- and high-LR runs against the training step.
    axes[0]: BC and BA mean loss (log y); axes[1]: BC loss ratio, epoch mean and epoch max;
    axes[2]: mean logit norm; axes[3]: spurious (and core) attribution share from the attribution
    trace if the runs have one, else BA and BC test accuracy from the trace, else a note."""
    styles = {"low": "#1f77b4", "high": "#d62728"}
    for which, recs in (("low", low_recs), ("high", high_recs)):
        c = styles[which]
        for k, r in enumerate(recs):
            lab = (lambda s: f"LR {r['config']['lr']:g} {s}") if k == 0 else (lambda s: None)
            alpha = 0.9 if k == 0 else 0.35
            x = epoch_steps(r)
            axes[0].plot(x, _curve(r, "bc_loss"), "-", color=c, alpha=alpha, label=lab("BC"))
            axes[0].plot(x, _curve(r, "ba_loss"), ":", color=c, alpha=alpha, label=lab("BA"))
            axes[1].plot(x, _curve(r, "bc_loss_ratio_mean"), "-", color=c, alpha=alpha, label=lab("mean"))
            axes[1].plot(x, _curve(r, "bc_loss_ratio_max"), "--", color=c, alpha=alpha, label=lab("max"))
            axes[2].plot(x, _curve(r, "logit_norm"), "-", color=c, alpha=alpha,
                         label=f"LR {r['config']['lr']:g}" if k == 0 else None)
            trace = r.get("attribution_trace") or []
            steps = np.array([p["step"] for p in trace], float) + 1
            if trace and "spurious" in trace[0]:
                axes[3].plot(steps, [p["spurious"] for p in trace], "-", color=c, alpha=alpha, label=lab("spurious"))
                axes[3].plot(steps, [p["core"] for p in trace], ":", color=c, alpha=alpha, label=lab("core"))
                axes[3].set_ylabel("attribution share")
            elif trace and "test_bc_acc" in trace[0]:
                axes[3].plot(steps, [p["test_bc_acc"] for p in trace], "-", color=c, alpha=alpha, label=lab("BC acc"))
                axes[3].plot(steps, [p["test_ba_acc"] for p in trace], ":", color=c, alpha=alpha, label=lab("BA acc"))
                axes[3].set_ylabel("test accuracy")
    if not any(r.get("attribution_trace") for r in (*low_recs, *high_recs)):
        axes[3].text(0.5, 0.5, "no attribution trace stored\n(attribution probes off for this cell)",
                     ha="center", va="center", transform=axes[3].transAxes, fontsize=9)
        axes[3].set_xticks([])
        axes[3].set_yticks([])
    else:
        axes[3].set_xscale("log")
        axes[3].set_ylim(0, 1)
        axes[3].set_xlabel("training step + 1")
        axes[3].set_title("attribution over training" if axes[3].get_ylabel() == "attribution share"
                          else "test accuracy over training", fontsize=10)
        axes[3].legend(fontsize=7, frameon=False)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("mean training loss")
    axes[0].set_title("BC (solid) and BA (dotted) loss", fontsize=10)
    axes[1].set_ylabel("BC loss / minibatch loss")
    axes[1].set_ylim(0, 1.02)
    axes[1].set_title("BC loss ratio: epoch mean (solid), max (dashed)", fontsize=10)
    axes[2].set_ylabel("mean logit norm")
    axes[2].set_title("logit norm", fontsize=10)
    for ax in axes[:3]:
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.legend(fontsize=7, frameon=False)
    return axes


def seed_records(all_runs, store, dataset: str, model: str, scale: str, lr: float, prefer: str = "attribution_n"):
    """One record per seed of a cell's LR, from `all_runs` (`store.to_frame(dedupe=False)`), preferring
    the record with the logging field `prefer` set (runs differing only in logging trained the same)."""
    sub = all_runs[(all_runs.dataset == dataset) & (all_runs.model == model) & (all_runs.scale == scale)
                   & np.isclose(all_runs.lr, lr) & (all_runs.status != "diverged")]
    if sub.empty:
        return []
    rank = sub[prefer].fillna(0).astype(float) if prefer in sub else 0
    sub = sub.assign(_rank=rank).sort_values(["seed", "_rank"], ascending=[True, False])
    return [store.get(r) for r in sub.drop_duplicates("seed").run_id]


def traced_lrs(all_runs, dataset: str, model: str, scale: str, field: str = "attribution_n") -> list[float]:
    """The LRs of a cell that have at least one run with the logging field `field` set."""
    if field not in all_runs:
        return []
    sub = all_runs[(all_runs.dataset == dataset) & (all_runs.model == model) & (all_runs.scale == scale)
                   & (all_runs[field].fillna(0).astype(float) > 0) & (all_runs.status != "diverged")]
    return sorted(float(v) for v in sub.lr.unique())


def pick_lrs(df, low_lr: float | None = None, high_lr: float | None = None) -> tuple[float, float, str]:
    """The low and high LR to compare in one cell's runs `df` (not diverged, not under-trained:
    `reference.scored_runs`): the requested ones if stored, else the lowest / highest stored; the
    note says when a request could not be honoured."""
    lrs = sorted(scored_runs(df).lr.unique())
    if not lrs:
        return float("nan"), float("nan"), "no runs to compare (all diverged or under-trained)"
    notes = []

    def choose(want, default, label):
        if want is None:
            return default
        if any(np.isclose(want, v) for v in lrs):
            return next(v for v in lrs if np.isclose(want, v))
        notes.append(f"{label} LR {want:g} is not stored here; using {default:g}")
        return default

    lo, hi = choose(low_lr, lrs[0], "low"), choose(high_lr, lrs[-1], "high")
    return float(lo), float(hi), "; ".join(notes)


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


def plot_unit_trace(axes, trace: dict, units: list[int]):
    """Fig. 18 (bottom) for the given units: axes[0] their spurious share over training, axes[1] the
    size of the updates to their incoming weights in each interval between trace points."""
    steps = np.asarray(trace["step"])
    share = np.asarray(trace["spurious_share"], float)
    update = np.asarray(trace["update_sum"], float)
    import matplotlib.pyplot as plt

    for c, u in zip(plt.get_cmap("tab10")(np.arange(len(units)) % 10), units):
        axes[0].plot(steps, share[:, u], "-", color=c, lw=1.2, label=f"unit {u}")
        axes[1].plot(steps[1:], update[1:, u], "-", color=c, lw=1.0)
    axes[0].set_ylabel("spurious share of\nthe unit's activation")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=7, frameon=False, ncol=len(units))
    axes[1].set_ylabel("update size per interval\n(sum of lr·‖∇w‖)")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("training step")
    return axes



def reset_sentences(rows: list[dict]) -> str:
    """One generated sentence per traced run from its `reset_summary`: does it support the paper's
    reading that large updates reset rising spurious use?"""
    out = []
    for r in rows:
        if not r.get("big_updates"):
            out.append(f"* LR {r['LR']:g}, seed {r['seed']}: too few intervals to test the claim.")
            continue
        supports = (r["drop_rate_after_big"] > r["drop_rate_after_rest"]
                    and r["mean_delta_after_big"] < r["mean_delta_after_rest"])
        out.append(
            f"* {r['cell']}, LR {r['LR']:g}, seed {r['seed']}: of the intervals that start with an above-median "
            f"spurious share, the {r['big_updates']} with the largest 5% of updates lowered the share in "
            f"{100 * r['drop_rate_after_big']:.0f}% of cases (mean change {r['mean_delta_after_big']:+.3f}), the "
            f"others in {100 * r['drop_rate_after_rest']:.0f}% (mean change {r['mean_delta_after_rest']:+.3f}); "
            f"Spearman correlation of update size with the change: {r['spearman_update_vs_delta']:+.2f}. "
            + ("This **supports** the reset reading." if supports else "This does **not** support the reset reading."))
    return "\n".join(out)
