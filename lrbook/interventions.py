"""Sec. 5's comparison of large LRs with other hyperparameters and regularisers (Fig. 6, 9, 20;
Table S2): how each intervention maps to run configs and back (their training pieces, focal loss,
the L1 penalty and ASAM's step, are in `lrbook.objective`).

Each intervention varies its own hyperparameter over Table S2's range with the LR fixed, and every
run is an ordinary record keyed by its config. Reading Table S2 (supplement D.3):

* The fixed LR is the low end of the cell's LR range. At their weakest setting every intervention's
  accuracy is the LR sweep's lowest-LR accuracy (Colored MNIST: 68.2 to 68.7% against 68.3% at LR
  0.001 in Table S1's ResNet18 row; Double MNIST 85.0 to 85.7% against 85.4%; MNIST-CIFAR 25.9 to
  26.3% against 26.2%). At `cpu` scale the FCN cannot train to 100% at that end within the epoch
  cap, so its low LR is the lowest of its `cpu` sweep that does (`REDUCED_SCALE_LOW_LR`).
* "High LR + L2" fixes the LR at the high end of the LR range and varies the L2 coefficient: its
  accuracy starts where the LR sweep ends (Colored MNIST 92.18% against 92.20%, Double MNIST
  96.68% against 96.39%) and rises above it, the paper's "combined with high LRs to achieve even
  better trade-offs" (Sec. 5).
* The batch-size column, 0.01 to 0.3333, is 1 / batch size: batch 100 (the paper's default,
  Sec. 4.2) down to batch 3, both whole numbers only under this reading (batch size / 100 would
  give 33.33 at the top). At a fixed LR, 1 / B is proportional to the SGD noise scale LR / B, so
  the axis runs, as for the other interventions, from the weakest setting to the strongest; its
  weakest end (batch 100 at the low LR) is the LR sweep's lowest-LR run, and the table's accuracy
  there is that run's.
"""
from __future__ import annotations

import numpy as np

from .config import ASAM_ETA, RunConfig, make_config
from .vocabulary import INTERVENTIONS

# The config fields each intervention sets, with their values when it is off (RunConfig's defaults).
INTERVENTION_FIELDS = {"batch_size": 100, "momentum": 0.0, "weight_decay": 0.0, "l1_penalty": 0.0,
                       "loss": "cross_entropy", "focal_gamma": 0.0, "optimizer": "sgd", "asam_rho": 0.0,
                       "asam_eta": ASAM_ETA}


def _table_s2_rows(dataset: str):
    from .paper import table_s2
    from .vocabulary import dataset_name

    t = table_s2()
    rows = t[t.dataset == dataset_name(dataset)]
    return rows if len(rows) else t[t.dataset == "Colored MNIST"]


def paper_range(intervention: str, dataset: str) -> tuple[float, float]:
    """Table S2's hyperparameter range of an intervention on a dataset (Colored MNIST's for a
    dataset the table does not cover)."""
    rows = _table_s2_rows(dataset)
    row = rows[rows.intervention == INTERVENTIONS[intervention]].iloc[0]
    return float(row.hp_min), float(row.hp_max)


# At `cpu` scale (10,000 training images, a 300-epoch cap) the FCN does not reach 100% training
# accuracy at the low end of Table S1's LR range, so an intervention there would measure the cap,
# not the intervention. Its low LR is instead the smallest LR of the cell's stored `cpu` sweep at
# which every seed converged (100% training accuracy before the cap; results/, 2026-11-30):
# Colored MNIST LR 0.001 to 0.02 stopped at the cap (98.7% to 99.99% training accuracy), 0.05
# converged in 127 to 134 epochs; Double MNIST LR 0.005 stopped at 99.5%, 0.02 converged in 127
# to 134 epochs. The high end (Table S1's 0.5) converges at `cpu` scale and is kept.
REDUCED_SCALE_LOW_LR = {("colored_mnist", "fcn", "cpu"): 0.05, ("double_mnist", "fcn", "cpu"): 0.02}


def fixed_lrs(dataset: str, model: str, scale: str = "paper") -> tuple[float, float]:
    """The (low, high) LR the interventions run at: the ends of the cell's LR range; Table S2's LR
    row for ResNet18 (the model of Fig. 6 and Table S2), else Table S1's row of the cell, with the
    low end raised where a reduced scale cannot train there (`REDUCED_SCALE_LOW_LR`)."""
    from .paper import paper_row

    if model == "resnet18":
        low, high = paper_range("lr", dataset)
    else:
        ref = paper_row(dataset, model)
        if ref is None:
            raise KeyError(f"Table S1 has no cell {dataset}/{model}, so its interventions have no fixed LR")
        low, high = float(ref.lr_min), float(ref.lr_max)
    return REDUCED_SCALE_LOW_LR.get((dataset, model, scale), low), high


