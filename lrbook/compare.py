"""Our stored runs against the paper's claim that every Table S1 variable rises with LR (Sec. 5,
supplement D.3): per cell, the paper's range beside ours and the Spearman correlation of LR with
each variable, scored by its seed-bootstrap interval."""
from __future__ import annotations

import numpy as np

from .paper import paper_row
from .selection import prunability_reading, scored_runs, select_runs
from .stats import bootstrap_spearman, spearman
from .vocabulary import CSI_ATTRIBUTION_METRICS, FIG8_DATASETS, METRIC_LABELS, S1_METRICS, SELECTIVITY_CHECKS

AGREEMENT_MARKS = {"yes": "✓", "no": "✗", "unclear": "?", "n/a": "n/a"}
# A trend needs three points: over two hyperparameter values a Spearman correlation only says which
# of the two is higher (with 3 + 3 runs it cannot exceed 0.88 in size), so fewer are shown, not scored.
MIN_TREND_VALUES = 3
TOO_FEW_VALUES = f"fewer than {MIN_TREND_VALUES} values"


def compare_with_paper(runs, dataset: str, model: str, presets_only: bool = True):
    """One row per Table S1 variable: the paper's min/max, ours (min/max over per-LR means, in the
    paper's units), Spearman(LR, metric) over runs with a seed-bootstrap 95% interval, and whether the
    direction agrees with the paper's claim that every variable rises with LR. Then two rows beyond
    the paper (`vocabulary.SELECTIVITY_CHECKS`): Avg. BSI (no claim: `agrees` is "n/a") and CSI − BSI,
    whose rise would show a shift from spurious to core features rather than more selectivity of
    every kind. Prunability is the cell's `selection.prunability_reading` (column `reading`). Only
    the cell's `scored_runs` count; `attrs["left_out"]` counts the others. `presets_only=False`
    scores runs of other dataset parameters too (one parity setting's runs, `lrbook.calibration`)."""
    import pandas as pd

    cell = select_runs(runs, (dataset, model), scale="all", presets_only=presets_only)
    ok = scored_runs(cell)
    ref = paper_row(dataset, model)
    rows = []
    variables = [(prefix, col, unit) for prefix, (col, unit) in S1_METRICS.items()]
    variables += [(None, col, 1.0) for col in SELECTIVITY_CHECKS]
    for prefix, col, unit in variables:
        row = {"variable": METRIC_LABELS[col]}
        if col == "prunability":
            col = prunability_reading(ok)
            row["reading"] = METRIC_LABELS[col]
        if ref is not None and prefix is not None:
            row.update(paper_min=ref[f"{prefix}_min"], paper_max=ref[f"{prefix}_max"])
        if not ok.empty and col in ok and ok[col].notna().any():
            means = ok.groupby("lr")[col].mean() * unit
            rho = spearman(ok.lr, ok[col])
            lo, hi = bootstrap_spearman(ok, col)
            claim = col != "bsi"
            row.update(ours_min=means.min(), ours_max=means.max(), spearman=rho, ci_low=lo, ci_high=hi,
                       agrees=("yes" if lo > 0 else "no" if hi < 0 else "unclear")
                       if np.isfinite(rho) and claim else "n/a")
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["left_out"] = len(cell) - len(ok)
    if ref is not None:
        out.attrs["paper_lr_range"] = (ref.lr_min, ref.lr_max)
    return out


