"""Objectives of the accelerator-aware search (issue 15 on top of §6.2.2, eq 6.3): the exact,
deterministic part of a state's energy per inference and its latency.

Of the energy components of :func:`workbench.hardware.profile.layer_cost`, only the crossbar
``array`` read energy depends on the data and the conductances of a draw (eq 3.41–3.44 on the
layer's inputs); the estimator learns it.  The others are functions of the subnet's geometry (rows,
columns, output positions, input activations per layer), its ADC bits and the
:class:`~workbench.hardware.profile.HardwareProfile` constants, so :class:`CostModel` computes them
exactly, with the same :func:`~workbench.hardware.profile.layer_cost` that the Monte-Carlo
evaluation uses (``mc_evaluate(profile=...)``):

- ``dac``: ``rows · column_tiles · positions`` conversions × ``FOM · 2^b`` (ISAAC Table 6);
- ``adc``: ``cols · row_tiles · positions`` conversions × ``FOM · 2^b`` with ``b`` the layer's ADC-bits
  gene (Walden figure of merit; the profile's ``adc_bits`` when the state has no ADC genes);
- ``accumulation`` and ``activation_buffer`` (Horowitz ISSCC 2014 constants);
- latency ``positions · (t_dac + t_read + t_adc · min(columns_per_adc, columns))`` per layer, layers
  one after another.  With the profiles' fixed conversion time per ADC (ISAAC: 1.28 GS/s), the
  latency depends on the architecture only, not on the ADC bits.

Total energy of a state = learned ``array`` + :meth:`CostModel.costs`' ``exact_energy_j``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..analysis.montecarlo import layer_geometry
from ..hardware.memristor import MemristorMemory
from ..hardware.profile import COMPONENTS, HardwareProfile, layer_cost
from ..nn.layers import capture_layer_inputs, noisy_layers
from .space import ArchSpace
from .supernet import Supernet

#: the components :class:`CostModel` computes exactly (all but the crossbar read energy)
EXACT_COMPONENTS = tuple(c for c in COMPONENTS if c != "array")


class CostModel:
    """Exact non-array energy (J) and latency (s) per inference of states of ``space``.

    ``sample``: one input (shape ``(1, C, H, W)`` or more rows, the first is used) that fixes the
    output positions of every layer.  Geometries are cached per architecture, layer costs per
    (architecture, layer, ADC bits).  Crossbar layers are the periphery of
    :class:`~workbench.hardware.memristor.MemristorMemory` with only ``adc_bits`` set: no tiles,
    ideal DAC (counted at the profile's ``dac_bits``), exact activations (``act_p = 0``), as the
    search programs them (:func:`workbench.nas.estimator.memory_map`)."""

    def __init__(self, supernet: Supernet, profile: HardwareProfile, sample: torch.Tensor,
                 space: ArchSpace | None = None):
        if not isinstance(profile, HardwareProfile):
            raise TypeError(f"profile={profile!r} must be a HardwareProfile (workbench.hardware.make_profile)")
        self.supernet, self.profile = supernet, profile
        self.space = space or supernet.space
        dev = next(supernet.parameters()).device
        self.sample = sample[:1].detach().to(dev)
        self._geometry: dict[tuple, dict[str, dict[str, int]]] = {}
        self._layer: dict[tuple, tuple[dict[str, float], float]] = {}
        self._memory: dict[int | None, MemristorMemory] = {}

    def geometry(self, state) -> dict[str, dict[str, int]]:
        """Per layer of the state's subnet: ``rows``, ``cols``, ``positions``, ``inputs``, ``weights``
        (:func:`workbench.analysis.montecarlo.layer_geometry`; batch norm does not change them)."""
        key = self.space.arch_key(state)
        geom = self._geometry.get(key)
        if geom is None:
            net = self.supernet.subnet(np.asarray(state, float))
            params = {f"{n}.weight": layer.quantized_weight().detach() for n, layer in noisy_layers(net).items()}
            geom = layer_geometry(net, capture_layer_inputs(net, params, self.sample)[1])
            self._geometry[key] = geom
        return geom

    def memory(self, bits: int | None) -> MemristorMemory:
        """The crossbar memory whose periphery :func:`layer_cost` reads (``adc_bits = bits``)."""
        mem = self._memory.get(bits)
        if mem is None:
            mem = self._memory[bits] = MemristorMemory(adc_bits=bits)
        return mem

    def layer(self, state, name: str, bits: int | None) -> tuple[dict[str, float], float]:
        """``({component: J}, latency s)`` of one layer of the state's subnet, array energy 0."""
        key = (self.space.arch_key(state), name, bits)
        out = self._layer.get(key)
        if out is None:
            out = self._layer[key] = layer_cost(self.profile, self.memory(bits), **self.geometry(state)[name])
        return out

    def costs(self, states) -> dict[str, np.ndarray]:
        """``exact_energy_j`` (J, every component but ``array``) and ``latency_s`` (s) per state."""
        S = np.atleast_2d(np.asarray(states, float))
        energy, latency = np.zeros(len(S)), np.zeros(len(S))
        for i, s in enumerate(S):
            bits = self.space.adc_bits(s)
            for name in self.geometry(s):
                e, t = self.layer(s, name, bits.get(name) if self.space.has_adc else None)
                energy[i] += sum(e[c] for c in EXACT_COMPONENTS)
                latency[i] += t
        return {"exact_energy_j": energy, "latency_s": latency}


__all__ = ["EXACT_COMPONENTS", "CostModel"]
