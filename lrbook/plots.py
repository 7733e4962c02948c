"""Figures in the paper's style: several metrics against LR on a log axis, each normalised to
[0, 1] per variable (the paper normalises y per variable; raw ranges go in a table beside)."""
from __future__ import annotations

import numpy as np

from .reference import METRIC_LABELS, MIN_SCORED_TRAIN_ACC, scored_runs

LR_EFFECT_METRICS = ("test_acc", "prunability", "act_compressibility")  # Fig. 3, 4, 15, 16
REPRESENTATION_METRICS = ("csi", "class_separation")  # Fig. 5
COLORS = {"test_acc": "#1f77b4", "prunability": "#d62728", "act_compressibility": "#2ca02c",
          "csi": "#9467bd", "class_separation": "#ff7f0e", "max_bc_loss_ratio": "#8c564b",
          "core": "#2ca02c", "spurious": "#d62728", "noise": "#7f7f7f"}


def lr_summary(df, metrics=LR_EFFECT_METRICS):
    """Per-LR mean, sd and run count of each metric (diverged runs are counted, not averaged). A
    metric no run has (e.g. every run diverged, so none was evaluated) is NaN; no runs, no rows."""
    import pandas as pd

    columns = ["lr", "runs", "diverged", "hit_max_epochs", "epochs"] + [f"{m}_{k}" for m in metrics
                                                                        for k in ("mean", "sd")]
    rows = []
    for lr, g in (df.groupby("lr") if len(df) else ()):
        ok = g[g.status != "diverged"]
        row = {"lr": lr, "runs": len(g), "diverged": int((g.status == "diverged").sum()),
               "hit_max_epochs": int((g.status == "max_epochs").sum()),
               "epochs": ok.epochs.mean() if len(ok) else np.nan}
        for m in metrics:
            values = ok[m].astype(float) if m in ok else pd.Series(np.nan, index=ok.index)
            row[f"{m}_mean"] = values.mean() if len(ok) else np.nan
            row[f"{m}_sd"] = values.std(ddof=1) if len(ok) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=columns).sort_values("lr").reset_index(drop=True)


def format_summary(summary, metrics=LR_EFFECT_METRICS, percent=("test_acc",)):
    """The raw-value table beside a figure: 'mean ± sd' strings, accuracies in %."""
    import pandas as pd

    out = pd.DataFrame({"LR": summary.lr.map(lambda v: f"{v:g}"), "runs": summary.runs})
    for m in metrics:
        scale = 100 if m in percent else 1
        digits = 1 if m in percent else 3
        out[METRIC_LABELS.get(m, m)] = [
            "—" if np.isnan(mu) else f"{mu * scale:.{digits}f}" if np.isnan(sd)  # one run: no sd
            else f"{mu * scale:.{digits}f} ± {sd * scale:.{digits}f}"
            for mu, sd in zip(summary[f"{m}_mean"], summary[f"{m}_sd"])]
    if summary.diverged.any():
        out["diverged"] = summary.diverged
    if summary.hit_max_epochs.any():
        out["hit epoch cap"] = summary.hit_max_epochs
    return out


def _say_why_empty(ax, text: str, title=None):
    """An empty panel that says what is missing, in place of a figure that cannot be drawn."""
    import textwrap

    ax.text(0.5, 0.5, textwrap.fill(text.replace("`", ""), 44), ha="center", va="center", fontsize=8,
            transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_lr_effects(df, metrics=LR_EFFECT_METRICS, ax=None, title=None, normalise=True, scored_only=False):
    """Mean over seeds (line) and +-1 sd (band) of each metric against LR, log x axis; each metric
    min-max normalised over its per-LR means, as in the paper's figures. `scored_only`: plot only
    the runs the comparison with the paper uses (`reference.scored_runs`). With nothing to plot
    (every run diverged or under-trained, or no runs) the panel says so instead."""
    import matplotlib.pyplot as plt

    from .report import nothing_scored_note

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2))
    shown = scored_runs(df) if scored_only and len(df) else df
    s = lr_summary(shown, metrics)
    s = s[s[[f"{m}_mean" for m in metrics]].notna().any(axis=1)]
    if s.empty:
        why = nothing_scored_note(df, df.scale.iloc[0] if "scale" in df and len(df) else None)
        return _say_why_empty(ax, why or "No evaluated run has these metrics.", title)
    for m in metrics:
        if s[f"{m}_mean"].isna().all():
            continue
        mu, sd = s[f"{m}_mean"].to_numpy(float), s[f"{m}_sd"].fillna(0).to_numpy(float)
        lo, span = (np.nanmin(mu), np.nanmax(mu) - np.nanmin(mu)) if normalise else (0.0, 1.0)
        span = span if span > 0 else 1.0
        ax.plot(s.lr, (mu - lo) / span, "o-", color=COLORS.get(m), label=METRIC_LABELS.get(m, m), ms=4)
        ax.fill_between(s.lr, (mu - sd - lo) / span, (mu + sd - lo) / span, color=COLORS.get(m), alpha=0.15)
    if normalise:  # a metric that barely moves has a tiny span: keep its sd band from swamping the axes
        ax.set_ylim(-0.35, 1.35)
    ax.set_xscale("log")
    _label_lrs(ax, s.lr)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("normalised value" if normalise else "value")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    return ax


