"""Paper Sec. 6: the two propositions (lrbook.theory), Fig. 12's correlation table and the BA/BC loss
ratio (lrbook.mechanism), and notebook 06 against fabricated and empty stores."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrbook import make_config
from lrbook.mechanism import ba_bc_loss_ratio, ba_bc_ratio_by_lr, ba_bc_verdict, max_bc_ratio_table
from lrbook.selection import pick_lrs
from lrbook.theory import bc_loss_share, gradient_norm_shares

ROOT = Path(__file__).resolve().parents[1]


# -- Proposition 1 --------------------------------------------------------------------------------

def test_bc_loss_share_at_scale_zero_is_the_bc_fraction():
    for r in (0.01, 0.05, 0.1, 0.5):
        assert bc_loss_share(0.0, 1.0, 1.0, r) == pytest.approx(r)


def test_bc_loss_share_hand_computed():
    # one BC and one BA sample, margins 1, scale 1: log(1+e) / (log(1+e) + log(1+1/e))
    expected = math.log1p(math.e) / (math.log1p(math.e) + math.log1p(math.exp(-1)))
    assert bc_loss_share(1.0, 1.0, 1.0, 0.5, batch=2) == pytest.approx(expected, rel=1e-12)
    # 5 BC of 100, scale 2, margins BC 1 / BA 0.5: 5 softplus(2) / (5 softplus(2) + 95 softplus(-1))
    bc, ba = 5 * math.log1p(math.exp(2)), 95 * math.log1p(math.exp(-1))
    assert bc_loss_share(2.0, 1.0, 0.5, 0.05) == pytest.approx(bc / (bc + ba), rel=1e-12)


def test_bc_loss_share_increases_to_one_without_overflow():
    s = np.linspace(0, 40, 401)
    share = bc_loss_share(s, 1.0, 1.0, 0.01)
    assert isinstance(share, np.ndarray) and share.shape == s.shape
    assert np.all(np.diff(share) >= 0) and np.all(np.diff(share[:100]) > 0)
    assert share[-1] > 1 - 1e-12
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert bc_loss_share(1e6, 1.0, 1.0, 0.05) == 1.0


def test_bc_loss_share_rejects_impossible_batches():
    with pytest.raises(ValueError):
        bc_loss_share(1.0, 1.0, 1.0, 0.001, batch=100)  # rounds to 0 BC samples
    with pytest.raises(ValueError):
        bc_loss_share(1.0, -1.0, 1.0, 0.05)


# -- Proposition 2 --------------------------------------------------------------------------------

def test_gradient_shares_go_to_one_and_are_deterministic():
    scales = [0.01, 0.1, 1.0, 10.0, 50.0, 100.0]
    a = gradient_norm_shares(scales, bc_fraction=0.05)
    b = gradient_norm_shares(scales, bc_fraction=0.05)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["spurious_rule"] and a.attrs["core_correct"] and a.attrs["n_bc"] == 5
    for col in ("bc_share_core", "bc_share_spur", "loss_bc_share"):
        assert abs(a[col].iloc[0] - 0.05) < 0.02  # tiny scale: about the BC fraction
        assert a[col].iloc[-2] > 0.999 and a[col].iloc[-1] > 0.999  # large scale: BC samples dominate
    # At large scale both gradient norms grow linearly with the scale.
    big = a.set_index("scale")
    for col in ("grad_core", "grad_spur"):
        assert big.loc[100.0, col] / big.loc[50.0, col] == pytest.approx(2.0, rel=1e-6)


def test_gradient_shares_other_seed_differs_but_holds():
    a = gradient_norm_shares([0.1, 100.0], bc_fraction=0.1, seed=3)
    b = gradient_norm_shares([0.1, 100.0], bc_fraction=0.1, seed=0)
    assert not a.equals(b)
    assert a.bc_share_spur.iloc[-1] > 0.999


# -- Fig. 12 table --------------------------------------------------------------------------------

def _frame():
    rows = []
    for i, (x, y) in enumerate(zip([0.1, 0.2, 0.3, 0.4], [1, 2, 3, 5])):
        rows.append(dict(dataset="parity", model="fcn", scale="paper", lr=0.01 * (i + 1), seed=0,
                         status="converged", max_bc_loss_ratio=x, test_acc=y))
    rows.append(dict(dataset="parity", model="fcn", scale="paper", lr=1.0, seed=0, status="diverged",
                     max_bc_loss_ratio=np.nan, test_acc=np.nan))
    # y = 1 - 0.2 x: falls within the paper's LR-range rule (no seed 10 points below a smaller LR's best)
    for i, (x, y) in enumerate(zip([0.5, 0.6, 0.9], [0.9, 0.88, 0.82])):
        rows.append(dict(dataset="colored_mnist", model="resnet18", scale="smoke", lr=0.01 * (i + 1), seed=i % 2,
                         status="converged", max_bc_loss_ratio=x, test_acc=y))
    rows += [dict(dataset="moon_star", model="fcn", scale="cpu", lr=lr, seed=0, status="converged",
                  max_bc_loss_ratio=x, test_acc=0.7) for lr, x in ((0.1, 0.5), (0.2, 0.6))]
    return pd.DataFrame(rows)


def test_max_bc_ratio_table_hand_computed():
    t = max_bc_ratio_table(_frame()).set_index(["dataset", "model"])
    par = t.loc[("parity", "fcn")]
    # x = .1,.2,.3,.4; y = 1,2,3,5: sum dxdy = .65, sum dx^2 = .05, sum dy^2 = 8.75
    assert par.pearson == pytest.approx(0.65 / math.sqrt(0.05 * 8.75))
    assert par.spearman == pytest.approx(1.0)
    assert par.runs == 4 and par.LRs == 4 and par.scale == "paper"  # the diverged run is left out
    cm = t.loc[("colored_mnist", "resnet18")]
    assert cm.spearman == pytest.approx(-1.0) and cm.pearson < -0.99 and cm.seeds == 2
    ms = t.loc[("moon_star", "fcn")]
    assert ms.runs == 2 and np.isnan(ms.pearson) and np.isnan(ms.spearman)  # too few runs
    assert max_bc_ratio_table(pd.DataFrame()).empty


# -- BA/BC loss ratio ------------------------------------------------------------------------------

def _record(lr, seed, ba, bc, dataset="colored_mnist", model="resnet18", status="converged", spe=6, trace=None,
            test_acc=0.5, max_ratio=0.9):
    cfg = make_config(dataset, model, lr=lr, seed=seed, scale="smoke")
    n = len(ba)
    curves = {"ba_loss": list(ba), "bc_loss": list(bc), "loss": [0.5] * n, "train_acc": [0.9] * n,
              "bc_loss_ratio_mean": [0.3] * n, "bc_loss_ratio_max": [max_ratio] * n,
              "logit_norm": list(np.linspace(1, 1 + lr * 10, n))}
    return {"run_id": cfg.run_id, "config": cfg.to_dict(), "status": status, "epochs": n, "steps": n * spe,
            "metrics": None if status == "diverged" else {"test_acc": test_acc, "test_ba_acc": 0.9,
                                                          "test_bc_acc": 0.1, "max_bc_loss_ratio": max_ratio},
            "curves": {"per_epoch": curves}, "attribution_trace": trace or []}


def test_ba_bc_loss_ratio_hand_computed():
    rec = _record(0.1, 0, [0.2, 0.1, 0.05, 0.01], [2.0, None, 1.0, 0.5])
    # epochs with a BC loss: 0, 2, 3 -> (0.2 + 0.05 + 0.01) / (2 + 1 + 0.5)
    assert ba_bc_loss_ratio(rec) == pytest.approx(0.26 / 3.5)
    assert ba_bc_loss_ratio(rec, "final") == pytest.approx(0.01 / 0.5)
    assert np.isnan(ba_bc_loss_ratio(_record(0.1, 0, [0.1, 0.1], [None, None])))
    assert np.isnan(ba_bc_loss_ratio(_record(0.1, 0, [0.1], [1.0], status="diverged")))
    with pytest.raises(ValueError):
        ba_bc_loss_ratio(rec, "max")


def test_ba_bc_ratio_by_lr_and_verdict():
    recs = [_record(0.01, 0, [0.5], [1.0]), _record(0.01, 1, [0.7], [1.0]),
            _record(0.1, 0, [0.1], [1.0]), _record(0.1, 1, [0.2], [1.0]),
            _record(1.0, 0, [0.1], [1.0], status="diverged")]
    t = ba_bc_ratio_by_lr(recs)
    assert list(t.lr) == [0.01, 0.1, 1.0] and list(t.runs) == [2, 2, 0]
    assert t.ratio_mean.iloc[0] == pytest.approx(0.6) and t.ratio_sd.iloc[0] == pytest.approx(math.sqrt(0.02))
    assert t.log10_distance.iloc[1] == pytest.approx((1 + -math.log10(0.2)) / 2)
    v = ba_bc_verdict(t, "colored_mnist")  # highest LR with a ratio is 0.1 (1.0 diverged)
    assert v["closer"] == "low" and v["separated"] and v["agrees"] == "yes"
    assert "0.6" in v["sentence"] and "agrees with the paper" in v["sentence"]
    assert v["sentence"].startswith("Colored MNIST: ")
    assert ba_bc_verdict(t, "colored_mnist", model="cnn")["sentence"].startswith("Colored MNIST / CNN: ")
    assert ba_bc_verdict(t, "parity")["agrees"] == "n/a"
    # the other way round: the paper's direction is contradicted
    flipped = ba_bc_ratio_by_lr([_record(0.01, s, [r], [1.0]) for s, r in enumerate((0.1, 0.15))]
                                + [_record(0.1, s, [r], [1.0]) for s, r in enumerate((0.6, 0.5))])
    v = ba_bc_verdict(flipped, "double_mnist")
    assert v["closer"] == "high" and v["agrees"] == "no" and "disagrees" in v["sentence"]
    # one run per LR: the direction is reported, but no verdict
    single = ba_bc_ratio_by_lr([_record(0.01, 0, [0.1], [1.0]), _record(0.1, 0, [0.6], [1.0])])
    v = ba_bc_verdict(single, "colored_mnist")
    assert v["closer"] == "high" and v["agrees"] == "unclear" and "seed variation is unknown" in v["sentence"]
    # overlapping seeds: no verdict either way
    overlap = ba_bc_ratio_by_lr([_record(0.01, s, [r], [1.0]) for s, r in enumerate((0.3, 0.5))]
                                + [_record(0.1, s, [r], [1.0]) for s, r in enumerate((0.2, 0.4))])
    v = ba_bc_verdict(overlap, "colored_mnist")
    assert v["closer"] == "low" and not v["separated"] and v["agrees"] == "unclear"
    assert ba_bc_verdict(t.iloc[:1], "colored_mnist")["closer"] is None


def test_pick_lrs():
    df = pd.DataFrame({"lr": [0.01, 0.1, 1.0], "status": ["converged", "converged", "diverged"]})
    assert pick_lrs(df)[:2] == (0.01, 0.1)
    lo, hi, note = pick_lrs(df, low_lr=0.1, high_lr=0.5)
    assert (lo, hi) == (0.1, 0.1) and "0.5 is not stored" in note


# -- notebook 06 ------------------------------------------------------------------------------------

def _outputs(path) -> str:
    """The text of an executed notebook's outputs only (the sources mention the messages too)."""
    import json

    parts = []
    for cell in json.loads(path.read_text())["cells"]:
        for o in cell.get("outputs", []):
            parts.append("".join(o.get("text", "")))
            parts += ["".join(v) if isinstance(v, list) else str(v) for k, v in o.get("data", {}).items()
                      if k.startswith("text/")]
    return "\n".join(parts)


