"""The elastic (weight-sharing) modules of the supernet and the standalone modules a subnet is
exported to (OFA weight sharing, §6.2.1).

A shared layer serves a subnet with its *first* channels: :class:`DynamicConv2d` and
:class:`DynamicLinear` read that slice through the layer's memory by the same
:meth:`~workbench.nn.layers.NoisyMixin.forward_noisy` path as every noisy layer, so the memory's
checks (e.g. 1-bit SRAM holds sign bits only) and the straight-through gradient apply unchanged.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..analysis.adabs import batchnorm_layers
from ..nn.deploy import fold_into
from ..nn.layers import NoisyConv2d, NoisyLinear
from .space import Arch


class ConvBN(nn.Module):
    """A noisy conv followed by batch norm (folded into the conv by :func:`fold_batchnorm`)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.conv = NoisyConv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))

    @torch.no_grad()
    def fold_(self) -> None:
        """BN folded into the conv for deployment (§3.3.2): ``W' = W·γ/σ``, ``b' = β − γμ/σ``."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        fold_into(self.conv, self.bn)
        self.bn = nn.Identity()


class Bottleneck(nn.Module):
    """Residual bottleneck 1×1 → 3×3 (stride) → 1×1, projection shortcut when given."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, shortcut: bool):
        super().__init__()
        self.conv1 = ConvBN(cin, mid, 1)
        self.conv2 = ConvBN(mid, mid, 3, stride)
        self.conv3 = ConvBN(mid, cout, 1)
        self.shortcut = ConvBN(cin, cout, 1, stride) if shortcut else None

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        h = self.conv3(h)
        return F.relu(h + (self.shortcut(x) if self.shortcut is not None else x))


class SubNet(nn.Module):
    """A standalone subnet (weights copied from the supernet); noisy layers carry supernet names."""

    def __init__(self, arch: Arch, stem: ConvBN, stages: list[list[Bottleneck]], head: NoisyLinear):
        super().__init__()
        self.arch = arch
        self.stem = stem
        self.stages = nn.ModuleList([nn.ModuleList(blocks) for blocks in stages])
        self.head = head

    def forward(self, x):
        h = F.relu(self.stem(x))
        for blocks in self.stages:
            for blk in blocks:
                h = blk(h)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class DynamicConv2d(NoisyConv2d):
    """A shared conv: a subnet uses ``weight[:out, :in]`` (the first channels, OFA weight sharing).

    Only that slice is read through the layer's memory (fresh noise); the supernet itself is
    trained with ideal memories and evaluated through exported subnets."""

    def forward(self, x, out_channels: int | None = None):
        return self.forward_noisy(x, (slice(out_channels or self.out_channels), slice(x.shape[1])))

    def export(self, cin: int, cout: int) -> NoisyConv2d:
        conv = NoisyConv2d(cin, cout, self.kernel_size, stride=self.stride, padding=self.padding, bias=False)
        with torch.no_grad():
            conv.weight.copy_(self.weight[:cout, :cin])
        return conv.to(self.weight.device)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """A shared batch norm: a subnet uses the first ``C`` affine parameters and running statistics."""

    def forward(self, x):
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, self.momentum if self.momentum is not None else 0.1, self.eps)

    def export(self, c: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(c, eps=self.eps, momentum=self.momentum)
        with torch.no_grad():
            bn.weight.copy_(self.weight[:c])
            bn.bias.copy_(self.bias[:c])
            bn.running_mean.copy_(self.running_mean[:c])
            bn.running_var.copy_(self.running_var[:c])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn.to(self.weight.device)


class DynamicConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.conv = DynamicConv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn = DynamicBatchNorm2d(cout)

    def forward(self, x, cout: int):
        return self.bn(self.conv(x, cout))

    def export(self, cin: int, cout: int) -> ConvBN:
        m = ConvBN.__new__(ConvBN)
        nn.Module.__init__(m)
        m.conv = self.conv.export(cin, cout)
        m.bn = self.bn.export(cout)
        return m


class DynamicBottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int, shortcut: bool):
        super().__init__()
        self.conv1 = DynamicConvBN(cin, mid, 1)
        self.conv2 = DynamicConvBN(mid, mid, 3, stride)
        self.conv3 = DynamicConvBN(mid, cout, 1)
        self.shortcut = DynamicConvBN(cin, cout, 1, stride) if shortcut else None

    def forward(self, x, mid: int, cout: int):
        h = F.relu(self.conv1(x, mid))
        h = F.relu(self.conv2(h, mid))
        h = self.conv3(h, cout)
        return F.relu(h + (self.shortcut(x, cout) if self.shortcut is not None else x))

    def export(self, cin: int, mid: int, cout: int) -> Bottleneck:
        b = Bottleneck.__new__(Bottleneck)
        nn.Module.__init__(b)
        b.conv1 = self.conv1.export(cin, mid)
        b.conv2 = self.conv2.export(mid, mid)
        b.conv3 = self.conv3.export(mid, cout)
        b.shortcut = self.shortcut.export(cin, cout) if self.shortcut is not None else None
        return b


class DynamicLinear(NoisyLinear):
    """A shared linear head: a subnet uses ``weight[:, :in]``."""

    def forward(self, x):
        return self.forward_noisy(x, (slice(None), slice(x.shape[1])))

    def export(self, cin: int) -> NoisyLinear:
        lin = NoisyLinear(cin, self.out_features, bias=True)
        with torch.no_grad():
            lin.weight.copy_(self.weight[:, :cin])
            lin.bias.copy_(self.bias)
        return lin.to(self.weight.device)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Recompute every batch-norm layer's running mean/var on the calibration inputs ``x``
    (cumulative average over minibatches; no gradient step, only BN buffers change).

    Forward passes read weights through the attached memories: recalibrate before attaching
    noisy memories (or attach them on purpose for AdaBS)."""
    bns = list(batchnorm_layers(model).values())
    if not bns:
        return model
    moms = [bn.momentum for bn in bns]
    was_training = model.training
    dev = next(model.parameters()).device
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size].to(dev))
    finally:
        for bn, m in zip(bns, moms):
            bn.momentum = m
        model.train(was_training)
    return model


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold every :class:`ConvBN`'s batch norm into its conv (deployment, §3.3.2, ch. 6): the
    crossbar then stores ``W·γ/σ`` and ``g_u^d = ‖W·γ/σ‖∞``; the folded bias is reliable digital."""
    net = model if inplace else copy.deepcopy(model)
    for m in net.modules():
        if isinstance(m, ConvBN):
            m.fold_()
    return net
