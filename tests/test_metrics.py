"""lrbook.metrics and lrbook.attribution on hand-computed cases (REPRODUCTION_SPEC section 4)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from lrbook.attribution import attribution_entropy, attribution_map, attribution_shares, region_shares
from lrbook.data.synthetic import make_parity
from lrbook.metrics import (class_separation, group_accuracies, kappa_compressibility, magnitude_prune, pq_index,
                            parameter_compressibility, predict, prunability, pruning_curve, selectivity_index,
                            sparsity, structured_prune)
from lrbook.models import FCN, build_model

T = torch.tensor

# ---------------------------------------------------------------------------- compressibility


@pytest.mark.parametrize("v, kappa, expected", [
    ([3.0, 4.0], 0.5, 1 - 3 / 5),                               # keep 4
    ([-4.0, 3.0], 0.5, 1 - 3 / 5),                              # by magnitude
    ([3.0, 4.0] + [0.0] * 8, 0.1, 1 - 3 / 5),                   # ceil(0.1 * 10) = 1 entry kept
    ([3.0, 4.0] + [0.0] * 8, 0.2, 1.0),                         # both non-zeros kept
    ([3.0, 4.0] + [0.0] * 9, 0.1, 1.0),                         # ceil(1.1) = 2 kept
    ([1.0, 1.0, 1.0, 1.0], 0.25, 1 - math.sqrt(3) / 2),
    ([1.0, 2.0, 2.0], 0.34, 1 - 1 / 3),                         # ceil(1.02) = 2 kept -> tail 1, norm 3
    ([0.0] * 5, 0.1, 1.0),                                      # all-zero row counts as 1
])
def test_kappa_compressibility_hand_cases(v, kappa, expected):
    got = kappa_compressibility(T([v]), kappa)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_kappa_compressibility_is_per_row_and_scale_invariant():
    v = T([[3.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    got = kappa_compressibility(v, 0.25)
    assert torch.allclose(got, T([0.4, 1 - math.sqrt(3) / 2, 1.0]), atol=1e-6)
    assert torch.allclose(kappa_compressibility(10 * v, 0.25), got, atol=1e-6)
    # images are flattened per sample
    assert torch.allclose(kappa_compressibility(v.reshape(3, 1, 2, 2), 0.25), got, atol=1e-6)


def test_sparsity():
    assert torch.equal(sparsity(T([[0.0, 1.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0], [0.0] * 4])), T([0.5, 0.0, 1.0]))


@pytest.mark.parametrize("d", [2, 5, 100])
def test_pq_index_one_hot_and_constant(d):
    one_hot = torch.zeros(1, d)
    one_hot[0, d // 2] = -3.0
    # (p, q) = (0.5, 1): 1 - d^(1 - 2) * ||v||_0.5 / ||v||_1 = 1 - (1/d) * 3 / 3
    assert pq_index(one_hot).item() == pytest.approx(1 - 1 / d, abs=1e-6)
    assert pq_index(torch.full((1, d), 2.5)).item() == pytest.approx(0.0, abs=1e-6)
    assert pq_index(torch.zeros(1, d)).item() == 0.0


def test_pq_index_hand_case():
    # v = [1, 4]: ||v||_0.5 = (1 + 2)^2 = 9, ||v||_1 = 5, d^(1-2) = 1/2 -> 1 - 9 / 10
    assert pq_index(T([[1.0, 4.0]])).item() == pytest.approx(0.1, abs=1e-6)
    # sparser is larger
    assert pq_index(T([[0.0, 1.0, 0.0, 4.0]])).item() > pq_index(T([[1.0, 1.0, 1.0, 4.0]])).item()


def test_parameter_compressibility_averages_rows_of_all_layers():
    m = FCN(4, 2, width=2, depth=1)
    with torch.no_grad():
        m.features[1].weight.copy_(T([[3.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]))
        m.classifier.weight.copy_(T([[0.0, 5.0], [2.0, 2.0]]))
    # kappa = 0.25 keeps 1 of 4 entries in the hidden rows, ceil(0.5) = 1 of 2 in classifier rows
    expected = (0.4 + (1 - math.sqrt(3) / 2) + 1.0 + (1 - 2 / math.sqrt(8))) / 4
    assert parameter_compressibility(m, kappa=0.25) == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------------------- representations


def test_class_separation_identical_within_orthogonal_across():
    f = torch.cat([T([[2.0, 0.0, 0.0]]).repeat(3, 1), T([[0.0, 0.5, 0.0]]).repeat(5, 1)])
    labels = T([0, 0, 0, 1, 1, 1, 1, 1])
    assert class_separation(f, labels) == pytest.approx(1.0, abs=1e-9)


def test_class_separation_hand_case_with_self_pairs():
    """Class 0 = {e1, e2}, class 1 = {e3, e3}. With self-pairs, class 0's mean within distance is
    (0 + 1 + 1 + 0) / 4 = 0.5, class 1's is 0, so d_within = 0.25; the block means are
    [[0.5, 1], [1, 0]], d_total = 2.5 / 4 = 0.625 and R^2 = 1 - 0.25 / 0.625 = 0.6."""
    f = T([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 2.0]])
    labels = T([0, 0, 1, 1])
    assert class_separation(f, labels) == pytest.approx(0.6, abs=1e-9)
    # the value does not depend on the order of samples
    perm = T([2, 0, 3, 1])
    assert class_separation(f[perm], labels[perm]) == pytest.approx(0.6, abs=1e-9)


def test_class_separation_of_random_features_is_near_zero():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(300, 64, generator=g)
    labels = torch.randint(0, 3, (300,), generator=g)
    assert abs(class_separation(f, labels)) < 0.03


def test_selectivity_index_hand_cases():
    labels = T([0, 0, 0, 0, 1, 1, 1, 1])
    only_class0 = T([1.0, 1, 1, 1, 0, 0, 0, 0])          # CSI 1, coverage 1
    half_class0 = T([2.0, 2, 0, 0, 0, 0, 0, 0])          # CSI 1, coverage 0.5
    never = torch.zeros(8)                               # excluded
    both = T([1.0, 1, 1, 1, 1, 1, 1, 1])                 # CSI 0
    f = lambda *cols: torch.stack(cols, 1)
    assert selectivity_index(f(only_class0), labels) == pytest.approx(1.0, abs=1e-9)
    assert selectivity_index(f(half_class0), labels) == pytest.approx(0.5, abs=1e-9)
    assert selectivity_index(f(half_class0), labels, coverage=False) == pytest.approx(1.0, abs=1e-9)
    assert selectivity_index(f(only_class0, never), labels) == pytest.approx(1.0, abs=1e-9)
    assert selectivity_index(f(only_class0, half_class0, both, never), labels) == pytest.approx(0.5, abs=1e-9)
    assert math.isnan(selectivity_index(f(never), labels))


def test_selectivity_index_three_classes():
    # means per class [3, 1, 1] -> mu_rest = 1 -> (3 - 1) / (3 + 1) = 0.5, fires on all class-0 samples
    labels = T([0, 0, 1, 1, 2, 2])
    unit = T([[3.0], [3.0], [1.0], [1.0], [0.0], [2.0]])
    assert selectivity_index(unit, labels) == pytest.approx(0.5, abs=1e-9)
    # preferred class need not be class 0
    unit2 = T([[0.0], [0.0], [0.0], [0.0], [4.0], [0.0]])  # class 2 mean 2, coverage 0.5
    assert selectivity_index(unit2, labels) == pytest.approx(0.5, abs=1e-9)


# ---------------------------------------------------------------------------- accuracies


def test_group_accuracies_hand_case():
    y = T([0, 0, 0, 1, 1, 1, 1, 0])
    b = T([0, 0, 1, 1, 1, 1, 0, 1])
    pred = T([0, 1, 0, 1, 0, 0, 1, 0])
    # correct: 1 0 1 1 0 0 1 1; groups (y,b): (0,0) 1/2, (0,1) 2/2, (1,1) 1/3, (1,0) 1/1
    out = group_accuracies(pred, y, b)
    assert out["acc"] == pytest.approx(5 / 8)
    assert out["ba_acc"] == pytest.approx(2 / 5)
    assert out["bc_acc"] == pytest.approx(3 / 3)
    assert out["worst_group_acc"] == pytest.approx(1 / 3)


def test_group_accuracies_without_bc_samples_gives_nan():
    out = group_accuracies(T([0, 1]), T([0, 1]), T([0, 1]))
    assert out["acc"] == 1.0 and out["ba_acc"] == 1.0 and math.isnan(out["bc_acc"])


def test_predict_restores_training_mode_and_batches():
    m = FCN(3, 2, width=4, depth=1).train()
    x = torch.randn(25, 3)
    p = predict(m, x, batch_size=7)
    assert m.training and p.shape == (25,)
    with torch.no_grad():
        assert torch.equal(p, m(x).argmax(1))


# ---------------------------------------------------------------------------- pruning


def _fcn_with_known_rows():
    m = FCN(4, 2, width=4, depth=2)
    with torch.no_grad():
        # L1 norms 4, 3, 10, 1; the L2 norms (2, 3, ...) order rows 0 and 1 the other way round
        m.features[1].weight.copy_(T([[1.0, 1, 1, 1], [3.0, 0, 0, 0], [5.0, 5, 0, 0], [0.0, 0, -1, 0]]))
        m.features[3].weight.copy_(T([[9.0, 0, 0, 0], [0.0, -2, 0, 0], [1.0, 1, 1, 0.5], [0.0, 0, 0, 0.1]]))
        m.classifier.weight.copy_(T([[0.01, 0.02, 0.03, 0.04], [1.0, 2.0, 3.0, 4.0]]))
    return m


def test_structured_prune_zeroes_smallest_l1_rows_only():
    m = _fcn_with_known_rows()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    p = structured_prune(m, 0.5)  # round(0.5 * 4) = 2 rows per layer
    w1, w2 = p.features[1].weight, p.features[3].weight
    zero_rows = lambda w: [i for i in range(w.shape[0]) if (w[i] == 0).all()]
    assert zero_rows(w1) == [1, 3]  # L1 3 and 1 (L2 would have picked rows 0 and 3)
    assert zero_rows(w2) == [1, 3]  # L1 2 and 0.1
    for i in (0, 2):
        assert torch.equal(w1[i], before["features.1.weight"][i])
        assert torch.equal(w2[i], before["features.3.weight"][i])
    assert torch.equal(p.classifier.weight, before["classifier.weight"]), "classifier is never pruned"
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), "the original model is untouched"


@pytest.mark.parametrize("fraction, n_zero", [(0.25, 1), (0.75, 3), (0.0, 0), (0.1, 0)])
def test_structured_prune_counts(fraction, n_zero):
    p = structured_prune(_fcn_with_known_rows(), fraction)
    for layer in (p.features[1], p.features[3]):
        assert int((layer.weight == 0).all(1).sum()) == n_zero


def test_structured_prune_zeroes_following_batchnorm_in_resnet18():
    torch.manual_seed(0)
    m = build_model("resnet18", (1, 28, 28), 10)
    with torch.no_grad():
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(0.1, 1.0)  # non-zero, so zeroing is visible
    p = structured_prune(m, 0.25)
    pairs = [("conv1", "bn1"), ("layer1.0.conv1", "layer1.0.bn1"), ("layer3.0.conv2", "layer3.0.bn2"),
             ("layer2.0.downsample.0", "layer2.0.downsample.1")]
    mods = dict(p.named_modules())
    orig = dict(m.named_modules())
    for conv_name, bn_name in pairs:
        conv, bn = mods[conv_name], mods[bn_name]
        n_out = conv.out_channels
        k = round(0.25 * n_out)
        l1 = orig[conv_name].weight.detach().flatten(1).abs().sum(1)
        expect = set(l1.argsort()[:k].tolist())
        dropped = set(torch.nonzero((conv.weight == 0).flatten(1).all(1)).flatten().tolist())
        assert dropped == expect, conv_name
        keep = sorted(set(range(n_out)) - expect)
        assert (bn.weight[sorted(expect)] == 0).all() and (bn.bias[sorted(expect)] == 0).all(), bn_name
        assert (bn.weight[keep] != 0).all() and (bn.bias[keep] != 0).all(), bn_name
    assert torch.equal(p.fc.weight, m.fc.weight) and torch.equal(p.fc.bias, m.fc.bias)
    # a pruned channel is dead after its BatchNorm: conv1 -> bn1 output is exactly 0 there
    p.eval()
    with torch.no_grad():
        out = p.bn1(p.conv1(torch.randn(2, 1, 28, 28)))
    dead = sorted(torch.nonzero((p.conv1.weight == 0).flatten(1).all(1)).flatten().tolist())
    assert (out[:, dead] == 0).all()


def test_magnitude_prune_zeroes_the_smallest_weights():
    torch.manual_seed(1)
    m = FCN(10, 3, width=8, depth=2)
    p = magnitude_prune(m, 0.3)
    for name in ("features.1", "features.3"):
        w0, w = dict(m.named_modules())[name].weight, dict(p.named_modules())[name].weight
        k = round(0.3 * w0.numel())
        zeroed = w == 0
        assert int(zeroed.sum()) == k
        assert w0[zeroed].abs().max() <= w0[~zeroed].abs().min()
        assert torch.equal(w[~zeroed], w0[~zeroed])
    assert torch.equal(p.classifier.weight, m.classifier.weight)


def test_magnitude_prune_of_a_channels_last_model_matches_the_contiguous_one():
    # channels_last is a sweep speed option; its conv weights have no flat view
    torch.manual_seed(2)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    last = copy.deepcopy(conv).to(memory_format=torch.channels_last)
    assert not last[0].weight.is_contiguous()
    p, p_last = magnitude_prune(conv, 0.5), magnitude_prune(last, 0.5)
    assert int((p[0].weight == 0).sum()) == round(0.5 * conv[0].weight.numel())
    assert torch.equal(p[0].weight, p_last[0].weight)


def test_pruning_curve_and_prunability():
    m = _fcn_with_known_rows()
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    y = predict(m, x)
    curve = pruning_curve(m, x, y, fractions=(0.0, 0.25, 1.0))
    assert list(curve) == [0.0, 0.25, 1.0]
    assert curve[0.0] == 1.0  # nothing pruned: predictions unchanged
    for p, acc in curve.items():
        assert acc == pytest.approx((predict(structured_prune(m, p), x) == y).float().mean().item())
    # hand-made curve
    assert prunability({0.1: 0.8, 0.2: 0.4, 0.3: 0.2}, base_acc=0.8) == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert prunability({0.5: 0.9}, base_acc=0.9) == pytest.approx(1.0)
    assert math.isnan(prunability({0.5: 0.1}, base_acc=0.0))


def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3))


def test_batch_statistics_predict_normalises_with_the_batch_and_leaves_the_model_alone():
    m = _bn_net()
    x = 5 + 3 * torch.randn(40, 1, 6, 6, generator=torch.Generator().manual_seed(1))  # far from running stats
    before = {k: v.clone() for k, v in m.state_dict().items()}
    got = predict(m, x, batch_size=20, bn="batch")
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items()) and m.training
    # hand-made: each batch of 20 normalised by its own mean and biased variance = eval mode with
    # running statistics set to exactly those
    expect = []
    for xb in (x[:20], x[20:]):
        ref = _bn_net().eval()
        h = ref[0](xb)
        ref[1].running_mean.copy_(h.mean((0, 2, 3)))
        ref[1].running_var.copy_(h.var((0, 2, 3), unbiased=False))
        with torch.no_grad():
            expect.append(ref(xb).argmax(1))
    assert torch.equal(got, torch.cat(expect))
    assert not torch.equal(got, predict(m, x, bn="running"))  # fresh running stats (0, 1) do not fit this input
    with pytest.raises(ValueError, match="running"):
        predict(m, x, bn="train")


def test_batch_statistics_pruning_curve_is_recorded_for_batchnorm_models_only(monkeypatch):
    from lrbook import metrics
    from lrbook.config import make_config
    from lrbook.data import make_dataset
    from lrbook.experiment import evaluate

    monkeypatch.setattr(metrics, "magnitude_prune", lambda m, p: m)  # slow on ResNet18, not tested here

    data = make_dataset("moon_star", n_train=40, n_test=60, image_size=32)
    cfg = make_config("moon_star", "resnet18", lr=0.1, scale="smoke", batch_size=20)
    torch.manual_seed(0)
    model = build_model("resnet18", tuple(data.x_train.shape[1:]), 2)
    metrics, curves, _ = evaluate(model, data, cfg)
    assert len(curves["prune_structured_bn_batch"]) == 9
    assert 0 <= metrics["test_acc_bn_batch"] <= 1
    base = (predict(model, data.x_test, batch_size=20, bn="batch") == data.y_test).float().mean().item()
    assert metrics["test_acc_bn_batch"] == pytest.approx(base)
    fcn_metrics, fcn_curves, _ = evaluate(build_model("fcn", tuple(data.x_train.shape[1:]), 2),
                                          data, make_config("moon_star", "fcn", lr=0.1, scale="smoke"))
    assert "prunability_bn_batch" not in fcn_metrics and "prune_structured_bn_batch" not in fcn_curves


class _TwoLayerNet(nn.Module):
    """Two prunable linears (fan-in 3 and 2) and a classifier, with hand-set weight rows."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 4), nn.ReLU())
        self.classifier = nn.Linear(4, 2)
        with torch.no_grad():
            self.features[0].weight.copy_(T([[4.0, -4.0, 4.0], [3.0, 3.0, -3.0]]))  # L1 12, 9: mean 10.5
            self.features[2].weight.copy_(T([[0.1, -0.1], [0.2, 0.1], [1.0, -1.0], [6.0, 6.0]]))  # 0.2, 0.3, 2, 12: mean 3.625
            for layer in (self.features[0], self.features[2], self.classifier):
                layer.bias.fill_(1.0)

    def forward(self, x):
        return self.classifier(self.features(x))


