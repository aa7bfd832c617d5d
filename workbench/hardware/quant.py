"""Quantisers used before the memory (``q`` of eq 3.13–3.16): BinaryConnect and k-bit linear;
and :class:`QuantizedMemory`, post-training linear weight quantisation seen as a memory (Fig 5.6)."""

from __future__ import annotations

import math

import param
import torch

from ..knobs import check_int
from .base import Memory, Read


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


def binarize(weight: torch.Tensor) -> torch.Tensor:
    """BinaryConnect ``W_b = sign(W)`` (sign(0) = +1) with the straight-through gradient
    ``dW_b/dW = 1_{|W| ≤ 1}`` (§3.2.3)."""
    return _SignSTE.apply(weight)


def binary_output_scale(fan_in: int) -> float:
    """Constant output scale of a BinaryConnect layer: the He-init std ``sqrt(2/fan_in)`` (§3.2.3)."""
    return math.sqrt(2.0 / fan_in)


def clip_latent_(weight: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """In-place clipping ``w ← clip(w, -c, c)`` (eq 3.18; BinaryConnect uses ``c = 1``)."""
    with torch.no_grad():
        return weight.clamp_(-c, c)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def quantize_linear(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric ``bits``-bit linear quantisation with per-tensor scale ``max|W|/(2^(bits-1)-1)``
    and a straight-through gradient."""
    check_int("bits", bits, 2, 32, note="linear quantisation; use binarize for 1 bit")
    if weight.numel() == 0:
        raise ValueError(f"weight is empty (shape {tuple(weight.shape)}): there is nothing to quantise")
    qmax = 2 ** (bits - 1) - 1
    m = weight.detach().abs().max()
    scale = torch.where(m > 0, m / qmax, torch.ones_like(m))
    q = _RoundSTE.apply(weight / scale)
    # the clamp only guards against float rounding; torch.clamp has zero gradient *at* its bounds,
    # which would kill the gradient of every weight quantised to ±qmax, so keep it out of autograd
    q = q + (torch.clamp(q, -qmax, qmax) - q).detach()
    return q * scale


class QuantizedMemory(Memory):
    """A reliable memory that stores weights as ``bits``-bit linear codes (thesis §5.5.1, Fig 5.6).

    Post-training quantisation without hardware-aware fine-tuning: every read returns
    :func:`quantize_linear` of the stored weight (symmetric, per-tensor scale
    ``max|W| / (2^(bits-1) - 1)``, round to nearest), so a read takes at most ``2^bits - 1``
    distinct values and errs by at most half a step.  Deterministic (the generator is unused):
    every Monte-Carlo draw of :func:`workbench.analysis.mc_evaluate` is the same, one draw suffices.
    ``is_noisy`` is True so that the noisy layers do read through it.
    """

    technology = "quantized"
    bits = param.Integer(8, bounds=(2, 16), doc="bits per weight of the linear quantiser (2–16)")

    @property
    def is_noisy(self) -> bool:
        return True

    @property
    def noise_knob(self) -> str:
        """``bits``: the quantisation error, this memory's only deviation, is set by the bit width."""
        return "bits"

    def read(self, weight: torch.Tensor, generator: torch.Generator | None = None) -> Read:
        return Read(quantize_linear(weight, self.bits))