def hyperparameter_grid(intervention: str, dataset: str, n: int = 5) -> list[float]:
    """n values spanning Table S2's range, end points the paper's: log-spaced (1 significant digit
    inside); momentum log-spaced in 1 - momentum, 2 significant digits (0.1, 0.71, 0.91, 0.97, 0.99); batch
    size as 1 / B for whole batch sizes B."""
    lo, hi = paper_range(intervention, dataset)
    if intervention == "momentum":
        inner = 1 - np.geomspace(1 - lo, 1 - hi, n)[1:-1]
        return [lo] + [float(f"{v:.2g}") for v in inner] + [hi]
    if intervention == "batch_size":
        sizes = sorted({int(round(1 / v)) for v in np.geomspace(lo, hi, n)}, reverse=True)
        return [1 / b for b in sizes]
    inner = np.geomspace(lo, hi, n)[1:-1]
    return [lo] + [float(f"{v:.1g}") for v in inner] + [hi]


def intervention_config(dataset: str, model: str, intervention: str, value: float, seed: int = 0,
                        scale: str = "cpu", **overrides) -> RunConfig:
    """The run of `intervention` at hyperparameter `value` (Table S2's encoding) in one cell, at the
    intervention's fixed LR (`fixed_lrs`)."""
    if intervention not in INTERVENTIONS:
        from .config import ConfigError

        raise ConfigError(f"unknown intervention {intervention!r}; choose one of {', '.join(INTERVENTIONS)}")
    low, high = fixed_lrs(dataset, model, scale)
    fields = {"lr": dict(lr=value), "high_lr_l2": dict(lr=high, weight_decay=value),
              "batch_size": dict(lr=low, batch_size=int(round(1 / value))), "momentum": dict(lr=low, momentum=value),
              "l1": dict(lr=low, l1_penalty=value), "l2": dict(lr=low, weight_decay=value),
              "focal_loss": dict(lr=low, loss="focal", focal_gamma=value),
              "asam": dict(lr=low, optimizer="asam", asam_rho=value)}[intervention]
    return make_config(dataset, model, seed=seed, scale=scale, **fields, **overrides)


def with_intervention_columns(runs):
    """A store frame with every intervention field as a column (records stored before a field
    existed hold its default)."""
    runs = runs.copy()
    for name, default in INTERVENTION_FIELDS.items():
        runs[name] = runs[name].fillna(default) if name in runs else default
    return runs


def plain_runs(runs):
    """The runs of the LR sweeps: every intervention field at its default (Sec. 4.2's training)."""
    if len(runs) == 0:
        return runs
    full = with_intervention_columns(runs)
    plain = np.ones(len(runs), dtype=bool)
    for name, default in INTERVENTION_FIELDS.items():
        plain &= (full[name] == default).to_numpy()
    return runs[plain]


def intervention_runs(runs, dataset: str, model: str, intervention: str):
    """The runs of one intervention in one cell (all scales), with its hyperparameter as column `hp`:
    those that change only its own fields, at its fixed LR. The LR sweep ("lr") is the plain runs; the
    batch-size intervention includes the plain run at the low LR (batch 100, its weakest setting)."""
    if len(runs) == 0:
        return runs.assign(hp=[])
    from .selection import variant_runs

    cell = runs[(runs.dataset == dataset) & (runs.model == model)]
    cell = with_intervention_columns(cell[~variant_runs(cell)])
    own = {"lr": (), "high_lr_l2": ("weight_decay",), "l2": ("weight_decay",), "batch_size": ("batch_size",),
           "momentum": ("momentum",), "l1": ("l1_penalty",), "focal_loss": ("loss", "focal_gamma"),
           "asam": ("optimizer", "asam_rho", "asam_eta")}[intervention]
    others = np.ones(len(cell), dtype=bool)
    for name, default in INTERVENTION_FIELDS.items():
        if name not in own:
            others &= (cell[name] == default).to_numpy()
    cell = cell[others]
    if intervention == "lr":
        return cell.assign(hp=cell.lr.astype(float))
    end = 1 if intervention == "high_lr_l2" else 0
    fixed = cell.scale.map(lambda scale: fixed_lrs(dataset, model, scale)[end]).astype(float)
    cell = cell[np.isclose(cell.lr.astype(float), fixed)]
    value = {"high_lr_l2": cell.weight_decay, "l2": cell.weight_decay, "batch_size": 1 / cell.batch_size.astype(float),
             "momentum": cell.momentum, "l1": cell.l1_penalty, "focal_loss": cell.focal_gamma,
             "asam": cell.asam_rho}[intervention].astype(float)
    if intervention == "batch_size":
        return cell.assign(hp=value)
    on = (value > 0) & ((cell.loss == "focal") if intervention == "focal_loss" else True) \
        & ((cell.optimizer == "asam") if intervention == "asam" else True)
    return cell[on].assign(hp=value[on])


def counted_runs(runs, intervention: str):
    """The runs of one intervention (from `intervention_runs`) that Sec. 5's comparison counts: for the
    LR sweep its `selection.scored_runs` (the paper's LR-range rule too), for the others every run
    that neither diverged nor stopped under-trained."""
    from .selection import scored_runs, under_trained

    if intervention == "lr":
        return scored_runs(runs)
    return runs[(runs.status != "diverged") & ~under_trained(runs)]