def _label_lrs(ax, lrs):
    """Tick the log x axis at the LRs shown, in plain numbers (no crowded minor labels)."""
    from matplotlib.ticker import NullFormatter

    lrs = sorted(set(float(v) for v in lrs))
    ax.set_xticks(lrs)
    ax.set_xticklabels([f"{v:g}" for v in lrs], fontsize=8)
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_attribution_trace(record, regions=("core", "spurious", "noise"), ax=None, title=None, which=None):
    """Share of attribution on each region over training steps for one run (Fig. 3, lower panels);
    falls back to BA/BC test accuracy when the dataset defines no regions (moon-star). `which`
    ("lowest", "highest") titles the panel with the run's LR and seed. `record` None (no run the
    comparison uses) or a run without a trace: the panel says so."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2))
    if title is None and which:
        title = (f"{which} LR: no run to show" if record is None
                 else f"{which} LR {record['config']['lr']:g} (seed {record['config']['seed']})")
    if record is None:
        return _say_why_empty(ax, "No run reached 100% training accuracy (see the note above), so there is "
                                  "no trained network's attribution trace to show.", title)
    trace = record.get("attribution_trace") or []
    if not trace:
        return _say_why_empty(ax, f"Run {record['run_id']} ({record['status']}) stored no attribution trace.", title)
    steps = np.array([p["step"] for p in trace], float)
    keys = [r for r in regions if trace and r in trace[0]]
    ylabel = "attribution share"
    if not keys:
        keys, ylabel = ["test_ba_acc", "test_bc_acc"], "test accuracy"
    for k in keys:
        ax.plot(steps + 1, [p.get(k) for p in trace], "o-", ms=3, color=COLORS.get(k),
                label=METRIC_LABELS.get(k, k))
    ax.set_xscale("log")
    ax.set_xlabel("training step + 1")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    return ax


def plot_pruning_curves(records, method="structured", ax=None, title=None):
    """Unbiased accuracy against pruning fraction, one line per LR (mean over seeds; Fig. 21/22).
    `method`: structured, magnitude, or structured_bn_batch (evaluated with BatchNorm batch
    statistics; records without that curve are skipped)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2))
    by_lr: dict[float, list] = {}
    under_trained = set()
    base_key = "test_acc_bn_batch" if method.endswith("_bn_batch") else "test_acc"
    trained = [r for r in records if r["status"] != "diverged" and f"prune_{method}" in r["curves"]]
    for r in trained:
        curve = [r["metrics"][base_key]] + r["curves"][f"prune_{method}"]
        by_lr.setdefault(r["config"]["lr"], []).append(curve)
        if r["status"] == "max_epochs" and r["metrics"]["train_acc"] < MIN_SCORED_TRAIN_ACC:
            under_trained.add(r["config"]["lr"])
    if not trained:
        n_diverged = sum(r["status"] == "diverged" for r in records)
        why = f": {n_diverged} of {len(records)} runs diverged (a diverged run is not evaluated)" if n_diverged else ""
        return _say_why_empty(ax, f"No run has a {method} pruning curve{why}.", title)
    fractions = [0.0] + trained[0]["curves"]["prune_fractions"]
    cmap = plt.get_cmap("viridis")
    for i, lr in enumerate(sorted(by_lr)):
        label = f"LR {lr:g}" + (" (under-trained)" if lr in under_trained else "")
        ax.plot(fractions, np.mean(by_lr[lr], 0), color=cmap(i / max(1, len(by_lr) - 1)), label=label,
                linestyle=":" if lr in under_trained else "-")
    ax.set_xlabel(f"pruning fraction ({method.replace('_bn_batch', ', BN batch stats')})")
    ax.set_ylabel("unbiased test accuracy")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, frameon=False)
    return ax


def plot_attribution_maps(maps_by_lr: dict, n: int = 6, title: str | None = None):
    """Fig. 8: Integrated-Gradients maps (|attribution| summed over channels, each scaled to its own
    maximum) of the same first test inputs (columns) for each LR (rows). `maps_by_lr` maps an LR to
    a run's `attribution_maps` artefact (arrays maps, y, b)."""
    import matplotlib.pyplot as plt

    lrs = sorted(maps_by_lr)
    n = min([n] + [len(maps_by_lr[lr]["maps"]) for lr in lrs])
    h, w = maps_by_lr[lrs[0]]["maps"].shape[1:]
    fig, axes = plt.subplots(len(lrs), n, figsize=(1.5 * n * w / h + 0.6, 1.6 * len(lrs) + 0.5), squeeze=False)
    for i, lr in enumerate(lrs):
        arrays = maps_by_lr[lr]
        for j in range(n):
            m = arrays["maps"][j].astype(np.float32)
            ax = axes[i, j]
            ax.imshow(m / max(float(m.max()), 1e-30), cmap="inferno", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"y={int(arrays['y'][j])}, b={int(arrays['b'][j])}", fontsize=8)
        axes[i, 0].set_ylabel(f"LR {lr:g}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def lr_explorer(store, df, metrics=LR_EFFECT_METRICS):
    """An ipywidgets slider over the stored LRs of one cell: per-seed metrics and the attribution
    trace of the chosen LR. Needs a live kernel; the book shows the static figures instead."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    lrs = sorted(df.lr.unique())
    slider = widgets.SelectionSlider(options=[(f"{v:g}", v) for v in lrs], description="LR")
    out = widgets.Output()

    def show(change=None):
        with out:
            out.clear_output(wait=True)
            sub = df[df.lr == slider.value]
            display(sub[["seed", "status", "epochs", *[m for m in metrics if m in sub]]].round(4))
            rec = store.get(sub.run_id.iloc[0])
            fig, ax = plt.subplots(figsize=(4.5, 3))
            plot_attribution_trace(rec, ax=ax, title=f"LR {slider.value:g}, seed {rec['config']['seed']}")
            plt.show()

    slider.observe(show, names="value")
    show()
    return widgets.VBox([slider, out])
