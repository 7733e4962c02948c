"""Do lrbook's compiled training paths train the same model as eager fp32? (issue "Fast sweeps")

Trains the same seed on the same data with `lrbook.train.train` three ways: eager, `compile=True`
and `compile=True, compile_mode="reduce-overhead"` (CUDA graphs on a GPU), then prints each run's
loss and accuracy curves and the weight difference to eager, relative to eager's total update.
`--fp64` adds an eager float64 run of the same model as the yardstick: how far eager fp32 itself is
from exact arithmetic. Run from the repository root:

    python3 benchmarks/compile_check.py --device cuda            # FCN 3 epochs, ResNet18 1 and 3 epochs
    python3 benchmarks/compile_check.py --device cuda --n 100    # ResNet18 after 1 and 2 SGD steps
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lrbook.config import make_config  # noqa: E402
from lrbook.data import SpuriousDataset  # noqa: E402
from lrbook.models import build_model  # noqa: E402
from lrbook.train import train  # noqa: E402

WAYS = (("eager", {}), ("compile", dict(compile=True)), ("graphs", dict(compile=True, compile_mode="reduce-overhead")))


def check_data(n: int, device: str) -> SpuriousDataset:
    """n random 3x28x28 images with random labels and a small label-coloured patch, so accuracy moves."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    x[torch.arange(n), y % 3, :4, :4] += 2.0
    t = min(n, 500)
    x, y = x.to(device), y.to(device)
    return SpuriousDataset("check", x, y, y.clone(), x[:t], y[:t], y[:t].clone(), num_classes=10)


def trained_weights(model_name, data, cfg, device, dtype=torch.float32):
    torch.manual_seed(0)
    model = build_model(model_name, data.input_shape, data.num_classes).to(device, dtype)
    w0 = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    if dtype != torch.float32:
        data = dataclasses.replace(data, x_train=data.x_train.to(dtype))
    out = train(model, data, cfg, device=device)
    w = torch.cat([p.detach().flatten() for p in model.parameters()])
    return out, w.float(), (w - w0).float()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--n", type=int, default=2000, help="training images (100 = one SGD step per epoch)")
    p.add_argument("--fp64", action="store_true", help="also train eager float64 as the yardstick")
    args = p.parse_args(argv)
    dev, n = args.device, args.n
    data = check_data(n, dev)
    print(torch.__version__, torch.cuda.get_device_name() if dev == "cuda" else "cpu")
    cases = (("fcn", 3, 0.1), ("resnet18", 1, 0.05), ("resnet18", 3, 0.05)) if n > 100 else \
        (("resnet18", 1, 0.05), ("resnet18", 2, 0.05))
    for model_name, epochs, lr in cases:
        cfg = make_config("colored_mnist", model_name, lr=lr, scale="smoke", max_epochs=epochs, attribution_n=0)
        res = {}
        for label, over in WAYS + ((("eager fp64", {}),) if args.fp64 else ()):
            t = time.perf_counter()
            dtype = torch.float64 if label.endswith("fp64") else torch.float32
            out, w, update = trained_weights(model_name, data, dataclasses.replace(cfg, **over), dev, dtype)
            if dev == "cuda":
                torch.cuda.synchronize()
            res[label] = (w, update)
            print(f"{model_name:9s} {epochs} ep {label:8s} {time.perf_counter() - t:6.1f}s steps={out.steps} "
                  f"loss={[round(v, 5) for v in out.curves['loss']]} "
                  f"train_acc={[round(v, 4) for v in out.curves['train_acc']]}")
        for label in res:
            if label != "eager":
                d = res[label][0] - res["eager"][0]
                print(f"   {label} vs eager: max |dw| = {d.abs().max().item():.3g}, "
                      f"|dw|/|update| = {(d.norm() / res['eager'][1].norm()).item():.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
