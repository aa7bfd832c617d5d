"""A Once-for-All style ResNet supernet for the NAS of chapter 6 (§6.2.1), sized for the 8×8 digits.

The thesis searches the pre-trained OFA-ResNet50 [121] (elastic depth ``D``, width and expand
ratio).  This is the same construction at toy scale, trained here in seconds on a CPU:

* a 3×3 stem conv (elastic width) then ``len(stage_widths)`` stages of bottleneck residual
  blocks (1×1 → 3×3 → 1×1, plus a 1×1 projection shortcut on each stage's first block),
  global average pooling and a linear head;
* **elastic depth**: stage ``s`` runs its first ``D[s]`` blocks, ``D[s] ∈ depth_choices``;
* **elastic width**: one multiplier per stage and one for the stem, ``∈ width_choices``, scaling
  the stage's output channels;
* **elastic expand ratio**: per block, the bottleneck's middle channels are
  ``round(e · out_channels)``, ``e ∈ expand_choices``;
* **weight sharing** (OFA): a subnet uses the *first* channels of every shared conv and
  batch-norm, and the first blocks of each stage.

Every conv/linear is a :class:`~workbench.nn.NoisyConv2d` / :class:`~workbench.nn.NoisyLinear`
(weights read through a per-layer memory), so a state's ``g_u`` vector maps onto the layers by
name.  Default size (stem 16, stages 16/32/64, 3 blocks each): 32 crossbar layers,
``27 · 81 · 2⁹ = 1 119 744`` architecture encodings and ``81 · (2 + 4 + 8)³ = 222 264`` distinct
networks (expand ratios of skipped blocks do not matter); see :meth:`ArchSpace.size`.

Encoding (fixed length, pymoo-compatible float vector, :class:`ArchSpace`)::

    s = [ D_0 .. D_{S-1} | w_stem, w_0 .. w_{S-1} | e_{0,0} .. e_{S-1,B-1} | r_1 .. r_L ]

``D`` holds depth *values*, ``w``/``e`` hold *indices* into ``width_choices``/``expand_choices``,
and ``r_l`` is layer ``l``'s ``g_u`` **as a multiple of its default** ``g_u^d = ‖W_l‖∞`` (so
``r ∈ [0.5, 1.5]``, eq 6.2, where the layer is present and ``r = 0`` where it is not; the absolute
``g_u = r · ‖W_l‖∞`` is formed when a subnet is programmed, from that subnet's own weights).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import param
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import __version__
from ..datasets import DataBundle, as_tensors, load_dataset
from ..device import resolve_device
from ..hardware.base import plain_values, set_knobs
from ..nn.deploy import fold_into
from ..nn.layers import NoisyConv2d, NoisyLinear, noisy_layers
from ..training.trainer import Cancelled, Batches

#: bump when a change alters trained supernets (part of :meth:`SupernetConfig.cache_key`)
SUPERNET_VERSION = "1"


def _ch(mult: float, base: int) -> int:
    return max(1, int(round(mult * base)))


# --------------------------------------------------------------------------- configuration
class SupernetConfig(param.Parameterized):
    """Architecture space and training recipe of a supernet (a complete, hashable spec)."""

    dataset = param.Selector(default="digits", objects=["digits", "mnist", "fashion_mnist", "cifar10", "cifar100"],
                             doc="dataset the supernet is trained on (digits is embedded, no download)")
    stem_width = param.Integer(16, bounds=(1, 512), doc="stem output channels at width multiplier 1")
    stage_widths = param.List([16, 32, 64], item_type=int, bounds=(1, 6),
                              doc="output channels of each stage at width multiplier 1")
    strides = param.List([1, 2, 2], item_type=int, bounds=(1, 6), doc="stride of each stage's first block")
    depth_choices = param.List([1, 2, 3], item_type=int, bounds=(1, 8), doc="allowed blocks per stage D (elastic depth)")
    width_choices = param.List([0.5, 0.75, 1.0], item_type=float, bounds=(1, 8),
                               doc="allowed width multipliers (elastic width; stem and each stage)")
    expand_choices = param.List([0.5, 1.0], item_type=float, bounds=(1, 8),
                                doc="allowed bottleneck expand ratios e (middle channels = e · out)")
    epochs = param.Integer(8, bounds=(1, 1000), doc="training epochs")
    batch_size = param.Integer(128, bounds=(1, 65536), doc="minibatch size")
    lr = param.Number(0.1, bounds=(0.0, 10.0), inclusive_bounds=(False, True), doc="SGD learning rate (cosine schedule)")
    momentum = param.Number(0.9, bounds=(0.0, 1.0), inclusive_bounds=(True, False), doc="SGD (Nesterov) momentum")
    weight_decay = param.Number(5e-5, bounds=(0.0, 1.0), doc="L2 weight decay")
    n_random = param.Integer(2, bounds=(0, 16), doc="random subnets per step besides the largest and smallest (sandwich rule)")
    distill = param.Boolean(True, doc="in-place distillation: the largest subnet's output is the other subnets' soft target")
    seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="seed of initialisation, shuffling and subnet sampling")

    def check(self) -> "SupernetConfig":
        if len(self.strides) != len(self.stage_widths):
            raise ValueError(f"strides={self.strides} must have one entry per stage ({len(self.stage_widths)})")
        for name in ("depth_choices", "width_choices", "expand_choices"):
            vals = getattr(self, name)
            if sorted(vals) != list(vals) or len(set(vals)) != len(vals) or min(vals) <= 0:
                raise ValueError(f"{name}={vals} must be positive, strictly increasing")
        return self

    def to_dict(self) -> dict:
        return plain_values(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SupernetConfig":
        cfg = cls()
        set_knobs(cfg, **d)
        return cfg.check()

    def replace(self, **changes) -> "SupernetConfig":
        return type(self).from_dict({**self.to_dict(), **changes})

    def cache_key(self) -> str:
        """sha256 of the sorted, complete config plus the code version (STYLE §9)."""
        blob = json.dumps({"kind": "supernet", "spec": self.to_dict(), "code": f"{__version__}+nas{SUPERNET_VERSION}"},
                          sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


# --------------------------------------------------------------------------- architecture space
@dataclass(frozen=True)
class Arch:
    """One subnet: blocks per stage, width multipliers (stem first) and expand ratio per block."""

    depth: tuple[int, ...]
    width: tuple[float, ...]
    expand: tuple[tuple[float, ...], ...]


class ArchSpace:
    """The fixed-length state encoding ``s = (m, g_u)`` of §6.2.1 for one supernet.

    ``m`` = per-stage depth ``D`` (values), width indices (stem + stages) and per-block expand
    indices; ``g_u`` = one entry per supernet crossbar layer, in the fixed order of
    :meth:`layer_names`, as a multiple ``r`` of the layer's default ``g_u^d = ‖W_l‖∞`` (eq 6.1):
    ``r ∈ [gu_low, gu_high] = [0.5, 1.5]`` (eq 6.2) where ``mask(D)`` is 1, exactly 0 elsewhere.
    """

    gu_low = 0.5
    gu_high = 1.5

    def __init__(self, layer_names: Sequence[str], layer_block: Sequence[tuple[int, int] | None], n_stages: int,
                 depth_choices: Sequence[int], width_choices: Sequence[float], expand_choices: Sequence[float]):
        self.n_stages = int(n_stages)
        self.depth_choices = tuple(int(d) for d in depth_choices)
        self.width_choices = tuple(float(w) for w in width_choices)
        self.expand_choices = tuple(float(e) for e in expand_choices)
        self.max_depth = max(self.depth_choices)
        self._layer_names = tuple(layer_names)
        #: (stage, block) of each layer, or None for layers every subnet has (stem, head)
        self.layer_block = tuple(layer_block)
        S, B = self.n_stages, self.max_depth
        self.arch_names = ([f"D{s}" for s in range(S)] + ["w_stem"] + [f"w{s}" for s in range(S)]
                           + [f"e{s}_{b}" for s in range(S) for b in range(B)])
        self.n_arch = len(self.arch_names)
        self.n_layers = len(self._layer_names)
        self.n_var = self.n_arch + self.n_layers
        self.depth_slice = slice(0, S)
        self.width_slice = slice(S, 2 * S + 1)
        self.expand_slice = slice(2 * S + 1, self.n_arch)
        self.gu_slice = slice(self.n_arch, self.n_var)
        stage = np.array([-1 if lb is None else lb[0] for lb in self.layer_block])
        block = np.array([-1 if lb is None else lb[1] for lb in self.layer_block])
        self._stage, self._block = stage, block

    # ----- names and bounds
    def layer_names(self) -> list[str]:
        """Supernet crossbar layers in the fixed order of the ``g_u`` part of a state."""
        return list(self._layer_names)

    @property
    def var_names(self) -> list[str]:
        return self.arch_names + [f"g_u:{n}" for n in self._layer_names]

    @property
    def xl(self) -> np.ndarray:
        """pymoo lower bounds (``g_u`` entries may be 0: layer absent)."""
        lo = np.zeros(self.n_var)
        lo[self.depth_slice] = min(self.depth_choices)
        return lo

    @property
    def xu(self) -> np.ndarray:
        hi = np.empty(self.n_var)
        hi[self.depth_slice] = self.max_depth
        hi[self.width_slice] = len(self.width_choices) - 1
        hi[self.expand_slice] = len(self.expand_choices) - 1
        hi[self.gu_slice] = self.gu_high
        return hi

    # ----- mask (eq 6.4)
    def mask(self, D) -> np.ndarray:
        """``mask(D)``: which supernet layers the depth vector ``D`` keeps (bool, ``(L,)`` or ``(n, L)``).

        Stem and head are always kept; block ``b`` of stage ``s`` is kept iff ``b < D[s]``."""
        D = np.asarray(D)
        single = D.ndim == 1
        D2 = np.atleast_2d(D).astype(int)
        if D2.shape[1] != self.n_stages:
            raise ValueError(f"D has {D2.shape[1]} entries, the supernet has {self.n_stages} stages")
        always = self._stage < 0
        per = D2[:, np.clip(self._stage, 0, None)] > self._block[None, :]
        m = np.where(always[None, :], True, per)
        return m[0] if single else m

    def state_mask(self, states) -> np.ndarray:
        """``mask(D)`` of each state's depth entries."""
        X = np.atleast_2d(np.asarray(states, dtype=float))
        return self.mask(np.rint(X[:, self.depth_slice]).astype(int))

    # ----- encode / decode
    def decode(self, s) -> Arch:
        s = np.asarray(s, dtype=float)
        S, B = self.n_stages, self.max_depth
        d = tuple(int(v) for v in np.rint(s[self.depth_slice]))
        w = tuple(self.width_choices[int(v)] for v in np.rint(s[self.width_slice]))
        e_idx = np.rint(s[self.expand_slice]).astype(int).reshape(S, B)
        e = tuple(tuple(self.expand_choices[i] for i in row) for row in e_idx)
        return Arch(d, w, e)

    def encode(self, arch: Arch, g_u=None) -> np.ndarray:
        """State vector of ``arch``; ``g_u`` (multiples of ``g_u^d``) defaults to 1 on kept layers (M1)."""
        s = np.zeros(self.n_var)
        s[self.depth_slice] = arch.depth
        s[self.width_slice] = [self.width_choices.index(float(v)) for v in arch.width]
        s[self.expand_slice] = [self.expand_choices.index(float(v)) for row in arch.expand for v in row]
        m = self.mask(np.asarray(arch.depth))
        s[self.gu_slice] = m * (1.0 if g_u is None else np.asarray(g_u, dtype=float))
        return s

    def arch_key(self, s) -> tuple:
        """Hashable key of the architecture part (expand ratios of skipped blocks zeroed)."""
        s = np.asarray(s, dtype=float)
        a = np.rint(s[: self.n_arch]).astype(int)
        e = a[self.expand_slice].reshape(self.n_stages, self.max_depth).copy()
        for st in range(self.n_stages):
            e[st, a[st]:] = 0
        return tuple(a[: self.expand_slice.start]) + tuple(e.ravel())

    def largest(self) -> Arch:
        S, B = self.n_stages, self.max_depth
        return Arch((self.max_depth,) * S, (self.width_choices[-1],) * (S + 1), ((self.expand_choices[-1],) * B,) * S)

    def smallest(self) -> Arch:
        S, B = self.n_stages, self.max_depth
        return Arch((min(self.depth_choices),) * S, (self.width_choices[0],) * (S + 1), ((self.expand_choices[0],) * B,) * S)

    def sample_arch(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random architecture parts (uniform over every choice), shape ``(n, n_arch)``."""
        S, B = self.n_stages, self.max_depth
        d = rng.choice(self.depth_choices, size=(n, S))
        w = rng.integers(0, len(self.width_choices), size=(n, S + 1))
        e = rng.integers(0, len(self.expand_choices), size=(n, S * B))
        return np.concatenate([d, w, e], axis=1).astype(float)

    def random_arch(self, rng: np.random.Generator) -> Arch:
        return self.decode(np.concatenate([self.sample_arch(1, rng)[0], np.zeros(self.n_layers)]))

    def default_states(self, arch_part) -> np.ndarray:
        """States with ``g_u = g_u^d`` (``r = 1``) on every kept layer (strategy M1)."""
        A = np.atleast_2d(np.asarray(arch_part, dtype=float))[:, : self.n_arch]
        m = self.mask(np.rint(A[:, self.depth_slice]).astype(int))
        return np.concatenate([A, m.astype(float)], axis=1)

    def is_valid(self, states) -> np.ndarray:
        """Per state: integer choices in range, ``g_u ∈ [0.5, 1.5]`` where kept and exactly 0 elsewhere."""
        X = np.atleast_2d(np.asarray(states, dtype=float))
        A = X[:, : self.n_arch]
        ok = np.all(A == np.rint(A), axis=1) & np.all((A >= self.xl[: self.n_arch]) & (A <= self.xu[: self.n_arch]), axis=1)
        ok &= np.all(np.isin(np.rint(X[:, self.depth_slice]), self.depth_choices), axis=1)
        m = self.mask(np.rint(X[:, self.depth_slice]).astype(int))
        g = X[:, self.gu_slice]
        inside = (g >= self.gu_low) & (g <= self.gu_high)
        return ok & np.all(np.where(m, inside, g == 0), axis=1)

    def size(self) -> dict[str, int]:
        """Search-space size: encodings, distinct networks, crossbar layers, state length."""
        S = self.n_stages
        nw, ne = len(self.width_choices), len(self.expand_choices)
        encodings = len(self.depth_choices) ** S * nw ** (S + 1) * ne ** (S * self.max_depth)
        distinct = nw ** (S + 1) * sum(ne ** d for d in self.depth_choices) ** S
        return {"architecture_encodings": int(encodings), "distinct_architectures": int(distinct),
                "crossbar_layers": self.n_layers, "state_length": self.n_var, "arch_length": self.n_arch}


# --------------------------------------------------------------------------- static (exported) modules
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


# --------------------------------------------------------------------------- dynamic (shared) modules
class DynamicConv2d(NoisyConv2d):
    """A shared conv: a subnet uses ``weight[:out, :in]`` (the first channels, OFA weight sharing).

    The slice is read through the layer's memory (fresh noise) like :class:`NoisyConv2d`; the
    supernet itself is trained with ideal memories and evaluated through exported subnets."""

    def forward(self, x, out_channels: int | None = None):
        o = out_channels or self.out_channels
        w = self.quantized_weight()[:o, : x.shape[1]]
        if self.memory.is_noisy:
            r = self.memory.read(w.detach(), self.generator)
            w = w + (r.weight - w.detach())
        return F.conv2d(x, w, None, self.stride, self.padding)

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
        w = self.quantized_weight()[:, : x.shape[1]]
        if self.memory.is_noisy:
            r = self.memory.read(w.detach(), self.generator)
            w = w + (r.weight - w.detach())
        return F.linear(x, w, self.bias)

    def export(self, cin: int) -> NoisyLinear:
        lin = NoisyLinear(cin, self.out_features, bias=True)
        with torch.no_grad():
            lin.weight.copy_(self.weight[:, :cin])
            lin.bias.copy_(self.bias)
        return lin.to(self.weight.device)


class Supernet(nn.Module):
    """The weight-sharing supernet; ``forward(x, arch)`` runs the subnet ``arch`` (default: largest)."""

    def __init__(self, cfg: SupernetConfig | None = None, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.config = (cfg or SupernetConfig()).check()
        c = self.config
        self.in_channels, self.num_classes = in_channels, num_classes
        wmax, emax, B = max(c.width_choices), max(c.expand_choices), max(c.depth_choices)
        self.stem = DynamicConvBN(in_channels, _ch(wmax, c.stem_width), 3)
        stages, cin = [], _ch(wmax, c.stem_width)
        for width, stride in zip(c.stage_widths, c.strides):
            cout = _ch(wmax, width)
            stages.append(nn.ModuleList([
                DynamicBottleneck(cin if b == 0 else cout, _ch(emax, cout), cout, stride if b == 0 else 1, shortcut=b == 0)
                for b in range(B)]))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.head = DynamicLinear(cin, num_classes)
        names, where = [], []
        for name in noisy_layers(self):
            names.append(name)
            parts = name.split(".")
            where.append((int(parts[1]), int(parts[2])) if parts[0] == "stages" else None)
        self.space = ArchSpace(names, where, len(c.stage_widths), c.depth_choices, c.width_choices, c.expand_choices)

    def layer_names(self) -> list[str]:
        """Crossbar layers in the fixed order of a state's ``g_u`` part."""
        return self.space.layer_names()

    def channels(self, arch: Arch):
        """``(stem_out, [(cin, mid, cout) per kept block, per stage])`` of ``arch``."""
        c = self.config
        stem = _ch(arch.width[0], c.stem_width)
        out, cin = [], stem
        for s, width in enumerate(c.stage_widths):
            cout = _ch(arch.width[s + 1], width)
            blocks = []
            for b in range(arch.depth[s]):
                blocks.append((cin if b == 0 else cout, _ch(arch.expand[s][b], cout), cout))
            out.append(blocks)
            cin = cout
        return stem, out

    def _arch(self, arch) -> Arch:
        if arch is None:
            return self.space.largest()
        if isinstance(arch, Arch):
            return arch
        return self.space.decode(np.concatenate([np.asarray(arch, float)[: self.space.n_arch], np.zeros(self.space.n_layers)]))

    def forward(self, x, arch: Arch | Sequence[float] | None = None):
        arch = self._arch(arch)
        stem, chans = self.channels(arch)
        h = F.relu(self.stem(x, stem))
        for blocks, dyn in zip(chans, self.stages):
            for (cin, mid, cout), blk in zip(blocks, dyn):
                h = blk(h, mid, cout)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))

    def subnet(self, arch: Arch | Sequence[float], calib_x: torch.Tensor | None = None, fold_bn: bool = False,
               batch_size: int = 256) -> SubNet:
        """A standalone copy of the subnet ``arch`` (weights sliced from the supernet, eval mode).

        ``calib_x``: batch-norm recalibration set (:func:`recalibrate_bn`; no other fine-tuning,
        §6.1).  ``fold_bn``: fold batch norm into the convs afterwards (deployment, §3.3.2)."""
        arch = self._arch(arch)
        stem, chans = self.channels(arch)
        stages = [[dyn.export(cin, mid, cout) for (cin, mid, cout), dyn in zip(blocks, dyns)]
                  for blocks, dyns in zip(chans, self.stages)]
        last = chans[-1][-1][2]
        net = SubNet(arch, self.stem.export(self.in_channels, stem), stages, self.head.export(last))
        if calib_x is not None:
            recalibrate_bn(net, calib_x, batch_size)
        if fold_bn:
            fold_batchnorm(net, inplace=True)
        return net.eval()


