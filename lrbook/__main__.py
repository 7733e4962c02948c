"""Command line: `python -m lrbook status [--json]`, `python -m lrbook sweep ...`,
`python -m lrbook reevaluate [filters] [--missing METRIC ...] [--from-curves | --retrain]`."""
from __future__ import annotations

import argparse
import json
import math
import sys

from .config import DATASET_PRESETS, MODELS, SCALES, ConfigError
from .vocabulary import INTERVENTIONS

USER_ERROR = 2  # exit status of a usage or data error, as argparse's own
INCOMPLETE = 3  # a sweep that left runs to other processes or could not claim them


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: `lrbook: error: ...` and where to find the usage."""

    def error(self, message):
        self.exit(USER_ERROR, f"lrbook: error: {message} (see: {self.prog} --help)\n")


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a learning rate must be a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a learning rate must be a finite number > 0, got {text}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
        return value

    return parse


def main(argv=None) -> int:
    from .sweep import SweepFailed, SweepInterrupted

    try:
        return _main(argv)
    except ConfigError as e:  # a bad setting or missing data (data.DataNotFoundError): one line, no traceback
        print(f"lrbook: error: {e}", file=sys.stderr)
        return USER_ERROR
    except SweepInterrupted as e:  # Ctrl-C or SIGTERM: what finished and how to resume, no traceback
        print(f"lrbook: {e}", file=sys.stderr)
        return 128 + e.signal
    except SweepFailed as e:
        print(f"lrbook: {e}\n{e.report.explain()}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (`status`, `sweep`, `reevaluate`)."""
    parser = _Parser(prog="lrbook", description=__doc__)
    parser.add_argument("--store", help="results store (default: $LRBOOK_STORE or the checkout's results/)")
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="what of the paper is reproduced")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.add_argument("--check", action="store_true",
                    help="validate every record and claim in the store; exit 1 if any is bad")
    st.add_argument("--clean", action="store_true",
                    help="remove stale claims and leftover temporary files older than a minute")
    sw = sub.add_parser("sweep", help="train the missing runs of an LR x seed grid, or of one intervention's "
                                      "values x seeds (Sec. 5)")
    sw.add_argument("dataset", choices=list(DATASET_PRESETS))
    sw.add_argument("--model", default="fcn", choices=MODELS)
    sw.add_argument("--lrs", type=_learning_rate, nargs="+", metavar="LR", help="the LR grid (without --intervention)")
    sw.add_argument("--intervention", choices=INTERVENTIONS,
                    help="vary this intervention's hyperparameter at its fixed LR instead of the LR (Sec. 5, Fig. 6)")
    sw.add_argument("--values", type=_number, nargs="+", metavar="V",
                    help="with --intervention: its hyperparameter values in Table S2's encoding "
                         "(default: 5 values spanning Table S2's range)")
    sw.add_argument("--seeds", type=_count(0), nargs="+", default=[0, 1, 2])
    sw.add_argument("--scale", default="cpu", choices=SCALES)
    sw.add_argument("--workers", type=_count(1), default=1)
    sw.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    sw.add_argument("--data-root", default=None,
                    help="folder holding MNIST/raw/ and cifar-10-batches-py/ (default: $LRBOOK_DATA or ./data)")
    sw.add_argument("--pack", type=_count(0), default=0,
                    help="train up to N models of the grid packed in one process (lrbook.packed; GPU)")
    sw.add_argument("--ray", metavar="ADDRESS", default=None,
                    help="run on Ray: 'local' starts local Ray, else a cluster address (lrbook.ray_sweep)")
    sw.add_argument("--gpus-per-run", type=float, default=0.0, help="with --ray: GPU fraction per run")
    fast = sw.add_argument_group("speed options (recorded in each run's config; fp32 eager is the paper's path)")
    fast.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast")
    fast.add_argument("--channels-last", action="store_true", help="channels_last inputs and conv weights")
    fast.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                      help="torch.compile the forward pass; MODE 'reduce-overhead' replays CUDA graphs")
    rev = sub.add_parser("reevaluate", help="recompute stored runs' metrics from their saved weights")
    rev.add_argument("--dataset", nargs="+", choices=list(DATASET_PRESETS))
    rev.add_argument("--model", nargs="+", choices=MODELS)
    rev.add_argument("--scale", nargs="+", choices=SCALES)
    rev.add_argument("--lr", type=_learning_rate, nargs="+", metavar="LR")
    rev.add_argument("--seed", type=_count(0), nargs="+")
    rev.add_argument("--run-id", nargs="+", metavar="RUN_ID")
    rev.add_argument("--missing", nargs="+", metavar="METRIC",
                    help="only runs whose record lacks one of these metrics or holds it from an older "
                         "definition (e.g. prunability_global)")
    rev.add_argument("--from-curves", action="store_true",
                    help="no weights needed: add the prunability readings that the stored pruning curves allow")
    rev.add_argument("--retrain", action="store_true",
                    help="runs without saved weights: retrain each as it was trained (CPU runs on the CPU, GPU "
                         "runs on --device cuda) and keep its weights only if the retrain reproduces the stored "
                         "record, then re-evaluate it")
    rev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    rev.add_argument("--data-root", default=None,
                    help="folder holding MNIST/raw/ and cifar-10-batches-py/ (default: $LRBOOK_DATA or ./data)")
    return parser


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    from .store import ResultStore

    store = ResultStore(args.store)
    if args.command == "status":
        if args.check or args.clean:
            return _check_store(store, clean=args.clean)
        import warnings

        from .status import scorecard, status_table
        from .store import BadRecordWarning

        warnings.simplefilter("ignore", BadRecordWarning)  # `store.check()` below names each bad file once
        card = scorecard(store)
        table = status_table(store, card=card)
        if args.json:
            print(json.dumps({"items": json.loads(table.to_json(orient="records")),
                              "scorecard": json.loads(card.to_json(orient="records")) if len(card) else [],
                              "bad_records": [str(b) for b in store.bad_records()]},
                             indent=1))
        else:
            import pandas as pd

            text = table.drop(columns=["shows", "verdict_note"]).astype(object).fillna("")
            text["note"] = [n if len(n) <= 60 else n[:57] + "..." for n in text.note]
            with pd.option_context("display.width", 250):
                print(text.to_string(index=False))
            for line in store.check():
                print(f"warning: {line}", file=sys.stderr)
        return 0
    if args.command == "reevaluate":
        return _reevaluate(store, args)
    if args.command == "sweep":
        configs = sweep_configs(args)
        if args.ray in (None, "local"):  # a Ray cluster's workers have their own devices and data
            from .data import require_data

            _check_device(args.device)
            require_data([args.dataset], args.data_root)  # once, before any run starts
        if args.ray:
            from .ray_sweep import run_sweep_ray

            report = run_sweep_ray(configs, store, address=None if args.ray == "local" else args.ray,
                                   gpus_per_run=args.gpus_per_run, device=args.device, data_root=args.data_root)
        elif args.pack:
            from .packed import run_packed

            report = run_packed(configs, store, device=args.device, data_root=args.data_root, pack=args.pack)
        else:
            from .sweep import run_sweep

            report = run_sweep(configs, store, workers=args.workers, device=args.device, data_root=args.data_root)
        print(report)
        if not report.complete:
            print(report.explain(), file=sys.stderr)
            return INCOMPLETE
        return 0
    return 1