def _zeroed_rows(layer):
    return torch.nonzero((layer.weight == 0).all(1)).flatten().tolist()


def test_global_pruning_ranks_units_by_l1_relative_to_their_layer():
    """Scores (L1 / the layer's mean L1): first layer 1.14 and 0.86; second layer 0.055, 0.083,
    0.55 and 3.3. Half of the 14 prunable weights: the three lowest units all lie in the second
    layer (6 weights; the next, 3 weights, would bring 9, farther from 7). The per-layer share
    instead prunes 1 of 2 units in the first layer and 2 of 4 in the second."""
    from lrbook.metrics import global_structured_prune

    m = _TwoLayerNet()
    g = global_structured_prune(m, 0.5)
    assert _zeroed_rows(g.features[0]) == [] and _zeroed_rows(g.features[2]) == [0, 1, 2]
    assert g.features[2].bias[[0, 1, 2]].eq(0).all() and g.features[2].bias[3] == 1.0
    assert torch.equal(g.classifier.weight, m.classifier.weight), "the classifier is never pruned"
    per_layer = structured_prune(m, 0.5)
    assert _zeroed_rows(per_layer.features[0]) == [1] and _zeroed_rows(per_layer.features[2]) == [0, 1]
    assert _zeroed_rows(global_structured_prune(m, 0.0).features[2]) == []
    everything = global_structured_prune(m, 1.0)
    assert _zeroed_rows(everything.features[0]) == [0, 1] and _zeroed_rows(everything.features[2]) == [0, 1, 2, 3]
    # 0.2 of 14 = 2.8 weights: the lowest unit (2 weights) only; 0.3 = 4.2: two units (4 weights)
    assert _zeroed_rows(global_structured_prune(m, 0.2).features[2]) == [0]
    assert _zeroed_rows(global_structured_prune(m, 0.3).features[2]) == [0, 1]


