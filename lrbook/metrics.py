"""Metrics of paper Sec. 3.2-3.3 (REPRODUCTION_SPEC section 4).

Vector metrics take a 2-D tensor (samples x features) and return one value per row; model
metrics take a model and test tensors. `measure_classifier` gives the paper's measures of any
trained classifier at once.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .models import classifier_layer, penultimate_activations, prunable_layers

PRUNE_FRACTIONS = tuple(round(0.1 * i, 1) for i in range(1, 10))  # spec 4: 0.1 .. 0.9

# Versions of each metric family's definition, stored per value in a record's `metric_versions`
# (lrbook.record). Bump a family's number whenever a change to its code changes its values.
METRIC_VERSIONS = {"accuracy": 1, "pruning": 1, "compressibility": 1, "representation": 1, "attribution": 1}


def metric_family(name: str) -> str | None:
    """The `METRIC_VERSIONS` family of a stored metric's name (None for one computed during training,
    such as `max_bc_loss_ratio`, whose version is the code of the training run)."""
    if name.startswith("prunability"):
        return "pruning"
    if name.startswith(("test_", "train_acc")):
        return "accuracy"
    if name in ("act_compressibility", "act_sparsity", "act_pq_index", "param_compressibility"):
        return "compressibility"
    if name in ("csi", "bsi", "class_separation"):
        return "representation"
    if name.startswith("attr_"):
        return "attribution"
    return None


def metric_versions(names) -> dict[str, str]:
    """`{name: "<family>/<version>"}` for the metrics of `names` that belong to a family."""
    return {n: f"{metric_family(n)}/{METRIC_VERSIONS[metric_family(n)]}" for n in names if metric_family(n)}


# ---------------------------------------------------------------------------- accuracy


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000, bn: str = "running") -> torch.Tensor:
    """Predicted classes in eval mode. `bn="batch"`: BatchNorm layers normalise each batch of
    `batch_size` inputs with that batch's own statistics (train-mode BN), on a copy of the model so
    its running statistics stay as they are. No other layer of lrbook's models acts differently in
    train mode (no dropout)."""
    if bn not in ("running", "batch"):
        raise ValueError(f"bn must be 'running' or 'batch', got {bn!r}")
    was_training = model.training
    if bn == "batch":
        model = copy.deepcopy(model)
        for m in model.modules():
            m.train(isinstance(m, nn.modules.batchnorm._BatchNorm))
    else:
        model.eval()
    try:
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def group_accuracies(pred: torch.Tensor, y: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Accuracy on all samples (`unbiased` on an unbiased test set), on bias-aligned (`ba`, y == b)
    and bias-conflicting (`bc`, y != b) samples, and worst group over (y, b) groups, in [0, 1]."""
    correct = (pred == y).float()
    aligned = y == b
    out = {"acc": correct.mean().item(),
           "ba_acc": correct[aligned].mean().item() if aligned.any() else float("nan"),
           "bc_acc": correct[~aligned].mean().item() if (~aligned).any() else float("nan")}
    groups = [correct[(y == yy) & (b == bb)].mean().item()
              for yy in y.unique() for bb in b.unique() if ((y == yy) & (b == bb)).any()]
    out["worst_group_acc"] = min(groups) if groups else float("nan")
    return out


# ---------------------------------------------------------------------------- compressibility


def kappa_compressibility(v: torch.Tensor, kappa: float = 0.1) -> torch.Tensor:
    """1 - ||v - v_kappa||_2 / ||v||_2 per row, v_kappa keeping the ceil(kappa * d) largest-magnitude
    entries (Gribonval et al. 2012; paper Sec. 3.2). Rows that are all zero count as 1."""
    v = v.flatten(1).float()
    k = max(1, int(torch.ceil(torch.tensor(kappa * v.shape[1])).item()))
    sq = v.pow(2)
    top = sq.topk(k, dim=1).values.sum(1)
    total = sq.sum(1)
    tail = (total - top).clamp_min(0).sqrt()
    norm = total.sqrt()
    return torch.where(norm > 0, 1 - tail / norm.clamp_min(1e-30), torch.ones_like(norm))


def sparsity(v: torch.Tensor) -> torch.Tensor:
    """Share of exact zeros per row (paper Sec. 3.2)."""
    return (v.flatten(1) == 0).float().mean(1)