def sweep_configs(args) -> list:
    """The runs `lrbook sweep` asks for (its parsed arguments): an LR x seed grid, or one
    intervention's values x seeds."""
    from .config import grid

    speed = dict(precision=args.precision, channels_last=args.channels_last, compile=args.compile is not None,
                 compile_mode=args.compile or "default")
    if args.intervention is None:
        if not args.lrs:
            raise ConfigError("sweep: give --lrs, or --intervention NAME to vary another hyperparameter")
        if args.values:
            raise ConfigError("sweep: --values goes with --intervention; the LR grid is --lrs")
        return grid(args.dataset, args.model, lrs=args.lrs, seeds=args.seeds, scale=args.scale, **speed)
    if args.lrs:
        raise ConfigError(f"sweep: --intervention {args.intervention} runs at the cell's fixed LR; give its "
                          f"hyperparameter values with --values, not --lrs")
    from .interventions import hyperparameter_grid, intervention_config

    values = args.values or hyperparameter_grid(args.intervention, args.dataset)
    return [intervention_config(args.dataset, args.model, args.intervention, v, seed=s, scale=args.scale, **speed)
            for v in values for s in args.seeds]


def _lacks(record: dict, name: str) -> bool:
    """Whether `record` lacks the metric `name`, or holds it from an older version of its definition
    (a value stored before versions were recorded counts as current)."""
    from .metrics import metric_versions

    if name not in (record.get("metrics") or {}):  # a diverged run's metrics are null
        return True
    stored = record.get("metric_versions", {}).get(name)
    return stored is not None and stored != metric_versions([name])[name]


