"""The paper's LR-range rule (Sec. 4.2) and the CSI - BSI check, on hand-built run frames."""
from __future__ import annotations

import numpy as np
import pandas as pd

from lrbook.compare import compare_with_paper
from lrbook.prose import coverage_note
from lrbook.selection import beyond_lr_range, lr_range_end, scored_runs


def runs(rows, dataset="colored_mnist", model="cnn", scale="cpu"):
    """rows: (lr, seed, status, test_acc); every run finished at 100% training accuracy."""
    return pd.DataFrame([dict(dataset=dataset, model=model, scale=scale, lr=lr, seed=s, status=st, test_acc=acc,
                              train_acc=1.0, run_id=f"{lr}-{s}") for lr, s, st, acc in rows])


def test_the_first_lr_where_a_seed_diverged_ends_the_range():
    df = runs([(0.1, 0, "converged", 0.5), (0.1, 1, "converged", 0.52),
               (0.35, 0, "diverged", np.nan), (0.35, 1, "converged", 0.6), (0.5, 0, "converged", 0.7)])
    end, why = lr_range_end(df)
    assert end == 0.35 and why == "1 of 2 seeds diverged at LR 0.35"
    assert list(beyond_lr_range(df)) == [False, False, True, True, True]
    assert list(scored_runs(df).lr) == [0.1, 0.1]  # the surviving seed at 0.35 and LR 0.5 are not compared
    from lrbook.prose import left_out_phrase

    assert left_out_phrase(df) == "; left out: 1 diverged, 2 beyond the LR range"
    assert left_out_phrase(df[:2]) == ""


def test_a_drastic_loss_of_test_accuracy_ends_the_range():
    # best mean below LR 0.3 is 0.80 (LR 0.1); a seed at 0.3 reaches 0.69: 11 points lower -> drastic
    df = runs([(0.01, 0, "converged", 0.60), (0.1, 0, "converged", 0.80), (0.1, 1, "converged", 0.80),
               (0.3, 0, "converged", 0.69), (0.3, 1, "converged", 0.85)])
    end, why = lr_range_end(df)
    assert end == 0.3 and "69.0%" in why and "80.0%" in why
    # a 9-point drop is within the rule
    ok = runs([(0.1, 0, "converged", 0.80), (0.3, 0, "converged", 0.71)])
    assert lr_range_end(ok) == (None, "") and len(scored_runs(ok)) == 2


def test_the_rule_is_applied_per_cell_and_scale():
    a = runs([(0.1, 0, "converged", 0.5), (0.2, 0, "diverged", np.nan)])
    b = runs([(0.1, 0, "converged", 0.5), (0.2, 0, "converged", 0.6)], scale="paper")
    both = pd.concat([a, b], ignore_index=True)
    assert list(beyond_lr_range(both)) == [False, True, False, False]


def test_the_coverage_note_names_the_lrs_the_rule_removes():
    df = runs([(0.1, s, "converged", 0.5) for s in range(3)]
              + [(0.35, 0, "diverged", np.nan), (0.35, 1, "diverged", np.nan), (0.35, 2, "converged", 0.6)])
    note = coverage_note(df, "cpu")
    assert ("leaves out LR 0.35: 2 of 3 seeds diverged at LR 0.35; 1 finished run there is not compared." in note)


def test_csi_minus_bsi_is_scored_and_bsi_is_not():
    rows = []
    for i, lr in enumerate((0.01, 0.1, 1.0)):
        for s in range(3):
            rows.append(dict(dataset="colored_mnist", model="fcn", scale="cpu", lr=lr, seed=s, status="converged",
                             train_acc=1.0, test_acc=0.5, csi=0.2 + 0.1 * i + 0.01 * s, bsi=0.3 - 0.05 * i,
                             run_id=f"{lr}-{s}"))
    df = pd.DataFrame(rows)
    df["csi_minus_bsi"] = df.csi - df.bsi
    table = compare_with_paper(df, "colored_mnist", "fcn").set_index("variable")
    assert table.loc["CSI − BSI", "agrees"] == "yes" and np.isclose(table.loc["CSI − BSI", "ours_min"], -0.09)
    assert table.loc["Avg. BSI", "agrees"] == "n/a" and table.loc["Avg. BSI", "spearman"] == -1.0
    assert np.isnan(table.loc["CSI − BSI", "paper_min"])  # the paper has no such column


def test_every_prunability_reading_a_cell_has_is_listed_with_its_trend():
    from lrbook.figures import prunability_readings

    df = runs([(lr, s, "converged", 0.5) for lr in (0.01, 0.1, 1.0) for s in range(3)])
    df["prunability"] = [0.3, 0.3, 0.3, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1]  # falls with LR
    df["prunability_global"] = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, np.nan, np.nan, np.nan]  # rises; LR 1 lacks it
    table = prunability_readings(df).set_index("reading")
    assert list(table.index) == ["Prunability", "Prunability (global ranking)"]
    assert table.loc["Prunability", "Spearman with LR [95%]"] == "-1.00 [-1.00, -1.00]"
    assert table.loc["Prunability (global ranking)", "runs"] == 6
    assert table.loc["Prunability (global ranking)", "per-LR mean"] == "0.500 to 0.800"


