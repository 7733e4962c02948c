"""The two propositions of paper Sec. 6, computed exactly: no training runs are involved.

The paper's argument, in words (its equations are not in the text available here): early in
training a network predicts by the simple spurious rule, so bias-aligned (BA) samples are right and
bias-conflicting (BC) samples wrong. Large LRs grow the parameter and logit norms fast; with
cross-entropy, up-scaled logits make the BC mispredictions *confident*, so the minibatch loss, and
its gradient, is dominated by the few BC samples: an implicit reweighting in favour of BC samples.

* `bc_loss_share`: Proposition 1 (Sec. 6, proof in D.1), the BC share of the minibatch CE loss as a
  function of the logit-scaling factor;
* `gradient_norm_shares`: Proposition 2 (D.2) on a small bias-decomposable network, with autograd.
"""
from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------------------------------------
# Proposition 1 (Sec. 6; proof D.1)
# ----------------------------------------------------------------------------------------------


def _softplus(x):
    """log(1 + exp(x)) without overflow (numpy's logaddexp is the stable form)."""
    return np.logaddexp(0.0, x)


def bc_loss_share(logit_scale, margin_bc: float = 1.0, margin_ba: float = 1.0, bc_fraction: float = 0.05,
                  batch: int = 100):
    """Share of a binary minibatch's total cross-entropy loss that comes from its BC samples.

    Setting of Proposition 1: a minibatch of `batch` samples, `n_bc = round(bc_fraction * batch)`
    of them bias-conflicting (at least one, and at least one BA sample). The predictor follows the
    spurious rule: on every BC sample the wrong logit exceeds the right one by `s * margin_bc`, on
    every BA sample the right logit exceeds the wrong one by `s * margin_ba`, where `s` is the
    logit-scaling factor (`logit_scale`; the paper's proof assumes shared margins w.l.o.g.). With
    two classes the CE loss of a sample whose right-minus-wrong logit gap is `g` is
    `softplus(-g) = log(1 + exp(-g))`, so

        share(s) = n_bc * softplus(s m_bc) / (n_bc * softplus(s m_bc) + n_ba * softplus(-s m_ba)).

    At s = 0 every sample has loss log 2 and the share is n_bc / batch; as s grows the BC loss grows
    like s m_bc while the BA loss vanishes like exp(-s m_ba), so the share tends to 1 (Eq. 1 of the
    paper, in words). Vectorised over `logit_scale`; returns a float for a scalar input.
    """
    if not (margin_bc > 0 and margin_ba > 0):
        raise ValueError("margins must be > 0 (BC mispredicted, BA predicted correctly)")
    n_bc = int(round(bc_fraction * batch))
    if not 1 <= n_bc < batch:
        raise ValueError(f"bc_fraction * batch must round to 1..{batch - 1} BC samples, got {bc_fraction} * {batch}")
    n_ba = batch - n_bc
    s = np.asarray(logit_scale, dtype=float)
    if np.any(s < 0):
        raise ValueError("logit_scale must be >= 0")
    loss_bc = n_bc * _softplus(s * margin_bc)
    loss_ba = n_ba * _softplus(-s * margin_ba)  # underflows to 0 for huge s: share is then exactly 1
    share = loss_bc / (loss_bc + loss_ba)
    return float(share) if share.ndim == 0 else share


# ----------------------------------------------------------------------------------------------
# Proposition 2 (supplement D.2) on a small bias-decomposable network
# ----------------------------------------------------------------------------------------------


def _branch(direction, strength, dim, hidden, gen, torch):
    """A bias-free 1-hidden-layer ReLU branch with two outputs whose logit margin (class 0 minus
    class 1) is exactly `strength * (direction . x)`: hidden units 0 and 1 read `+direction` and
    `-direction` and feed class 0 and class 1 with weight `strength`; the other hidden units are random
    features whose output weights are equal for both classes (they shift both logits alike, so they
    change no margin, but they have gradients, as real units would)."""
    w1 = torch.randn(hidden, dim, generator=gen, dtype=torch.float64) / math.sqrt(dim)
    w1[0], w1[1] = direction, -direction
    w2 = torch.zeros(2, hidden, dtype=torch.float64)
    w2[0, 0] = w2[1, 1] = strength
    shared = 0.1 * torch.randn(hidden - 2, generator=gen, dtype=torch.float64)
    w2[0, 2:] = w2[1, 2:] = shared
    return {"w1": w1, "w2": w2}


