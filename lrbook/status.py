"""What is reproduced: every figure and table of the paper (REPRODUCTION_SPEC section 5) against
the runs in the store. Used by `python -m lrbook status` and the book's status page."""
from __future__ import annotations

from dataclasses import dataclass

from .reference import MIN_LRS, MIN_SEEDS, complete_lrs
from .report import best_scale

SEMI_SYNTHETIC = ("colored_mnist", "double_mnist", "mnist_cifar", "corrupted_cifar10")
ARCHITECTURES = ("fcn", "cnn", "resnet18", "resnet50", "wide_resnet101_2")


@dataclass(frozen=True)
class PaperItem:
    item: str
    shows: str
    section: str
    cells: tuple[tuple[str, str], ...] = ()  # (dataset, model) cells whose LR sweeps it needs
    blocked: str = ""  # why it cannot be reproduced here, if so
    planned: str = ""  # what is still to be built, if nothing can show it yet
    requires: str = ""  # a boolean config field the runs must have set (e.g. neuron_probes)
    partial: str = ""  # if set, the item is at best "partial", for this reason


_CIFAR = ("CIFAR-10/100 cannot be downloaded on the build machine (no internet); the code runs "
          "wherever torchvision can download them")

PAPER_ITEMS = (
    PaperItem("Fig. 3", "Parity, FCN: acc., prunability, act. compressibility vs LR; attributions over training",
              "01 synthetic", (("parity", "fcn"),)),
    PaperItem("Fig. 15", "Moon-star, FCN: the same panels", "01 synthetic", (("moon_star", "fcn"),)),
    PaperItem("Fig. 4, 16", "Semi-synthetic sets x 5 architectures: acc., prunability, act. compressibility vs LR",
              "02 semi-synthetic", tuple((d, m) for d in SEMI_SYNTHETIC for m in ARCHITECTURES)),
    PaperItem("Fig. 5", "Same cells: avg. CSI and class separation vs LR", "02 semi-synthetic",
              tuple((d, m) for d in SEMI_SYNTHETIC for m in ARCHITECTURES)),
    PaperItem("Fig. 21, 22", "Unbiased acc. vs pruning ratio (structured, magnitude)", "02 semi-synthetic",
              tuple((d, m) for d in SEMI_SYNTHETIC for m in ARCHITECTURES)),
    PaperItem("Fig. 7, 19", "Swin-T on CelebA / Waterbirds (AdamW, pretrained)", "03 naturalistic",
              blocked="CelebA, Waterbirds and ImageNet-pretrained Swin-T weights cannot be downloaded here"),
    PaperItem("Fig. 6, 9, 20, Table S2", "ResNet18: LR vs batch size, momentum, L1, L2, focal loss, ASAM",
              "04 hyperparameters", planned="section 04 is not built yet"),
    PaperItem("Fig. 8, 10, 14, 35, 36", "CIFAR-10/100 attribution maps, entropy, background share",
              "05 standard classification", blocked=_CIFAR),
    PaperItem("Fig. 11", "ImageNet-1k: the same LR effects", "05 standard classification",
              blocked="ImageNet-1k is not available here and needs far more than this project's GPU time"),
    PaperItem("Fig. 12, 13, Prop. 1", "Mechanism: max BC loss ratio vs acc., training dynamics, Prop. 1 numerically",
              "06 mechanism", (("parity", "fcn"),) + tuple((d, m) for d in ("colored_mnist", "double_mnist")
                                                         for m in ("fcn", "cnn", "resnet18"))),
    PaperItem("Fig. 18", "Mechanism: class- vs bias-dominant neuron persistence; per-neuron update resets",
              "06 mechanism", (("parity", "fcn"), ("colored_mnist", "fcn")), requires="neuron_probes",
              partial="top panel on the parity FCN and the Colored MNIST FCN at cpu scale (paper: ResNet18 / "
                      "Colored MNIST); bottom panel (per-unit update size vs spurious share) on the Colored MNIST "
                      "FCN, cpu scale"),
    PaperItem("Fig. 23-26, 29, 30", "Robustness checks: step decay, Adam, longer training, PSGD/WSD, soups",
              "07 robustness checks", planned="section 07 is not built yet"),
    PaperItem("Table S1", "Value ranges per dataset x model cell", "scorecard",
              tuple([("parity", "fcn"), ("moon_star", "fcn")]
                    + [(d, m) for d in SEMI_SYNTHETIC for m in ARCHITECTURES])),
    PaperItem("Table S2", "Value ranges of the hyperparameter comparison", "scorecard",
              planned="needs section 04"),
)


