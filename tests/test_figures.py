"""The one selection rule (lrbook.selection), the figure functions of the section pages
(lrbook.figures) and their generated captions (lrbook.prose), on small stores built here."""
from __future__ import annotations

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from lrbook import ResultStore, make_config  # noqa: E402
from lrbook import compare, figures, prose  # noqa: E402
from lrbook.selection import best_scale, select_runs  # noqa: E402


def put(store, dataset, model, lr, seed, scale="smoke", status="converged", train_acc=1.0, **metrics):
    cfg = make_config(dataset, model, lr=lr, seed=seed, scale=scale)
    metrics = {"test_acc": 0.5 + lr, "prunability": lr, "act_compressibility": 2 * lr, "train_acc": train_acc,
               **metrics}
    store.put({"run_id": cfg.run_id, "config": cfg.to_dict(), "status": status, "epochs": 3, "steps": 30,
               "metrics": metrics, "curves": {"prune_fractions": [0.5], "prune_structured": [0.4],
                                              "prune_magnitude": [0.45]}})
    return cfg.run_id


@pytest.fixture
def store(tmp_path):
    s = ResultStore(tmp_path / "store")
    for lr in (0.01, 0.1, 0.3):  # parity: 3 LRs x 2 seeds at smoke, one under-trained run
        for seed in (0, 1):
            put(s, "parity", "fcn", lr, seed)
    put(s, "parity", "fcn", 0.5, 0, status="max_epochs", train_acc=0.6)
    for lr in (0.01, 0.1, 0.2, 0.3, 0.5):  # colored_mnist/fcn: complete at cpu (5 LRs x 3 seeds), 1 run at paper
        for seed in (0, 1, 2):
            put(s, "colored_mnist", "fcn", lr, seed, scale="cpu")
    put(s, "colored_mnist", "fcn", 0.1, 0, scale="paper")
    put(s, "double_mnist", "cnn", 0.1, 0, status="diverged")
    return s


def test_select_runs_is_the_one_rule(store):
    runs = store.to_frame()
    # every cell at its best scale: the complete cpu sweep beats one paper run
    best = select_runs(runs)
    assert best.groupby(["dataset", "model"]).scale.unique().map(list).to_dict() == {
        ("colored_mnist", "fcn"): ["cpu"], ("double_mnist", "cnn"): ["smoke"], ("parity", "fcn"): ["smoke"]}
    assert list(dict.fromkeys(best.dataset)) == ["parity", "colored_mnist", "double_mnist"]  # vocabulary order
    assert len(select_runs(runs, ("colored_mnist", "fcn"), scale="all")) == 16
    assert len(select_runs(runs, ("colored_mnist", "fcn"), scale="paper")) == 1
    # scored: the under-trained parity run and the diverged run are left out
    assert len(select_runs(runs, ("parity", "fcn"), scored=True)) == 6
    assert select_runs(runs, ("double_mnist", "cnn"), scored=True).empty
    assert best_scale(select_runs(runs, ("colored_mnist", "fcn"), scale="all")) == "cpu"


def test_figure_caption_names_scale_runs_and_seeds(store):
    runs = select_runs(store.to_frame(), ("parity", "fcn"))
    assert prose.figure_caption("Fig. 3", "Parity / FCN: LR effects.", runs) == (
        "**Fig. 3:** Parity / FCN: LR effects. *Scale smoke, 7 runs, 4 LRs (0.01 to 0.5), seeds 0, 1; "
        "left out: 1 under-trained.*")
    assert prose.figure_caption("Prop. 1", "computed") == "**Prop. 1:** computed."


def test_synthetic_cell_returns_its_runs_tables_and_caption(store):
    fig = figures.synthetic_cell(store, "parity", "smoke", "Fig. 3")
    assert len(fig.runs) == 7 and fig.caption.startswith("**Fig. 3:** Parity / FCN")
    assert fig.notes[0].startswith("Scale `smoke`: 7 runs, 4 LRs (0.01 to 0.5)")
    summary = fig.tables["Per LR, mean ± sd over seeds"]
    assert list(summary.LR) == ["0.01", "0.1", "0.3", "0.5"] and list(summary.runs) == [2, 2, 2, 1]
    assert summary["Unbiased test acc."].iloc[1] == "60.0 ± 0.0"  # (0.5 + 0.1) in %
    s1 = fig.tables["Against Table S1"].set_index("variable")
    assert s1.loc["Prunability", "ours"] == "0.01 to 0.3"  # the under-trained LR 0.5 does not count
    assert s1.loc["Prunability", "Spearman [95% interval]"].startswith("+1.00 [")
    assert fig.data["low"]["config"]["lr"] == 0.01 and fig.data["high"]["config"]["lr"] == 0.3
    plotted = fig.plot(fig.data)
    assert len(plotted.axes) == 4