def pq_index(v: torch.Tensor, p: float = 0.5, q: float = 1.0) -> torch.Tensor:
    """PQ-index I_{p,q}(v) = 1 - d^(1/q - 1/p) ||v||_p / ||v||_q per row (Diao et al. 2023, Fig. 26);
    0 for a constant-magnitude vector, approaching 1 for a one-hot one. Zero rows give 0."""
    v = v.flatten(1).abs().double()
    d = v.shape[1]
    norm_p = v.pow(p).sum(1).pow(1 / p)
    norm_q = v.pow(q).sum(1).pow(1 / q)
    out = 1 - d ** (1 / q - 1 / p) * norm_p / norm_q.clamp_min(1e-300)
    return torch.where(norm_q > 0, out, torch.zeros_like(out)).float()


def parameter_compressibility(model: nn.Module, kappa: float = 0.1) -> float:
    """kappa-compressibility of every weight row of the prunable layers and the classifier, averaged."""
    rows = [m.weight.detach().flatten(1) for _, m in prunable_layers(model)]
    rows.append(classifier_layer(model).weight.detach().flatten(1))
    return torch.cat([kappa_compressibility(r, kappa) for r in rows]).mean().item()


# ---------------------------------------------------------------------------- pruning


def _following_batchnorm(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """Map each conv to the BatchNorm registered right after it with matching channels
    (conv1 -> bn1, downsample.0 -> downsample.1 in torchvision ResNets)."""
    pairs, last_conv = {}, None
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            last_conv = m
        elif isinstance(m, nn.BatchNorm2d) and last_conv is not None:
            if m.num_features == last_conv.out_channels:
                pairs[last_conv] = m
            last_conv = None
    return pairs


@torch.no_grad()
def structured_prune(model: nn.Module, fraction: float) -> nn.Module:
    """Copy of `model` with, in each prunable layer, the `fraction` of output units (neurons,
    filters) of smallest L1 weight-row norm zeroed (Li et al. 2017), and the BatchNorm weight and
    bias of those channels zeroed too so BN does not re-inject a constant (spec 4)."""
    pruned = copy.deepcopy(model)
    bn_after = _following_batchnorm(pruned)
    for _, layer in prunable_layers(pruned):
        w = layer.weight
        n_out = w.shape[0]
        k = int(round(fraction * n_out))
        if k == 0:
            continue
        _zero_units(layer, w.flatten(1).abs().sum(1).argsort()[:k], bn_after.get(layer))
    return pruned


def _zero_units(layer, units, bn=None) -> None:
    """Prune `units` (output indices) of `layer`: zero their weight rows and biases and, for a conv
    followed by BatchNorm `bn`, that channel's BN weight and bias (else BN re-injects a constant)."""
    layer.weight[units] = 0
    if getattr(layer, "bias", None) is not None:
        layer.bias[units] = 0
    if bn is not None:
        bn.weight[units] = 0
        bn.bias[units] = 0


@torch.no_grad()
def magnitude_prune(model: nn.Module, fraction: float) -> nn.Module:
    """Copy of `model` with the `fraction` smallest-magnitude weights of each prunable layer zeroed
    (unstructured; paper Fig. 22)."""
    pruned = copy.deepcopy(model)
    for _, layer in prunable_layers(pruned):
        w = layer.weight
        k = int(round(fraction * w.numel()))
        if k == 0:
            continue
        drop = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
        drop[w.abs().flatten().argsort()[:k]] = True
        w.masked_fill_(drop.view(w.shape), 0)  # not w.view(-1): a channels_last weight has no flat view
    return pruned


def pruning_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, fractions=PRUNE_FRACTIONS,
                  method: str = "structured", bn: str = "running", batch_size: int = 1000) -> dict[float, float]:
    """Accuracy after pruning each fraction (one shot, no fine-tuning). `bn="batch"` evaluates the
    pruned network with BatchNorm batch statistics (see `predict`): BN then re-normalises what
    pruning removed, a different and more forgiving measurement than the spec's running-statistics
    one."""
    prune = {"structured": structured_prune, "structured_global": global_structured_prune,
             "magnitude": magnitude_prune}[method]
    return {p: (predict(prune(model, p), x, batch_size=batch_size, bn=bn) == y).float().mean().item()
            for p in fractions}


def prunability(curve: dict[float, float], base_acc: float) -> float:
    """Mean over the pruning grid of accuracy after / before (paper Sec. 3.2)."""
    if base_acc <= 0:
        return float("nan")
    return sum(a / base_acc for a in curve.values()) / len(curve)


