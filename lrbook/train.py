"""Training (paper Sec. 4.2): minibatch SGD with a constant LR until 100% training accuracy.

Data stays on the training device and batches are index gathers (no DataLoader). Per-step
quantities (loss, BC loss ratio of Sec. 6, BA/BC mean loss, logit norm) are written into device
buffers and read once per epoch, so a step never waits for the host.

Stopping rule (CHOICE, recorded in the config): stop after the first epoch in which every training
sample was classified correctly when its minibatch was seen, or at `max_epochs` (status
`max_epochs`). A run that diverges (`divergence_reason`: a non-finite loss, or a network stuck at
chance with exploded logits or no live penultimate unit) stops with status `diverged`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

CURVE_KEYS = ("loss", "train_acc", "bc_loss_ratio_mean", "bc_loss_ratio_max", "ba_loss", "bc_loss", "logit_norm")


@dataclass
class TrainOutcome:
    status: str  # "converged" | "max_epochs" | "diverged"
    epochs: int
    steps: int
    seconds: float
    curves: dict[str, list[float]] = field(default_factory=dict)  # one value per epoch
    max_bc_loss_ratio: float = float("nan")
    attribution_trace: list[dict] = field(default_factory=list)
    unit_trace: dict | None = None  # Fig. 18 (bottom), arrays; see `UnitTrace`
    diverged_because: str | None = None  # `divergence_reason` of a diverged run


# The divergence rule's thresholds; `divergence_reason` says why each has its value.
CHANCE_MARGIN = 0.05
EXPLODED_LOGIT_NORM = 1e3
DEAD_UNIT_PROBE_INPUTS = 1000


def divergence_reason(step_losses, logit_norm: float, train_acc: float, chance_acc: float,
                      dead_unit_fraction: Callable[[], float] | float) -> str | None:
    """Why a run counts as diverged after an epoch, or None if it does not. Training (`train`)
    and packed training (`lrbook.packed`) both stop a run with status `diverged` when this returns
    a reason; a diverged run is a result of the LR sweep (paper Sec. 4.2 trains to 100% training
    accuracy; an LR too large to get there is reported, not averaged).

    The rule, for one epoch with per-step losses `step_losses`, mean logit L2 norm `logit_norm` and
    running training accuracy `train_acc`:

    1. some step's loss, or the logit norm, is not finite; or
    2. the network is at chance, `train_acc <= chance_acc + CHANCE_MARGIN` (`chance_acc`: the
       majority class's share of the training set, what a constant prediction scores), and
       a. its logits have exploded: `logit_norm >= EXPLODED_LOGIT_NORM`, or
       b. every penultimate unit is dead: `dead_unit_fraction() == 1`, the share of penultimate
          units that output exactly 0 on the first `DEAD_UNIT_PROBE_INPUTS` training inputs
          (`dead_unit_fraction`; evaluated only in an epoch at chance, so it costs nothing otherwise).

    Thresholds. CHANCE_MARGIN = 0.05: a constant predictor's running accuracy is the majority share
    up to minibatch noise (batches of 100), and 5 points above it is still far below a network that
    has learned either feature (the spurious one alone fits 95 to 99% of these training sets).
    EXPLODED_LOGIT_NORM = 1e3: over the 187 runs stored when the rule was set (five architectures,
    LRs up to the paper's largest), the largest epoch-mean logit norm was 71, and 3 in an epoch at
    chance; logits of norm 1e3 at chance mean confidently wrong predictions with a cross-entropy
    of hundreds of nats, from which SGD at that LR does not return. All-dead penultimate units
    (2b): a ReLU unit that outputs 0 on every input passes no gradient, so when all of them do, no
    gradient reaches any layer below the classifier; only its bias moves and the network stays a
    constant predictor for good (Colored MNIST, FCN, LR 1000 ends so: loss log 10, accuracy 10%).
    A run meeting 2b would otherwise train to the epoch cap and be stored as `max_epochs`.
    """
    losses = torch.as_tensor(step_losses, dtype=torch.float64)
    if not bool(torch.isfinite(losses).all()):
        return "non-finite loss"
    if not math.isfinite(logit_norm):
        return "non-finite logit norm"
    if train_acc > chance_acc + CHANCE_MARGIN:
        return None
    at_chance = f"training accuracy {100 * train_acc:.1f}% (chance {100 * chance_acc:.1f}%)"
    if logit_norm >= EXPLODED_LOGIT_NORM:
        return f"{at_chance} with exploded logits (mean norm {logit_norm:.3g} >= {EXPLODED_LOGIT_NORM:g})"
    dead = dead_unit_fraction() if callable(dead_unit_fraction) else dead_unit_fraction
    if dead >= 1.0:
        return f"{at_chance} with every penultimate unit dead"
    return None


def chance_accuracy(labels: torch.Tensor) -> float:
    """The training accuracy of the best constant prediction: the majority class's share."""
    return float(torch.bincount(labels.flatten().cpu()).max()) / labels.numel()


def dead_unit_fraction(model: nn.Module, x: torch.Tensor) -> float:
    """Share of penultimate units that output exactly 0 on every input of `x` (eval mode)."""
    from .models import penultimate_activations

    feats = penultimate_activations(model, x)
    return float((feats == 0).all(0).float().mean())


def append_epoch_curves(curves: dict, stats: torch.Tensor, n_correct: int, n: int) -> None:
    """Reduce one epoch's per-step buffer (rows: loss, BC loss ratio, BA loss, BC loss, batch has BC,
    logit norm) to the per-epoch curve values."""
    has_bc = stats[4] > 0
    curves["loss"].append(float(stats[0].mean()))
    curves["train_acc"].append(n_correct / n)
    curves["bc_loss_ratio_mean"].append(float(stats[1].mean()))
    curves["bc_loss_ratio_max"].append(float(stats[1].max()))
    curves["ba_loss"].append(float(stats[2].mean()))
    curves["bc_loss"].append(float(stats[3][has_bc].mean()) if has_bc.any() else float("nan"))
    curves["logit_norm"].append(float(stats[5].mean()))


def checkpoint_steps(limit: int) -> list[int]:
    """Steps at which attributions are probed during training: 0 and powers of two (Fig. 3)."""
    steps, s = [0], 1
    while s <= limit:
        steps.append(s)
        s *= 2
    return steps


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no GPU; use device='cpu' or 'auto'")
    return device


UNIT_TRACE_UNITS = 128  # penultimate units followed by a unit trace (the first ones: init is random)
UNIT_TRACE_INPUTS = 100  # test inputs for their spurious shares (4 partners each: ~15% of a step's cost)


class UnitTrace:
    """Fig. 18 (bottom), FCN: every `cfg.unit_trace_every` steps, each followed penultimate unit's
    spurious share (feature Shapley of its activation on a fixed set of test inputs) and the size of
    the SGD updates to its incoming weights since the previous point: sum and max over steps of
    lr * ||grad of the unit's weight row||. Updates accumulate on the device; the host reads them
    only at trace points."""

    def __init__(self, model: nn.Module, data, cfg):
        self.model, self.compose, self.lr = model, data.compose_fn, cfg.lr
        self.layer = model.features[-2]  # the Linear feeding the penultimate ReLU
        self.units = min(UNIT_TRACE_UNITS, self.layer.out_features)
        self.x = data.x_test[:UNIT_TRACE_INPUTS]
        self.update_sum = torch.zeros(self.units, device=self.x.device)
        self.update_max = torch.zeros(self.units, device=self.x.device)
        self.rows: dict[str, list] = {"step": [], "spurious_share": [], "update_sum": [], "update_max": []}

    def after_step(self) -> None:
        size = self.layer.weight.grad[:self.units].norm(dim=1) * self.lr
        self.update_sum += size
        torch.maximum(self.update_max, size, out=self.update_max)

    def point(self, step: int) -> None:
        from .attribution import feature_shapley, spurious_share
        from .models import penultimate_activations

        def units(z):
            return penultimate_activations(self.model, z)[:, :self.units].float()

        gen = torch.Generator().manual_seed(0)
        phi_core, phi_spur = feature_shapley(units, self.x, self.compose, n_partners=4, generator=gen)
        self.rows["step"].append(step)
        self.rows["spurious_share"].append(spurious_share(phi_core, phi_spur).cpu())
        self.rows["update_sum"].append(self.update_sum.to("cpu", copy=True))  # copy: zeroed below
        self.rows["update_max"].append(self.update_max.to("cpu", copy=True))
        self.update_sum.zero_()
        self.update_max.zero_()
        self.model.train()

    def state(self) -> dict:
        """What a training checkpoint keeps of the trace (`load_state` restores it)."""
        return {"rows": self.rows, "update_sum": self.update_sum, "update_max": self.update_max}

    def load_state(self, state: dict) -> None:
        self.rows = state["rows"]
        self.update_sum.copy_(state["update_sum"])
        self.update_max.copy_(state["update_max"])

    def arrays(self) -> dict:
        import numpy as np

        return {"step": np.array(self.rows["step"]),
                **{k: torch.stack(v).numpy().astype("float32") for k, v in self.rows.items() if k != "step"}}


def train(model: nn.Module, data, cfg, device="cpu", progress: bool = False, checkpoint=None) -> TrainOutcome:
    """Train `model` in place on `data` (already on `device`) as `cfg` says.

    `checkpoint` (a `lrbook.checkpoint.TrainingCheckpoint`, optional): if it holds a saved state,
    training resumes from it; after every `checkpoint.every`-th epoch that does not end the run,
    the whole training state is saved (model, optimiser, minibatch-order generator, global RNGs,
    epoch, step, curves, attribution and unit traces), so a stopped and resumed run ends with the
    same weights and curves as an uninterrupted one."""
    from tqdm.auto import tqdm

    from .attribution import attribution_shares, shapley_shares
    from .metrics import group_accuracies, predict, unit_selectivity
    from .models import penultimate_activations
    from .objective import ASAM, training_objective

    device = torch.device(device)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # Sec. 5's interventions (focal loss, L1, ASAM); None and None for the paper's plain SGD step.
    objective = training_objective(cfg, model)
    asam = ASAM(model.parameters(), cfg.asam_rho, cfg.asam_eta) if cfg.optimizer == "asam" else None
    x, y, b = data.x_train, data.y_train, data.b_train
    if cfg.channels_last and x.dim() == 4:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)  # minibatch gathers keep the format
    forward = torch.compile(model, mode=cfg.compile_mode) if cfg.compile else model  # probes, evaluation: `model`
    graphed = cfg.compile and cfg.compile_mode != "default"  # CUDA graphs on a GPU
    n, bs = len(y), cfg.batch_size
    steps_per_epoch = math.ceil(n / bs)
    order_gen = torch.Generator().manual_seed(cfg.seed)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")

    probe = cfg.attribution_n > 0 or cfg.neuron_probes
    probe_at = set(checkpoint_steps(cfg.max_epochs * steps_per_epoch)) if probe else set()
    trace: list[dict] = []
    units = UnitTrace(model, data, cfg) if cfg.unit_trace_every else None

    def probe_attributions(step, epoch):
        """Test accuracies (all, BA, BC) and, where the dataset defines regions, attribution shares."""
        point = {"step": step, "epoch": round(epoch, 4)}
        accs = group_accuracies(predict(model, data.x_test), data.y_test, data.b_test)
        point.update({f"test_{k}": accs[k] for k in ("acc", "ba_acc", "bc_acc")})
        if data.region_fn is not None and cfg.attribution_n > 0:
            point.update(attribution_shares(model, data, n=cfg.attribution_n, n_steps=cfg.attribution_steps))
        elif data.compose_fn is not None and cfg.attribution_n > 0:
            point.update(shapley_shares(model, data, n=cfg.attribution_n))
        if cfg.neuron_probes:
            feats = penultimate_activations(model, data.x_test[:cfg.eval_n]).float()
            for key, labels in (("unit_csi", data.y_test), ("unit_bsi", data.b_test)):
                values = unit_selectivity(feats, labels[:cfg.eval_n]).tolist()
                point[key] = [None if v != v else round(v, 4) for v in values]
        trace.append(point)
        model.train()

    buf = torch.zeros(6, steps_per_epoch, device=device)  # loss, bc ratio, ba loss, bc loss, has bc, logit norm
    curves = {k: [] for k in CURVE_KEYS}
    status, step, start = "max_epochs", 0, time.perf_counter()
    chance, why_diverged = chance_accuracy(y), None
    epoch, seconds_before = 0, 0.0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        from .checkpoint import set_rng_states

        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        order_gen.set_state(saved["order_generator"])
        set_rng_states(saved["rng"])
        epoch, step, seconds_before = saved["epoch"], saved["step"], saved["seconds"]
        curves, trace[:] = saved["curves"], saved["attribution_trace"]
        if units is not None:
            units.load_state(saved["unit_trace"])
    bar = tqdm(range(epoch + 1, cfg.max_epochs + 1), desc=f"{cfg.dataset}/{cfg.model} lr={cfg.lr:g} seed={cfg.seed}",
               disable=not progress, leave=False, initial=epoch, total=cfg.max_epochs)
    for epoch in bar:
        perm = torch.randperm(n, generator=order_gen).to(device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        buf.zero_()
        for i in range(steps_per_epoch):
            if step in probe_at:
                probe_attributions(step, epoch - 1 + i / steps_per_epoch)
            if units is not None and step % cfg.unit_trace_every == 0:
                units.point(step)
            idx = perm[i * bs:(i + 1) * bs]
            xb, yb, bb = x[idx], y[idx], b[idx]
            if graphed:  # a new step: earlier graph outputs may be overwritten (all are read by now)
                torch.compiler.cudagraph_mark_step_begin()
            with autocast:
                logits = forward(xb)
            logits = logits.float()
            per_sample = F.cross_entropy(logits, yb, reduction="none")
            loss = per_sample.mean()
            opt.zero_grad(set_to_none=True)
            (loss if objective is None else objective(per_sample)).backward()
            if asam is not None:  # ASAM: the step uses the gradient at the adaptively perturbed weights
                asam.perturb()
                with autocast:
                    perturbed = F.cross_entropy(forward(xb).float(), yb, reduction="none")
                opt.zero_grad(set_to_none=True)
                (perturbed.mean() if objective is None else objective(perturbed)).backward()
                asam.restore()
            opt.step()
            if units is not None:
                units.after_step()
            with torch.no_grad():
                conflicting = (yb != bb).float()
                n_bc = conflicting.sum()
                bc_sum = (per_sample * conflicting).sum()
                total = per_sample.sum()
                buf[:, i] = torch.stack([
                    loss,
                    bc_sum / total.clamp_min(1e-30),
                    (total - bc_sum) / (len(yb) - n_bc).clamp_min(1),
                    bc_sum / n_bc.clamp_min(1),
                    (n_bc > 0).float(),
                    logits.norm(dim=1).mean(),
                ])
                correct += (logits.argmax(1) == yb).sum()
            step += 1
        stats = buf.cpu()
        n_correct = int(correct)
        append_epoch_curves(curves, stats, n_correct, n)
        bar.set_postfix(loss=f"{curves['loss'][-1]:.3g}", acc=f"{n_correct / n:.4f}")
        why_diverged = divergence_reason(stats[0], curves["logit_norm"][-1], n_correct / n, chance,
                                         lambda: dead_unit_fraction(model, x[:DEAD_UNIT_PROBE_INPUTS]))
        if why_diverged:
            status = "diverged"
            break
        if n_correct >= cfg.stop_train_acc * n:
            status = "converged"
            break
        if checkpoint is not None and checkpoint.due(epoch) and epoch < cfg.max_epochs:
            from .checkpoint import rng_states

            checkpoint.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "order_generator": order_gen.get_state(), "rng": rng_states(), "epoch": epoch,
                             "step": step, "seconds": seconds_before + time.perf_counter() - start,
                             "curves": curves, "attribution_trace": trace,
                             "unit_trace": None if units is None else units.state()})
    bar.close()
    if probe and status != "diverged":
        probe_attributions(step, epoch)
    if units is not None and status != "diverged":
        units.point(step)
    finite = [v for v in curves["bc_loss_ratio_max"] if math.isfinite(v)]
    return TrainOutcome(status=status, epochs=epoch, steps=step, seconds=seconds_before + time.perf_counter() - start,
                        curves=curves, max_bc_loss_ratio=max(finite) if finite else float("nan"),
                        attribution_trace=trace, unit_trace=None if units is None else units.arrays(),
                        diverged_because=why_diverged)
