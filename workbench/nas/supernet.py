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

The state encoding ``s = (m, g_u)`` is :class:`~workbench.nas.space.ArchSpace`; the shared
layers are in :mod:`workbench.nas.elastic`.
"""

from __future__ import annotations

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
from ..keys import spec_key
from ..knobs import KnobError
from ..nn.layers import noisy_layers
from ..rng import private_draws
from ..training.trainer import Batches, Cancelled, cosine_schedule
from .elastic import DynamicBottleneck, DynamicConvBN, DynamicLinear, SubNet, fold_batchnorm, recalibrate_bn
from .space import Arch, ArchSpace

#: bump when a change alters trained supernets (part of :meth:`SupernetConfig.cache_key`)
SUPERNET_VERSION = "1"


def _ch(mult: float, base: int) -> int:
    return max(1, int(round(mult * base)))


class SupernetConfig(param.Parameterized):
    """Architecture space and training recipe of a supernet (a complete, hashable spec)."""

    dataset = param.Selector(default="digits", objects=["digits", "mnist", "fashion_mnist", "cifar10", "cifar100"],
                             doc="dataset the supernet is trained on (digits is embedded, no download)")
    stem_width = param.Integer(16, bounds=(1, 512), doc="stem output channels at width multiplier 1")
    stage_widths = param.List([16, 32, 64], item_type=int, bounds=(1, 6),
                              doc="output channels of each stage at width multiplier 1")
    strides = param.List([1, 2, 2], item_type=int, bounds=(1, 6), doc="stride of each stage's first block")
    depth_choices = param.List([1, 2, 3], item_type=int, bounds=(1, 8),
                               doc="allowed blocks per stage D (elastic depth)")
    width_choices = param.List([0.5, 0.75, 1.0], item_type=float, bounds=(1, 8),
                               doc="allowed width multipliers (elastic width; stem and each stage)")
    expand_choices = param.List([0.5, 1.0], item_type=float, bounds=(1, 8),
                                doc="allowed bottleneck expand ratios e (middle channels = e · out)")
    epochs = param.Integer(8, bounds=(1, 1000), doc="training epochs")
    batch_size = param.Integer(128, bounds=(1, 65536), doc="minibatch size")
    lr = param.Number(0.1, bounds=(0.0, 10.0), inclusive_bounds=(False, True),
                      doc="SGD learning rate (cosine schedule)")
    momentum = param.Number(0.9, bounds=(0.0, 1.0), inclusive_bounds=(True, False), doc="SGD (Nesterov) momentum")
    weight_decay = param.Number(5e-5, bounds=(0.0, 1.0), doc="L2 weight decay")
    n_random = param.Integer(2, bounds=(0, 16),
                             doc="random subnets per step besides the largest and smallest (sandwich rule)")
    distill = param.Boolean(True,
                            doc="in-place distillation: the largest subnet's output is the other subnets' soft target")
    seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="seed of initialisation, shuffling and subnet sampling")

    def check(self) -> "SupernetConfig":
        if len(self.strides) != len(self.stage_widths):
            raise KnobError(f"strides={self.strides} must have one entry per stage ({len(self.stage_widths)})")
        for name in ("depth_choices", "width_choices", "expand_choices"):
            vals = getattr(self, name)
            if sorted(vals) != list(vals) or len(set(vals)) != len(vals) or min(vals) <= 0:
                raise KnobError(f"{name}={vals} must be positive, strictly increasing")
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
        return spec_key("supernet", self.to_dict(), f"{__version__}+nas{SUPERNET_VERSION}")


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
                DynamicBottleneck(cin if b == 0 else cout, _ch(emax, cout), cout, stride if b == 0 else 1,
                                  shortcut=b == 0)
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
        part = np.asarray(arch, float)[: self.space.n_arch]
        return self.space.decode(np.concatenate([part, np.zeros(self.space.n_layers)]))

    def forward(self, x, arch: Arch | Sequence[float] | None = None):
        arch = self._arch(arch)
        stem, chans = self.channels(arch)
        h = F.relu(self.stem(x, stem))
        for blocks, dyn in zip(chans, self.stages):
            for (_, mid, cout), blk in zip(blocks, dyn):
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
    with private_draws():
        torch.manual_seed(cfg.seed)
        net = Supernet(cfg, data.in_channels, data.num_classes)
    net = net.to(dev)
    space = net.space
    rng = np.random.default_rng(cfg.seed)
    batches = Batches(data.train, cfg.batch_size, True, dev, cfg.seed)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                          weight_decay=cfg.weight_decay)
    sched = cosine_schedule(opt, cfg.epochs * len(batches))
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
    return SupernetResult(net.cpu(), hist, hist["accuracy_largest"][-1], hist["accuracy_smallest"][-1], seconds,
                          str(dev), cfg.cache_key())