def test_global_pruning_ignores_the_scale_of_a_layer():
    """Rescaling a layer (which BatchNorm, or the next ReLU layer, can undo) changes no choice."""
    from lrbook.metrics import global_structured_prune

    m, scaled = _TwoLayerNet(), _TwoLayerNet()
    with torch.no_grad():
        scaled.features[0].weight.mul_(1000.0)
        scaled.features[2].weight.mul_(0.001)
    for p in (0.2, 0.5, 0.7):
        a, b = global_structured_prune(m, p), global_structured_prune(scaled, p)
        assert [_zeroed_rows(a.features[i]) for i in (0, 2)] == [_zeroed_rows(b.features[i]) for i in (0, 2)], p


def test_global_pruning_of_a_fresh_resnet18_spreads_over_its_layers():
    """At initialisation no layer's units are weaker than another's: pruning 10% of the weights
    takes less than half of any stage, not one stage whole. (The stem's 27-weight filters vary
    most around their mean and lose the largest share, 25 of 64 with this seed; ranked by
    L1 / sqrt(fan-in), all 64 would go first.)"""
    from lrbook.metrics import global_structured_prune
    from lrbook.models import prunable_layers

    torch.manual_seed(0)
    pruned = global_structured_prune(build_model("resnet18", (3, 28, 28), 10), 0.1)
    share, total = {}, 0
    for name, layer in prunable_layers(pruned):
        dead = (layer.weight.flatten(1) == 0).all(1)
        stage = share.setdefault(name.split(".")[0], [0, 0])
        stage[0] += int(dead.sum())
        stage[1] += len(dead)
        total += int(dead.sum()) * layer.weight[0].numel()
    assert all(k / n < 0.5 for k, n in share.values()), share
    n_weights = sum(layer.weight.numel() for _, layer in prunable_layers(pruned))
    assert abs(total / n_weights - 0.1) < 0.01


