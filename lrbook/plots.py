"""Plots of Sec. 5 (pages 01 and 02): several metrics against LR on a log axis, each normalised to
[0, 1] per variable as in the paper (raw ranges go in a table beside), attribution traces, pruning
curves and attribution maps. Each takes its data first and `ax=None` (or `axes=None`); it draws on
the axes given, or on a new figure, and returns the axes (the figure for multi-panel plots)."""
from __future__ import annotations

import numpy as np

from .selection import MIN_SCORED_TRAIN_ACC, prunability_reading, scored_runs
from .tables import lr_summary
from .vocabulary import LR_EFFECT_METRICS, METRIC_LABELS
COLORS = {"test_acc": "#1f77b4", "prunability": "#d62728", "act_compressibility": "#2ca02c",
          "csi": "#9467bd", "class_separation": "#ff7f0e", "max_bc_loss_ratio": "#8c564b",
          "core": "#2ca02c", "spurious": "#d62728", "noise": "#7f7f7f",
          # page 05's panels (`vocabulary.ATTRIBUTION_METRICS`, `PATCH_METRICS`): a colour of their own each
          "test_ba_minus_bc": "#e377c2", "attr_patch": "#17becf", "bsi": "#bcbd22", "attr_entropy": "#8c564b",
          "attr_background": "#7f7f7f", "csi_minus_bsi": "#393b79", "attr_core": "#2ca02c",
          # Fig. 26's alternative compressibility measures, beside act. compressibility
          "act_sparsity": "#17becf", "act_pq_index": "#e377c2", "param_compressibility": "#8c564b"}


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


def plot_lr_effects(df, metrics=LR_EFFECT_METRICS, ax=None, title=None, normalise=True, scored_only=False,
                    reading: str | None = None):
    """Mean over seeds (line) and +-1 sd (band) of each metric against LR, log x axis; each metric
    min-max normalised over its per-LR means, as in the paper's figures. `scored_only`: plot only
    the runs the comparison with the paper uses (`selection.scored_runs`). "prunability" is drawn
    with `reading`, or when None the reading of the runs shown (`selection.prunability_reading`).
    With nothing to plot (every run diverged or under-trained, or no runs) the panel says so instead."""
    import matplotlib.pyplot as plt

    from .prose import nothing_scored_note

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2))
    shown = scored_runs(df) if scored_only and len(df) else df
    if "prunability" in metrics and len(shown):  # the cell's reading (`selection.prunability_reading`)
        reading = reading or prunability_reading(shown)
        metrics = tuple(reading if m == "prunability" else m for m in metrics)
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
        color = COLORS.get(m, COLORS["prunability"] if m.startswith("prunability") else None)
        ax.plot(s.lr, (mu - lo) / span, "o-", color=color, label=METRIC_LABELS.get(m, m), ms=4)
        ax.fill_between(s.lr, (mu - sd - lo) / span, (mu + sd - lo) / span, color=color, alpha=0.15)
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


def plot_synthetic_cell(data: dict, axes=None):
    """Fig. 3 / 15 for one cell, 2 x 2: LR effects, accuracy vs structured pruning, and the attribution
    trace of the lowest and the highest LR. `data`: `figures.synthetic_cell(...).data`."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(2, 2, figsize=(10, 7))
    axes = np.asarray(axes).ravel()
    plot_lr_effects(data["runs"], LR_EFFECT_METRICS, ax=axes[0], title="LR effects")
    plot_pruning_curves(data["records"], ax=axes[1], title="accuracy vs pruning")
    for ax, rec, which in ((axes[2], data["low"], "lowest"), (axes[3], data["high"], "highest")):
        plot_attribution_trace(rec, ax=ax, which=which)
    axes[0].figure.tight_layout()
    return axes[0].figure


def plot_parity_settings(data: dict, ax=None):
    """`figures.parity_calibration`: unbiased accuracy (%) against LR per parity setting, Table S1's
    two ends marked."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, runs in data["swept"]:
        s = lr_summary(scored_runs(runs), ("test_acc",))
        ax.errorbar(s.lr, 100 * s.test_acc_mean, yerr=100 * s.test_acc_sd.fillna(0), marker="o", ms=4, capsize=3,
                    label=name)
    lrs, accs = zip(*data["paper"])
    ax.plot(lrs, [100 * a for a in accs], "kx", ms=9, mew=2, ls="none", label="Table S1 (its min and max)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("unbiased test accuracy (%)")
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


def plot_cell_panels(data: dict, axes=None):
    """Fig. 4/16 or 5: one `plot_lr_effects` panel per cell (two per row), scored runs only.
    `data`: `figures.lr_effect_panels(...).data`."""
    import matplotlib.pyplot as plt

    from .vocabulary import cell_title

    cells, runs = data["cells"], data["runs"]
    cols = min(2, len(cells))
    rows = -(-len(cells) // cols)
    if axes is None:
        _, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    axes = np.asarray(axes).ravel()
    for ax, (d, m) in zip(axes, cells):
        sub = runs[(runs.dataset == d) & (runs.model == m)]
        shown = scored_runs(sub)
        left_out = f", {len(sub) - len(shown)} left out" if len(shown) < len(sub) else ""
        plot_lr_effects(sub, data["metrics"], ax=ax, scored_only=True,
                        title=f"{cell_title(d, m)}\n({sub.scale.iloc[0]}, {len(shown)} runs{left_out})")
    for ax in axes[len(cells):]:
        ax.axis("off")
    axes[0].figure.tight_layout()
    return axes[0].figure


def plot_pruning_panels(data: dict, axes=None):
    """Fig. 21/22 for one cell: structured and magnitude pruning curves, and the structured curve
    with BatchNorm batch statistics where runs store it. `data`: `figures.pruning_curves(...).data`."""
    import matplotlib.pyplot as plt

    n = 3 if data["bn_batch"] else 2
    if axes is None:
        _, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.6))
    axes = np.asarray(axes).ravel()
    plot_pruning_curves(data["records"], "structured", ax=axes[0], title="structured")
    plot_pruning_curves(data["records"], "magnitude", ax=axes[1], title="magnitude")
    if data["bn_batch"]:
        plot_pruning_curves(data["bn_batch"], "structured_bn_batch", ax=axes[2],
                            title=f"structured, BN batch stats\n({len(data['bn_batch'])} runs)")
    axes[0].figure.tight_layout()
    return axes[0].figure


