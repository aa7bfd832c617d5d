"""The periphery of an analog crossbar: converters, tiles, stuck-at devices, activation buffers.

These are knobs of :class:`~workbench.hardware.memristor.MemristorMemory` (so one setting per
network is the memory map's default and per-layer settings are its overrides).  Every knob's
default switches its effect off, and a knob at its default is left out of the memory's
``knobs()``/``to_dict()``: a memory without periphery computes exactly what it computed before
these knobs existed and keeps its cache key.

Model of one crossbar layer ``y = f(x, W)`` (``f`` the layer's linear or Unfold-Repeat
convolution operator, ``W`` the weight read back from the noisy conductances):

1. **Activation buffer** (``act_p``, ``act_bits``): the layer's input was stored between layers
   in an under-volted SRAM buffer of ``act_bits``-bit words (symmetric fixed point, full scale =
   the DAC range ``x_b``, two's complement); every bit flips with probability ``act_p`` through the
   exact flip sampler :func:`~workbench.hardware.sram.sample_flip_positions` (thesis eq 3.28–3.29).
   At ``act_p = 0`` the buffer is not applied (exact activations).
2. **DAC** (``dac_bits``, ``dac_range``/``dac_bound``): ``x_n = clip(x / x_b, -1, 1)`` quantised to
   ``2^b - 1`` symmetric levels, step ``2/(2^b - 2)`` — aihwkit's ``inp_res = 1/(2^b - 2)`` with
   ``inp_bound = 1`` (aihwkit docs, ``IOParameters``).  ``x_b`` is the largest ``|x|`` seen on the
   calibration inputs (``dac_range="calibrated"``) or ``dac_bound`` (``"fixed"``, input units).
   Input noise: ``x_n + N(0, inp_noise²)`` (aihwkit ``inp_noise``, relative to the DAC range).
3. **Tiles** (``tile_rows`` × ``tile_cols`` devices): the layer's ``fan_in`` rows are split into
   ``ceil(fan_in / tile_rows)`` row tiles; each tile's column partial sum
   ``y_t = f(x_n, W_n ⊙ M_t)`` (``W_n = W / ‖W‖∞``, ``M_t`` the tile's rows) is converted by its own ADC
   and the converted partial sums are added digitally.  Columns split into ``tile_cols`` wide tiles
   change nothing numerically (each column has its own sense line); they set the ADC and DAC count
   of the energy and latency model (:mod:`workbench.hardware.profile`).
4. **ADC** (``adc_bits``, ``adc_range``/``adc_bound``): each partial sum plus output noise
   ``N(0, out_noise²)`` (aihwkit ``out_noise``) is clipped to ``[-y_b, y_b]`` and quantised with
   step ``2 y_b/(2^b - 2)`` (aihwkit ``out_res = 1/(2^b - 2)``, ``out_bound``).  ``y_b`` is in the
   normalised units of ``x_n · W_n`` (aihwkit's convention; its default ``out_bound`` is 12): the
   largest ``|y_t|`` on the calibration inputs (``"calibrated"``) or ``adc_bound`` (``"fixed"``).
5. Output ``y = x_b ‖W‖∞ Σ_t ADC(y_t)``; the bias is added digitally afterwards.
6. **Stuck-at faults** (``stuck_min``, ``stuck_max``): each device of both crossbars is stuck at
   ``g_min`` (rate ``stuck_min``) or ``g_max`` (rate ``stuck_max``), independent of the weight
   programmed into it; drawn once per programmed chip, i.e. per Monte-Carlo draw, from the draw's
   generator, after the conductance noise (a stuck device reads its stuck value exactly).

Rounding uses a straight-through gradient, so a network can be trained through the converters.

**IR drop is not modelled.** A first-order model (a device's contribution attenuated by
``1/(1 + r·d)`` with ``r`` the wire-to-device resistance ratio and ``d`` its distance from the
driver and the sense amplifier) needs a wire resistance per cell and a device resistance for the
chip at hand, and it can be validated only against a circuit simulation (SPICE) of a tile or a
measured array; neither is available here, and an unvalidated attenuation would look like a result.

Calibration (``dac_range``/``adc_range = "calibrated"``): :func:`workbench.nn.calibrate_periphery`
runs the noise-free network once on calibration inputs (the training split, in
:func:`workbench.experiments.core.evaluate`) and records per layer ``x_max``, ``w_scale = ‖W‖∞``
and ``y_max`` (the largest tile partial sum).  A layer used without calibration calibrates on its
first input.

Differences from aihwkit a cross-check must align: aihwkit's default noise management rescales
each input vector by its own absolute maximum before the DAC (here the DAC full scale is one value
per layer, calibrated or fixed), and its output bound applies to the whole analog tile of its
``RPUConfig`` (here to each ``tile_rows`` row tile).

Sources: aihwkit ``IOParameters`` (``inp_res``, ``out_res``, ``inp_bound``, ``out_bound``,
``inp_noise``, ``out_noise``); ISAAC (Shafiee et al., ISCA 2016) for the tile/ADC organisation;
thesis eq 3.27–3.30 for the SRAM buffer.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .sram import decode_fixed_point, encode_fixed_point, sample_flip_positions

#: the knobs this module adds to a crossbar memory and their "off" defaults (left out of ``knobs()``)
PERIPHERY_DEFAULTS: dict[str, Any] = {
    "dac_bits": None, "dac_range": "calibrated", "dac_bound": 1.0,
    "adc_bits": None, "adc_range": "calibrated", "adc_bound": 12.0,
    "inp_noise": 0.0, "out_noise": 0.0,
    "tile_rows": None, "tile_cols": None,
    "stuck_min": 0.0, "stuck_max": 0.0,
    "act_p": 0.0, "act_bits": 8,
}


def converter_step(bits: int, bound: float) -> float:
    """Step of a ``bits``-bit symmetric converter over ``[-bound, bound]``: ``2 bound/(2^bits - 2)``
    (``2^bits - 1`` levels including 0; aihwkit's resolution ``1/(2^bits - 2)``)."""
    return 2.0 * bound / (2 ** bits - 2)


def quantize(x: torch.Tensor, bits: int | None, bound: float) -> torch.Tensor:
    """Clip ``x`` to ``[-bound, bound]`` and round to the ``bits``-bit grid (straight-through
    gradient); ``bits=None``: ``x`` unchanged (an ideal converter)."""
    if bits is None:
        return x
    step = converter_step(bits, bound)
    levels = 2 ** (bits - 1) - 1         # = bound / step: the grid's largest code
    if not (torch.is_grad_enabled() and x.requires_grad):      # evaluation: one new tensor, in-place passes
        return (x / step).round_().clamp_(-levels, levels).mul_(step)
    q = torch.clamp(torch.round(x / step), -levels, levels) * step
    return x + (q - x).detach()


def round_codes(codes: torch.Tensor, levels: int) -> torch.Tensor:
    """``codes`` (a converter's input in units of its step) rounded and clipped to ``[-levels,
    levels]`` (straight-through gradient; in place on a fresh tensor when no gradient is needed)."""
    if not (torch.is_grad_enabled() and codes.requires_grad):
        return codes.round_().clamp_(-levels, levels)
    q = torch.clamp(torch.round(codes), -levels, levels)
    return codes + (q - codes).detach()


def row_tiles(fan_in: int, tile_rows: int | None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: the row ranges of the tiles a ``fan_in``-row layer splits into."""
    r = fan_in if tile_rows is None else int(tile_rows)
    return [(s, min(s + r, fan_in)) for s in range(0, fan_in, r)]


def tile_counts(rows: int, cols: int, tile_rows: int | None, tile_cols: int | None) -> tuple[int, int]:
    """``(row tiles, column tiles)`` of a ``rows`` × ``cols`` crossbar split into tiles."""
    return (1 if tile_rows is None else math.ceil(rows / tile_rows),
            1 if tile_cols is None else math.ceil(cols / tile_cols))


def tile_partials(op: Callable, x: torch.Tensor, w: torch.Tensor, tile_rows: int | None,
                  grouped: bool | None = None) -> torch.Tensor:
    """Column partial sums ``f(x, W ⊙ M_t)`` of every row tile ``t``, stacked on a new first axis
    (one tile, ``f(x, W)[None]``, when untiled).

    Rows are the entries of one output's flattened weight ``W[o].flatten()`` (for a convolution
    ``(C_i/groups, kernel...)`` in memory order, the rows of its unrolled matrix).  ``f`` is linear in
    ``W``, so the partial sums add up to ``f(x, W)`` (to float rounding).  A linear layer's tiles
    are one batched product; a convolution (groups = 1) whose tiles hold whole input channels is
    one grouped convolution (``op.grouped``, one group per tile); other tiles read only the input
    channels their rows belong to, one operator call each.  ``grouped``: use the grouped convolution
    when it applies (``None``: on CUDA only; on CPU the per-tile calls measured faster)."""
    fan_in = w[0].numel()
    tiles = row_tiles(fan_in, tile_rows)
    if len(tiles) == 1:
        return op(x, w).unsqueeze(0)
    n, r = len(tiles), int(tile_rows)
    if x.dim() == 2 and w.dim() == 2:                    # linear: (B, in) x (O, in), in padded to n·r rows
        pad = n * r - fan_in
        xt = torch.nn.functional.pad(x, (0, pad)).reshape(x.shape[0], n, r)
        wt = torch.nn.functional.pad(w, (0, pad)).reshape(w.shape[0], n, r)
        return torch.einsum("btr,otr->tbo", xt, wt)
    per_channel = fan_in // w.shape[1]      # rows per input channel (kernel size)
    same_channels = x.dim() == w.dim() and x.shape[1] == w.shape[1]       # groups = 1
    if grouped is None:
        grouped = x.is_cuda
    if grouped and same_channels and hasattr(op, "grouped") and r % per_channel == 0:
        c = r // per_channel                                              # whole channels per tile
        pad = n * c - w.shape[1]
        xp = torch.nn.functional.pad(x, (*([0, 0] * (x.dim() - 2)), 0, pad))
        wp = torch.nn.functional.pad(w, (*([0, 0] * (w.dim() - 2)), 0, pad))
        wg = wp.reshape(w.shape[0], n, c, *w.shape[2:]).transpose(0, 1).reshape(n * w.shape[0], c, *w.shape[2:])
        y = op.grouped(n)(xp, wg)
        return y.reshape(y.shape[0], n, w.shape[0], *y.shape[2:]).movedim(1, 0)
    out = []
    if same_channels and fan_in % per_channel == 0:
        # each tile reads only the input channels its rows belong to; rows outside the tile masked
        for start, stop in tiles:
            c0, c1 = start // per_channel, -(-stop // per_channel)
            wt = w[:, c0:c1]
            lo, hi = start - c0 * per_channel, stop - c0 * per_channel
            if lo != 0 or hi != (c1 - c0) * per_channel:
                mask = torch.zeros((c1 - c0) * per_channel, dtype=w.dtype, device=w.device)
                mask[lo:hi] = 1
                wt = (wt.reshape(w.shape[0], -1) * mask).reshape(wt.shape)
            out.append(op(x[:, c0:c1], wt))
        return torch.stack(out)
    flat = w.reshape(w.shape[0], fan_in)
    for start, stop in tiles:
        mask = torch.zeros(fan_in, dtype=w.dtype, device=w.device)
        mask[start:stop] = 1
        out.append(op(x, (flat * mask).reshape(w.shape)))
    return torch.stack(out)


def buffer_faults(x: torch.Tensor, bits: int, p: float, bound: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """``x`` stored as ``bits``-bit two's-complement fixed point with full scale ``bound`` (step
    ``bound/(2^(bits-1) - 1)``, clipped) in an SRAM buffer whose every bit flips with rate ``p``
    (exact sampler of eq 3.28–3.29); ``p = 0`` returns ``x`` unchanged."""
    if p == 0:
        return x
    scale = torch.as_tensor(bound / (2 ** (bits - 1) - 1), dtype=x.dtype, device=x.device)
    words, _ = encode_fixed_point(x.detach(), bits, "twos_complement", scale=scale)
    pos = sample_flip_positions(words.numel() * bits, p, generator, x.device)
    flat = words.reshape(-1).clone()
    if pos.numel():
        masks = torch.zeros_like(flat)
        masks.index_add_(0, pos // bits, torch.ones_like(pos) << (pos % bits))   # distinct positions: sum == xor
        flat = flat ^ masks
    stored = decode_fixed_point(flat.reshape(words.shape), scale, bits, "twos_complement").to(x.dtype)
    return x + (stored - x).detach()


def stuck_at(g: torch.Tensor, rate_min: float, rate_max: float, g_min: float, g_max: float,
             generator: torch.Generator | None) -> torch.Tensor:
    """Devices of ``g`` stuck at ``g_min`` (rate ``rate_min``) or ``g_max`` (rate ``rate_max``); one
    float64 uniform per device, so the faults of a draw depend only on its generator."""
    if rate_min == 0 and rate_max == 0:
        return g
    gen_device = generator.device if generator is not None else g.device
    u = torch.rand(g.shape, dtype=torch.float64, generator=generator, device=gen_device).to(g.device)
    g = torch.where(u < rate_min, torch.full_like(g, g_min), g)
    return torch.where((u >= rate_min) & (u < rate_min + rate_max), torch.full_like(g, g_max), g)


def calibration_of(op: Callable, x: torch.Tensor, w: torch.Tensor, tile_rows: int | None) -> dict[str, Any]:
    """The ranges of a layer seen on ``x`` with noise-free weights ``w`` and ideal converters:
    ``x_max = max|x|``, ``w_scale = ‖W‖∞`` and ``y_max`` (largest ``|partial sum|`` of a tile in the
    normalised units of ``(x/x_max)·(W/‖W‖∞)``), for ``tile_rows``."""
    with torch.no_grad():
        x_max = float(x.detach().abs().max()) if x.numel() else 0.0
        w_scale = float(w.detach().abs().max()) if w.numel() else 0.0
        x_max, w_scale = (x_max if x_max > 0 else 1.0), (w_scale if w_scale > 0 else 1.0)
        y_max = float(tile_partials(op, x.detach() / x_max, w.detach() / w_scale, tile_rows).abs().max())
    return {"x_max": x_max, "w_scale": w_scale, "y_max": y_max if y_max > 0 else 1.0, "tile_rows": tile_rows}


def input_bound(memory, calibration: dict[str, Any]) -> float:
    """The DAC full scale ``x_b`` (input units) of a crossbar memory with its layer's calibration."""
    return float(memory.dac_bound) if memory.dac_range == "fixed" else calibration["x_max"]


