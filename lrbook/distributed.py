"""ImageNet-1k at scale (paper Sec. 5, Fig. 11): one run streamed from disk through a DataLoader and
trained with PyTorch's DistributedDataParallel (DDP), on one process or many launched by `torchrun`.

One process (a GPU, or the CPU)::

    python -m lrbook.distributed --dataset imagenet --model resnet18 --lr 0.1 --seed 0 --scale paper \\
        --data-root /data --store results

Eight GPUs of one machine (one process per GPU)::

    torchrun --nproc_per_node=8 -m lrbook.distributed --dataset imagenet --model resnet18 --lr 0.1 \\
        --seed 0 --scale paper --data-root /data --store results

Two machines of eight GPUs each: the same command on both machines, HOST being an address of the
first one that both can reach (the data root must be on every machine; only global rank 0 writes
the store, its checkpoints and weights)::

    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-id=imagenet-lr0.1 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29400 -m lrbook.distributed --dataset imagenet --model resnet18 --lr 0.1 \\
        --seed 0 --scale paper --data-root /data --store results

The run is the same whatever the number of processes: the global batch is the config's batch size
(Sec. 4.2: 16 for ImageNet), split evenly over the processes; every process sees the global batches
a single process would (`DistributedSampler` with the run's seed, see `train_streamed`), DDP averages
their gradients, and BatchNorm is synchronised over the global batch on GPUs. Stopping rule as
elsewhere (Sec. 4.2): 100% training accuracy in an epoch, or the epoch cap (`config.DATASET_MAX_EPOCHS`:
90 at paper scale, our choice; the paper states none), or divergence (`train.divergence_reason`).
The record says how many processes trained it (`provenance.world_size`, `provenance.launcher`).
"""
from __future__ import annotations

import datetime as dt
import math
import os
import sys
import time
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import MODELS, SCALES, ConfigError, RunConfig, make_config, validate
from .vocabulary import STREAMED

EVAL_BATCH = 256  # validation images per forward pass (no gradients)
PROCESS_GROUP_TIMEOUT = dt.timedelta(minutes=60)  # the other ranks wait this long for rank 0's evaluation
DATASET_PARAMS = ("image_size",)  # the streamed dataset's only parameter (`data.imagenet.imagenet_split`)


class RunClaimedElsewhere(RuntimeError):
    """Another live process holds the store's claim on this run (`ResultStore.claim`)."""


@dataclass(frozen=True)
class Launch:
    """This process's place in the job, from torchrun's environment (one process without it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "python"


def launch_from_env(env=None) -> Launch:
    """RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them; `launcher` is "torchrun" when torchrun's
    elastic agent started the process (it sets TORCHELASTIC_RUN_ID), else "python"."""
    env = os.environ if env is None else env
    return Launch(rank=int(env.get("RANK", 0)), world_size=int(env.get("WORLD_SIZE", 1)),
                  local_rank=int(env.get("LOCAL_RANK", 0)),
                  launcher="torchrun" if "TORCHELASTIC_RUN_ID" in env else "python")


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Each process's share of the global batch (`cfg.batch_size`, Sec. 4.2: 16 for ImageNet)."""
    if batch_size % world_size:
        fits = [w for w in range(1, batch_size + 1) if batch_size % w == 0]
        raise ConfigError(f"the global batch size {batch_size} cannot be split evenly over {world_size} processes: "
                          f"launch a number of processes that divides it ({', '.join(map(str, fits))}), or "
                          f"set a batch size that is a multiple of {world_size} (it changes the run)")
    return batch_size // world_size


def check_streamable(cfg: RunConfig) -> int:
    """Fail early on a config the streamed path cannot run; returns the image size."""
    validate(cfg)
    if cfg.dataset not in STREAMED:
        raise ConfigError(f"dataset {cfg.dataset!r} fits in memory: train it with `python -m lrbook sweep "
                          f"{cfg.dataset} ...`; the streamed path is for {', '.join(STREAMED)}")
    unsupported = {"loss 'focal'": cfg.loss != "cross_entropy", "l1_penalty": cfg.l1_penalty > 0,
                   "optimizer 'asam'": cfg.optimizer != "sgd", "compile": cfg.compile,
                   "attribution_n (training probes)": cfg.attribution_n > 0, "neuron_probes": cfg.neuron_probes,
                   "unit_trace_every": cfg.unit_trace_every > 0}
    found = [name for name, on in unsupported.items() if on]
    if found:
        raise ConfigError(f"{', '.join(found)}: not supported on the streamed path (plain SGD with momentum and "
                          "weight decay, fp32 or bf16, channels_last); turn it off")
    unknown = sorted(set(cfg.dataset_params) - set(DATASET_PARAMS))
    if unknown:
        raise ConfigError(f"unknown dataset parameter(s) {unknown} for {cfg.dataset}; it takes {list(DATASET_PARAMS)}")
    size = cfg.dataset_params.get("image_size", 224)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"image_size must be a whole number of pixels >= 1, got {size!r}")
    from .backgrounds import require_configured_segmenter

    require_configured_segmenter()  # Fig. 10's background share, at the end: fail now, not after training
    return size