def cell_coverage(df, dataset: str, model: str) -> dict:
    """Runs, LRs, seeds and scale stored for one cell, at the scale the book shows it at
    (`report.best_scale`). It is `complete` with `MIN_LRS` LRs of `MIN_SEEDS` finished seeds each
    (`reference.complete_lrs`)."""
    sub = df[(df.dataset == dataset) & (df.model == model)] if len(df) else df
    if sub is None or len(sub) == 0:
        return {"runs": 0, "lrs": 0, "seeds": 0, "scale": None, "complete": False}
    scale = best_scale(sub)
    at = sub[sub.scale == scale]
    return {"runs": int(len(at)), "lrs": int(at.lr.nunique()), "seeds": int(at.seed.nunique()),
            "scale": scale, "lr_min": float(at.lr.min()), "lr_max": float(at.lr.max()),
            "complete": complete_lrs(at) >= MIN_LRS}


def status_table(store=None):
    """One row per paper item: status (reproduced / partial / pending / not possible here), scale,
    runs, LRs, seeds and a note."""
    import pandas as pd

    from .store import ResultStore

    store = ResultStore() if store is None else store
    df = store.to_frame()
    all_runs = store.to_frame(dedupe=False)
    rows = []
    for it in PAPER_ITEMS:
        runs = df
        if it.requires:
            runs = (all_runs[all_runs[it.requires].fillna(False).astype(bool)] if it.requires in all_runs
                    else all_runs.iloc[0:0])
        row = {"item": it.item, "shows": it.shows, "section": it.section}
        if it.blocked:
            row.update(status="not possible here", note=it.blocked)
        elif not it.cells:
            row.update(status="pending", note=it.planned)
        else:
            cov = [cell_coverage(runs, d, m) | {"cell": f"{d}/{m}"} for d, m in it.cells]
            done = [c for c in cov if c["complete"]]
            some = [c for c in cov if c["runs"] > 0]
            status = "reproduced" if len(done) == len(cov) else "partial" if some else "pending"
            scales = sorted({c["scale"] for c in some})
            row.update(status=status, scale=", ".join(scales) or None,
                       runs=sum(c["runs"] for c in some), lrs=max((c["lrs"] for c in some), default=0),
                       seeds=max((c["seeds"] for c in some), default=0),
                       note=(f"{len(done)}/{len(cov)} cells with >= {MIN_LRS} LRs x {MIN_SEEDS} seeds"
                             + (f"; with runs: {', '.join(c['cell'] for c in some)}" if 0 < len(some) < len(cov) else "")
                             if len(cov) > 1 else ("" if done else f"needs >= {MIN_LRS} LRs x {MIN_SEEDS} seeds")))
            if it.partial and some:
                row.update(status="partial", note=it.partial)
        rows.append(row)
    out = pd.DataFrame(rows)
    for col in ("scale", "runs", "lrs", "seeds"):
        if col not in out:
            out[col] = None
    return out[["item", "shows", "section", "status", "scale", "runs", "lrs", "seeds", "note"]]


def scorecard(store=None):
    """Table S1 against ours for every stored (dataset, model, scale) cell: one row per variable with
    the paper's range, ours, Spearman(LR, variable) with its seed-bootstrap interval and agreement;
    `left_out` counts the cell's diverged and under-trained runs, which the comparison does not use."""
    import pandas as pd

    from .reference import compare_with_paper
    from .store import ResultStore

    store = ResultStore() if store is None else store
    df = store.to_frame()
    if df.empty:
        return pd.DataFrame()
    parts = []
    for (d, m, s), sub in df.groupby(["dataset", "model", "scale"]):
        t = compare_with_paper(sub, d, m)
        t.insert(0, "scale", s)
        t.insert(0, "model", m)
        t.insert(0, "dataset", d)
        t["runs"], t["lrs"], t["seeds"] = len(sub), sub.lr.nunique(), sub.seed.nunique()
        t["left_out"] = t.attrs["left_out"]
        parts.append(t)
    return pd.concat(parts, ignore_index=True)
