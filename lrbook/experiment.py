"""One run end to end: build data and model, train, evaluate every metric, store the record."""
from __future__ import annotations

import contextlib
import datetime as dt
import platform
import subprocess
import sys

import torch

from . import __version__
from .attribution import attribution_entropy, attribution_map, region_shares
from .config import RunConfig, validate
from .data import dataset_for
from .checkpoint import TrainingCheckpoint, checkpoint_dir, checkpoint_every, save_weights
from .metrics import (PRUNE_FRACTIONS, eval_subset, group_accuracies, has_batchnorm, metric_versions,
                      parameter_compressibility, predict, prunability, prunability_candidates, pruning_curve,
                      representation_metrics)
from .models import build_model, penultimate_activations
from .record import SCHEMA_VERSION
from .store import ResultStore, repo_root
from .train import resolve_device, train
from .vocabulary import PATCHED, SEGMENTED_BACKGROUND, STANDARD


ARTEFACT_MAPS = 16  # attribution maps kept per run (Fig. 8 panels), as float16
# Page 05 (Fig. 8, 35, 36) picks, among the test images whose maps every run keeps, those the high-LR
# runs predict correctly more often than the low-LR ones: it keeps more maps, and every prediction;
# for large images (ImageNet) only a few, so that a run's artefacts stay small enough to commit.
STANDARD_ARTEFACT_MAPS = 64
LARGE_IMAGE_MAPS, LARGE_IMAGE_PIXELS = 8, 64 * 64


def maps_kept(cfg: RunConfig, x: torch.Tensor) -> int:
    """How many attribution maps (and, on page 05, inputs) a run keeps as its artefact."""
    if cfg.dataset not in STANDARD + PATCHED:
        return ARTEFACT_MAPS
    return LARGE_IMAGE_MAPS if x.shape[-1] * x.shape[-2] > LARGE_IMAGE_PIXELS else STANDARD_ARTEFACT_MAPS


def evaluate(model, data, cfg: RunConfig) -> tuple[dict, dict, dict]:
    """Scalar metrics, curves and small artefacts (arrays) of a trained model (paper Sec. 3.2-3.3).
    Accuracies in [0, 1]."""
    metrics: dict = {}
    artefacts: dict = {}
    pred = predict(model, data.x_test)
    test = group_accuracies(pred, data.y_test, data.b_test)
    if cfg.dataset in STANDARD + PATCHED:
        artefacts["test_predictions"] = {"pred": pred.cpu().short().numpy(), "y": data.y_test.cpu().short().numpy()}
    if not data.has_bias:  # standard classification: no bias groups
        test = {"acc": test["acc"]}
    metrics.update({f"test_{k}": v for k, v in test.items()})
    metrics["train_acc"] = (predict(model, data.x_train) == data.y_train).float().mean().item()
    if cfg.dataset in STANDARD and data.x_test.dim() == 4:  # page 05, beyond the paper: one frequency band kept
        from .classification import band_accuracies

        metrics.update({f"test_acc_band{b}": a for b, a in enumerate(band_accuracies(model, data.x_test, data.y_test))})

    curves = {"prune_fractions": list(PRUNE_FRACTIONS)}
    for method in ("structured", "magnitude", "structured_global"):
        curve = pruning_curve(model, data.x_test, data.y_test, method=method)
        curves[f"prune_{method}"] = list(curve.values())
        if method != "structured_global":  # its ratio is among the candidates below
            metrics["prunability" if method == "structured" else "prunability_magnitude"] = prunability(curve, test["acc"])
    if has_batchnorm(model):
        # Diagnostic beside the spec's prunability (running BN statistics): the same structured
        # pruning evaluated with BN batch statistics, in batches of the training batch size. The
        # first author's evaluation code in a related project (github.com/mbarsbey/advcomp,
        # utils/statistics.py) computes accuracies in train mode unless asked otherwise; BN then
        # partly repairs what pruning removed, so this can be much higher for ResNets.
        bs = cfg.batch_size
        base = (predict(model, data.x_test, batch_size=bs, bn="batch") == data.y_test).float().mean().item()
        curve = pruning_curve(model, data.x_test, data.y_test, method="structured", bn="batch", batch_size=bs)
        curves["prune_structured_bn_batch"] = list(curve.values())
        metrics["test_acc_bn_batch"] = base
        metrics["prunability_bn_batch"] = prunability(curve, base)
    # The readings of prunability that the Definitions page weighs against each other (issue 15).
    metrics.update(prunability_candidates({**curves, "test_acc_bn_batch": metrics.get("test_acc_bn_batch")},
                                          test["acc"], data.num_classes))

    # Representation metrics on a fixed random subset of the test set (same for every run).
    sub = eval_subset(len(data.y_test), cfg.eval_n, data.x_test.device)
    feats = penultimate_activations(model, data.x_test[sub]).float()
    metrics.update(representation_metrics(feats, data.y_test[sub], data.b_test[sub] if data.has_bias else None))
    metrics["param_compressibility"] = parameter_compressibility(model)

    # Attribution shares on the dataset's regions (Double MNIST halves, MNIST-CIFAR blocks, MNIST's
    # exact background, the patch) or on DeepLabV3's backgrounds (CIFAR, ImageNet: Fig. 10) for the
    # first test inputs; parity's come from the training probes instead.
    segmented = cfg.dataset in SEGMENTED_BACKGROUND
    if segmented or (data.region_fn is not None and (not cfg.attribution_n or cfg.dataset in PATCHED)):
        n = 8 if cfg.scale == "smoke" else 200
        x, y = data.x_test[:n], data.y_test[:n]
        maps = attribution_map(model, x, y, n_steps=cfg.attribution_steps, baseline=data.attribution_baseline)
        if segmented:
            from .backgrounds import SEGMENTER_INPUT, background_regions, background_share, configured_segmenter

            regions, kept = background_regions(x, configured_segmenter(),
                                               input_size=64 if cfg.scale == "smoke" else SEGMENTER_INPUT)
            share, dropped = background_share(maps, regions["background"], kept)
            metrics.update(attr_background=share, attr_background_dropped=dropped)
        else:
            metrics.update({f"attr_{k}": v for k, v in region_shares(maps, data.regions(x)).items()})
        metrics["attr_entropy"] = attribution_entropy(maps).mean().item()
        k = min(maps_kept(cfg, x), n)
        artefacts["attribution_maps"] = {"maps": maps[:k].cpu().half().numpy(),
                                         "test_index": torch.arange(k).numpy(),
                                         "y": y[:k].cpu().numpy(), "b": data.b_test[:k].cpu().numpy()}
        if cfg.dataset in STANDARD + PATCHED:  # the inputs themselves, to draw beside the maps (8 bits)
            artefacts["attribution_maps"]["x"] = (x[:k].clamp(0, 1) * 255).round().byte().cpu().numpy()
        if segmented:
            artefacts["attribution_maps"]["background"] = regions["background"][:k].cpu().numpy()
    return metrics, curves, artefacts


def _gpu_numerics_now() -> dict:
    return {"cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def provenance(device: torch.device) -> dict:
    import numpy

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
                "lrbook": __version__}
    for mod in ("torchvision", "captum"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    commit, dirty = None, None
    root = repo_root()
    if root is not None:
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                    timeout=10).stdout.strip() or None
            dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "lrbook"],
                                        cwd=root, capture_output=True, text=True, timeout=10).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    # Settings that change the numbers a GPU or the CPU computes without being part of the config.
    # `cpu_capability`: the instruction set of PyTorch's CPU kernels (AVX2, AVX512, ...), which a CPU
    # retrain must match to reproduce a run (`retrain_for_weights`; env ATEN_CPU_CAPABILITY).
    numerics = {**_gpu_numerics_now(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    return {"device": name, "git_commit": commit, "git_dirty": dirty, "versions": versions,
            "platform": platform.platform(), "argv": sys.argv[:1], "numerics": numerics}


def segment_provenance(prov: dict, started: dt.datetime) -> dict:
    """What trains the epochs this process adds to a run (`TrainingCheckpoint.segment`), from the
    `provenance` read when the process started."""
    return {"started": started.isoformat(timespec="seconds"), "device": prov["device"],
            "git_commit": prov["git_commit"], "git_dirty": prov["git_dirty"], "torch": prov["versions"]["torch"],
            "numerics": prov["numerics"]}


def name_segments(record: dict, resume: TrainingCheckpoint | None) -> dict:
    """A resumed run's record names every process that trained part of it, oldest first
    (`provenance.segments`); its `started`, `finished` and `seconds` stay those of the last."""
    if resume is not None and resume.earlier:
        record["provenance"]["segments"] = resume.segments(record["epochs"], until=record["provenance"]["finished"])
    return record


def _segmenter_provenance(cfg: RunConfig) -> dict:
    """Which DeepLabV3 computed a run's background share (CIFAR, ImageNet), else nothing."""
    if cfg.dataset not in SEGMENTED_BACKGROUND:
        return {}
    from .backgrounds import segmenter_name

    return {"segmenter": segmenter_name()}


def make_record(cfg: RunConfig, data, outcome, metrics: dict | None, eval_curves: dict, start_provenance: dict,
                started: dt.datetime, artefacts: dict | None = None) -> dict:
    """The stored record of one finished run (shared by single and packed training).
    `start_provenance` is `provenance(device)` read when the run started, so the record names the
    code that trained it even when the checkout moved on while it trained."""
    if metrics is not None:
        if data.has_bias:
            metrics["max_bc_loss_ratio"] = outcome.max_bc_loss_ratio
        if outcome.attribution_trace:
            last = outcome.attribution_trace[-1]
            metrics.update({f"attr_{k}": v for k, v in last.items() if k not in ("step", "epoch")
                            and not k.startswith(("test_", "unit_"))})
    finished = dt.datetime.now(dt.timezone.utc)
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": cfg.run_id,
        "config": cfg.to_dict(),
        "status": outcome.status,
        "diverged_because": outcome.diverged_because,
        "epochs": outcome.epochs,
        "steps": outcome.steps,
        "bc_ratio_drawn": data.bc_ratio_drawn,
        "metrics": metrics,
        "metric_versions": metric_versions(metrics or {}),
        "curves": {"per_epoch": outcome.curves, **eval_curves},
        "attribution_trace": outcome.attribution_trace,
        "artefacts": sorted(artefacts or {}),
        "provenance": {**start_provenance, **_segmenter_provenance(cfg),
                       "started": started.isoformat(timespec="seconds"),
                       "finished": finished.isoformat(timespec="seconds"),
                       "seconds": round((finished - started).total_seconds(), 2),
                       "train_seconds": round(outcome.seconds, 2)},
    }


def run_experiment(cfg: RunConfig, store: ResultStore | None = None, device="auto", data_root=None,
                   progress: bool = False, checkpoint_epochs: int | None = None) -> dict:
    """Train and evaluate `cfg`, write its record to `store` (if given) and return it. A diverged
    run is a result: status `diverged`, no metrics.

    With a store, the run's final weights are kept in its checkpoint folder (`lrbook.checkpoint`),
    and its training state is saved every `checkpoint_epochs` epochs (default
    `$LRBOOK_CHECKPOINT_EVERY` or 5; 0: never) until the record is stored: a run stopped midway
    resumes from its last saved epoch when it is started again, and ends as it would have."""
    validate(cfg)
    if store is not None:
        store.check_writable()
    if cfg.dataset in SEGMENTED_BACKGROUND:  # before training, not after it
        from .backgrounds import require_configured_segmenter

        require_configured_segmenter()
    device = resolve_device(device)
    started, start_provenance = dt.datetime.now(dt.timezone.utc), provenance(device)
    data = dataset_for(cfg, root=data_root).to(device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes, **cfg.model_params).to(device)
    resume = None
    if store is not None:
        resume = TrainingCheckpoint(cfg, checkpoint_dir(store.root), every=checkpoint_every(checkpoint_epochs),
                                    segment=segment_provenance(start_provenance, started))
    outcome = train(model, data, cfg, device=device, progress=progress, checkpoint=resume)
    if store is not None:
        save_weights(model, cfg, store.root)
    metrics, eval_curves, artefacts = (None, {}, {}) if outcome.status == "diverged" else evaluate(model, data, cfg)
    if outcome.unit_trace is not None:
        artefacts["unit_trace"] = outcome.unit_trace
    record = name_segments(make_record(cfg, data, outcome, metrics, eval_curves, start_provenance, started,
                                       artefacts), resume)
    if store is not None:
        save_artefacts(store, cfg.run_id, artefacts)
        store.put(record)
        resume.remove()
    return record


def reevaluate_run(record: dict, store: ResultStore, device="auto", data_root=None) -> dict:
    """Recompute `record`'s evaluation metrics and curves from its saved final weights, store the
    updated record (atomically, `ResultStore.put`) and return it. Metrics computed during training
    (`max_bc_loss_ratio`, parity's attribution shares from the training probes) are kept as they
    are; `metric_versions` says which version of each metric family computed each value.
    FileNotFoundError if the run has no saved weights."""
    from .checkpoint import load_weights

    cfg = RunConfig.from_dict(record["config"])
    saved = load_weights(cfg.run_id, store.root)
    device = resolve_device(device)
    data = dataset_for(cfg, root=data_root).to(device)
    model = build_model(cfg.model, data.input_shape, data.num_classes, **cfg.model_params)
    model.load_state_dict(saved["state_dict"])
    model.to(device)
    metrics, eval_curves, artefacts = evaluate(model, data, cfg)
    save_artefacts(store, cfg.run_id, artefacts)
    updated = dict(record)
    updated["metrics"] = {**(record.get("metrics") or {}), **metrics}
    updated["curves"] = {**record.get("curves", {}), **eval_curves}
    updated["metric_versions"] = {**record.get("metric_versions", {}), **metric_versions(metrics)}
    updated["artefacts"] = sorted(set(record.get("artefacts", [])) | set(artefacts))
    updated["provenance"] = {**record.get("provenance", {}),
                             "reevaluated": {**{k: v for k, v in provenance(device).items()
                                                if k in ("device", "git_commit", "git_dirty", "versions", "numerics")},
                                             "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                             "from": "weights"}}
    store.put(updated)
    return updated


def _values_differ(a, b, rtol: float) -> bool:
    import math

    if isinstance(a, dict) and isinstance(b, dict):
        return any(_values_differ(a[k], b[k], rtol) for k in set(a) & set(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) != len(b) or any(_values_differ(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if math.isnan(a) or math.isnan(b):
            return not (math.isnan(a) and math.isnan(b))
        return not math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12)
    return a != b


def reproduction_differences(stored: dict, retrained: dict, rtol: float = 1e-6) -> list[str]:
    """What a retrain of `stored` changed: status, epochs, and every metric and curve both records
    hold (within `rtol`); empty when the retrain reproduced the record."""
    diffs = [f"{k}: {stored.get(k)} -> {retrained.get(k)}" for k in ("status", "epochs")
             if stored.get(k) != retrained.get(k)]
    for part in ("metrics", "curves"):
        old, new = stored.get(part) or {}, retrained.get(part) or {}
        diffs += [f"{part}.{k}" for k in sorted(set(old) & set(new)) if _values_differ(old[k], new[k], rtol)]
    return diffs


def stored_threads(record: dict) -> int | None:
    """The CPU thread count a stored run trained with (`provenance.device`: "cpu (x86_64, 1 threads)");
    None for a GPU run."""
    import re

    found = re.search(r"^cpu \(.*?(\d+) threads\)", record.get("provenance", {}).get("device", ""))
    return int(found.group(1)) if found else None


def stored_cpu_capability(record: dict) -> str | None:
    """The instruction set of the PyTorch CPU kernels a stored run used ("AVX2", "AVX512", ...);
    None for records older than this field (2026-12-02)."""
    return (record.get("provenance", {}).get("numerics") or {}).get("cpu_capability")


# The GPU numerics settings (`provenance.numerics`) of PyTorch's defaults, which the runs recorded
# before the field (2026-11-23) were trained with: lrbook never changes them.
DEFAULT_GPU_NUMERICS = {"cudnn_benchmark": False, "cudnn_allow_tf32": True, "matmul_allow_tf32": False,
                        "float32_matmul_precision": "highest"}


@contextlib.contextmanager
def gpu_numerics(numerics: dict):
    """Set the GPU numerics settings that a record names (`provenance.numerics`; unnamed ones as
    `DEFAULT_GPU_NUMERICS`) for the duration of the block, then restore the ones before."""
    def apply(settings):
        torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
        torch.backends.cudnn.allow_tf32 = settings["cudnn_allow_tf32"]
        torch.backends.cuda.matmul.allow_tf32 = settings["matmul_allow_tf32"]
        torch.set_float32_matmul_precision(settings["float32_matmul_precision"])

    before = _gpu_numerics_now()
    apply({k: (numerics or {}).get(k, v) for k, v in DEFAULT_GPU_NUMERICS.items()})
    try:
        yield
    finally:
        apply(before)


@contextlib.contextmanager
def _cpu_threads(threads: int):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def retrain_setting_changes(record: dict, device) -> list[str]:
    """What a retrain on `device` in this process would change from how `record` was trained, among
    what its provenance names: the device, torch's version (a reason a retrain may not reproduce)."""
    prov, device = record.get("provenance", {}), resolve_device(device)
    if stored_threads(record) is not None:
        device = torch.device("cpu")
    now = provenance(device)
    changes = []
    if stored_threads(record) is None and prov.get("device") and prov["device"] != now["device"]:
        changes.append(f"trained on {prov['device']}, retrained on {now['device']}")
    then = prov.get("versions", {}).get("torch")
    if then and then != now["versions"]["torch"]:
        changes.append(f"torch {then} then, {now['versions']['torch']} now")
    return changes


class RetrainRefused(Exception):
    """A stored run that `retrain_for_weights` does not retrain here: the message says why and what
    to do instead."""


def retrain_for_weights(record: dict, store: ResultStore, data_root=None, rtol: float = 1e-6,
                        device="cpu") -> list[str]:
    """Give a stored run that kept no weights its weights: retrain its config in a scratch store, as
    it was trained, and keep the weights (in `store`'s checkpoint folder) only if the retrain
    reproduces the stored record (`reproduction_differences`). A CPU-trained run is retrained on the
    CPU with its thread count and CPU kernels; a GPU-trained run on `device`, which must be a GPU,
    with the numerics settings its record names. Returns the differences: empty means the weights
    were kept. Raises RetrainRefused, before any training, for a run this process cannot reproduce
    (a GPU run off a GPU, other CPU kernels). The stored record is not changed."""
    import shutil
    import tempfile

    from .checkpoint import weights_path

    cfg = RunConfig.from_dict(record["config"])
    prov = record.get("provenance", {})
    known = [s for s in prov.get("segments", []) if "device" in s]
    kinds = sorted({f"{s['device']}, {(s.get('numerics') or {}).get('cpu_capability')} kernels" for s in known})
    if len(kinds) > 1:
        raise RetrainRefused(f"trained in segments on different devices or CPU kernels ({'; '.join(kinds)}): "
                             "no single retrain reproduces it")
    threads = stored_threads(record)
    if threads is None:  # trained on a GPU
        device = resolve_device(device)
        if device.type != "cuda":
            raise RetrainRefused(f"trained on {prov.get('device', 'an unknown device')}: retrain it on a GPU "
                                 "(--device cuda); a CPU retrain would not reproduce it")
        settings = gpu_numerics(prov.get("numerics"))
    else:
        wanted, here = stored_cpu_capability(record), torch.backends.cpu.get_cpu_capability()
        if wanted is not None and wanted != here:
            # PyTorch picks its kernels once, when it loads: only a new process can switch them
            raise RetrainRefused(f"trained with PyTorch's {wanted} CPU kernels, this process uses {here}: run "
                                 f"it again with ATEN_CPU_CAPABILITY={wanted.lower()} set")
        device, settings = torch.device("cpu"), _cpu_threads(threads)
    with tempfile.TemporaryDirectory(prefix="lrbook-retrain-") as scratch:
        with settings:
            retrained = run_experiment(cfg, ResultStore(scratch), device=device, data_root=data_root,
                                       checkpoint_epochs=0)
        diffs = reproduction_differences(record, retrained, rtol)
        made, target = weights_path(cfg.run_id, scratch), weights_path(cfg.run_id, store.root)
        if made.resolve() == target.resolve():  # $LRBOOK_CHECKPOINTS points both stores at one folder
            if diffs:
                made.unlink()
        elif not diffs:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(made, target.with_suffix(".tmp"))
            target.with_suffix(".tmp").replace(target)
    return diffs


def num_classes_of(config: dict) -> int:
    """The number of classes of a stored run's dataset (chance = 1 / this on the unbiased test set)."""
    from .vocabulary import NUM_CLASSES

    return NUM_CLASSES[config["dataset"]]


def reevaluate_from_curves(record: dict, store: ResultStore | None = None) -> dict:
    """Add to `record` the prunability candidates that its stored pruning curves allow
    (`metrics.prunability_candidates`: chance-corrected and half-grid readings; the global-ranking
    ones need the weights), without changing any value it already has; store it if `store` is given.
    Returns the updated record (the same object's content if nothing could be added)."""
    metrics, curves = record.get("metrics"), record.get("curves", {})
    if not metrics or "prune_structured" not in curves or metrics.get("test_acc") is None:
        return record
    fractions = curves.get("prune_fractions")
    if fractions is not None and [round(f, 6) for f in fractions] != [round(f, 6) for f in PRUNE_FRACTIONS]:
        return record
    found = prunability_candidates({**curves, "test_acc_bn_batch": metrics.get("test_acc_bn_batch")},
                                   metrics["test_acc"], num_classes_of(record["config"]))
    new = {k: v for k, v in found.items() if k not in metrics}
    if not new:
        return record
    updated = {**record, "metrics": {**metrics, **new},
               "metric_versions": {**record.get("metric_versions", {}), **metric_versions(new)}}
    if store is not None:
        store.put(updated)
    return updated


def save_artefacts(store: ResultStore, run_id: str, artefacts: dict) -> None:
    """Write each artefact as `<store>/artefacts/<run_id>/<name>.npz` (before the record, so a stored
    record never points at a missing artefact)."""
    for name, arrays in artefacts.items():
        store.put_artefact(run_id, name, **arrays)
