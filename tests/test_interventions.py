"""Sec. 5's interventions (lrbook.objective, lrbook.interventions): focal loss, the L1 penalty and ASAM against their
papers' definitions on hand-computed cases; their config fields, what they reject, and how runs map
to interventions and back."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from lrbook.config import ConfigError, make_config
from lrbook.interventions import (fixed_lrs, hyperparameter_grid, intervention_config, intervention_runs,
                                  plain_runs)
from lrbook.objective import ASAM, focal_loss, l1_penalty
from lrbook.vocabulary import INTERVENTIONS


def test_focal_loss_matches_lin_et_al_on_a_hand_computed_case():
    # sample 1: equal logits, p_t = 1/3; sample 2: logit ln 4 on the true class, p_t = 4 / 6 = 2/3
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(4.0), 0.0, 0.0]])
    targets = torch.tensor([0, 0])
    # FL = -(1 - p_t)^2 log p_t: (2/3)^2 ln 3 = 0.488272, (1/3)^2 ln 1.5 = 0.045052
    expected = torch.tensor([4 / 9 * math.log(3.0), 1 / 9 * math.log(1.5)])
    assert torch.allclose(focal_loss(logits, targets, gamma=2.0), expected, atol=1e-6)
    assert focal_loss(logits, targets, gamma=2.0).mean().item() == pytest.approx(0.266662, abs=1e-6)


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_gamma_shrinks_easy_samples():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0)) * 4
    targets = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    ce = F.cross_entropy(logits, targets, reduction="none")
    assert torch.equal(focal_loss(logits, targets, gamma=0.0), ce)
    ratio = focal_loss(logits, targets, gamma=2.0) / ce
    p_t = torch.exp(-ce)
    assert torch.allclose(ratio, (1 - p_t) ** 2, atol=1e-5)  # easy samples (p_t near 1) count least


def test_focal_loss_gradient_stays_finite_for_small_gamma_on_a_fitted_sample():
    # Table S2 starts at gamma = 0.001; a confidently right sample has cross-entropy 0 in float32
    logits = torch.tensor([[200.0, 0.0, 0.0]], requires_grad=True)
    focal_loss(logits, torch.tensor([0]), gamma=0.001).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_l1_penalty_is_the_sum_of_absolute_parameters():
    params = [torch.tensor([1.0, -2.0]), torch.tensor([[0.5, -0.25]])]
    assert l1_penalty(params).item() == pytest.approx(3.75)


def test_asam_perturbation_matches_kwon_et_al_on_a_quadratic():
    # L(w) = (2 w1^2 + w2^2) / 2 at w = (1, -2): grad = (2, -2)
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    (0.5 * (2 * w[0] ** 2 + w[1] ** 2)).backward()
    rho, eta = 0.5, 0.01
    asam = ASAM([w], rho=rho, eta=eta)
    asam.perturb()
    # eps = rho T^2 g / ||T g||, T = |w| + eta = (1.01, 2.01)
    t, g = (1.01, 2.01), (2.0, -2.0)
    norm = math.hypot(t[0] * g[0], t[1] * g[1])
    eps = [rho * t[i] ** 2 * g[i] / norm for i in range(2)]  # (0.226740, -0.898004)
    assert eps == pytest.approx([0.226740, -0.898004], abs=1e-6)
    assert w.detach().tolist() == pytest.approx([1.0 + eps[0], -2.0 + eps[1]], abs=1e-6)
    asam.restore()
    assert w.detach().tolist() == [1.0, -2.0]


def test_asam_step_descends_with_the_gradient_at_the_perturbed_point():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    asam = ASAM([w], rho=0.5)

    def loss():
        return 0.5 * (2 * w[0] ** 2 + w[1] ** 2)

    loss().backward()
    asam.perturb()
    perturbed = w.detach().clone()
    opt.zero_grad()
    loss().backward()
    asam.restore()
    opt.step()
    expected = torch.tensor([1.0, -2.0]) - 0.1 * torch.tensor([2.0, 1.0]) * perturbed
    assert torch.allclose(w.detach(), expected)


# ------------------------------------------------------------------------------------------ configs


def test_new_fields_leave_every_default_run_id_unchanged():
    cfg = make_config("colored_mnist", "fcn", lr=0.001, scale="smoke")
    assert cfg.to_dict()["l1_penalty"] == 0.0 and cfg.loss == "cross_entropy" and cfg.asam_rho == 0.0
    import dataclasses
    import hashlib
    import json

    # the id as computed before the fields existed: hash of the non-default fields of the old set
    old_fields = {f.name for f in dataclasses.fields(cfg)} - {"l1_penalty", "loss", "focal_gamma", "asam_rho", "asam_eta"}
    defaults = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                for f in dataclasses.fields(cfg)}
    content = {k: v for k, v in cfg.to_dict().items() if k in old_fields and (k not in defaults or v != defaults[k])}
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"))
    assert cfg.run_id == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert intervention_config("colored_mnist", "fcn", "l1", 1e-4, scale="smoke").run_id != cfg.run_id


@pytest.mark.parametrize("kwargs, words", [
    (dict(optimizer="adam"), ["unknown optimizer 'adam'", "sgd", "asam"]),
    (dict(loss="hinge"), ["unknown loss 'hinge'", "cross_entropy", "focal"]),
    (dict(loss="focal", focal_gamma=-1.0), ["focal_gamma must be >= 0"]),
    (dict(optimizer="asam", asam_rho=-0.1), ["asam_rho must be >= 0"]),
    (dict(optimizer="asam"), ["asam_rho > 0", "optimizer='sgd'"]),
    (dict(asam_rho=0.5), ["no effect", "optimizer='asam'"]),
    (dict(focal_gamma=2.0), ["no effect", "loss='focal'"]),
    (dict(momentum=1.0), ["momentum must be in [0, 1)"]),
    (dict(momentum=-0.1), ["momentum must be in [0, 1)"]),
    (dict(batch_size=0), ["batch_size"]),
    (dict(batch_size=2.5), ["batch_size must be a whole number"]),
    (dict(l1_penalty=-1e-4), ["l1_penalty must be >= 0"]),
    (dict(weight_decay=-1e-4), ["weight_decay must be >= 0"]),
    (dict(l1_penalty=float("nan")), ["l1_penalty must be a finite number"]),
    (dict(optimizer="asam", asam_rho=0.5, compile=True, compile_mode="reduce-overhead"),
     ["CUDA graphs", "compile_mode='default'"]),
])
def test_bad_intervention_settings_fail_at_once_saying_what_to_do(kwargs, words):
    with pytest.raises(ConfigError) as exc:
        make_config("colored_mnist", "fcn", lr=0.001, scale="smoke", **kwargs)
    for w in words:
        assert w in str(exc.value), (w, str(exc.value))


def test_unknown_intervention_fails_naming_the_known_ones():
    with pytest.raises(ConfigError, match="unknown intervention 'dropout'; choose one of lr, high_lr_l2"):
        intervention_config("colored_mnist", "fcn", "dropout", 0.1)


def test_grids_span_table_s2_and_batch_size_is_one_over_b():
    assert hyperparameter_grid("momentum", "colored_mnist") == [0.1, 0.71, 0.91, 0.97, 0.99]
    bs = hyperparameter_grid("batch_size", "colored_mnist")
    assert [round(1 / v) for v in bs] == [100, 42, 17, 7, 3]
    assert hyperparameter_grid("l1", "double_mnist")[0] == 1e-6  # Double MNIST's own L1 range
    assert hyperparameter_grid("asam", "colored_mnist", n=4) == [0.01, 0.1, 1.0, 10.0]


def test_interventions_run_at_the_low_lr_and_high_lr_l2_at_the_high_one():
    assert fixed_lrs("colored_mnist", "resnet18") == (0.001, 0.15)  # Table S2's LR row
    assert fixed_lrs("colored_mnist", "fcn") == (0.001, 0.5)  # Table S1's FCN row
    cases = {"momentum": dict(lr=0.001, momentum=0.1), "batch_size": dict(lr=0.001, batch_size=10),
             "l1": dict(lr=0.001, l1_penalty=0.1), "l2": dict(lr=0.001, weight_decay=0.1),
             "high_lr_l2": dict(lr=0.15, weight_decay=0.1), "focal_loss": dict(lr=0.001, loss="focal", focal_gamma=0.1),
             "asam": dict(lr=0.001, optimizer="asam", asam_rho=0.1), "lr": dict(lr=0.1)}
    for name, fields in cases.items():
        cfg = intervention_config("colored_mnist", "resnet18", name, 0.1, scale="smoke")
        assert {k: getattr(cfg, k) for k in fields} == fields, name


def test_the_cpu_fcn_runs_its_interventions_at_the_lowest_lr_it_trains_to_completion():
    # Table S1's low end (0.001) stops at the 300-epoch cap at cpu scale; the paper's scale keeps it
    assert fixed_lrs("colored_mnist", "fcn", "cpu") == (0.05, 0.5)
    assert fixed_lrs("double_mnist", "fcn", "cpu") == (0.02, 0.5)
    assert fixed_lrs("colored_mnist", "fcn", "smoke") == (0.001, 0.5)
    assert intervention_config("colored_mnist", "fcn", "momentum", 0.9, scale="cpu").lr == 0.05
    assert intervention_config("colored_mnist", "fcn", "momentum", 0.9, scale="paper").lr == 0.001
    assert intervention_config("colored_mnist", "fcn", "high_lr_l2", 1e-4, scale="cpu").lr == 0.5
    # each scale's runs are read at that scale's own low LR
    rows = [{**make_config("colored_mnist", "fcn", lr=lr, momentum=0.9, scale=scale).to_dict(), "run_id": f"{scale}{lr}"}
            for scale in ("cpu", "paper") for lr in (0.001, 0.05)]
    runs = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, dict)} for r in rows])
    assert set(intervention_runs(runs, "colored_mnist", "fcn", "momentum").run_id) == {"cpu0.05", "paper0.001"}


def test_each_run_belongs_to_its_own_intervention():
    rows = []
    for name in INTERVENTIONS:
        for value in hyperparameter_grid(name, "colored_mnist", n=3):
            cfg = intervention_config("colored_mnist", "resnet18", name, value, scale="smoke")
            rows.append({**{k: v for k, v in cfg.to_dict().items() if not isinstance(v, dict)},
                         "run_id": cfg.run_id, "tag": name})
    old = make_config("colored_mnist", "resnet18", lr=0.02, scale="smoke").to_dict()
    for key in ("l1_penalty", "loss", "focal_gamma", "asam_rho", "asam_eta"):  # a record stored before the fields
        old.pop(key)
    rows.append({**{k: v for k, v in old.items() if not isinstance(v, dict)}, "run_id": "old", "tag": "lr"})
    runs = pd.DataFrame(rows).drop_duplicates("run_id")
    for name in INTERVENTIONS:
        got = intervention_runs(runs, "colored_mnist", "resnet18", name)
        want = set(runs[runs.tag == name].run_id)
        if name == "batch_size":  # batch 100 at the low LR is also the LR sweep's first run
            want.add(runs[(runs.tag == "lr") & (runs.lr == 0.001)].run_id.iloc[0])
        assert set(got.run_id) == want, name
        if name != "lr":
            assert sorted(got.hp) == pytest.approx(sorted(hyperparameter_grid(name, "colored_mnist", n=3))), name
    assert set(plain_runs(runs).run_id) == set(runs[runs.tag == "lr"].run_id)


# ------------------------------------------------------------------------------ pages (Fig. 6, 9, Table S2)


def _put(store, cfg, acc, prun, csi, status="converged"):
    epochs = {"loss": [1.0, 0.1], "train_acc": [0.9, 1.0], "bc_loss_ratio_mean": [0.1, 0.3],
              "bc_loss_ratio_max": [0.2, 0.5 + acc], "ba_loss": [0.5, 0.01], "bc_loss": [3.0, 0.5], "logit_norm": [1, 5]}
    store.put({"run_id": cfg.run_id, "config": cfg.to_dict(), "status": status, "epochs": 2, "steps": 20,
               "metrics": {"test_acc": acc, "prunability": prun, "csi": csi, "train_acc": 1.0, "max_bc_loss_ratio": 0.6},
               "curves": {"per_epoch": epochs, "prune_fractions": [0.5], "prune_structured": [0.4],
                          "prune_magnitude": [0.4]}})


@pytest.fixture
def store(tmp_path):
    from lrbook import ResultStore

    s = ResultStore(tmp_path / "store")
    cell = ("colored_mnist", "resnet18")
    for i, lr in enumerate((0.001, 0.01, 0.15)):  # LR raises all three variables
        for seed in (0, 1):
            _put(s, make_config(*cell, lr=lr, seed=seed, scale="smoke"), 0.6 + 0.1 * i + 0.01 * seed, 0.3 + 0.1 * i, 0.4 + 0.1 * i)
    for i, m in enumerate((0.1, 0.9, 0.99)):  # momentum raises accuracy only; prunability falls
        for seed in (0, 1):
            cfg = intervention_config(*cell, "momentum", m, seed=seed, scale="smoke")
            _put(s, cfg, 0.6 + 0.1 * i + 0.01 * seed, 0.5 - 0.1 * i, 0.4 + 0.001 * seed * (-1) ** i)
    _put(s, intervention_config(*cell, "asam", 1.0, scale="smoke"), 0.1, 0.1, 0.1, status="diverged")
    return s


def test_lr_pages_leave_the_interventions_out(store):
    from lrbook.selection import select_runs

    runs = select_runs(store.to_frame(), ("colored_mnist", "resnet18"))
    assert len(runs) == 6 and set(runs.momentum) == {0.0}


def test_fig6_table_s2_beside_ours_and_the_verdict(store):
    import matplotlib

    matplotlib.use("Agg")
    from lrbook import figures
    from lrbook.compare import compare_interventions, lr_most_consistent

    card = compare_interventions(store.to_frame()[lambda f: f.scale == "smoke"], "colored_mnist", "resnet18")
    lr = card[card.intervention == "Learning Rate"].set_index("variable")
    assert list(lr.rises) == ["yes", "yes", "yes"] and lr.spearman.iloc[1] == pytest.approx(1.0)
    assert lr.paper_hp_max.iloc[0] == 0.15 and lr.paper_max.iloc[0] == 92.203  # Table S2, in the paper's units
    mom = card[card.intervention == "Momentum"].set_index("variable")
    assert mom.loc["Unbiased test acc.", "rises"] == "yes" and mom.loc["Prunability", "rises"] == "no"
    assert mom.loc["Unbiased test acc.", "ours_max"] == pytest.approx(80.5)
    assert card[card.intervention == "(ASAM)"].runs.tolist() == [0, 0, 0]  # the diverged run is left out
    verdict = lr_most_consistent(card)
    assert verdict == {"agrees": "yes", "consistent": {"Learning Rate": 3, "Momentum": 1}, "better": [],
                       "too_few": []}

    fig = figures.intervention_panels(store.to_frame(), ("colored_mnist", "resnet18"))
    assert "LR 0.001 for every intervention, LR 0.15 for High LR + L2" in fig.caption
    assert "Scale smoke, 13 runs (Learning Rate 6, Batch Size 2, Momentum 6, (ASAM) 1), seeds 0, 1; left out: (ASAM) 1 diverged.*" in fig.caption
    assert "**agrees**" in fig.notes[0]
    table = next(iter(fig.tables.values()))
    assert table[table.intervention == "Momentum"]["hyperparameter: ours (paper)"].iloc[0] == "0.1 to 0.99 (0.1 to 0.99)"
    fig.plot(fig.data)


def test_an_intervention_over_two_values_is_shown_not_scored(tmp_path):
    """L1 at two values, each variable higher at the second: Spearman over the 2 + 2 runs is
    +0.894 (ranks 1.5, 1.5, 3.5, 3.5 against 1, 2, 3, 4), an interval above 0, yet two values show
    no trend. Counted, L1 (3 of 3) would beat LR (1 of 3: accuracy only) and the verdict would be
    "disagrees"; with fewer than three values it is shown and left out of the verdict, which weighs LR
    against momentum (three values, accuracy falls) instead."""
    from lrbook import ResultStore, figures
    from lrbook.compare import TOO_FEW_VALUES, compare_interventions, lr_most_consistent

    s = ResultStore(tmp_path / "store")
    cell = ("colored_mnist", "resnet18")
    for i, lr in enumerate((0.001, 0.01, 0.15)):
        for seed in (0, 1):
            _put(s, make_config(*cell, lr=lr, seed=seed, scale="smoke"), 0.6 + 0.1 * i + 0.01 * seed,
                 0.5 + 0.01 * seed, 0.4 - 0.01 * seed)
    for i, penalty in enumerate((1e-5, 1e-4)):
        for seed in (0, 1):
            _put(s, intervention_config(*cell, "l1", penalty, seed=seed, scale="smoke"), 0.6 + 0.1 * i + 0.01 * seed,
                 0.3 + 0.1 * i + 0.01 * seed, 0.4 + 0.1 * i + 0.01 * seed)
    for i, m in enumerate((0.1, 0.5, 0.9)):  # a rival scored over three values: accuracy falls
        _put(s, intervention_config(*cell, "momentum", m, scale="smoke"), 0.8 - 0.1 * i, 0.5, 0.4)
    card = compare_interventions(s.to_frame(), *cell)
    l1 = card[card.intervention == "L1 Regularization"]
    assert list(l1["values"]) == [2, 2, 2] and list(l1.rises) == [TOO_FEW_VALUES] * 3
    assert l1.spearman.tolist() == pytest.approx([0.8944] * 3, abs=1e-4) and (l1.ci_low > 0).all()
    verdict = lr_most_consistent(card)
    assert verdict == {"agrees": "yes", "consistent": {"Learning Rate": 1, "Momentum": 0}, "better": [],
                       "too_few": ["L1 Regularization"]}
    fig = figures.intervention_panels(s.to_frame(), cell)
    assert "Not scored, with fewer than 3 hyperparameter values that count: L1 Regularization" in fig.notes[0]
    table = next(iter(fig.tables.values()))
    assert table[table.intervention == "L1 Regularization"]["values (runs)"].tolist() == ["2 (4)"] * 3


def test_a_cell_whose_runs_all_count_for_nothing_renders_unclear(tmp_path):
    """Both momentum runs diverged and there is no LR sweep: no variable is measured, so the table has
    no Spearman column and the verdict is "unclear" (page 04's smoke run on real MNIST, whose runs are
    under-trained, reaches this case)."""
    from lrbook import ResultStore, figures
    from lrbook.compare import compare_interventions, lr_most_consistent

    s = ResultStore(tmp_path / "store")
    cell = ("colored_mnist", "fcn")
    for m in (0.5, 0.9):
        _put(s, intervention_config(*cell, "momentum", m, scale="smoke"), 0.1, 0.1, 0.1, status="diverged")
    card = compare_interventions(s.to_frame(), *cell)
    assert "spearman" not in card and card.runs.sum() == 0
    assert lr_most_consistent(card) == {"agrees": "unclear", "consistent": {}, "better": [], "too_few": []}
    fig = figures.intervention_panels(s.to_frame(), cell)
    assert "cannot be tested yet" in fig.notes[0] and "Momentum 0.5, 0.9 diverged" in fig.caption


def test_fig6_draws_one_prunability_reading_in_every_panel(tmp_path):
    """The LR sweep lacks the global reading (trained before weights were kept) and the momentum runs
    have it: the whole cell is drawn with the per-layer reading, the one its table scores."""
    import matplotlib

    matplotlib.use("Agg")
    from lrbook import ResultStore, figures

    s = ResultStore(tmp_path / "store")
    cell = ("colored_mnist", "resnet18")
    for i, lr in enumerate((0.001, 0.01, 0.15)):
        _put(s, make_config(*cell, lr=lr, scale="smoke"), 0.6 + 0.1 * i, 0.3, 0.4)
    for i, m in enumerate((0.1, 0.9)):
        cfg = intervention_config(*cell, "momentum", m, scale="smoke")
        _put(s, cfg, 0.6 + 0.1 * i, 0.5, 0.4)
        record = s.get(cfg.run_id)
        record["metrics"]["prunability_global"] = 0.9 - 0.1 * i
        s.put(record)
    _put(s, intervention_config(*cell, "batch_size", 0.1, scale="smoke"), 0.7, 0.3, 0.4)  # batch 10
    fig = figures.intervention_panels(s.to_frame(), cell)
    assert "prunability" in fig.data["metrics"] and "prunability_global" not in fig.data["metrics"]
    drawn = fig.plot(fig.data)
    legends = [{t.get_text() for t in ax.get_legend().get_texts()} for ax in drawn.axes if ax.get_legend()]
    assert len(legends) == 3 and all("Prunability" in labels for labels in legends)  # LR, batch size, momentum
    assert "No stored runs of this intervention." in {t.get_text() for t in drawn.axes[1].texts}  # High LR + L2
    momentum = drawn.axes[3]
    assert [t.get_text() for t in momentum.get_xticklabels()] == ["0.1", "0.9"]
    assert momentum.get_xticks() == pytest.approx([1 / 0.9, 10.0])
    assert [t.get_text() for t in drawn.axes[2].get_xticklabels()] == ["1/100", "1/10"]  # batch size, as 1 / B


def test_fig6_without_runs_says_so_and_shows_the_paper_table(tmp_path):
    from lrbook import ResultStore, figures

    fig = figures.intervention_panels(ResultStore(tmp_path / "empty").to_frame(), ("double_mnist", "resnet18"))
    assert fig.plot is None and "No stored runs of the interventions for Double MNIST / ResNet18" in fig.notes[0]
    assert set(next(iter(fig.tables.values())).dataset) == {"Double MNIST"}


def test_fig9_plots_each_values_per_epoch_dynamics(store):
    import matplotlib

    matplotlib.use("Agg")
    from lrbook import figures

    fig = figures.intervention_dynamics(store, store.to_frame(), ("colored_mnist", "resnet18"))
    assert [name for name, _ in fig.data] == ["lr", "batch_size", "momentum"]  # batch 100 at LR 0.001 is a run too
    momentum = dict(fig.data)["momentum"]
    assert sorted(momentum) == [0.1, 0.9, 0.99] and all(len(v) == 2 for v in momentum.values())
    table = next(iter(fig.tables.values()))
    assert table[table.intervention == "Momentum"]["unbiased acc. (%)"].tolist() == pytest.approx([60.5, 70.5, 80.5])
    drawn = fig.plot(fig.data)
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in drawn.axes if ax.get_legend()]
    assert legends[1:] == [["1/100"], ["0.1", "0.9", "0.99"]]  # batch size as 1 / B, momentum as is


def test_hyperparameter_value_labels():
    from lrbook.plots import hyperparameter_value_label

    assert [hyperparameter_value_label("batch_size", 1 / b) for b in (100, 42, 3)] == ["1/100", "1/42", "1/3"]
    assert hyperparameter_value_label("l2", 0.0005) == "0.0005" and hyperparameter_value_label("asam", 2.0) == "2"


def test_training_objective_adds_the_l1_penalty_and_the_focal_weight():
    from lrbook.objective import training_objective

    model = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, -0.25]]))  # sum |w| = 3.75
    ce = torch.tensor([math.log(3.0), math.log(1.5)])
    assert training_objective(make_config("colored_mnist", "fcn", lr=0.001, scale="smoke"), model) is None
    l1 = training_objective(make_config("colored_mnist", "fcn", lr=0.001, scale="smoke", l1_penalty=0.1), model)
    assert l1(ce).item() == pytest.approx((math.log(3.0) + math.log(1.5)) / 2 + 0.375)
    l1(ce).backward()
    assert torch.allclose(model.weight.grad, torch.tensor([[0.1, -0.1], [0.1, 0.0], [0.0, -0.1]]))  # 0.1 sign(w)
    focal = training_objective(make_config("colored_mnist", "fcn", lr=0.001, scale="smoke", loss="focal",
                                           focal_gamma=2.0), model)
    assert focal(ce).item() == pytest.approx(0.266662, abs=1e-6)  # the hand-computed case above


def _trained_weights(**overrides):
    """A 3-epoch smoke parity FCN trained with `overrides`; its final weights, flattened."""
    from lrbook.config import make_config
    from lrbook.data import dataset_for
    from lrbook.models import build_model
    from lrbook.train import train

    cfg = make_config("parity", "fcn", lr=0.1, seed=0, scale="smoke", max_epochs=3, attribution_n=0, **overrides)
    data = dataset_for(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes, **cfg.model_params)
    outcome = train(model, data, cfg)
    return torch.cat([p.detach().flatten() for p in model.parameters()]), outcome


def test_training_honours_each_intervention():
    plain, plain_out = _trained_weights()
    again, _ = _trained_weights()
    assert torch.equal(plain, again)
    focal0, focal0_out = _trained_weights(loss="focal", focal_gamma=0.0)
    assert torch.allclose(focal0, plain, atol=1e-6)  # gamma 0 is cross-entropy
    for kwargs in (dict(loss="focal", focal_gamma=2.0), dict(l1_penalty=1e-3), dict(optimizer="asam", asam_rho=0.5)):
        changed, outcome = _trained_weights(**kwargs)
        assert not torch.allclose(changed, plain, atol=1e-4), kwargs
        assert outcome.curves["loss"] and all(map(math.isfinite, outcome.curves["loss"]))
    # the recorded per-step statistics stay cross-entropy: focal gamma 0 logs plain's loss curve
    assert focal0_out.curves["loss"] == pytest.approx(plain_out.curves["loss"], abs=1e-6)


def test_l1_shrinks_the_weights_it_penalises():
    plain, _ = _trained_weights()
    l1, _ = _trained_weights(l1_penalty=1e-2)
    assert l1.abs().sum() < plain.abs().sum()


def test_the_caption_names_each_value_left_out_and_why():
    from lrbook import prose

    def frame(rows):
        return pd.DataFrame(rows, columns=["run_id", "seed", "hp", "status", "train_acc"])

    per = {"lr": frame([("a", 0, 0.1, "converged", 1.0), ("b", 0, 0.5, "converged", 1.0)]),
           "momentum": frame([("c", 0, 0.1, "converged", 1.0), ("d", 1, 0.97, "diverged", 0.1),
                              ("g", 0, 0.97, "converged", 1.0), ("e", 0, 0.99, "diverged", 0.1),
                              ("f", 0, 0.71, "max_epochs", 0.95)]),
           "l2": frame([])}
    shown = {"lr": per["lr"][:1], "momentum": per["momentum"].iloc[[0, 2]], "l2": per["l2"]}
    assert prose.interventions_phrase("cpu", per, shown) == (
        "*Scale cpu, 7 runs (Learning Rate 2, Momentum 5), seeds 0, 1; left out: Learning Rate 0.5 beyond the "
        "LR range; Momentum 0.97 (1 of 2 runs), 0.99 diverged; Momentum 0.71 under-trained.*")


def test_status_page_scores_sec5_from_the_interventions_runs(store, tmp_path):
    """The status rows of Fig. 6, 9, 20 and Table S2 take page 04's verdict per cell: in `store` LR
    raises all three variables and momentum one, so they agree; with momentum raising all three and
    LR only accuracy, they disagree and name momentum. Coverage counts, per intervention, the values
    with 3 counted seeds: momentum's two values with seeds 0, 1, 2 count; a value whose third seed
    diverged does not, nor does a diverged value."""
    from lrbook import ResultStore
    from lrbook.status import intervention_coverage, status_table

    rows = status_table(store).set_index("item")
    for item in ("Fig. 6, 9, 20", "Table S2"):
        row = rows.loc[item]
        assert (row.status, row.verdict, row.scale, row.runs) == ("partial", "agrees", "smoke", 13)
        assert row.verdict_note.startswith("Colored MNIST/ResNet18 (smoke): no other intervention raises more than LR "
                                           "(variables that rise, of 3: Learning Rate 3, Momentum 1)")
        assert row.verdict_note.endswith("not yet compared on the paper's MNIST-CIFAR/ResNet18, Double MNIST/ResNet18")
        assert "no intervention runs yet for the paper's MNIST-CIFAR/ResNet18, Double MNIST/ResNet18" in row.note

    s = ResultStore(tmp_path / "rivals")
    cell = ("colored_mnist", "fcn")
    for i, lr in enumerate((0.05, 0.1, 0.5)):  # LR raises accuracy only
        for seed in (0, 1, 2):
            _put(s, make_config(*cell, lr=lr, seed=seed, scale="smoke"), 0.6 + 0.1 * i + 0.01 * seed, 0.5, 0.4)
    for i, m in enumerate((0.1, 0.5, 0.9)):  # momentum raises all three
        for seed in (0, 1, 2):
            status = "diverged" if (m == 0.9 and seed == 2) else "converged"
            _put(s, intervention_config(*cell, "momentum", m, seed=seed, scale="smoke"), 0.6 + 0.1 * i + 0.01 * seed,
                 0.3 + 0.1 * i + 0.01 * seed, 0.3 + 0.1 * i + 0.01 * seed, status=status)
    _put(s, intervention_config(*cell, "asam", 0.5, scale="smoke"), 0.1, 0.1, 0.1, status="diverged")
    cov = intervention_coverage(s.to_frame(), *cell)
    assert cov["values"]["momentum"] == 2 and cov["values"]["lr"] == 3 and cov["values"]["asam"] == 0
    assert cov["runs"] == 19 and not cov["complete"] and cov["agrees"]["better"] == ["Momentum"]
    row = status_table(s).set_index("item").loc["Fig. 6, 9, 20"]
    assert row.verdict == "disagrees" and "Colored MNIST/FCN (smoke): Momentum raises more than LR" in row.verdict_note
    assert row.note.startswith("Colored MNIST/FCN (smoke): 0/8 interventions with >= 4 values x 3 seeds")
    assert "no intervention runs yet for the paper's Colored MNIST/ResNet18, MNIST-CIFAR/ResNet18" in row.note


def test_the_verdict_sentence_names_the_interventions_that_beat_lr():
    from lrbook.prose import consistency_sentence

    one = {"agrees": "no", "consistent": {"Learning Rate": 2, "(ASAM)": 3}, "better": ["(ASAM)"], "too_few": []}
    text = consistency_sentence(("double_mnist", "fcn"), one)
    assert text.startswith("Double MNIST / FCN: variables that rise with each intervention's hyperparameter: "
                           "Learning Rate 2 of 3; (ASAM) 3 of 3.")
    assert "(ASAM) raises more of them than LR: this **disagrees**" in text
    two = one | {"consistent": {"Learning Rate": 1, "Momentum": 2, "(ASAM)": 3}, "better": ["Momentum", "(ASAM)"]}
    assert "Momentum, (ASAM) raise more of them than LR" in consistency_sentence(("double_mnist", "fcn"), two)


def test_the_verdict_is_checked_by_leaving_out_one_value_at_a_time(tmp_path):
    """LR over 4 values raises accuracy only (1 of 3); momentum over 3 values raises accuracy and CSI
    (2 of 3: each value's two seeds lie above the last value's, so every bootstrap Spearman is +1); L2
    over 3 values raises nothing. Momentum beats LR: "disagrees". Leaving out one momentum value leaves
    it two, too few to score, and LR then beats L2: "agrees", for each of the 3 momentum values. No LR
    or L2 value changes it: LR keeps 3 rising accuracies and a prunability and CSI that go up and down."""
    from lrbook import ResultStore, figures
    from lrbook.compare import verdict_sensitivity
    from lrbook.prose import sensitivity_sentence

    s = ResultStore(tmp_path / "store")
    cell = ("colored_mnist", "resnet18")
    for seed in (0, 1):
        for i, lr in enumerate((0.001, 0.01, 0.05, 0.15)):
            zigzag = 0.4 + 0.1 * (i % 2 == 0) + 0.01 * seed
            _put(s, make_config(*cell, lr=lr, seed=seed, scale="smoke"), 0.5 + 0.1 * i + 0.01 * seed, zigzag, zigzag)
        for i, m in enumerate((0.1, 0.5, 0.9)):
            _put(s, intervention_config(*cell, "momentum", m, seed=seed, scale="smoke"), 0.5 + 0.1 * i + 0.01 * seed,
                 0.4 + 0.1 * (i == 1) + 0.01 * seed, 0.3 + 0.1 * i + 0.01 * seed)
        for i, wd in enumerate((1e-4, 1e-3, 1e-2)):
            _put(s, intervention_config(*cell, "l2", wd, seed=seed, scale="smoke"), 0.9 - 0.1 * i + 0.01 * seed,
                 0.4 + 0.01 * seed, 0.5 - 0.1 * i + 0.01 * seed)
    result = verdict_sensitivity(s.to_frame(), *cell)
    # values tried: LR 4, momentum 3, L2 3, and batch size 1 (the LR sweep's run at the fixed LR, batch 100)
    assert result == {"agrees": "no", "checks": 11,
                      "flips": [("Momentum", 0.1, "yes"), ("Momentum", 0.5, "yes"), ("Momentum", 0.9, "yes")]}
    assert sensitivity_sentence(result) == (
        "The verdict is fragile: leaving out a single hyperparameter value (all its seeds) changes it for 3 of the "
        "11 values: without Momentum 0.1 it **agrees**; without Momentum 0.5 it **agrees**; without Momentum 0.9 "
        "it **agrees**.")
    assert figures.intervention_panels(s.to_frame(), cell).notes[0].endswith(sensitivity_sentence(result))
    steady = {"agrees": "yes", "checks": 11, "flips": []}
    assert sensitivity_sentence(steady) == "Leaving out any one of the 11 hyperparameter values (all its seeds) keeps this verdict."
    assert sensitivity_sentence({"agrees": "unclear", "checks": 0, "flips": []}) == ""
    from lrbook.status import status_table

    note = status_table(s).set_index("item").loc["Fig. 6, 9, 20"].verdict_note
    assert note.startswith("Colored MNIST/ResNet18 (smoke): Momentum raises more than LR (variables that rise, of 3: "
                           "Learning Rate 1, Momentum 2, L2 Regularization 0), fragile (without Momentum "
                           "0.1 it agrees; without Momentum 0.5 it agrees; without Momentum 0.9 it agrees)")
