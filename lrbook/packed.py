"""Packed training: many runs of the same architecture in one program (project issue "Fast sweeps").

The paper's models are small and its batches hold 100 images, so one run leaves a GPU mostly
idle. `PackedTrainer` trains K runs that differ only in learning rate and seed side by side: their
parameters and buffers are stacked along a leading model dimension (`torch.func.stack_module_state`)
and one forward pass, `torch.vmap` over `torch.func.functional_call`, computes every model's logits
on its own minibatch. The loss is the sum over models of each model's mean cross-entropy, so one
ordinary autograd backward gives every model exactly its own gradient, and a manual SGD step applies
each model's learning rate (a tensor of shape (K,), broadcast).

Each packed model k is the run `lrbook.train.train` would do for its config:

* initialisation: `torch.manual_seed(cfg.seed)` then `build_model(...)`, as `run_experiment` does;
* minibatch order: one `torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))` per
  epoch, in the same sequence;
* BatchNorm running statistics are stacked buffers passed through `functional_call`, updated in
  place per model;
* the same per-epoch curves (`train.CURVE_KEYS`), stopping rule (an epoch with 100% running
  training accuracy: `converged`; `train.divergence_reason`, applied to each model's own epoch
  statistics: `diverged`; else `max_epochs`) and `max_bc_loss_ratio`. Per-step values go to
  device buffers read once per epoch.

A model that finishes leaves the pack at the end of that epoch (the remaining ones are re-stacked,
so finished models stop costing compute) and is handed back as an ordinary `nn.Module` (a fresh
`build_model` loaded with its slices) with its `TrainOutcome`.

Limits: plain SGD only (momentum and weight decay 0), and no attribution probes: configs with
`attribution_n > 0` (the synthetic datasets' Fig. 3 traces) must be trained unpacked; `packable`
says which configs qualify and `run_packed` trains the others with `run_experiment`.
`TrainOutcome.seconds` of a packed run is the wall time of its pack up to the epoch it finished,
shared with the models packed beside it.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import signal
import time
import traceback
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, RunConfig, validate
from .models import build_model
from .train import (CURVE_KEYS, DEAD_UNIT_PROBE_INPUTS, TrainOutcome, append_epoch_curves, chance_accuracy,
                    dead_unit_fraction, divergence_reason, resolve_device)

# Fields that must be equal for configs to share a pack (everything that shapes the computation
# other than lr and seed). max_epochs and stop_train_acc may differ: they are applied per model.
PACK_FIELDS = ("dataset", "dataset_params", "data_seed", "model", "model_params", "batch_size", "scale",
               "precision")


def packable(cfg: RunConfig) -> bool:
    """True when `cfg` can be trained by `PackedTrainer`: plain SGD (momentum 0, weight decay 0)
    and no attribution probes (`attribution_n == 0`; packed training does not run them)."""
    return _why_not_packable(cfg) is None


def _why_not_packable(cfg: RunConfig) -> str | None:
    if cfg.optimizer != "sgd" or cfg.momentum != 0 or cfg.weight_decay != 0:
        return (f"packed training implements plain SGD only (momentum 0, weight decay 0); run "
                f"{cfg.run_id} has optimizer={cfg.optimizer!r}, momentum={cfg.momentum}, "
                f"weight_decay={cfg.weight_decay}: train it unpacked (lrbook.experiment.run_experiment)")
    if cfg.channels_last or cfg.compile:
        return (f"packed training does not implement channels_last or compile; run {cfg.run_id} asks for "
                f"channels_last={cfg.channels_last}, compile={cfg.compile}: train it unpacked "
                "(lrbook.experiment.run_experiment)")
    if cfg.loss != "cross_entropy" or cfg.l1_penalty:
        return (f"packed training implements the cross-entropy loss without penalties; run {cfg.run_id} has "
                f"loss={cfg.loss!r}, l1_penalty={cfg.l1_penalty}: train it unpacked (lrbook.experiment.run_experiment)")
    if cfg.attribution_n > 0 or cfg.neuron_probes or cfg.unit_trace_every:
        return (f"packed training does not run training probes; run {cfg.run_id} asks for "
                f"attribution_n={cfg.attribution_n}, neuron_probes={cfg.neuron_probes}, "
                f"unit_trace_every={cfg.unit_trace_every}: train it unpacked "
                "(lrbook.experiment.run_experiment) or turn the probes off")
    return None


def pack_key(cfg: RunConfig) -> str:
    """Configs with equal keys can share a pack."""
    d = cfg.to_dict()
    return json.dumps({k: d[k] for k in PACK_FIELDS}, sort_keys=True)


def group_key(cfg: RunConfig) -> str:
    """Everything in the config except lr and seed (how `run_packed` groups configs)."""
    d = cfg.to_dict()
    d.pop("lr")
    d.pop("seed")
    return json.dumps(d, sort_keys=True)


class _Float32InputBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x):
        return super().forward(x.float())


class PackedTrainer:
    """Train the models of `configs` (same architecture and data, any lr and seed) side by side on
    `data` (a `SpuriousDataset` already on `device`).

    `run()` yields `(index, model, outcome)` as models finish (index into `configs`); models that
    finish in the same epoch come in config order. `train_packed` collects them in config order.
    """

    def __init__(self, configs, data, device="cpu", progress: bool = False):
        configs = [validate(c) for c in configs]
        if not configs:
            raise ValueError("PackedTrainer needs at least one config")
        for c in configs:
            why = _why_not_packable(c)
            if why:
                raise ConfigError(why)
        key = pack_key(configs[0])
        for c in configs[1:]:
            if pack_key(c) != key:
                diff = [f for f in PACK_FIELDS if getattr(c, f) != getattr(configs[0], f)]
                raise ConfigError(f"configs in one pack must share {', '.join(PACK_FIELDS)}; run {c.run_id} "
                                  f"differs from run {configs[0].run_id} in {', '.join(diff)}")
        self.configs = configs
        self.data = data
        self.device = torch.device(device)
        self.progress = progress
        self.n = len(data.y_train)
        self.batch_size = configs[0].batch_size
        self.steps_per_epoch = math.ceil(self.n / self.batch_size)

        cfg0 = configs[0]
        models = []
        for c in configs:  # exactly as experiment.run_experiment builds each run's model
            torch.manual_seed(c.seed)
            models.append(build_model(c.model, data.input_shape, data.num_classes, **c.model_params)
                          .to(self.device))
        with torch.device("meta"):  # parameter-less: only supplies the structure to functional_call
            self._template = build_model(cfg0.model, data.input_shape, data.num_classes, **cfg0.model_params)
        self._template.train()
        if cfg0.precision == "bf16":
            # Under vmap + CUDA autocast, BatchNorm's backward rejects a bf16 input with fp32 running
            # statistics; give it fp32 input instead (BN computes its statistics in fp32 either way).
            for mod in self._template.modules():
                if type(mod) is nn.BatchNorm2d:
                    mod.__class__ = _Float32InputBatchNorm2d
        params, buffers = torch.func.stack_module_state(models)
        del models
        self.params: dict[str, torch.Tensor] = params  # stacked leaves (K, ...) requiring grad
        self.buffers: dict[str, torch.Tensor] = buffers  # stacked BatchNorm statistics (K, ...)
        self.active = list(range(len(configs)))  # config index of each slot of the pack
        dtype = next(iter(params.values())).dtype  # lr in the parameters' precision, as torch.optim.SGD
        self.lr = torch.tensor([c.lr for c in configs], dtype=dtype, device=self.device)
        self._lr_views = self._make_lr_views()
        self.order_gens = [torch.Generator().manual_seed(c.seed) for c in configs]

        template = self._template  # not `self`: no reference cycle, so a finished trainer is freed at once

        def forward(p, b, x):
            return torch.func.functional_call(template, (p, b), (x,))

        self._vforward = torch.vmap(forward)

    # ---------------------------------------------------------------------------------- helpers
    def _make_lr_views(self) -> dict[str, torch.Tensor]:
        k = len(self.active)
        return {name: (-self.lr).view(k, *([1] * (p.dim() - 1))) for name, p in self.params.items()}

    def _keep(self, slots: list[int]) -> None:
        """Re-stack the pack keeping only `slots` (positions in the current pack)."""
        idx = torch.tensor(slots, device=self.device)
        self.params = {k: v.detach().index_select(0, idx).requires_grad_() for k, v in self.params.items()}
        self.buffers = {k: v.index_select(0, idx) for k, v in self.buffers.items()}
        self.lr = self.lr.index_select(0, idx)
        self.active = [self.active[s] for s in slots]
        self._lr_views = self._make_lr_views()

    def unstack(self, slot: int) -> nn.Module:
        """The model in pack position `slot` as an ordinary module on the training device: a fresh
        `build_model` (on the meta device, so it draws no random numbers) loaded with its slices."""
        cfg = self.configs[self.active[slot]]
        with torch.device("meta"):
            model = build_model(cfg.model, self.data.input_shape, self.data.num_classes, **cfg.model_params)
        sliced = {name: t[slot].detach().clone() for name, t in {**self.params, **self.buffers}.items()}
        # state_dict() lists aliased submodules (e.g. `classifier` is `fc`) under every name.
        canonical = {id(t): name for name, t in [*model.named_parameters(), *model.named_buffers()]}
        state = {key: sliced[canonical[id(t)]] for key, t in model.state_dict(keep_vars=True).items()}
        model.load_state_dict(state, assign=True)
        return model.train()

    # ---------------------------------------------------------------------------------- training
    def run(self) -> Iterator[tuple[int, nn.Module, TrainOutcome]]:
        from tqdm.auto import tqdm

        data, dev, bs, n = self.data, self.device, self.batch_size, self.n
        x, y, b = data.x_train, data.y_train, data.b_train
        spe = self.steps_per_epoch
        cfg0 = self.configs[0]
        autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg0.precision == "bf16")
        curves = {i: {k: [] for k in CURVE_KEYS} for i in self.active}
        max_epochs = max(self.configs[i].max_epochs for i in self.active)
        chance = chance_accuracy(y)
        start = time.perf_counter()
        bar = tqdm(range(1, max_epochs + 1), desc=f"{cfg0.dataset}/{cfg0.model} pack of {len(self.active)}",
                   disable=not self.progress, leave=False)
        for epoch in bar:
            k = len(self.active)
            perm = torch.stack([torch.randperm(n, generator=self.order_gens[i]) for i in self.active]).to(dev)
            buf = torch.zeros(k, 6, spe, device=dev)  # loss, bc ratio, ba loss, bc loss, has bc, logit norm
            correct = torch.zeros(k, device=dev, dtype=torch.long)
            for i in range(spe):
                idx = perm[:, i * bs:(i + 1) * bs]
                xb, yb, bb = x[idx], y[idx], b[idx]
                with autocast:
                    logits = self._vforward(self.params, self.buffers, xb)
                logits = logits.float()
                kk, m, c = logits.shape
                per_sample = F.cross_entropy(logits.reshape(kk * m, c), yb.reshape(kk * m),
                                             reduction="none").view(kk, m)
                loss = per_sample.mean(1)
                for p in self.params.values():
                    p.grad = None
                loss.sum().backward()  # each model's loss depends only on its own slice
                with torch.no_grad():
                    for name, p in self.params.items():
                        p.addcmul_(self._lr_views[name], p.grad)  # p -= lr_k * grad_k
                    per_sample = per_sample.detach()
                    logits = logits.detach()
                    conflicting = (yb != bb).float()
                    n_bc = conflicting.sum(1)
                    bc_sum = (per_sample * conflicting).sum(1)
                    total = per_sample.sum(1)
                    buf[:, :, i] = torch.stack([
                        loss.detach(),
                        bc_sum / total.clamp_min(1e-30),
                        (total - bc_sum) / (m - n_bc).clamp_min(1),
                        bc_sum / n_bc.clamp_min(1),
                        (n_bc > 0).float(),
                        logits.norm(dim=2).mean(1),
                    ], dim=1)
                    correct += (logits.argmax(2) == yb).sum(1)
            stats, n_correct_all = buf.cpu(), correct.cpu().tolist()  # the epoch's only host sync
            done, keep, why_diverged = [], [], {}
            for slot, ci in enumerate(self.active):
                cfg, cur, st, n_correct = self.configs[ci], curves[ci], stats[slot], n_correct_all[slot]
                append_epoch_curves(cur, st, n_correct, n)
                why_diverged[slot] = divergence_reason(
                    st[0], cur["logit_norm"][-1], n_correct / n, chance,
                    lambda slot=slot: dead_unit_fraction(self.unstack(slot), x[:DEAD_UNIT_PROBE_INPUTS]))
                if why_diverged[slot]:
                    done.append((slot, "diverged"))
                elif n_correct >= cfg.stop_train_acc * n:
                    done.append((slot, "converged"))
                elif epoch >= cfg.max_epochs:
                    done.append((slot, "max_epochs"))
                else:
                    keep.append(slot)
            seconds = time.perf_counter() - start
            finished = []
            for slot, status in done:
                ci = self.active[slot]
                finite = [v for v in curves[ci]["bc_loss_ratio_max"] if math.isfinite(v)]
                outcome = TrainOutcome(status=status, epochs=epoch, steps=epoch * spe, seconds=seconds,
                                       curves=curves.pop(ci),
                                       max_bc_loss_ratio=max(finite) if finite else float("nan"),
                                       diverged_because=why_diverged[slot])
                finished.append((ci, self.unstack(slot), outcome))
            if done:
                if keep:
                    self._keep(keep)
                else:
                    self.active = []
            bar.set_postfix(active=len(self.active), finished=len(self.configs) - len(self.active))
            yield from finished
            if not self.active:
                break
        bar.close()


def train_packed(configs, data, device="cpu", progress: bool = False) -> list[tuple[nn.Module, TrainOutcome]]:
    """Train `configs` as one pack on `data` (already on `device`); returns (model, outcome) per
    config, in config order."""
    out: dict[int, tuple[nn.Module, TrainOutcome]] = {}
    for i, model, outcome in PackedTrainer(configs, data, device, progress).run():
        out[i] = (model, outcome)
    return [out[i] for i in range(len(configs))]


# -------------------------------------------------------------------------------------- sweeps


def _record(cfg: RunConfig, data, model, outcome: TrainOutcome, start_provenance: dict, started, pack_size: int):
    """The record `experiment.run_experiment` writes, for a packed run (plus the pack size; train and
    wall seconds are shared by the whole pack)."""
    from .experiment import evaluate, make_record

    metrics, eval_curves, artefacts = (None, {}, {}) if outcome.status == "diverged" else evaluate(model, data, cfg)
    record = make_record(cfg, data, outcome, metrics, eval_curves, start_provenance, started, artefacts)
    record["provenance"]["pack_size"] = pack_size
    return record, artefacts


def run_packed(configs, store=None, device="auto", data_root=None, pack: int = 16, progress: bool = False):
    """Train every config the store lacks, packing runs that differ only in lr and seed (at most
    `pack` per pack), evaluate each finished model as `run_experiment` does and write its record the
    moment it finishes. Configs that cannot be packed (`packable`) are trained unpacked. Each run is
    claimed in the store first (`lrbook.sweep`'s core), so concurrent sweeps never train it twice.
    Returns a `SweepReport`; Ctrl-C or SIGTERM releases every claim and raises `SweepInterrupted`."""
    from .data import dataset_for
    from .experiment import provenance, save_artefacts
    from .claims import ClaimBlocked
    from .store import ResultStore
    from .sweep import SweepInterrupted, _sigterm_unwinds, _Stop, finish, plan, run_one

    if pack < 1:
        raise ValueError("pack must be >= 1")
    store = ResultStore() if store is None else store
    report, todo = plan(configs, store)
    device = resolve_device(device)
    groups: dict[str, list[RunConfig]] = {}
    for c in todo:
        if packable(c):
            groups.setdefault(group_key(c), []).append(c)
    done: set[str] = set()
    try:
        with _sigterm_unwinds():
            for group in groups.values():
                data = None
                for lo in range(0, len(group), pack):
                    chunk = []
                    for c in group[lo:lo + pack]:
                        try:
                            (chunk if store.claim(c.run_id) else report.claimed_elsewhere).append(c)
                        except ClaimBlocked as e:
                            report.blocked[c.run_id] = str(e)
                    if not chunk:
                        continue
                    pending = {c.run_id for c in chunk}
                    try:
                        if data is None:
                            data = dataset_for(chunk[0], root=data_root).to(device)
                        started, start_provenance = dt.datetime.now(dt.timezone.utc), provenance(device)
                        trainer = PackedTrainer(chunk, data, device, progress)
                        for i, model, outcome in trainer.run():
                            cfg = chunk[i]
                            record, artefacts = _record(cfg, data, model, outcome, start_provenance, started,
                                                         len(chunk))
                            save_artefacts(store, cfg.run_id, artefacts)
                            store.put(record)
                            store.release(cfg.run_id)
                            pending.discard(cfg.run_id)
                            report.trained.append(cfg.run_id)
                    except Exception:
                        err = traceback.format_exc()
                        for rid in pending:
                            report.failed[rid] = err
                    finally:
                        for rid in pending:
                            store.release(rid)
                    done.update(c.run_id for c in chunk)

            for c in todo:
                if not packable(c):
                    try:
                        report.note(*run_one(c.to_dict(), str(store.root), str(device), data_root, None, progress))
                    except Exception:
                        report.failed[c.run_id] = traceback.format_exc()
                    done.add(c.run_id)
    except (KeyboardInterrupt, _Stop) as e:
        report.stopped += [c.run_id for c in todo if c.run_id not in done and c.run_id not in report.trained]
        raise SweepInterrupted(report, signal.SIGTERM if isinstance(e, _Stop) else signal.SIGINT) from None
    return finish(report)
