"""Input attributions (paper Sec. 3.3, supplement E): captum Integrated Gradients or DeepLift,
zero baseline, target = true label; per-pixel score = |attribution| summed over channels.

IG from a zero baseline gives exactly zero attribution to every pixel that is itself zero (its
attribution is (x - x') times an averaged gradient), so on MNIST-like images, whose background is
exactly 0, the background share would be 0 for any model ("black-baseline blindness", Sturmfels et al.
2020, Distill, "Visualizing the Impact of Feature Attribution Baselines"). For those datasets
(`SpuriousDataset.attribution_baseline == "uniform"`) IG is averaged over `UNIFORM_BASELINES` baselines
of uniform noise in [0, 1], drawn from a fixed seed, as that article's uniform baseline does."""
from __future__ import annotations

import torch
from torch import nn


UNIFORM_BASELINES = 4
BASELINE_SEED = 0


def baselines_for(x: torch.Tensor, baseline: str = "zero", n: int = UNIFORM_BASELINES) -> list[torch.Tensor]:
    """The baselines IG integrates from: one zero input, or `n` inputs of uniform noise in [0, 1]
    (the same for every model: drawn from a fixed seed)."""
    if baseline == "zero":
        return [torch.zeros_like(x)]
    if baseline == "uniform":
        gen = torch.Generator().manual_seed(BASELINE_SEED)
        return [torch.rand(x.shape, generator=gen).to(x.device, x.dtype) for _ in range(n)]
    raise ValueError(f"unknown baseline {baseline!r}; use 'zero' or 'uniform'")


def attribution_map(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str = "ig",
                    n_steps: int = 32, batch_size: int = 100, baseline: str = "zero") -> torch.Tensor:
    """|attribution| per input position, summed over channels for images: (N, H, W) or (N, D).
    With `baseline="uniform"` the signed attributions are averaged over the uniform baselines
    before the absolute value is taken (module docstring)."""
    from captum.attr import DeepLift, IntegratedGradients

    was_training = model.training
    model.eval()
    try:
        if method == "ig":
            explainer = IntegratedGradients(model)
            kwargs = dict(n_steps=n_steps, internal_batch_size=max(batch_size, n_steps))
        elif method == "deeplift":
            explainer, kwargs = DeepLift(model), {}
        else:
            raise ValueError(f"unknown attribution method {method!r}; use 'ig' or 'deeplift'")
        maps = []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].clone().requires_grad_(True)
            runs = [explainer.attribute(xb, baselines=base[i:i + batch_size], target=target[i:i + batch_size],
                                        **kwargs).detach() for base in baselines_for(x, baseline)]
            maps.append((sum(runs) / len(runs)).abs())
    finally:
        model.train(was_training)
    a = torch.cat(maps)
    return a.sum(1) if a.dim() == 4 else a


def region_shares(maps: torch.Tensor, regions: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean over samples of the share of attribution mass inside each region. Region masks have the
    shape of one input (or of the batch) and are reduced over channels like the maps."""
    total = maps.flatten(1).sum(1).clamp_min(1e-30)
    out = {}
    for name, mask in regions.items():
        m = mask
        if m.dim() == maps.dim() + 1:  # (N, C, H, W) mask for (N, H, W) maps
            m = m.any(1)
        m = m.expand_as(maps).to(maps.dtype)
        out[name] = ((maps * m).flatten(1).sum(1) / total).mean().item()
    return out


def attribution_entropy(maps: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each normalised attribution map (paper Fig. 10)."""
    p = maps.flatten(1)
    p = p / p.sum(1, keepdim=True).clamp_min(1e-30)
    return -(p * p.clamp_min(1e-30).log()).sum(1)


def attribution_shares(model: nn.Module, data, n: int = 200, n_steps: int = 32,
                       method: str = "ig") -> dict[str, float]:
    """Shares of attribution on the dataset's regions (e.g. parity core / spurious / noise) for the
    first `n` test inputs (a fixed probe set, so checkpoints during training are comparable)."""
    x, y = data.x_test[:n], data.y_test[:n]
    maps = attribution_map(model, x, y, method=method, n_steps=n_steps, baseline=data.attribution_baseline)
    return region_shares(maps, data.regions(x))


@torch.no_grad()
def feature_shapley(fn, x: torch.Tensor, compose, n_partners: int = 8, generator: torch.Generator | None = None):
    """Two-player Shapley values of the core and the spurious feature for the outputs `fn(x)` (N, K),
    for features that share pixels (Colored MNIST: a digit's shape and its colour). A feature is
    "absent" when it is taken from a random partner input of the same batch (interventional Shapley:
    the feature marginalised over the test distribution), averaged over `n_partners` permutations.
    Returns (phi_core, phi_spurious), each (N, K), with phi_core + phi_spurious = fn(x) - E fn(partner)."""
    out_x = fn(x)
    v_core = torch.zeros_like(out_x)  # core feature from x, spurious from the partner
    v_spur = torch.zeros_like(out_x)  # spurious feature from x, core from the partner
    v_none = torch.zeros_like(out_x)  # the partner itself
    for _ in range(n_partners):
        perm = torch.randperm(len(x), generator=generator).to(x.device)
        partner = x[perm]
        v_core += fn(compose(x, partner))
        v_spur += fn(compose(partner, x))
        v_none += out_x[perm]
    v_core, v_spur, v_none = v_core / n_partners, v_spur / n_partners, v_none / n_partners
    phi_spur = 0.5 * ((out_x - v_core) + (v_spur - v_none))
    phi_core = 0.5 * ((out_x - v_spur) + (v_core - v_none))
    return phi_core, phi_spur


def spurious_share(phi_core: torch.Tensor, phi_spur: torch.Tensor) -> torch.Tensor:
    """Per output column: sum |phi_spurious| / (sum |phi_core| + sum |phi_spurious|) over samples
    (NaN for an output that never moves, e.g. a dead unit)."""
    s, c = phi_spur.abs().sum(0), phi_core.abs().sum(0)
    total = s + c
    return torch.where(total > 0, s / total.clamp_min(1e-30), torch.full_like(total, float("nan")))


def shapley_shares(model: nn.Module, data, n: int = 200, n_partners: int = 8) -> dict[str, float]:
    """Network-level core / spurious shares of the true-class logit on the first `n` test inputs
    (Fig. 13 for datasets whose features overlap in pixel space, e.g. Colored MNIST)."""
    was_training = model.training
    model.eval()
    try:
        x, y = data.x_test[:n], data.y_test[:n]
        gen = torch.Generator().manual_seed(0)
        phi_core, phi_spur = feature_shapley(lambda z: model(z).float(), x, data.compose_fn, n_partners, gen)
        rows = torch.arange(len(y), device=y.device)
        share = spurious_share(phi_core[rows, y][:, None], phi_spur[rows, y][:, None]).item()
    finally:
        model.train(was_training)
    return {"spurious": share, "core": 1.0 - share}
