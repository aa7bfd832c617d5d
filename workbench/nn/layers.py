"""Conv/linear layers that read their weights through their layer's memory at every forward pass.

Hardware-aware forward (eq 3.13–3.16): ``W~ = n(q(W))`` with ``q`` the quantiser (BinaryConnect
sign or none) and ``n`` the memory read; backward with the straight-through estimator
``dW~/dW := 1``.  A fresh noise draw is taken at every pass (training step or Monte-Carlo draw);
one draw is shared by every patch of a convolution (Unfold-Repeat).
"""

from __future__ import annotations

import contextlib
import threading

import torch
import torch.nn as nn
from torch.func import functional_call

from ..hardware.base import IdealMemory, KnobError, Memory, MemoryMap
from ..hardware.memristor import conv_op, linear_op
from ..hardware.periphery import calibration_of, crossbar_mvm
from ..hardware.quant import binarize, binary_output_scale

_state = threading.local()


@contextlib.contextmanager
def weights_as_given():
    """Inside this context noisy layers use their ``weight`` as already read (no quantiser, no
    memory): used by the vectorised Monte-Carlo evaluator, which reads the weights itself."""
    prev = getattr(_state, "as_given", False)
    _state.as_given = True
    try:
        yield
    finally:
        _state.as_given = prev


@contextlib.contextmanager
def forward_generator(generator: torch.Generator | None):
    """Inside this context the periphery's forward-pass randomness (input/output noise,
    activation-buffer flips, :mod:`workbench.hardware.periphery`) draws from ``generator`` (one per
    Monte-Carlo draw); outside it, from the layer's own ``generator``."""
    prev = getattr(_state, "forward_generator", None)
    _state.forward_generator = generator
    try:
        yield
    finally:
        _state.forward_generator = prev


@contextlib.contextmanager
def _calibrating():
    prev = getattr(_state, "calibrating", False)
    _state.calibrating = True
    try:
        yield
    finally:
        _state.calibrating = prev


class NoisyMixin:
    """Shared behaviour of :class:`NoisyConv2d` and :class:`NoisyLinear`."""

    memory: Memory
    binary: bool
    #: ranges of the periphery's converters (:func:`workbench.hardware.periphery.calibration_of`),
    #: set by :func:`calibrate_periphery`; ``None``: calibrated on the first input seen
    periphery_calibration: dict | None = None

    def _init_noisy(self, binary: bool):
        self.memory = IdealMemory()
        self.binary = binary
        self.generator: torch.Generator | None = None
        fan_in = self.weight[0].numel()
        self.out_scale = binary_output_scale(fan_in) if binary else 1.0
        self.periphery_calibration = None

    def quantized_weight(self) -> torch.Tensor:
        """``q(W)``: the value that is stored in memory (sign(W) for BinaryConnect)."""
        return binarize(self.weight) if self.binary else self.weight

    def read_weight(self, generator: torch.Generator | None = None, part=None):
        """One read of ``n(q(W))`` with a straight-through gradient; returns ``(weight, Read)``.

        ``part``: an index into ``q(W)`` (e.g. the first channels of a weight-shared layer): only
        that slice is stored, so only it is read."""
        wq = self.quantized_weight()
        if part is not None:
            wq = wq[part]
        if not self.memory.is_noisy:
            return wq, None
        if stores_sign_bits_only(self.memory) and not self.binary:      # a memory assigned past set_memory
            raise sign_bits_error("this layer is")
        r = self.memory.read(wq.detach(), generator if generator is not None else self.generator)
        return wq + (r.weight - wq.detach()), r

    def crossbar_op(self):
        """The layer's operator ``(x, stored matrix) -> y`` (forward pass and crossbar power)."""
        raise NotImplementedError

    def forward_noisy(self, x: torch.Tensor, part=None) -> torch.Tensor:
        """``y = f(x, n(q(W)))`` (+ bias); ``part`` as in :meth:`read_weight`."""
        if getattr(_state, "as_given", False):
            w, r = (self.weight if part is None else self.weight[part]), None
        else:
            w, r = self.read_weight(part=part)
        mem = self.memory
        if getattr(_state, "calibrating", False) and getattr(mem, "technology", "") == "memristor":
            self.periphery_calibration = calibration_of(self.crossbar_op(), x, w, mem.tile_rows)
            y = self.crossbar_op()(x, w)
        elif getattr(mem, "periphery_active", False):
            cal = self.periphery_calibration
            if cal is None or cal["tile_rows"] != mem.tile_rows:
                cal = self.periphery_calibration = calibration_of(self.crossbar_op(), x, w, mem.tile_rows)
            gen = getattr(_state, "forward_generator", None)
            y = crossbar_mvm(self.crossbar_op(), x, w, mem, cal, gen if gen is not None else self.generator)
        else:
            y = self.crossbar_op()(x, w)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, *([1] * (y.dim() - 2)))
        return y * self.out_scale if self.binary else y


class NoisyLinear(NoisyMixin, nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, binary: bool = False):
        super().__init__(in_features, out_features, bias=bias)
        self._init_noisy(binary)

    def crossbar_op(self):
        return linear_op

    def forward(self, x):
        return self.forward_noisy(x)