def crossbar_mvm(op: Callable, x: torch.Tensor, w: torch.Tensor, memory, calibration: dict[str, Any],
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``f(x, W)`` through the periphery of ``memory`` (steps 1–5 of the module docstring).

    ``w``: the weight as read from the crossbar (noisy, stuck devices included); ``calibration``:
    :func:`calibration_of` of the layer; ``generator``: the draw's generator for the buffer flips
    and the input/output noise.  Bias not included."""
    x_b = input_bound(memory, calibration)
    w_s = calibration["w_scale"]
    y_b = float(memory.adc_bound) if memory.adc_range == "fixed" else calibration["y_max"]
    if memory.act_p > 0:
        x = buffer_faults(x, memory.act_bits, memory.act_p, x_b, generator)
    xn = x / x_b
    if memory.dac_bits is not None:
        xn = quantize(xn, memory.dac_bits, 1.0)
    if memory.inp_noise > 0:
        xn = xn + memory.inp_noise * torch.randn(xn.shape, generator=generator, device=xn.device, dtype=xn.dtype)
    # partial sums straight in ADC codes (the weights scaled by 1/(‖W‖∞·step), a small tensor): the
    # T-times larger partial-sum tensor then needs only rounding, clipping and the tile sum
    step = converter_step(memory.adc_bits, y_b) if memory.adc_bits is not None else 1.0
    parts = tile_partials(op, xn, w / (w_s * step), memory.tile_rows)
    if memory.out_noise > 0:
        parts = parts + (memory.out_noise / step) * torch.randn(parts.shape, generator=generator,
                                                                device=parts.device, dtype=parts.dtype)
    if memory.adc_bits is not None:
        parts = round_codes(parts, 2 ** (memory.adc_bits - 1) - 1)
    total = parts[0] if parts.shape[0] == 1 else parts.sum(0)     # the digital sum of the tiles' conversions
    return total * (x_b * w_s * step)

__all__ = ["PERIPHERY_DEFAULTS", "buffer_faults", "calibration_of", "converter_step", "crossbar_mvm", "input_bound",
           "quantize", "row_tiles", "stuck_at", "tile_counts", "tile_partials"]
