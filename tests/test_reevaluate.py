"""`python -m lrbook reevaluate` (issue 15, part 2): stored runs' metrics recomputed from their saved
weights, or the prunability readings their stored curves allow, without retraining."""
from __future__ import annotations

import json

import pytest

from lrbook.__main__ import INCOMPLETE, USER_ERROR, main
from lrbook.checkpoint import checkpoint_dir, weights_path
from lrbook.config import make_config
from lrbook.experiment import reevaluate_from_curves, run_experiment
from lrbook.metrics import METRIC_VERSIONS
from lrbook.store import ResultStore


@pytest.fixture
def two_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("LRBOOK_CHECKPOINTS", raising=False)
    store = ResultStore(tmp_path / "store")
    cfgs = [make_config("moon_star", lr=lr, scale="smoke", max_epochs=3) for lr in (0.05, 0.2)]
    return store, cfgs, [run_experiment(c, store=store) for c in cfgs]


def test_reevaluate_recomputes_metrics_from_saved_weights(two_runs, capsys):
    store, (a, b), (rec_a, rec_b) = two_runs
    assert weights_path(a.run_id, store.root).is_file() and checkpoint_dir(store.root) == store.root.resolve() / "checkpoints"
    # an older record: one metric missing, one computed by an older definition
    old = json.loads(store.path(a.run_id).read_text())
    del old["metrics"]["prunability_global"]
    old["metrics"]["csi"] = -1.0
    store.put(old)
    assert main(["--store", str(store.root), "reevaluate", "--lr", "0.05", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"{a.run_id}: re-evaluated" in out and b.run_id not in out.split("\n1 of")[0]
    new = store.get(a.run_id)
    assert new["metrics"]["csi"] == rec_a["metrics"]["csi"]
    assert new["metrics"]["prunability_global"] == rec_a["metrics"]["prunability_global"]
    assert new["metrics"]["max_bc_loss_ratio"] == rec_a["metrics"]["max_bc_loss_ratio"], "training metrics kept"
    assert new["metric_versions"]["prunability_global"] == f"pruning/{METRIC_VERSIONS['pruning']}"
    assert "max_bc_loss_ratio" not in new["metric_versions"]
    assert new["provenance"]["reevaluated"]["from"] == "weights"
    assert store.get(b.run_id) == json.loads(store.path(b.run_id).read_text()), "not selected: untouched"


def test_missing_selects_only_runs_that_lack_the_metric_or_hold_an_older_version(two_runs, capsys):
    """`--missing prunability_global`: first the run whose record lacks it, then the run whose value an
    older pruning definition computed; a run whose value is current is never re-evaluated."""
    store, (a, b), _ = two_runs
    old = json.loads(store.path(a.run_id).read_text())
    del old["metrics"]["prunability_global"]
    store.put(old)
    diverged = make_config("moon_star", lr=50.0, scale="smoke", max_epochs=3)  # its metrics are null
    store.put(old | {"run_id": diverged.run_id, "config": diverged.to_dict(), "status": "diverged", "metrics": None})
    b_before = store.path(b.run_id).read_text()
    argv = ["--store", str(store.root), "reevaluate", "--missing", "prunability_global", "--device", "cpu"]
    assert main(argv) == 0
    assert f"{a.run_id}: re-evaluated" in capsys.readouterr().out
    assert store.path(b.run_id).read_text() == b_before and "prunability_global" in store.get(a.run_id)["metrics"]
    older = json.loads(b_before)
    older["metric_versions"]["prunability_global"] = f"pruning/{METRIC_VERSIONS['pruning'] - 1}"
    store.put(older)
    a_after = store.path(a.run_id).read_text()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{b.run_id}: re-evaluated" in out and a.run_id not in out and store.path(a.run_id).read_text() == a_after
    assert main(argv) == 0 and "no stored run (with metrics) matches" in capsys.readouterr().out
    assert main(argv[:4] + ["pruneability_global"]) == USER_ERROR  # a typo: nothing selected
    assert "--missing pruneability_global: not a metric" in capsys.readouterr().err


def test_runs_without_weights_are_listed_and_skipped(two_runs, capsys):
    store, (a, b), _ = two_runs
    weights_path(b.run_id, store.root).unlink()
    before = store.path(b.run_id).read_text()
    assert main(["--store", str(store.root), "reevaluate", "--dataset", "moon_star", "--device", "cpu"]) == INCOMPLETE
    captured = capsys.readouterr()
    assert f"{a.run_id}: re-evaluated" in captured.out and "1 of 2 runs re-evaluated" in captured.out
    assert "skipped 1 runs without saved weights" in captured.err and b.run_id in captured.err
    assert store.path(b.run_id).read_text() == before


def test_from_curves_adds_only_what_the_stored_curves_allow(two_runs, capsys):
    """A record of before the candidates: chance-corrected and half-grid readings are computed from
    its per-layer curve; the global ones need the weights; existing values are left as they are."""
    store, (a, _), _ = two_runs
    stored = store.get(a.run_id)
    old = json.loads(store.path(a.run_id).read_text())
    for key in [k for k in old["metrics"] if k.startswith("prunability") and k not in ("prunability", "prunability_magnitude")]:
        del old["metrics"][key]
    del old["curves"]["prune_structured_global"]
    old.pop("metric_versions", None)
    store.put(old)
    assert main(["--store", str(store.root), "reevaluate", "--run-id", a.run_id, "--from-curves"]) == 0
    assert "added prunability_chance_corrected, prunability_to_half" in capsys.readouterr().out
    new = store.get(a.run_id)
    for key in ("prunability_chance_corrected", "prunability_to_half"):
        assert new["metrics"][key] == stored["metrics"][key]
    assert "prunability_global" not in new["metrics"]
    assert set(new["metric_versions"]) == {"prunability_chance_corrected", "prunability_to_half"}
    assert reevaluate_from_curves(new) is new, "nothing more to add"


def test_retrain_gives_a_run_its_weights_when_it_reproduces_the_record(two_runs, capsys):
    """`--retrain`: a run stored without weights (trained before they were kept) is retrained on the
    CPU; the retrain reproduces the record, so its weights are kept and the run is re-evaluated."""
    import torch

    store, (_, b), (_, rec_b) = two_runs
    original = torch.load(weights_path(b.run_id, store.root), weights_only=False)["state_dict"]
    weights_path(b.run_id, store.root).unlink()
    old = json.loads(store.path(b.run_id).read_text())
    del old["metrics"]["prunability_global"]  # a record of before the global reading
    store.put(old)
    assert main(["--store", str(store.root), "reevaluate", "--lr", "0.2", "--retrain", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"{b.run_id}: retrained, record reproduced, weights kept" in out and f"{b.run_id}: re-evaluated" in out
    kept = torch.load(weights_path(b.run_id, store.root), weights_only=False)["state_dict"]
    assert all(torch.equal(kept[k], original[k]) for k in original)
    assert store.get(b.run_id)["metrics"]["prunability_global"] == rec_b["metrics"]["prunability_global"]


def test_a_retrain_that_differs_from_the_record_keeps_no_weights(two_runs, capsys):
    store, (_, b), _ = two_runs
    weights_path(b.run_id, store.root).unlink()
    old = json.loads(store.path(b.run_id).read_text())
    old["metrics"]["test_acc"] += 0.01  # as if trained by other code or on another machine
    del old["provenance"]["numerics"]["cpu_capability"]  # a record of before the field
    store.put(old)
    before = store.path(b.run_id).read_text()
    assert main(["--store", str(store.root), "reevaluate", "--lr", "0.2", "--retrain", "--device", "cpu"]) == INCOMPLETE
    err = capsys.readouterr().err
    assert "retrain did not reproduce the record, weights not kept: metrics.test_acc" in err
    assert "does not say which of PyTorch's CPU kernels trained it: try again with ATEN_CPU_CAPABILITY=avx2" in err
    assert not weights_path(b.run_id, store.root).exists()
    assert store.path(b.run_id).read_text() == before


def test_reproduction_differences_and_threads_on_hand_made_records():
    from lrbook.experiment import reproduction_differences, stored_cpu_capability, stored_threads

    stored = {"status": "converged", "epochs": 7, "metrics": {"a": 0.5, "b": float("nan"), "only_old": 1.0},
              "curves": {"per_epoch": {"loss": [1.0, 0.5]}}}
    same = {"status": "converged", "epochs": 7, "metrics": {"a": 0.5 * (1 + 1e-9), "b": float("nan"), "new": 2.0},
            "curves": {"per_epoch": {"loss": [1.0, 0.5]}}}
    assert reproduction_differences(stored, same) == []
    other = {"status": "converged", "epochs": 8, "metrics": {"a": 0.5001, "b": 0.0},
             "curves": {"per_epoch": {"loss": [1.0, 0.5, 0.4]}}}
    assert reproduction_differences(stored, other) == ["epochs: 7 -> 8", "metrics.a", "metrics.b", "curves.per_epoch"]
    assert stored_threads({"provenance": {"device": "cpu (x86_64, 1 threads)"}}) == 1
    assert stored_threads({"provenance": {"device": "NVIDIA H100 80GB HBM3"}}) is None
    assert stored_cpu_capability({"provenance": {"numerics": {"cpu_capability": "AVX2"}}}) == "AVX2"
    assert stored_cpu_capability({"provenance": {"numerics": {"cudnn_benchmark": False}}}) is None


def _lrbook_process(code: str, capability: str, tmp_path):
    """Run `code` in a new Python process whose PyTorch uses the `capability` CPU kernels."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LRBOOK_CHECKPOINTS"} | {"ATEN_CPU_CAPABILITY": capability}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_retrain_uses_the_cpu_kernels_the_record_names(tmp_path):
    """PyTorch's CPU kernels (AVX2, AVX512, ...) change a run's numbers, so a record names them and
    `--retrain` refuses to retrain under others, saying which to set; a process started with the
    named kernels (ATEN_CPU_CAPABILITY) reproduces the run and keeps its weights."""
    import torch

    from lrbook.experiment import RetrainRefused, retrain_for_weights

    store = ResultStore(tmp_path / "store")
    train = (f"from lrbook.config import make_config; from lrbook.experiment import run_experiment; "
             f"from lrbook.store import ResultStore; "
             f"print(run_experiment(make_config('moon_star', lr=0.2, scale='smoke', max_epochs=3), "
             f"store=ResultStore({str(store.root)!r}))['run_id'])")
    proc = _lrbook_process(train, "default", tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.split()[-1]
    record = store.get(run_id)
    assert record["provenance"]["numerics"]["cpu_capability"] == "DEFAULT"
    weights_path(run_id, store.root).unlink()
    here = torch.backends.cpu.get_cpu_capability()
    if here != "DEFAULT":  # this process runs other kernels: refused at once, nothing trained or kept
        with pytest.raises(RetrainRefused, match=f"trained with PyTorch's DEFAULT CPU kernels, this process uses "
                           f"{here}: run it again with ATEN_CPU_CAPABILITY=default set"):
            retrain_for_weights(record, store)
        assert not weights_path(run_id, store.root).exists()
    retrain = (f"from lrbook.__main__ import main; "
               f"raise SystemExit(main(['--store', {str(store.root)!r}, 'reevaluate', '--retrain', '--device', 'cpu']))")
    proc = _lrbook_process(retrain, "default", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{run_id}: retrained, record reproduced, weights kept" in proc.stdout
    assert store.get(run_id)["provenance"]["reevaluated"]["numerics"]["cpu_capability"] == "DEFAULT"


def _as_if_gpu_trained(store, run_id, **numerics) -> dict:
    record = json.loads(store.path(run_id).read_text())
    record["provenance"]["device"] = "NVIDIA H100 80GB HBM3"
    record["provenance"]["numerics"] = numerics
    store.put(record)
    weights_path(run_id, store.root).unlink()
    return record


def test_a_gpu_run_is_not_retrained_off_a_gpu(two_runs, capsys):
    store, (_, b), _ = two_runs
    _as_if_gpu_trained(store, b.run_id)
    before = store.path(b.run_id).read_text()
    assert main(["--store", str(store.root), "reevaluate", "--lr", "0.2", "--retrain", "--device", "cpu"]) == INCOMPLETE
    err = capsys.readouterr().err
    assert (f"{b.run_id}: not retrained: trained on NVIDIA H100 80GB HBM3: retrain it on a GPU (--device cuda); "
            "a CPU retrain would not reproduce it") in err
    assert not weights_path(b.run_id, store.root).exists() and store.path(b.run_id).read_text() == before


def test_a_run_resumed_on_another_device_is_not_retrained(two_runs, capsys):
    """A run whose segments (one per process that trained part of it) ran on different devices or
    CPU kernels: no single retrain reproduces it, so none is tried."""
    store, (_, b), _ = two_runs
    record = json.loads(store.path(b.run_id).read_text())
    prov = record["provenance"]
    record["provenance"]["segments"] = [
        {"from_epoch": 0, "to_epoch": 1},  # saved before segments were kept: unknown, not counted
        {"from_epoch": 1, "to_epoch": 2, "device": "NVIDIA H100 80GB HBM3", "numerics": {"cpu_capability": "AVX2"}},
        {"from_epoch": 2, "to_epoch": 3, "device": prov["device"], "numerics": prov["numerics"]}]
    store.put(record)
    weights_path(b.run_id, store.root).unlink()
    before = store.path(b.run_id).read_text()
    assert main(["--store", str(store.root), "reevaluate", "--lr", "0.2", "--retrain", "--device", "cpu"]) == INCOMPLETE
    err = capsys.readouterr().err
    assert (f"{b.run_id}: not retrained: trained in segments on different devices or CPU kernels (NVIDIA H100 80GB "
            f"HBM3, AVX2 kernels; {prov['device']}, {prov['numerics']['cpu_capability']} kernels): no single "
            "retrain reproduces it") in err
    assert not weights_path(b.run_id, store.root).exists() and store.path(b.run_id).read_text() == before


def test_a_gpu_run_is_retrained_with_the_numerics_its_record_names(two_runs, monkeypatch):
    """On a GPU, a GPU-trained run is retrained with the cuDNN / TF32 settings its record names (the
    unnamed ones at PyTorch's defaults, which every run before the field used), restored afterwards.
    The GPU is stood in for: the retrain runs on the CPU, where these settings change nothing, so it
    reproduces the record and the weights are kept."""
    import torch

    import lrbook.experiment as ex

    store, (_, b), _ = two_runs
    original = torch.load(weights_path(b.run_id, store.root), weights_only=False)["state_dict"]
    record = _as_if_gpu_trained(store, b.run_id, cudnn_benchmark=True, cudnn_allow_tf32=False)
    seen, real = {}, ex.run_experiment

    def on_the_gpu(cfg, store, device, **kw):
        seen.update(device=str(device), cudnn_benchmark=torch.backends.cudnn.benchmark,
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
                    float32_matmul_precision=torch.get_float32_matmul_precision())
        return real(cfg, store, device="cpu", **kw)

    monkeypatch.setattr(ex, "resolve_device", lambda device: torch.device("cuda" if device == "cuda" else "cpu"))
    monkeypatch.setattr(ex, "run_experiment", on_the_gpu)
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32)
    assert ex.retrain_for_weights(record, store, device="cuda") == []
    assert seen == {"device": "cuda", "cudnn_benchmark": True, "cudnn_allow_tf32": False, "matmul_allow_tf32": False,
                    "float32_matmul_precision": "highest"}
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32) == before
    kept = torch.load(weights_path(b.run_id, store.root), weights_only=False)["state_dict"]
    assert all(torch.equal(kept[k], original[k]) for k in original)


def test_a_failed_retrain_says_what_changed_since_the_run():
    """The reasons a retrain may not reproduce a run, among what its record names."""
    import torch

    from lrbook.experiment import retrain_setting_changes

    now = torch.__version__
    cpu_run = {"provenance": {"device": "cpu (x86_64, 1 threads)", "versions": {"torch": "2.11.0+cu130"}}}
    assert retrain_setting_changes(cpu_run, "cpu") == [f"torch 2.11.0+cu130 then, {now} now"]
    cpu_run["provenance"]["versions"]["torch"] = now
    assert retrain_setting_changes(cpu_run, "cpu") == []
    gpu_run = {"provenance": {"device": "NVIDIA H100 80GB HBM3", "versions": {"torch": now}}}
    [change] = retrain_setting_changes(gpu_run, "cpu")
    assert change.startswith("trained on NVIDIA H100 80GB HBM3, retrained on cpu (")


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_run_retrained_on_its_gpu_reproduces(tmp_path, monkeypatch, capsys):
    """On a GPU: a run trained there, stored without weights, is retrained on it and reproduced."""
    monkeypatch.delenv("LRBOOK_CHECKPOINTS", raising=False)
    store = ResultStore(tmp_path / "store")
    cfg = make_config("moon_star", lr=0.2, scale="smoke", max_epochs=3)
    run_experiment(cfg, store=store, device="cuda")
    weights_path(cfg.run_id, store.root).unlink()
    assert main(["--store", str(store.root), "reevaluate", "--retrain", "--device", "cuda"]) == 0
    assert f"{cfg.run_id}: retrained, record reproduced, weights kept" in capsys.readouterr().out
