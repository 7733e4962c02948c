"""Plots of Sec. 6 (page 06): the two propositions, Fig. 12, Fig. 13 and Fig. 18. Each takes its data
first and `ax=None` / `axes=None`, draws on the axes given or on a new figure, and returns the axes
(one panel) or the figure (several)."""
from __future__ import annotations

import numpy as np

from .mechanism import curve, epoch_steps
from .selection import scored_runs
from .theory import bc_loss_share


def _new_axes(axes, rows, cols, figsize, **kwargs):
    """`axes` as a 2-D array, or a new figure's rows x cols axes when None."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False, **kwargs)
    return np.asarray(axes, dtype=object).reshape(rows, cols) if np.ndim(axes) else np.array([[axes]], dtype=object)


def plot_bc_loss_share(scales, bc_fractions=(0.01, 0.05, 0.1), margin_bc=1.0, margin_ba=1.0, batch=100, ax=None):
    """Proposition 1: BC share of the minibatch loss against the logit scale, one line per BC fraction."""
    import matplotlib.pyplot as plt

    ax = _new_axes(ax, 1, 1, (5, 3.6))[0, 0]
    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(bc_fractions):
        ax.plot(scales, bc_loss_share(scales, margin_bc, margin_ba, r, batch),
                color=cmap(i / max(1, len(bc_fractions) - 1)), label=f"BC fraction {r:.0%}")
    ax.set_xlabel("logit scale s")
    ax.set_ylabel("BC share of minibatch loss")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"margins: BC {margin_bc:g}, BA {margin_ba:g}")
    ax.legend(frameon=False)
    return ax


def plot_gradient_shares(prop2: dict, axes=None):
    """Proposition 2: left, the BC share of each branch's per-sample gradient norms against the logit
    scale, one colour per BC fraction; right, both branches' gradient norms at BC fraction 5%.
    `prop2` maps a BC fraction to its `theory.gradient_norm_shares` frame."""
    import matplotlib.pyplot as plt

    axes = _new_axes(axes, 1, 2, (11, 4)).ravel()
    cmap = plt.get_cmap("viridis")
    for i, (r, t) in enumerate(prop2.items()):
        color = cmap(i / max(1, len(prop2) - 1))
        axes[0].plot(t.scale, t.bc_share_spur, "-", color=color, label=f"spurious branch, BC {r:.0%}")
        axes[0].plot(t.scale, t.bc_share_core, ":", color=color, lw=2.2, label=f"core branch, BC {r:.0%}")
    t = prop2[0.05] if 0.05 in prop2 else next(iter(prop2.values()))
    axes[1].plot(t.scale, t.grad_spur, "-", color="#d62728", label="spurious branch")
    axes[1].plot(t.scale, t.grad_core, "-", color="#2ca02c", label="core branch")
    axes[1].plot(t.scale, t.scale * t.grad_spur.iloc[-1] / t.scale.iloc[-1], ":", color="grey", label="∝ s")
    axes[0].set(xscale="log", xlabel="logit scale s", ylabel="BC share of per-sample\ngradient norms",
                ylim=(0, 1.02), title="who drives each subnetwork's gradient")
    axes[1].set(xscale="log", yscale="log", xlabel="logit scale s", ylabel="‖∇ minibatch loss‖ (Frobenius)",
                title=f"gradient norm per subnetwork, BC {t.attrs.get('bc_fraction', 0.05):.0%}")
    axes[0].legend(fontsize=8, frameon=False, loc="center right")
    axes[1].legend(fontsize=8, frameon=False, loc="upper left")
    axes[0].figure.tight_layout()
    return axes[0].figure


def plot_max_bc_scatter(runs, ax=None, title=None):
    """Fig. 12 panel: max BC loss ratio (x) vs unbiased test accuracy (y), one point per run, colour
    = LR on a log scale (with a colorbar); diverged and under-trained runs are not plotted."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    ax = _new_axes(ax, 1, 1, (5, 3.8))[0, 0]
    ok = scored_runs(runs)
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


