"""The training objective and step of Sec. 5's interventions (Fig. 6, Table S2): softmax focal loss
(Lin et al. 2020), the L1 penalty, and ASAM's perturbation (Kwon et al. 2021). `lrbook.train` uses
them as the run's config says; with the defaults it trains plain cross-entropy SGD (Sec. 4.2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import ASAM_ETA


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample softmax focal loss, Lin et al. (2020), eq. 5 without the class weight alpha:
    FL = -(1 - p_t)^gamma log p_t, p_t the softmax probability of the true class. gamma = 0 is
    cross-entropy. (torchvision's `sigmoid_focal_loss` is the per-class binary form, not this.)"""
    return focal_from_cross_entropy(F.cross_entropy(logits, targets, reduction="none"), gamma)


def focal_from_cross_entropy(ce: torch.Tensor, gamma: float) -> torch.Tensor:
    """Focal loss from per-sample cross-entropy ce = -log p_t: (1 - exp(-ce))^gamma * ce. The
    clamp keeps the gradient finite when gamma < 1 and ce underflows to 0 (there it is 0)."""
    weight = (-torch.expm1(-ce)).clamp_min(torch.finfo(ce.dtype).tiny) ** gamma
    return weight * ce


def l1_penalty(params) -> torch.Tensor:
    """sum |w| over every parameter (the L1 regularisation of Sec. 5, scaled by `cfg.l1_penalty`)."""
    return sum(p.abs().sum() for p in params)


class ASAM:
    """Adaptive sharpness-aware minimisation (Kwon et al. 2021, Algorithm 1, element-wise): before
    each update, move the weights to w + eps with

        eps = rho * T_w^2 grad L(w) / ||T_w grad L(w)||_2,   T_w = diag(|w|) + eta,

    recompute the gradient there, return to w, and let the base optimiser (SGD) step with that
    gradient. `perturb` needs the gradients at w; `restore` puts w back exactly (a saved copy, not
    w + eps - eps). The scaling applies to every parameter (their code leaves biases unscaled;
    the paper's formula does not)."""

    def __init__(self, params, rho: float, eta: float = ASAM_ETA):
        self.params, self.rho, self.eta = list(params), rho, eta
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    @torch.no_grad()
    def perturb(self) -> None:
        params = [p for p in self.params if p.grad is not None]
        scales = [p.abs() + self.eta for p in params]
        scaled_grads = [t * p.grad for t, p in zip(scales, params)]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in scaled_grads])) + 1e-16
        self._saved = [(p, p.clone()) for p in params]
        for p, t, g in zip(params, scales, scaled_grads):
            p.add_(t * g * (self.rho / norm))

    @torch.no_grad()
    def restore(self) -> None:
        for p, saved in self._saved:
            p.copy_(saved)
        self._saved = []


def training_objective(cfg, model):
    """The loss a training step minimises, as a function of the minibatch's per-sample cross-entropy:
    the mean focal loss (`cfg.loss == "focal"`) or cross-entropy, plus `cfg.l1_penalty` times
    `l1_penalty` of the model's parameters. None for plain cross-entropy (Sec. 4.2's training,
    whose step stays exactly as it was)."""
    if cfg.loss == "cross_entropy" and not cfg.l1_penalty:
        return None

    def objective(per_sample_ce: torch.Tensor) -> torch.Tensor:
        per_sample = focal_from_cross_entropy(per_sample_ce, cfg.focal_gamma) if cfg.loss == "focal" else per_sample_ce
        loss = per_sample.mean()
        return loss + cfg.l1_penalty * l1_penalty(model.parameters()) if cfg.l1_penalty else loss

    return objective