def test_synthetic_cell_without_runs_gives_the_paper_range(tmp_path):
    fig = figures.synthetic_cell(ResultStore(tmp_path / "empty"), "moon_star", "smoke", "Fig. 15")
    assert fig.plot is None and "No stored runs for Moon-Star / FCN" in fig.notes[0]
    assert "LR range" in list(fig.tables["Table S1 (the paper's values)"].variable)


def test_lr_effect_panels_and_cells_without_runs(store):
    runs = select_runs(store.to_frame())
    cells = [("colored_mnist", "fcn"), ("colored_mnist", "cnn"), ("double_mnist", "cnn")]
    fig = figures.lr_effect_panels(runs, cells, ("test_acc",), "Fig. 4", "accuracy against LR")
    assert fig.data["cells"] == [("colored_mnist", "fcn"), ("double_mnist", "cnn")]
    assert "*Scale cpu, smoke, 16 runs" in fig.caption and "seeds 0, 1, 2; left out: 1 diverged.*" in fig.caption
    assert len(fig.plot(fig.data).axes) == 2
    missing = figures.cells_without_runs(cells, runs)
    assert missing.to_dict("records") == [{"cell": "Colored MNIST / CNN", "paper LR range": "0.01 to 0.35",
                                          "paper acc. range (%)": "88.2 to 91.5", "why no runs": "not trained yet"}]


def test_pruning_curves_and_ba_bc_on_a_small_store(store):
    runs = select_runs(store.to_frame())
    fig = figures.pruning_curves(store, runs, ("colored_mnist", "fcn"))
    assert fig.caption.startswith("**Fig. 21, 22:** Colored MNIST / FCN") and len(fig.data["records"]) == 15
    assert not fig.data["bn_batch"] and list(fig.tables) == ["Every reading of prunability (Definitions: which one and why), over the runs that have it"]
    assert list(next(iter(fig.tables.values())).reading) == ["Prunability"]
    table, text = figures.ba_bc_comparison(store, select_runs(runs, ("parity", "fcn")))
    assert list(table.cell) == ["Parity / FCN"] and (table["low LR"][0], table["high LR"][0]) == (0.01, 0.3)
    assert "fewer than two LRs with a BA/BC loss ratio" in text  # the fake runs have no loss curves


def test_mechanism_runs_drops_cells_without_scored_runs(store):
    runs, notes = figures.mechanism_runs(store, ["parity", "double_mnist"])
    assert set(runs.dataset) == {"parity"}
    assert notes == ["Double MNIST / CNN: No run at scale `smoke` reached 100% training accuracy: 1 diverged; "
                     "there is nothing to compare with the paper yet."]


def test_prop1_table_hand_computed():
    t = figures.prop1_table(scales=(0,), bc_fractions=(0.05,))
    assert t.to_dict("records") == [{"BC fraction": "5%", "s = 0": 0.05}]