def _unit(dim, gen, torch):
    v = torch.randn(dim, generator=gen, dtype=torch.float64)
    return v / v.norm()


def _features(signs, direction, noise, gen, torch):
    """x = sign * direction + Gaussian noise orthogonal to `direction` (so `direction . x = sign`)."""
    eps = noise * torch.randn(len(signs), len(direction), generator=gen, dtype=torch.float64)
    eps -= (eps @ direction)[:, None] * direction[None, :]
    return signs[:, None] * direction[None, :] + eps


def gradient_norm_shares(logit_scales=None, bc_fraction: float = 0.05, batch: int = 100, dim: int = 10,
                         hidden: int = 8, core_strength: float = 0.5, spurious_strength: float = 2.0,
                         noise: float = 0.3, seed: int = 0):
    """Proposition 2 (supplement D.2), computed with autograd on a bias-decomposable network.

    Network (Definition 1, binary): `f(x) = s * (f_core(x_core) + f_spur(x_spur))`, with `s` the
    logit-scaling factor and `f_core`, `f_spur` bias-free 1-hidden-layer ReLU branches (`hidden`
    units, two outputs) on separate `dim`-dimensional core and spurious feature blocks. Data: one
    minibatch of `batch` samples with labels alternating 0/1, of which `round(bc_fraction * batch)` are
    BC (spurious label b = 1 - y) and the rest BA (b = y). Features: `x_core = +-u_c + noise`, sign
    set by y; `x_spur = +-u_s + noise`, sign set by b; `u_c`, `u_s` random unit vectors and the
    Gaussian noise (sd `noise`) orthogonal to them. The branches are built, not trained, so that
    `f_core` favours the true class y by exactly `core_strength` on every sample (core subnetwork
    correct) and `f_spur` favours b by `spurious_strength` > `core_strength` (spurious subnetwork
    dominant): the network predicts by the spurious rule, BA samples right with margin
    `s*(spurious_strength + core_strength)`, BC samples wrong with margin
    `s*(spurious_strength - core_strength)`.

    For each scale `s`, with the minibatch loss L = mean CE (as in training):

    * `grad_core`, `grad_spur`: Frobenius norm of dL/d(parameters of that branch), all its weight
      matrices together; `grad_ratio = grad_spur / grad_core`;
    * `bc_share_core`, `bc_share_spur`: per branch, sum over BC samples of the per-sample gradient
      norms ||d l_i / d theta|| divided by the sum over all samples (the proof sums per-sample norms
      over the minibatch, Eq. 18-19 in words). Proposition 2: BC samples dominate both sums, so
      these shares tend to 1 as s grows, and both branches' gradient norms grow linearly with s;
    * `loss_bc_share`: share of the minibatch loss from BC samples (Proposition 1 on this network).

    Per-sample gradient norms use the outer-product identity: sample i's loss depends only on row i
    of each layer's output, so d l_i/dW = outer(d l_i/d out_i, input_i), whose Frobenius norm is the
    product of the two vector norms (the output gradients come from autograd on the summed loss).

    Deterministic: float64 on the CPU, data and weights drawn from `seed`. Returns a DataFrame, one
    row per scale; `attrs` records the setting, the BC count and that the spurious rule holds.
    """
    import pandas as pd
    import torch

    if logit_scales is None:
        logit_scales = np.geomspace(0.01, 100, 41)
    if not 0 < core_strength < spurious_strength:
        raise ValueError("need 0 < core_strength < spurious_strength (core correct but weak, spurious dominant)")
    if hidden < 3:
        raise ValueError("hidden must be >= 3")
    n_bc = int(round(bc_fraction * batch))
    if not 1 <= n_bc < batch:
        raise ValueError(f"bc_fraction * batch must round to 1..{batch - 1} BC samples")

    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(batch) % 2
    bc = torch.zeros(batch, dtype=torch.bool)
    bc[torch.randperm(batch, generator=gen)[:n_bc]] = True
    b = torch.where(bc, 1 - y, y)
    u_c, u_s = _unit(dim, gen, torch), _unit(dim, gen, torch)
    x_core = _features(1.0 - 2.0 * y.double(), u_c, noise, gen, torch)
    x_spur = _features(1.0 - 2.0 * b.double(), u_s, noise, gen, torch)
    params = {"core": _branch(u_c, core_strength, dim, hidden, gen, torch),
              "spur": _branch(u_s, spurious_strength, dim, hidden, gen, torch)}

    def branch_out(p, x):
        return torch.relu(x @ p["w1"].T) @ p["w2"].T

    with torch.no_grad():
        out_core, out_spur = branch_out(params["core"], x_core), branch_out(params["spur"], x_spur)
        core_margin = (out_core[:, 0] - out_core[:, 1]) * (1.0 - 2.0 * y.double())
        pred = (out_core + out_spur).argmax(1)
    spurious_rule = bool((pred == b).all())
    core_correct = bool((core_margin > 0).all())

    inputs = {"core": x_core, "spur": x_spur}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add contention
    try:
        rows = [_prop2_row(s, params, inputs, y, bc) for s in np.asarray(logit_scales, dtype=float)]
    finally:
        torch.set_num_threads(threads)
    out = pd.DataFrame(rows)
    out.attrs.update(dict(bc_fraction=bc_fraction, batch=batch, n_bc=n_bc, dim=dim, hidden=hidden,
                          core_strength=core_strength, spurious_strength=spurious_strength, noise=noise,
                          seed=seed, spurious_rule=spurious_rule, core_correct=core_correct,
                          margin_bc=spurious_strength - core_strength,
                          margin_ba=spurious_strength + core_strength))
    return out


