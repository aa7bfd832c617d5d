"""Model zoo built from noisy layers: a small CNN (digits default), VGG, WideResNet, ResNet-18."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import NoisyConv2d, NoisyLinear


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
            NoisyConv2d(in_channels, c1, 3, padding=1, bias=False, binary=binary), nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
            NoisyConv2d(c1, c2, 3, padding=1, bias=False, binary=binary), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            NoisyConv2d(c2, c3, 3, padding=1, bias=False, binary=binary), nn.BatchNorm2d(c3), nn.ReLU(inplace=True),
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
            layers += [NoisyConv2d(c, out, 3, padding=1, bias=False, binary=binary), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
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
            raise ValueError(f"depth={depth} must be 6n+4 (e.g. 10, 16, 22, 28, 40)")
        n = (depth - 4) // 6
        widths = [_c(16, width), _c(16 * k, width), _c(32 * k, width), _c(64 * k, width)]
        self.conv1 = NoisyConv2d(in_channels, widths[0], 3, padding=1, bias=False, binary=binary)
        blocks = []
        cin = widths[0]
        for stage, (cout, stride) in enumerate(zip(widths[1:], (1, 2, 2))):
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
            self.shortcut = nn.Sequential(NoisyConv2d(cin, cout, 1, stride=stride, bias=False, binary=binary), nn.BatchNorm2d(cout))

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


MODELS = ("small_cnn", "vgg11", "vgg13", "vgg16", "wrn", "resnet18")


def build_model(name: str, *, in_channels: int, num_classes: int, image_size: int, width: float = 1.0,
                binary: bool = False, depth: int = 28, k: float = 10) -> nn.Module:
    """Build a zoo model by name (see :data:`MODELS`)."""
    if name == "small_cnn":
        return SmallCNN(in_channels, num_classes, width, binary)
    if name in VGG_CFGS:
        return VGG(name, in_channels, num_classes, width, binary, image_size)
    if name == "wrn":
        return WideResNet(depth, k, in_channels, num_classes, width, binary)
    if name == "resnet18":
        return ResNet18(in_channels, num_classes, width, binary)
    raise ValueError(f"model={name!r} must be one of {', '.join(MODELS)}")