def plot_dynamics(low_recs, high_recs, axes=None):
    """Fig. 13 for one cell: per-epoch curves of low- and high-LR runs against the training step.
    axes[0]: BC and BA mean loss (log y); axes[1]: BC loss ratio, epoch mean and epoch max;
    axes[2]: mean logit norm; axes[3]: spurious (and core) attribution share from the attribution
    trace if the runs have one, else BA and BC test accuracy from the trace, else a note."""
    axes = _new_axes(axes, 2, 2, (11, 7)).ravel()
    styles = {"low": "#1f77b4", "high": "#d62728"}
    for which, recs in (("low", low_recs), ("high", high_recs)):
        c = styles[which]
        for k, r in enumerate(recs):
            lab = (lambda s: f"LR {r['config']['lr']:g} {s}") if k == 0 else (lambda s: None)
            alpha = 0.9 if k == 0 else 0.35
            x = epoch_steps(r)
            axes[0].plot(x, curve(r, "bc_loss"), "-", color=c, alpha=alpha, label=lab("BC"))
            axes[0].plot(x, curve(r, "ba_loss"), ":", color=c, alpha=alpha, label=lab("BA"))
            axes[1].plot(x, curve(r, "bc_loss_ratio_mean"), "-", color=c, alpha=alpha, label=lab("mean"))
            axes[1].plot(x, curve(r, "bc_loss_ratio_max"), "--", color=c, alpha=alpha, label=lab("max"))
            axes[2].plot(x, curve(r, "logit_norm"), "-", color=c, alpha=alpha,
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
    axes[0].figure.tight_layout()
    return axes[0].figure


def plot_persistence(persistence: dict, axes=None):
    """Fig. 18 (top): share of units class-dominant (left) or bias-dominant (right) at step t that are
    still so at the end of training. `persistence` maps (LR, seed) to a `mechanism.neuron_persistence`
    frame; one colour per LR."""
    import matplotlib.pyplot as plt

    axes = _new_axes(axes, 1, 2, (11, 3.8), sharey=True).ravel()
    lrs = sorted({lr for lr, _ in persistence})
    colors = dict(zip(lrs, plt.get_cmap("coolwarm")(np.linspace(0, 1, len(lrs)))))
    for ax, kind, label in ((axes[0], "class_persist", "class-dominant"), (axes[1], "bias_persist", "bias-dominant")):
        labelled = set()
        for (lr, seed), p in sorted(persistence.items()):
            ax.plot(p.step + 1, p[kind], "o-", ms=3, color=colors[lr], alpha=0.8,
                    label=None if lr in labelled else f"LR {lr:g}")
            labelled.add(lr)
        ax.set_xscale("log")
        ax.set_xlabel("training step + 1")
        ax.set_title(f"{label} at step t, still so at the end")
        ax.legend(fontsize=8, frameon=False)
    axes[0].set_ylabel("share of units")
    axes[0].figure.tight_layout()
    return axes[0].figure


def plot_unit_trace(trace: dict, units: list[int], axes=None):
    """Fig. 18 (bottom) for the given units: axes[0] their spurious share over training, axes[1] the
    size of the updates to their incoming weights in each interval between trace points."""
    import matplotlib.pyplot as plt

    axes = _new_axes(axes, 2, 1, (9, 4.6), sharex=True).ravel()
    steps = np.asarray(trace["step"])
    share = np.asarray(trace["spurious_share"], float)
    update = np.asarray(trace["update_sum"], float)
    for c, u in zip(plt.get_cmap("tab10")(np.arange(len(units)) % 10), units):
        axes[0].plot(steps, share[:, u], "-", color=c, lw=1.2, label=f"unit {u}")
        axes[1].plot(steps[1:], update[1:, u], "-", color=c, lw=1.0)
    axes[0].set_ylabel("spurious share of\nthe unit's activation")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=7, frameon=False, ncol=len(units))
    axes[1].set_ylabel("update size per interval\n(sum of lr·‖∇w‖)")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("training step")
    return axes[0].figure


def plot_max_bc_panels(runs, axes=None):
    """Fig. 12: one `plot_max_bc_scatter` panel per cell of `runs`, two per row."""
    from .prose import describe_runs
    from .selection import stored_cells
    from .vocabulary import cell_title

    cells = stored_cells(runs)
    cols = min(2, len(cells))
    rows = -(-len(cells) // cols)
    axes = _new_axes(axes, rows, cols, (5.6 * cols, 4.2 * rows)).ravel()
    for ax, (d, m) in zip(axes, cells):
        sub = runs[(runs.dataset == d) & (runs.model == m)]
        plot_max_bc_scatter(sub, ax=ax, title=f"{cell_title(d, m)}\n{describe_runs(sub)}")
    for ax in axes[len(cells):]:
        ax.axis("off")
    axes[0].figure.tight_layout()
    return axes[0].figure
