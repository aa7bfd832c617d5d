"""Energy and latency per inference of an analog accelerator, from a :class:`HardwareProfile`.

Every constant of a chip is a bounded knob of :class:`HardwareProfile` (a ``param.Parameterized``
passed down to :func:`layer_cost`, never a global).  :data:`PROFILES` holds named presets;
:func:`make_profile` builds one (``make_profile("isaac", adc_fom_j=5e-15)``), refusing unknown
names and out-of-range values with a :class:`~workbench.knobs.KnobError`; ``to_dict()`` /
:func:`profile_from_dict` round-trip it (the Monte-Carlo results store it in their attributes).

Per layer and inference (one input sample), in joules (components :data:`COMPONENTS`):

- ``array``: crossbar read energy ``E = P · t_read`` with ``P`` the existing power model of
  eq 3.41–3.44 (:func:`~workbench.hardware.memristor.crossbar_power`, noisy conductances of the draw,
  µS) evaluated on the inputs in volts ``v = x / x_b · V_read`` (µS·V² = µW), summed over every
  output position (each position of a convolution is one read of ``t_read``);
- ``dac``: ``rows · column_tiles · positions`` conversions × ``dac_fom_j · 2^b`` (every row of every
  column tile is driven once per read);
- ``adc``: ``cols · row_tiles · positions`` conversions × ``adc_fom_j · 2^b`` (Walden figure of merit:
  energy per conversion = FOM × 2^ENOB, Walden, IEEE JSAC 1999; ENOB taken as the bit count);
- ``weight_buffer``: weights of a layer held in SRAM (technology ``sram``: ``ζ`` bits at ``η(p)``,
  eq 3.27/3.30; any other digital memory: its ``bits`` (16 for ``ideal``) at ``η = 1``) are read once
  per inference, ``n · ζ · η(p) · sram_bit_j``; a crossbar layer's weights are its conductances (0
  here, their read is ``array``);
- ``activation_buffer``: the layer's input activations are written to and read from an SRAM buffer
  once per inference, ``2 · n_in · act_bits · η(act_p) · sram_bit_j``;
- ``accumulation``: the digital sum of the row tiles' converted partial sums,
  ``cols · positions · (row_tiles - 1)`` additions × ``add_j``.

Converter bits: a crossbar memory's own ``dac_bits``/``adc_bits`` when set, else the profile's
``dac_bits``/``adc_bits`` (the converters a chip needs even when the workbench models them as ideal).

Latency per layer: ``positions · (t_dac + t_read + t_adc · min(columns_per_adc, tile columns))``:
output positions are read one after the other, all tiles of a layer in parallel, each ADC converts
its ``columns_per_adc`` columns in turn (ISAAC's organisation, one ADC shared by 128 columns);
layers run one after another.  Digital (non-crossbar) layers add buffer energy only: their
multiply-accumulates are not modelled (an assumption: this is a crossbar accelerator).

Sources: ISAAC (Shafiee et al., ISCA 2016, Table 6, 32 nm): 100 ns crossbar read cycle, 8-bit ADCs
at 1.28 GS/s with 8 ADCs drawing 16 mW per in-situ multiply-accumulate unit (2 mW each → 1.6 pJ per
conversion → FOM 6.1 fJ/step), 1-bit DACs (8 × 128 drawing 4 mW → 0.39 pJ per conversion per 100 ns
cycle), 128 × 128 crossbars with one ADC per 128 columns.  M. Horowitz, "Computing's energy
problem", ISSCC 2014 (45 nm): 64-bit read of an 8 kB SRAM 10 pJ (0.16 pJ/bit), 32-bit integer add
0.1 pJ.  B. Murmann, "ADC Performance Survey 1997–2024": the Walden-FOM frontier of published ADCs
at ≤ 100 MS/s, rounded to 1 fJ/conversion-step (an order of magnitude read off the survey's plot,
not one design's number).  The thesis' η(p) = -log(p)/a, a = 12.8 (eq 3.27, §4.2).
Numbers without a source (the read voltage, the DAC settling time) are marked ``assumption`` in
their doc.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import param

from ..knobs import KnobError, check_choice
from .base import make, plain_values
from .periphery import tile_counts
from .sram import DEFAULT_A, eta

#: the energy components of :func:`layer_cost`, in the order of a stacked bar
COMPONENTS = ("array", "dac", "adc", "weight_buffer", "activation_buffer", "accumulation")


class HardwareProfile(param.Parameterized):
    """The constants of one accelerator chip (SI units: J, s, V)."""

    read_time_s = param.Number(100e-9, bounds=(1e-12, 1.0), doc="crossbar read time t_read per output position (s); "
                                                               "ISAAC Table 6: 100 ns")
    read_voltage_v = param.Number(0.2, bounds=(1e-3, 10.0), doc="row voltage V_read of a full-scale input (V); "
                                                               "assumption (a read well below the set voltage)")
    dac_fom_j = param.Number(0.195e-12, bounds=(0.0, 1e-9), doc="DAC energy per conversion step (J), E = FOM·2^b; "
                                                               "ISAAC Table 6: 0.39 pJ per 1-bit conversion")
    adc_fom_j = param.Number(6.1e-15, bounds=(0.0, 1e-9), doc="ADC Walden figure of merit (J per conversion step), "
                                                             "E = FOM·2^b; ISAAC Table 6: 2 mW at 1.28 GS/s, 8 bits")
    dac_bits = param.Integer(1, bounds=(1, 16), doc="DAC bits counted when a layer's DAC is ideal; ISAAC: 1")
    adc_bits = param.Integer(8, bounds=(1, 16), doc="ADC bits counted when a layer's ADC is ideal; ISAAC: 8")
    adc_time_s = param.Number(1 / 1.28e9, bounds=(0.0, 1.0), doc="ADC time per conversion (s); ISAAC: 1.28 GS/s")
    dac_time_s = param.Number(0.0, bounds=(0.0, 1.0), doc="DAC settling time per read (s); assumption: within t_read")
    columns_per_adc = param.Integer(128, bounds=(1, 1 << 20), doc="columns sharing one ADC; ISAAC: 128")
    sram_bit_j = param.Number(10e-12 / 64, bounds=(0.0, 1e-9), doc="SRAM energy per bit access at nominal supply (J); "
                                                                  "Horowitz ISSCC 2014: 10 pJ per 64-bit 8 kB read")
    sram_a = param.Number(DEFAULT_A, bounds=(0.0, math.inf), inclusive_bounds=(False, False),
                          doc="constant a of η(p) = -log(p)/a for under-volted buffers (thesis eq 3.27, §4.2)")
    act_bits = param.Integer(8, bounds=(1, 32), doc="activation word length of layers that are not crossbars "
                                                    "(crossbar layers use their memory's act_bits); assumption")
    add_j = param.Number(0.1e-12, bounds=(0.0, 1e-9), doc="energy of one digital addition of partial sums (J); "
                                                         "Horowitz ISSCC 2014: 32-bit integer add 0.1 pJ")

    def to_dict(self) -> dict[str, Any]:
        """Every knob's value (floats for numbers): what a result's attributes store."""
        return plain_values(self)


#: named presets: knob overrides of the :class:`HardwareProfile` defaults (which are ISAAC's)
PROFILES: dict[str, dict[str, Any]] = {
    # ISAAC (Shafiee et al., ISCA 2016, Table 6) with Horowitz's (ISSCC 2014) SRAM and adder
    "isaac": {},
    # converters at the Walden-FOM frontier of Murmann's ADC survey (≈ 1 fJ/step at ≤ 100 MS/s),
    # read at 100 MS/s; a 4-bit DAC of the same FOM; other constants as ISAAC
    "survey-frontier": {"adc_fom_j": 1e-15, "adc_time_s": 10e-9, "dac_fom_j": 1e-15, "dac_bits": 4},
}
DEFAULT_PROFILE = "isaac"


def make_profile(name: str = DEFAULT_PROFILE, **overrides: Any) -> HardwareProfile:
    """The preset ``name`` of :data:`PROFILES` with ``overrides`` (validated; a bad knob raises a
    :class:`KnobError` naming it and its range)."""
    check_choice("profile", name, sorted(PROFILES))
    return make(HardwareProfile, **{**PROFILES[name], **overrides})


def profile_from_dict(d: Mapping[str, Any] | None) -> HardwareProfile | None:
    """Inverse of :meth:`HardwareProfile.to_dict` (``None`` stays ``None``)."""
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise KnobError(f"a hardware profile must be a mapping {{knob: value}}, got {d!r}")
    return make(HardwareProfile, **dict(d))


def conversion_energy(fom_j: float, bits: int) -> float:
    """Energy of one conversion, ``FOM · 2^bits`` (J)."""
    return fom_j * 2.0 ** bits


def layer_cost(profile: HardwareProfile, memory, *, rows: int, cols: int, positions: int, inputs: int,
               weights: int, array_power_uw: float = 0.0) -> tuple[dict[str, float], float]:
    """``({component: J}, latency s)`` of one layer for one inference (module docstring).

    ``rows``: fan-in of one output (crossbar rows); ``cols``: outputs (crossbar columns);
    ``positions``: output positions per sample (1 for a linear layer); ``inputs``: input activations
    per sample; ``weights``: stored weights; ``array_power_uw``: the crossbar power of one sample
    (eq 3.41–3.44 on inputs in volts, µS·V² = µW, summed over positions) — crossbar layers only."""
    tech = getattr(memory, "technology", "ideal")
    out = dict.fromkeys(COMPONENTS, 0.0)
    if tech == "memristor":
        row_tiles, col_tiles = tile_counts(rows, cols, memory.tile_rows, memory.tile_cols)
        dac_bits = memory.dac_bits if memory.dac_bits is not None else profile.dac_bits
        adc_bits = memory.adc_bits if memory.adc_bits is not None else profile.adc_bits
        out["array"] = array_power_uw * 1e-6 * profile.read_time_s
        out["dac"] = rows * col_tiles * positions * conversion_energy(profile.dac_fom_j, dac_bits)
        out["adc"] = cols * row_tiles * positions * conversion_energy(profile.adc_fom_j, adc_bits)
        out["accumulation"] = cols * positions * (row_tiles - 1) * profile.add_j
        act_bits, act_p = memory.act_bits, memory.act_p
        tile_cols = cols if memory.tile_cols is None else min(cols, memory.tile_cols)
        latency = positions * (profile.dac_time_s + profile.read_time_s
                               + profile.adc_time_s * min(profile.columns_per_adc, tile_cols))
    else:
        # an SRAM at its bit error rate (η(p), eq 3.27); any other memory: its words at nominal supply
        rel = float(eta(memory.p, memory.a)) if tech == "sram" else 1.0
        out["weight_buffer"] = weights * memory.bits * rel * profile.sram_bit_j
        act_bits, act_p = profile.act_bits, 0.0
        latency = 0.0
    out["activation_buffer"] = 2 * inputs * act_bits * float(eta(act_p, profile.sram_a)) * profile.sram_bit_j
    return out, latency


__all__ = ["COMPONENTS", "DEFAULT_PROFILE", "HardwareProfile", "PROFILES", "conversion_energy", "layer_cost",
           "make_profile", "profile_from_dict"]
