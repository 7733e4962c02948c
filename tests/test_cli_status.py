"""`python -m lrbook`, lrbook.status, lrbook.compare, lrbook.paper and lrbook.selection."""
from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrbook import compare, selection
from lrbook.__main__ import main
from lrbook.config import make_config
from lrbook.compare import compare_with_paper
from lrbook.paper import paper_row
from lrbook.stats import bootstrap_spearman, spearman
from lrbook.status import COVERAGE, MIN_LRS, MIN_SEEDS, PAPER_ITEMS, VERDICTS, cell_coverage, status_table
from lrbook.store import ResultStore
from lrbook.vocabulary import METRIC_LABELS, S1_METRICS

REPO = Path(__file__).resolve().parents[1]
LRS = (0.01, 0.03, 0.1, 0.3, 0.75)


def fabricate(store, dataset="parity", model="fcn", lrs=LRS, seeds=(0, 1, 2), scale="smoke", status="converged",
              train_acc=1.0):
    """Minimal records (enough for the status logic), one per LR x seed."""
    for lr in lrs:
        for s in seeds:
            cfg = make_config(dataset, model, lr=lr, seed=s, scale=scale)
            store.put({"run_id": cfg.run_id, "config": cfg.to_dict(), "status": status, "epochs": 5,
                       "metrics": {"test_acc": 0.5 + lr / 2, "train_acc": train_acc}})


def by_item(table):
    return {r["item"]: r for r in (table.to_dict("records") if isinstance(table, pd.DataFrame) else table)}


# ------------------------------------------------------------------------------------ CLI


