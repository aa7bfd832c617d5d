"""Model zoo built from noisy layers: a small CNN (digits default), VGG, WideResNet, ResNet-18, and
torchvision's MobileNetV2 (adapted to 32×32) and ImageNet ResNet-18 (chapter 5 of the thesis)."""

from __future__ import annotations

import functools
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..knobs import KnobError
from ..rng import GLOBAL_RNG
from .layers import NoisyConv1d, NoisyConv2d, NoisyLinear, NoisyMixin


def _c(n: float, width: float) -> int:
    return max(1, int(round(n * width)))


class SmallCNN(nn.Module):
    """Three 3×3 conv blocks + linear head; the default network for the 8×8 digits data.

    ``width`` scales every channel count; ``binary`` makes every conv/linear a BinaryConnect layer.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: float = 1.0, binary: bool = False):
        super().__init__()
        c1, c2, c3 = _c(32, width), _c(64, width), _c(64, width)
        self.features = nn.Sequential(
            NoisyConv2d(in_channels, c1, 3, padding=1, bias=False, binary=binary),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            NoisyConv2d(c1, c2, 3, padding=1, bias=False, binary=binary),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            NoisyConv2d(c2, c3, 3, padding=1, bias=False, binary=binary),
            nn.BatchNorm2d(c3),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = NoisyLinear(4 * c3, num_classes, bias=True, binary=binary)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG-style network for small images (conv-BN-ReLU blocks, max-pooling, one linear head).

    Pooling stops once the feature map is 1×1, so the same net runs on 8×8 digits and 32×32 CIFAR.
    """

    def __init__(self, cfg: str = "vgg13", in_channels: int = 3, num_classes: int = 10, width: float = 1.0,
                 binary: bool = False, image_size: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        c, size = in_channels, image_size
        for v in VGG_CFGS[cfg]:
            if v == "M":
                if size > 1:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            out = _c(v, width)
            layers += [
                NoisyConv2d(c, out, 3, padding=1, bias=False, binary=binary),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            c = out
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = NoisyLinear(c, num_classes, binary=binary)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class _WideBlock(nn.Module):
    def __init__(self, cin, cout, stride, binary):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = NoisyConv2d(cin, cout, 3, stride=stride, padding=1, bias=False, binary=binary)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = NoisyConv2d(cout, cout, 3, padding=1, bias=False, binary=binary)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = NoisyConv2d(cin, cout, 1, stride=stride, bias=False, binary=binary)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(F.relu(self.bn2(y)))
        return y + (self.shortcut(o) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    """WideResNet-depth-k (pre-activation), the thesis' ch. 4 family (WRN-28-10 in §4.2).

    ``depth = 6n + 4``; ``width`` multiplies the widening factor ``k`` for width sweeps.
    """

    def __init__(self, depth: int = 28, k: float = 10, in_channels: int = 3, num_classes: int = 10,
                 width: float = 1.0, binary: bool = False):
        super().__init__()
        if (depth - 4) % 6:
            raise KnobError(f"depth={depth} must be 6n+4 (e.g. 10, 16, 22, 28, 40)")
        n = (depth - 4) // 6
        widths = [_c(16, width), _c(16 * k, width), _c(32 * k, width), _c(64 * k, width)]
        self.conv1 = NoisyConv2d(in_channels, widths[0], 3, padding=1, bias=False, binary=binary)
        blocks = []
        cin = widths[0]
        for cout, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                blocks.append(_WideBlock(cin, cout, stride if i == 0 else 1, binary))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = NoisyLinear(cin, num_classes, binary=binary)

    def forward(self, x):
        y = self.blocks(self.conv1(x))
        y = F.adaptive_avg_pool2d(F.relu(self.bn(y)), 1)
        return self.fc(torch.flatten(y, 1))


class _BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, binary):
        super().__init__()
        self.conv1 = NoisyConv2d(cin, cout, 3, stride=stride, padding=1, bias=False, binary=binary)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = NoisyConv2d(cout, cout, 3, padding=1, bias=False, binary=binary)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                NoisyConv2d(cin, cout, 1, stride=stride, bias=False, binary=binary), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18 (3×3 stem, no max-pool)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: float = 1.0, binary: bool = False):
        super().__init__()
        w = [_c(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = NoisyConv2d(in_channels, w[0], 3, padding=1, bias=False, binary=binary)
        self.bn1 = nn.BatchNorm2d(w[0])
        layers, cin = [], w[0]
        for cout, stride in zip(w, (1, 2, 2, 2)):
            layers += [_BasicBlock(cin, cout, stride, binary), _BasicBlock(cout, cout, 1, binary)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = NoisyLinear(cin, num_classes, binary=binary)

    def forward(self, x):
        y = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


#: layers whose weights the memory models hold: conv (1-D, 2-D, zero padding) and linear
MEMORY_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
#: normalisation layers: their scales are stored reliably, as batch norm's are in the thesis (§4.2)
RELIABLE_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d,
                   nn.InstanceNorm2d)


def unsupported_layers(module: nn.Module, digital: Iterable[str] = ()) -> dict[str, str]:
    """The layers of ``module`` holding weights that no memory model here can hold (a transposed
    or 3-D convolution, a padding mode other than zeros, an embedding, a recurrent cell, ...),
    name -> why, leaving out those named in ``digital`` (kept in reliable digital memory)."""
    digital = set(digital)
    out = {}
    for name, m in module.named_modules():
        if not name or name in digital or any(name.startswith(d + ".") for d in digital) or isinstance(m, NoisyMixin):
            continue
        own = [n for n, _ in m.named_parameters(recurse=False) if "weight" in n]
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and type(m) in (nn.Conv1d, nn.Conv2d):
            if m.padding_mode != "zeros":
                out[name] = f"{type(m).__name__} with padding_mode={m.padding_mode!r} (zero padding only)"
        elif isinstance(m, nn.Linear) and type(m) is nn.Linear:
            continue
        elif own and not isinstance(m, RELIABLE_LAYERS):
            out[name] = type(m).__name__
    return out


def to_noisy(module: nn.Module, binary: bool = False, digital: Iterable[str] = ()) -> nn.Module:
    """Replace, in place, every ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Linear`` of ``module`` (e.g. a
    torchvision model) by its noisy layer (:class:`NoisyConv1d`, :class:`NoisyConv2d`,
    :class:`NoisyLinear`) with identical hyper-parameters (kernel, stride, padding, dilation,
    groups -- depthwise included --, bias) and a copy of its weights, on the same device and dtype
    and in the same train/eval mode.  Module names, hence state-dict keys, are unchanged, so
    checkpoints of the original architecture load as they are.  Normalisation layers (batch,
    layer, group norm) are stored reliably (§4.2) and stay as they are.

    ``binary`` makes every replaced layer a BinaryConnect layer (§3.2.3).  Layers that already are
    noisy are left alone.  ``digital``: names of layers (and their children) kept in reliable
    digital memory on purpose: left as they are and out of every energy and power sum.  Any other
    layer whose weights no memory model holds is refused by name (:class:`KnobError`), never left
    silently in reliable memory.  Returns ``module`` (a bare conv/linear is returned as its noisy copy).
    """
    if isinstance(module, NoisyMixin):
        return module
    digital = tuple(digital)
    if type(module) in MEMORY_LAYERS:
        return _noisy_copy(module, binary)
    bad = unsupported_layers(module, digital)
    if bad:
        listed = "; ".join(f"{n} ({why})" for n, why in bad.items())
        raise KnobError(f"these layers hold weights no memory model here can hold: {listed}. Only Conv1d, Conv2d "
                        "(zero padding) and Linear weights are read through a memory; keep the others in reliable "
                        "digital memory on purpose with digital=[...] (CLI: --digital LAYER ...), which the energy "
                        "and power sums then leave out")
    _replace(module, binary, digital, "")
    return module


def _replace(module: nn.Module, binary: bool, digital: tuple[str, ...], prefix: str) -> None:
    for name, child in list(module.named_children()):
        full = f"{prefix}{name}"
        if isinstance(child, NoisyMixin) or full in digital:
            continue
        if type(child) in MEMORY_LAYERS:
            setattr(module, name, _noisy_copy(child, binary))
        else:
            _replace(child, binary, digital, full + ".")


def _noisy_copy(m: nn.Module, binary: bool) -> nn.Module:
    has_bias = m.bias is not None
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        if m.padding_mode != "zeros":
            raise KnobError(f"to_noisy: padding_mode={m.padding_mode!r} is not supported (zeros only)")
        cls = NoisyConv1d if isinstance(m, nn.Conv1d) else NoisyConv2d
        new = cls(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                  bias=has_bias, binary=binary, groups=m.groups)
        new.dilation = m.dilation           # used by the noisy convolution operator
    else:
        new = NoisyLinear(m.in_features, m.out_features, bias=has_bias, binary=binary)
    new = new.to(device=m.weight.device, dtype=m.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(m.weight)
        new.weight.requires_grad_(m.weight.requires_grad)
        if has_bias:
            new.bias.copy_(m.bias)
            new.bias.requires_grad_(m.bias.requires_grad)
    return new.train(m.training)


#: MobileNetV2's inverted-residual stages ``(t, c, n, s)`` for 32×32 inputs: torchvision's setting
#: with the second stage's stride 2 → 1 (the common CIFAR variant, kuangliu/pytorch-cifar)
MOBILENET_V2_CIFAR_SETTING = [
    [1, 16, 1, 1],
    [6, 24, 2, 1],      # torchvision / the paper: stride 2
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


def mobilenet_v2(in_channels: int = 3, num_classes: int = 100, width: float = 1.0, binary: bool = False) -> nn.Module:
    """MobileNetV2 for 32×32 images (thesis ch. 5: MobileNetV2 on CIFAR-100, Table 5.8).

    Built from ``torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes,
    width_mult=width)`` (never downloads anything) with exactly two changes, as in the common CIFAR
    variant: the stem convolution ``features.0.0`` has stride 1 instead of 2 (and ``in_channels``
    input channels), and the first block of the second stage (``features.2``, 16 → 24 channels)
    has stride 1 instead of 2.  The total stride is therefore 8 instead of 32: a 32×32 input
    leaves a 4×4 map before the global average pooling (torchvision's ImageNet net would leave
    1×1).  Everything else is torchvision's: ReLU6, channel counts rounded to multiples of 8,
    1280 channels in the last 1×1 convolution for ``width ≤ 1``, dropout 0.2 before the
    classifier, torchvision's initialisation.  Every conv (depthwise ones included) and the
    classifier are noisy layers.  State-dict keys are torchvision's.
    """
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    net = tv_mobilenet_v2(weights=None, num_classes=num_classes, width_mult=width,
                          inverted_residual_setting=[list(r) for r in MOBILENET_V2_CIFAR_SETTING])
    stem = net.features[0][0]
    conv = nn.Conv2d(in_channels, stem.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")          # torchvision's init of convs
    net.features[0][0] = conv
    return to_noisy(net, binary)


def resnet18_imagenet(
    in_channels: int = 3, num_classes: int = 1000, width: float = 1.0, binary: bool = False
) -> nn.Module:
    """torchvision's ImageNet ResNet-18 (7×7 stride-2 stem + max-pool, 224×224 inputs) with noisy
    layers, for fine-tuning (thesis §5.3.2, Table 5.9).

    Built with ``torchvision.models.resnet18(weights=None, ...)``: nothing is downloaded.  Its
    state-dict keys and shapes are torchvision's, so a ResNet-18 state dict the user saved
    (``torch.save(torchvision_resnet18.state_dict(), path)``) loads through
    ``TrainConfig.init_weights=path`` (1000 classes for an ImageNet-1K checkpoint).  The
    architecture is fixed: ``width`` must be 1 (a checkpoint would not fit otherwise);
    ``in_channels != 3`` replaces the stem convolution.  A checkpoint whose tensors have other
    shapes is refused with a ``ValueError`` naming them.
    """
    if width != 1.0:
        raise ValueError(
            f"resnet18_imagenet is torchvision's fixed ResNet-18 (checkpoint-compatible): width must be 1, got {width}"
        )
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net = to_noisy(net, binary)
    net.register_load_state_dict_pre_hook(functools.partial(_refuse_wrong_shapes, model_name="resnet18_imagenet"))
    return net


def _refuse_wrong_shapes(module, state_dict, prefix, *args, model_name: str = "the model", **kwargs) -> None:
    """``load_state_dict`` pre-hook: name every tensor whose shape differs from the model's."""
    own = module.state_dict()
    bad = [(k, tuple(v.shape), tuple(own[k[len(prefix):]].shape)) for k, v in state_dict.items()
           if k.startswith(prefix) and k[len(prefix):] in own and hasattr(v, "shape")
           and tuple(v.shape) != tuple(own[k[len(prefix):]].shape)]
    if bad:
        lines = "; ".join(f"{k}: {s} in the file, {m} in the model" for k, s, m in bad[:5])
        hint = ""
        if any(k[len(prefix):].startswith("fc.") for k, _, _ in bad):
            hint = (" (the classifier fc has one row per class: an ImageNet-1K checkpoint needs a dataset "
                    "with 1000 class folders)")
        raise ValueError(f"the weights do not fit {model_name}: {len(bad)} tensor(s) of another shape: "
                         f"{lines}{hint}")


MODELS = ("small_cnn", "vgg11", "vgg13", "vgg16", "wrn", "resnet18", "mobilenet_v2", "resnet18_imagenet")


def build_model(name: str, *, in_channels: int, num_classes: int, image_size: int, width: float = 1.0,
                binary: bool = False, depth: int = 28, k: float = 10) -> nn.Module:
    """Build a zoo model by name (see :data:`MODELS`).  Its initialisation draws from torch's global
    generator, held meanwhile (:data:`workbench.rng.GLOBAL_RNG`): a caller that seeded it in
    :func:`workbench.rng.seeded` gets the same weights whatever other threads do."""
    with GLOBAL_RNG:
        return _build_model(name, in_channels=in_channels, num_classes=num_classes, image_size=image_size,
                            width=width, binary=binary, depth=depth, k=k)


def _build_model(name: str, *, in_channels: int, num_classes: int, image_size: int, width: float,
                 binary: bool, depth: int, k: float) -> nn.Module:
    if name == "small_cnn":
        return SmallCNN(in_channels, num_classes, width, binary)
    if name in VGG_CFGS:
        return VGG(name, in_channels, num_classes, width, binary, image_size)
    if name == "wrn":
        return WideResNet(depth, k, in_channels, num_classes, width, binary)
    if name == "resnet18":
        return ResNet18(in_channels, num_classes, width, binary)
    if name == "mobilenet_v2":
        return mobilenet_v2(in_channels, num_classes, width, binary)
    if name == "resnet18_imagenet":
        return resnet18_imagenet(in_channels, num_classes, width, binary)
    raise KnobError(f"model={name!r} is not valid: model must be one of {', '.join(map(repr, MODELS))}")
