"""Models of paper Sec. 4.2 / supplement C (REPRODUCTION_SPEC section 3).

Every model exposes `.penultimate`: the module whose output is the learned representation
(post-activation penultimate layer), and `.classifier`: the final linear layer (never pruned).
All ReLUs are separate, non-inplace modules so captum's DeepLift works.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from .config import ConfigError


class FCN(nn.Module):
    """ReLU MLP without biases: `depth` hidden layers of `width` units."""

    def __init__(self, in_features: int, num_classes: int, width: int = 1024, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width, bias=False), nn.ReLU()]
            d = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(d, num_classes, bias=False)
        self.penultimate = self.features[-1]

    def forward(self, x):
        return self.classifier(self.features(x))


VGG11_CHANNELS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class CNN(nn.Module):
    """VGG11-like conv stack, no bias terms, no BatchNorm, one linear layer after global pooling
    (supplement C). Max-pools use ceil mode so 28x28 inputs survive all five. Initialised as
    torchvision's VGG (Kaiming-normal fan-out convs, N(0, 0.01) linear): with PyTorch's default init
    an eight-conv stack without BatchNorm shrinks its signal ~25x and barely trains at small LRs."""

    def __init__(self, in_channels: int, num_classes: int, channels=VGG11_CHANNELS):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in channels:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.ReLU()]
                c = v
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes, bias=False)
        self.penultimate = self.features[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)

    def forward(self, x):
        return self.classifier(self.features(x))


@functools.lru_cache(maxsize=None)
def _separate_relu_blocks():
    """Subclasses of torchvision's residual blocks that use one ReLU module per activation."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    class SeparateReluBasicBlock(BasicBlock):
        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu_out(out + identity)

    class SeparateReluBottleneck(Bottleneck):
        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu_mid(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu_out(out + identity)

    return BasicBlock, SeparateReluBasicBlock, Bottleneck, SeparateReluBottleneck


def torchvision_resnet(name: str, in_channels: int, num_classes: int) -> nn.Module:
    """torchvision ResNet18/50 or Wide-ResNet-101-2 (ImageNet stem kept), `in_channels` input
    channels, and a separate non-inplace ReLU at every use (captum DeepLift needs that)."""
    import torchvision

    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.relu = nn.ReLU()
    basic, sep_basic, bottleneck, sep_bottleneck = _separate_relu_blocks()
    for block in model.modules():
        if type(block) is basic:
            block.__class__ = sep_basic
            block.relu, block.relu_out = nn.ReLU(), nn.ReLU()
        elif type(block) is bottleneck:
            block.__class__ = sep_bottleneck
            block.relu, block.relu_mid, block.relu_out = nn.ReLU(), nn.ReLU(), nn.ReLU()
    model.penultimate = model.avgpool
    model.classifier = model.fc
    return model


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **params) -> nn.Module:
    """Model `name` for inputs of `input_shape` (without batch dim)."""
    if name == "fcn":
        n_in = 1
        for s in input_shape:
            n_in *= s
        return FCN(n_in, num_classes, **params)
    if len(input_shape) != 3 and name != "fcn":
        raise ConfigError(f"model {name!r} needs image inputs (C, H, W); this dataset gives {input_shape}")
    if name == "cnn":
        return CNN(input_shape[0], num_classes, **params)
    if name in ("resnet18", "resnet50", "wide_resnet101_2"):
        return torchvision_resnet(name, input_shape[0], num_classes)
    raise ConfigError(f"unknown model {name!r}; choose fcn, cnn, resnet18, resnet50 or wide_resnet101_2")


def _require_attribute(model: nn.Module, name: str, what: str, example: str) -> nn.Module:
    if not isinstance(getattr(model, name, None), nn.Module):
        raise ValueError(f"{type(model).__name__} has no `.{name}` module: set it to {what} "
                         f"(e.g. `model.{name} = {example}` for a torchvision ResNet), as lrbook's models do")
    return getattr(model, name)


def classifier_layer(model: nn.Module) -> nn.Module:
    """The final layer, which pruning leaves alone (spec 4): `model.classifier` (lrbook's models), or
    the last linear layer registered inside it (torchvision's VGG and MobileNet heads) or, for a
    model without one, in the whole model (a torchvision ResNet's `fc`)."""
    head = getattr(model, "classifier", None)
    if isinstance(head, (nn.Linear, nn.Conv2d)):
        return head
    linears = [m for m in (head if isinstance(head, nn.Module) else model).modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear layer to keep as its classifier: set "
                         "`model.classifier` to its final layer, which pruning leaves alone")
    return linears[-1]


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Convs and hidden linears in registration order; the classifier (`classifier_layer`) is
    excluded (spec 4)."""
    head = classifier_layer(model)
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not head]


def penultimate_activations(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Post-activation penultimate-layer outputs (N, features) in eval mode (spec 1): the output of
    `model.penultimate`, which a model from elsewhere must name."""
    feats = []
    penultimate = _require_attribute(model, "penultimate", "the module whose output is its representation",
                                     "model.avgpool")
    hook = penultimate.register_forward_hook(lambda m, i, o: feats.append(o.flatten(1).detach()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size])
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(feats)
