"""Parity's calibration to Table S1 (`lrbook.calibration`, issue 15 part 6): the target, the names of
the settings and the plan that `-p calibrate True` on page 01 trains."""
from __future__ import annotations

import pytest

from lrbook.calibration import (CONFIRM, SPEC_SETTING, STAGE1, STAGE2, calibration_plan, describe, paper_target,
                                setting_of)
from lrbook.config import DATASET_PRESETS


def test_the_target_is_table_s1s_lowest_parity_lr_and_its_accuracy():
    assert paper_target() == (0.01, pytest.approx(0.5531))


def test_settings_are_named_by_their_knobs():
    assert describe(SPEC_SETTING) == "k=4, m=2, 14 noise bits, r=5%"
    assert describe(dict(SPEC_SETTING, bits_per_block=20, bc_ratio=0.03)) == "k=4, m=2, 34 noise bits, r=3%"


def test_the_plan_holds_every_step_once_and_both_lr_sweeps():
    plan = calibration_plan()
    assert len({c.run_id for c in plan}) == len(plan)
    calibrated = setting_of(DATASET_PRESETS["parity"]["paper"])
    assert calibrated != SPEC_SETTING  # the preset is the calibrated setting, the spec's is a variant
    at_low = [c for c in plan if c.lr == 0.01]
    steps = {describe(setting_of(c.dataset_params)) for c in at_low}
    assert steps == {describe(s) for s in STAGE1 + STAGE2 + CONFIRM + [SPEC_SETTING, calibrated]}
    for setting in (SPEC_SETTING, calibrated):  # 5 LRs x 3 seeds each
        sweep = [c for c in plan if setting_of(c.dataset_params) == setting]
        assert {(c.lr, c.seed) for c in sweep} >= {(lr, s) for lr in (0.01, 0.03, 0.1, 0.3, 0.75) for s in (0, 1, 2)}
    assert all(c.scale == "paper" and c.model == "fcn" and c.dataset == "parity" for c in plan)