@torch.no_grad()
def global_structured_prune(model: nn.Module, fraction: float) -> nn.Module:
    """Copy of `model` with the units (neurons, filters) of all prunable layers ranked together and
    the least important zeroed until `fraction` of the prunable layers' weights is pruned (paper Sec.
    3.2: "p of its parameters pruned"). A unit's importance is the L1 norm of its weight row (as in
    `structured_prune`, Li et al. 2017) relative to the mean L1 row norm of its layer: inside a
    layer the same order as `structured_prune`, and unchanged when a layer's weights are rescaled.
    Absolute norms do not compare across layers: BatchNorm undoes any rescaling of the conv before
    it, and ReLU networks compute the same function when one layer is scaled by c and the next by
    1/c (at initialisation, torchvision's fan-out init gives a ResNet's 3-channel stem filters a
    third of the L1 norm / sqrt(fan-in) of the others). Ties go to the earlier layer. BatchNorm
    channels of pruned filters are zeroed as in `structured_prune`."""
    pruned = copy.deepcopy(model)
    bn_after = _following_batchnorm(pruned)
    layers = [m for _, m in prunable_layers(pruned)]
    scores, sizes, owners = [], [], []
    for i, layer in enumerate(layers):
        rows = layer.weight.detach().flatten(1)
        l1 = rows.abs().sum(1).double().cpu()
        scores.append(l1 / l1.mean().clamp_min(1e-30))
        sizes.append(torch.full((rows.shape[0],), rows.shape[1], dtype=torch.long))
        owners.append(torch.stack([torch.full((rows.shape[0],), i), torch.arange(rows.shape[0])], 1))
    scores, sizes, owners = torch.cat(scores), torch.cat(sizes), torch.cat(owners)
    order = torch.argsort(scores, stable=True)
    budget = fraction * int(sizes.sum())
    # prune the smallest units while the weights pruned so far stay within the budget (rounded to the
    # nearest unit: a unit is pruned if that brings the pruned share closer to `fraction`)
    cumulative = sizes[order].cumsum(0)
    n_units = int((cumulative - sizes[order] / 2 <= budget).sum())
    chosen = owners[order[:n_units]]
    for layer_index, layer in enumerate(layers):
        drop = chosen[chosen[:, 0] == layer_index, 1].to(layer.weight.device)
        if len(drop):
            _zero_units(layer, drop, bn_after.get(layer))
    return pruned


def chance_corrected_prunability(curve: dict[float, float], base_acc: float, num_classes: int) -> float:
    """Mean over the pruning grid of (acc_p - 1/C) / (acc_0 - 1/C): the share of the accuracy above
    chance that pruning keeps. 1 when pruning costs nothing, 0 when the pruned network is at chance,
    whatever the accuracy before (the plain ratio's floor is chance / acc_0, which falls as acc_0
    rises). NaN when acc_0 is not above chance."""
    chance = 1.0 / num_classes
    if base_acc <= chance:
        return float("nan")
    return sum((a - chance) / (base_acc - chance) for a in curve.values()) / len(curve)


def prunability_candidates(curves: dict, base_acc: float, num_classes: int) -> dict[str, float]:
    """Every reading of prunability (paper Sec. 3.2) that `curves` allow; see the Definitions page for
    the argument between them. `curves` maps curve names (`prune_structured`,
    `prune_structured_global`, `prune_structured_bn_batch`) to accuracies over `PRUNE_FRACTIONS`;
    missing curves give no value. The BN-batch curve is compared with `base_acc` as given (the caller
    passes the BN-batch accuracy for it through `curves["test_acc_bn_batch"]`)."""
    out = {}
    grid = list(PRUNE_FRACTIONS)
    low = [i for i, p in enumerate(grid) if p <= 0.5 + 1e-9]
    for name, key, base in (("", "prune_structured", base_acc),
                            ("_global", "prune_structured_global", base_acc),
                            ("_bn_batch", "prune_structured_bn_batch", curves.get("test_acc_bn_batch"))):
        values = curves.get(key)
        if values is None or base is None or any(v is None for v in values):
            continue
        curve = dict(zip(grid, values))
        if name:  # the per-layer ratio is `prunability` itself, computed by the caller
            out[f"prunability{name}"] = prunability(curve, base)
        out[f"prunability{name}_chance_corrected"] = chance_corrected_prunability(curve, base, num_classes)
        out[f"prunability{name}_to_half"] = prunability({grid[i]: values[i] for i in low}, base)
    return out


# ---------------------------------------------------------------------------- representations