# --------------------------------------------------------------------------- batch norm
@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Recompute every batch-norm layer's running mean/var on the calibration inputs ``x``
    (cumulative average over minibatches; no gradient step, only BN buffers change).

    Forward passes read weights through the attached memories: recalibrate before attaching
    noisy memories (or attach them on purpose for AdaBS)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
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


# --------------------------------------------------------------------------- training
@dataclass
class SupernetResult:
    supernet: Supernet
    history: dict[str, list[float]] = field(default_factory=dict)
    accuracy_largest: float = float("nan")
    accuracy_smallest: float = float("nan")
    train_seconds: float = 0.0
    device: str = "cpu"
    cache_key: str = ""


def _soft_ce(logits, target_logits):
    return torch.sum(-F.softmax(target_logits, 1) * F.log_softmax(logits, 1), 1).mean()


@torch.no_grad()
def _accuracy(model, x, y, batch_size=1024, **kw) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size], **kw).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / max(len(y), 1)


def calibration_tensor(data: DataBundle, n: int = 256, seed: int = 0) -> torch.Tensor:
    """Inputs of ``n`` random training images for batch-norm recalibration."""
    return as_tensors(data.calibration(min(n, len(data.train)), seed))[0]


def train_supernet(cfg: SupernetConfig | None = None, data: DataBundle | None = None, *, device="auto",
                   progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
                   calib_size: int = 256) -> SupernetResult:
    """Train a supernet with the sandwich rule (OFA / BigNAS): every step back-propagates the
    largest, the smallest and ``n_random`` random subnets (gradients summed, one SGD step); with
    ``distill`` the other subnets learn the largest one's soft output (in-place distillation).

    Seeded by ``cfg.seed`` (weights, shuffling, subnet draws).  ``progress`` gets ``{"epoch",
    "epochs", "loss", "accuracy_largest", "accuracy_smallest"}`` per epoch (accuracies on the test
    split, of standalone subnets after batch-norm recalibration on ``calib_size`` training images);
    ``cancel`` raises :class:`Cancelled` at the next step.  The returned supernet is on the CPU, in
    eval mode.  Default size: about 15 s on one CPU core (8 epochs of the 1 437 digits).
    """
    cfg = (cfg or SupernetConfig()).check()
    dev = resolve_device(device)
    data = data if data is not None else load_dataset(cfg.dataset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = Supernet(cfg, data.in_channels, data.num_classes)
    net = net.to(dev)
    space = net.space
    rng = np.random.default_rng(cfg.seed)
    batches = Batches(data.train, cfg.batch_size, True, dev, cfg.seed)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                          weight_decay=cfg.weight_decay)
    total = cfg.epochs * len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    x_te, y_te = (t.to(dev) for t in as_tensors(data.test))
    calib = calibration_tensor(data, calib_size, cfg.seed).to(dev)
    hist: dict[str, list[float]] = {"loss": [], "accuracy_largest": [], "accuracy_smallest": []}
    big, small = space.largest(), space.smallest()
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        net.train()
        tot, seen = 0.0, 0
        for x, y in batches:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"supernet training cancelled at epoch {epoch + 1}/{cfg.epochs}")
            opt.zero_grad(set_to_none=True)
            out_big = net(x, big)
            loss = F.cross_entropy(out_big, y)
            loss.backward()
            teacher = out_big.detach()
            for arch in [small] + [space.random_arch(rng) for _ in range(cfg.n_random)]:
                out = net(x, arch)
                (_soft_ce(out, teacher) if cfg.distill else F.cross_entropy(out, y)).backward()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"supernet training diverged at epoch {epoch + 1}; lower lr={cfg.lr}")
            opt.step()
            sched.step()
            tot += loss.item() * len(y)
            seen += len(y)
        hist["loss"].append(tot / seen)
        net.eval()
        hist["accuracy_largest"].append(_accuracy(net.subnet(big, calib), x_te, y_te))
        hist["accuracy_smallest"].append(_accuracy(net.subnet(small, calib), x_te, y_te))
        if progress is not None:
            progress({"epoch": epoch + 1, "epochs": cfg.epochs, "loss": hist["loss"][-1],
                      "accuracy_largest": hist["accuracy_largest"][-1],
                      "accuracy_smallest": hist["accuracy_smallest"][-1]})
    seconds = time.perf_counter() - start
    net.eval()
    return SupernetResult(net.cpu(), hist, hist["accuracy_largest"][-1], hist["accuracy_smallest"][-1], seconds, str(dev),
                          cfg.cache_key())