def plot_intervention_panels(data: dict, axes=None):
    """Fig. 6 / 20 for one cell: one `plot_lr_effects` panel per intervention (LR first), unbiased
    accuracy, prunability and CSI against its hyperparameter, each normalised as in the paper.
    `data`: `figures.intervention_panels(...).data`."""
    import matplotlib.pyplot as plt

    from .vocabulary import HYPERPARAMETER_LABELS, INTERVENTION_METRICS, INTERVENTIONS

    panels = data["panels"]
    metrics = data.get("metrics", INTERVENTION_METRICS)
    # one reading for the whole cell (`figures.intervention_panels`), not one per panel
    reading = next((m for m in metrics if m.startswith("prunability")), None)
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    if axes is None:
        _, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    axes = np.asarray(axes).ravel()
    for ax, (name, runs) in zip(axes, panels):
        title = f"{INTERVENTIONS[name]} ({len(runs)} runs)"
        if runs.empty:
            stored = data.get("stored", {}).get(name)
            _say_why_empty(ax, "No stored runs of this intervention." if stored == 0 else
                           "No runs of this intervention that reached 100% training accuracy.", title)
            continue
        if name == "momentum":  # 0.71 to 0.99 would crowd a log axis: space by 1 / (1 - m), SGD's step multiplier
            plot_lr_effects(runs.assign(lr=1 / (1 - runs.hp)), metrics, ax=ax, title=title, reading=reading)
            ax.set_xticklabels([f"{v:g}" for v in sorted(set(runs.hp))], fontsize=8)
            ax.set_xlabel("momentum (axis: 1 / (1 − momentum))")
            continue
        plot_lr_effects(runs.assign(lr=runs.hp), metrics, ax=ax, title=title, reading=reading)
        if name == "batch_size":
            ax.set_xticklabels([hyperparameter_value_label(name, v) for v in sorted(set(runs.hp))], fontsize=8)
        ax.set_xlabel(HYPERPARAMETER_LABELS[name])
    for ax in axes[len(panels):]:
        ax.axis("off")
    axes[0].figure.tight_layout()
    return axes[0].figure


def _seed_mean(curves: list[list[float]]) -> np.ndarray:
    """Mean over seeds at each epoch, over the seeds still training there."""
    longest = max(len(c) for c in curves)
    padded = np.full((len(curves), longest), np.nan)
    for i, c in enumerate(curves):
        padded[i, :len(c)] = c
    with np.errstate(invalid="ignore"):
        return np.nanmean(padded, axis=0)


def hyperparameter_value_label(intervention: str, value: float) -> str:
    """A hyperparameter value as a tick or legend label; batch size in Table S2's encoding 1 / B is
    written "1/B" (1/42, not 0.0238095)."""
    return f"1/{round(1 / value)}" if intervention == "batch_size" else f"{value:.3g}"