def class_separation(features: torch.Tensor, labels: torch.Tensor) -> float:
    """R^2 = 1 - d_within / d_total with cosine distance (Kornblith et al. 2021), self-pairs
    included: d_within averages, over classes, the mean distance inside a class; d_total averages,
    over all ordered class pairs (j, k) including j = k, the mean distance across them."""
    f = features.flatten(1).double()
    f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
    dist = 1 - f @ f.T
    classes = labels.unique()
    onehot = torch.stack([(labels == c).double() for c in classes])  # (K, N)
    counts = onehot.sum(1)
    block_means = (onehot @ dist @ onehot.T) / (counts[:, None] * counts[None, :])  # (K, K)
    d_within = block_means.diag().mean()
    d_total = block_means.mean()
    return (1 - d_within / d_total).item() if d_total > 0 else float("nan")


def unit_selectivity(features: torch.Tensor, labels: torch.Tensor, coverage: bool = True,
                     eps: float = 1e-12) -> torch.Tensor:
    """Per-unit class selectivity (Morcos et al. 2018): (mu_max - mu_rest) / (mu_max + mu_rest),
    scaled by the share of the preferred class's samples on which the unit is active (paper Sec.
    3.3); NaN for units that never fire. With bias labels this is the per-unit BSI (Fig. 18)."""
    f = features.flatten(1).double()
    classes = labels.unique()
    means = torch.stack([f[labels == c].mean(0) for c in classes])  # (K, units)
    active_share = torch.stack([(f[labels == c] > 0).double().mean(0) for c in classes])
    best = means.argmax(0)
    mu_max = means.gather(0, best[None]).squeeze(0)
    mu_rest = (means.sum(0) - mu_max) / (len(classes) - 1)
    csi = (mu_max - mu_rest) / (mu_max + mu_rest + eps)
    if coverage:
        csi = csi * active_share.gather(0, best[None]).squeeze(0)
    return torch.where((f > 0).any(0), csi, torch.full_like(csi, float("nan")))


def selectivity_index(features: torch.Tensor, labels: torch.Tensor, coverage: bool = True,
                      eps: float = 1e-12) -> float:
    """Average class selectivity (CSI; BSI with bias labels) over units that fire at least once."""
    csi = unit_selectivity(features, labels, coverage, eps)
    fires = ~csi.isnan()
    return csi[fires].mean().item() if fires.any() else float("nan")


# ---------------------------------------------------------------------------- all at once


def eval_subset(n: int, eval_n: int, device=None) -> torch.Tensor:
    """The test inputs on which every run's representation is measured: the first `eval_n` of a
    fixed random permutation of `n` (seed 0; the same for every run and model)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:eval_n].to(device)


def representation_metrics(features: torch.Tensor, labels: torch.Tensor,
                           bias_labels: torch.Tensor | None = None) -> dict[str, float]:
    """The paper's measures of a penultimate representation (post-activation, one row per input;
    Sec. 3.2-3.3): activation compressibility (kappa = 0.1) beside sparsity and the PQ-index, the
    average class selectivity CSI, class separation, and with bias labels the bias selectivity BSI."""
    out = {"act_compressibility": kappa_compressibility(features).mean().item(),
           "act_sparsity": sparsity(features).mean().item(),
           "act_pq_index": pq_index(features).mean().item(),
           "csi": selectivity_index(features, labels)}
    if bias_labels is not None:
        out["bsi"] = selectivity_index(features, bias_labels)
    out["class_separation"] = class_separation(features, labels)
    return out


def measure_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, b: torch.Tensor | None = None,
                       eval_n: int = 1000) -> dict[str, float]:
    """The paper's measures of a trained classifier, as the book's runs compute them, on an unbiased
    test set `x`, `y` (and bias labels `b`): accuracy (`test_acc`), prunability with the per-layer
    and the global ranking (Sec. 3.2; the Definitions page argues for `prunability_global`), and
    `representation_metrics` of `eval_n` test inputs (`eval_subset`). `model` needs `.penultimate`
    (`lrbook.models`); a model from elsewhere names it first, e.g. `model.penultimate =
    model.avgpool` for a torchvision ResNet. Pruning spares `lrbook.models.classifier_layer`."""
    test_acc = (predict(model, x) == y).float().mean().item()
    out = {"test_acc": test_acc}
    for method, name in (("structured", "prunability"), ("structured_global", "prunability_global")):
        out[name] = prunability(pruning_curve(model, x, y, method=method), test_acc)
    sub = eval_subset(len(y), eval_n, x.device)
    feats = penultimate_activations(model, x[sub]).float()
    out.update(representation_metrics(feats, y[sub], None if b is None else b[sub]))
    if b is not None:
        out["csi_minus_bsi"] = out["csi"] - out["bsi"]
    return out
