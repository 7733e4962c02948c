"""lrbook.config: presets, run ids, validation messages."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrbook.config import (DATASET_PRESETS, FCN_PRESETS, MAX_EPOCHS, ConfigError, RunConfig, grid,
                           make_config)

REPO = Path(__file__).resolve().parents[1]


def test_presets_are_applied_and_overrides_win():
    cfg = make_config("parity", "fcn", lr=0.05, seed=2, scale="smoke")
    assert cfg.dataset_params == DATASET_PRESETS["parity"]["smoke"]
    assert cfg.model_params == FCN_PRESETS["parity"]["smoke"]
    assert cfg.max_epochs == MAX_EPOCHS["smoke"]
    assert (cfg.lr, cfg.seed, cfg.bc_ratio) == (0.05, 2, 0.05)
    # the paper's training setup (Sec. 4.2): plain SGD, batch 100, until 100% train accuracy
    assert (cfg.optimizer, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.stop_train_acc) == ("sgd", 0.0, 0.0, 100, 1.0)

    over = make_config("parity", lr=0.05, scale="smoke", dataset_params={"bc_ratio": 0.1},
                       model_params={"width": 7}, max_epochs=3)
    assert over.bc_ratio == 0.1 and over.dataset_params["n_train"] == 400
    assert over.model_params == {"width": 7, "depth": 3}
    assert over.max_epochs == 3
    # presets are copied, never mutated by overrides
    assert DATASET_PRESETS["parity"]["smoke"]["bc_ratio"] == 0.05
    # non-FCN models take no size presets
    assert make_config("colored_mnist", "cnn", lr=0.01, scale="smoke").model_params == {}


def test_run_id_is_stable_across_independent_builds():
    a = make_config("parity", "fcn", lr=0.05, seed=1, scale="smoke")
    b = make_config("parity", "fcn", lr=0.05, seed=1, scale="smoke")
    assert a is not b
    assert a.run_id == b.run_id
    assert len(a.run_id) == 16 and int(a.run_id, 16) >= 0
    # a string LR that means the same number is the same run
    assert make_config("parity", lr="0.05", seed=1, scale="smoke").run_id == a.run_id
    # round trip through the stored dict
    assert RunConfig.from_dict(json.loads(json.dumps(a.to_dict()))).run_id == a.run_id


def test_run_id_is_stable_across_processes():
    cfg = make_config("moon_star", "fcn", lr=0.3, seed=4, scale="smoke", dataset_params={"bc_ratio": 0.1})
    code = ("from lrbook.config import make_config;"
            "print(make_config('moon_star','fcn',lr=0.3,seed=4,scale='smoke',dataset_params={'bc_ratio':0.1}).run_id)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == cfg.run_id


@pytest.mark.parametrize("change", [dict(lr=0.051), dict(seed=2), dict(dataset_params={"bc_ratio": 0.01}),
                                    dict(scale="cpu"), dict(model="cnn", dataset="moon_star"),
                                    dict(max_epochs=5), dict(dataset_params={"n_train": 401})])
def test_run_id_changes_with_any_setting(change):
    base = dict(dataset="parity", model="fcn", lr=0.05, seed=1, scale="smoke")
    ref = make_config(**base).run_id
    assert make_config(**{**base, **change}).run_id != ref


def test_grid_expands_lrs_times_seeds():
    cfgs = grid("parity", "fcn", lrs=(0.01, 0.1), seeds=(0, 1, 2), scale="smoke")
    assert [(c.lr, c.seed) for c in cfgs] == [(0.01, 0), (0.01, 1), (0.01, 2), (0.1, 0), (0.1, 1), (0.1, 2)]
    assert len({c.run_id for c in cfgs}) == 6


@pytest.mark.parametrize("kwargs, words", [
    (dict(dataset="cifar1000"), ["unknown dataset", "'cifar1000'", "parity"]),
    (dict(model="vit"), ["unknown model", "'vit'", "resnet18"]),
    (dict(lr=0.0), ["learning rate", "> 0"]),
    (dict(lr=-0.1), ["learning rate", "> 0"]),
    (dict(lr=float("nan")), ["learning rate", "finite"]),
    (dict(lr=float("inf")), ["learning rate", "finite"]),
    (dict(lr="fast"), ["learning rate", "number", "'fast'"]),
    (dict(lr=None), ["learning rate", "number"]),
    (dict(dataset_params={"bc_ratio": 1.0}), ["bias-conflicting ratio", "[0, 1)"]),
    (dict(dataset_params={"bc_ratio": -0.01}), ["bias-conflicting ratio", "[0, 1)"]),
    (dict(dataset_params={"bc_ratio": float("nan")}), ["bias-conflicting ratio"]),
    (dict(scale="huge"), ["unknown scale", "'huge'", "smoke"]),
    (dict(batch_size=0), ["batch_size"]),
    (dict(max_epochs=0), ["max_epochs"]),
    (dict(optimizer="adam"), ["optimizer", "sgd"]),
    (dict(precision="fp16"), ["precision", "bf16"]),
    (dict(compile=True, compile_mode="graphs"), ["compile_mode", "reduce-overhead"]),
    (dict(compile_mode="reduce-overhead"), ["compile=True"]),
])
def test_bad_input_raises_config_error_saying_what_to_do(kwargs, words):
    base = dict(dataset="parity", model="fcn", lr=0.1, scale="smoke")
    with pytest.raises(ConfigError) as exc:
        make_config(**{**base, **kwargs})
    msg = str(exc.value)
    for w in words:
        assert w in msg, (w, msg)


def test_zero_bc_ratio_is_allowed():
    assert make_config("parity", lr=0.1, scale="smoke", dataset_params={"bc_ratio": 0.0}).bc_ratio == 0.0


def test_non_numeric_bc_ratio_raises_config_error():
    with pytest.raises(ConfigError, match="bias-conflicting ratio"):
        make_config("parity", lr=0.1, scale="smoke", dataset_params={"bc_ratio": "5%"})


def test_non_integer_seed_raises_config_error():
    with pytest.raises(ConfigError, match="seed"):
        make_config("parity", lr=0.1, seed="first", scale="smoke")


def test_config_is_immutable():
    cfg = make_config("parity", lr=0.1, scale="smoke")
    with pytest.raises(Exception):
        cfg.lr = 1.0


def test_adding_a_config_field_with_a_default_keeps_run_ids():
    """Stored runs stay found when RunConfig gains a field: only non-default fields are hashed."""
    import dataclasses

    from lrbook.config import RunConfig

    @dataclasses.dataclass(frozen=True)
    class Extended(RunConfig):
        new_option: bool = False

    cfg = make_config("parity", lr=0.1, scale="smoke")
    extended = Extended(**cfg.to_dict())
    assert extended.run_id == cfg.run_id
    assert dataclasses.replace(extended, new_option=True).run_id != cfg.run_id


# -------------------------------------------------------------------- names given to the notebooks


@pytest.mark.parametrize("names", [
    dict(dataset="all", model="all", scale="paper"),
    dict(dataset="parity,moon_star", scale="smoke"),
    dict(dataset=["colored_mnist", "double_mnist"], model="resnet18", scale=None),
    dict(),  # nothing given: nothing to check
])
def test_check_names_accepts_known_names_all_and_lists(names):
    from lrbook.config import check_names

    check_names(**names)


def test_check_names_lists_the_allowed_values_in_one_message():
    from lrbook.config import check_names

    with pytest.raises(ConfigError) as exc:
        check_names(dataset="nonsense", model="vit", scale="huge")
    msg = str(exc.value)
    assert "\n" not in msg
    assert "unknown dataset 'nonsense'; choose from parity, moon_star, colored_mnist" in msg
    assert "unknown model 'vit'; choose from fcn, cnn, resnet18, resnet50, wide_resnet101_2 (or 'all')" in msg
    assert "unknown scale 'huge'; choose from smoke, cpu, paper" in msg


def test_check_names_narrows_datasets_and_names_each_unknown_one():
    from lrbook.config import check_names

    with pytest.raises(ConfigError) as exc:
        check_names(dataset="parity, colored_mnist,mist", datasets=("parity", "moon_star"))
    assert str(exc.value) == ("unknown dataset 'colored_mnist', 'mist'; choose from parity, moon_star (or 'all')")
