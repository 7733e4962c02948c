"""Which stored runs count, decided once. The paper (Sec. 4.2) trains every network to 100% training
accuracy, so a run that diverged or stopped at the epoch cap well short of it is left out of every
comparison; each cell is shown at its most faithful complete scale. The section pages, the Table S1
scorecard and the status page all select their runs with `select_runs`."""
from __future__ import annotations

import numpy as np

from .vocabulary import cell_order

# A run that stopped at the epoch cap below this training accuracy is a different object
# (under-trained, so trivially worse on test); one at 99.99% (a single sample short) is kept.
MIN_SCORED_TRAIN_ACC = 0.999
MIN_LRS, MIN_SEEDS = 5, 3  # what a complete cell needs
# Sec. 4.2: the paper uses "LRs up to the point of divergence or drastic performance loss (... in
# test accuracy) among any one of the seeds"; its threshold is not stated in the text. We call a
# loss drastic when one seed's unbiased test accuracy is more than `DRASTIC_LOSS` (10 points) below
# the best per-LR mean of the smaller LRs: well outside the seed spread of our cells (a few points)
# and well inside the collapse to chance that a too-large LR causes.
DRASTIC_LOSS = 0.10
SCALE_PREFERENCE = ("paper", "cpu", "smoke")  # most faithful first


def under_trained(runs):
    """Row mask: runs that stopped at the epoch cap below `MIN_SCORED_TRAIN_ACC` training accuracy."""
    if "train_acc" not in runs:
        return runs.status != runs.status  # all False
    return (runs.status == "max_epochs") & (runs.train_acc < MIN_SCORED_TRAIN_ACC)


def lr_range_end(cell) -> tuple[float | None, str]:
    """The first LR of one cell (one dataset, model and scale) that the paper's LR-range rule
    (Sec. 4.2, `DRASTIC_LOSS`) leaves out, with it every larger LR, and why; (None, "") if none.
    Under-trained runs take no part: their accuracy reflects the epoch cap, not the LR."""
    best = -np.inf
    for lr, runs in cell.groupby("lr", sort=True):
        if (runs.status == "diverged").any():
            n = int((runs.status == "diverged").sum())
            return float(lr), f"{n} of {len(runs)} seeds diverged at LR {lr:g}"
        accs = runs[~under_trained(runs)].get("test_acc")
        accs = accs.dropna() if accs is not None else accs
        if accs is None or accs.empty:
            continue
        if best - accs.min() > DRASTIC_LOSS:
            return float(lr), (f"a seed's unbiased test accuracy at LR {lr:g} ({100 * accs.min():.1f}%) is more "
                               f"than {100 * DRASTIC_LOSS:g} points below the best of the smaller LRs ({100 * best:.1f}%)")
        best = max(best, accs.mean())
    return None, ""


def beyond_lr_range(runs):
    """Row mask: runs at or above their cell's `lr_range_end` (cells: dataset, model, scale)."""
    import pandas as pd

    mask = np.zeros(len(runs), dtype=bool)
    keys = [k for k in ("dataset", "model", "scale") if k in runs]
    if len(runs) and "lr" in runs:
        lrs = runs.lr.to_numpy(float)
        cells = runs.groupby(keys, sort=False).indices.values() if keys else [np.arange(len(runs))]
        for pos in cells:
            end, _ = lr_range_end(runs.iloc[pos])
            if end is not None:
                mask[pos[lrs[pos] >= end - 1e-12]] = True
    return pd.Series(mask, index=runs.index)


def variant_runs(runs):
    """Row mask: runs whose dataset parameters differ from their cell's preset
    (`config.preset_dataset_params`), e.g. parity's calibration settings. A parameter a record does
    not hold (stored before it existed) counts as the preset's."""
    import pandas as pd

    from .config import preset_dataset_params

    mask = np.zeros(len(runs), dtype=bool)
    if len(runs) and {"dataset", "model", "scale"} <= set(runs.columns):
        for (d, m, s), pos in runs.groupby(["dataset", "model", "scale"], sort=False).indices.items():
            for key, want in preset_dataset_params(d, m, s).items():
                column = f"data.{key}"
                if column not in runs:
                    continue
                have = runs[column].iloc[pos]
                if isinstance(want, (int, float)) and not isinstance(want, bool):
                    values = pd.to_numeric(have, errors="coerce").to_numpy(float)
                    differs = ~np.isnan(values) & ~np.isclose(values, float(want))
                else:
                    differs = (have.notna() & (have != want)).to_numpy()
                mask[pos[differs]] = True
    return pd.Series(mask, index=runs.index)


