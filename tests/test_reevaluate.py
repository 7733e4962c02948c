"""`python -m lrbook reevaluate` (issue 15, part 2): stored runs' metrics recomputed from their saved
weights, or the prunability readings their stored curves allow, without retraining."""
from __future__ import annotations

import json

import pytest

from lrbook.__main__ import INCOMPLETE, main
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
