"""Input attributions (paper Sec. 3.3, supplement E): captum Integrated Gradients or DeepLift,
zero baseline, target = true label; per-pixel score = |attribution| summed over channels."""
from __future__ import annotations

import torch
from torch import nn


def attribution_map(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str = "ig",
                    n_steps: int = 32, batch_size: int = 100) -> torch.Tensor:
    """|attribution| per input position, summed over channels for images: (N, H, W) or (N, D)."""
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
            a = explainer.attribute(xb, baselines=torch.zeros_like(xb), target=target[i:i + batch_size], **kwargs)
            maps.append(a.detach().abs())
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
    maps = attribution_map(model, x, y, method=method, n_steps=n_steps)
    return region_shares(maps, data.regions(x))
