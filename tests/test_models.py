"""lrbook.models: architectures of REPRODUCTION_SPEC section 3."""
from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from torch import nn

from lrbook.config import ConfigError
from lrbook.models import CNN, FCN, build_model, penultimate_activations, prunable_layers


def linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("width, depth", [(200, 3), (1024, 2), (7, 1)])
def test_fcn_has_no_biases_and_the_right_widths(width, depth):
    m = build_model("fcn", (1, 28, 28), 10, width=width, depth=depth)
    assert isinstance(m, FCN)
    lin = linears(m)
    assert len(lin) == depth + 1
    assert [tuple(l.weight.shape) for l in lin] == [(width, 784)] + [(width, width)] * (depth - 1) + [(10, width)]
    assert all(l.bias is None for l in lin)
    assert sum(isinstance(x, nn.ReLU) for x in m.modules()) == depth
    assert m.classifier is lin[-1]
    assert [mod for _, mod in prunable_layers(m)] == lin[:-1]
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (1, 28, 56)])
def test_cnn_no_biases_and_output_shape(shape):
    m = build_model("cnn", shape, 10)
    assert isinstance(m, CNN)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 8  # VGG11
    assert convs[0].in_channels == shape[0]
    assert all(c.bias is None for c in convs) and m.classifier.bias is None
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert len(linears(m)) == 1  # a single linear layer after the convolutions
    assert m(torch.randn(2, *shape)).shape == (2, 10)


def test_image_models_refuse_vector_inputs():
    with pytest.raises(ConfigError, match="image inputs"):
        build_model("cnn", (20,), 2)
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("mlp-mixer", (1, 28, 28), 10)


@pytest.fixture(scope="module")
def resnet1():
    torch.manual_seed(0)
    return build_model("resnet18", (1, 28, 28), 10).eval()


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet18_input_channels_and_output(channels, resnet1):
    m = resnet1 if channels == 1 else build_model("resnet18", (3, 32, 32), 10).eval()
    assert m.conv1.in_channels == channels and m.conv1.bias is None
    assert m.classifier is m.fc and m.fc.out_features == 10
    with torch.no_grad():
        assert m(torch.randn(2, channels, 28, 28)).shape == (2, 10)


def test_resnet18_relus_are_distinct_and_each_called_once(resnet1):
    relus = [m for m in resnet1.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 1 + 8 * 2  # stem + two per BasicBlock
    assert len({id(r) for r in relus}) == len(relus)
    assert not any(r.inplace for r in relus)
    calls = Counter()
    leaves = [m for m in resnet1.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda mod, i, o: calls.update([id(mod)])) for m in leaves]
    try:
        with torch.no_grad():
            resnet1(torch.randn(2, 1, 28, 28))
    finally:
        for h in hooks:
            h.remove()
    assert all(calls[id(r)] == 1 for r in relus), "every ReLU runs exactly once per forward"
    assert max(calls.values()) == 1, "no module object is called twice in one forward"


def test_resnet18_block_forward_matches_torchvision_math(resnet1):
    """The separate-ReLU block computes relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut)."""
    block = resnet1.layer2[0]  # has a downsample shortcut
    x = torch.randn(2, 64, 7, 7)
    with torch.no_grad():
        expect = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))) + block.downsample(x))
        assert torch.allclose(block(x), expect, atol=1e-6)


def test_penultimate_activations_shape_and_mode(resnet1):
    fcn = build_model("fcn", (20,), 2, width=16, depth=3)
    fcn.train()
    x = torch.randn(7, 20)
    feats = penultimate_activations(fcn, x, batch_size=3)
    assert feats.shape == (7, 16)
    assert (feats >= 0).all()  # post-ReLU
    assert fcn.training, "the model's mode is restored"
    manual = torch.relu(fcn.features[5](torch.relu(fcn.features[3](torch.relu(fcn.features[1](x))))))
    assert torch.allclose(feats, manual, atol=1e-6)
    assert penultimate_activations(resnet1, torch.randn(3, 1, 28, 28)).shape == (3, 512)
    assert penultimate_activations(build_model("cnn", (1, 28, 28), 10), torch.randn(2, 1, 28, 28)).shape == (2, 512)


def test_resnet18_deepcopy_is_independent(resnet1):
    clone = copy.deepcopy(resnet1)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(clone(x), resnet1(x))
        clone.conv1.weight.zero_()
        assert not torch.allclose(clone(x), resnet1(x))
    assert type(clone.layer1[0]) is type(resnet1.layer1[0])


@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks")
def test_captum_deeplift_runs_on_resnet18(resnet1):
    from lrbook.attribution import attribution_map

    x = torch.randn(2, 1, 28, 28)
    maps = attribution_map(resnet1, x, torch.tensor([0, 3]), method="deeplift")
    assert maps.shape == (2, 28, 28)
    assert torch.isfinite(maps).all() and (maps >= 0).all() and maps.sum() > 0
