"""One function per figure and table of the section pages, each returning data: a `Figure` (the runs
it shows, what its plot function needs, tables and a caption generated from the data) or a frame.
The plot functions are in `plots` and `mechanism_plots`; `book.show` draws a `Figure` on a page."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import prose
from .compare import compare_with_paper
from .paper import paper_reference_table, paper_row
from .selection import (cells_with_scored_runs, cell_scales, low_high_records, pick_lrs, prunability_reading,
                        scored_metrics, scored_runs, seed_records, select_runs, stored_cells, traced_lrs, with_logging)
from .stats import bootstrap_spearman, spearman
from .tables import comparison_table, format_summary, lr_summary
from .vocabulary import (COMPRESSIBILITY_MEASURES, CSI_ATTRIBUTION_METRICS, EXACT_FOREGROUND, LR_EFFECT_METRICS, METRIC_LABELS, PRUNABILITY_READINGS, REPRESENTATION_METRICS,
                         SELECTIVITY_CHECKS, cell_title)


@dataclass
class Figure:
    """What a page shows for one figure: `data` for its `plot` function (None: nothing to draw),
    `caption` (numbered after the paper's), `notes` printed before it and `tables` after it."""

    caption: str
    data: Any = None
    plot: Callable | None = None
    notes: list[str] = field(default_factory=list)
    tables: dict = field(default_factory=dict)
    runs: Any = None


# ---------------------------------------------------------------------------------------------- Sec. 5


def synthetic_cell(store, dataset: str, scale: str, number: str) -> Figure:
    """Fig. 3 (parity) / Fig. 15 (moon-star): LR effects, accuracy vs pruning, and the attribution
    trace of the lowest and highest LR; the per-LR values and Table S1 beside ours."""
    from .plots import plot_synthetic_cell

    runs = select_runs(store.to_frame(), (dataset, "fcn"), scale=scale)
    if runs.empty:
        return Figure(caption="", notes=[prose.no_data_message(dataset, "fcn", scale, "notebooks/01_synthetic.ipynb")],
                      tables={"Table S1 (the paper's values)": paper_reference_table(dataset, "fcn")}, runs=runs)
    low, high = low_high_records(store, runs)
    metrics = scored_metrics(LR_EFFECT_METRICS + ("test_bc_acc", "max_bc_loss_ratio"), runs)
    tables = {"Per LR, mean ± sd over seeds": format_summary(lr_summary(runs, metrics), metrics,
                                                             percent=("test_acc", "test_bc_acc"))}
    if not scored_runs(runs).empty:
        tables["Against Table S1"] = comparison_table(compare_with_paper(runs, dataset, "fcn"))
    trace = "attribution share on core, spurious and noise bits" if dataset == "parity" else "BA and BC test accuracy"
    caption = prose.figure_caption(number, f"{cell_title(dataset, 'fcn')}. Top left: unbiased test accuracy, "
                                           f"prunability and activation compressibility against LR (normalised). "
                                           f"Top right: accuracy against structured pruning fraction. Bottom: {trace} "
                                           "over training, lowest and highest LR", runs)
    return Figure(caption, dict(runs=runs, low=low, high=high, records=[store.get(r) for r in runs.run_id]),
                  plot_synthetic_cell, [prose.coverage_note(runs, runs.scale.iloc[0])], tables, runs)


def lr_effect_panels(runs, cells, metrics, number: str, what: str) -> Figure:
    """Fig. 4/16 (`LR_EFFECT_METRICS`) or Fig. 5 (`REPRESENTATION_METRICS`): one panel per cell of
    `cells` with runs in `runs` (already selected), metrics against LR over its scored runs."""
    from .plots import plot_cell_panels

    shown = [c for c in cells if c in stored_cells(runs)]
    if not shown:
        return Figure("", notes=["**No stored runs for the selected cells.**"])
    sub = select_runs(runs, shown, scale="all")
    return Figure(prose.figure_caption(number, what + "; one panel per cell, line: mean over seeds, band: one sd", sub),
                  dict(runs=sub, cells=shown, metrics=metrics), plot_cell_panels, runs=sub)


def cells_without_runs(cells, runs):
    """The paper's LR and accuracy range (Table S1) for each cell of `cells` without stored runs."""
    import pandas as pd

    rows = []
    for d, m in cells:
        if (d, m) in stored_cells(runs):
            continue
        ref = paper_row(d, m)
        rows.append({"cell": cell_title(d, m),
                     "paper LR range": "—" if ref is None else f"{ref.lr_min:g} to {ref.lr_max:g}",
                     "paper acc. range (%)": "—" if ref is None else f"{ref.test_acc_min:.1f} to {ref.test_acc_max:.1f}",
                     "why no runs": "CIFAR-10 not available on the build machine" if "cifar" in d else "not trained yet"})
    return pd.DataFrame(rows)


def pruning_curves(store, runs, cell) -> Figure:
    """Fig. 21/22 for one cell: accuracy against structured and magnitude pruning fraction; for runs that
    also store it, the structured curve with BatchNorm batch statistics, its table and Spearman line."""
    from .plots import plot_pruning_panels

    sub = select_runs(runs, cell, scale="all")
    records = [store.get(r) for r in sub.run_id]
    bn_batch = [r for r in records if "prune_structured_bn_batch" in r["curves"]]
    notes, tables = [], {}
    if bn_batch:
        both = sub[sub.run_id.isin([r["run_id"] for r in bn_batch])]
        keys = ("prunability", "prunability_bn_batch")
        tables["Prunability with running and with batch BN statistics"] = format_summary(lr_summary(both, keys), keys)
        if both.lr.nunique() >= 2:
            notes.append(f"Spearman with LR over these {len(both)} runs ({both.lr.nunique()} LRs), 95% seed-bootstrap "
                         "interval: " + "; ".join(f"{k} {spearman(both.lr, both[k]):+.2f} "
                                                  "[{:+.2f}, {:+.2f}]".format(*bootstrap_spearman(both, k)) for k in keys))
    readings = prunability_readings(sub)
    if len(readings):
        tables["Every reading of prunability (Definitions: which one and why), over the runs that have it"] = readings
    caption = prose.figure_caption("Fig. 21, 22", f"{cell_title(*cell)}: unbiased test accuracy against the fraction "
                                   "pruned, structured and magnitude" + (", and structured with BN batch statistics"
                                                                          if bn_batch else ""), sub)
    return Figure(caption, dict(records=records, bn_batch=bn_batch, cell=cell), plot_pruning_panels,
                  tables=tables, runs=sub, notes=notes)


def prunability_readings(runs):
    """One row per prunability reading (`vocabulary.PRUNABILITY_READINGS`) that one cell's scored runs
    have: how many runs, the range of its per-LR means, and its Spearman correlation with LR with
    the 95% seed-bootstrap interval."""
    import pandas as pd

    ok = scored_runs(runs)
    rows = []
    for key in PRUNABILITY_READINGS:
        if key not in ok or ok[key].isna().all():
            continue
        have = ok[ok[key].notna()]
        means = have.groupby("lr")[key].mean()
        rho = spearman(have.lr, have[key])
        lo, hi = bootstrap_spearman(have, key) if have.lr.nunique() >= 2 else (float("nan"), float("nan"))
        rows.append({"reading": METRIC_LABELS.get(key, key), "runs": len(have), "LRs": have.lr.nunique(),
                     "per-LR mean": f"{means.min():.3f} to {means.max():.3f}",
                     "Spearman with LR [95%]": f"{rho:+.2f} [{lo:+.2f}, {hi:+.2f}]" if np.isfinite(rho) else "—"})
    return pd.DataFrame(rows)


def parity_calibration(store, scale: str = "paper") -> Figure:
    """Parity's difficulty against Table S1 (`lrbook.calibration`): every setting tried at the
    paper's lowest parity LR, closest to Table S1's accuracy there first; and for every setting with
    an LR sweep, its unbiased accuracy against LR (plot) and Table S1 beside ours (tables)."""
    import pandas as pd

    from .calibration import SETTING_FIELDS, calibration_table, paper_target, setting_runs
    from .config import preset_dataset_params
    from .plots import plot_parity_settings

    runs = store.to_frame()
    table = calibration_table(runs, scale)
    lr, target = paper_target()
    if table.empty:
        return Figure("", notes=[f"**No parity runs at LR {lr:g} and scale `{scale}` are stored.**"])
    preset = {f: preset_dataset_params("parity", "fcn", scale)[f] for f in SETTING_FIELDS}
    is_preset = [all(np.isclose(float(r[f]), float(preset[f])) for f in SETTING_FIELDS) for _, r in table.iterrows()]
    shown = pd.DataFrame({
        "setting": table.setting, "seeds": table.seeds,
        "unbiased acc. at LR 0.01": [f"{100 * a:.1f}%" + (f" ± {100 * sd:.1f}" if np.isfinite(sd) else "")
                                     for a, sd in zip(table.test_acc, table.sd)],
        "against Table S1": [f"{100 * g:+.1f} pts" for g in table.gap],
        "epochs": [f"{e:.0f}" for e in table.epochs],
        "the page's parity": ["yes (preset)" if p else "" for p in is_preset]})
    tables = {f"Every setting tried at LR {lr:g} (scale `{scale}`), closest to Table S1's {100 * target:.2f}% first": shown}
    swept = []
    for (_, row), p in zip(table.iterrows(), is_preset):
        sub = setting_runs(runs, {f: row[f] for f in SETTING_FIELDS}, scale)
        sub = select_runs(sub, ("parity", "fcn"), scale="all", presets_only=False)
        if sub.lr.nunique() >= 2:
            name = row.setting + (" (the page's parity)" if p else "")
            swept.append((name, sub))
            if not scored_runs(sub).empty:
                tables[f"Against Table S1: {name}"] = comparison_table(
                    compare_with_paper(sub, "parity", "fcn", presets_only=False))
    ref = paper_row("parity", "fcn")
    caption = prose.figure_caption(
        "Parity's difficulty", "unbiased test accuracy against LR for each parity setting with an LR sweep "
        f"(mean ± sd over seeds); crosses: Table S1's lowest and highest parity accuracy, at LR {ref.lr_min:g} "
        f"and {ref.lr_max:g} (the table gives only its range, so they mark the ends, not a curve)")
    return Figure(caption, dict(swept=swept, paper=[(float(ref.lr_min), float(ref.test_acc_min) / 100),
                                                    (float(ref.lr_max), float(ref.test_acc_max) / 100)]),
                  plot_parity_settings if swept else None, tables=tables, runs=runs)


def attribution_maps(store, runs, cell) -> Figure:
    """Fig. 8 for one cell of `FIG8_DATASETS`: the share of attribution on the spurious region per LR
    and the maps of the same test inputs at the lowest and highest LR."""
    from .plots import plot_attribution_maps

    sub = select_runs(runs, cell, scale="all")
    sub = sub[sub.status != "diverged"]
    if "attr_spurious" not in sub or sub.attr_spurious.isna().all():
        return Figure("", notes=[f"{cell_title(*cell)}: no attribution shares stored."])
    share = sub.groupby("lr").attr_spurious.agg(["mean", "std", "count"]).round(3).reset_index()
    share = share.rename(columns={"lr": "LR", "mean": "spurious share", "std": "sd", "count": "runs"})
    tables = {"The share of attribution on the spurious region, mean ± sd over seeds": share}
    lo, hi = low_high_records(store, sub)
    if lo is None:
        return Figure("", notes=[prose.nothing_scored_note(sub, sub.scale.iloc[0]) + " No maps are shown."],
                      tables=tables)
    arrays = {r["config"]["lr"]: store.get_artefact(r["run_id"], "attribution_maps")
              for r in (lo, hi) if store.has_artefact(r["run_id"], "attribution_maps")}
    lost = [r["config"]["lr"] for r in (lo, hi)
            if "attribution_maps" in r.get("artefacts", []) and not store.has_artefact(r["run_id"], "attribution_maps")]
    notes = [f"The maps of LR {', '.join(f'{lr:g}' for lr in lost)} were computed but their files were not copied "
             "back from the GPU machine that trained them; the shares come from the records."] if lost else []
    caption = prose.figure_caption("Fig. 8", f"{cell_title(*cell)}: Integrated-Gradients maps of the same first test "
                                   f"inputs (columns) at the lowest and highest LR (rows), seed {lo['config']['seed']}",
                                   sub)
    return Figure(caption, arrays or None, plot_attribution_maps if arrays else None, notes, tables, sub)


def compressibility_measures(runs, cells) -> Figure:
    """Fig. 26 (supplement C): activation compressibility beside the paper's alternative measures of
    compressibility (activation sparsity, PQ-index, parameter compressibility) against LR, one panel
    per cell of `cells` with runs in `runs` (already selected); the table marks each measure's trend
    ✓ (rises with LR, as the paper finds), ✗ (falls) or ? (unclear), with its Spearman correlation."""
    import pandas as pd

    from .compare import lr_trends
    from .tables import spearman_text

    fig = lr_effect_panels(runs, cells, COMPRESSIBILITY_MEASURES, "Fig. 26",
                           "activation compressibility and (the paper's alternatives) activation sparsity, "
                           "PQ-index and parameter compressibility against LR")
    if fig.plot is None:
        return fig
    marks = {"rises": "✓", "falls": "✗", "unclear": "?"}
    rows = {}
    for r in lr_trends(fig.runs, COMPRESSIBILITY_MEASURES).itertuples():
        row = rows.setdefault((r.dataset, r.model, r.scale), {"cell": cell_title(r.dataset, r.model), "scale": r.scale})
        row["runs"] = max(row.get("runs", 0), r.runs)
        row[METRIC_LABELS[r.measure]] = f"{marks[r.direction]} {spearman_text(r.spearman, r.ci_low, r.ci_high)}"
    fig.tables = {"Spearman correlation with LR [95% seed-bootstrap interval]; ✓ rises, ✗ falls, ? unclear":
                  pd.DataFrame(list(rows.values())).fillna("—")}
    return fig


def csi_attribution(runs) -> Figure:
    """Fig. 27 (supplement D): CSI, CSI − BSI and the core attribution share against LR, one panel
    per cell of `runs` (already selected) whose features sit in separate regions, with
    `compare.attribution_agreement` as the table: does each index go the core share's way?"""
    import pandas as pd

    from .compare import attribution_agreement
    from .plots import plot_cell_panels
    from .tables import spearman_text

    agreement = attribution_agreement(runs)
    if agreement.empty:
        return Figure("", notes=["No selected cell stores attribution shares on separate core and spurious "
                                 "regions (Double MNIST, MNIST-CIFAR), so Fig. 27 has nothing to show."])
    cells = list(dict.fromkeys(zip(agreement.dataset, agreement.model)))
    sub = select_runs(runs, cells, scale="all")
    rows = []
    for _, r in agreement.iterrows():
        for col in CSI_ATTRIBUTION_METRICS:
            follows, with_core = r.get(f"{col}_follows", "(the yardstick)"), r.get(f"{col}_with_core", np.nan)
            rows.append({"cell": cell_title(r.dataset, r.model), "scale": r.scale, "runs": r.runs,
                         "measure": METRIC_LABELS[col],
                         "lowest → highest LR": f"{r[f'{col}_at_lowest_lr']:.3f} → {r[f'{col}_at_highest_lr']:.3f}",
                         "Spearman with LR [95%]": spearman_text(r[f"{col}_spearman"], r[f"{col}_ci_low"],
                                                                 r[f"{col}_ci_high"]),
                         "follows the core share": follows + (f" ({with_core:+.2f})" if np.isfinite(with_core) else "")})
    caption = prose.figure_caption("Fig. 27", "avg. CSI and (beyond the paper) CSI − BSI beside the share of "
                                   "Integrated-Gradients attribution on the core region, against LR (normalised); "
                                   "one panel per cell, line: mean over seeds, band: one sd", sub)
    return Figure(caption, dict(runs=sub, cells=cells, metrics=CSI_ATTRIBUTION_METRICS), plot_cell_panels,
                  tables={"Per measure: the per-LR means at both ends of the LR range, the trend with LR, and "
                          "whether it goes the core share's way (in brackets: its Spearman correlation with the "
                          "core share over the runs)": pd.DataFrame(rows)},
                  runs=sub)


def cell_tables(frame, cell, scale=None) -> list[tuple[str, Any]]:
    """For one cell at each stored scale (`scale` None: `best_scale` first): a coverage note, the
    per-LR mean ± sd, and Table S1 beside ours. Returns (note, tables) pairs."""
    all_scales = select_runs(frame, cell, scale="all")
    metrics = LR_EFFECT_METRICS + REPRESENTATION_METRICS + SELECTIVITY_CHECKS + ("test_bc_acc",)
    out = []
    for s in ([scale] if scale else cell_scales(all_scales)):
        sub = all_scales[all_scales.scale == s]
        shown = scored_metrics(metrics, sub)
        out.append((prose.coverage_note(sub, s),
                    {"per LR": format_summary(lr_summary(sub, shown), shown, percent=("test_acc", "test_bc_acc")),
                     "against Table S1": comparison_table(compare_with_paper(sub, *cell))}))
    return out


# ------------------------------------------------------------------------------- Sec. 5, interventions


def intervention_scale(runs, cell) -> str | None:
    """The scale a cell's interventions are shown at: the most faithful one with runs of an
    intervention other than LR, else the LR sweep's `best_scale`, else None."""
    from .interventions import intervention_runs
    from .selection import SCALE_PREFERENCE, best_scale
    from .vocabulary import INTERVENTIONS

    cell_runs = runs[(runs.dataset == cell[0]) & (runs.model == cell[1])] if len(runs) else runs
    if len(cell_runs) == 0:
        return None
    for scale in SCALE_PREFERENCE:
        at = cell_runs[cell_runs.scale == scale]
        if any(len(intervention_runs(at, *cell, name)) for name in INTERVENTIONS if name not in ("lr", "batch_size")):
            return scale
    return best_scale(select_runs(runs, cell, scale="all"))


def intervention_cells(runs) -> list[tuple[str, str]]:
    """The cells with runs of an intervention other than LR (what Fig. 6 and 20 can show)."""
    from .interventions import plain_runs

    other = runs.drop(plain_runs(runs).index) if len(runs) else runs
    return stored_cells(other)


def intervention_panels(runs, cell, number: str = "Fig. 6", scale: str | None = None) -> Figure:
    """Fig. 6 (and each cell of Fig. 20): every intervention's hyperparameter against unbiased
    accuracy, prunability and CSI in one cell, LR first; Table S2 beside ours, and the verdict on
    the paper's claim that LR is the most consistent (`compare.lr_most_consistent`)."""
    from .compare import compare_interventions, lr_most_consistent, verdict_sensitivity
    from .interventions import counted_runs, fixed_lrs, intervention_runs
    from .plots import plot_intervention_panels
    from .tables import table_s2_comparison
    from .vocabulary import INTERVENTION_METRICS, INTERVENTIONS

    scale = scale or intervention_scale(runs, cell)
    no_runs = Figure("", notes=[prose.no_intervention_runs(cell)],
                     tables={"Table S2 (the paper's values)": paper_table_s2(cell[0])})
    if scale is None:
        return no_runs
    at = runs[runs.scale == scale]
    per = {name: intervention_runs(at, *cell, name) for name in INTERVENTIONS}
    shown = [(name, counted_runs(r, name)) for name, r in per.items()]
    every = pd_concat([r for r in per.values() if len(r)])
    if every is None:
        return no_runs
    card = compare_interventions(at, *cell, dict(shown))
    verdict = lr_most_consistent(card)
    fragility = prose.sensitivity_sentence(verdict_sensitivity(at, *cell, dict(shown)))
    scored = [r for _, r in shown if len(r)]
    reading = prunability_reading(pd_concat(scored)) if scored else "prunability"
    metrics = tuple(reading if m == "prunability" else m for m in INTERVENTION_METRICS)
    low, high = fixed_lrs(*cell, scale)
    caption = prose.figure_caption(number, f"{cell_title(*cell)}: unbiased test accuracy, prunability and average CSI "
                                   f"(normalised) against each intervention's hyperparameter; LR {low:g} for every "
                                   f"intervention, LR {high:g} for High LR + L2; line: mean over seeds, band: one sd",
                                   note=prose.interventions_phrase(scale, per, dict(shown)))
    return Figure(caption, dict(panels=shown, cell=cell, metrics=metrics, stored={k: len(v) for k, v in per.items()}),
                  plot_intervention_panels,
                  [" ".join(filter(None, (prose.consistency_sentence(cell, verdict), fragility)))],
                  {"Table S2 beside ours (Spearman of each variable with the hyperparameter, 95% seed-bootstrap "
                   "interval)": table_s2_comparison(card)}, every)


def pd_concat(frames):
    """The frames one after another, or None when there are none."""
    import pandas as pd

    return pd.concat(frames).drop_duplicates("run_id") if frames else None


def paper_table_s2(dataset: str):
    """Table S2's rows of one dataset (Colored MNIST's for a dataset it does not cover)."""
    from .paper import table_s2
    from .vocabulary import dataset_name

    t = table_s2()
    rows = t[t.dataset == dataset_name(dataset)]
    return (rows if len(rows) else t[t.dataset == "Colored MNIST"]).reset_index(drop=True)


def intervention_dynamics(store, runs, cell, scale: str | None = None) -> Figure:
    """Fig. 9: how the interventions reach robustness through different training dynamics. Per
    intervention with runs, the per-epoch BC loss ratio and BC / BA cross-entropy of each
    hyperparameter value (mean over seeds), and a table of each value's final unbiased accuracy,
    CSI and largest BC loss ratio (the loss side and the feature side of Sec. 5's sentence)."""
    import pandas as pd

    from .interventions import counted_runs, intervention_runs
    from .plots import plot_intervention_dynamics
    from .vocabulary import INTERVENTIONS

    scale = scale or intervention_scale(runs, cell)
    if scale is None:
        return Figure("", notes=[prose.no_intervention_runs(cell)])
    at = runs[runs.scale == scale]
    data, rows, shown = [], [], []
    per = {name: intervention_runs(at, *cell, name) for name in INTERVENTIONS}
    shown_by = {name: counted_runs(r, name) for name, r in per.items()}
    for name, sub in shown_by.items():
        if sub.empty:
            continue
        shown.append(sub)
        data.append((name, {float(v): [store.get(r) for r in g.run_id] for v, g in sub.groupby("hp")}))
        for v, g in sub.groupby("hp"):
            rows.append({"intervention": INTERVENTIONS[name], "value": v, "runs": len(g),
                         "unbiased acc. (%)": 100 * g.test_acc.mean(), "avg. CSI": g.csi.mean() if "csi" in g else np.nan,
                         "max BC loss ratio": g.max_bc_loss_ratio.mean() if "max_bc_loss_ratio" in g else np.nan,
                         "epochs": g.epochs.mean()})
    if not data:
        return Figure("", notes=[prose.no_intervention_runs(cell)])
    caption = prose.figure_caption("Fig. 9", f"{cell_title(*cell)}: per intervention, the largest BC loss ratio of each "
                                   "epoch (left) and the BC and BA cross-entropy (right) over training, one colour per "
                                   "hyperparameter value, weakest (dark) to strongest (yellow), mean over seeds",
                                   note=prose.interventions_phrase(scale, per, shown_by))
    return Figure(caption, data, plot_intervention_dynamics,
                  tables={"Per intervention and value, mean over seeds": pd.DataFrame(rows).round(4)}, runs=pd_concat(shown))


# ---------------------------------------------------------------------------------------------- Sec. 6


def prop1_table(scales=(0, 1, 2, 5, 10), bc_fractions=(0.01, 0.05, 0.1)):
    """Proposition 1, exact: the BC share of the loss at a few logit scales (margins 1 and 1)."""
    import pandas as pd

    from .theory import bc_loss_share

    return pd.DataFrame({"BC fraction": [f"{r:.0%}" for r in bc_fractions]}
                        | {f"s = {s:g}": [round(bc_loss_share(s, 1.0, 1.0, r), 3) for r in bc_fractions] for s in scales})


def prop2_shares(bc_fractions=(0.01, 0.05, 0.1), scales=None) -> Figure:
    """Proposition 2 on the constructed bias-decomposable network, one `theory.gradient_norm_shares`
    frame per BC fraction; the table shows BC fraction 5% at every tenth scale."""
    from .mechanism_plots import plot_gradient_shares
    from .theory import gradient_norm_shares

    scales = np.geomspace(0.01, 100, 61) if scales is None else scales
    prop2 = {r: gradient_norm_shares(scales, bc_fraction=r) for r in bc_fractions}
    t = prop2[0.05] if 0.05 in prop2 else next(iter(prop2.values()))
    holds = all(v.attrs["spurious_rule"] for v in prop2.values()) and all(v.attrs["core_correct"] for v in prop2.values())
    table = t[t.scale.isin(scales[::10])][["scale", "grad_core", "grad_spur", "grad_ratio", "bc_share_core",
                                           "bc_share_spur", "loss_bc_share"]].round(4)
    caption = prose.figure_caption("Prop. 2", "gradients of a constructed bias-decomposable network on one minibatch "
                                   "of 100 (computed, no runs)")
    note = ("The network predicts by the spurious rule on every sample and its core branch is right on every sample."
            if holds else "**The construction failed: the spurious rule or the core branch does not hold on every sample.**")
    return Figure(caption, prop2, plot_gradient_shares, [note], {f"BC fraction {t.attrs['bc_fraction']:.0%}": table})


def mechanism_runs(store, datasets, scale=None):
    """The runs page 06 measures: every cell of `datasets` at `scale` (None: its best), without the
    cells none of whose runs count; and one note per dropped cell."""
    runs = select_runs(store.to_frame(), scale=scale or "best")
    runs = runs[runs.dataset.isin(list(datasets))] if len(runs) else runs
    kept, dropped = cells_with_scored_runs(runs)
    return kept, [prose.dropped_cell_note(c, r) for c, r in dropped]


def max_bc_ratio(runs) -> Figure:
    """Fig. 12: max BC loss ratio in training against unbiased test accuracy, one panel per cell, and
    the Pearson / Spearman correlations (`mechanism.max_bc_ratio_table`)."""
    from .mechanism import max_bc_ratio_table
    from .mechanism_plots import plot_max_bc_panels

    if runs.empty:
        return Figure("", notes=["No stored run reached 100% training accuracy: Fig. 12 cannot be drawn."])
    corr = max_bc_ratio_table(runs)
    corr.insert(0, "cell", [cell_title(d, m) for d, m in zip(corr.dataset, corr.model)])
    caption = prose.figure_caption("Fig. 12", "maximum BC loss ratio met in training against unbiased test accuracy, "
                                   "one point per run, colour: LR", runs)
    return Figure(caption, runs, plot_max_bc_panels, tables={"Correlation over runs": corr.drop(
        columns=["dataset", "model"]).round(3)}, runs=runs)


def training_dynamics(store, runs, cell, low_lr=None, high_lr=None) -> Figure:
    """Fig. 13 for one cell: per-epoch BC/BA loss, BC loss ratio, logit norm and attribution share of
    every seed at a low and a high LR. Without requested LRs, a cell with attribution probes at two or
    more LRs shows the lowest and highest of those, else the lowest and highest stored."""
    from .mechanism_plots import plot_dynamics

    sub = select_runs(runs, cell, scale="all")
    if sub.empty:
        return Figure("", notes=[f"**{cell_title(*cell)}: no stored runs** that reached 100% training accuracy, "
                                 "so no Fig. 13 panel for it."])
    scale = sub.scale.iloc[0]
    all_runs = store.to_frame(dedupe=False)
    probed = traced_lrs(all_runs, *cell, scale)
    default_lo, default_hi = (probed[0], probed[-1]) if len(probed) >= 2 else (None, None)
    lo, hi, note = pick_lrs(sub, default_lo if low_lr is None else low_lr, default_hi if high_lr is None else high_lr)
    recs = {lr: seed_records(all_runs, store, *cell, scale, lr) for lr in (lo, hi)}
    n_probed = sum(bool(r.get("attribution_trace")) for r in (*recs[lo], *recs[hi]))
    what = (f"{cell_title(*cell)}: LR {lo:g} (blue, {prose.plural(len(recs[lo]), 'seed')}) vs LR {hi:g} (red, "
            f"{prose.plural(len(recs[hi]), 'seed')}); {prose.plural(n_probed, 'run')} with attribution probes")
    caption = prose.figure_caption("Fig. 13", what, note=prose.coverage_note(sub, scale)
                                   + (f" Note: {note}." if note else ""))
    return Figure(caption, (recs[lo], recs[hi]), lambda d, axes=None: plot_dynamics(*d, axes=axes), runs=sub)


def neuron_persistence_figures(store) -> list[Figure]:
    """Fig. 18 (top), one figure per cell and scale of the runs trained with neuron probes, with a
    per-run table: units class- and bias-dominant at the end, mean persistence over the first half."""
    import pandas as pd

    from .mechanism import neuron_persistence
    from .mechanism_plots import plot_persistence

    probed = with_logging(store.to_frame(dedupe=False), "neuron_probes")
    out = []
    for (d, m, s), cell in (probed.groupby(["dataset", "model", "scale"]) if len(probed) else ()):
        persistence = {(lr, seed): neuron_persistence(store.get(r)) for r, lr, seed in zip(cell.run_id, cell.lr, cell.seed)}
        rows = []
        for (lr, seed), p in sorted(persistence.items()):
            first_half = p[p.step <= p.step.max() / 2]
            rows.append({"LR": lr, "seed": seed, "class-dominant at end": int(p.class_dominant.iloc[-1]),
                         "bias-dominant at end": int(p.bias_dominant.iloc[-1]),
                         "class persistence, mean over 1st half": first_half.class_persist.mean(),
                         "bias persistence, mean over 1st half": first_half.bias_persist.mean()})
        caption = prose.figure_caption("Fig. 18 (top)", f"{cell_title(d, m)}: share of units class-dominant (left) or "
                                       "bias-dominant (right) at step t that are still so at the end", cell)
        out.append(Figure(caption, persistence, plot_persistence, tables={"Per run": pd.DataFrame(rows).round(3)},
                          runs=cell))
    return out


def unit_reset_figures(store) -> tuple[list[Figure], Any, str]:
    """Fig. 18 (bottom): for each run with a unit trace (highest LR first), the four units with the
    largest drop in spurious share; a table testing the reset reading over all units, and its sentences."""
    import pandas as pd

    from .mechanism import reset_summary, reset_units, unit_trace_events
    from .mechanism_plots import plot_unit_trace

    traced = with_logging(store.to_frame(dedupe=False), "unit_trace_every")
    figures, rows = [], []
    if traced.empty:
        return figures, pd.DataFrame(), ""
    for run_id, d, m, lr, seed, s in (traced.sort_values(["dataset", "lr", "seed"], ascending=[True, False, True])
                                      [["run_id", "dataset", "model", "lr", "seed", "scale"]].itertuples(index=False)):
        trace = store.get_artefact(run_id, "unit_trace")
        events = unit_trace_events(trace)
        rows.append({"cell": cell_title(d, m), "scale": s, "LR": lr, "seed": seed,
                     **{k: v for k, v in reset_summary(events).items() if k != "big_update_threshold"}})
        every = int(trace["step"][1] - trace["step"][0])
        caption = prose.figure_caption("Fig. 18 (bottom)", f"{cell_title(d, m)}, LR {lr:g}, seed {seed}, scale `{s}`: "
                                       f"the 4 units with the largest drop in spurious share (trace every {every} steps)")
        figures.append(Figure(caption, (trace, reset_units(events)),
                              lambda data, axes=None: plot_unit_trace(*data, axes=axes)))
    return figures, pd.DataFrame(rows).round(4), prose.reset_sentences(rows)


def ba_bc_comparison(store, runs, low_lr=None, high_lr=None):
    """The supplement's BA/BC average-loss ratio at a low and a high LR, per cell: a table (mean over
    epochs and last epoch) and one generated sentence per cell."""
    import pandas as pd

    from .mechanism import ba_bc_ratio_by_lr, ba_bc_verdict

    summary, sentences = [], []
    for cell in stored_cells(runs):
        sub = select_runs(runs, cell, scale="all")
        lo, hi, note = pick_lrs(sub, low_lr, high_lr)
        recs = [store.get(r) for r in sub.run_id]
        by = {w: ba_bc_ratio_by_lr(recs, w) for w in ("mean", "final")}
        verdict = {w: ba_bc_verdict(by[w], cell[0], lo, hi, model=cell[1]) for w in by}
        row = {"cell": cell_title(*cell), "scale": sub.scale.iloc[0], "low LR": lo, "high LR": hi}
        for w, t in by.items():
            for lr, tag in ((lo, "low"), (hi, "high")):
                r = t[t.lr == lr].iloc[0]
                row[f"{w}: {tag}"] = "—" if not r.runs else (f"{r.ratio_mean:.3g} ± {r.ratio_sd:.2g} (n={int(r.runs)})"
                                                             if np.isfinite(r.ratio_sd) else f"{r.ratio_mean:.3g} (n=1)")
            row[f"{w}: closer to 1"] = verdict[w]["closer"]
        row["agrees with paper (mean)"] = verdict["mean"]["agrees"]
        summary.append(row)
        final = verdict["final"]["closer"]
        sentences.append(f"* {verdict['mean']['sentence']}" + (f" ({note}.)" if note else "")
                         + (f" With the last-epoch ratio instead, the {final} LR is closer to 1."
                            if final in ("low", "high") else ""))
    return pd.DataFrame(summary), "\n".join(sentences)



# ------------------------------------------------------------------- Sec. 5, standard classification


def missing_standard_cells(runs):
    """The paper's Sec. 5 cells (CIFAR-10, CIFAR-100, ImageNet-1k with the page's model) without stored
    runs, with why and where the paper shows them; its values there are only in figures (no table)."""
    import pandas as pd

    from .vocabulary import PAGE05_MODEL

    shown = {"cifar10": "Fig. 8, 10, 35", "cifar100": "Fig. 8, 10, 36", "imagenet": "Fig. 11"}
    rows = [{"cell": cell_title(d, PAGE05_MODEL[d]), "paper figures": fig,
             "why no runs": "ImageNet-1k and GPUs not available on the build machine" if d == "imagenet"
             else "CIFAR not available on the build machine"}
            for d, fig in shown.items() if (d, PAGE05_MODEL[d]) not in stored_cells(runs)]
    return pd.DataFrame(rows)


def contrast_maps(store, runs, cell, k: int = 6) -> Figure:
    """Fig. 8, 35, 36 for one cell of page 05: among the test images whose maps every run keeps, the `k`
    that the high-LR runs predict correctly most often compared with the low-LR runs
    (`classification.contrast_samples`), their maps at the low and the high LR (first seed)."""
    from .classification import contrast_samples
    from .plots import plot_contrast_maps

    sub = select_runs(runs, cell, scale="all")
    low_lr, high_lr, note = pick_lrs(sub)
    ok = scored_runs(sub)
    groups = {lr: [store.get(r) for r in ok[np.isclose(ok.lr, lr)].sort_values("seed").run_id] for lr in (low_lr, high_lr)}
    have = {lr: [r for r in recs if store.has_artefact(r["run_id"], "test_predictions")
                 and store.has_artefact(r["run_id"], "attribution_maps")] for lr, recs in groups.items()}
    if not ok.lr.nunique() >= 2 or not all(have.values()):
        return Figure("", notes=[f"{cell_title(*cell)}: no stored maps and predictions at two LRs yet."])
    correct = {lr: np.stack([(lambda a: a["pred"] == a["y"])(store.get_artefact(r["run_id"], "test_predictions"))
                             for r in recs]) for lr, recs in have.items()}
    maps = {lr: store.get_artefact(recs[0]["run_id"], "attribution_maps") for lr, recs in have.items()}
    n_kept = min(len(m["maps"]) for m in maps.values())
    chosen = contrast_samples(correct[high_lr][:, :n_kept], correct[low_lr][:, :n_kept], k)
    rates = {lr: correct[lr][:, chosen].mean(0) for lr in (low_lr, high_lr)}
    data = dict(maps=maps, chosen=chosen, rates=rates, low_lr=low_lr, high_lr=high_lr)
    seeds = {lr: len(recs) for lr, recs in have.items()}
    speckle = (" (maps from uniform-noise baselines, as on MNIST-like images, are speckled where the network is "
               "sensitive to background pixels)") if cell[0] in EXACT_FOREGROUND else ""
    caption = prose.figure_caption(
        "Fig. 8, 35, 36", f"{cell_title(*cell)}: the {k} of the first {n_kept} test images that the LR {high_lr:g} runs "
        f"({prose.plural(seeds[high_lr], 'seed')}) predict correctly most often compared with the LR {low_lr:g} runs "
        f"({prose.plural(seeds[low_lr], 'seed')}); top: the image, then Integrated-Gradients maps of the first seed at "
        f"each LR; the titles give the share of runs at each LR that predict it correctly{speckle}",
        ok[np.isclose(ok.lr, low_lr) | np.isclose(ok.lr, high_lr)])
    return Figure(caption, data, plot_contrast_maps, [note] if note else [], runs=sub)


def patch_dynamics(store, runs, cell) -> Figure:
    """The patch experiment over training, for one patched cell: BA - BC accuracy on the shuffled-patch
    test set at each attribution probe, per LR (mean over seeds), and when each run learned the patch
    (`classification.learned_epoch`)."""
    import pandas as pd

    from .classification import learned_epoch, patch_gap_curve
    from .plots import plot_patch_dynamics

    sub = scored_runs(select_runs(runs, cell, scale="all"))
    curves, rows = {}, []
    for run in sub.sort_values(["lr", "seed"]).itertuples():
        epochs, gap = patch_gap_curve(store.get(run.run_id).get("attribution_trace") or [])
        if len(gap) == 0:
            continue
        curves.setdefault(run.lr, []).append((epochs, gap))
        rows.append({"LR": run.lr, "seed": run.seed, "epochs trained": run.epochs,
                     "largest BA − BC gap (points)": 100 * float(np.nanmax(gap)),
                     "learned at epoch": learned_epoch(epochs, gap),
                     "learned at (share of training)": learned_epoch(epochs, gap) / max(run.epochs, 1),
                     "final gap (points)": 100 * float(gap[-1])})
    if not curves:
        return Figure("", notes=[f"{cell_title(*cell)}: no runs with probes over training yet."])
    table = pd.DataFrame(rows).groupby("LR").agg(["mean", "std"]).drop(columns="seed").round(2)
    table.columns = [f"{a} ({b})" if b == "std" else a for a, b in table.columns]
    caption = prose.figure_caption(
        "Patch experiment", f"{cell_title(*cell)}: BA − BC accuracy on the test set whose patches are shuffled across "
        "classes (how much the network reads the patch) over training, per LR (line: one seed); 'learned at' is the "
        "first probe from which the gap stays at or above half its final value", sub)
    return Figure(caption, curves, plot_patch_dynamics, runs=sub,
                  tables={"Per LR, mean and sd over seeds": table.reset_index()})


def frequency_bands(runs, cell) -> Figure:
    """Beyond the paper (after Sadrtdinov et al. 2024): test accuracy on images that keep one band of
    2-D spatial frequencies (`classification.keep_band`), low to high, per LR (mean over seeds), and
    per band the Spearman correlation of LR with that accuracy (seed-bootstrap 95% interval)."""
    import pandas as pd

    from .classification import FREQUENCY_BANDS
    from .plots import plot_frequency_bands

    columns = [f"test_acc_band{b}" for b in range(FREQUENCY_BANDS)]
    sub = scored_runs(select_runs(runs, cell, scale="best"))
    if sub.empty or not set(columns) <= set(sub.columns) or sub[columns].isna().all(axis=None):
        return Figure("", notes=[f"{cell_title(*cell)}: no run has band accuracies yet (new runs record them; "
                                 f"`python -m lrbook reevaluate --dataset {cell[0]}` adds them from saved weights)."])
    sub = sub.dropna(subset=columns)
    means = sub.groupby("lr")[columns].mean()
    rows = []
    for b, col in enumerate(columns):
        rho = spearman(sub.lr, sub[col])
        lo, hi = bootstrap_spearman(sub, col) if sub.lr.nunique() >= 2 else (np.nan, np.nan)
        rows.append({"band": b, "accuracy at the lowest LR": f"{100 * means[col].iloc[0]:.1f}%",
                     "at the highest LR": f"{100 * means[col].iloc[-1]:.1f}%",
                     "Spearman with LR [95%]": f"{rho:+.2f} [{lo:+.2f}, {hi:+.2f}]" if np.isfinite(rho) else "—"})
    caption = prose.figure_caption(
        "Frequency bands", f"{cell_title(*cell)}: test accuracy on images reduced to one of {FREQUENCY_BANDS} rings "
        "of 2-D spatial frequency (band 0 holds the constant term, band 7 the highest frequencies), one line per LR "
        "(mean over seeds); chance is 10%", sub)
    return Figure(caption, means, plot_frequency_bands, runs=sub, tables={"Per band": pd.DataFrame(rows)})
