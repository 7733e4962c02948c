"""Streamed DDP training (`lrbook.distributed`) on the CPU: two gloo processes launched by torchrun on
a tiny ImageFolder written here give the record of one process, within a stated tolerance.

Tolerance: 1e-5 absolute on curves, metrics and weights. Not exact, because the two runs sum the same
numbers in a different order: DDP all-reduces the per-process mean gradients (a sum of two halves, then
/ 2) where one process averages the whole batch at once, and the epoch sums are all-reduced likewise;
float32 rounding then differs in the last bits (observed: below 1e-7)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from lrbook import distributed
from lrbook.checkpoint import checkpoint_dir
from lrbook.config import ConfigError, make_config
from lrbook.distributed import check_streamable, local_batch_size, train_streamed
from lrbook.store import ResultStore
from test_imagenet_data import write_image_folder

TOLERANCE = 1e-5
SETTINGS = dict(lr=0.05, seed=0, scale="smoke", dataset_params={"image_size": 16}, model_params={"width": 64},
                max_epochs=3, batch_size=4, eval_n=6)
CLI_SETTINGS = ["--dataset", "imagenet", "--model", "fcn", "--lr", "0.05", "--seed", "0", "--scale", "smoke",
                "--image-size", "16", "--model-param", "width=64", "--max-epochs", "3", "--batch-size", "4",
                "--eval-n", "6"]


def tiny_config():
    return make_config("imagenet", "fcn", **SETTINGS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(store: ResultStore, run_id: str) -> dict:
    return torch.load(checkpoint_dir(store.root) / f"{run_id}.pt", map_location="cpu")["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny run trained once by two torchrun processes (gloo) and once in this process."""
    tmp = tmp_path_factory.mktemp("streamed")
    data = write_image_folder(tmp / "data")
    one, two = ResultStore(tmp / "one"), ResultStore(tmp / "two")
    env = {k: v for k, v in os.environ.items() if k not in ("LRBOOK_CHECKPOINTS", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={_free_port()}", "-m", "lrbook.distributed", *CLI_SETTINGS, "--data-root", str(data),
               "--store", str(two.root), "--workers", "0", "--device", "cpu", "--quiet", "--checkpoint-every", "1"]
    launched = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:  # the single-process run trains meanwhile
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("LRBOOK_CHECKPOINTS", raising=False)
            train_streamed(tiny_config(), one, data_root=data, device="cpu", num_workers=0, checkpoint_epochs=1)
        output, _ = launched.communicate(timeout=300)
    finally:
        launched.kill()
    assert launched.returncode == 0, output
    run_id = tiny_config().run_id
    return dict(data=data, one=one, two=two, output=output, run_id=run_id,
                record_one=one.get(run_id), record_two=two.get(run_id))


def test_batch_size_must_split_evenly_over_processes():
    assert local_batch_size(16, 1) == 16 and local_batch_size(16, 2) == 8 and local_batch_size(16, 16) == 1
    with pytest.raises(ConfigError, match="cannot be split evenly over 3 processes") as err:
        local_batch_size(16, 3)
    assert "1, 2, 4, 8, 16" in str(err.value)


@pytest.mark.parametrize("n", [24, 26])
def test_two_processes_see_the_single_process_batches(n):
    """The claim of `train_streamed`'s docstring: with the sampler's interleaving, process r's k-th
    batch is perm[r::W][k*b:(k+1)*b], and the union over r is one process's k-th batch (also for the
    last, partial batch when the dataset size is a multiple of W)."""
    dataset, b, world = TensorDataset(torch.arange(n)), 2, 2

    def batches(num_replicas, rank, batch_size, epoch):
        sampler = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=7)
        sampler.set_epoch(epoch)
        return [x.tolist() for (x,) in DataLoader(dataset, batch_size=batch_size, sampler=sampler)]

    for epoch in (1, 2):
        single = batches(1, 0, b * world, epoch)
        shares = [batches(world, r, b, epoch) for r in range(world)]
        assert all(len(s) == len(single) for s in shares)
        for k, whole in enumerate(single):
            assert sorted(shares[0][k] + shares[1][k]) == sorted(whole)
        perm = sum(single, [])
        assert shares[1][0] == perm[1::world][:b]
    assert batches(1, 0, 4, 1) != batches(1, 0, 4, 2)  # a new order each epoch


def test_an_odd_dataset_size_repeats_a_sample_on_two_processes():
    """Why the docstring limits the claim: the sampler evens out the shares by repeating samples."""
    dataset = TensorDataset(torch.arange(25))
    seen = []
    for rank in range(2):
        seen += list(DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0))
    assert len(seen) == 26 and len(set(seen)) == 25


def test_settings_the_streamed_path_cannot_run_are_refused():
    for overrides in (dict(loss="focal", focal_gamma=2.0), dict(l1_penalty=1e-4),
                      dict(optimizer="asam", asam_rho=0.1)):
        with pytest.raises(ConfigError, match="not supported on the streamed path"):
            check_streamable(make_config("imagenet", "fcn", scale="smoke", **overrides))
    with pytest.raises(ConfigError, match="lrbook sweep"):
        check_streamable(make_config("mnist", "fcn", scale="smoke"))
    with pytest.raises(ConfigError, match="unknown dataset parameter"):
        check_streamable(make_config("imagenet", "fcn", scale="smoke", dataset_params={"n_train": 10}))


