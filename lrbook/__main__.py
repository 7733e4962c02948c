"""Command line: `python -m lrbook status [--json]`, `python -m lrbook sweep ...`."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lrbook", description=__doc__)
    parser.add_argument("--store", help="results store (default: $LRBOOK_STORE or the checkout's results/)")
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="what of the paper is reproduced")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sw = sub.add_parser("sweep", help="train the missing runs of an LR x seed grid")
    sw.add_argument("dataset")
    sw.add_argument("--model", default="fcn")
    sw.add_argument("--lrs", type=float, nargs="+", required=True)
    sw.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    sw.add_argument("--scale", default="cpu")
    sw.add_argument("--workers", type=int, default=1)
    sw.add_argument("--device", default="auto")
    sw.add_argument("--data-root", default=None)
    sw.add_argument("--pack", type=int, default=0,
                    help="train up to N models of the grid packed in one process (lrbook.packed; GPU)")
    sw.add_argument("--ray", metavar="ADDRESS", default=None,
                    help="run on Ray: 'local' starts local Ray, else a cluster address (lrbook.ray_sweep)")
    sw.add_argument("--gpus-per-run", type=float, default=0.0, help="with --ray: GPU fraction per run")
    fast = sw.add_argument_group("speed options (recorded in each run's config; fp32 eager is the paper's path)")
    fast.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast")
    fast.add_argument("--channels-last", action="store_true", help="channels_last inputs and conv weights")
    fast.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                      help="torch.compile the forward pass; MODE 'reduce-overhead' replays CUDA graphs")
    args = parser.parse_args(argv)

    from .config import grid
    from .store import ResultStore

    store = ResultStore(args.store)
    if args.command == "status":
        from .status import scorecard, status_table

        table = status_table(store)
        if args.json:
            card = scorecard(store)
            print(json.dumps({"items": json.loads(table.to_json(orient="records")),
                              "scorecard": json.loads(card.to_json(orient="records")) if len(card) else []},
                             indent=1))
        else:
            import pandas as pd

            with pd.option_context("display.max_colwidth", 60, "display.width", 200):
                print(table.drop(columns=["shows"]).to_string(index=False))
        return 0
    if args.command == "sweep":
        speed = dict(precision=args.precision, channels_last=args.channels_last, compile=args.compile is not None,
                     compile_mode=args.compile or "default")
        configs = grid(args.dataset, args.model, lrs=args.lrs, seeds=args.seeds, scale=args.scale, **speed)
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
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