def test_parity_calibration_lists_every_setting_and_compares_each_swept_one(tmp_path):
    """Issue 15, part 6: the calibration table at the paper's lowest parity LR, closest to Table S1's
    55.31% first, the preset marked; every setting with an LR sweep gets its own Table S1 comparison,
    and the page's LR sweep (presets only) never mixes in a calibration run."""
    from lrbook.calibration import SPEC_SETTING, calibration_configs

    s = ResultStore(tmp_path / "store")

    def put_setting(setting, lr, seed, acc):
        cfg = calibration_configs([setting], seeds=(seed,), lr=lr)[0]
        s.put({"run_id": cfg.run_id, "config": cfg.to_dict(), "status": "converged", "epochs": 200, "steps": 2e4,
               "metrics": {"test_acc": acc, "train_acc": 1.0, "prunability": lr, "act_compressibility": lr},
               "curves": {}})

    calibrated = dict(SPEC_SETTING, bc_ratio=0.03)  # the preset
    harder = dict(SPEC_SETTING, bc_ratio=0.01)
    for seed, acc in enumerate((0.54, 0.56)):  # the preset, swept over two LRs
        put_setting(calibrated, 0.01, seed, acc)
        put_setting(calibrated, 0.75, seed, acc + 0.3)
    for seed, acc in enumerate((0.72, 0.74, 0.76)):  # the spec's setting, swept over two LRs
        put_setting(SPEC_SETTING, 0.01, seed, acc)
        put_setting(SPEC_SETTING, 0.75, seed, acc + 0.2)
    put_setting(harder, 0.01, 0, 0.5)  # a calibration step at LR 0.01 only
    fig = figures.parity_calibration(s)
    table = fig.tables["Every setting tried at LR 0.01 (scale `paper`), closest to Table S1's 55.31% first"]
    assert table.setting.tolist() == ["k=4, m=2, 14 noise bits, r=3%", "k=4, m=2, 14 noise bits, r=1%",
                                      "k=4, m=2, 14 noise bits, r=5%"]
    assert table["unbiased acc. at LR 0.01"].tolist() == ["55.0% ± 1.4", "50.0%", "74.0% ± 2.0"]
    assert table["against Table S1"].tolist() == ["-0.3 pts", "-5.3 pts", "+18.7 pts"]
    assert table["the page's parity"].tolist() == ["yes (preset)", "", ""]
    swept = ["k=4, m=2, 14 noise bits, r=3% (the page's parity)", "k=4, m=2, 14 noise bits, r=5%"]
    assert [k for k in fig.tables if k.startswith("Against Table S1")] == [f"Against Table S1: {n}" for n in swept]
    assert [name for name, _ in fig.data["swept"]] == swept
    assert len(select_runs(s.to_frame(), ("parity", "fcn"), scale="paper")) == 4  # the others are variants


def test_every_metric_drawn_in_one_panel_has_a_colour_of_its_own():
    """Each page's LR-effect panels draw one of these groups; a metric without a colour took
    matplotlib's next default, which could repeat another line's colour in the same panel."""
    from lrbook.plots import COLORS
    from lrbook.vocabulary import (ATTRIBUTION_METRICS, COMPRESSIBILITY_MEASURES, CSI_ATTRIBUTION_METRICS,
                                   LR_EFFECT_METRICS, PATCH_METRICS, REPRESENTATION_METRICS, SELECTIVITY_CHECKS)

    for group in (LR_EFFECT_METRICS, REPRESENTATION_METRICS + SELECTIVITY_CHECKS, ATTRIBUTION_METRICS, PATCH_METRICS,
                  LR_EFFECT_METRICS + REPRESENTATION_METRICS, CSI_ATTRIBUTION_METRICS, COMPRESSIBILITY_MEASURES):
        assert all(m in COLORS for m in group), group
        assert len({COLORS[m] for m in group}) == len(group), group


def test_spearman_text_says_when_there_is_no_interval():
    from lrbook.tables import spearman_text

    assert spearman_text(0.96, 0.92, 0.99) == "+0.96 [+0.92, +0.99]"
    assert spearman_text(-0.5, float("nan"), float("nan")) == "-0.50 (no interval: one seed per value)"
    assert spearman_text(float("nan"), 0.1, 0.2) == "—"


def test_span_reads_one_number_when_both_ends_agree():
    from lrbook.tables import span

    assert span({"lo": 0.001, "hi": 0.15}, "lo", "hi") == "0.001 to 0.15"
    assert span({"lo": 2.0, "hi": 2.0}, "lo", "hi") == "2"
    assert span({"lo": 45.12, "hi": 45.14}, "lo", "hi") == "45.1"  # equal as printed
    assert span({"lo": float("nan"), "hi": 1.0}, "lo", "hi") == "—" and span({}, "lo", "hi") == "—"