def scored_runs(runs):
    """The runs a comparison with the paper uses: not diverged, not `under_trained`, and within the
    paper's LR range rule (`beyond_lr_range`)."""
    return runs[(runs.status != "diverged") & ~under_trained(runs) & ~beyond_lr_range(runs)]


def prunability_reading(runs) -> str:
    """The prunability column one cell is scored and plotted with: the chosen reading,
    `prunability_global` (argued on the Definitions page), when every evaluated run of `runs` has it;
    else the per-layer `prunability` that every run records (the global reading needs the weights,
    which runs trained before they were kept lack: `python -m lrbook reevaluate --retrain`). Never a
    mix of the two within a cell."""
    evaluated = runs[runs.status != "diverged"] if "status" in runs else runs
    if "prunability_global" in evaluated and len(evaluated) and evaluated.prunability_global.notna().all():
        return "prunability_global"
    return "prunability"


def scored_metrics(metrics, runs) -> tuple:
    """`metrics` with "prunability" replaced by the cell's `prunability_reading` over its scored runs."""
    reading = prunability_reading(scored_runs(runs)) if len(runs) else "prunability"
    return tuple(reading if m == "prunability" else m for m in metrics)


def complete_lrs(runs) -> int:
    """LRs of one cell (one scale) with `MIN_SEEDS` finished seeds: converged, diverged (a result
    too) or capped within 0.1% of 100% training accuracy, not `under_trained`."""
    if len(runs) == 0:
        return 0
    return int((runs[~under_trained(runs)].groupby("lr").seed.nunique() >= MIN_SEEDS).sum())


def best_scale(runs) -> str | None:
    """The scale the book shows one cell's runs at: the most faithful (paper, then cpu, then smoke)
    at which the cell is complete (`MIN_LRS` LRs x `MIN_SEEDS` seeds); if none is, the one with the
    most such LRs, then the most faithful. So a few paper-scale runs do not displace a finished
    cpu-scale LR sweep."""
    present = [s for s in SCALE_PREFERENCE if len(runs) and s in set(runs.scale)]
    if not present:
        return None
    full = {s: complete_lrs(runs[runs.scale == s]) for s in present}
    done = [s for s in present if full[s] >= MIN_LRS]
    return done[0] if done else max(present, key=lambda s: (full[s], -present.index(s)))


def cell_scales(runs) -> list[str]:
    """Every scale stored for one cell: `best_scale` first, then the others, most faithful first."""
    first = best_scale(runs)
    return [] if first is None else [first] + [s for s in SCALE_PREFERENCE if s != first and s in set(runs.scale)]


def select_runs(runs, cells=None, scale: str | None = "best", scored: bool = False, presets_only: bool = True):
    """The runs that count, from a store frame `runs` (`ResultStore.to_frame()`).

    `cells`: (dataset, model) pairs, one pair, or None for every stored cell. `scale`: "best" (each
    cell at its `best_scale`; None means the same), "all" (every stored scale), or a scale name.
    `scored`: leave out the runs no comparison uses (`scored_runs`). Rows keep the frame's order
    within a cell; cells come in the order asked for (None: vocabulary order). Only the LR sweeps'
    runs count (`interventions.plain_runs`, at the cell's preset dataset parameters: not
    `variant_runs`, unless `presets_only` is False); Sec. 5's interventions select theirs with
    `interventions.intervention_runs`, parity's calibration with `calibration.setting_runs`."""
    from .interventions import plain_runs

    if runs is None or len(runs) == 0:
        return runs.iloc[0:0] if runs is not None and len(runs.columns) else _empty()
    runs = plain_runs(runs)
    if presets_only:
        runs = runs[~variant_runs(runs)]
    if cells is None:
        cells = sorted(set(zip(runs.dataset, runs.model)), key=cell_order)
    elif isinstance(cells, tuple) and len(cells) == 2 and isinstance(cells[0], str):
        cells = [cells]
    parts = []
    for d, m in cells:
        cell = runs[(runs.dataset == d) & (runs.model == m)]
        if scale in (None, "best"):
            cell = cell[cell.scale == best_scale(cell)]
        elif scale != "all":
            cell = cell[cell.scale == scale]
        parts.append(scored_runs(cell) if scored else cell)
    import pandas as pd

    return pd.concat(parts).reset_index(drop=True) if parts else runs.iloc[0:0]


