"""Deploying a trained network onto memristor crossbars (thesis §3.3.2 and ch. 6).

Two deployment steps of §3.3.2 turn a trained network into the matrices the crossbars hold:

* **batch-norm folding** (:func:`fold_batchnorm`): an eval-mode batch norm that directly follows a
  conv/linear layer is merged into it, ``w' = w·γ/√(var+ε)`` and
  ``b' = (b − mean)·γ/√(var+ε) + β`` per output channel, and replaced by ``nn.Identity``;
* **bias in the crossbar** (:func:`deploy`): the bias becomes one more crossbar row driven by the
  constant input 1, so the crossbar matrix of a layer is ``[W | b]`` of shape
  ``(C_out, fan_in + 1)`` (``fan_in = C_in/groups·H_c·W_c`` for a convolution, Unfold-Repeat).

Design: the crossbar layers :class:`CrossbarConv2d` / :class:`CrossbarLinear` *store that
augmented matrix as their ``weight`` parameter* (2-D, ``(C_out, fan_in + 1)``) and have no
separate ``bias``.  Everything that reads weights through a memory therefore reads the bias row in
the same draw, with the same ``g_u`` and ``‖W‖∞`` as its column (``normalise="column"``: the bias
belongs to its output's column), without any special case:

* the layer's own forward (``read_weight`` → ``self.memory.read(weight)``);
* :func:`workbench.analysis.montecarlo.mc_evaluate`, which reads ``layer.read_weight()`` and
  replays the draw with ``functional_call(model, {name.weight: w})`` under
  ``weights_as_given()`` — the read ``w`` *is* ``[W~ | b~]``;
* the crossbar power (eq 3.41–3.44): the layer's operator ``crossbar_op()`` splits the augmented matrix
  back into ``(W, b)`` and computes ``f(x, W) + b``, so ``f(x∘x, |g|)``, ``f(x, g+)`` and
  ``f(x, g-)`` each include the bias row with input 1 (``1∘1 = 1``) at every output position.

Which batch norms fold.  The pairing is read off the data flow of a ``torch.fx`` trace (noisy
layers as leaves): a ``BatchNorm1d/2d`` folds when its input is the output of one noisy
conv/linear layer that feeds nothing else, and both modules are called once.  This covers the
``nn.Sequential`` chains of SmallCNN / VGG / torchvision's ``Conv2dNormActivation``, the
``conv → bn`` pairs of the ResNet blocks (``conv1 → bn1``, ``conv2 → bn2``, the shortcut), and the
``conv1 → bn2`` pair inside WideResNet's pre-activation blocks.  A batch norm that follows a
residual sum, an activation, or a layer whose output is used elsewhere (WideResNet's ``bn1`` and
final ``bn``) cannot be folded; it stays in the network as a per-channel affine operation run on
reliable digital hardware (§3.3.2, "other ops") — a warning names it, ``strict=True`` raises.
Folding also works on an already deployed network (into its bias row).
A model ``torch.fx`` cannot trace (data-dependent control flow) falls back to ``nn.Sequential``
chains only.  A ``Linear → BatchNorm1d`` pair is assumed to act on 2-D ``(batch, features)``
tensors.  BinaryConnect layers are refused: their stored weights are ``±1`` and a folded weight
no longer is.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Mapping

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..hardware.base import IdealMemory, MemoryMap, make
from ..hardware.memristor import G_MAX, MemristorMemory
from .layers import NoisyConv2d, NoisyLinear, NoisyMixin, noisy_layers

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


# ------------------------------------------------------------------------------------------
# crossbar layers


class CrossbarMixin:
    """A noisy layer whose ``weight`` is the crossbar matrix ``[W | b]`` (or ``W``), 2-D.

    ``bias_row``: the last column of ``weight`` is the bias, an extra crossbar row driven by the
    constant input 1 (thesis §3.3.2).  Without it the layer may still have a ``bias`` parameter,
    added digitally (reliable) after the crossbar.
    """

    bias_row: bool
    kernel_shape: tuple[int, ...]

    def split(self, matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(kernel, bias)`` of a crossbar matrix (weights, a read, or conductances): the
        kernel in the conv/linear layout ``kernel_shape``, the bias column (or ``None``)."""
        if self.bias_row:
            return matrix[..., :-1].reshape(*matrix.shape[:-2], *self.kernel_shape), matrix[..., -1]
        return matrix.reshape(*matrix.shape[:-2], *self.kernel_shape), None

    @property
    def kernel(self) -> torch.Tensor:
        """The programmed weights ``W`` in the conv/linear layout (a view of ``weight``)."""
        return self.split(self.weight)[0]

    @property
    def crossbar_bias(self) -> torch.Tensor | None:
        """The bias row of the crossbar (a view of ``weight``), or ``None``."""
        return self.split(self.weight)[1]

    def _kernel_op(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def crossbar_op(self):
        """The layer's operator on ``(x, crossbar matrix)``: ``f(x, W) + b·1`` (Unfold-Repeat for
        a convolution: one matrix for every patch).  Used by the forward pass and by the power
        of eq 3.41–3.44, which therefore counts the bias row with input 1."""
        def op(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
            kernel, bias = self.split(matrix)
            y = self._kernel_op(x, kernel)
            if bias is not None:
                y = y + bias.view(-1, *([1] * (y.dim() - 2)))
            return y
        return op

    def init_matrix(self, kernel: torch.Tensor, bias: torch.Tensor | None) -> None:
        rows = kernel.detach().reshape(kernel.shape[0], -1)
        if self.bias_row:
            rows = torch.cat([rows, bias.detach().reshape(-1, 1).to(rows)], dim=1)
        self.weight = nn.Parameter(rows.clone(), requires_grad=kernel.requires_grad)

    def extra_repr(self) -> str:
        return f"{super().extra_repr().replace('bias=', 'digital_bias=')}, bias_row={self.bias_row}"


class CrossbarLinear(CrossbarMixin, NoisyLinear):
    """A linear layer deployed on a crossbar; ``weight`` is ``[W | b]``, shape
    ``(out_features, in_features + bias_row)``."""

    def __init__(self, in_features: int, out_features: int, bias_row: bool = True, digital_bias: bool = False):
        if bias_row and digital_bias:
            raise ValueError("a crossbar layer holds its bias either in the crossbar (bias_row) or digitally, not both")
        super().__init__(in_features, out_features, bias=True, binary=False)
        self.bias_row = bias_row
        self.kernel_shape = (out_features, in_features)
        b = self.bias.detach().clone()
        if not digital_bias:
            self.register_parameter("bias", None)
        self.init_matrix(self.weight, b)

    def _kernel_op(self, x, kernel):
        return F.linear(x, kernel)


class CrossbarConv2d(CrossbarMixin, NoisyConv2d):
    """A convolution deployed on a crossbar with Unfold-Repeat: ``weight`` is the dense matrix
    ``[W | b]`` of shape ``(C_out, C_in/groups·H_c·W_c + bias_row)``, reused for every patch
    (one noise draw per forward pass, shared by all patches)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias_row: bool = True,
                 digital_bias: bool = False, groups: int = 1, dilation=1):
        if bias_row and digital_bias:
            raise ValueError("a crossbar layer holds its bias either in the crossbar (bias_row) or digitally, not both")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=True,
                         binary=False, groups=groups)
        self.dilation = pair(dilation)
        self.bias_row = bias_row
        self.kernel_shape = tuple(self.weight.shape)
        b = self.bias.detach().clone()
        if not digital_bias:
            self.register_parameter("bias", None)
        self.init_matrix(self.weight, b)

    def _kernel_op(self, x, kernel):
        return F.conv2d(x, kernel, None, self.stride, self.padding, self.dilation, self.groups)


def pair(v) -> tuple:
    """``v`` for both spatial dims: a tuple or list as given, anything else twice."""
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def crossbar_layers(model: nn.Module) -> dict[str, CrossbarMixin]:
    """The model's crossbar (deployed) layers, by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, CrossbarMixin)}


def _crossbar_copy(layer: NoisyMixin, bias_in_crossbar: bool) -> nn.Module:
    has_bias = layer.bias is not None
    bias_row = bias_in_crossbar and has_bias
    digital = has_bias and not bias_row
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise ValueError(f"deploy: padding_mode={layer.padding_mode!r} is not supported (zeros only)")
        new = CrossbarConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                             padding=layer.padding, bias_row=bias_row, digital_bias=digital, groups=layer.groups,
                             dilation=layer.dilation)
    else:
        new = CrossbarLinear(layer.in_features, layer.out_features, bias_row=bias_row, digital_bias=digital)
    new = new.to(device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.init_matrix(layer.weight, layer.bias)
        new.weight.requires_grad_(layer.weight.requires_grad)
        if digital:
            new.bias = nn.Parameter(layer.bias.detach().clone(), requires_grad=layer.bias.requires_grad)
    new.memory = layer.memory
    new.generator = layer.generator
    return new.train(layer.training)


# ------------------------------------------------------------------------------------------
# batch-norm folding


class _LeafTracer(fx.Tracer):
    """Traces through containers and blocks, keeping noisy layers (and torch.nn modules) as leaves."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, NoisyMixin) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx`` graph of ``model`` with noisy conv/linear layers as leaf modules."""
    graph = _LeafTracer().trace(model)
    return fx.GraphModule(model, graph)


def _bn_pairs(model: nn.Module) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """``[(layer, bn)]`` pairs that fold, and ``{bn: reason}`` for the batch norms that do not."""
    bns = {name for name, m in model.named_modules() if isinstance(m, _BN)}
    pairs: list[tuple[str, str]] = []
    left: dict[str, str] = {}
    try:
        graph = _LeafTracer().trace(model)
    except Exception as exc:  # data-dependent control flow: fall back to Sequential chains
        for pname, parent in model.named_modules():
            if not (isinstance(parent, nn.Sequential) and type(parent).forward is nn.Sequential.forward):
                continue
            kids = list(parent.named_children())
            for (an, a), (bn_, b) in zip(kids, kids[1:]):
                if isinstance(a, NoisyMixin) and isinstance(b, _BN) and b.running_mean is not None:
                    pairs.append((f"{pname}.{an}" if pname else an, f"{pname}.{bn_}" if pname else bn_))
        paired = {b for _, b in pairs}
        reason = f"the model is not traceable by torch.fx ({type(exc).__name__}: {exc}); only nn.Sequential chains fold"
        return pairs, {b: reason for b in sorted(bns - paired)}
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    modules = dict(model.named_modules())
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BN):
            continue
        bn_name = node.target
        src = node.args[0] if node.args else None
        if not (
            isinstance(src, fx.Node) and src.op == "call_module" and isinstance(modules.get(src.target), NoisyMixin)
        ):
            what = src.op if isinstance(src, fx.Node) else type(src).__name__
            target = getattr(src, "target", "")
            left[bn_name] = (
                f"its input is not a conv/linear layer's output ({what} {getattr(target, '__name__', target)})"
            )
        elif len(src.users) != 1:
            left[bn_name] = f"the output of {src.target} is also used elsewhere (e.g. a residual connection)"
        elif calls[bn_name] != 1 or calls[src.target] != 1:
            left[bn_name] = f"{bn_name} or {src.target} is called more than once"
        elif not modules[bn_name].track_running_stats or modules[bn_name].running_mean is None:
            left[bn_name] = "it has no running statistics (track_running_stats=False)"
        else:
            pairs.append((src.target, bn_name))
    return pairs, left


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


@torch.no_grad()
def fold_into(layer: NoisyMixin, bn: nn.Module) -> None:
    """Fold eval-mode ``bn`` into ``layer`` (in place, thesis §3.3.2): ``w' = w·γ/√(var+ε)``,
    ``b' = (b − mean)·γ/√(var+ε) + β`` (computed in float64; a layer without bias gets one)."""
    w = layer.weight
    dt = torch.float64
    if bn.num_features != w.shape[0]:
        raise ValueError(f"cannot fold a batch norm of {bn.num_features} channels into a layer of {w.shape[0]} outputs")
    scale = 1.0 / torch.sqrt(bn.running_var.to(dt) + bn.eps)
    shift = -bn.running_mean.to(dt) * scale
    if bn.affine:
        scale, shift = scale * bn.weight.to(dt), shift * bn.weight.to(dt) + bn.bias.to(dt)
    new_w = w.to(dt) * scale.view(-1, *([1] * (w.dim() - 1)))
    if isinstance(layer, CrossbarMixin) and layer.bias_row:      # [W | b]: the bias row is the last column
        new_w[:, -1] += shift
        w.copy_(new_w.to(w.dtype))
        return
    b = layer.bias.to(dt) if layer.bias is not None else torch.zeros_like(scale)
    new_b = (b * scale + shift).to(w.dtype)
    w.copy_(new_w.to(w.dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(new_b, requires_grad=w.requires_grad)
    else:
        layer.bias.copy_(new_b)


def fold_batchnorm(model: nn.Module, *, strict: bool = False) -> nn.Module:
    """A deep copy of ``model`` with every foldable batch norm merged into the conv/linear layer it
    follows (eval-mode statistics) and replaced by ``nn.Identity`` (thesis §3.3.2, ch. 6).

    See the module docstring for which batch norms fold.  The others stay as digital per-channel
    affine operations: a ``UserWarning`` names them, or ``strict=True`` raises ``ValueError``.
    Raises ``ValueError`` for a BinaryConnect layer followed by a batch norm (its stored weights are
    ±1; a folded weight no longer is).  The copy is in eval mode.
    """
    net = copy.deepcopy(model).eval()
    pairs, left = _bn_pairs(net)
    binary = [layer for layer, _ in pairs if net.get_submodule(layer).binary]
    if binary:
        raise ValueError(
            f"cannot fold batch norm into BinaryConnect layers {binary}: their stored weights are sign(W) = ±1 "
            f"and a folded weight w·γ/√(var+ε) is not; deploy a full-precision network instead"
        )
    for layer_name, bn_name in pairs:
        fold_into(net.get_submodule(layer_name), net.get_submodule(bn_name))
        _set_submodule(net, bn_name, nn.Identity())
    if left:
        msg = "batch norms left unfolded (they run as digital per-channel affine ops): " + "; ".join(
            f"{name}: {why}" for name, why in sorted(left.items()))
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, stacklevel=2)
    return net


def deploy(model: nn.Module, fold_bn: bool = True, bias_in_crossbar: bool = True, *, strict: bool = False) -> nn.Module:
    """A copy of ``model`` ready for crossbars: batch norm folded (``fold_bn``, see
    :func:`fold_batchnorm`) and every noisy conv/linear layer replaced by a
    :class:`CrossbarConv2d` / :class:`CrossbarLinear` whose ``weight`` is the crossbar matrix:
    ``[W | b]`` with the bias as an extra row of input 1 (``bias_in_crossbar``, §3.3.2), or ``W``
    with the bias added digitally (reliably) otherwise.  A layer without bias gets no bias row.
    Memories and generators attached to the layers are kept.  The copy is in eval mode.

    Raises ``ValueError`` for BinaryConnect layers (a crossbar here stores real-valued weights).
    """
    binary = [name for name, layer in noisy_layers(model).items() if layer.binary]
    if binary:
        raise ValueError(
            f"cannot deploy BinaryConnect layers {binary} on real-valued crossbars (their stored weights are "
            f"±1 with a digital output scale); deploy a full-precision network"
        )
    net = fold_batchnorm(model, strict=strict) if fold_bn else copy.deepcopy(model).eval()
    for name, layer in noisy_layers(net).items():
        if isinstance(layer, CrossbarMixin):
            continue
        _set_submodule(net, name, _crossbar_copy(layer, bias_in_crossbar))
    return net.eval()


# ------------------------------------------------------------------------------------------
# g_u


def default_g_u(model: nn.Module) -> dict[str, float]:
    """``g_u^d = ‖W_l‖∞`` per crossbar layer (thesis ch. 6, eq 6.1: with ``g_min = 0`` the
    conductances are then ``g = |w|``), of the matrix actually programmed: the bias row included
    for a deployed layer, ``q(W)`` for a quantised one.  An all-zero matrix gets 1."""
    out = {}
    for name, layer in noisy_layers(model).items():
        m = float(layer.quantized_weight().detach().abs().max())
        out[name] = m if m > 0 and math.isfinite(m) else 1.0
    return out


def g_u_memory_map(g_u: Mapping[str, float], *, scale: float = 1.0, default=None, **knobs) -> MemoryMap:
    """A :class:`MemoryMap` with one :class:`MemristorMemory` per named layer at ``g_u·scale``
    (``g_min = 0`` unless given; ``g_max`` raised to ``g_u`` where ``g_u > G_MAX``), the other
    ``knobs`` (noise, sigma, sigma_c, ...) shared.  ``default``: memory of unnamed layers (ideal)."""
    overrides = {}
    for name, g in g_u.items():
        g = float(g) * scale
        vals = {"g_min": 0.0, **knobs}
        vals["g_max"] = max(float(vals.get("g_max", G_MAX)), g)
        overrides[name] = make(MemristorMemory, **{k: v for k, v in vals.items() if k != "g_u"}, g_u=g)
    return MemoryMap(default if default is not None else IdealMemory(), overrides)