def test_csi_attribution_says_whether_each_index_goes_the_core_shares_way(tmp_path):
    """Fig. 27 on a hand-built store: Double MNIST / FCN, 3 LRs x 2 seeds, CSI and the core share rise
    with LR, CSI - BSI falls; Double MNIST / CNN's core share is flat; Colored MNIST (one region for
    both features) and a diverged run take no part."""
    s = ResultStore(tmp_path / "store")
    for lr in (0.01, 0.1, 0.3):
        for seed in (0, 1):
            put(s, "double_mnist", "fcn", lr, seed, csi=0.2 + lr + 0.001 * seed, bsi=0.1 + 2 * lr,
                attr_core=0.4 + 0.1 * lr + 0.0001 * seed)
            put(s, "double_mnist", "cnn", lr, seed, csi=0.2 + lr + 0.001 * seed, bsi=0.1, attr_core=0.5)
            put(s, "colored_mnist", "fcn", lr, seed, csi=0.2, bsi=0.1, attr_core=0.5)
    put(s, "double_mnist", "fcn", 0.5, 0, status="diverged")
    runs = select_runs(s.to_frame())
    agreement = compare.attribution_agreement(runs).set_index("model")
    assert list(agreement.index) == ["fcn", "cnn"] and list(agreement.runs) == [6, 6]
    fcn, cnn = agreement.loc["fcn"], agreement.loc["cnn"]
    # LR ranks 1.5, 1.5, 3.5, 3.5, 5.5, 5.5 against CSI ranks 1..6: 16 / sqrt(16 * 17.5)
    assert fcn.csi_spearman == pytest.approx(16 / (16 * 17.5) ** 0.5)
    assert (fcn.csi_direction, fcn.attr_core_direction, fcn.csi_minus_bsi_direction) == ("rises", "rises", "falls")
    assert (fcn.csi_follows, fcn.csi_minus_bsi_follows) == ("yes", "no")
    assert fcn.csi_with_core == pytest.approx(1.0)
    # CSI - BSI ranks 5, 6, 3, 4, 1, 2 against the core share's 1..6: -14.5 / 17.5
    assert fcn.csi_minus_bsi_with_core == pytest.approx(-14.5 / 17.5)
    assert fcn.attr_core_at_lowest_lr == pytest.approx(0.40105) and fcn.attr_core_at_highest_lr == pytest.approx(0.43005)
    assert cnn.attr_core_direction == "unclear" and cnn.csi_follows == "unclear"

    fig = figures.csi_attribution(runs)
    assert fig.caption.startswith("**Fig. 27:**") and "left out: 1 diverged" in fig.caption
    table = next(iter(fig.tables.values())).set_index(["cell", "measure"])
    assert table.loc[("Double MNIST / FCN", "Avg. CSI"), "follows the core share"] == "yes (+1.00)"
    assert table.loc[("Double MNIST / FCN", "CSI − BSI"), "follows the core share"] == "no (-0.83)"
    assert table.loc[("Double MNIST / FCN", "Core attribution share"), "follows the core share"] == "(the yardstick)"
    assert table.loc[("Double MNIST / CNN", "Avg. CSI"), "follows the core share"] == "unclear"
    assert table.loc[("Double MNIST / FCN", "Core attribution share"), "lowest → highest LR"] == "0.401 → 0.430"
    assert len(fig.plot(fig.data).axes) == 2

    only_colored = select_runs(s.to_frame(), ("colored_mnist", "fcn"))
    assert compare.attribution_agreement(only_colored).empty
    assert figures.csi_attribution(only_colored).plot is None


def test_compressibility_measures_mark_each_measures_trend(tmp_path):
    """Fig. 26 on a hand-built store: 3 LRs x 2 seeds of one cell; three measures rise with LR,
    parameter compressibility falls, and the diverged run takes no part."""
    s = ResultStore(tmp_path / "store")
    for lr in (0.01, 0.1, 0.3):
        for seed in (0, 1):
            put(s, "colored_mnist", "resnet18", lr, seed, act_sparsity=lr + 0.001 * seed,
                act_pq_index=0.1 + lr + 0.001 * seed, param_compressibility=0.5 - lr - 0.001 * seed)
    put(s, "colored_mnist", "resnet18", 0.5, 0, status="diverged")
    runs = select_runs(s.to_frame())
    fig = figures.compressibility_measures(runs, [("colored_mnist", "resnet18"), ("double_mnist", "fcn")])
    assert fig.caption.startswith("**Fig. 26:**") and "left out: 1 diverged" in fig.caption
    row = next(iter(fig.tables.values())).iloc[0]
    assert (row.cell, row.scale, row.runs) == ("Colored MNIST / ResNet18", "smoke", 6)
    rho = 16 / (16 * 17.5) ** 0.5  # LR ranks 1.5, 1.5, 3.5, 3.5, 5.5, 5.5 against ranks 1..6
    assert row["Act. sparsity"].startswith(f"✓ +{rho:.2f} [")
    assert row["Param. compressibility"].startswith(f"✗ -{rho:.2f} [")
    assert row["Act. compressibility"].startswith("✓ +1.00 [")  # put(): 2 x LR, tied within an LR
    assert len(fig.plot(fig.data).axes) == 1
    assert figures.compressibility_measures(runs, [("double_mnist", "fcn")]).plot is None
