"""Memristor crossbars: conductance mapping, conductance noise, read-back and power (thesis §3.3.2).

Units: conductances in µS (the thesis' PCM setting has ``g_max = 25 µS``); inputs are
dimensionless, so power is reported in arbitrary units (µS·V² for inputs in volts).
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import param
import torch
import torch.nn.functional as F

from ..knobs import KnobError, check_number, out_of_range, range_text
from .base import Memory, Read
from .periphery import PERIPHERY_DEFAULTS, stuck_at

#: default maximum conductance (µS), the PCM device of [109] used in ch. 5
G_MAX = 25.0
#: smallest conductance scale g_u (µS): far below any device, and above the scales at which the
#: weight→conductance gain k = g_u/‖W‖∞ underflows in float32 (k = 0 reads back as NaN)
G_U_MIN = 1e-12


def weight_inf_norm(weight: torch.Tensor, per_column: bool = False) -> torch.Tensor:
    """``‖W‖∞ = max|W|`` over the layer, or per output column (shape ``(out, 1, ...)``)."""
    w = weight.detach().abs()
    if per_column:
        m = w.flatten(1).max(dim=1).values
        m = m.view(-1, *([1] * (weight.dim() - 1)))
    else:
        m = w.max()
    return torch.where(m > 0, m, torch.ones_like(m))


def to_conductances(weight: torch.Tensor, g_u, g_min: float = 0.0, per_column: bool = False):
    """Map signed weights onto a positive and a negative crossbar (eq 3.33–3.35).

    ``g+ = max(0,w)(g_u-g_min)/‖W‖∞ + g_min``, ``g- = |min(0,w)|(g_u-g_min)/‖W‖∞ + g_min``.
    ``g_u`` is a float (per layer) or a tensor broadcastable to ``(out, 1, ...)`` (per column).
    Returns ``(g_plus, g_minus, k)`` with ``k = (g_u-g_min)/‖W‖∞`` the weight→conductance gain,
    so that ``(g+ - g-)/k == w``.
    """
    if weight.numel() == 0:
        raise ValueError(
            f"weight is empty (shape {tuple(weight.shape)}): there are no weights to map onto conductances"
        )
    if per_column and weight.dim() < 2:
        raise ValueError(
            f"per_column needs a weight with output columns (at least 2-D), got shape {tuple(weight.shape)}"
        )
    check_number("g_min", g_min, 0.0, note="µS")
    if isinstance(g_u, torch.Tensor):
        if g_u.numel() == 0:
            raise KnobError(f"g_u is an empty tensor (shape {tuple(g_u.shape)}): give one g_u per output column")
        bad = ~((g_u > g_min) & (g_u >= G_U_MIN) & torch.isfinite(g_u))     # NaN fails every comparison
        if bool(bad.any()):
            raise KnobError(
                f"g_u={g_u[bad].flatten()[:3].tolist()!r} is out of range: g_u must be in ({g_min}, inf) µS "
                f"(above g_min) and at least {G_U_MIN:g}, for every value of the g_u tensor "
                f"(shape {tuple(g_u.shape)})"
            )
    if isinstance(g_u, torch.Tensor) and g_u.dim() == 1:
        if weight.dim() < 1 or g_u.numel() != weight.shape[0]:
            raise KnobError(f"g_u has {g_u.numel()} per-column values (column_g_u) but the weight of shape "
                            f"{tuple(weight.shape)} has {weight.shape[0] if weight.dim() else 0} output columns")
        g_u = g_u.view(-1, *([1] * (weight.dim() - 1)))   # one g_u per output column; the norm stays per_column's
    elif not isinstance(g_u, torch.Tensor) and (isinstance(g_u, bool) or not isinstance(g_u, numbers.Real)
                                                or not (g_min < g_u < math.inf and g_u >= G_U_MIN)):
        raise KnobError(
            f"g_u={g_u!r} is out of range: g_u must be in ({g_min}, inf) µS (above g_min) and at least {G_U_MIN:g}"
        )
    k = (g_u - g_min) / weight_inf_norm(weight, per_column)
    gp = torch.clamp(weight, min=0) * k + g_min
    gm = torch.clamp(-weight, min=0) * k + g_min
    return gp, gm, k


def from_conductances(g_plus: torch.Tensor, g_minus: torch.Tensor, k) -> torch.Tensor:
    """Read back to the weight domain: the crossbar difference rescaled by ``1/k`` (eq 3.32)."""
    return (g_plus - g_minus) / k


def _check_std(name: str, value, unit: str) -> None:
    """A noise std in ``[0, inf)`` (a Gaussian's σ), else a :class:`KnobError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < math.inf:
        raise out_of_range(name, value, f"in {range_text(0, None)}{unit}", "a standard deviation")


def additive_noise(g: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``g~ = g + ε``, ``ε ~ N(0, σ²)`` with ``σ ≥ 0`` µS (eq 3.36)."""
    _check_std("sigma", sigma, " µS")
    if sigma == 0:
        return g.clone()
    return g + sigma * torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype)


def multiplicative_noise(g: torch.Tensor, sigma_c: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``g~ = g·δ``, ``δ ~ N(1, σ_c²)`` with ``σ_c ≥ 0`` (eq 3.37); on weights this is ``w~ = w·δ`` (eq 3.38)."""
    _check_std("sigma_c", sigma_c, "")
    if sigma_c == 0:
        return g.clone()
    return g * (1 + sigma_c * torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype))


def crossbar_power(op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                   g_plus: torch.Tensor, g_minus: torch.Tensor,
                   bias_g_plus: torch.Tensor | None = None, bias_g_minus: torch.Tensor | None = None) -> torch.Tensor:
    """Power of one layer for one noise draw, eq 3.41–3.44.

    ``P = Σ f(x∘x, |g+| + |g-|) + Σ f(x, g+) + Σ f(x, g-)`` where ``f = op`` is the layer's
    linear or (Unfold-Repeat) convolution operator, ``g±`` the *noisy* conductances of the draw
    and ``Σ`` sums every output element.  A folded bias is an extra crossbar row driven by the
    constant input 1 at every output position.  Returns a 0-d tensor.

    The memristor term sums both crossbars, ``|g+| + |g-| = |g| + g_min`` for a weight mapped by
    eq 3.34–3.35, where eq 3.42 with eq 3.33's single ``g`` counts ``g_min`` once: every device of
    the two crossbars conducts at least ``g_min`` under the input voltage, so both dissipate.  The two
    agree at ``g_min = 0`` (the thesis' chapter 6 setting); above it this is ``g_min · Σ f(x∘x, 1)``
    higher.
    """
    if g_plus.shape != g_minus.shape:
        raise ValueError(f"g_plus has shape {tuple(g_plus.shape)} but g_minus has shape {tuple(g_minus.shape)}: "
                         "the positive and negative crossbars of a layer have the same shape")
    if (bias_g_plus is None) != (bias_g_minus is None):
        raise ValueError("bias_g_plus and bias_g_minus go together: give both or neither")
    if bias_g_plus is not None and (bias_g_plus.shape != bias_g_minus.shape or bias_g_plus.numel() != g_plus.shape[0]):
        raise ValueError(
            f"bias_g_plus {tuple(bias_g_plus.shape)} and bias_g_minus {tuple(bias_g_minus.shape)} must both "
            f"hold one conductance per output ({g_plus.shape[0]}, from g_plus {tuple(g_plus.shape)})"
        )
    g_abs = g_plus.abs() + g_minus.abs()
    try:
        y_mem = op(x * x, g_abs)
        total = y_mem.sum() + op(x, g_plus).sum() + op(x, g_minus).sum()
    except RuntimeError as exc:
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            raise
        raise ValueError(f"x of shape {tuple(x.shape)} does not fit g_plus/g_minus of shape {tuple(g_plus.shape)}: "
                         f"{str(exc).splitlines()[0]}") from None
    if bias_g_plus is not None:
        positions = y_mem.numel() // y_mem.shape[1]          # batch × spatial positions
        total = total + positions * (bias_g_plus.abs() + bias_g_minus.abs() + bias_g_plus + bias_g_minus).sum()
    return total


def linear_op(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return F.linear(x, g)


def conv_op(stride=1, padding=0, dilation=1, groups=1):
    """Unfold-Repeat convolution operator: one dense ``(C_o, C_i, H_c, W_c)`` matrix reused for
    every patch, hence one noise draw shared by all patches of a pass."""
    def op(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, g, None, stride, padding, dilation, groups)
    # the same convolution with other groups: the tiles of a crossbar in one call (periphery.tile_partials)
    op.grouped = lambda g: conv_op(stride, padding, dilation, g)
    return op


class MemristorMemory(Memory):
    """Weights programmed as conductances of a positive and a negative crossbar (eq 3.33–3.35).

    Noise on each conductance is additive (``sigma`` µS, eq 3.36) or multiplicative
    (``sigma_c``, eq 3.37).  ``g_u`` is the scale of the used conductance range ``[g_min, g_u]``:
    one value per network (same memory on every layer), per layer (a :class:`MemoryMap`
    override) or per column (``column_g_u``, or ``normalise="column"`` for a per-column ‖W‖∞).

    The periphery knobs (``dac_*``, ``adc_*``, ``inp_noise``, ``out_noise``, ``tile_*``,
    ``stuck_*``, ``act_*``) model the accelerator around the crossbar; see
    :mod:`workbench.hardware.periphery`.  Their defaults switch them off and are left out of
    :meth:`knobs`, so a memory without them keeps its results and cache key.
    """

    technology = "memristor"
    bits = param.Integer(16, bounds=(1, 32), doc="unused by crossbars (analog); kept for the interface")
    g_u = param.Number(G_MAX, bounds=(G_U_MIN, 1000.0), doc="conductance scale g_u (µS), g_min < g_u ≤ g_max")
    g_min = param.Number(0.0, bounds=(0.0, 1000.0), doc="minimum conductance g_min (µS)")
    g_max = param.Number(
        G_MAX, bounds=(0.0, 1000.0), inclusive_bounds=(False, True), doc="maximum conductance g_max (µS)"
    )
    noise = param.Selector(default="multiplicative", objects=["multiplicative", "additive"],
                           doc="conductance noise model: multiplicative (σ_c) or additive (σ, µS)")
    sigma_c = param.Number(0.1, bounds=(0.0, 1.0), doc="relative std σ_c of multiplicative noise δ ~ N(1, σ_c²)")
    sigma = param.Number(0.94, bounds=(0.0, 100.0), doc="std σ (µS) of additive conductance noise")
    normalise = param.Selector(default="layer", objects=["layer", "column"],
                               doc="‖W‖∞ taken over the whole layer or per output column")
    column_g_u = param.Parameter(None, doc="optional per-column g_u (1-D, µS); overrides g_u")
    # periphery (workbench.hardware.periphery): each default switches its effect off and is left out of knobs()
    dac_bits = param.Integer(None, bounds=(2, 16), allow_None=True,
                             doc="DAC resolution (bits; None = ideal): 2^b - 1 levels over the input range, "
                                 "aihwkit inp_res = 1/(2^b - 2)")
    dac_range = param.Selector(default="calibrated", objects=["calibrated", "fixed"],
                               doc="DAC full scale: the largest |input| on calibration data, or dac_bound")
    dac_bound = param.Number(1.0, bounds=(0.0, 1e6), inclusive_bounds=(False, True),
                             doc="DAC full scale (input units) when dac_range='fixed'")
    adc_bits = param.Integer(None, bounds=(2, 16), allow_None=True,
                             doc="ADC resolution (bits; None = ideal), one ADC per tile column partial sum, "
                                 "aihwkit out_res = 1/(2^b - 2)")
    adc_range = param.Selector(default="calibrated", objects=["calibrated", "fixed"],
                               doc="ADC full scale: the largest |tile partial sum| on calibration data, or adc_bound")
    adc_bound = param.Number(12.0, bounds=(0.0, 1e6), inclusive_bounds=(False, True),
                             doc="ADC full scale in normalised units (x/x_b)·(W/‖W‖∞) when adc_range='fixed' "
                                 "(aihwkit out_bound, default 12)")
    inp_noise = param.Number(0.0, bounds=(0.0, 1.0), doc="std of Gaussian DAC output noise, relative to the "
                                                          "DAC full scale (aihwkit inp_noise)")
    out_noise = param.Number(0.0, bounds=(0.0, 10.0), doc="std of Gaussian noise on each tile partial sum before "
                                                           "its ADC, normalised units (aihwkit out_noise)")
    tile_rows = param.Integer(None, bounds=(1, 1 << 20), allow_None=True,
                              doc="rows (inputs) per crossbar tile; None = the whole layer in one tile")
    tile_cols = param.Integer(None, bounds=(1, 1 << 20), allow_None=True,
                              doc="columns (outputs) per crossbar tile; None = the whole layer (energy/latency only)")
    stuck_min = param.Number(0.0, bounds=(0.0, 1.0), doc="rate of devices stuck at g_min (per programmed chip)")
    stuck_max = param.Number(0.0, bounds=(0.0, 1.0), doc="rate of devices stuck at g_max (per programmed chip)")
    act_p = param.Number(0.0, bounds=(0.0, 0.5), doc="bit error rate of the SRAM buffer holding this layer's "
                                                      "input activations (eq 3.28–3.29; 0 = exact activations)")
    act_bits = param.Integer(8, bounds=(2, 32), doc="word length (bits) of the activation buffer")

    def check(self) -> None:
        """Refuse a ``g_u`` (or a per-column ``column_g_u``) outside ``(g_min, g_max]``."""
        rng = range_text(self.g_min, self.g_max, (False, True))
        if self.stuck_min + self.stuck_max > 1:
            raise out_of_range("stuck_min + stuck_max", self.stuck_min + self.stuck_max, "in [0, 1]",
                               "a device is stuck at g_min or at g_max, not both")
        if not (self.g_min < self.g_u <= self.g_max):
            raise out_of_range("g_u", self.g_u, f"in (g_min, g_max] = {rng}")
        if self.column_g_u is not None:
            try:
                col = torch.as_tensor(self.column_g_u, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                raise KnobError(f"column_g_u={self.column_g_u!r} must be a list of per-column g_u values (µS) in "
                                f"{rng}") from None
            if col.dim() != 1:
                raise KnobError(f"column_g_u has shape {tuple(col.shape)}: column_g_u must be a 1-D list with one g_u "
                                f"per output column, each in {rng} µS")
            if col.numel() == 0:
                raise KnobError(f"column_g_u=[] is empty: give one g_u per output column, each in {rng}")
            if not bool(((col > self.g_min) & (col >= G_U_MIN) & (col <= self.g_max)).all()):
                raise KnobError(f"column_g_u={col.tolist()} is out of range: every per-column g_u must be in "
                                f"(g_min, g_max] = {rng} and at least {G_U_MIN:g}")

    @property
    def is_noisy(self) -> bool:
        noisy = (self.sigma_c > 0) if self.noise == "multiplicative" else (self.sigma > 0)
        return noisy or self.stuck_min > 0 or self.stuck_max > 0 or self.forward_random

    @property
    def periphery_active(self) -> bool:
        """Whether the forward pass goes through :func:`~workbench.hardware.periphery.crossbar_mvm`
        (a converter, a tiling, input/output noise or activation-buffer faults is set)."""
        return (self.dac_bits is not None or self.adc_bits is not None or self.tile_rows is not None
                or self.forward_random)

    @property
    def forward_random(self) -> bool:
        """Whether the forward pass itself draws random numbers (input/output noise, buffer flips)."""
        return self.inp_noise > 0 or self.out_noise > 0 or self.act_p > 0

    @property
    def noise_knob(self) -> str:
        """``sigma_c`` for multiplicative noise (eq 3.37), ``sigma`` for additive noise (eq 3.36).

        The additive noise is ``ε ~ N(0, σ²)`` on each conductance, so its knob is σ (µS).  ``g_u``
        is not a noise knob: it is the scale of the programmed range, and it only changes how much
        of σ reaches the weights (as ``σ/g_u``); sweeping ``g_u`` is a design question, not a
        noise level."""
        return "sigma_c" if self.noise == "multiplicative" else "sigma"

    def knobs(self):
        out = super().knobs()
        for k, default in PERIPHERY_DEFAULTS.items():      # an "off" periphery knob keeps today's cache keys
            if out.get(k) == default:
                del out[k]
        if out.get("column_g_u") is not None:
            out["column_g_u"] = [float(v) for v in torch.as_tensor(out["column_g_u"]).flatten()]
        return out

    def program(self, weight: torch.Tensor):
        """Noise-free conductances ``(g+, g-, k)`` of ``weight`` (eq 3.34–3.35)."""
        self.check()
        g_u = (self.g_u if self.column_g_u is None      # 1-D, as check() requires
               else torch.as_tensor(self.column_g_u, dtype=weight.dtype, device=weight.device).reshape(-1))
        return to_conductances(weight, g_u, self.g_min, per_column=self.normalise == "column")

    def add_noise(self, g: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.noise == "multiplicative":
            return multiplicative_noise(g, self.sigma_c, generator)
        return additive_noise(g, self.sigma, generator)

    def read(self, weight: torch.Tensor, generator: torch.Generator | None = None) -> Read:
        gp, gm, k = self.program(weight)
        gp_n, gm_n = self.add_noise(gp, generator), self.add_noise(gm, generator)
        if self.stuck_min > 0 or self.stuck_max > 0:      # after the noise: a stuck device reads its stuck value
            gp_n = stuck_at(gp_n, self.stuck_min, self.stuck_max, self.g_min, self.g_max, generator)
            gm_n = stuck_at(gm_n, self.stuck_min, self.stuck_max, self.g_min, self.g_max, generator)
        return Read(
            from_conductances(gp_n, gm_n, k).to(weight.dtype),
            {"g_plus": gp_n, "g_minus": gm_n, "k": torch.as_tensor(k)},
        )


class InjectionMemory(Memory):
    """Gaussian noise injection of the training baseline (§5.4.1, [109]): every read adds
    ``N(0, σ_n²)`` to the weights with ``σ_n = ‖W_l‖∞ · σ_g / g_u`` (eq 5.4).

    Thesis values: ``σ_g = 0.94`` µS (measured on 1 M PCM devices), ``g_u = g_max = 25`` µS.  It
    is a training-time noise model (pair it with ``TrainConfig.clip_std = α``); the deployment
    noise models are those of :class:`MemristorMemory`.
    """

    technology = "injection"
    bits = param.Integer(16, bounds=(1, 32), doc="unused (analog); kept for the interface")
    sigma_g = param.Number(0.94, bounds=(0.0, 100.0), doc="hardware conductance noise std σ_g (µS)")
    g_u = param.Number(G_MAX, bounds=(G_U_MIN, 1000.0), doc="conductance scale g_u (µS)")

    @property
    def is_noisy(self) -> bool:
        return self.sigma_g > 0

    @property
    def noise_knob(self) -> str:
        """``sigma_g``, the conductance noise std of eq 5.4."""
        return "sigma_g"

    def sigma_n(self, weight: torch.Tensor) -> torch.Tensor:
        """Weight-domain std ``σ_n = ‖W‖∞ σ_g / g_u`` of eq 5.4."""
        return weight.detach().abs().max() * (self.sigma_g / self.g_u)

    def read(self, weight: torch.Tensor, generator: torch.Generator | None = None) -> Read:
        eps = torch.randn(weight.shape, generator=generator, device=weight.device, dtype=weight.dtype)
        return Read(weight + eps * self.sigma_n(weight))