def scorecard(store=None, runs=None):
    """Table S1 against ours for every stored (dataset, model, scale) cell: one row per variable with
    the paper's range, ours, Spearman(LR, variable) with its seed-bootstrap interval and agreement;
    `left_out` counts the cell's diverged and under-trained runs, which the comparison does not use.
    `runs`: a store frame to score instead of the store's."""
    import pandas as pd

    if runs is None:
        from .store import ResultStore

        runs = (ResultStore() if store is None else store).to_frame()
    runs = select_runs(runs, scale="all")
    if runs.empty:
        return pd.DataFrame()
    parts = []
    for (d, m, s), sub in runs.groupby(["dataset", "model", "scale"]):
        t = compare_with_paper(sub, d, m)
        t.insert(0, "scale", s)
        t.insert(0, "model", m)
        t.insert(0, "dataset", d)
        t["runs"], t["lrs"], t["seeds"] = len(sub), sub.lr.nunique(), sub.seed.nunique()
        t["left_out"] = t.attrs["left_out"]
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def trend_summary(card):
    """One row per scorecard cell and scale (Sec. 5's "does each LR effect go the paper's way?"): runs
    and LRs used, per variable the Spearman correlation marked ✓ (interval above 0), ✗ (below) or ?
    (includes 0), and which prunability reading the cell is scored with."""
    import pandas as pd

    from .vocabulary import cell_title

    rows = []
    for (d, m, s), t in (card.groupby(["dataset", "model", "scale"], sort=False) if len(card) else ()):
        row = {"cell": cell_title(d, m), "scale": s, "runs used": int(t.runs.iloc[0] - t.left_out.iloc[0])}
        for v, a, r in zip(t.variable, t.get("agrees", ["n/a"] * len(t)), t.get("spearman", [np.nan] * len(t))):
            a = a if isinstance(a, str) else "n/a"
            row[v] = f"{AGREEMENT_MARKS[a]} {r:+.2f}" if a != "n/a" else "n/a"
        readings = t["reading"].dropna() if "reading" in t else ()
        if len(readings):
            row["prunability reading"] = ("global ranking" if readings.iloc[0] == METRIC_LABELS["prunability_global"]
                                          else "per-layer share")
        rows.append(row)
    return pd.DataFrame(rows)


def level_summary(card, scale: str = "paper"):
    """Where our values sit against Table S1's, beside the trends: Sec. 5's claim is about
    directions, so levels are not scored, but a level apart from the paper's says that a setting
    differs. One row per scorecard cell at `scale`; per Table S1 variable, "below" when our range
    (the per-LR means, as in the scorecard) ends under the paper's range, "above" when it starts over
    it, else "overlaps". Empty when no cell at `scale` has a Table S1 row."""
    import pandas as pd

    from .vocabulary import cell_title

    if not len(card) or "ours_min" not in card:
        return pd.DataFrame()
    rows = card[(card.scale == scale) & card.paper_min.notna() & card.ours_min.notna()]
    where = np.where(rows.ours_max < rows.paper_min, "below",
                     np.where(rows.ours_min > rows.paper_max, "above", "overlaps"))
    long = pd.DataFrame({"cell": [cell_title(d, m) for d, m in zip(rows.dataset, rows.model)],
                         "variable": rows.variable.to_numpy(), "where": where})
    if long.empty:
        return pd.DataFrame()
    wide = long.pivot(index="cell", columns="variable", values="where")  # sorted: put back in card order
    wide = wide.reindex(index=list(dict.fromkeys(long.cell)), columns=list(dict.fromkeys(long.variable)))
    return wide.fillna("").reset_index().rename_axis(columns=None)


def lr_trend(runs, col: str) -> dict:
    """One measure's trend over `runs` (one cell's scored runs): its per-LR mean at the lowest and the
    highest LR, Spearman(LR, measure) with its seed-bootstrap 95% interval, and its direction: "rises"
    (interval above 0), "falls" (below 0) or "unclear" (includes 0, or no interval)."""
    ok = runs[runs[col].notna()] if col in runs else runs.iloc[:0]
    means = ok.groupby("lr")[col].mean() if len(ok) else None
    lo, hi = bootstrap_spearman(ok, col) if len(ok) else (np.nan, np.nan)
    return {"at_lowest_lr": means.iloc[0] if means is not None else np.nan,
            "at_highest_lr": means.iloc[-1] if means is not None else np.nan,
            "spearman": spearman(ok.lr, ok[col]) if len(ok) else np.nan, "ci_low": lo, "ci_high": hi,
            "direction": "rises" if lo > 0 else "falls" if hi < 0 else "unclear"}


def lr_trends(runs, metrics):
    """`lr_trend` of each of `metrics` per cell and scale of `runs`, over the cell's scored runs
    (`selection.scored_runs`): one row per cell, scale and measure stored by at least one of them."""
    import pandas as pd

    rows = []
    for (d, m, s), cell in (runs.groupby(["dataset", "model", "scale"], sort=False) if len(runs) else ()):
        ok = scored_runs(cell)
        for col in metrics:
            if col in ok and ok[col].notna().any():
                rows.append({"dataset": d, "model": m, "scale": s, "measure": col,
                             "runs": int(ok[col].notna().sum()), **lr_trend(ok, col)})
    return pd.DataFrame(rows)