def test_chance_corrected_prunability_hand_case():
    from lrbook.metrics import chance_corrected_prunability

    # ten classes, chance 0.1: kept shares of the 0.8 above chance are 1, 1/2 and 0
    assert chance_corrected_prunability({0.1: 0.9, 0.2: 0.5, 0.3: 0.1}, 0.9, 10) == pytest.approx(0.5)
    # the plain ratio of the same curve counts chance as kept accuracy
    assert prunability({0.1: 0.9, 0.2: 0.5, 0.3: 0.1}, 0.9) == pytest.approx((1 + 5 / 9 + 1 / 9) / 3)
    # a network at chance after any pruning scores 0 whatever its accuracy; the plain ratio 0.1 / acc_0
    for acc0 in (0.5, 0.9):
        assert chance_corrected_prunability({p: 0.1 for p in (0.3, 0.6)}, acc0, 10) == pytest.approx(0.0)
    assert math.isnan(chance_corrected_prunability({0.5: 0.5}, 0.5, 2))  # not above chance: undefined


def test_prunability_candidates_from_curves():
    from lrbook.metrics import PRUNE_FRACTIONS, prunability_candidates

    per_layer = [0.9, 0.9, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    global_ = [0.9] * 9
    out = prunability_candidates({"prune_structured": per_layer, "prune_structured_global": global_}, 0.9, 10)
    assert set(out) == {"prunability_chance_corrected", "prunability_to_half", "prunability_global",
                        "prunability_global_chance_corrected", "prunability_global_to_half"}
    assert out["prunability_chance_corrected"] == pytest.approx((1 + 1 + 0.5) / 9)
    assert out["prunability_to_half"] == pytest.approx((1 + 1 + 5 / 9 + 1 / 9 + 1 / 9) / 5)
    assert out["prunability_global"] == out["prunability_global_chance_corrected"] == pytest.approx(1.0)
    assert len(PRUNE_FRACTIONS) == 9
    bn = prunability_candidates({"prune_structured_bn_batch": per_layer, "test_acc_bn_batch": 0.5}, 0.9, 10)
    assert bn["prunability_bn_batch"] == pytest.approx(sum(a / 0.5 for a in per_layer) / 9)


def test_evaluate_records_every_prunability_candidate_with_its_version():
    from lrbook.config import make_config
    from lrbook.data import make_dataset
    from lrbook.experiment import evaluate
    from lrbook.metrics import METRIC_VERSIONS, metric_versions

    data = make_dataset("moon_star", n_train=40, n_test=60)
    cfg = make_config("moon_star", "fcn", lr=0.1, scale="smoke")
    torch.manual_seed(0)
    metrics, curves, _ = evaluate(build_model("fcn", tuple(data.x_train.shape[1:]), 2, **cfg.model_params), data, cfg)
    assert len(curves["prune_structured_global"]) == 9
    for name in ("prunability", "prunability_global", "prunability_chance_corrected",
                 "prunability_global_chance_corrected", "prunability_to_half", "prunability_global_to_half"):
        assert name in metrics, name
    versions = metric_versions(metrics)
    assert versions["prunability_global"] == f"pruning/{METRIC_VERSIONS['pruning']}"
    assert versions["csi"].startswith("representation/") and versions["test_acc"].startswith("accuracy/")
    assert "max_bc_loss_ratio" not in metric_versions(["max_bc_loss_ratio"])


# ---------------------------------------------------------------------------- attribution


def test_region_shares_hand_case():
    maps = T([[1.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    regions = {"a": T([True, True, False, False]), "b": T([False, False, True, True])}
    out = region_shares(maps, regions)
    assert out["a"] == pytest.approx((0.5 + 0.0) / 2)
    assert out["b"] == pytest.approx((0.5 + 1.0) / 2)


def test_region_shares_image_masks_with_channels():
    maps = torch.zeros(1, 2, 4)
    maps[0, :, :2] = 1.0  # left half 4 units
    maps[0, 0, 3] = 4.0   # right half 4 units
    left = torch.zeros(2, 4, dtype=torch.bool)
    left[:, :2] = True
    assert region_shares(maps, {"left": left, "right": ~left}) == pytest.approx({"left": 0.5, "right": 0.5})
    per_channel = left[None, None].expand(1, 3, 2, 4)  # (N, C, H, W) mask for (N, H, W) maps
    assert region_shares(maps, {"left": per_channel})["left"] == pytest.approx(0.5)


def test_attribution_entropy():
    assert attribution_entropy(torch.ones(2, 16)).tolist() == pytest.approx([math.log(16)] * 2)
    one_hot = torch.zeros(1, 4, 4)
    one_hot[0, 1, 2] = 3.0
    assert attribution_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    assert attribution_entropy(T([[1.0, 1.0, 0.0, 0.0]])).item() == pytest.approx(math.log(2))


def _linear(weight):
    m = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        m.weight.copy_(weight)
    return m


@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks")
@pytest.mark.parametrize("method", ["ig", "deeplift"])
def test_attribution_of_linear_model_is_input_times_weight(method):
    w = T([[1.0, -2.0, 0.5, 0.0], [-3.0, 0.0, 1.0, 2.0]])
    model = _linear(w)
    x = T([[1.0, 2.0, -1.0, 4.0], [0.5, -1.0, 2.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    target = T([0, 1, 1])
    maps = attribution_map(model, x, target, method=method, n_steps=4, batch_size=2)
    assert torch.allclose(maps, (x * w[target]).abs(), atol=1e-5)


def test_attribution_shares_on_parity_with_linear_model():
    """Parity inputs are +-1, so with weights of equal magnitude for both classes the share of a
    block is its share of sum |w|."""
    data = make_parity(n_train=10, n_test=30, seed=0)
    row = torch.zeros(20)
    row[:4] = 1.0        # core: 4
    row[10:12] = 3.0     # spurious: 6
    row[12:] = 0.25      # noise: 8 * 0.25 = 2
    model = _linear(torch.stack([row, -row]))
    shares = attribution_shares(model, data, n=30, n_steps=4)
    assert shares == pytest.approx({"core": 4 / 12, "spurious": 6 / 12, "noise": 2 / 12}, abs=1e-5)


def _pairs(n=40, seed=0):
    """Inputs with a core feature (column 0) and a spurious one (column 1); compose swaps column 1."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g), (lambda core, spur: torch.stack([core[:, 0], spur[:, 1]], 1))


def test_feature_shapley_of_an_additive_model_is_exact():
    """f = 2 x_core + 3 x_spur: phi_spur = 3 (x_spur - mean of its partners' x_spur), phi_core alike."""
    from lrbook.attribution import feature_shapley

    x, compose = _pairs()
    fn = lambda z: (2 * z[:, :1] + 3 * z[:, 1:])
    phi_core, phi_spur = feature_shapley(fn, x, compose, n_partners=3, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    partner_mean = sum(x[torch.randperm(len(x), generator=g)] for _ in range(3)) / 3
    assert torch.allclose(phi_spur[:, 0], 3 * (x[:, 1] - partner_mean[:, 1]), atol=1e-5)
    assert torch.allclose(phi_core[:, 0], 2 * (x[:, 0] - partner_mean[:, 0]), atol=1e-5)


def test_feature_shapley_dummy_and_efficiency():
    """A model that ignores a feature gives it exactly zero; the two values sum to f(x) - E f(partner)."""
    from lrbook.attribution import feature_shapley, spurious_share

    x, compose = _pairs()
    only_spur = lambda z: torch.tanh(z[:, 1:]) * 5
    phi_core, phi_spur = feature_shapley(only_spur, x, compose, n_partners=4)
    assert phi_core.abs().max() == 0
    assert spurious_share(phi_core, phi_spur).item() == 1.0
    interacting = lambda z: torch.stack([z[:, 0] * z[:, 1], torch.relu(z[:, 0] + z[:, 1]), 0 * z[:, 0]], 1)
    g = torch.Generator().manual_seed(1)
    phi_core, phi_spur = feature_shapley(interacting, x, compose, n_partners=2, generator=g)
    g = torch.Generator().manual_seed(1)
    baseline = sum(interacting(x)[torch.randperm(len(x), generator=g)] for _ in range(2)) / 2
    assert torch.allclose(phi_core + phi_spur, interacting(x) - baseline, atol=1e-5)
    share = spurious_share(phi_core, phi_spur)
    assert 0 < share[0] < 1 and 0 < share[1] < 1 and torch.isnan(share[2]), "constant output: share undefined"


# ---------------------------------------------------------------------------- all at once


class _OutsideNet(nn.Module):
    """A classifier from elsewhere (its own module names), 2 inputs -> 4 ReLU units -> 2 classes.
    Unit 0 is relu(x0) and votes for class 1; unit 1 is relu(-2 x0) and votes for class 0; units
    2 and 3 see only x1, vote for nothing, and have the smallest weight rows (L1 0.1 and 0.2)."""

    def __init__(self):
        super().__init__()
        self.body, self.act, self.head = nn.Linear(2, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.body.weight.copy_(T([[1.0, 0.0], [-2.0, 0.0], [0.0, 0.1], [0.0, -0.2]]))
            self.head.weight.copy_(T([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))

    def forward(self, x):
        return self.head(self.act(self.body(x)))


def test_measure_classifier_on_a_model_from_elsewhere():
    """Half the inputs have x0 > 0 (class 1). Pruning the 4 hidden units by L1 row norm at the
    grid's fractions removes round(4p) = 0, 1, 1, 2, 2, 2, 3, 3, 4 units: the first two pruned are
    useless, the third is unit 0, after which every input is called class 0 (accuracy 0.5). So
    prunability is (6 x 1 + 3 x 0.5) / 9 = 5/6, per layer and globally (one prunable layer with
    equal rows). The head (the last linear layer, as the model names none) is never pruned; the
    representation the model must name."""
    from lrbook.metrics import measure_classifier
    from lrbook.models import prunable_layers

    x0 = torch.cat([torch.arange(1, 26), -torch.arange(1, 26)]).float() / 25
    x = torch.stack([x0, torch.linspace(-1, 1, 50)], 1)
    y, b = (x0 > 0).long(), torch.tensor([0, 1] * 25)
    model = _OutsideNet()
    assert [name for name, _ in prunable_layers(model)] == ["body"]
    with pytest.raises(ValueError, match=r"_OutsideNet has no `\.penultimate` module: set it to the module whose "
                                         r"output is its representation \(e\.g\. `model\.penultimate = model\.avgpool`"):
        measure_classifier(model, x, y, b)
    model.penultimate = model.act

    got = measure_classifier(model, x, y, b)
    assert got["test_acc"] == 1.0
    assert got["prunability"] == pytest.approx(5 / 6) and got["prunability_global"] == pytest.approx(5 / 6)
    feats = torch.relu(x @ model.body.weight.T)
    assert got["csi"] == pytest.approx(selectivity_index(feats, y))
    assert got["bsi"] == pytest.approx(selectivity_index(feats, b))
    assert got["csi_minus_bsi"] == pytest.approx(got["csi"] - got["bsi"])
    assert got["class_separation"] == pytest.approx(class_separation(feats, y))
    assert got["act_compressibility"] == pytest.approx(kappa_compressibility(feats).mean().item())
    assert torch.equal(model.head.weight, T([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])), "measuring changes nothing"
    assert "bsi" not in measure_classifier(model, x, y)


def test_the_classifier_is_the_named_one_or_the_last_linear_layer():
    """Pruning leaves the final layer alone: `model.classifier`, the last linear layer inside it (a
    torchvision VGG's head is a Sequential), or the model's last linear layer."""
    from lrbook.models import classifier_layer, prunable_layers

    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert classifier_layer(seq) is seq[5] and [m for _, m in prunable_layers(seq)] == [seq[0], seq[3]]
    vgg_like = nn.Module()
    vgg_like.features = nn.Conv2d(3, 4, 3)
    vgg_like.classifier = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert classifier_layer(vgg_like) is vgg_like.classifier[2]
    assert [m for _, m in prunable_layers(vgg_like)] == [vgg_like.features, vgg_like.classifier[0]]
    all_conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with pytest.raises(ValueError, match="Sequential has no linear layer to keep as its classifier: set "
                                         "`model.classifier` to its final layer"):
        prunable_layers(all_conv)
    all_conv.classifier = all_conv[2]  # a conv head, named: kept
    assert [m for _, m in prunable_layers(all_conv)] == [all_conv[0]]


def test_measure_classifier_gives_what_a_run_records(tmp_path, monkeypatch):
    """On a stored run's final weights and test set, `measure_classifier` returns exactly the values
    the run's record holds: one computation, whether inside a run or outside."""
    from lrbook.checkpoint import load_weights
    from lrbook.config import make_config
    from lrbook.data import dataset_for
    from lrbook.experiment import run_experiment
    from lrbook.metrics import measure_classifier
    from lrbook.store import ResultStore

    monkeypatch.delenv("LRBOOK_CHECKPOINTS", raising=False)
    cfg = make_config("moon_star", lr=0.2, scale="smoke", max_epochs=3)
    store = ResultStore(tmp_path)
    record = run_experiment(cfg, store=store)
    data = dataset_for(cfg)
    model = build_model(cfg.model, data.input_shape, data.num_classes, **cfg.model_params)
    model.load_state_dict(load_weights(cfg.run_id, store.root)["state_dict"])
    got = measure_classifier(model, data.x_test, data.y_test, data.b_test, eval_n=cfg.eval_n)
    assert got.pop("csi_minus_bsi") == got["csi"] - got["bsi"]
    assert got == {k: record["metrics"][k] for k in got}


@pytest.mark.mnist
def test_the_readme_example_runs(mnist_root, capsys):
    """README, "Using the metrics elsewhere": the first example runs as written, reading MNIST from
    the test data folder instead of ./data, on 100 test images instead of 1,000 (a ResNet18 on the
    CPU evaluates 19 pruned copies), and prints every measure."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme[readme.index("## Using the metrics elsewhere"):].split("```python\n", 1)[1].split("```", 1)[0]
    assert code.count('root="data"') == 1 and code.count("n_test=1000") == 1
    code = code.replace('root="data"', f"root={str(mnist_root)!r}").replace("n_test=1000", "n_test=100")
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    for name in ("test_acc", "prunability", "prunability_global", "act_compressibility", "csi", "bsi",
                 "csi_minus_bsi", "class_separation"):
        assert f"'{name}':" in printed, name