def _fabricated_store(path):
    from lrbook import ResultStore

    store = ResultStore(path)
    for lr, acc in ((0.05, 0.7), (0.5, 0.95)):
        for seed in (0, 1):
            trace = [{"step": s, "epoch": s / 4, "test_acc": acc, "test_ba_acc": 1.0, "test_bc_acc": acc - 0.1,
                      "core": 0.2 + 0.01 * s, "spurious": 0.6 - 0.01 * s, "noise": 0.2} for s in (0, 1, 2, 4, 8)]
            store.put(_record(lr, seed, np.linspace(0.3, 0.01, 5), np.linspace(3, 0.5, 5), "parity", "fcn",
                              spe=4, trace=trace, test_acc=acc + 0.01 * seed, max_ratio=0.8 + lr / 5 + 0.01 * seed))
    store.put(_record(3.0, 0, [0.5, float("nan")], [1.0, float("nan")], "parity", "fcn", status="diverged"))
    for lr in (0.01, 0.1):
        store.put(_record(lr, 0, [0.05, 0.01, 0.005], [3.0, None, 1.0], test_acc=0.5 + lr, max_ratio=0.9 + lr))
    return store


@pytest.mark.slow
def test_mechanism_notebook_renders_stored_cells(tmp_path):
    import papermill as pm

    store = _fabricated_store(tmp_path / "store")
    assert len(store) == 7
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "06_mechanism.ipynb"), str(out),
                        parameters=dict(store_dir=str(store.root)), cwd=str(ROOT / "notebooks"),
                        progress_bar=False, kernel_name="python3")
    text = _outputs(out)
    assert "Parity / FCN (smoke, 5 runs)" in text and "Colored MNIST / ResNet18 (smoke, 2 runs)" in text
    assert "Fig. 13:** Parity / FCN: LR 0.05 (blue, 2 seeds) vs LR 0.5 (red, 2 seeds)" in text
    assert "Fig. 13:** Colored MNIST / ResNet18: LR 0.01 (blue, 1 seed) vs LR 0.1 (red, 1 seed)" in text
    assert "Scale `smoke`: 5 runs, 3 LRs (0.05 to 3), 1 to 2 seeds per LR; 1 diverged." in text
    assert "No runs with neuron probes are stored" in _outputs(out)  # Fig. 18 says plainly it has no data
    assert "Colored MNIST / ResNet18: BA/BC loss ratio" in text and "Parity / FCN: BA/BC loss ratio" in text
    assert out.read_text().count("image/png") >= 5  # Prop. 1, Prop. 2, Fig. 12, two Fig. 13 rows