def _device_for(device, launch: Launch) -> torch.device:
    from .train import resolve_device

    try:
        device = resolve_device(device)
    except RuntimeError as e:
        raise ConfigError(str(e)) from None
    if device.type == "cuda":
        if launch.world_size > 1:
            device = torch.device("cuda", launch.local_rank)  # one GPU per process
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def _broadcast(obj, world_size: int):
    """Rank 0's `obj` on every rank (a collective: every rank calls it)."""
    if world_size == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def train_streamed(cfg: RunConfig, store=None, data_root=None, device="auto", num_workers: int | None = None,
                   progress: bool = False, checkpoint_epochs: int | None = None, claimed: bool = False) -> dict | None:
    """Train and evaluate `cfg` (dataset `imagenet`, streamed) on this process's share of the job,
    store its record in `store` (rank 0) and return it on every rank.

    Processes: torchrun's RANK, WORLD_SIZE and LOCAL_RANK (`launch_from_env`); with WORLD_SIZE > 1 the
    default process group is initialised here unless the caller did (backend "nccl" and device
    cuda:LOCAL_RANK on GPUs, "gloo" on the CPU). The model is built after `torch.manual_seed(cfg.seed)`
    on every rank (identical initialisation) and wrapped in DDP. On GPUs its BatchNorm layers become
    `SyncBatchNorm`, so they normalise over the global batch as one process would; on the CPU (gloo)
    each process's BatchNorm sees only its own share of the batch (the tests use the FCN, which has
    none).

    Batches: each process takes `cfg.batch_size // world_size` samples per step (`local_batch_size`)
    from a `DistributedSampler(shuffle=True, seed=cfg.seed, drop_last=False)`, also with one process.
    The sampler draws one permutation per epoch, the same for any number of processes, and gives
    process r the positions r, r + W, r + 2W, ...; so process r's k-th batch is
    `perm[r::W][k*b:(k+1)*b]`, and the union over r is `perm[k*B:(k+1)*B]`, one process's k-th batch
    (B = W * b; `tests/test_distributed.py` checks it). Where the dataset size is not a multiple of
    W the sampler repeats a few samples to even out the shares, and the runs differ by those.

    Training: SGD with cfg.lr, momentum and weight decay, cross-entropy (Sec. 4.2). Per epoch, the
    summed per-sample loss, correct predictions, samples and logit norms are accumulated on the
    device, all-reduced, and read once: curves `loss` (mean per-sample loss; `train.train` averages
    per-step means, the same when every batch is full), `train_acc` (running accuracy over the
    samples seen), `logit_norm`, and `train.CURVE_KEYS`' bias curves as NaN (ImageNet has no bias
    label). The run stops at 100% training accuracy (`converged`), at `cfg.max_epochs`, or diverged
    (`train.divergence_reason`, decided on rank 0 and broadcast).

    Resume: with a store, rank 0 saves the training state (model, optimiser, epoch, step, curves,
    RNG states) every `checkpoint_every(checkpoint_epochs)` epochs (`lrbook.checkpoint`); at start,
    rank 0 reads it and broadcasts it, so every rank resumes from it and no shared filesystem is
    needed; a resumed run ends as an uninterrupted one (`provenance.resumed_from_epoch` says so).

    Evaluation: `test_acc` is the accuracy on the whole validation split, streamed (each rank
    classifies a strided share and the counts are all-reduced); rank 0 then computes the other
    metrics of `experiment.evaluate` on `data.imagenet.probe_set(..., cfg.eval_n)` (the probe's own
    test accuracy is `probe_test_acc`, its `train_acc` that of `eval_n` training images), while the
    other ranks wait (up to `PROCESS_GROUP_TIMEOUT` when this function made the process group).

    A run the store already holds is returned as stored, without training. `claimed`: the caller
    already holds the store's claim on the run (the sweep core, `sweep.run_one`), and releases it.
    Raises `ConfigError`
    (also for missing data, `DataNotFoundError`) and `RunClaimedElsewhere` when another live process
    trains the same run. Returns the record on every rank (rank 0's, broadcast)."""
    import torch.distributed as dist

    if num_workers is None:  # DataLoader workers per process: 4, or fewer on a machine with fewer cores
        num_workers = min(4, os.cpu_count() or 1)
    image_size = check_streamable(cfg)
    launch = launch_from_env()
    per_process_batch = local_batch_size(cfg.batch_size, launch.world_size)
    device = _device_for(device, launch)
    started = dt.datetime.now(dt.timezone.utc)
    made_group = False
    if launch.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
        made_group = True
    if launch.world_size > 1 and dist.get_world_size() != launch.world_size:
        raise ConfigError(f"WORLD_SIZE is {launch.world_size} but the process group has {dist.get_world_size()} ranks")
    try:
        return _run(cfg, store, data_root, device, num_workers, progress, checkpoint_epochs, launch, image_size,
                    per_process_batch, started, claimed)
    finally:
        if made_group:
            dist.destroy_process_group()