def test_bad_input_fails_at_once_with_exit_status_2(tmp_path, capsys, monkeypatch):
    for argv in (["--lr", "0"], ["--lr", "0.1", "--model", "vgg"], ["--lr", "0.1", "--model-param", "width"]):
        with pytest.raises(SystemExit) as exited:
            distributed.main(argv)
        assert exited.value.code == 2
    assert distributed.main(["--lr", "0.1", "--dataset", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert distributed.main(["--lr", "0.1", "--data-root", str(tmp_path), "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "ImageNet-1k not found" in err and "imagenet/train" in err and "Traceback" not in err
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert distributed.main(["--lr", "0.1", "--data-root", str(tmp_path)]) == 2  # batch 16 over 3 processes
    assert "cannot be split evenly" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing was trained or stored


def test_two_processes_give_the_single_process_record(runs):
    one, two = runs["record_one"], runs["record_two"]
    assert one["run_id"] == two["run_id"] == runs["run_id"]
    assert (one["provenance"]["world_size"], two["provenance"]["world_size"]) == (1, 2)
    assert (one["provenance"]["launcher"], two["provenance"]["launcher"]) == ("python", "torchrun")
    assert (one["provenance"]["per_process_batch_size"], two["provenance"]["per_process_batch_size"]) == (4, 2)
    assert one["num_classes"] == two["num_classes"] == 3
    assert one["dataset_size"] == two["dataset_size"] == {"train": 24, "val": 12}
    assert (one["status"], one["epochs"], one["steps"]) == (two["status"], two["epochs"], two["steps"])
    assert one["epochs"] >= 2 and one["steps"] == one["epochs"] * 6  # 24 images, global batches of 4
    for key in ("loss", "train_acc", "logit_norm"):
        a, b = one["curves"]["per_epoch"][key], two["curves"]["per_epoch"][key]
        assert len(a) == len(b) == one["epochs"]
        assert max(abs(x - y) for x, y in zip(a, b)) <= TOLERANCE, (key, a, b)
    assert one["curves"]["per_epoch"]["loss"][-1] < one["curves"]["per_epoch"]["loss"][0]  # it trained
    assert one["metrics"]["test_acc"] == two["metrics"]["test_acc"]
    assert one["metrics"].keys() == two["metrics"].keys() and "probe_test_acc" in one["metrics"]
    for name, value in one["metrics"].items():
        assert value == pytest.approx(two["metrics"][name], abs=TOLERANCE), name
    assert f"{runs['run_id']}: {two['status']}" in runs["output"] and "(2 process(es))" in runs["output"]


def test_two_processes_end_with_the_single_process_weights(runs):
    w1, w2 = _weights(runs["one"], runs["run_id"]), _weights(runs["two"], runs["run_id"])
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) <= TOLERANCE
    assert float(w1["classifier.weight"].abs().max()) > 0
    for store in (runs["one"], runs["two"]):  # the training state goes once the record is stored
        assert not (checkpoint_dir(store.root) / f"{runs['run_id']}.training.pt").exists()
        assert not store.lock_path(runs["run_id"]).exists()


def test_a_stored_run_is_returned_without_training(runs, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a stored run was trained again")

    monkeypatch.setattr(distributed, "_train_and_evaluate", no_training)
    record = train_streamed(tiny_config(), runs["one"], data_root=runs["data"], device="cpu", num_workers=0)
    assert record == runs["record_one"]


def test_a_stopped_run_resumes_and_ends_as_an_uninterrupted_one(runs, tmp_path, monkeypatch):
    monkeypatch.delenv("LRBOOK_CHECKPOINTS", raising=False)
    store, cfg = ResultStore(tmp_path / "store"), tiny_config()

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:  # stopped after training, before evaluation
        mp.setattr(distributed, "_streamed_accuracy", stop)
        with pytest.raises(KeyboardInterrupt):
            train_streamed(cfg, store, data_root=runs["data"], device="cpu", num_workers=0, checkpoint_epochs=1)
    saved = torch.load(checkpoint_dir(store.root) / f"{cfg.run_id}.training.pt", weights_only=False)
    assert saved["epoch"] == runs["record_one"]["epochs"] - 1  # the last epoch that did not end the run
    assert not store.has(cfg.run_id) and not store.lock_path(cfg.run_id).exists()

    record = store.get(train_streamed(cfg, store, data_root=runs["data"], device="cpu", num_workers=0,
                                      checkpoint_epochs=1)["run_id"])
    assert record["provenance"]["resumed_from_epoch"] == saved["epoch"]
    assert [(s["from_epoch"], s["to_epoch"]) for s in record["provenance"]["segments"]] == [
        (0, saved["epoch"]), (saved["epoch"], record["epochs"])]
    assert record["curves"]["per_epoch"] == runs["record_one"]["curves"]["per_epoch"]
    assert record["metrics"] == runs["record_one"]["metrics"]
    w_resumed, w_whole = _weights(store, cfg.run_id), _weights(runs["one"], cfg.run_id)
    assert all(torch.equal(w_resumed[k], w_whole[k]) for k in w_whole)


def test_a_sweep_trains_an_imagenet_config_on_the_streamed_path(runs, tmp_path, monkeypatch):
    """`python -m lrbook sweep imagenet ...` and the page's training cell go through the sweep core,
    which hands streamed datasets to `train_streamed` (in its own process, world size 1)."""
    from lrbook.sweep import run_sweep

    monkeypatch.delenv("LRBOOK_CHECKPOINTS", raising=False)
    store = ResultStore(tmp_path / "store")
    report = run_sweep([tiny_config()], store, device="cpu", data_root=runs["data"], progress=False)
    assert report.complete and store.has(runs["run_id"])
    record = store.get(runs["run_id"])
    assert record["provenance"]["world_size"] == 1 and record["metrics"] == runs["record_one"]["metrics"]
    assert not store.lock_path(runs["run_id"]).exists()