def _empty():
    import pandas as pd

    return pd.DataFrame(columns=["run_id", "dataset", "model", "scale", "lr", "seed", "status"])


def stored_cells(runs) -> list[tuple[str, str]]:
    """The (dataset, model) cells of `runs`, in vocabulary order."""
    return [] if len(runs) == 0 else sorted(set(zip(runs.dataset, runs.model)), key=cell_order)


def cells_with_scored_runs(runs):
    """`runs` without the cells none of whose runs a comparison uses (every run diverged or
    under-trained), and those dropped cells with their runs."""
    keep, dropped = [], []
    for cell in stored_cells(runs):
        sub = select_runs(runs, cell, scale="all")
        (dropped if scored_runs(sub).empty else keep).append((cell, sub))
    kept = [c for c, _ in keep]
    return runs[[c in kept for c in zip(runs.dataset, runs.model)]].reset_index(drop=True), dropped


def low_high_records(store, runs, seed=None):
    """The stored records of the lowest and highest LR among the `scored_runs` of one cell; one seed."""
    ok = scored_runs(runs)
    if ok.empty:
        return None, None
    seed = ok.seed.min() if seed is None else seed
    pick = ok[ok.seed == seed] if (ok.seed == seed).any() else ok
    return store.get(pick.loc[pick.lr.idxmin()].run_id), store.get(pick.loc[pick.lr.idxmax()].run_id)


def pick_lrs(runs, low_lr: float | None = None, high_lr: float | None = None) -> tuple[float, float, str]:
    """The low and high LR to compare in one cell's `runs` (its `scored_runs`): the requested ones
    if stored, else the lowest / highest stored; the note says when a request could not be honoured."""
    lrs = sorted(scored_runs(runs).lr.unique())
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


def with_logging(all_runs, field: str):
    """The runs of `all_runs` (`store.to_frame(dedupe=False)`) trained with the logging field `field`
    (a flag or a positive count, e.g. `neuron_probes`, `unit_trace_every`, `attribution_n`) set, at
    their cells' preset dataset parameters (not `variant_runs`)."""
    if field not in all_runs:
        return all_runs.iloc[0:0]
    values = all_runs[field]
    on = values.fillna(False).astype(bool) if values.dtype == bool or values.dtype == object else values.fillna(0).astype(float) > 0
    return all_runs[on.to_numpy() & ~variant_runs(all_runs).to_numpy()]


def seed_records(all_runs, store, dataset: str, model: str, scale: str, lr: float, prefer: str = "attribution_n"):
    """One record per seed of a cell's LR, from `all_runs` (`store.to_frame(dedupe=False)`), preferring
    the record with the logging field `prefer` set (runs differing only in logging trained the same)."""
    sub = select_runs(all_runs, (dataset, model), scale=scale)
    sub = sub[np.isclose(sub.lr, lr) & (sub.status != "diverged")]
    if sub.empty:
        return []
    rank = sub[prefer].fillna(0).astype(float) if prefer in sub else 0
    sub = sub.assign(_rank=rank).sort_values(["seed", "_rank"], ascending=[True, False])
    return [store.get(r) for r in sub.drop_duplicates("seed").run_id]


def traced_lrs(all_runs, dataset: str, model: str, scale: str, field: str = "attribution_n") -> list[float]:
    """The LRs of a cell that have at least one run, not diverged, with the logging field `field` set."""
    sub = select_runs(with_logging(all_runs, field), (dataset, model), scale=scale)
    return sorted(float(v) for v in sub[sub.status != "diverged"].lr.unique())
