"""lrbook.train and lrbook.experiment: SGD until 100% train accuracy, divergence, caps, records."""
from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrbook.config import make_config
from lrbook.data import SpuriousDataset
from lrbook.experiment import run_experiment
from lrbook.metrics import PRUNE_FRACTIONS, predict
from lrbook.models import FCN
from lrbook.train import CURVE_KEYS, checkpoint_steps, resolve_device, train


def toy_data(n=200, n_bc=10, seed=0):
    """Linearly separable 5-d problem (sign of x0), with a bias label that disagrees on n_bc samples."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 5, generator=g)
    x[:, 0] = (2 * y - 1) * (1 + x[:, 0].abs())
    b = y.clone()
    b[:n_bc] = 1 - b[:n_bc]
    return SpuriousDataset("toy", x, y, b, x.clone(), y.clone(), b.clone(), num_classes=2)


def toy_cfg(**over):
    kw = dict(lr=0.5, scale="smoke", attribution_n=0, max_epochs=50)
    kw.update(over)
    return make_config("parity", **kw)


def test_train_reaches_100_percent_and_stops():
    data = toy_data()
    torch.manual_seed(0)
    model = FCN(5, 2, width=32, depth=2)
    out = train(model, data, toy_cfg())
    assert out.status == "converged"
    acc = out.curves["train_acc"]
    assert acc[-1] == 1.0 and all(a < 1.0 for a in acc[:-1]), "stops after the first perfect epoch"
    assert out.epochs == len(acc) and out.steps == out.epochs * 2  # 200 samples, batch 100
    assert set(out.curves) == set(CURVE_KEYS)
    assert all(len(v) == out.epochs for v in out.curves.values())
    assert bool((predict(model, data.x_train) == data.y_train).all()), "the trained model fits every sample"
    assert model.training


def test_train_is_deterministic_in_seed():
    data = toy_data()
    outs = []
    for seed in (3, 3, 4):
        torch.manual_seed(0)
        model = FCN(5, 2, width=32, depth=2)
        outs.append((train(model, data, toy_cfg(seed=seed, lr=0.05, max_epochs=4)), model))
    (a, ma), (b, mb), (c, _) = outs
    assert a.curves == b.curves
    assert all(torch.equal(p, q) for p, q in zip(ma.parameters(), mb.parameters()))
    assert a.curves["loss"] != c.curves["loss"], "the seed sets the minibatch order"


def test_first_epoch_quantities_match_their_definitions():
    """One minibatch per epoch and a negligible LR: epoch 1's logged values are those of the
    initial model, computed by hand here (spec 4, Mechanism: BC loss ratio = BC CE sum / CE sum)."""
    data = toy_data(n=60, n_bc=7)
    torch.manual_seed(1)
    model = FCN(5, 2, width=16, depth=2)
    init = copy.deepcopy(model)
    out = train(model, data, toy_cfg(lr=1e-12, batch_size=60, max_epochs=1))
    assert out.status == "max_epochs" and out.epochs == 1 and out.steps == 1
    with torch.no_grad():
        logits = init(data.x_train)
    ce = F.cross_entropy(logits, data.y_train, reduction="none")
    bc = data.y_train != data.b_train
    c = out.curves
    assert c["loss"][0] == pytest.approx(ce.mean().item(), rel=1e-5)
    assert c["bc_loss_ratio_mean"][0] == pytest.approx((ce[bc].sum() / ce.sum()).item(), rel=1e-5)
    assert c["bc_loss_ratio_max"][0] == pytest.approx(c["bc_loss_ratio_mean"][0])
    assert c["ba_loss"][0] == pytest.approx(ce[~bc].mean().item(), rel=1e-5)
    assert c["bc_loss"][0] == pytest.approx(ce[bc].mean().item(), rel=1e-5)
    assert c["logit_norm"][0] == pytest.approx(logits.norm(dim=1).mean().item(), rel=1e-5)
    assert c["train_acc"][0] == pytest.approx((logits.argmax(1) == data.y_train).float().mean().item())
    assert out.max_bc_loss_ratio == pytest.approx(c["bc_loss_ratio_max"][0])


def test_max_epochs_cap():
    cfg = make_config("parity", lr=0.01, scale="smoke", max_epochs=2, attribution_n=0)
    rec = run_experiment(cfg, device="cpu")
    assert rec["status"] == "max_epochs" and rec["epochs"] == 2 and rec["steps"] == 2 * 4
    assert all(len(rec["curves"]["per_epoch"][k]) == 2 for k in CURVE_KEYS)
    assert rec["metrics"] is not None  # a capped run is still evaluated


def test_divergence_is_a_recorded_result(tmp_store):
    cfg = make_config("parity", lr=1e6, scale="smoke")
    rec = run_experiment(cfg, store=tmp_store, device="cpu")
    assert rec["status"] == "diverged"
    assert rec["metrics"] is None
    assert rec["epochs"] == 1
    assert not math.isfinite(rec["curves"]["per_epoch"]["loss"][-1])
    stored = tmp_store.get(cfg.run_id)
    assert stored["status"] == "diverged" and stored["metrics"] is None
    assert stored["curves"]["per_epoch"]["loss"][-1] is None  # NaN stored as JSON null


@pytest.fixture(scope="module")
def converged_record():
    """An easy parity task (core = parity of 2 bits, spurious = 1 bit, no BC samples): converges."""
    cfg = make_config("parity", lr=1.0, seed=0, scale="smoke",
                      dataset_params={"bc_ratio": 0.0, "core_bits": 2, "spurious_bits": 1})
    return cfg, run_experiment(cfg, device="cpu")


def test_run_experiment_converges_and_records_everything(converged_record):
    cfg, rec = converged_record
    assert rec["status"] == "converged"
    assert rec["run_id"] == cfg.run_id and rec["config"] == cfg.to_dict()
    per_epoch = rec["curves"]["per_epoch"]
    assert len(per_epoch["train_acc"]) == rec["epochs"] and per_epoch["train_acc"][-1] == 1.0
    assert rec["steps"] == rec["epochs"] * 4
    assert rec["bc_ratio_drawn"] == 0.0
    m = rec["metrics"]
    assert m["train_acc"] == 1.0
    for k in ("test_acc", "test_ba_acc", "test_bc_acc", "test_worst_group_acc", "act_compressibility",
              "act_sparsity", "act_pq_index", "param_compressibility"):
        assert 0.0 <= m[k] <= 1.0, k
    assert m["test_worst_group_acc"] <= min(m["test_ba_acc"], m["test_bc_acc"]) + 1e-9
    assert rec["curves"]["prune_fractions"] == list(PRUNE_FRACTIONS)
    assert len(rec["curves"]["prune_structured"]) == len(PRUNE_FRACTIONS) == 9
    expect = sum(a / m["test_acc"] for a in rec["curves"]["prune_structured"]) / 9
    assert m["prunability"] == pytest.approx(expect)
    assert m["max_bc_loss_ratio"] == pytest.approx(max(per_epoch["bc_loss_ratio_max"]))
    for k in ("csi", "bsi", "class_separation"):
        assert math.isfinite(m[k]), k
    prov = rec["provenance"]
    assert {"device", "versions", "started", "finished", "seconds"} <= set(prov)
    assert prov["device"].startswith("cpu")
    assert prov["numerics"]["cudnn_allow_tf32"] == torch.backends.cudnn.allow_tf32  # TF32 changes GPU results


def test_bc_loss_ratios_are_shares(converged_record):
    per_epoch = converged_record[1]["curves"]["per_epoch"]
    for mean, mx in zip(per_epoch["bc_loss_ratio_mean"], per_epoch["bc_loss_ratio_max"]):
        assert 0.0 <= mean <= mx <= 1.0


def test_bc_loss_ratio_nonzero_with_bc_samples():
    cfg = make_config("parity", lr=0.05, scale="smoke", max_epochs=3, attribution_n=0)
    per_epoch = run_experiment(cfg, device="cpu")["curves"]["per_epoch"]
    for mean, mx in zip(per_epoch["bc_loss_ratio_mean"], per_epoch["bc_loss_ratio_max"]):
        assert 0.0 < mean <= mx < 1.0
    assert all(math.isfinite(v) and v > 0 for v in per_epoch["bc_loss"])


def test_attribution_trace_at_powers_of_two(converged_record):
    cfg, rec = converged_record
    trace = rec["attribution_trace"]
    steps = [p["step"] for p in trace]
    assert steps[:-1] == [s for s in checkpoint_steps(rec["steps"]) if s < rec["steps"]]
    assert steps[-1] == rec["steps"]
    for p in trace:
        assert p["core"] + p["spurious"] + p["noise"] == pytest.approx(1.0, abs=1e-5)
        assert 0.0 <= p["test_acc"] <= 1.0
    assert rec["metrics"]["attr_core"] == pytest.approx(trace[-1]["core"])
    assert rec["metrics"]["attr_spurious"] == pytest.approx(trace[-1]["spurious"])


def test_run_experiment_is_deterministic():
    cfg = make_config("parity", lr=0.3, seed=5, scale="smoke", max_epochs=6)
    a, b = run_experiment(cfg, device="cpu"), run_experiment(cfg, device="cpu")
    assert a["curves"] == b["curves"]
    assert json.dumps(a["metrics"], sort_keys=True) == json.dumps(b["metrics"], sort_keys=True)  # NaN == NaN
    assert a["attribution_trace"] == b["attribution_trace"]


def test_checkpoint_steps():
    assert checkpoint_steps(0) == [0]
    assert checkpoint_steps(10) == [0, 1, 2, 4, 8]
    assert checkpoint_steps(16) == [0, 1, 2, 4, 8, 16]


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no GPU"):
            resolve_device("cuda")


def _colored_smoke(mnist_root, **over):
    from lrbook.data import dataset_for

    cfg = make_config("colored_mnist", "fcn", lr=0.2, scale="smoke", **over)
    return cfg, dataset_for(cfg, root=str(mnist_root))


@pytest.mark.mnist
def test_unit_trace_update_sizes_are_the_weight_changes(mnist_root):
    """One SGD step per trace interval: the logged update size of each unit is the norm of the change
    of its incoming weight row, and the spurious shares are shares."""
    from lrbook.models import build_model

    cfg, data = _colored_smoke(mnist_root, unit_trace_every=1, max_epochs=1,
                               dataset_params=dict(n_train=100, n_test=200))
    torch.manual_seed(0)
    model = build_model("fcn", data.input_shape, 10, **cfg.model_params)
    before = model.features[-2].weight.detach().clone()
    trace = train(model, data, cfg).unit_trace
    assert list(trace["step"]) == [0, 1]
    change = (model.features[-2].weight.detach() - before).norm(dim=1)[:trace["update_sum"].shape[1]]
    assert torch.allclose(torch.from_numpy(trace["update_sum"][1]), change, rtol=1e-4)
    assert (trace["update_sum"][0] == 0).all() and (trace["update_max"][1] == trace["update_sum"][1]).all()
    share = trace["spurious_share"]
    assert ((share[np.isfinite(share)] >= 0) & (share[np.isfinite(share)] <= 1)).all()


@pytest.mark.mnist
def test_probes_do_not_change_training(mnist_root, tmp_store):
    """Attribution probes and unit traces are logging fields: the same run trains bit-identically, and
    the traced record carries its arrays as an artefact and colour shares in its attribution trace."""
    plain, _ = _colored_smoke(mnist_root, max_epochs=3, attribution_n=0)
    traced, _ = _colored_smoke(mnist_root, max_epochs=3, attribution_n=20, unit_trace_every=4)
    records = [run_experiment(c, store=tmp_store, data_root=str(mnist_root)) for c in (plain, traced)]
    assert records[0]["curves"]["per_epoch"] == records[1]["curves"]["per_epoch"]
    assert records[0]["metrics"]["test_acc"] == records[1]["metrics"]["test_acc"]
    assert records[1]["artefacts"] == ["unit_trace"]
    arrays = tmp_store.get_artefact(traced.run_id, "unit_trace")
    assert arrays["spurious_share"].shape == (len(arrays["step"]), 64)
    trace = records[1]["attribution_trace"]
    assert [p["step"] for p in trace][:4] == [0, 1, 2, 4]
    assert all(abs(p["spurious"] + p["core"] - 1) < 1e-6 for p in trace)


def test_unit_trace_is_only_for_the_fcn_on_mnist_sets():
    from lrbook.config import ConfigError

    with pytest.raises(ConfigError, match="FCN on colored_mnist"):
        make_config("colored_mnist", "cnn", unit_trace_every=10)
    with pytest.raises(ConfigError, match="FCN on colored_mnist"):
        make_config("parity", "fcn", unit_trace_every=10)
    with pytest.raises(ConfigError, match=">= 0"):
        make_config("colored_mnist", "fcn", unit_trace_every=-1)
    with pytest.raises(ConfigError, match="momentum=0"):
        make_config("colored_mnist", "fcn", unit_trace_every=10, momentum=0.9)


def _images(n=200, shape=(3, 16, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return SpuriousDataset("toy_images", x, y, y.clone(), x[:100], y[:100], y[:100].clone(), num_classes=10)


def _weights_after(cfg, data, model_name, dtype=torch.float32):
    from lrbook.models import build_model

    torch.manual_seed(0)
    model = build_model(model_name, data.input_shape, data.num_classes, **cfg.model_params).to(dtype)
    _weights_after.initial = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    out = train(model, data, cfg)
    return out, torch.cat([p.detach().flatten() for p in model.parameters()])


def test_channels_last_trains_the_same_model():
    """channels_last changes memory layout only: two SGD steps of a ResNet18 agree. In fp64: in fp32 the
    two layouts' conv kernels round differently (gradients differ by ~5e-6 relative), and a ResNet's
    training amplifies that within steps, as for any two conv implementations."""
    data = _images(n=200)
    data.x_train = data.x_train.double()
    cfg = make_config("colored_mnist", "resnet18", lr=0.05, scale="smoke", max_epochs=1)
    plain, w_plain = _weights_after(cfg, data, "resnet18", torch.float64)
    fast, w_fast = _weights_after(dataclasses.replace(cfg, channels_last=True), data, "resnet18", torch.float64)
    update = w_plain - _weights_after.initial
    assert plain.steps == fast.steps == 2
    assert (w_plain - w_fast).norm() / update.norm() < 1e-6
    assert abs(plain.curves["loss"][0] - fast.curves["loss"][0]) < 1e-5
    assert dataclasses.replace(cfg, channels_last=True).run_id != cfg.run_id  # recorded in the config


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])  # the second replays CUDA graphs on a GPU
def test_compiled_forward_trains_the_same_model(mode):
    data = toy_data()
    cfg = toy_cfg(max_epochs=3)
    plain, w_plain = _weights_after(cfg, data, "fcn")
    compiled, w_compiled = _weights_after(dataclasses.replace(cfg, compile=True, compile_mode=mode), data, "fcn")
    assert plain.epochs == compiled.epochs == 3
    assert (w_plain - w_compiled).abs().max() < 1e-5
    assert np.allclose(plain.curves["loss"], compiled.curves["loss"], atol=1e-6)


# ------------------------------------------------------------------------------ divergence rule


def _must_not_be_called():
    raise AssertionError("the dead-unit probe runs only in an epoch at chance")


@pytest.mark.parametrize("losses, logit_norm, acc, dead, reason", [
    ([0.7, float("nan")], 1.0, 0.9, _must_not_be_called, "non-finite loss"),
    ([0.7, float("inf")], 1.0, 0.9, _must_not_be_called, "non-finite loss"),
    ([4.6e20, 2.0], float("inf"), 0.087, 0.5, "non-finite logit norm"),  # Colored MNIST, LR 1000, epoch 1
    ([300.0], 1e3, 0.10, 0.0, "training accuracy 10.0% (chance 12.3%) with exploded logits (mean norm 1e+03 >= 1000)"),
    ([2.3], 0.0, 0.098, 1.0, "training accuracy 9.8% (chance 12.3%) with every penultimate unit dead"),
    ([2.3], 0.0, 0.173, 1.0, "training accuracy 17.3% (chance 12.3%) with every penultimate unit dead"),  # margin 0.05
    ([2.3], 999.0, 0.12, 0.99, None),  # one live unit, logits below the threshold: may still learn
    ([2.3], 3.0, 0.174, _must_not_be_called, None),  # above chance + margin: never probed
    ([0.01], 5e4, 0.99, _must_not_be_called, None),  # huge logits on a fitting network are not divergence
])
def test_divergence_rule_on_constructed_statistics(losses, logit_norm, acc, dead, reason):
    from lrbook.train import divergence_reason

    assert divergence_reason(torch.tensor(losses), logit_norm, acc, 0.1233, dead) == reason


def test_chance_accuracy_is_the_majority_share():
    from lrbook.train import chance_accuracy

    assert chance_accuracy(torch.tensor([0, 1, 1, 2, 1, 0, 3, 1])) == 0.5
    assert chance_accuracy(torch.tensor([2, 2, 2])) == 1.0


def dead_fcn(seed=0):
    """A bias-free ReLU FCN whose last hidden layer has only negative weights: its inputs are ReLU
    outputs (>= 0), so every penultimate unit outputs 0 on every input and passes no gradient."""
    torch.manual_seed(seed)
    model = FCN(5, 2, width=16, depth=2)
    with torch.no_grad():
        model.features[3].weight.copy_(-model.features[3].weight.abs())
    return model


def test_a_network_with_every_penultimate_unit_dead_is_diverged_at_once():
    from lrbook.train import dead_unit_fraction

    data = toy_data()
    model = dead_fcn()
    assert dead_unit_fraction(model, data.x_train) == 1.0
    out = train(model, data, toy_cfg(max_epochs=50))
    assert (out.status, out.epochs) == ("diverged", 1)
    assert out.curves["train_acc"] == [0.5] and out.curves["logit_norm"] == [0.0]  # logits 0: always class 0
    assert out.diverged_because == "training accuracy 50.0% (chance 50.0%) with every penultimate unit dead"

    torch.manual_seed(0)  # the same network with its weights not flipped trains normally
    alive = FCN(5, 2, width=16, depth=2)
    assert dead_unit_fraction(alive, data.x_train) < 1
    assert train(alive, data, toy_cfg(max_epochs=50)).status == "converged"


@pytest.mark.mnist
def test_colored_mnist_at_an_absurd_lr_is_recorded_as_diverged(mnist_root):
    """At LR 1000 the FCN's logits overflow in the first epoch and its units then die (loss log 10,
    accuracy at chance for good); before the rule the run trained to the cap as `max_epochs`."""
    cfg = make_config("colored_mnist", "fcn", lr=1000.0, scale="smoke")
    rec = run_experiment(cfg, device="cpu", data_root=str(mnist_root))
    assert (rec["status"], rec["epochs"], rec["metrics"]) == ("diverged", 1, None)
    assert not math.isfinite(rec["curves"]["per_epoch"]["logit_norm"][0])