def _prop2_row(s, params, inputs, y, bc) -> dict:
    """One row of `gradient_norm_shares` at logit scale `s`."""
    import torch
    import torch.nn.functional as F

    p = {k: {n: w.clone().requires_grad_(True) for n, w in v.items()} for k, v in params.items()}
    pre = {k: inputs[k] @ p[k]["w1"].T for k in p}
    act = {k: torch.relu(pre[k]) for k in p}
    out = {k: act[k] @ p[k]["w2"].T for k in p}
    per = F.cross_entropy(s * (out["core"] + out["spur"]), y, reduction="none")
    # Minibatch gradient (mean loss) w.r.t. the weights; and, since sample i's loss depends only
    # on row i of each layer's output, the gradient of the summed loss w.r.t. the layer outputs
    # gives every per-sample gradient: d l_i / dW = outer(d l_i / d out_i, layer input_i), whose
    # Frobenius norm is the product of the two vector norms.
    names = [(k, n) for k in ("core", "spur") for n in ("w1", "w2")]
    grads = torch.autograd.grad(per.mean(), [p[k][n] for k, n in names], retain_graph=True)
    gnorm = {k: math.sqrt(sum(float((g ** 2).sum()) for (kk, _), g in zip(names, grads) if kk == k)) for k in p}
    d_out = torch.autograd.grad(per.sum(), [out["core"], out["spur"], pre["core"], pre["spur"]])
    d_out = dict(zip(["out_core", "out_spur", "pre_core", "pre_spur"], d_out))
    row = {"scale": s, "grad_core": gnorm["core"], "grad_spur": gnorm["spur"],
           "grad_ratio": gnorm["spur"] / gnorm["core"] if gnorm["core"] > 0 else float("nan")}
    for k in ("core", "spur"):
        w2_norm = d_out[f"out_{k}"].norm(dim=1) * act[k].detach().norm(dim=1)
        w1_norm = d_out[f"pre_{k}"].norm(dim=1) * inputs[k].norm(dim=1)
        norms = torch.sqrt(w1_norm ** 2 + w2_norm ** 2)
        total = float(norms.sum())
        row[f"bc_share_{k}"] = float(norms[bc].sum()) / total if total > 0 else float("nan")
    per = per.detach()
    row["loss_bc_share"] = float(per[bc].sum() / per.sum())
    return row