def test_cli_status_json_lists_every_paper_item(tmp_store):
    fabricate(tmp_store, lrs=(0.01, 0.1), seeds=(0,))
    env = {**os.environ, "LRBOOK_STORE": str(tmp_store.root)}
    out = subprocess.run([sys.executable, "-m", "lrbook", "status", "--json"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    rows = payload["items"] if isinstance(payload, dict) else payload
    assert [r["item"] for r in rows] == [it.item for it in PAPER_ITEMS]
    items = by_item(rows)
    fig3 = items["Fig. 3"]
    assert fig3["status"] == "partial" and fig3["runs"] == 2 and fig3["lrs"] == 2 and fig3["seeds"] == 1
    assert fig3["scale"] == "smoke"
    assert f">= {MIN_LRS} LRs x {MIN_SEEDS} seeds" in fig3["note"]
    assert items["Fig. 15"]["status"] == "pending" and items["Fig. 15"]["runs"] == 0
    assert items["Table S1"]["status"] == "partial"
    if isinstance(payload, dict) and payload.get("scorecard"):
        assert {(r["dataset"], r["model"], r["scale"]) for r in payload["scorecard"]} == {("parity", "fcn", "smoke")}
    for r in rows:
        assert r["status"] in COVERAGE and r["verdict"] in VERDICTS, r
        if r["status"] == "not possible here":
            assert r["note"], r["item"]
    assert fig3["verdict"] == "not scored" and "fewer than 3" in fig3["verdict_note"]  # 2 LRs: no Spearman
    assert items["Fig. 15"]["verdict"] == "not run"
    assert isinstance(fig3["runs"], int) and items["Fig. 7, 19"]["runs"] is None  # integers, not 2.0


def test_cli_status_empty_store_and_store_flag(tmp_path, capsys):
    empty = tmp_path / "empty"
    assert main(["--store", str(empty), "status"]) == 0
    text = capsys.readouterr().out
    assert "Fig. 3" in text and "not possible here" in text and "pending" in text
    assert " complete " not in text


def test_cli_sweep_trains_then_skips(tmp_path, capsys):
    store = tmp_path / "s"
    argv = ["--store", str(store), "sweep", "parity", "--lrs", "0.05", "--seeds", "0", "--scale", "smoke",
            "--device", "cpu"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().endswith("1 trained, 0 already stored, 0 running elsewhere, 0 failed")
    assert len(ResultStore(store)) == 1
    rec = ResultStore(store).records()[0]
    assert rec["config"]["lr"] == 0.05 and rec["config"]["scale"] == "smoke"
    assert main(argv) == 0
    assert "0 trained, 1 already stored" in capsys.readouterr().out
    assert main(argv + ["--precision", "bf16", "--compile"]) == 0  # a replica on a faster path is a new run
    assert "1 trained, 0 already stored" in capsys.readouterr().out
    fast = [r["config"] for r in ResultStore(store).records() if r["config"]["precision"] == "bf16"]
    assert len(fast) == 1 and fast[0]["compile"] is True and fast[0]["compile_mode"] == "default"


# ------------------------------------------------------------------------------------ status logic


def test_fig3_complete_needs_five_lrs_by_three_seeds(tmp_store):
    fabricate(tmp_store, lrs=LRS[:4])  # 4 LRs x 3 seeds
    assert by_item(status_table(tmp_store))["Fig. 3"]["status"] == "partial"
    fabricate(tmp_store, lrs=LRS[4:], seeds=(0, 1))  # fifth LR with only 2 seeds
    assert by_item(status_table(tmp_store))["Fig. 3"]["status"] == "partial"
    fabricate(tmp_store, lrs=LRS[4:], seeds=(2,))  # now 5 x 3
    row = by_item(status_table(tmp_store))["Fig. 3"]
    assert row["status"] == "complete"
    assert (row["runs"], row["lrs"], row["seeds"], row["scale"]) == (15, 5, 3, "smoke")
    assert row["note"] == ""
    # other items are unaffected by parity runs
    assert by_item(status_table(tmp_store))["Fig. 15"]["status"] == "pending"


def fabricate_trends(store, trends, lrs=LRS, seeds=(0, 1, 2)):
    """Parity/FCN records whose Table S1 metrics follow `trends`: column -> +1 (rises with LR), -1
    (falls) or 0 (no trend: the values cycle over seeds)."""
    for i, lr in enumerate(lrs):
        for s in seeds:
            cfg = make_config("parity", "fcn", lr=lr, seed=s, scale="smoke")
            metrics = {"train_acc": 1.0}
            for col, sign in trends.items():
                metrics[col] = 0.5 + (0.05 * sign * i if sign else 0.05 * ((s + i) % 3 - 1))
            store.put({"run_id": cfg.run_id, "config": cfg.to_dict(), "status": "converged", "epochs": 5,
                       "metrics": metrics})


S1_COLUMNS = ("test_acc", "prunability", "act_compressibility", "csi", "class_separation")


def test_verdict_is_separate_from_coverage(tmp_store, fast_bootstrap):
    """A cell with every LR x seed stored is complete, whatever its trends; the verdict says whether
    they are the paper's (here: prunability shows none, so Fig. 3 agrees only partly)."""
    fabricate_trends(tmp_store, {c: 0 if c == "prunability" else 1 for c in S1_COLUMNS})
    fig3 = by_item(status_table(tmp_store))["Fig. 3"]
    assert fig3["status"] == "complete"
    assert fig3["verdict"] == "partly"
    assert fig3["verdict_note"] == "2 of 3 (cell, variable) pairs rise with LR; Prunability has no clear trend on " \
                                   "Parity/FCN (smoke)"
    assert by_item(status_table(tmp_store))["Fig. 15"]["verdict"] == "not run"


@pytest.mark.parametrize("sign, expected", [(1, "agrees"), (-1, "disagrees")])
def test_verdict_follows_the_scorecard(tmp_store, fast_bootstrap, sign, expected):
    from lrbook.compare import scorecard

    fabricate_trends(tmp_store, {c: sign for c in S1_COLUMNS}, lrs=LRS[:3], seeds=(0, 1))
    card = scorecard(tmp_store)
    table_s1 = card[card.variable.isin([METRIC_LABELS[col] for col, _ in S1_METRICS.values()])]
    assert set(table_s1.agrees) == {"yes" if sign > 0 else "no"}
    items = by_item(status_table(tmp_store, card=card))
    assert items["Fig. 3"]["status"] == "partial"  # 3 LRs x 2 seeds: not complete, but scored
    assert items["Fig. 3"]["verdict"] == expected and items["Fig. 5"]["verdict"] == "not run"
    assert items["Table S1"]["verdict"] == expected


def test_a_variable_the_runs_do_not_measure_is_not_agreement(tmp_store, fast_bootstrap):
    fabricate_trends(tmp_store, {"test_acc": 1})  # no prunability, no compressibility stored
    fig3 = by_item(status_table(tmp_store))["Fig. 3"]
    assert fig3["verdict"] == "partly" and "Prunability is not measured" in fig3["verdict_note"]


def test_every_paper_item_is_listed():
    """Figures 1 to 36, Tables S1 and S2, Propositions 1 and 2, each exactly once."""
    listed = []
    for it in PAPER_ITEMS:
        for part in it.item.split(", "):
            part = part.removeprefix("Fig. ").removeprefix("Table ").removeprefix("Prop. ")
            if "-" in part:
                lo, hi = part.split("-")
                listed += [f"Fig. {n}" for n in range(int(lo), int(hi) + 1)]
            elif part.startswith("S"):
                listed.append(f"Table {part}")
            else:
                kind = "Prop." if it.item.startswith("Prop.") else "Fig."
                listed.append(f"{kind} {part}")
    expected = [f"Fig. {n}" for n in range(1, 37)] + ["Table S1", "Table S2", "Prop. 1", "Prop. 2"]
    assert sorted(listed) == sorted(expected)


def test_five_lrs_with_three_seeds_each_not_just_in_total(tmp_store):
    # 5 LRs and 3 distinct seeds overall, but no LR has all three seeds
    for i, lr in enumerate(LRS):
        fabricate(tmp_store, lrs=(lr,), seeds=(i % 3, (i + 1) % 3))
    cov = cell_coverage(tmp_store.to_frame(), "parity", "fcn")
    assert cov["lrs"] == 5 and cov["seeds"] == 3 and not cov["complete"]
    assert by_item(status_table(tmp_store))["Fig. 3"]["status"] == "partial"


def test_under_trained_lrs_do_not_complete_a_cell_but_diverged_ones_do(tmp_store):
    fabricate(tmp_store, lrs=LRS[:3])
    fabricate(tmp_store, lrs=LRS[3:4], status="diverged")  # a result: the LR is too large
    fabricate(tmp_store, lrs=LRS[4:], status="max_epochs", train_acc=0.97)  # stopped short of 100%
    cov = cell_coverage(tmp_store.to_frame(), "parity", "fcn")
    assert cov["lrs"] == 5 and not cov["complete"]
    fabricate(tmp_store, lrs=LRS[4:], status="max_epochs", train_acc=0.9995)  # one sample short: finished
    assert cell_coverage(tmp_store.to_frame(), "parity", "fcn")["complete"]


def test_a_cell_is_shown_at_its_most_faithful_complete_scale(tmp_store):
    """A few paper-scale runs do not displace a finished cpu-scale sweep (figures, status page)."""
    from lrbook.selection import best_scale, cell_scales

    fabricate(tmp_store, scale="cpu")
    fabricate(tmp_store, lrs=LRS[:2], scale="paper")
    df = tmp_store.to_frame()
    assert best_scale(df) == "cpu" and cell_scales(df) == ["cpu", "paper"]
    assert cell_coverage(df, "parity", "fcn")["scale"] == "cpu"
    fabricate(tmp_store, lrs=LRS[2:], scale="paper")
    df = tmp_store.to_frame()
    assert best_scale(df) == "paper" and cell_scales(df) == ["paper", "cpu"]
    # no complete scale: the one with more complete LRs, a tie going to the more faithful one
    fabricate(tmp_store, dataset="moon_star", lrs=LRS[:3], scale="smoke")
    fabricate(tmp_store, dataset="moon_star", lrs=LRS[:1], scale="paper")
    moon = tmp_store.to_frame(dataset="moon_star")
    assert best_scale(moon) == "smoke"
    fabricate(tmp_store, dataset="moon_star", lrs=LRS[1:3], scale="paper")
    assert best_scale(tmp_store.to_frame(dataset="moon_star")) == "paper"
    assert best_scale(moon.iloc[0:0]) is None and cell_scales(moon.iloc[0:0]) == []


def test_multi_cell_items_need_every_cell(tmp_store):
    fabricate(tmp_store)
    fabricate(tmp_store, dataset="moon_star")
    items = by_item(status_table(tmp_store))
    assert items["Fig. 15"]["status"] == "complete"
    s1 = items["Table S1"]
    assert s1["status"] == "partial" and s1["note"].startswith("2/22 cells")
    assert "parity/fcn" in s1["note"] and "moon_star/fcn" in s1["note"]
    assert items["Fig. 4, 16"]["status"] == "pending"


def test_status_of_an_empty_store_is_not_read_from_the_default_store(tmp_path, monkeypatch):
    """An empty ResultStore is falsy (len 0): it must still be the store that is read."""
    default = ResultStore(tmp_path / "default")
    fabricate(default)
    monkeypatch.setenv("LRBOOK_STORE", str(default.root))
    assert by_item(status_table())["Fig. 3"]["status"] == "complete"  # no argument: the default store
    empty = ResultStore(tmp_path / "empty")
    assert by_item(status_table(empty))["Fig. 3"]["status"] == "pending"


def test_blocked_and_planned_items(tmp_store):
    items = by_item(status_table(tmp_store))
    for it in PAPER_ITEMS:
        row = items[it.item]
        if it.blocked:
            assert row["status"] == "not possible here" and row["note"] == it.blocked
            assert row["verdict"] == "not possible here"
        elif it.illustration:
            assert row["status"] == row["verdict"] == "nothing to reproduce" and row["note"] == it.illustration
        elif it.planned:
            assert row["status"] == "pending" and row["note"] == it.planned and row["verdict"] == "not run"
    assert items["Fig. 7, 19"]["status"] == "not possible here"
    assert "cannot be downloaded" in items["Fig. 7, 19"]["note"]


# ------------------------------------------------------------------------------------ reference


def test_spearman_small_cases():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert math.isnan(spearman([1, 2], [1, 2]))           # fewer than 3 pairs
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))     # constant
    assert spearman([1, 2, 3, float("nan")], [1, 2, 3, 0]) == pytest.approx(1.0)  # NaN pairs dropped


def test_paper_row():
    row = paper_row("parity", "fcn")
    assert (row.lr_min, row.lr_max, row.test_acc_min, row.test_acc_max) == (0.01, 0.75, 55.31, 85.663)
    assert paper_row("parity", "resnet50") is None


def lr_frame(sign=1.0, noise=0.0, dataset="parity", model="fcn"):
    rows = []
    for i, lr in enumerate(LRS):
        for s in range(3):
            v = 0.3 + sign * 0.1 * i + noise * (s - 1)
            rows.append(dict(dataset=dataset, model=model, status="converged", lr=lr, seed=s, test_acc=v,
                             prunability=v, act_compressibility=v, csi=v, class_separation=v))
    rows.append(dict(dataset=dataset, model=model, status="diverged", lr=10.0, seed=0))  # no metrics
    return pd.DataFrame(rows)


@pytest.fixture
def fast_bootstrap(monkeypatch):
    """compare_with_paper's 1000-sample bootstrap is slow with pandas ranks; 60 samples test the same logic."""
    monkeypatch.setattr(compare, "bootstrap_spearman", functools.partial(bootstrap_spearman, n_boot=60))


def test_compare_with_paper_monotone_data_agrees(fast_bootstrap):
    out = compare_with_paper(lr_frame(), "parity", "fcn")
    assert list(out.variable) == ["Unbiased test acc.", "Prunability", "Act. compressibility", "Avg. CSI",
                                  "Class separation", "Avg. BSI", "CSI − BSI"]
    assert out.iloc[5:].spearman.isna().all()  # the frame has no BSI: nothing to score beyond the paper
    out = out.iloc[:5]
    assert list(out.spearman) == pytest.approx([1.0] * 5) and list(out.ci_low) == pytest.approx([1.0] * 5)
    assert (out.agrees == "yes").all()
    acc = out.iloc[0]
    assert (acc.paper_min, acc.paper_max) == (55.31, 85.663)
    assert acc.ours_min == pytest.approx(30.0) and acc.ours_max == pytest.approx(70.0)  # accuracies in %
    assert out.iloc[1].ours_max == pytest.approx(0.7)  # other metrics keep their unit
    assert out.attrs["paper_lr_range"] == (0.01, 0.75)


def test_compare_with_paper_decreasing_and_noisy(fast_bootstrap):
    down = compare_with_paper(lr_frame(sign=-1.0), "parity", "fcn")
    down = down.iloc[:5]  # Table S1's variables; BSI is not in this frame
    assert list(down.spearman) == pytest.approx([-1.0] * 5) and (down.agrees == "no").all()
    noisy = compare_with_paper(lr_frame(noise=0.02), "parity", "fcn")
    noisy = noisy.iloc[:5]
    assert (noisy.spearman > 0.9).all() and (noisy.spearman < 0.999).all() and (noisy.agrees == "yes").all()
    # a cell the paper does not have: no paper columns, our numbers still computed
    other = compare_with_paper(lr_frame(model="resnet50"), "parity", "resnet50")
    assert "paper_min" not in other and (other.agrees[:5] == "yes").all()


def test_under_trained_runs_are_left_out_of_the_comparison(fast_bootstrap):
    from lrbook.prose import coverage_note

    df = lr_frame().assign(train_acc=1.0)
    # an LR below the grid whose runs hit the epoch cap at 96% training accuracy, with the worst
    # test accuracy: kept, it would only strengthen the "accuracy rises with LR" verdict
    under = [dict(dataset="parity", model="fcn", status="max_epochs", lr=0.001, seed=s, train_acc=0.96,
                  test_acc=0.0, prunability=0.9, act_compressibility=0.9, csi=0.9, class_separation=0.9)
             for s in range(3)]
    near = dict(dataset="parity", model="fcn", status="max_epochs", lr=0.01, seed=3, train_acc=0.9999,
                test_acc=0.3, prunability=0.3, act_compressibility=0.3, csi=0.3, class_separation=0.3)
    df = pd.concat([df, pd.DataFrame(under + [near])], ignore_index=True)
    assert len(selection.scored_runs(df)) == 5 * 3 + 1  # 15 converged + the run 1 sample short
    out = compare_with_paper(df, "parity", "fcn")
    assert out.attrs["left_out"] == 1 + 3  # the diverged run and the three under-trained ones
    assert out.iloc[0].ours_min == pytest.approx(30.0)  # not 0: LR 0.001 is not in the comparison
    assert list(out.spearman[:5]) == pytest.approx([1.0] * 5, abs=0.05)
    note = coverage_note(df, "cpu")
    assert "4 stopped at the epoch cap" in note and "3 of them below 99.9%, at LR 0.001: 96.0 to 96.0%" in note


def test_bootstrap_spearman_interval():
    ordered = lr_frame(noise=0.02)  # every run of a larger LR above every run of a smaller one
    rho = spearman(ordered.lr, ordered.test_acc)
    assert rho == pytest.approx(0.98198, abs=1e-5)  # the ceiling of 5 LRs x 3 seeds: the LRs tie
    # no resample changes the order, so the interval is the point (plain ranks put it above the point)
    assert bootstrap_spearman(ordered, "test_acc", n_boot=40) == pytest.approx((rho, rho), abs=1e-12)
    lo, hi = bootstrap_spearman(lr_frame(sign=-1.0), "csi", n_boot=20)
    assert lo == pytest.approx(-1.0) and hi == pytest.approx(-1.0)
    one_seed = lr_frame(noise=0.02).query("seed == 0")  # resampling one seed per LR gives no interval
    assert all(map(math.isnan, bootstrap_spearman(one_seed, "test_acc", n_boot=20)))
    mixed = lr_frame(noise=0.02).query("seed == 0 or lr == @LRS[0]")  # one LR with three seeds is enough
    assert math.isfinite(bootstrap_spearman(mixed, "test_acc", n_boot=20)[0])


def test_bootstrap_spearman_hand_computed():
    # LR 0.1 has runs 1 and 4, LR 0.2 runs 2 and 3: Spearman 0. A resample draws {1,1}, {1,4} or {4,4}
    # (p = 1/4, 1/2, 1/4) at LR 0.1; the copies of one run rank apart, so {1,1} ranks as 1, 2 below
    # LR 0.2's whatever it draws: corr([-1,-1,1,1], [-1.5,-.5,.5,1.5]) = 2/sqrt(5); {1,4} gives 0.
    df = pd.DataFrame(dict(lr=[0.1, 0.1, 0.2, 0.2], csi=[1.0, 4.0, 2.0, 3.0]))
    assert spearman(df.lr, df.csi) == 0.0
    assert bootstrap_spearman(df, "csi", n_boot=400) == pytest.approx((-2 / 5 ** 0.5, 2 / 5 ** 0.5), abs=1e-12)


def test_resample_ranks_ties_copies_only_of_tied_runs():
    from lrbook.stats import _resample_ranks

    values = np.array([0.3, 0.1, 0.3, 0.5, 0.2])  # runs 0 and 2 tie
    assert _resample_ranks(values, np.arange(5)[None]).tolist() == [[3.5, 1, 3.5, 5, 2]]  # = rankdata
    draws = np.array([[1, 1, 3, 4, 4], [0, 2, 0, 0, 3]])
    assert _resample_ranks(values, draws).tolist() == [[1, 2, 5, 3, 4], [2.5, 2.5, 2.5, 2.5, 5]]


def test_paper_lr_grid():
    from lrbook.paper import paper_lr_grid

    g = paper_lr_grid("parity", "fcn")
    assert g == [0.01, 0.03, 0.09, 0.3, 0.75]  # geomspace(0.01, 0.75, 5) = .01 .029 .087 .25 .75
    assert len(paper_lr_grid("moon_star", "fcn", n=7)) == 7
    with pytest.raises(KeyError, match="parity/resnet50"):
        paper_lr_grid("parity", "resnet50")


def test_lr_summary_table_shows_sd_only_where_there_are_seeds():
    from lrbook.tables import format_summary, lr_summary

    df = pd.DataFrame({"lr": [0.1, 0.1, 0.4, 0.4], "seed": [0, 1, 0, 1], "status": ["converged"] * 3 + ["diverged"],
                       "epochs": [5, 7, 3, 2], "test_acc": [0.50, 0.54, 0.695, float("nan")]})
    summary = lr_summary(df, ("test_acc",))
    assert summary.test_acc_mean.tolist() == pytest.approx([0.52, 0.695])
    assert summary.test_acc_sd[0] == pytest.approx(0.02 * 2**0.5) and math.isnan(summary.test_acc_sd[1])
    table = format_summary(summary, ("test_acc",))
    assert table["Unbiased test acc."].tolist() == ["52.0 ± 2.8", "69.5"]  # one finished run: no sd to show
    assert table.diverged.tolist() == [0, 1]


def test_pruning_curves_with_bn_batch_statistics_start_from_their_own_base_accuracy():
    import matplotlib
    matplotlib.use("Agg")
    from lrbook.plots import plot_pruning_curves

    def rec(lr, bn_batch):
        curves = {"prune_fractions": [0.5], "prune_structured": [0.1]}
        metrics = {"test_acc": 0.8, "train_acc": 1.0}
        if bn_batch:
            curves["prune_structured_bn_batch"] = [0.6]
            metrics["test_acc_bn_batch"] = 0.75
        return {"status": "converged", "config": {"lr": lr}, "metrics": metrics, "curves": curves}

    ax = plot_pruning_curves([rec(0.1, True), rec(0.2, False)], "structured_bn_batch")
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[0.75, 0.6]]  # LR 0.2 has no such curve
    assert "BN batch stats" in ax.get_xlabel()
    ax = plot_pruning_curves([rec(0.1, True), rec(0.2, False)], "structured")
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[0.8, 0.1], [0.8, 0.1]]


