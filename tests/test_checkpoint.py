"""Training checkpoints (issue 15, part 3): a run stopped after an epoch and started again stores
the same record, bit for bit, as one that was never stopped; final weights are kept."""
from __future__ import annotations

import json

import pytest
import torch

from lrbook.checkpoint import TrainingCheckpoint, checkpoint_dir, load_weights
from lrbook.config import make_config
from lrbook.experiment import run_experiment
from lrbook.store import ResultStore


class Killed(BaseException):
    """Stands for the process being killed right after a checkpoint was written."""


def _stop_after(monkeypatch, epoch: int):
    save = TrainingCheckpoint.save

    def save_then_stop(self, state):
        path = save(self, state)
        if state["epoch"] == epoch:
            raise Killed()
        return path

    monkeypatch.setattr(TrainingCheckpoint, "save", save_then_stop)


def _same_run(a: dict, b: dict) -> None:
    """Equal to the last bit (JSON of floats is their exact repr; NaN equals NaN there)."""
    for key in ("status", "epochs", "steps", "metrics", "curves", "attribution_trace", "artefacts"):
        assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True), key


def _interrupted_and_resumed(cfg, tmp_path, monkeypatch, stop_epoch, **kw):
    whole = ResultStore(tmp_path / "whole")
    resumed = ResultStore(tmp_path / "resumed")
    reference = run_experiment(cfg, store=whole, checkpoint_epochs=2, **kw)
    with monkeypatch.context() as m:
        _stop_after(m, stop_epoch)
        with pytest.raises(Killed):
            run_experiment(cfg, store=resumed, checkpoint_epochs=2, **kw)
    state = TrainingCheckpoint(cfg, checkpoint_dir(resumed.root)).load()
    assert state is not None and state["epoch"] == stop_epoch and not resumed.has(cfg.run_id)
    record = run_experiment(cfg, store=resumed, checkpoint_epochs=2, **kw)
    assert not TrainingCheckpoint(cfg, checkpoint_dir(resumed.root)).path.exists(), "removed once stored"
    return whole, resumed, reference, record


def test_a_stopped_and_resumed_run_stores_the_same_record(tmp_path, monkeypatch):
    """Parity, FCN, smoke scale, with attribution probes at powers-of-two steps: stopped after
    epoch 4 of 8 (its state saved every 2 epochs), then resumed."""
    cfg = make_config("parity", lr=0.01, scale="smoke", max_epochs=8, dataset_params=dict(n_train=400))
    whole, resumed, reference, record = _interrupted_and_resumed(cfg, tmp_path, monkeypatch, stop_epoch=4)
    assert reference["epochs"] == 8 and reference["status"] == "max_epochs", "the run outlives the stop"
    assert len(reference["attribution_trace"]) > 4
    _same_run(reference, record)
    assert ResultStore(resumed.root).get(cfg.run_id)["metrics"] == whole.get(cfg.run_id)["metrics"]
    a, b = load_weights(cfg.run_id, whole.root)["state_dict"], load_weights(cfg.run_id, resumed.root)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The record names both processes that trained it; `started` stays the last one's.
    assert "segments" not in reference["provenance"]
    prov = record["provenance"]
    first, last = prov["segments"]
    assert (first["from_epoch"], first["to_epoch"], last["from_epoch"], last["to_epoch"]) == (0, 4, 4, 8)
    assert first["started"] <= first["until"] <= last["started"] == prov["started"]
    assert last["until"] == prov["finished"]
    for seg in (first, last):
        assert seg["device"] == prov["device"] and seg["git_commit"] == prov["git_commit"]
        assert seg["numerics"] == prov["numerics"] and seg["torch"] == torch.__version__


@pytest.mark.mnist
def test_a_resumed_run_keeps_its_unit_trace(tmp_path, monkeypatch, mnist_root):
    """Colored MNIST, FCN, smoke, with a unit trace (Fig. 18) and attribution probes: the trace
    arrays of the resumed run equal the uninterrupted run's."""
    import numpy as np

    cfg = make_config("colored_mnist", "fcn", lr=0.01, scale="smoke", max_epochs=4, unit_trace_every=3,
                      attribution_n=8, dataset_params=dict(n_train=300, n_test=200))
    whole, resumed, reference, record = _interrupted_and_resumed(cfg, tmp_path, monkeypatch, stop_epoch=2,
                                                                 data_root=str(mnist_root))
    _same_run(reference, record)
    x, y = whole.get_artefact(cfg.run_id, "unit_trace"), resumed.get_artefact(cfg.run_id, "unit_trace")
    assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k], equal_nan=True) for k in x)