def _run(cfg, store, data_root, device, num_workers, progress, checkpoint_epochs, launch, image_size,
         per_process_batch, started, claimed=False):
    from .checkpoint import TrainingCheckpoint, checkpoint_dir, checkpoint_every
    from .experiment import provenance, segment_provenance

    lead, world = launch.rank == 0, launch.world_size
    decision = ("train", None)
    if lead and store is not None:
        store.check_writable()
        if store.has(cfg.run_id):
            decision = ("stored", store.get(cfg.run_id))
        elif not claimed and not store.claim(cfg.run_id):
            decision = ("stored", store.get(cfg.run_id)) if store.has(cfg.run_id) else ("claimed", None)
    what, record = _broadcast(decision, world)
    if what == "stored":
        return record  # a run in the store is never trained again
    if what == "claimed":
        raise RunClaimedElsewhere(f"run {cfg.run_id} is being trained by another process (claim file "
                                  f"{store.lock_path(cfg.run_id) if store is not None else '?'}); it is stored "
                                  "when that process finishes, and taken over if its heartbeat stops")
    try:
        resume, start_provenance = None, provenance(device) if lead else None
        if lead and store is not None:
            resume = TrainingCheckpoint(cfg, checkpoint_dir(store.root), every=checkpoint_every(checkpoint_epochs),
                                        segment=segment_provenance(start_provenance, started))
        record = _train_and_evaluate(cfg, store, data_root, device, num_workers, progress, launch, image_size,
                                     per_process_batch, started, start_provenance, resume)
        if lead and store is not None:
            store.put(record)
            resume.remove()
    finally:
        if lead and store is not None and not claimed:
            store.release(cfg.run_id)
    return _broadcast(record, world)


