"""Pages and messages: every page renders whatever the store holds and says what is missing, and a
user error on the command line is one line (`lrbook: error: ...`, exit status 2), not a traceback."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from lrbook.plots import plot_attribution_trace, plot_lr_effects, plot_pruning_curves  # noqa: E402
from lrbook.prose import coverage_note, dropped_cell_note, nothing_scored_note  # noqa: E402
from lrbook.selection import cells_with_scored_runs  # noqa: E402
from lrbook.tables import format_summary, lr_summary, run_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def runs(*rows):
    """A store frame: (dataset, lr, seed, status, train_acc or None); evaluated runs get metrics."""
    out = []
    for dataset, lr, seed, status, train_acc in rows:
        row = dict(dataset=dataset, model="fcn", scale="smoke", lr=lr, seed=seed, status=status, epochs=30,
                   run_id=f"{dataset}-{lr}-{seed}")
        if status != "diverged":
            row.update(train_acc=train_acc, test_acc=0.5 + lr, prunability=0.9, act_compressibility=0.4)
        out.append(row)
    return pd.DataFrame(out)


DIVERGED = runs(("colored_mnist", 1000.0, 0, "diverged", None), ("colored_mnist", 1000.0, 1, "diverged", None))
UNDER_TRAINED = runs(("parity", 0.05, 0, "max_epochs", 0.5325), ("parity", 0.05, 1, "max_epochs", 0.5975),
                     ("parity", 0.01, 0, "max_epochs", 0.51))


def panel_text(ax) -> str:
    return " ".join(t.get_text().replace("\n", " ") for t in ax.texts)


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


# ------------------------------------------------------------------------------ notes


def test_nothing_scored_note_counts_what_is_missing():
    assert nothing_scored_note(UNDER_TRAINED, "smoke") == (
        "No run at scale `smoke` reached 100% training accuracy: 3 stopped at the epoch cap (51.0 to 59.8% "
        "training accuracy), 0 diverged; there is nothing to compare with the paper yet.")
    assert nothing_scored_note(DIVERGED) == ("No run reached 100% training accuracy: 2 diverged; there is nothing "
                                             "to compare with the paper yet.")
    mixed = pd.concat([DIVERGED, UNDER_TRAINED.iloc[:1]], ignore_index=True)
    assert "1 stopped at the epoch cap (53.2% training accuracy), 2 diverged" in nothing_scored_note(mixed)
    assert nothing_scored_note(DIVERGED.iloc[0:0], "cpu") == "No stored runs at scale `cpu`."
    # one run a single sample short of 100% counts (selection.MIN_SCORED_TRAIN_ACC): nothing to say
    assert nothing_scored_note(runs(("parity", 0.3, 0, "max_epochs", 0.9995))) is None
    assert nothing_scored_note(pd.concat([DIVERGED, runs(("parity", 0.3, 0, "converged", 1.0))])) is None


def test_coverage_note_says_nothing_is_compared():
    note = coverage_note(DIVERGED, "smoke")
    assert note.startswith("Scale `smoke`: 2 runs, 1 LR (1000), 2 seeds; 2 diverged.")
    assert coverage_note(DIVERGED.iloc[:1], "paper").startswith("Scale `paper`: 1 run, 1 LR (1000), 1 seed; 1 diverged.")
    assert note.endswith("**No run reached 100% training accuracy, so there is nothing to compare with the "
                         "paper yet.**")
    assert "nothing to compare" not in coverage_note(runs(("parity", 0.3, 0, "converged", 1.0)), "smoke")


def test_cells_with_scored_runs_keeps_cells_with_a_trained_run():
    good = runs(("parity", 0.3, 0, "converged", 1.0))
    kept, dropped = cells_with_scored_runs(pd.concat([DIVERGED, good, UNDER_TRAINED], ignore_index=True))
    notes = [dropped_cell_note(cell, cell_runs) for cell, cell_runs in dropped]
    assert list(kept.run_id) == ["parity-0.3-0"] + list(UNDER_TRAINED.run_id)  # parity has one trained run
    assert notes == ["Colored MNIST / FCN: No run at scale `smoke` reached 100% training accuracy: 2 diverged; "
                     "there is nothing to compare with the paper yet."]


def test_run_table_keeps_the_columns_the_runs_have():
    table = run_table(DIVERGED, ["lr", "seed", "status", "test_acc", "prunability"])
    assert list(table.columns) == ["lr", "seed", "status"] and len(table) == 2


# ------------------------------------------------------------------------------ tables and panels


def test_lr_summary_of_diverged_runs_counts_them_and_averages_nothing():
    s = lr_summary(DIVERGED)
    assert s[["lr", "runs", "diverged", "hit_max_epochs"]].to_dict("records") == [
        dict(lr=1000.0, runs=2, diverged=2, hit_max_epochs=0)]
    assert math.isnan(s.test_acc_mean[0]) and math.isnan(s.prunability_sd[0])
    table = format_summary(s)
    assert table.iloc[0]["Unbiased test acc."] == "—" and table.iloc[0]["diverged"] == 2
    assert lr_summary(DIVERGED.iloc[0:0]).empty


def test_lr_effects_panel_says_why_it_is_empty(ax):
    plot_lr_effects(DIVERGED, ax=ax, title="Colored MNIST")
    assert not ax.lines and "2 diverged" in panel_text(ax) and ax.get_title() == "Colored MNIST"


def test_lr_effects_of_scored_runs_only_says_why_under_trained_runs_are_not_shown(ax):
    plot_lr_effects(UNDER_TRAINED, ax=ax, scored_only=True)
    assert not ax.lines
    assert "3 stopped at the epoch cap (51.0 to 59.8% training accuracy)" in panel_text(ax)


def test_lr_effects_still_plot_under_trained_runs_unless_asked(ax):
    plot_lr_effects(UNDER_TRAINED, ax=ax)
    assert len(ax.lines) == 3 and not ax.texts  # one line per metric, two LRs each
    assert list(ax.lines[0].get_xdata()) == [0.01, 0.05]


def test_attribution_trace_without_a_run_says_so(ax):
    plot_attribution_trace(None, ax=ax, which="lowest")
    assert ax.get_title() == "lowest LR: no run to show" and "No run reached 100% training accuracy" in panel_text(ax)


def test_attribution_trace_titles_the_run_it_shows(ax):
    record = {"run_id": "r1", "status": "converged", "config": {"lr": 0.3, "seed": 2},
              "attribution_trace": [{"step": 0, "core": 0.2, "spurious": 0.5, "noise": 0.3},
                                    {"step": 4, "core": 0.6, "spurious": 0.1, "noise": 0.3}]}
    plot_attribution_trace(record, ax=ax, which="highest")
    assert ax.get_title() == "highest LR 0.3 (seed 2)" and len(ax.lines) == 3


def test_pruning_panel_of_diverged_runs_says_so(ax):
    records = [{"status": "diverged", "config": {"lr": 1000.0}, "curves": {"per_epoch": {}}}] * 2
    plot_pruning_curves(records, ax=ax)
    assert not ax.lines and "No run has a structured pruning curve: 2 of 2 runs diverged" in panel_text(ax)


# ------------------------------------------------------------------------------ command line


def lrbook(*args, tmp_path, data=None):
    env = {**os.environ, "LRBOOK_STORE": str(tmp_path / "store"), "LRBOOK_DATA": str(data or tmp_path / "data"),
           # no network: a download attempt fails at once, wherever the tests run
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    return subprocess.run([sys.executable, "-m", "lrbook", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("args, words", [
    (["sweep", "nonsense", "--lrs", "0.1"],
     ["argument dataset: invalid choice: 'nonsense'", "'parity'", "'corrupted_cifar10'"]),
    (["sweep", "parity", "--lrs", "-1"], ["argument --lrs: a learning rate must be a finite number > 0, got -1"]),
    (["sweep", "parity", "--lrs", "0.1", "fast"], ["a learning rate must be a number > 0, got 'fast'"]),
    (["sweep", "parity", "--lrs", "0.1", "--scale", "huge"],
     ["argument --scale: invalid choice: 'huge'", "'smoke', 'cpu', 'paper'"]),
    (["sweep", "parity", "--lrs", "0.1", "--model", "vit"], ["argument --model: invalid choice: 'vit'", "'resnet18'"]),
    (["sweep", "parity", "--lrs", "0.1", "--seeds", "-2"], ["argument --seeds: expected a whole number >= 0"]),
])
def test_a_bad_argument_is_one_line_and_exit_status_2(tmp_path, args, words):
    out = lrbook(*args, tmp_path=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("lrbook: error: ") and out.stderr.count("\n") == 1, out.stderr
    for w in words:
        assert w in out.stderr, (w, out.stderr)
    assert not (tmp_path / "store").exists()


def test_sweep_help_lists_the_allowed_scales(tmp_path):
    out = lrbook("sweep", "--help", tmp_path=tmp_path)
    assert out.returncode == 0 and "{smoke,cpu,paper}" in out.stdout


def test_missing_mnist_is_found_before_any_run_and_leaves_no_folder(tmp_path):
    data = tmp_path / "empty"
    data.mkdir()
    out = lrbook("sweep", "colored_mnist", "--lrs", "0.1", "0.2", "--seeds", "0", "--scale", "smoke",
                 "--device", "cpu", tmp_path=tmp_path, data=data)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("lrbook: error: MNIST not found: torchvision's layout <root>/MNIST/raw/ holds ")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert f"{data}/MNIST/raw/ lacks them (downloading it failed: " in out.stderr
    assert "data_root= in a notebook, --data-root on the command line, or $LRBOOK_DATA" in out.stderr
    assert list(data.iterdir()) == [], "no empty MNIST/raw/ is left behind"
    assert not (tmp_path / "store" / "runs").exists() or not any((tmp_path / "store" / "runs").iterdir())