@pytest.mark.slow
def test_mechanism_notebook_with_empty_store(tmp_path):
    import papermill as pm

    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "06_mechanism.ipynb"), str(out),
                        parameters=dict(store_dir=str(tmp_path / "empty")), cwd=str(ROOT / "notebooks"),
                        progress_bar=False, kernel_name="python3")
    text = _outputs(out)
    assert "No runs are stored" in text
    assert "Colored MNIST / ResNet18: no stored runs" in text and "Parity / FCN: no stored runs" in text
    assert "Fig. 12 cannot be drawn" in text and "BA/BC loss ratio cannot be computed" in text


def test_neuron_persistence_hand_computed():
    from lrbook.mechanism import neuron_persistence

    # 4 units; final: units 0, 1 class-dominant, 2 bias-dominant, 3 never fires.
    trace = [
        {"step": 0, "unit_csi": [0.1, 0.0, 0.5, None], "unit_bsi": [0.2, 0.3, 0.1, None]},  # class: {2}; bias: {0, 1}
        {"step": 4, "unit_csi": [0.5, 0.4, 0.0, None], "unit_bsi": [0.1, 0.5, 0.2, None]},  # class: {0}; bias: {1, 2}
        {"step": 9, "unit_csi": [0.6, 0.7, 0.1, None], "unit_bsi": [0.1, 0.2, 0.3, None]},
    ]
    df = neuron_persistence({"attribution_trace": trace})
    assert df.class_dominant.tolist() == [1, 1, 2] and df.bias_dominant.tolist() == [2, 2, 1]
    assert df.class_persist.tolist() == [0.0, 1.0, 1.0]  # unit 2 flips to bias; unit 0 stays class
    assert df.bias_persist.tolist() == [0.0, 0.5, 1.0]  # {0,1} both become class; {1,2}: only 2 stays
    assert neuron_persistence({"attribution_trace": [{"step": 0}]}).empty