def _train_and_evaluate(cfg, store, data_root, device, num_workers, progress, launch, image_size,
                        per_process_batch, started, start_provenance, resume) -> dict | None:
    """Train, evaluate and build the record (rank 0; None on the other ranks); writes weights and
    artefacts but not the record."""
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler
    from tqdm.auto import tqdm

    from .checkpoint import rng_states, save_weights, set_rng_states
    from .data.imagenet import imagenet_split, num_classes, probe_from_splits
    from .experiment import evaluate, make_record, name_segments, save_artefacts
    from .models import build_model
    from .train import CURVE_KEYS, TrainOutcome, chance_accuracy, divergence_reason

    lead, world, cuda = launch.rank == 0, launch.world_size, device.type == "cuda"
    train_set, val_set = imagenet_split(data_root, "train", image_size), imagenet_split(data_root, "val", image_size)
    n_classes, input_shape = num_classes(train_set), (3, image_size, image_size)

    torch.manual_seed(cfg.seed)  # before the model: every rank starts from the same weights
    model = build_model(cfg.model, input_shape, n_classes, **cfg.model_params)
    saved = _broadcast(resume.load() if resume is not None else None, world)
    if saved is not None:
        model.load_state_dict(saved["model"])
    if world > 1 and cuda:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    net = model
    if world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")

    sampler = DistributedSampler(train_set, num_replicas=world, rank=launch.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=False)
    loader = DataLoader(train_set, batch_size=per_process_batch, sampler=sampler, num_workers=num_workers,
                        pin_memory=cuda, persistent_workers=num_workers > 0, drop_last=False)
    nan = float("nan")
    curves = {k: [] for k in CURVE_KEYS}
    epoch, step, seconds_before = 0, 0, 0.0
    if saved is not None:
        opt.load_state_dict(saved["optimizer"])
        set_rng_states(saved["rng"])
        epoch, step, seconds_before, curves = saved["epoch"], saved["step"], saved["seconds"], saved["curves"]
    resumed_from = epoch or None
    chance = chance_accuracy(torch.as_tensor(train_set.targets)) if lead else 0.0
    status, why_diverged, start = "max_epochs", None, time.perf_counter()
    net.train()
    for epoch in range(epoch + 1, cfg.max_epochs + 1):
        sampler.set_epoch(epoch)
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, correct, samples, logit norm
        for xb, yb in tqdm(loader, desc=f"epoch {epoch}/{cfg.max_epochs}", disable=not (progress and lead),
                           leave=False):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = net(xb)
            logits = logits.float()
            per_sample = F.cross_entropy(logits, yb, reduction="none")
            opt.zero_grad(set_to_none=True)
            per_sample.mean().backward()  # DDP averages over processes: the global batch's mean loss
            opt.step()
            with torch.no_grad():  # accumulated on the device: no host sync per step
                sums[0] += per_sample.sum()
                sums[1] += (logits.argmax(1) == yb).sum()
                sums[2] += yb.numel()
                sums[3] += logits.norm(dim=1).sum()
            step += 1
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(sums)
        loss_sum, correct, seen, norm_sum = sums.tolist()
        for key, value in zip(CURVE_KEYS, (loss_sum / seen, correct / seen, nan, nan, nan, nan, norm_sum / seen)):
            curves[key].append(value)
        verdict = None
        if lead:
            why = divergence_reason([curves["loss"][-1]], curves["logit_norm"][-1], correct / seen, chance,
                                    lambda: _dead_units(model, train_set, device, num_workers))
            verdict = ("diverged", why) if why else ("converged", None) if correct >= cfg.stop_train_acc * seen else None
            if progress:
                print(f"epoch {epoch}/{cfg.max_epochs}: loss {curves['loss'][-1]:.4g}, train acc "
                      f"{correct / seen:.4f}", file=sys.stderr, flush=True)
        verdict = _broadcast(verdict, world)  # every rank stops together, on rank 0's numbers
        if verdict is not None:
            status, why_diverged = verdict
            break
        if resume is not None and resume.due(epoch) and epoch < cfg.max_epochs:
            resume.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_states(),
                         "epoch": epoch, "step": step, "seconds": seconds_before + time.perf_counter() - start,
                         "curves": curves})
    del loader  # its worker processes end here, before evaluation starts its own
    outcome = TrainOutcome(status=status, epochs=epoch, steps=step,
                           seconds=seconds_before + time.perf_counter() - start, curves=curves,
                           diverged_because=why_diverged)

    # Evaluation on a plain copy (BatchNorm, not SyncBatchNorm: rank 0 evaluates alone).
    plain = build_model(cfg.model, input_shape, n_classes, **cfg.model_params)
    plain.load_state_dict(model.state_dict())
    plain.to(device).eval()
    test_acc = None if status == "diverged" else _streamed_accuracy(plain, val_set, launch, device, num_workers)
    if not lead:
        return None
    if status == "diverged":
        probe, metrics, eval_curves, artefacts = types.SimpleNamespace(has_bias=False, bc_ratio_drawn=0.0), None, {}, {}
    else:
        probe = probe_from_splits(train_set, val_set, cfg.eval_n, num_workers=num_workers).to(device)
        metrics, eval_curves, artefacts = evaluate(plain, probe, cfg)
        metrics["probe_test_acc"] = metrics["test_acc"]
        metrics["test_acc"] = test_acc
    record = name_segments(make_record(cfg, probe, outcome, metrics, eval_curves, start_provenance, started, artefacts),
                          resume)
    record["num_classes"] = n_classes
    record["dataset_size"] = {"train": len(train_set), "val": len(val_set)}
    record["provenance"].update(world_size=world, launcher=launch.launcher, per_process_batch_size=per_process_batch,
                                sync_batchnorm=world > 1 and cuda, resumed_from_epoch=resumed_from)
    if store is not None:
        save_weights(plain, cfg, store.root)
        save_artefacts(store, cfg.run_id, artefacts)
    return record


def _dead_units(model, train_set, device, num_workers) -> float:
    """`train.dead_unit_fraction` on the first training images (read only in an epoch at chance)."""
    from .data.imagenet import _stack
    from .train import DEAD_UNIT_PROBE_INPUTS, dead_unit_fraction

    x, _ = _stack(train_set, torch.arange(min(DEAD_UNIT_PROBE_INPUTS, len(train_set))), num_workers)
    return dead_unit_fraction(model, x.to(device))


@torch.no_grad()
def _streamed_accuracy(model, dataset, launch: Launch, device, num_workers: int) -> float:
    """Accuracy of `model` (eval mode) on all of `dataset`: rank r classifies items r, r + W, ...,
    and the counts are all-reduced (no item twice, whatever W)."""
    from torch.utils.data import DataLoader, Subset

    share = Subset(dataset, range(launch.rank, len(dataset), launch.world_size))
    loader = DataLoader(share, batch_size=EVAL_BATCH, num_workers=num_workers, pin_memory=device.type == "cuda")
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        counts[0] += (model(xb).argmax(1) == yb).sum()
        counts[1] += yb.numel()
    if launch.world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(counts)
    correct, total = counts.tolist()
    return correct / total


def _model_param(text: str) -> tuple[str, int | float | str]:
    """`KEY=VALUE` of `--model-param`, the value as an int or float where it reads as one."""
    import argparse

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for kind in (int, float):
        try:
            return key.strip(), kind(value)
        except ValueError:
            pass
    return key.strip(), value


def main(argv=None) -> int:
    """`python -m lrbook.distributed ...` (module docstring); exit status 2 for bad input or missing
    data, 3 when another process is training the run."""
    import argparse

    from .__main__ import INCOMPLETE, USER_ERROR, _count, _learning_rate, _Parser

    parser = _Parser(prog="python -m lrbook.distributed", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="imagenet", help=f"a streamed dataset: {', '.join(STREAMED)}")
    parser.add_argument("--model", default="resnet18", choices=MODELS)
    parser.add_argument("--lr", type=_learning_rate, required=True)
    parser.add_argument("--seed", type=_count(0), default=0)
    parser.add_argument("--scale", default="paper", choices=SCALES)
    parser.add_argument("--data-root", default=None,
                        help="folder holding imagenet/ (train/, val/; default: $LRBOOK_DATA or ./data)")
    parser.add_argument("--store", default=None, help="results store (default: $LRBOOK_STORE or the checkout's results/)")
    parser.add_argument("--workers", type=_count(0), default=4, help="DataLoader worker processes per process")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch line on standard error")
    run = parser.add_argument_group("config overrides (part of the run's config and id; default: the scale's preset)")
    run.add_argument("--image-size", type=_count(1), help="side of the centre crop in pixels (224)")
    run.add_argument("--batch-size", type=_count(1), help="global batch size (Sec. 4.2: 16)")
    run.add_argument("--max-epochs", type=_count(1), help="epoch cap (paper scale: 90)")
    run.add_argument("--eval-n", type=_count(1), help="validation images of the in-memory probe set")
    run.add_argument("--momentum", type=float)
    run.add_argument("--weight-decay", type=float)
    run.add_argument("--model-param", type=_model_param, action="append", default=[], metavar="KEY=VALUE",
                     help="a parameter of the model's constructor, e.g. width=2048 for the FCN (repeatable)")
    parser.add_argument("--checkpoint-every", type=_count(0), default=None,
                        help="epochs between training checkpoints (default: $LRBOOK_CHECKPOINT_EVERY or 5; 0: off)")
    args = parser.parse_args(argv)

    from .data import require_data
    from .store import ResultStore

    overrides = {k: getattr(args, k) for k in ("batch_size", "max_epochs", "eval_n", "momentum", "weight_decay")
                 if getattr(args, k) is not None}
    try:
        params = {"image_size": args.image_size} if args.image_size is not None else None
        cfg = make_config(args.dataset, args.model, lr=args.lr, seed=args.seed, scale=args.scale,
                          dataset_params=params, model_params=dict(args.model_param) or None, **overrides)
        check_streamable(cfg)
        local_batch_size(cfg.batch_size, launch_from_env().world_size)
        require_data([cfg.dataset], args.data_root)
        record = train_streamed(cfg, ResultStore(args.store), data_root=args.data_root, device=args.device,
                                num_workers=args.workers, progress=not args.quiet,
                                checkpoint_epochs=args.checkpoint_every)
    except ConfigError as e:  # bad input or missing data (DataNotFoundError): one line, no traceback
        print(f"lrbook: error: {e}", file=sys.stderr)
        return USER_ERROR
    except RunClaimedElsewhere as e:
        print(f"lrbook: {e}", file=sys.stderr)
        return INCOMPLETE
    if launch_from_env().rank == 0 and record is not None:
        acc = (record.get("metrics") or {}).get("test_acc")
        shown = "no metrics" if acc is None or not math.isfinite(acc) else f"test acc {acc:.4f}"
        print(f"{record['run_id']}: {record['status']} after {record['epochs']} epochs, {shown} "
              f"({record['provenance']['world_size']} process(es))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
