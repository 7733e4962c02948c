"""The tables the pages show: per-LR summaries of stored runs (the raw values beside each figure of
Sec. 5), their 'mean ± sd' display, per-run listings, and `html_table`, which styles any frame for
the book (no index column, integers as integers)."""
from __future__ import annotations

import numpy as np

from .vocabulary import LR_EFFECT_METRICS, METRIC_LABELS


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


def spearman_text(rho, lo, hi) -> str:
    """'+0.96 [+0.92, +0.99]'; '—' without a correlation; '(no interval)' when every value has a
    single seed, so the seed bootstrap has nothing to resample."""
    if rho is None or not np.isfinite(rho):
        return "—"
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{rho:+.2f} (no interval: one seed per value)"
    return f"{rho:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def span(row, lo: str, hi: str, digits: int = 3) -> str:
    """`row[lo]` to `row[hi]` as 'min to max' (one number when both read the same; '—' when absent)."""
    import pandas as pd

    if lo not in row or pd.isna(row[lo]):
        return "—"
    low, high = f"{row[lo]:.{digits}g}", f"{row[hi]:.{digits}g}"
    return low if low == high else f"{low} to {high}"


def comparison_table(comparison):
    """`compare.compare_with_paper`'s frame for reading: ranges as 'min to max', the Spearman
    correlation with its 95% interval in one column, and whether it agrees with the paper."""
    import pandas as pd

    rows = []
    for _, r in comparison.iterrows():
        rho = r.get("spearman", np.nan)
        reading = r.get("reading")
        variable = reading if isinstance(reading, str) else r.variable
        rows.append({"variable": variable, "paper": span(r, "paper_min", "paper_max"),
                     "ours": span(r, "ours_min", "ours_max"),
                     "Spearman [95% interval]": spearman_text(rho, r.get("ci_low"), r.get("ci_high")),
                     "agrees": r.get("agrees", "n/a") if isinstance(r.get("agrees"), str) else "n/a"})
    return pd.DataFrame(rows)


def table_s2_comparison(card):
    """`compare.compare_interventions`'s frame for reading (Table S2 beside ours): per intervention
    and variable, our hyperparameter range with the paper's in brackets, the values and runs that
    count, the metric's ranges, the Spearman correlation with its interval,
    and whether the variable rises with the hyperparameter (not scored below `compare.MIN_TREND_VALUES`
    values)."""
    import pandas as pd

    rows = []
    for _, r in card.iterrows():
        rho = r.get("spearman", np.nan)
        reading = r.get("reading")
        rows.append({"intervention": r.intervention, "variable": reading if isinstance(reading, str) else r.variable,
                     "hyperparameter: ours (paper)": f"{span(r, 'hp_min', 'hp_max')} "
                                                     f"({span(r, 'paper_hp_min', 'paper_hp_max')})",
                     "values (runs)": f"{int(r['values'])} ({int(r.runs)})",
                     "paper range": span(r, "paper_min", "paper_max"), "our range": span(r, "ours_min", "ours_max"),
                     "Spearman [95% interval]": spearman_text(rho, r.get("ci_low"), r.get("ci_high")),
                     "rises": r.rises if isinstance(r.get("rises"), str) else "n/a"})
    return pd.DataFrame(rows)


def run_table(df, columns):
    """Every stored run, sorted by LR and seed, with those of `columns` the runs have (a cell whose
    runs all diverged has no metric columns)."""
    return df[[c for c in columns if c in df]].sort_values(["lr", "seed"]).round(4).reset_index(drop=True)


def html_table(frame, wrap=(), precision: int = 3):
    """`frame` styled for the book: no index column, missing values blank, floats to `precision`
    decimals, integers as integers, and the long-text columns `wrap` wrapping within the page."""
    shown = frame.astype(object).where(frame.notna(), "")
    styled = shown.style.hide(axis="index").format(precision=precision)
    styled = styled.set_table_attributes('class="dataframe"')
    if wrap:
        styled = styled.set_properties(subset=list(wrap), **{"white-space": "normal", "min-width": "14em",
                                                             "max-width": "32em", "text-align": "left"})
    return styled