@pytest.mark.slow
def test_mechanism_notebook_draws_fig18_from_neuron_probe_runs(tmp_path):
    import papermill as pm

    from lrbook import ResultStore

    store = ResultStore(tmp_path / "store")
    for lr in (0.05, 0.5):
        cfg = make_config("parity", "fcn", lr=lr, seed=0, scale="smoke", neuron_probes=True)
        trace = [{"step": s, "epoch": s / 4, "test_acc": 0.6, "test_ba_acc": 1.0, "test_bc_acc": 0.2,
                  "unit_csi": [0.5, 0.1, None], "unit_bsi": [0.1, 0.1 + s / 10, None]} for s in (0, 1, 2, 4)]
        rec = _record(lr, 0, [0.2, 0.1], [1.0, 0.5], "parity", "fcn", spe=4, trace=trace)
        store.put({**rec, "run_id": cfg.run_id, "config": cfg.to_dict()})
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "06_mechanism.ipynb"), str(out),
                        parameters=dict(store_dir=str(store.root)), cwd=str(ROOT / "notebooks"),
                        progress_bar=False, kernel_name="python3")
    shown = _outputs(out)
    assert "No runs with neuron probes are stored" not in shown
    assert "class persistence, mean over 1st half" in shown  # the Fig. 18 table was drawn