def attribution_agreement(runs, datasets=FIG8_DATASETS):
    """Fig. 27 (supplement D): where the core and spurious features sit in separate input regions
    (`datasets`; the paper shows Double MNIST), attribution measures core-feature use directly, and
    the paper finds that CSI follows it with LR ("qualitatively identical patterns"). One row per
    cell and scale of `runs` whose scored runs (`selection.scored_runs`) store the core attribution
    share: per measure of `CSI_ATTRIBUTION_METRICS`, its mean at the lowest and the highest LR and
    Spearman(LR, measure) with its seed-bootstrap interval and direction; per index (CSI, CSI − BSI),
    its Spearman with the core share over the runs and `follows` ("yes" when it goes the core share's
    way, "no" when the other way, "unclear" when either direction is)."""
    import pandas as pd

    rows = []
    keys = ["dataset", "model", "scale"]
    for (d, m, s), cell in (runs.groupby(keys, sort=False) if len(runs) else ()):
        ok = scored_runs(cell) if d in datasets else cell.iloc[:0]
        if "attr_core" not in ok or ok.attr_core.isna().all():
            continue
        ok = ok[ok.attr_core.notna()]
        row = {"dataset": d, "model": m, "scale": s, "runs": len(ok), "lrs": ok.lr.nunique()}
        for col in CSI_ATTRIBUTION_METRICS:
            row.update({f"{col}_{k}": v for k, v in lr_trend(ok, col).items()})
        core = row["attr_core_direction"]
        for col in CSI_ATTRIBUTION_METRICS[:-1]:
            own = row[f"{col}_direction"]
            row[f"{col}_with_core"] = spearman(ok[col], ok.attr_core)
            row[f"{col}_follows"] = "unclear" if "unclear" in (own, core) else "yes" if own == core else "no"
        rows.append(row)
    return pd.DataFrame(rows)


def counted_intervention_runs(runs, dataset: str, model: str) -> dict:
    """Per intervention, its runs in one cell that count (`interventions.counted_runs`)."""
    from .interventions import counted_runs, intervention_runs
    from .vocabulary import INTERVENTIONS

    return {name: counted_runs(intervention_runs(runs, dataset, model, name), name) for name in INTERVENTIONS}


def compare_interventions(runs, dataset: str, model: str, used: dict | None = None):
    """Table S2 beside ours for one cell at one scale (Sec. 5, Fig. 6): per intervention and per
    variable (unbiased accuracy, prunability, CSI) the paper's hyperparameter and value ranges, ours
    (min/max over per-value means), and Spearman(hyperparameter, variable) over runs with its
    seed-bootstrap 95% interval; `rises` says whether the interval lies above 0, and is `TOO_FEW_VALUES`
    (not scored) with fewer than `MIN_TREND_VALUES` distinct hyperparameter values. The LR sweep counts
    its `scored_runs`; the other interventions leave out diverged and under-trained runs. Prunability
    is one `selection.prunability_reading` over all of them (column `reading`). `used`: the
    `counted_intervention_runs`, when already selected."""
    import pandas as pd

    from .vocabulary import INTERVENTIONS

    used = counted_intervention_runs(runs, dataset, model) if used is None else used
    reading = _cell_reading(used)
    return pd.DataFrame([row for name in INTERVENTIONS for row in _intervention_rows(dataset, name, used[name], reading)])


def _cell_reading(used: dict) -> str:
    """One prunability reading for the whole cell, so that the interventions are compared on one scale."""
    import pandas as pd

    every = [u for u in used.values() if len(u)]
    return prunability_reading(pd.concat(every)) if every else "prunability"