def test_cli_sweep_intervention_trains_its_values_at_the_fixed_lr(tmp_path, capsys):
    from lrbook.interventions import fixed_lrs

    store = tmp_path / "s"
    argv = ["--store", str(store), "sweep", "parity", "--intervention", "momentum", "--values", "0.5",
            "--seeds", "0", "--scale", "smoke", "--device", "cpu"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().endswith("1 trained, 0 already stored, 0 running elsewhere, 0 failed")
    config = ResultStore(store).records()[0]["config"]
    assert config["momentum"] == 0.5 and config["lr"] == fixed_lrs("parity", "fcn", "smoke")[0]
    assert main(argv) == 0 and "0 trained, 1 already stored" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--intervention", "l2", "--lrs", "0.1"], "runs at the cell's fixed LR"),
    ([], "give --lrs, or --intervention"),
    (["--lrs", "0.1", "--values", "0.5"], "--values goes with --intervention"),
    (["--intervention", "momentum", "--values", "1.5"], "momentum"),
])
def test_cli_sweep_rejects_mixed_grids_at_once(tmp_path, capsys, extra, message):
    assert main(["--store", str(tmp_path / "s"), "sweep", "parity", "--scale", "smoke", "--device", "cpu"] + extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists() or len(ResultStore(tmp_path / "s")) == 0


@pytest.mark.parametrize("core_sign, expected", [(1, "agrees"), (-1, "disagrees")])
def test_fig27_verdict_says_whether_csi_follows_the_core_attribution_share(tmp_store, core_sign, expected):
    for lr in LRS[:3]:
        for s in (0, 1):
            cfg = make_config("double_mnist", "fcn", lr=lr, seed=s, scale="smoke")
            tmp_store.put({"run_id": cfg.run_id, "config": cfg.to_dict(), "status": "converged", "epochs": 5,
                           "metrics": {"test_acc": 0.5, "train_acc": 1.0, "csi": 0.2 + lr + 0.001 * s, "bsi": 0.1,
                                       "attr_core": 0.5 + core_sign * (0.1 * lr + 0.0001 * s)}})
    fig27 = by_item(status_table(tmp_store))["Fig. 27"]
    assert fig27["status"] == "partial" and fig27["verdict"] == expected
    assert fig27["verdict_note"] == (f"Double MNIST/FCN (smoke): avg. CSI "
                                     f"{'follows' if core_sign > 0 else 'goes against'} the core attribution share "
                                     f"(Spearman over runs {core_sign:+.2f})")


@pytest.mark.parametrize("param_sign, expected, note", [
    (1, "agrees", "all 4 measures rise with LR"),
    (-1, "partly", "Param. compressibility falls with LR on Colored MNIST/ResNet18 (smoke)")])
def test_fig26_verdict_says_which_compressibility_measures_rise(tmp_store, param_sign, expected, note):
    for lr in LRS[:3]:
        for s in (0, 1):
            cfg = make_config("colored_mnist", "resnet18", lr=lr, seed=s, scale="smoke")
            up = lr + 0.001 * s
            tmp_store.put({"run_id": cfg.run_id, "config": cfg.to_dict(), "status": "converged", "epochs": 5,
                           "metrics": {"test_acc": 0.5, "train_acc": 1.0, "act_compressibility": up,
                                       "act_sparsity": up, "act_pq_index": up,
                                       "param_compressibility": 0.5 + param_sign * up}})
    fig26 = by_item(status_table(tmp_store))["Fig. 26"]
    assert (fig26["status"], fig26["verdict"], fig26["verdict_note"]) == ("partial", expected, note)
