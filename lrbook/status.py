"""What is reproduced: every figure, table and proposition of the paper (book/definitions.md, section 5)
against the runs in the store, as coverage (what is stored) and verdict (whether the stored runs show
the paper's trends, from the Table S1 scorecard). Used by `python -m lrbook status` and the book's
status page."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .compare import scorecard
from .selection import MIN_LRS, MIN_SEEDS, complete_lrs, select_runs, with_logging
from .vocabulary import MECHANISM_CELLS, MODELS, SEMI_SYNTHETIC_CELLS, SYNTHETIC_CELLS, dataset_name, model_name


@dataclass(frozen=True)
class PaperItem:
    item: str
    shows: str
    section: str
    cells: tuple[tuple[str, str], ...] = ()  # (dataset, model) cells whose LR sweeps it needs
    variables: tuple[str, ...] = ()  # Table S1 variables whose rise with LR the verdict scores
    blocked: str = ""  # why it cannot be reproduced here, if so
    planned: str = ""  # what is still to be built, if nothing can show it yet
    requires: str = ""  # a boolean config field the runs must have set (e.g. neuron_probes)
    partial: str = ""  # if set, the item is at best "partial", for this reason
    illustration: str = ""  # if set, a diagram or a set of examples: nothing to reproduce, for this reason
    computed: str = ""  # if set, computed when the page is built, from no stored runs: what it checks
    undescribed: bool = False  # the paper's text never refers to it: what it shows is not known here
    interventions: bool = False  # Sec. 5's comparison: coverage and verdict from the interventions' runs
    judge: Callable | None = None  # verdict of a claim other than a Table S1 trend: runs -> (verdict, note)


def compressibility_verdict(runs) -> tuple[str, str]:
    """Fig. 26's claim, that the alternative measures of compressibility rise with LR as activation
    compressibility does, on the cells of `runs`, as page 02 marks it (`compare.lr_trends`)."""
    from .compare import lr_trends
    from .vocabulary import COMPRESSIBILITY_MEASURES, METRIC_LABELS

    trends = lr_trends(runs, COMPRESSIBILITY_MEASURES)
    if trends.empty:
        return "not scored", "no run stores these measures"
    kinds = set(trends.direction)
    verdict_ = {frozenset({"rises"}): "agrees", frozenset({"falls"}): "disagrees",
                frozenset({"unclear"}): "unclear"}.get(frozenset(kinds), "partly")
    if verdict_ == "agrees":
        return verdict_, f"all {trends.measure.nunique()} measures rise with LR"
    words = {"falls": "falls with LR", "unclear": "has no clear trend"}
    return verdict_, "; ".join(f"{METRIC_LABELS[r.measure]} {words[r.direction]} on "
                               f"{_cell_name(r.dataset, r.model, r.scale)}"
                               for r in trends.itertuples() if r.direction != "rises")


def attribution_verdict(runs) -> tuple[str, str]:
    """Fig. 27's claim, that CSI follows the core attribution share with LR, on the cells of `runs`
    (each at the scale the book shows it), as page 02 judges it (`compare.attribution_agreement`)."""
    from .compare import attribution_agreement

    table = attribution_agreement(runs)
    if table.empty:
        return "not scored", "no run stores the attribution share"
    answers = list(table.csi_follows)
    verdict_ = ("agrees" if set(answers) == {"yes"} else "disagrees" if set(answers) == {"no"}
                else "unclear" if set(answers) == {"unclear"} else "partly")
    words = {"yes": "follows", "no": "goes against", "unclear": "has no clear relation to"}
    return verdict_, "; ".join(f"{_cell_name(r.dataset, r.model, r.scale)}: avg. CSI {words[r.csi_follows]} the core "
                               "attribution share" + (f" (Spearman over runs {r.csi_with_core:+.2f})"
                                                      if r.csi_with_core == r.csi_with_core else "")
                               for r in table.itertuples())


# Table S2's cells (ResNet18 on three datasets); Sec. 5's items also count any other cell with runs
# of an intervention (e.g. the FCN at `cpu` scale), as page 04 shows them.
_TABLE_S2_CELLS = tuple((d, "resnet18") for d in ("colored_mnist", "mnist_cifar", "double_mnist"))
MIN_INTERVENTION_VALUES = 4  # per intervention and cell: values with MIN_SEEDS counted seeds
_CIFAR = ("CIFAR-10/100 cannot be downloaded on the build machine (no internet); the code runs "
          "wherever torchvision can download them")
_SEMI = SEMI_SYNTHETIC_CELLS
_ACC_COMPRESSIBILITY = ("Unbiased test acc.", "Prunability", "Act. compressibility")
_SEPARATION = ("Avg. CSI", "Class separation")
_TABLE_S1 = _ACC_COMPRESSIBILITY + _SEPARATION

# Every figure, table and proposition of the paper (main text and supplement), in the order of the
# paper's numbering where items are not grouped by the section of the book that shows them.
PAPER_ITEMS = (
    PaperItem("Fig. 1", "Overview of the paper's results", "intro",
              illustration="a summary of the results; the items below reproduce what it summarises"),
    PaperItem("Fig. 2", "Example images of the four semi-synthetic datasets", "02 semi-synthetic",
              illustration="example inputs, no result; lrbook.data builds the datasets"),
    PaperItem("Fig. 3", "Parity, FCN: acc., prunability, act. compressibility vs LR; attributions over training",
              "01 synthetic", (("parity", "fcn"),), _ACC_COMPRESSIBILITY),
    PaperItem("Fig. 15", "Moon-star, FCN: the same panels", "01 synthetic", (("moon_star", "fcn"),),
              _ACC_COMPRESSIBILITY),
    PaperItem("Fig. 4, 16", "Semi-synthetic sets x 5 architectures: acc., prunability, act. compressibility vs LR",
              "02 semi-synthetic", _SEMI, _ACC_COMPRESSIBILITY),
    PaperItem("Fig. 5", "Same cells: avg. CSI and class separation vs LR", "02 semi-synthetic", _SEMI, _SEPARATION),
    PaperItem("Fig. 21, 22", "Unbiased acc. vs pruning ratio (structured, magnitude)", "02 semi-synthetic",
              _SEMI, ("Prunability",)),
    PaperItem("Fig. 7, 19", "Swin-T on CelebA / Waterbirds (AdamW, pretrained)", "03 naturalistic",
              blocked="CelebA, Waterbirds and ImageNet-pretrained Swin-T weights cannot be downloaded here"),
    PaperItem("Fig. 6, 9, 20", "ResNet18: LR vs batch size, momentum, L1, L2, focal loss, ASAM",
              "04 hyperparameters", _TABLE_S2_CELLS, interventions=True),
    PaperItem("Fig. 8, 10, 14, 35, 36", "CIFAR-10/100 attribution maps, entropy, background share",
              "05 standard classification",
              blocked=_CIFAR + "; page 05 shows the same analyses on MNIST and Fashion-MNIST meanwhile"),
    PaperItem("Fig. 11", "ImageNet-1k: the same LR effects", "05 standard classification",
              blocked="ImageNet-1k is not available here and needs GPUs; its streamed, multi-GPU path "
                      "(torchrun, lrbook.distributed) is tested on the CPU"),
    PaperItem("Prop. 1, 2", "BC share of the minibatch loss, and BC share of the subnetworks' gradients, "
              "as the logits grow", "06 mechanism",
              computed="evaluated numerically on constructed examples when the page is built; no runs needed"),
    PaperItem("Fig. 12, 13", "Mechanism: max BC loss ratio vs acc., training dynamics at a low and a high LR",
              "06 mechanism", MECHANISM_CELLS),
    PaperItem("Fig. 18", "Mechanism: class- vs bias-dominant neuron persistence; per-neuron update resets",
              "06 mechanism", (("parity", "fcn"), ("colored_mnist", "fcn")), requires="neuron_probes",
              partial="top panel on the parity FCN and the Colored MNIST FCN at cpu scale (paper: ResNet18 / "
                      "Colored MNIST); bottom panel (per-unit update size vs spurious share) on the Colored MNIST "
                      "FCN, cpu scale"),
    PaperItem("Fig. 17", "Not referred to in the paper's text", "", undescribed=True),
    PaperItem("Fig. 23-25, 29, 30", "Robustness checks: step decay, Adam, longer training, PSGD/WSD, soups",
              "07 robustness checks", planned="section 07 is not built yet"),
    PaperItem("Fig. 26", "Other compressibility measures (sparsity, PQ-index, parameters) vs LR", "02 semi-synthetic",
              (("colored_mnist", "resnet18"),), judge=compressibility_verdict),
    PaperItem("Fig. 27", "Double MNIST: avg. CSI beside the attribution share on the core half, vs LR",
              "02 semi-synthetic", tuple(("double_mnist", m) for m in MODELS), judge=attribution_verdict),
    PaperItem("Fig. 28", "Not referred to in the paper's text", "", undescribed=True),
    PaperItem("Fig. 31, 33", "Attribution maps, low vs high LR: Colored MNIST, Double MNIST", "02 semi-synthetic",
              (("double_mnist", "resnet18"),),
              partial="02 draws the maps of the lowest and highest LR for every Double MNIST cell with stored "
                      "maps; no page draws Colored MNIST maps, whose core and spurious pixels coincide"),
    PaperItem("Fig. 32, 34", "Attribution maps, low vs high LR: MNIST-CIFAR, CelebA", "02, 03",
              blocked="MNIST-CIFAR needs CIFAR-10 and CelebA cannot be downloaded here"),
    PaperItem("Table S1", "Value ranges per dataset x model cell", "scorecard",
              SYNTHETIC_CELLS + _SEMI, _TABLE_S1),
    PaperItem("Table S2", "Value ranges of the hyperparameter comparison", "04 hyperparameters",
              _TABLE_S2_CELLS, interventions=True),
)

COVERAGE = ("complete", "partial", "pending", "not possible here", "computed", "nothing to reproduce",
            "not described")
VERDICTS = ("agrees", "partly", "disagrees", "unclear", "not scored", "not run", "not possible here",
            "nothing to reproduce")


def cell_coverage(df, dataset: str, model: str) -> dict:
    """Runs, LRs, seeds and scale stored for one cell, at the scale the book shows it at
    (`selection.select_runs`). It is `complete` with `MIN_LRS` LRs of `MIN_SEEDS` finished seeds each
    (`selection.complete_lrs`)."""
    at = select_runs(df, (dataset, model))
    if at is None or len(at) == 0:
        return {"runs": 0, "lrs": 0, "seeds": 0, "scale": None, "complete": False}
    scale = at.scale.iloc[0]
    return {"runs": int(len(at)), "lrs": int(at.lr.nunique()), "seeds": int(at.seed.nunique()),
            "scale": scale, "lr_min": float(at.lr.min()), "lr_max": float(at.lr.max()),
            "complete": complete_lrs(at) >= MIN_LRS}


def intervention_coverage(df, dataset: str, model: str) -> dict:
    """Sec. 5's comparison in one cell, at the scale page 04 shows it (`figures.intervention_scale`):
    per intervention, the hyperparameter values with `MIN_SEEDS` counted seeds
    (`interventions.counted_runs`); `complete` when every intervention has `MIN_INTERVENTION_VALUES`
    of them; `agrees` is page 04's verdict (`compare.lr_most_consistent`: yes, no or unclear) and
    `flips` the single values that change it (`compare.verdict_sensitivity`)."""
    from .compare import compare_interventions, lr_most_consistent, verdict_sensitivity
    from .figures import intervention_scale
    from .interventions import counted_runs, intervention_runs
    from .vocabulary import INTERVENTIONS

    scale = intervention_scale(df, (dataset, model)) if len(df) else None
    if scale is None:
        return {"runs": 0, "scale": None, "complete": False, "values": {}, "agrees": None, "flips": []}
    at = df[df.scale == scale]
    per = {name: intervention_runs(at, dataset, model, name) for name in INTERVENTIONS}
    used = {name: counted_runs(runs, name) for name, runs in per.items()}
    values = {name: int((c.groupby("hp").seed.nunique() >= MIN_SEEDS).sum()) if len(c) else 0 for name, c in used.items()}
    ids = {run_id for r in per.values() for run_id in r.run_id}  # batch 100 is also the LR sweep's run
    return {"runs": len(ids), "scale": scale, "values": values,
            "lrs": int(per["lr"].lr.nunique()) if len(per["lr"]) else 0,
            "seeds": int(max((r.seed.nunique() for r in per.values() if len(r)), default=0)),
            "complete": all(v >= MIN_INTERVENTION_VALUES for v in values.values()),
            "agrees": lr_most_consistent(compare_interventions(at, dataset, model, used)),
            "flips": verdict_sensitivity(at, dataset, model, used)["flips"]}


def _interventions_row(df) -> dict:
    """Coverage and verdict of Sec. 5's items (Fig. 6, 9, 20; Table S2): the paper's three ResNet18
    cells and every other cell with runs of an intervention, each at page 04's scale. Complete when
    the paper's cells all are (`intervention_coverage`); the verdict summarises page 04's per cell."""
    from .figures import intervention_cells
    from .prose import VERDICT_WORDS
    from .vocabulary import INTERVENTIONS

    with_interventions = intervention_cells(df) if len(df) else []
    cells = list(_TABLE_S2_CELLS) + [c for c in with_interventions if c not in _TABLE_S2_CELLS]
    cov = {c: intervention_coverage(df, *c) for c in cells}
    some = {c: v for c, v in cov.items() if v["runs"]}
    if not some:
        return {"status": "pending", "verdict": "not run", "note": "no runs of the LR sweeps or the interventions"}
    notes = []
    for c, v in some.items():
        if c not in with_interventions:
            continue
        name = _cell_name(*c, v["scale"])
        short = [f"{INTERVENTIONS[n]} {k}" for n, k in v["values"].items() if k < MIN_INTERVENTION_VALUES]
        done = len(v["values"]) - len(short)
        notes.append(f"{name}: {done}/{len(v['values'])} interventions with >= {MIN_INTERVENTION_VALUES} values x "
                     f"{MIN_SEEDS} seeds" + (f" (fewer: {', '.join(short)})" if short else ""))
    missing = [_cell_name(*c, None) for c in _TABLE_S2_CELLS if c not in with_interventions]
    if missing:
        notes.append(f"no intervention runs yet for the paper's {', '.join(missing)}")
    judged = {c: v["agrees"] for c, v in some.items() if v["agrees"]["agrees"] in ("yes", "no")}
    answers = {v["agrees"] for v in judged.values()}
    if not judged:
        verdict_, why = "unclear", ("no cell has runs of the LR sweep and of another intervention with "
                                    "enough values to compare")
    else:
        verdict_ = "agrees" if answers == {"yes"} else "disagrees" if answers == {"no"} else "partly"
        parts = []
        for c, a in judged.items():
            counts = ", ".join(f"{k} {n}" for k, n in a["consistent"].items())
            result = (f"{', '.join(a['better'])} raise{'s' if len(a['better']) == 1 else ''} more than LR" if a["better"]
                      else "no other intervention raises more than LR")
            fragile = "; ".join(f"without {label} {value:g} it {VERDICT_WORDS[new]}" for label, value, new in some[c]["flips"])
            parts.append(f"{_cell_name(*c, some[c]['scale'])}: {result} (variables that rise, of 3: {counts})"
                         + (f", fragile ({fragile})" if fragile else ""))
        why = "; ".join(parts)
        unjudged = [_cell_name(*c, None) for c in _TABLE_S2_CELLS if c not in judged]
        if unjudged:
            why += f"; not yet compared on the paper's {', '.join(unjudged)}"
    return {"status": "complete" if all(cov[c]["complete"] for c in _TABLE_S2_CELLS) else "partial",
            "scale": ", ".join(sorted({v["scale"] for v in some.values()})),
            "runs": sum(v["runs"] for v in some.values()), "lrs": max(v["lrs"] for v in some.values()),
            "seeds": max(v["seeds"] for v in some.values()), "note": "; ".join(notes),
            "verdict": verdict_, "verdict_note": why}


def _cell_name(dataset: str, model: str, scale: str | None) -> str:
    name = f"{dataset_name(dataset)}/{model_name(model)}"
    return f"{name} ({scale})" if scale else name


def verdict(card, cells: list[dict], variables: tuple[str, ...]) -> tuple[str, str]:
    """Whether the paper's claim that each of `variables` rises with LR holds on the stored `cells`
    (each at its coverage scale), read from the scorecard's `agrees` column: the Spearman correlation
    of LR with the variable has a 95% seed-bootstrap interval above 0 ("yes"), below 0 ("no") or
    including 0 ("unclear"). Returns (agrees / partly / disagrees / unclear / not scored, note)."""
    answers = []  # (cell name, variable, yes / no / unclear / n/a)
    for c in cells:
        d, m = c["cell"].split("/")
        rows = card[(card.dataset == d) & (card.model == m) & (card.scale == c["scale"])] if len(card) else card
        for v in variables:
            got = list(rows[rows.variable == v].agrees) if len(rows) and "agrees" in rows else []
            answers.append((_cell_name(d, m, c["scale"]), v, got[0] if got and got[0] in ("yes", "no", "unclear")
                            else "n/a"))
    kinds = {a for _, _, a in answers}
    if kinds <= {"n/a"}:
        return "not scored", ("no trend to score: fewer than 3 runs the comparison can use (not diverged, "
                              "not under-trained) with distinct LRs")
    cells_scored = len({c for c, _, a in answers if a != "n/a"})
    if kinds == {"yes"}:
        return "agrees", (f"all {len(variables)} variables rise with LR" if len(variables) > 1
                          else f"{variables[0]} rises with LR") + (
            f" on all {cells_scored} cells with runs" if cells_scored > 1 else "")
    if kinds == {"no"}:
        return "disagrees", (f"all {len(variables)} variables fall with LR" if len(variables) > 1
                             else f"{variables[0]} falls with LR")
    if kinds == {"unclear"}:
        return "unclear", "no variable has a clear trend with LR"
    wording = {"no": "falls with LR", "unclear": "has no clear trend", "n/a": "is not measured"}
    misses = [f"{v} {wording[a]} on {c}" for c, v, a in answers if a != "yes"]
    yes = sum(a == "yes" for _, _, a in answers)
    return "partly", f"{yes} of {len(answers)} (cell, variable) pairs rise with LR; " + "; ".join(misses)


def status_table(store=None, card=None):
    """One row per paper item (`PAPER_ITEMS`). Coverage, what the store holds: `status` (one of
    `COVERAGE`), scale, runs, LRs, seeds and `note`. Verdict, whether it shows the paper's trends:
    `verdict` (one of `VERDICTS`) and `verdict_note`, read from the Table S1 scorecard the section
    pages show (`scorecard`; pass it as `card` if already computed)."""
    import pandas as pd

    from .store import ResultStore

    store = ResultStore() if store is None else store
    df = store.to_frame()
    all_runs = store.to_frame(dedupe=False)
    if card is None and any(it.variables for it in PAPER_ITEMS) and len(df):
        card = scorecard(store)
    card = pd.DataFrame() if card is None else card
    rows = []
    for it in PAPER_ITEMS:
        runs = df
        if it.requires:
            runs = with_logging(all_runs, it.requires)
        row = {"item": it.item, "shows": it.shows, "section": it.section}
        if it.undescribed:
            row.update(status="not described", verdict="not scored",
                       note=f"the paper's text never refers to {it.item}, so what it shows is not known here")
        elif it.illustration:
            row.update(status="nothing to reproduce", note=it.illustration, verdict="nothing to reproduce")
        elif it.blocked:
            row.update(status="not possible here", note=it.blocked, verdict="not possible here")
        elif it.computed:
            row.update(status="computed", note=it.computed, verdict="not scored",
                       verdict_note=f"the {it.section} page reports it")
        elif not it.cells:
            row.update(status="pending", note=it.planned, verdict="not run")
        elif it.interventions:
            row.update(_interventions_row(df))
        else:
            cov = [cell_coverage(runs, d, m) | {"cell": f"{d}/{m}"} for d, m in it.cells]
            done = [c for c in cov if c["complete"]]
            some = [c for c in cov if c["runs"] > 0]
            status = "complete" if len(done) == len(cov) else "partial" if some else "pending"
            scales = sorted({c["scale"] for c in some})
            row.update(status=status, scale=", ".join(scales) or None,
                       runs=sum(c["runs"] for c in some), lrs=max((c["lrs"] for c in some), default=0),
                       seeds=max((c["seeds"] for c in some), default=0),
                       note=(f"{len(done)}/{len(cov)} cells with >= {MIN_LRS} LRs x {MIN_SEEDS} seeds"
                             + (f"; with runs: {', '.join(c['cell'] for c in some)}" if 0 < len(some) < len(cov) else "")
                             if len(cov) > 1 else ("" if done else f"needs >= {MIN_LRS} LRs x {MIN_SEEDS} seeds")))
            if it.partial and some:
                row.update(status="partial", note=it.partial)
            if not some:
                row.update(verdict="not run")
            elif it.judge is not None:
                v, why = it.judge(select_runs(runs, it.cells))
                row.update(verdict=v, verdict_note=why)
            elif not it.variables:
                row.update(verdict="not scored", verdict_note=f"not a Table S1 trend; the {it.section} page "
                                                              "compares it with the paper")
            else:
                v, why = verdict(card, some, it.variables)
                if len(some) < len(cov):
                    why += f" (only {len(some)} of the {len(cov)} cells have runs)"
                row.update(verdict=v, verdict_note=why)
        rows.append(row)
    out = pd.DataFrame(rows)
    for col in ("scale", "runs", "lrs", "seeds", "note", "verdict_note"):
        if col not in out:
            out[col] = None
    for col in ("runs", "lrs", "seeds"):
        out[col] = out[col].astype("Int64")
    return out[["item", "shows", "section", "status", "scale", "runs", "lrs", "seeds", "note", "verdict",
                "verdict_note"]]
