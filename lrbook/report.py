"""Small helpers the book's notebooks use to say what they show: scale, runs, seeds, and the
paper's reference values when no run exists yet."""
from __future__ import annotations

from .reference import (DATASET_NAMES, METRIC_LABELS, MIN_LRS, MIN_SCORED_TRAIN_ACC, MODEL_NAMES, S1_METRICS,
                        complete_lrs, paper_row, scored_runs, under_trained)


def cell_frame(store, dataset: str, model: str, scale: str):
    """The stored runs of one (dataset, model) cell at one scale."""
    df = store.to_frame()
    if df.empty:
        return df
    return df[(df.dataset == dataset) & (df.model == model) & (df.scale == scale)].reset_index(drop=True)


def coverage_note(df, scale: str) -> str:
    """'Scale `paper`: 15 runs, 5 LRs (0.01 to 0.75), 3 seeds each; 0 diverged.'"""
    if df.empty:
        return f"No stored runs at scale `{scale}`."
    seeds = df.groupby("lr").seed.nunique()
    seed_text = f"{seeds.min()} seeds each" if seeds.min() == seeds.max() else f"{seeds.min()} to {seeds.max()} seeds per LR"
    n_div = int((df.status == "diverged").sum())
    capped = df[df.status == "max_epochs"]
    text = (f"Scale `{scale}`: {len(df)} runs, {df.lr.nunique()} LRs ({df.lr.min():g} to {df.lr.max():g}), "
            f"{seed_text}; {n_div} diverged")
    if len(capped):
        text += f", {len(capped)} stopped at the epoch cap before 100% training accuracy"
        under = df[under_trained(df)]
        if len(under):
            lrs = ", ".join(f"{lr:g}" for lr in sorted(under.lr.unique()))
            text += (f" ({len(under)} of them below {100 * MIN_SCORED_TRAIN_ACC:g}%, at LR {lrs}: "
                     f"{100 * under.train_acc.min():.1f} to {100 * under.train_acc.max():.1f}%; under-trained, "
                     "so left out of the comparison with the paper)")
    if scored_runs(df).empty:
        return text + ". **No run reached 100% training accuracy, so there is nothing to compare with the paper yet.**"
    return text + "."


def nothing_scored_note(df, scale: str | None = None) -> str | None:
    """Why the runs of `df` give nothing to compare with the paper, or None when at least one run
    counts (`reference.scored_runs`: not diverged, not under-trained; the paper, Sec. 4.2, trains
    every network to 100% training accuracy).

    'No run at scale `smoke` reached 100% training accuracy: 6 stopped at the epoch cap (53.2 to
    90.0% training accuracy), 0 diverged; there is nothing to compare with the paper yet.'"""
    where = f" at scale `{scale}`" if scale else ""
    if df.empty:
        return f"No stored runs{where}."
    if not scored_runs(df).empty:
        return None
    under = df[under_trained(df)]
    parts = []
    if len(under):
        lo, hi = 100 * under.train_acc.min(), 100 * under.train_acc.max()
        accs = f"{lo:.1f}%" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f} to {hi:.1f}%"
        parts.append(f"{len(under)} stopped at the epoch cap ({accs} training accuracy)")
    parts.append(f"{int((df.status == 'diverged').sum())} diverged")
    return (f"No run{where} reached 100% training accuracy: {', '.join(parts)}; there is nothing to compare "
            "with the paper yet.")


def drop_unscored_cells(runs):
    """`runs` without the (dataset, model) cells none of whose runs the comparison uses (every run
    diverged or under-trained), and one sentence per dropped cell saying why."""
    if runs.empty:
        return runs, []
    keep, notes = [], []
    for (d, m), cell in runs.groupby(["dataset", "model"], sort=False):
        if scored_runs(cell).empty:
            scale = cell.scale.iloc[0] if "scale" in cell else None
            notes.append(f"{DATASET_NAMES.get(d, d)} / {MODEL_NAMES.get(m, m)}: {nothing_scored_note(cell, scale)}")
        else:
            keep.append((d, m))
    kept = runs[[(d, m) in keep for d, m in zip(runs.dataset, runs.model)]].reset_index(drop=True)
    return kept, notes


def run_table(df, columns):
    """Every stored run, sorted by LR and seed, with those of `columns` the runs have (a cell whose
    runs all diverged has no metric columns)."""
    return df[[c for c in columns if c in df]].sort_values(["lr", "seed"]).round(4).reset_index(drop=True)


def paper_reference_table(dataset: str, model: str):
    """Table S1's row for a cell as a two-column table (variable, paper range)."""
    import pandas as pd

    ref = paper_row(dataset, model)
    if ref is None:
        return pd.DataFrame()
    rows = [{"variable": "LR range", "paper min": ref.lr_min, "paper max": ref.lr_max}]
    for prefix, (col, _) in S1_METRICS.items():
        rows.append({"variable": METRIC_LABELS[col], "paper min": ref[f"{prefix}_min"], "paper max": ref[f"{prefix}_max"]})
    return pd.DataFrame(rows)


def no_data_message(dataset: str, model: str, scale: str, notebook: str) -> str:
    return (f"**No stored runs for {DATASET_NAMES.get(dataset, dataset)} / {MODEL_NAMES.get(model, model)} at scale "
            f"`{scale}` yet.** Nothing below is a result of ours: it is the paper's Table S1 range for this cell. "
            f"To produce runs: `papermill {notebook} out.ipynb -p dataset {dataset} -p scale {scale} -p train True`.")


def low_high_records(store, df, seed=None):
    """The stored records of the lowest and highest LR among the runs the comparison uses
    (`reference.scored_runs`: not diverged, not under-trained); one seed."""
    ok = scored_runs(df)
    if ok.empty:
        return None, None
    seed = ok.seed.min() if seed is None else seed
    pick = ok[ok.seed == seed] if (ok.seed == seed).any() else ok
    lo = pick.loc[pick.lr.idxmin()]
    hi = pick.loc[pick.lr.idxmax()]
    return store.get(lo.run_id), store.get(hi.run_id)


SCALE_PREFERENCE = ("paper", "cpu", "smoke")


def best_scale(df) -> str | None:
    """The scale the book shows one cell's runs (`df`) at: the most faithful (paper, then cpu, then
    smoke) at which the cell is complete (`MIN_LRS` LRs x `MIN_SEEDS` seeds); if none is, the one
    with the most such LRs, then the most faithful. So a few paper-scale runs do not displace a
    finished cpu-scale LR sweep; `cell_scales` lists the others."""
    present = [s for s in SCALE_PREFERENCE if len(df) and s in set(df.scale)]
    if not present:
        return None
    full = {s: complete_lrs(df[df.scale == s]) for s in present}
    done = [s for s in present if full[s] >= MIN_LRS]
    return done[0] if done else max(present, key=lambda s: (full[s], -present.index(s)))


def cell_scales(df) -> list[str]:
    """Every scale stored for one cell: `best_scale` first, then the others, most faithful first."""
    first = best_scale(df)
    return [] if first is None else [first] + [s for s in SCALE_PREFERENCE if s != first and s in set(df.scale)]


def cells_grid_frame(store, datasets, models, scale=None):
    """Stored runs of every (dataset, model) cell, each at `scale` or, if None, its best scale."""
    import pandas as pd

    df = store.to_frame()
    parts = []
    for d in datasets:
        for m in models:
            sub = df[(df.dataset == d) & (df.model == m)] if len(df) else df
            s = scale or best_scale(sub)
            if s is not None and len(sub):
                parts.append(sub[sub.scale == s])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