def _toy_unit_trace():
    """Two units, four trace points. Unit 0's share rises, then a big update resets it; unit 1 is
    silent (NaN) at the second point."""
    return {"step": np.array([0, 10, 20, 30]),
            "spurious_share": np.array([[0.2, 0.5], [0.6, np.nan], [0.3, 0.5], [0.35, 0.55]]),
            "update_sum": np.array([[0, 0], [1.0, 1.0], [9.0, 1.0], [1.0, 2.0]]),
            "update_max": np.array([[0, 0], [0.2, 0.2], [5.0, 0.2], [0.2, 0.5]])}


def test_unit_trace_events_hand_computed():
    from lrbook.mechanism import reset_units, unit_trace_events

    ev = unit_trace_events(_toy_unit_trace())
    # unit 1 loses its intervals touching the NaN point: (0->10) and (10->20)
    assert list(zip(ev.unit, ev.step)) == [(0, 10), (0, 20), (0, 30), (1, 30)]
    assert np.allclose(ev.delta, [0.4, -0.3, 0.05, 0.05])
    assert list(ev.update_sum) == [1.0, 9.0, 1.0, 2.0] and list(ev.update_max) == [0.2, 5.0, 0.2, 0.5]
    assert reset_units(ev, n=2) == [0]  # unit 1 is silent at one point: never a reset candidate


def test_reset_summary_hand_computed():
    from lrbook.mechanism import reset_summary, unit_trace_events

    ev = unit_trace_events(_toy_unit_trace())
    s = reset_summary(ev, big_quantile=0.75)
    # share_before = [0.2, 0.6, 0.3, 0.5], median 0.4: high-share intervals are (0,20) and (1,30)
    assert s["intervals"] == 4 and s["high_share_intervals"] == 2
    # 75th percentile of update_sum [1, 9, 1, 2] is 3.75: the only big update is unit 0's 9.0
    assert s["big_updates"] == 1 and np.isclose(s["big_update_threshold"], 3.75)
    assert np.isclose(s["mean_delta_after_big"], -0.3) and np.isclose(s["mean_delta_after_rest"], 0.05)
    assert s["drop_rate_after_big"] == 1.0 and s["drop_rate_after_rest"] == 0.0
    assert np.isnan(s["spearman_update_vs_delta"]), "two intervals are too few for a correlation"


def test_mechanism_notebook_draws_fig18_bottom_from_a_unit_trace(tmp_path):
    """A stored run with a unit trace artefact: the page draws the units and the generated verdict."""
    import papermill as pm

    from lrbook import ResultStore

    store = ResultStore(tmp_path / "store")
    cfg = make_config("colored_mnist", "fcn", lr=0.5, seed=0, scale="smoke", unit_trace_every=10)
    rec = _record(0.5, 0, [0.2, 0.1], [1.0, 0.5], "colored_mnist", "fcn", spe=6)
    trace = _toy_unit_trace()
    trace = {k: np.concatenate([v, v[1:]]) if k != "step" else np.arange(7) * 10 for k, v in trace.items()}
    store.put_artefact(cfg.run_id, "unit_trace", **trace)
    store.put({**rec, "run_id": cfg.run_id, "config": cfg.to_dict(), "artefacts": ["unit_trace"]})
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "06_mechanism.ipynb"), str(out),
                        parameters=dict(store_dir=str(store.root), datasets="colored_mnist"),
                        cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")
    shown = _outputs(out)
    assert "No runs with unit traces are stored" not in shown
    assert "Colored MNIST / FCN, LR 0.5, seed 0: of the intervals" in shown and "reset reading" in shown