def test_runs_with_other_dataset_parameters_are_variants_left_out_of_the_lr_sweeps():
    """Parity's calibration runs (`lrbook.calibration`) share the cell's (dataset, model, scale) but
    not its preset dataset parameters: `select_runs` leaves them out, `variant_runs` names them."""
    import pandas as pd

    from lrbook.selection import select_runs, variant_runs

    base = dict(dataset="parity", model="fcn", scale="paper", status="converged", train_acc=1.0, test_acc=0.7,
                **{"data.core_bits": 4, "data.spurious_bits": 2, "data.bits_per_block": 10, "data.bc_ratio": 0.03})
    runs = pd.DataFrame([dict(base, run_id="preset", lr=0.01, seed=0),
                         dict(base, run_id="harder", lr=0.01, seed=0, **{"data.core_bits": 6}),
                         dict(base, run_id="rarer", lr=0.01, seed=0, **{"data.bc_ratio": 0.01}),
                         dict(base, run_id="older", lr=0.01, seed=1, **{"data.bits_per_block": float("nan")})])
    assert variant_runs(runs).tolist() == [False, True, True, False]
    assert sorted(select_runs(runs, ("parity", "fcn"), scale="all").run_id) == ["older", "preset"]
    from lrbook.selection import with_logging

    runs["neuron_probes"] = [True, True, False, False]  # page 06's probes: the variant's are left out too
    assert with_logging(runs, "neuron_probes").run_id.tolist() == ["preset"]


def test_the_scorecard_scores_the_global_reading_only_where_every_run_has_it():
    """Part 1 of issue 15: the chosen reading (`prunability_global`) is scored in a cell whose runs all
    have it; a cell where one run lacks it is scored with the per-layer reading, never a mix."""
    from lrbook.compare import trend_summary
    from lrbook.selection import prunability_reading
    from lrbook.tables import comparison_table

    df = runs([(lr, s, "converged", 0.5) for lr in (0.01, 0.1, 1.0) for s in range(3)], model="fcn")
    df["prunability"] = [0.3, 0.3, 0.3, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1]  # falls with LR
    df["prunability_global"] = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.95, 1.0]  # rises
    assert prunability_reading(df) == "prunability_global"
    table = compare_with_paper(df, "colored_mnist", "fcn").set_index("variable")
    row = table.loc["Prunability"]
    assert row.reading == "Prunability (global ranking)" and row.spearman > 0.9 and np.isclose(row.ours_max, 0.95)
    assert comparison_table(compare_with_paper(df, "colored_mnist", "fcn")).variable[1] == "Prunability (global ranking)"
    card = compare_with_paper(df, "colored_mnist", "fcn").assign(dataset="colored_mnist", model="fcn", scale="cpu",
                                                                  runs=9, left_out=0)
    assert trend_summary(card)["prunability reading"].tolist() == ["global ranking"]

    df.loc[8, "prunability_global"] = np.nan  # one run trained before weights were kept
    assert prunability_reading(df) == "prunability"
    row = compare_with_paper(df, "colored_mnist", "fcn").set_index("variable").loc["Prunability"]
    assert row.reading == "Prunability" and row.spearman < -0.9 and np.isclose(row.ours_max, 0.3)


def test_levels_say_where_our_range_sits_against_table_s1():
    """Colored MNIST / FCN in Table S1: unbiased accuracy 72.727 to 76.11 %, prunability 0.935 to
    0.968, act. compressibility 0.285 to 0.389. Per-LR means here: accuracy 60 and 70 % (ends under
    72.727: below), prunability 0.95 and 0.99 (overlaps), act. compressibility 0.39 and 0.40 (starts
    over 0.389: above). Cells at another scale, and variables Table S1 lacks, are not listed."""
    from lrbook.compare import level_summary

    df = runs([(lr, s, "converged", acc) for lr, acc in ((0.1, 0.60), (0.5, 0.70)) for s in range(2)], model="fcn")
    df["prunability"] = [0.95, 0.95, 0.99, 0.99]
    df["act_compressibility"] = [0.39, 0.39, 0.40, 0.40]
    card = compare_with_paper(df, "colored_mnist", "fcn").assign(dataset="colored_mnist", model="fcn", scale="paper")
    levels = level_summary(card)
    assert levels.columns.tolist() == ["cell", "Unbiased test acc.", "Prunability", "Act. compressibility"]
    assert levels.iloc[0].tolist() == ["Colored MNIST / FCN", "below", "overlaps", "above"]
    assert level_summary(card.assign(scale="cpu")).empty