def test_a_record_names_the_commit_its_run_started_at(tmp_path, monkeypatch):
    """The checkout may move on while a long run trains: the record names the code it started with."""
    import lrbook.experiment as experiment

    commits = iter(["start", "later", "later", "later"])
    real = experiment.provenance
    monkeypatch.setattr(experiment, "provenance", lambda device: {**real(device), "git_commit": next(commits)})
    cfg = make_config("parity", lr=0.01, scale="smoke", max_epochs=2, dataset_params=dict(n_train=200))
    record = run_experiment(cfg, store=ResultStore(tmp_path), checkpoint_epochs=1)
    assert record["provenance"]["git_commit"] == "start"
    assert ResultStore(tmp_path).get(cfg.run_id)["provenance"]["git_commit"] == "start"


def test_a_training_state_of_another_config_is_refused(tmp_path):
    a = make_config("parity", lr=0.01, scale="smoke")
    b = make_config("parity", lr=0.02, scale="smoke")
    TrainingCheckpoint(a, tmp_path).save({"epoch": 1})
    (tmp_path / f"{a.run_id}.training.pt").rename(tmp_path / f"{b.run_id}.training.pt")
    with pytest.raises(ValueError, match="another config"):
        TrainingCheckpoint(b, tmp_path).load()


def test_each_saved_state_carries_the_segments_so_far(tmp_path):
    """Three processes train one run: each saved state names the earlier processes and this one;
    a state saved before segments were kept counts as one segment of unknown provenance."""
    cfg = make_config("parity", lr=0.01, scale="smoke")
    TrainingCheckpoint(cfg, tmp_path, segment={"device": "A"}).save({"epoch": 5})
    second = TrainingCheckpoint(cfg, tmp_path, segment={"device": "B"})
    second.load()
    second.save({"epoch": 10})
    third = TrainingCheckpoint(cfg, tmp_path, segment={"device": "C"})
    assert third.load()["epoch"] == 10
    spans = [(s["from_epoch"], s["to_epoch"], s["device"]) for s in third.segments(12)]
    assert spans == [(0, 5, "A"), (5, 10, "B"), (10, 12, "C")]

    state = torch.load(third.path, weights_only=False)
    del state["segments"]
    torch.save(state, third.path)
    legacy = TrainingCheckpoint(cfg, tmp_path, segment={"device": "D"})
    legacy.load()
    assert [{k: s[k] for k in ("from_epoch", "to_epoch") } | ({"device": s["device"]} if "device" in s else {})
            for s in legacy.segments(11)] == [{"from_epoch": 0, "to_epoch": 10},
                                              {"from_epoch": 10, "to_epoch": 11, "device": "D"}]


def test_loading_removes_what_a_killed_writer_left(tmp_path):
    cfg = make_config("parity", lr=0.01, scale="smoke")
    leftovers = [tmp_path / f".{cfg.run_id}.training-abc.tmp", tmp_path / f".{cfg.run_id}-def.tmp"]
    other = tmp_path / ".0123456789abcdef-xyz.tmp"
    for path in (*leftovers, other):
        path.write_bytes(b"partial")
    assert TrainingCheckpoint(cfg, tmp_path).load() is None
    assert not any(p.exists() for p in leftovers) and other.exists(), "another run's file is not ours to remove"


def test_checkpoint_folder(tmp_path, monkeypatch):
    """$LRBOOK_CHECKPOINTS wins; else `checkpoints/` inside a store that is not the checkout's."""
    monkeypatch.delenv("LRBOOK_CHECKPOINTS", raising=False)
    assert checkpoint_dir(tmp_path / "store") == (tmp_path / "store").resolve() / "checkpoints"
    monkeypatch.setenv("LRBOOK_CHECKPOINTS", str(tmp_path / "elsewhere"))
    assert checkpoint_dir(tmp_path / "store") == tmp_path / "elsewhere"