def _intervention_rows(dataset: str, name: str, ok, reading: str) -> list[dict]:
    """`compare_interventions`'s three rows of one intervention, from its counted runs `ok`."""
    from .paper import table_s2_row
    from .vocabulary import INTERVENTION_METRICS, INTERVENTIONS

    prefixes = {"test_acc": ("test_acc", 100.0), "prunability": ("prunability", 1.0), "csi": ("avg_csi", 1.0)}
    ref = table_s2_row(dataset, name)
    rows = []
    for metric in INTERVENTION_METRICS:
        prefix, unit = prefixes[metric]
        row = {"intervention": INTERVENTIONS[name], "variable": METRIC_LABELS[metric], "runs": len(ok),
               "values": ok.hp.nunique()}
        if metric == "prunability":
            metric, row["reading"] = reading, METRIC_LABELS[reading]
        if ref is not None:
            row.update(paper_hp_min=ref.hp_min, paper_hp_max=ref.hp_max, paper_min=ref[f"{prefix}_min"],
                       paper_max=ref[f"{prefix}_max"])
        if len(ok) and metric in ok and ok[metric].notna().any():
            means = ok.groupby("hp")[metric].mean() * unit
            rho = spearman(ok.hp, ok[metric])
            lo, hi = bootstrap_spearman(ok, metric, by="hp")
            rises = ("yes" if lo > 0 else "no" if hi < 0 else "unclear") if np.isfinite(rho) else "n/a"
            row.update(hp_min=ok.hp.min(), hp_max=ok.hp.max(), ours_min=means.min(), ours_max=means.max(),
                       spearman=rho, ci_low=lo, ci_high=hi,
                       rises=TOO_FEW_VALUES if row["values"] < MIN_TREND_VALUES else rises)
        rows.append(row)
    return rows


def lr_most_consistent(card) -> dict:
    """The paper's claim for one cell's `compare_interventions` table (Sec. 5: "High LRs consistently
    facilitate a combination of OOD generalization, network compressibility, and core feature
    utilization, either on par with or surpassing other interventions"): per intervention, how many of
    the three variables rise with its hyperparameter (interval above 0); the claim holds ("yes") when
    no other single intervention raises more of them than LR, fails ("no") when one does, and is
    "unclear" without LR and at least one other intervention measured. High LR + L2 is a combination
    with LR, not a rival, and is left out; so is an intervention with fewer than `MIN_TREND_VALUES`
    values (named in `too_few`)."""
    from .vocabulary import INTERVENTIONS

    if "spearman" not in card:  # no intervention has a run that counts (all diverged or under-trained)
        return {"agrees": "unclear", "consistent": {}, "better": [], "too_few": []}
    measured = card[card.spearman.notna()]
    too_few = list(dict.fromkeys(measured.intervention[measured.rises == TOO_FEW_VALUES]))
    measured = measured[measured.rises != TOO_FEW_VALUES]
    consistent = {label: int((g.rises == "yes").sum()) for label, g in measured.groupby("intervention", sort=False)}
    lr_label, combined = INTERVENTIONS["lr"], INTERVENTIONS["high_lr_l2"]
    rivals = {k: v for k, v in consistent.items() if k not in (lr_label, combined)}
    if lr_label not in consistent or not rivals:
        return {"agrees": "unclear", "consistent": consistent, "better": [], "too_few": too_few}
    better = [k for k, v in rivals.items() if v > consistent[lr_label]]
    return {"agrees": "no" if better else "yes", "consistent": consistent, "better": better, "too_few": too_few}


def verdict_sensitivity(runs, dataset: str, model: str, used: dict | None = None) -> dict:
    """How much `lr_most_consistent`'s verdict on one cell rests on single hyperparameter values:
    the verdict again with each counted value of each intervention left out (all its seeds), one at a
    time. Returns the verdict on all runs (`agrees`), the number of values tried (`checks`; none when
    the verdict is "unclear") and each value that changes it (`flips`: intervention label, value,
    new verdict). `used`: the `counted_intervention_runs`, when already selected."""
    import pandas as pd

    from .vocabulary import INTERVENTIONS

    used = counted_intervention_runs(runs, dataset, model) if used is None else used
    reading = _cell_reading(used)
    rows = {name: _intervention_rows(dataset, name, ok, reading) for name, ok in used.items()}
    agrees = lr_most_consistent(pd.DataFrame([r for rs in rows.values() for r in rs]))["agrees"]
    checks, flips = 0, []
    if agrees == "unclear":
        return {"agrees": agrees, "checks": 0, "flips": []}
    for name, ok in used.items():
        for value in sorted(ok.hp.unique()) if len(ok) else ():
            checks += 1
            fewer = dict(used, **{name: ok[ok.hp != value]})
            if _cell_reading(fewer) == reading:  # only this intervention's rows change
                card = pd.DataFrame([r for n, rs in rows.items() for r in (
                    _intervention_rows(dataset, n, fewer[n], reading) if n == name else rs)])
            else:
                card = compare_interventions(runs, dataset, model, fewer)
            other = lr_most_consistent(card)["agrees"]
            if other != agrees:
                flips.append((INTERVENTIONS[name], float(value), other))
    return {"agrees": agrees, "checks": checks, "flips": flips}