def _selected(records, args) -> list[dict]:
    """The records that every given filter of `lrbook reevaluate` admits."""
    def admits(r):
        c = r["config"]
        return ((not args.dataset or c["dataset"] in args.dataset) and (not args.model or c["model"] in args.model)
                and (not args.scale or c["scale"] in args.scale) and (not args.seed or c["seed"] in args.seed)
                and (not args.lr or any(math.isclose(c["lr"], lr, rel_tol=1e-9) for lr in args.lr))
                and (not args.run_id or r["run_id"] in args.run_id)
                and (not args.missing or any(_lacks(r, name) for name in args.missing)))

    from .metrics import metric_family

    for name in args.missing or ():
        if metric_family(name) is None:
            raise ConfigError(f"--missing {name}: not a metric that re-evaluation computes; name one of the "
                              f"record's evaluation metrics, e.g. prunability_global, csi, test_acc")
        if not any(name in (r.get("metrics") or {}) for r in records):
            print(f"warning: no stored run has a metric {name} yet, so every selected run lacks it "
                  f"(a new metric, or a misspelt one)", file=sys.stderr)
    return sorted((r for r in records if admits(r)), key=lambda r: r["run_id"])


def _reevaluate(store, args) -> int:
    """`lrbook reevaluate`: one line per selected run; exit 0 when every run with metrics was updated
    (or had nothing to add), 3 when some had no saved weights."""
    from .checkpoint import checkpoint_dir, weights_path
    from .experiment import reevaluate_from_curves, reevaluate_run

    chosen = [r for r in _selected(store.records(), args) if r["status"] != "diverged"]
    if not chosen:
        print("no stored run (with metrics) matches these filters")
        return 0
    if args.from_curves:
        added = 0
        for r in chosen:
            # the file as it is (not upgraded in memory): only the new metrics are added to it
            r = json.loads(store.path(r["run_id"]).read_text())
            new = reevaluate_from_curves(r, store)
            keys = sorted(set(new["metrics"]) - set(r["metrics"]))
            added += bool(keys)
            print(f"{r['run_id']}: {'added ' + ', '.join(keys) if keys else 'nothing to add'}")
        print(f"{added} of {len(chosen)} records updated from their stored curves")
        return 0
    if args.retrain and args.from_curves:
        raise ConfigError("--retrain and --from-curves exclude each other: choose one")
    _check_device(args.device)
    no_weights = [r for r in chosen if not weights_path(r["run_id"], store.root).is_file()]
    if args.retrain:
        from .experiment import (RetrainRefused, retrain_for_weights, retrain_setting_changes,
                                 stored_cpu_capability, stored_threads)

        for r in list(no_weights):
            try:
                diffs = retrain_for_weights(r, store, data_root=args.data_root, device=args.device)
            except RetrainRefused as why:
                print(f"{r['run_id']}: not retrained: {why}", file=sys.stderr)
                continue
            if diffs:
                hints = retrain_setting_changes(r, args.device)
                if stored_threads(r) is not None and stored_cpu_capability(r) is None:
                    hints.append("the record does not say which of PyTorch's CPU kernels trained it: try again "
                                 "with ATEN_CPU_CAPABILITY=avx2, avx512 or default set")
                print(f"{r['run_id']}: retrain did not reproduce the record, weights not kept: "
                      f"{'; '.join(diffs[:5])}{' ...' if len(diffs) > 5 else ''}"
                      f"{' (' + '; '.join(hints) + ')' if hints else ''}", file=sys.stderr)
            else:
                no_weights.remove(r)
                print(f"{r['run_id']}: retrained, record reproduced, weights kept")
    skip = {r["run_id"] for r in no_weights}
    done = 0
    for r in chosen:
        if r["run_id"] in skip:
            continue
        reevaluate_run(r, store, device=args.device, data_root=args.data_root)
        done += 1
        c = r["config"]
        print(f"{r['run_id']}: re-evaluated ({c['dataset']} {c['model']} lr={c['lr']:g} seed={c['seed']})")
    print(f"{done} of {len(chosen)} runs re-evaluated from their weights in {checkpoint_dir(store.root)}")
    if no_weights:
        print(f"skipped {len(no_weights)} runs without saved weights (trained before weights were kept, or "
              f"elsewhere; `--retrain` retrains them as they were trained, `--from-curves` adds what their stored "
              f"curves allow): "
              f"{', '.join(r['run_id'] for r in no_weights)}", file=sys.stderr)
        return INCOMPLETE
    return 0


def _check_store(store, clean: bool) -> int:
    """`lrbook status --check` / `--clean`: one line per problem; exit 1 if a bad record remains."""
    if clean:
        for path in store.clean(min_age_s=60):
            print(f"removed {path.name}")
    problems = store.check()
    for line in problems:
        print(line)
    bad = len(store.bad_records())
    print(f"{len(store)} valid records, {bad} bad, {len(problems) - bad} stale claims in {store.runs}")
    return 1 if bad else 0


def _check_device(device: str) -> None:
    from .train import resolve_device

    try:
        resolve_device(device)
    except RuntimeError as e:  # no GPU, or a device name torch does not know
        raise ConfigError(f"--device {device}: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
