"""Training throughput of lrbook's paths against a paper-like baseline (project issue "Fast sweeps").

Rows, per model (Colored-MNIST-shaped random input 3x28x28, 10 classes, batch 100, SGD):

* baseline        torch DataLoader over CPU tensors (TensorDataset, shuffle=True, batch 100), one
                  model, eager fp32, `.to(device)` per batch, `loss.item()` every step;
* resident        `lrbook.train.train` itself: data on the device, index gathers, per-step values
                  in device buffers (no per-step host sync), one model;
* packed K        `lrbook.packed.PackedTrainer`: K models stacked and vmapped, one step trains all.
* processes K     K worker processes, each training its own model on the resident path with
                  (threads // K) torch threads, timed together (what `lrbook sweep --workers K` does).

Variants (`--variants`) repeat the resident and procs rows with the config's speed options:
`fp32` or `bf16` (autocast), then any of `+cl` (channels_last), `+compile` (torch.compile) and
`+graphs` (torch.compile mode "reduce-overhead": CUDA graphs on a GPU). Packed rows run for the
plain `fp32` / `bf16` variants only (packing implements neither channels_last nor compile).

Throughput is model-images/s: K x batch x timed steps / seconds, in steady state (a warm-up run
first, then a timed run; CUDA is synchronised before and after the timed region). Every number
printed comes from this run. Usage: `python3 benchmarks/throughput.py --help`.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lrbook.config import make_config  # noqa: E402
from lrbook.data import SpuriousDataset  # noqa: E402
from lrbook.models import build_model  # noqa: E402
from lrbook.packed import PackedTrainer  # noqa: E402
from lrbook.train import resolve_device, train  # noqa: E402

BATCH = 100
SHAPE = (3, 28, 28)
CLASSES = 10
LR = 0.01
FIG4_MODELS = ("fcn", "cnn", "resnet18", "resnet50", "wide_resnet101_2")
FIG4_DATASETS = 4
FIG4_SEEDS = 3
FIG4_IMAGES_PER_EPOCH = 60000
PAPER_HOURS = 400


VARIANT_OPTIONS = {"cl": dict(channels_last=True), "compile": dict(compile=True),
                   "graphs": dict(compile=True, compile_mode="reduce-overhead")}


def parse_variant(text: str) -> dict:
    """'bf16+cl+graphs' -> the RunConfig fields it sets (see the module docstring)."""
    precision, *options = text.split("+")
    if precision not in ("fp32", "bf16") or any(o not in VARIANT_OPTIONS for o in options):
        raise argparse.ArgumentTypeError(f"bad variant {text!r}: fp32 or bf16, then any of "
                                         + ", ".join("+" + o for o in VARIANT_OPTIONS))
    fields = dict(precision=precision)
    for o in options:
        fields.update(VARIANT_OPTIONS[o])
    return fields


def is_plain(variant: str) -> bool:
    return "+" not in variant


def config(model: str, seed: int = 0, variant: str = "fp32"):
    # colored_mnist at paper scale: the FCN is width 1024, depth 2; no attribution probes
    return make_config("colored_mnist", model, lr=LR, seed=seed, scale="paper", max_epochs=1, **parse_variant(variant))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    gc.collect()  # a previous row's trainer (a reference cycle) must not count towards this row's peak
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def measure(run, args, device) -> dict:
    """Warm up with `run(--warmup)`, then time `run(steps)` `repeats` times and keep the fastest
    (other processes on a shared machine only ever slow a run down). `run(n)` trains n steps and
    returns the seconds they took. With --max-seconds, steps and repeats shrink (to 1 at least) so
    that a row's timed runs take about that long in all."""
    reset_peak(device)
    per_step = run(args.warmup) / args.warmup
    steps, repeats = args.steps, args.repeats
    if args.max_seconds:
        steps = max(1, min(steps, int(args.max_seconds / (repeats * per_step))))
        repeats = max(1, min(repeats, int(args.max_seconds / (steps * per_step))))
    times = [run(steps) for _ in range(repeats)]
    return dict(steps=steps, repeats=repeats, seconds=min(times), all_seconds=times, peak_mib=peak_mib(device))


def subset(data: SpuriousDataset, n: int) -> SpuriousDataset:
    return SpuriousDataset("bench", data.x_train[:n], data.y_train[:n], data.b_train[:n], data.x_test,
                           data.y_test, data.b_test, num_classes=CLASSES)


def row_baseline(model_name, x_cpu, y_cpu, device, args) -> dict:
    from torch.utils.data import DataLoader, TensorDataset

    cfg = config(model_name)
    torch.manual_seed(0)
    model = build_model(model_name, SHAPE, CLASSES, **cfg.model_params).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(x_cpu, y_cpu), batch_size=BATCH, shuffle=True)
    batches = iter(loader)

    def step():
        nonlocal batches
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(loader)
            xb, yb = next(batches)
        xb, yb = xb.to(device), yb.to(device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    def run(n_steps):
        sync(device)
        t = time.perf_counter()
        for _ in range(n_steps):
            step()
        sync(device)
        return time.perf_counter() - t

    r = measure(run, args, device)
    return dict(model=model_name, setup="baseline", variant="fp32", precision="fp32", K=1, **r,
                images_per_s=BATCH * r["steps"] / r["seconds"])


def row_resident(model_name, data, device, args, variant="fp32") -> dict:
    cfg = config(model_name, variant=variant)

    def run(n_steps):
        torch.manual_seed(0)
        model = build_model(model_name, SHAPE, CLASSES, **cfg.model_params).to(device)
        sync(device)
        t = time.perf_counter()
        train(model, subset(data, n_steps * BATCH), cfg, device=device)
        sync(device)
        return time.perf_counter() - t

    r = measure(run, args, device)
    return dict(model=model_name, setup="resident", variant=variant, precision=cfg.precision, K=1, **r,
                images_per_s=BATCH * r["steps"] / r["seconds"])


def row_packed(model_name, k, data, device, args, variant="fp32") -> dict:
    configs = [config(model_name, seed=s, variant=variant) for s in range(k)]

    def run(n_steps):
        trainer = PackedTrainer(configs, subset(data, n_steps * BATCH), device)  # model builds not timed
        sync(device)
        t = time.perf_counter()
        for _ in trainer.run():
            pass
        sync(device)
        return time.perf_counter() - t

    r = measure(run, args, device)
    return dict(model=model_name, setup=f"packed {k}", variant=variant, precision=configs[0].precision, K=k, **r,
                images_per_s=k * BATCH * r["steps"] / r["seconds"])


def _process_worker(model_name, args, steps, repeats, device_name, threads, barrier, results, rank, variant):
    """One of the K processes of a `processes K` row: warm up, then time `repeats` runs, each
    started together with the other processes (a barrier), and report the times."""
    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark  # a spawned process starts with the defaults
    device = torch.device(device_name)
    cfg = config(model_name, seed=rank, variant=variant)
    g = torch.Generator().manual_seed(rank)
    n = max(args.warmup, steps) * BATCH
    x = torch.rand(n, *SHAPE, generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    data = SpuriousDataset("bench", x, y, y.clone(), x[:BATCH], y[:BATCH], y[:BATCH], num_classes=CLASSES).to(device)

    def run(n_steps):
        torch.manual_seed(rank)
        model = build_model(model_name, SHAPE, CLASSES, **cfg.model_params).to(device)
        sync(device)
        t = time.perf_counter()
        train(model, subset(data, n_steps * BATCH), cfg, device=device)
        sync(device)
        return time.perf_counter() - t

    run(args.warmup)
    times = []
    for _ in range(repeats):
        barrier.wait()
        times.append(run(steps))
    results.put((rank, times, peak_mib(device)))


def row_processes(model_name, k, device, args, steps, repeats, variant="fp32") -> dict:
    """K spawned processes train K models at once, (cpu threads // K) torch threads each, `steps`
    steps per timed run (those of the model's resident row). A repeat's time is that of its slowest
    process; the fastest repeat counts, as for the other rows."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(k), ctx.Queue()
    threads = max(1, torch.get_num_threads() // k)
    procs = [ctx.Process(target=_process_worker, args=(model_name, args, steps, repeats, str(device), threads, barrier, results, r, variant))
             for r in range(k)]
    for proc in procs:
        proc.start()
    got = [results.get() for _ in procs]
    for proc in procs:
        proc.join()
    per_repeat = [max(times[i] for _, times, _ in got) for i in range(repeats)]
    seconds = min(per_repeat)
    return dict(model=model_name, setup=f"procs {k}", variant=variant, precision=parse_variant(variant)["precision"],
                K=k, steps=steps, repeats=repeats,
                seconds=seconds, all_seconds=per_repeat, peak_mib=sum(m for _, _, m in got),
                threads_per_process=threads, images_per_s=k * BATCH * steps / seconds)


def fig4_estimate(rows, args) -> dict:
    """Device-hours for the Fig. 4 grid at the measured throughputs (training steps only)."""
    runs_per_model = FIG4_DATASETS * args.lrs_per_cell * FIG4_SEEDS
    images_per_model = runs_per_model * FIG4_IMAGES_PER_EPOCH * args.epochs_per_run
    out = {"runs": runs_per_model * len(FIG4_MODELS), "images_per_model": images_per_model, "setups": {}}
    for label, pick in (("baseline", lambda r: r["setup"] == "baseline"),
                        ("best concurrent", lambda r: r["setup"].startswith(("packed", "procs"))
                         and r["precision"] == "fp32")):
        per_model, notes, missing = {}, [], []
        for m in FIG4_MODELS:
            cands = [r for r in rows if r["model"] == m and pick(r)]
            src = m
            for stand_in in ("resnet50", "resnet18"):  # a smaller ResNet is faster: a lower bound on hours
                if not cands and m in ("resnet50", "wide_resnet101_2") and stand_in != m:
                    cands = [r for r in rows if r["model"] == stand_in and pick(r)]
                    src = stand_in
            if not cands:
                missing.append(m)
                continue
            best = max(cands, key=lambda r: r["images_per_s"])
            per_model[m] = images_per_model / best["images_per_s"] / 3600
            notes.append(f"{m}: {best['setup']} {src}" + (" (lower bound)" if src != m else ""))
        lower = any(n.endswith("(lower bound)") for n in notes)
        out["setups"][label] = {"hours": None if missing else sum(per_model.values()), "per_model": per_model,
                                "lower_bound": lower, "missing": missing, "source": notes}
    return out


HEADER = (f"{'model':<16} {'setup':<10} {'variant':<15} {'K':>3} {'steps':>5} {'runs':>4} {'seconds':>8} "
          f"{'model-img/s':>12} "
          f"{'x baseline':>10} {'peak MiB':>9}")


def print_row(r, rows):
    """Print `r` (ratio to its model's baseline row, which comes first) and add it to `rows`."""
    base = [b["images_per_s"] for b in rows if b["model"] == r["model"] and b["setup"] == "baseline"]
    r["x_baseline"] = r["images_per_s"] / base[0] if base else 1.0
    rows.append(r)
    print(f"{r['model']:<16} {r['setup']:<10} {r['variant']:<15} {r['K']:>3} {r['steps']:>5} {r['repeats']:>4} "
          f"{r['seconds']:>8.2f} {r['images_per_s']:>12,.0f} {r['x_baseline']:>10.2f} {r['peak_mib']:>9,.0f}",
          flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    p.add_argument("--models", nargs="+", choices=FIG4_MODELS, help="default fcn cnn resnet18 "
                   "(--small on a CPU: fcn cnn)")
    p.add_argument("--packs", nargs="*", type=int, help="pack sizes K (default 1 4 16; --small: 1 4; "
                   "none given: no packed rows)")
    p.add_argument("--procs", nargs="*", type=int, help="process counts K for 'procs K' rows (default on a CPU: "
                   "the number of torch threads, e.g. 2; on CUDA: none)")
    p.add_argument("--steps", type=int, help="timed steps per row (default 100; --small: 20)")
    p.add_argument("--warmup", type=int, help="warm-up steps per row (default 10; --small: 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row; the fastest counts (default 3)")
    p.add_argument("--max-seconds", type=float, help="about how long a row's timed runs may take in all: fewer "
                   "steps and repeats when the warm-up says more would take longer (default none; --small: 8)")
    p.add_argument("--cudnn-benchmark", action="store_true", help="set torch.backends.cudnn.benchmark=True "
                   "(autotuned convolution algorithms) for every row")
    p.add_argument("--bf16", action="store_true", help="add the bf16 variant (bf16 autocast)")
    p.add_argument("--variants", nargs="+", default=["fp32"], help="speed options of the resident, packed and "
                   "procs rows: fp32 or bf16, then any of +cl +compile +graphs, e.g. bf16+cl (default fp32)")
    p.add_argument("--json", metavar="OUT", help="also write the table and estimate as JSON")
    p.add_argument("--small", action="store_true", help="CPU-sized defaults")
    p.add_argument("--epochs-per-run", type=float, default=30, help="epochs to 100%% train accuracy assumed "
                   "for the Fig. 4 estimate (default 30)")
    p.add_argument("--lrs-per-cell", type=int, default=8, help="learning rates per Fig. 4 cell (default 8)")
    args = p.parse_args(argv)
    for variant in args.variants:
        try:
            parse_variant(variant)
        except argparse.ArgumentTypeError as e:
            p.error(str(e))

    device = resolve_device(args.device)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if args.models is None:
        args.models = ["fcn", "cnn"] if args.small and device.type == "cpu" else ["fcn", "cnn", "resnet18"]
    if args.packs is None:
        args.packs = [1, 4] if args.small else [1, 4, 16]
    if args.procs is None:
        args.procs = [torch.get_num_threads()] if device.type == "cpu" and torch.get_num_threads() > 1 else []
    args.steps = args.steps or (20 if args.small else 100)
    args.warmup = args.warmup or (1 if args.small else 10)
    if args.max_seconds is None and args.small:
        args.max_seconds = 8.0

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"device: {name}")
    print(f"torch {torch.__version__}, python {platform.python_version()}; cudnn.benchmark="
          f"{torch.backends.cudnn.benchmark}, cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
          f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}")
    print(f"batch {BATCH}, input {'x'.join(map(str, SHAPE))}, {CLASSES} classes, SGD lr {LR}; warm-up "
          f"{args.warmup} steps, then the fastest of {args.repeats} timed runs of up to {args.steps} steps" +
          (f" (fewer where a row would take more than ~{args.max_seconds:g} s)" if args.max_seconds else ""))
    print()

    g = torch.Generator().manual_seed(0)
    n = (args.warmup + args.steps) * BATCH
    x_cpu = torch.rand(n, *SHAPE, generator=g)
    y_cpu = torch.randint(0, CLASSES, (n,), generator=g)
    data = SpuriousDataset("bench", x_cpu, y_cpu, y_cpu.clone(), x_cpu[:BATCH], y_cpu[:BATCH], y_cpu[:BATCH],
                           num_classes=CLASSES).to(device)

    rows = []
    variants = list(dict.fromkeys(args.variants + (["bf16"] if args.bf16 else [])))
    print(HEADER)
    print("-" * len(HEADER), flush=True)
    for m in args.models:
        print_row(row_baseline(m, x_cpu, y_cpu, device, args), rows)
        for variant in variants:
            print_row(row_resident(m, data, device, args, variant), rows)
            for k in args.packs if is_plain(variant) else []:
                try:
                    print_row(row_packed(m, k, data, device, args, variant), rows)
                except torch.cuda.OutOfMemoryError:
                    print(f"{m:<16} packed {k} {variant}: out of memory, skipped", flush=True)
                    torch.cuda.empty_cache()
        resident = next(r for r in rows if r["model"] == m and r["setup"] == "resident")
        for k in args.procs:
            for variant in variants:
                print_row(row_processes(m, k, device, args, resident["steps"], resident["repeats"], variant), rows)
    if device.type == "cpu":
        print("(CPU peak MiB: the process's peak resident set so far, ru_maxrss)")
    else:
        print("(peak MiB: torch.cuda.max_memory_allocated within the row, including the resident data set)")

    est = fig4_estimate(rows, args)
    unit = "GPU-hours" if device.type == "cuda" else "CPU-hours"
    print()
    print(f"Fig. 4 grid estimate: {FIG4_DATASETS} datasets x {len(FIG4_MODELS)} models x {args.lrs_per_cell} LRs x "
          f"{FIG4_SEEDS} seeds = {est['runs']} runs, {FIG4_IMAGES_PER_EPOCH} images/epoch x "
          f"{args.epochs_per_run:g} epochs/run; training steps only (no evaluation), on this {unit.split('-')[0]}:")
    for label, s in est["setups"].items():
        if s["missing"]:
            print(f"  {label:<15} n/a: no throughput measured for {', '.join(s['missing'])}")
            continue
        bound = ">= " if s["lower_bound"] else ""
        print(f"  {label:<15} {bound}{s['hours']:,.1f} {unit}  ("
              + "; ".join(s["source"]) + ")")
    if any(s["lower_bound"] for s in est["setups"].values()):
        print("  '(lower bound)': that model was not measured and a smaller ResNet's (faster) throughput stands "
              "in for it, so those hours are a LOWER bound (add it to --models to measure it).")
    print(f"  {'paper':<15} 4 A100-PCIE-40GB GPUs, '{PAPER_HOURS} total hours of computation' for all its experiments")

    if args.json:
        out = {"device": name, "torch": torch.__version__, "python": platform.python_version(),
               "args": vars(args), "rows": rows, "fig4_estimate": est}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