class NoisyConv(NoisyMixin):
    """What every noisy convolution shares: ``nn.ConvNd``'s arguments plus ``binary``, and the
    noisy forward; a subclass names its ``nn.ConvNd`` and its crossbar operator."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias: bool = True,
                 binary: bool = False, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias,
                         groups=groups)
        self._init_noisy(binary)

    def forward(self, x):
        return self.forward_noisy(x)


class NoisyConv2d(NoisyConv, nn.Conv2d):
    def crossbar_op(self):
        return conv_op(self.stride, self.padding, self.dilation, self.groups)


class NoisyConv1d(NoisyConv, nn.Conv1d):
    """A 1-D convolution (sensor, audio) whose ``(C_o, C_i, K)`` weights live in memory: the same
    Unfold-Repeat read as :class:`NoisyConv2d`, one draw shared by every position of a pass."""

    def crossbar_op(self):
        stride, padding, dilation, groups = self.stride, self.padding, self.dilation, self.groups

        def make(groups):
            def op(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
                return torch.nn.functional.conv1d(x, g, None, stride, padding, dilation, groups)
            op.grouped = make          # the same convolution with other groups (periphery.tile_partials)
            return op
        return make(groups)


def noisy_layers(model: nn.Module) -> dict[str, NoisyMixin]:
    """The model's conv/linear layers whose weights live in (unreliable) memory, by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, NoisyMixin)}


def capture_layer_inputs(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor):
    """``(output, inputs)``: ``model(x)`` with the weights ``params`` (``{"<layer>.weight": w}``,
    used as given) and the input each noisy layer saw, by layer name (activations carry the
    noise of the layers before, as on the hardware).  No gradient."""
    seen, hooks = {}, []
    for name, layer in noisy_layers(model).items():
        hooks.append(layer.register_forward_pre_hook(lambda m, inp, name=name: seen.__setitem__(name, inp[0].detach())))
    try:
        with weights_as_given(), torch.no_grad():
            out = functional_call(model, params, (x,))
    finally:
        for h in hooks:
            h.remove()
    return out, seen


def calibrate_periphery(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> dict[str, dict]:
    """Record the converter ranges of every crossbar layer (:func:`~workbench.hardware.periphery.calibration_of`:
    largest ``|input|``, ``‖W‖∞``, largest tile partial sum) on the calibration inputs ``x`` with
    noise-free weights and ideal converters, the activations coming from the noise-free layers
    before.  Kept on each layer (``periphery_calibration``) until the next calibration; returns them
    by layer name.  No gradient."""
    layers = noisy_layers(model)
    params = {f"{name}.weight": layer.quantized_weight().detach() for name, layer in layers.items()}
    merged: dict[str, dict] = {}
    with weights_as_given(), _calibrating(), torch.no_grad():
        for i in range(0, len(x), batch_size):
            functional_call(model, params, (x[i:i + batch_size],))
            for name, layer in layers.items():
                cal = layer.periphery_calibration
                if getattr(layer.memory, "technology", "") != "memristor" or cal is None:
                    continue
                prev = merged.get(name)
                merged[name] = cal if prev is None else {
                    **cal, **{k: max(prev[k], cal[k]) for k in ("x_max", "w_scale", "y_max")}}
    for name, cal in merged.items():
        layers[name].periphery_calibration = cal
    return merged


def layer_param_counts(model: nn.Module) -> dict[str, int]:
    """Number of weights stored in memory per layer (conv/linear weights; biases and batch-norm
    parameters are stored reliably, §4.2)."""
    return {name: m.weight.numel() for name, m in noisy_layers(model).items()}


def stores_sign_bits_only(memory: Memory) -> bool:
    """A 1-bit SRAM: it holds ``sign(W)`` (eq 3.28–3.29), so only BinaryConnect layers fit it."""
    return memory.technology == "sram" and memory.bits == 1


def sign_bits_error(which: str) -> KnobError:
    return KnobError(f"bits=1 stores sign bits only (BSC of eq 3.28–3.29), but {which} full precision: use a "
                     "BinaryConnect network (binary=True, e.g. the digits-bc preset) or SRAM bits in [2, 32]")


def set_memory(model: nn.Module, memory: MemoryMap | Memory | None) -> nn.Module:
    """Attach a memory to every noisy layer (a :class:`Memory` for all, or a :class:`MemoryMap`)."""
    mmap = memory if isinstance(memory, MemoryMap) else MemoryMap(memory)
    layers = noisy_layers(model)
    unknown = set(mmap.overrides) - set(layers)
    if unknown:
        raise KeyError(f"memory map names layers the model does not have: {sorted(unknown)}; layers: {list(layers)}")
    full = [name for name, layer in layers.items() if stores_sign_bits_only(mmap[name]) and not layer.binary]
    if full:
        raise sign_bits_error(f"layers {full} are")
    for name, layer in layers.items():
        layer.memory = mmap[name]
    return model


def set_generator(model: nn.Module, generator: torch.Generator | None) -> nn.Module:
    """Share one noise generator between all noisy layers (reproducible Monte-Carlo draws)."""
    for layer in noisy_layers(model).values():
        layer.generator = generator
    return model


def clip_weights_(model: nn.Module, c: float | None = None, alpha: float | None = None) -> None:
    """After an optimizer step: BinaryConnect latent clipping to [-1, 1] for binary layers, the
    aggressive clipping ``w ← clip(w, -c, c)`` of eq 3.18 for every noisy layer if ``c``, and the
    clipping to ``±α·std(W_l)`` of the noise-injection baseline (§5.4.1) if ``alpha``.

    Only the conv/linear weights that live in the crossbars are clipped (batch-norm scales and
    biases are stored reliably and left alone)."""
    with torch.no_grad():
        for layer in noisy_layers(model).values():
            if layer.binary:
                layer.weight.clamp_(-1.0, 1.0)
            if c:
                layer.weight.clamp_(-c, c)
            if alpha and layer.weight.numel() > 1:
                bound = float(alpha * layer.weight.std())
                layer.weight.clamp_(-bound, bound)