def plot_intervention_dynamics(data: list, axes=None):
    """Fig. 9: per intervention (rows), the per-epoch training dynamics of each hyperparameter value
    (colour, weakest to strongest), mean over seeds: the largest BC loss ratio of the epoch's steps
    (Sec. 6's measure of how much the BC samples dominate the loss), and the mean cross-entropy of BC
    (solid) and BA (dashed) samples. `data`: `figures.intervention_dynamics(...).data`, a list of
    (intervention, {hyperparameter value: [records]})."""
    import matplotlib.pyplot as plt

    from .vocabulary import HYPERPARAMETER_LABELS, INTERVENTIONS

    if axes is None:
        _, axes = plt.subplots(len(data), 2, figsize=(10, 2.9 * len(data)), squeeze=False)
    axes = np.asarray(axes).reshape(len(data), 2)
    cmap = plt.get_cmap("viridis")
    for (name, by_value), (ax_ratio, ax_loss) in zip(data, axes):
        values = sorted(by_value)
        for i, value in enumerate(values):
            color = cmap(i / max(1, len(values) - 1))
            per_epoch = [r["curves"]["per_epoch"] for r in by_value[value]]
            label = hyperparameter_value_label(name, value)
            ax_ratio.plot(_seed_mean([c["bc_loss_ratio_max"] for c in per_epoch]), color=color, label=label)
            ax_loss.plot(_seed_mean([c["bc_loss"] for c in per_epoch]), color=color, label=label)
            ax_loss.plot(_seed_mean([c["ba_loss"] for c in per_epoch]), color=color, linestyle="--")
        ax_ratio.set_ylabel("max BC loss ratio")
        ax_ratio.set_title(f"{INTERVENTIONS[name]}: BC share of the loss", fontsize=9)
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("mean cross-entropy")
        ax_loss.set_title(f"{INTERVENTIONS[name]}: BC (solid) and BA (dashed) loss", fontsize=9)
        # An opaque frame keeps the legend readable over noisy curves (High LR + L2 at 1e-3).
        ax_ratio.legend(title=HYPERPARAMETER_LABELS[name], fontsize=7, title_fontsize=7, framealpha=0.85)
        for ax in (ax_ratio, ax_loss):
            ax.set_xlabel("epoch")
    axes[0, 0].figure.tight_layout()
    return axes[0, 0].figure


def plot_contrast_maps(data: dict):
    """Fig. 8, 35, 36 (page 05): for each chosen test image (columns) the image, then its map at the
    low and the high LR (rows), each map scaled to its own maximum. `data`: `figures.contrast_maps`."""
    import matplotlib.pyplot as plt

    chosen, maps = data["chosen"], data["maps"]
    lrs = (data["low_lr"], data["high_lr"])
    fig, axes = plt.subplots(3, len(chosen), figsize=(1.6 * len(chosen) + 0.6, 5.4), squeeze=False)
    for j, i in enumerate(chosen):
        image = maps[lrs[0]]["x"][i]
        axes[0, j].imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0), cmap="gray")
        axes[0, j].set_title(f"y={int(maps[lrs[0]]['y'][i])}", fontsize=8)
        for row, lr in enumerate(lrs, start=1):
            m = maps[lr]["maps"][i].astype(np.float32)
            axes[row, j].imshow(m / max(float(m.max()), 1e-30), cmap="inferno", vmin=0, vmax=1)
            axes[row, j].set_title(f"{100 * data['rates'][lr][j]:.0f}% correct", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=9)
    for row, lr in enumerate(lrs, start=1):
        axes[row, 0].set_ylabel(f"LR {lr:g}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_frequency_bands(means, ax=None):
    """`figures.frequency_bands`: accuracy (%) against frequency band, one line per LR (low LRs
    light, high LRs dark). `means`: per-LR rows of the band accuracies."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    colors = plt.cm.viridis_r(np.linspace(0.15, 0.95, len(means)))
    for (lr, row), color in zip(means.iterrows(), colors):
        ax.plot(range(len(row)), 100 * row.to_numpy(float), "o-", ms=4, color=color, label=f"LR {lr:g}")
    ax.set_xlabel("frequency band kept (0: lowest)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(range(len(means.columns)))
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


def plot_patch_dynamics(curves: dict, ax=None):
    """The patch experiment: BA - BC test accuracy (points) against epoch, one colour per LR, one line
    per seed. `curves`: LR -> [(epochs, gap), ...] (`figures.patch_dynamics`)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(curves)))
    for colour, lr in zip(colours, sorted(curves)):
        for k, (epochs, gap) in enumerate(curves[lr]):
            ax.plot(np.maximum(epochs, 1e-2), 100 * gap, color=colour, lw=1.2, label=f"LR {lr:g}" if k == 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel("epoch (log scale)")
    ax.set_ylabel("BA − BC test accuracy (points)")
    ax.axhline(0, color="grey", lw=0.6)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure
