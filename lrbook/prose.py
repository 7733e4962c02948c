"""Every sentence the pages generate from the data: coverage notes, why nothing can be compared,
figure captions (numbered after the paper's, with scale, runs and seeds), and the plain-words
verdicts of Sec. 6 (BA/BC loss ratio, update resets)."""
from __future__ import annotations

import numpy as np

from .selection import MIN_SCORED_TRAIN_ACC, beyond_lr_range, lr_range_end, scored_runs, under_trained
from .vocabulary import BA_BC_DATASETS, cell_title, dataset_name


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def seed_list(seeds) -> str:
    """'seed 0', 'seeds 0, 1, 2', 'no seeds'."""
    seeds = sorted(int(v) for v in set(seeds))
    if not seeds:
        return "no seeds"
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"


def coverage_note(runs, scale: str) -> str:
    """'Scale `paper`: 15 runs, 5 LRs (0.01 to 0.75), 3 seeds each; 0 diverged.'"""
    if runs.empty:
        return f"No stored runs at scale `{scale}`."
    seeds = runs.groupby("lr").seed.nunique()
    n_lrs = runs.lr.nunique()
    if seeds.min() != seeds.max():
        seed_text = f"{seeds.min()} to {seeds.max()} seeds per LR"
    else:
        seed_text = plural(int(seeds.min()), "seed") + (" each" if n_lrs > 1 and seeds.min() > 1 else "")
    lr_text = (f"{n_lrs} LRs ({runs.lr.min():g} to {runs.lr.max():g})" if n_lrs > 1 else f"1 LR ({runs.lr.iloc[0]:g})")
    n_div = int((runs.status == "diverged").sum())
    capped = runs[runs.status == "max_epochs"]
    text = f"Scale `{scale}`: {plural(len(runs), 'run')}, {lr_text}, {seed_text}; {n_div} diverged"
    if len(capped):
        text += f", {len(capped)} stopped at the epoch cap before 100% training accuracy"
        under = runs[under_trained(runs)]
        if len(under):
            lrs = ", ".join(f"{lr:g}" for lr in sorted(under.lr.unique()))
            text += (f" ({len(under)} of them below {100 * MIN_SCORED_TRAIN_ACC:g}%, at LR {lrs}: "
                     f"{100 * under.train_acc.min():.1f} to {100 * under.train_acc.max():.1f}%; under-trained, "
                     "so left out of the comparison with the paper)")
    if scored_runs(runs).empty:
        return text + ". **No run reached 100% training accuracy, so there is nothing to compare with the paper yet.**"
    return text + "." + lr_range_note(runs)


def lr_range_note(runs) -> str:
    """' The paper's LR-range rule (Sec. 4.2) leaves out LR 0.35 and above: 2 of 3 seeds diverged at
    LR 0.35.' for one cell's runs, or '' when it leaves out nothing."""
    end, why = lr_range_end(runs)
    if end is None:
        return ""
    kept = runs[(runs.lr >= end - 1e-12) & (runs.status != "diverged") & ~under_trained(runs)]
    return (f" The paper's LR-range rule (up to divergence or a drastic loss of test accuracy in any seed, Sec. 4.2) "
            f"leaves out LR {end:g}" + (" and above" if (runs.lr > end + 1e-12).any() else "") + f": {why}"
            + (f"; {plural(len(kept), 'finished run')} there {'is' if len(kept) == 1 else 'are'} not compared." if len(kept)
               else ".") )


def nothing_scored_note(runs, scale: str | None = None) -> str | None:
    """Why the runs give nothing to compare with the paper, or None when at least one run counts
    (`selection.scored_runs`; the paper, Sec. 4.2, trains every network to 100% training accuracy).

    'No run at scale `smoke` reached 100% training accuracy: 6 stopped at the epoch cap (53.2 to
    90.0% training accuracy), 0 diverged; there is nothing to compare with the paper yet.'"""
    where = f" at scale `{scale}`" if scale else ""
    if runs.empty:
        return f"No stored runs{where}."
    if not scored_runs(runs).empty:
        return None
    under = runs[under_trained(runs)]
    parts = []
    if len(under):
        lo, hi = 100 * under.train_acc.min(), 100 * under.train_acc.max()
        accs = f"{lo:.1f}%" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f} to {hi:.1f}%"
        parts.append(f"{len(under)} stopped at the epoch cap ({accs} training accuracy)")
    parts.append(f"{int((runs.status == 'diverged').sum())} diverged")
    return (f"No run{where} reached 100% training accuracy: {', '.join(parts)}; there is nothing to compare "
            "with the paper yet.")


def dropped_cell_note(cell, runs) -> str:
    """'Parity / FCN: No run at scale `smoke` reached ...' for a cell none of whose runs count."""
    return f"{cell_title(*cell)}: {nothing_scored_note(runs, runs.scale.iloc[0] if len(runs) else None)}"


def no_data_message(dataset: str, model: str, scale: str, notebook: str) -> str:
    return (f"**No stored runs for {cell_title(dataset, model)} at scale `{scale}` yet.** Nothing below is a "
            f"result of ours: it is the paper's Table S1 range for this cell. To produce runs: "
            f"`papermill {notebook} out.ipynb -p dataset {dataset} -p scale {scale} -p train True`.")


def describe_runs(runs) -> str:
    """'scale paper: 15 runs plotted, 5 LRs, seeds 0, 1, 2' (+ how many diverged or under-trained
    runs are left out)."""
    ok = scored_runs(runs)
    text = (f"scale {runs.scale.iloc[0]}: {plural(len(ok), 'run')} plotted, {plural(ok.lr.nunique(), 'LR')}, "
            f"{seed_list(ok.seed)}")
    left_out = left_out_counts(runs)
    return text + (f"; {' and '.join(left_out)}, not plotted" if left_out else "")


def runs_phrase(runs) -> str:
    """'scale cpu, 15 runs, 5 LRs (0.001 to 0.1), seeds 0, 1, 2' over the cells of `runs`."""
    if len(runs) == 0:
        return "no runs"
    scales = ", ".join(sorted(set(runs.scale)))
    return (f"scale {scales}, {plural(len(runs), 'run')}, {plural(runs.lr.nunique(), 'LR')} "
            f"({runs.lr.min():g} to {runs.lr.max():g}), {seed_list(runs.seed)}")


def cells_phrase(runs) -> str:
    """'Parity / FCN (smoke, 5 runs), Colored MNIST / ResNet18 (cpu, 15 runs)' in vocabulary order."""
    from .selection import stored_cells

    parts = []
    for d, m in stored_cells(runs):
        cell = runs[(runs.dataset == d) & (runs.model == m)]
        parts.append(f"{cell_title(d, m)} ({', '.join(sorted(set(cell.scale)))}, {plural(len(cell), 'run')})")
    return ", ".join(parts)


def figure_caption(number: str, what: str, runs=None, note: str = "") -> str:
    """'**Fig. 3:** Parity / FCN: ... *Scale paper, 15 runs, 5 LRs (0.01 to 0.75), seeds 0, 1, 2.*'
    Numbered after the paper's figure; the runs part is generated from `runs` (None: computed, no runs)."""
    text = f"**{number}:** {what.rstrip('.')}."
    if runs is not None:
        text += f" *{runs_phrase(runs)[0].upper()}{runs_phrase(runs)[1:]}{left_out_phrase(runs)}.*"
    return text + (f" {note}" if note else "")


def left_out_counts(runs) -> list[str]:
    """['2 diverged', '1 beyond the LR range']: the runs `scored_runs` leaves out, by reason."""
    if len(runs) == 0:
        return []
    diverged = runs.status == "diverged"
    under = ~diverged & under_trained(runs)
    beyond = ~diverged & ~under & beyond_lr_range(runs)
    counts = [(int(mask.sum()), why) for mask, why in
              ((diverged, "diverged"), (under, "under-trained"), (beyond, "beyond the LR range"))]
    return [f"{n} {why}" for n, why in counts if n]


def left_out_phrase(runs) -> str:
    """'; left out: 2 diverged, 1 beyond the LR range', or '' when no run is left out."""
    parts = left_out_counts(runs)
    return f"; left out: {', '.join(parts)}" if parts else ""


def ba_bc_sentence(dataset: str, model: str | None, lo=None, hi=None, closer=None, separated=None, agrees=None,
                   reason: str = "") -> str:
    """The plain-words comparison of the BA/BC loss ratio at a low and a high LR (supplement,
    "Mechanism of LR's Effects") from `mechanism.ba_bc_verdict`'s numbers (`lo`, `hi`: rows of
    `mechanism.ba_bc_ratio_by_lr`), or `reason` when no comparison is possible."""
    name = cell_title(dataset, model) if model else dataset_name(dataset)
    if reason:
        return f"{name}: {reason}"

    def desc(row):
        sd = "" if not np.isfinite(row.ratio_sd) else f" ± {row.ratio_sd:.3g}"
        return f"{row.ratio_mean:.3g}{sd} at LR {row.lr:g} ({plural(int(row.runs), 'run')})"

    which = {"low": f"the low LR ({lo.lr:g})", "high": f"the high LR ({hi.lr:g})", "tie": "neither LR"}[closer]
    text = (f"{name}: BA/BC loss ratio {desc(lo)} vs {desc(hi)}; {which} gives the ratio closer to 1 "
            f"({lo.log10_distance:.3f} vs {hi.log10_distance:.3f} orders of magnitude from 1)")
    enough = lo.runs >= 2 and hi.runs >= 2
    text += ("; with a single run at an LR the seed variation is unknown" if not enough
             else "; the per-seed ranges do not overlap" if separated
             else "; the per-seed ranges overlap, so the difference is within seed variation")
    paper = "the paper, which reports ratios closer to 1 at low LR on this dataset"
    if dataset not in BA_BC_DATASETS:
        return text + (". The paper reports this ratio only for Colored MNIST and Double MNIST, so there is no "
                       "paper value to compare with here.")
    return text + {"unclear": f". This neither supports nor contradicts {paper}.",
                   "yes": f". This agrees with {paper}.", "no": f". This disagrees with {paper}."}[agrees]


def reset_sentences(rows: list[dict]) -> str:
    """One sentence per traced run from its `mechanism.reset_summary` (Fig. 18, bottom): does it
    support the paper's reading that large updates reset rising spurious use?"""
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


def consistency_sentence(cell, verdict: dict) -> str:
    """The plain-words verdict of `compare.lr_most_consistent` for one cell (Sec. 5, Fig. 6)."""
    from .compare import MIN_TREND_VALUES

    counts = "; ".join(f"{k} {v} of 3" for k, v in verdict["consistent"].items())
    head = f"{cell_title(*cell)}: variables that rise with each intervention's hyperparameter: {counts or 'none measured'}."
    if verdict.get("too_few"):
        head += (f" Not scored, with fewer than {MIN_TREND_VALUES} hyperparameter values that count: "
                 f"{', '.join(verdict['too_few'])} (their Spearman correlations are shown below).")
    if verdict["agrees"] == "unclear":
        return head + (" The paper's claim that LR is the most consistent cannot be tested yet: it needs runs of the "
                       "LR sweep and of at least one other intervention.")
    if verdict["agrees"] == "no":
        verb = "raises" if len(verdict["better"]) == 1 else "raise"
        return head + (f" {', '.join(verdict['better'])} {verb} more of them than LR: this **disagrees** with the "
                       "paper's claim that LR is the most consistent.")
    return head + " No other single intervention raises more of them than LR: this **agrees** with the paper's claim."


VERDICT_WORDS = {"yes": "agrees", "no": "disagrees", "unclear": "is unclear"}  # `compare.lr_most_consistent`'s


def sensitivity_sentence(sensitivity: dict) -> str:
    """Whether the verdict of `compare.verdict_sensitivity` survives leaving out any one hyperparameter
    value; empty when nothing was tried (an "unclear" verdict)."""
    n, flips = sensitivity["checks"], sensitivity["flips"]
    if not n:
        return ""
    if not flips:
        return f"Leaving out any one of the {n} hyperparameter values (all its seeds) keeps this verdict."
    changed = "; ".join(f"without {label} {value:g} it **{VERDICT_WORDS[agrees]}**" for label, value, agrees in flips)
    return (f"The verdict is fragile: leaving out a single hyperparameter value (all its seeds) changes it for "
            f"{len(flips)} of the {n} values: {changed}.")


def no_intervention_runs(cell) -> str:
    """What a Sec. 5 intervention figure says for a cell without runs."""
    d, m = cell
    return (f"**No stored runs of the interventions for {cell_title(d, m)} yet.** Nothing below is a result of ours: "
            f"it is the paper's Table S2. To produce runs: `papermill notebooks/04_hyperparameters.ipynb out.ipynb "
            f"-p dataset {d} -p model {m} -p intervention momentum`.")


def interventions_phrase(scale: str, per: dict, shown: dict) -> str:
    """'*Scale smoke, 13 runs (Learning Rate 6, Momentum 6, (ASAM) 1), seeds 0, 1; left out: Momentum
    0.97 (1 of 3 runs), 0.99 diverged.*' for one cell's intervention runs (`per`: all, `shown`:
    plotted), naming each value left out, why, and how many of its runs when not all."""
    from .vocabulary import INTERVENTIONS

    ids = {r for runs in per.values() for r in runs.run_id}
    seeds = [s for runs in per.values() for s in runs.seed]
    counts = ", ".join(f"{INTERVENTIONS[k]} {len(v)}" for k, v in per.items() if len(v))
    left = []
    for name, runs in per.items():
        out = runs[~runs.run_id.isin(shown[name].run_id)]
        if out.empty:
            continue
        why = np.where(out.status == "diverged", "diverged",
                       np.where(under_trained(out), "under-trained", "beyond the LR range"))
        for reason in ("diverged", "under-trained", "beyond the LR range"):
            hps = out.hp[why == reason].astype(float)
            items = [f"{v:g}" if (hps == v).sum() == (runs.hp == v).sum()
                     else f"{v:g} ({(hps == v).sum()} of {(runs.hp == v).sum()} runs)" for v in sorted(set(hps))]
            if items:
                left.append(f"{INTERVENTIONS[name]} {', '.join(items)} {reason}")
    return (f"*Scale {scale}, {plural(len(ids), 'run')} ({counts}), {seed_list(seeds)}"
            + (f"; left out: {'; '.join(left)}.*" if left else ".*"))
