"""The architecture space of the chapter-6 NAS and its fixed-length state encoding (§6.2.1).

Encoding (pymoo-compatible float vector, :class:`ArchSpace`)::

    s = [ D_0 .. D_{S-1} | w_stem, w_0 .. w_{S-1} | e_{0,0} .. e_{S-1,B-1} | r_1 .. r_L ]

``D`` holds depth *values*, ``w``/``e`` hold *indices* into ``width_choices``/``expand_choices``,
and ``r_l`` is layer ``l``'s ``g_u`` **as a multiple of its default** ``g_u^d = ‖W_l‖∞`` (so
``r ∈ [0.5, 1.5]``, eq 6.2, where the layer is present and ``r = 0`` where it is not; the absolute
``g_u = r · ‖W_l‖∞`` is formed when a subnet is programmed, from that subnet's own weights).

Optional ADC genes (``adc_choices``, issue 15's accelerator search): one more entry per crossbar
layer, in the same layer order, appended after the ``g_u`` part::

    s = [ m | r_1 .. r_L | b_1 .. b_L ]

``b_l`` is the number of ADC bits of layer ``l``'s column partial sums (one of ``adc_choices``, the
:class:`~workbench.hardware.memristor.MemristorMemory` ``adc_bits`` knob, ISAAC Table 6 uses 8) where
the layer is present and exactly 0 where it is not, like ``r``.  Without ``adc_choices`` (the default)
the state, its length, its entry names and every cache key built from them are the chapter-6 ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..knobs import KnobError, check_int

#: the dim of a Dataset that indexes the entries of a state s (one name per entry, :attr:`ArchSpace.var_names`)
STATE_DIM = "state_entry"
#: the attrs of its coordinate
STATE_ATTRS = {"long_name": "state entry (architecture choice or g_u/g_u^d of a layer)", "units": ""}
#: the attrs of that coordinate when the state has ADC genes
STATE_ATTRS_ADC = {"long_name": "state entry (architecture choice, g_u/g_u^d or ADC bits of a layer)", "units": ""}
#: the range of an ADC-bits gene (the bounds of MemristorMemory.adc_bits)
ADC_BITS_RANGE = (2, 16)


def check_adc_choices(choices, name: str = "adc_bits") -> tuple[int, ...]:
    """``choices`` as a sorted tuple of distinct ADC bit counts, each an integer in [2, 16] (a
    :class:`KnobError` naming ``name`` otherwise)."""
    if isinstance(choices, (str, bytes)) or not hasattr(choices, "__iter__"):
        raise KnobError(f"{name}={choices!r} is not a list: {name} lists the ADC bits a layer may take, each an "
                        f"integer in [{ADC_BITS_RANGE[0]}, {ADC_BITS_RANGE[1]}]")
    vals = list(choices)
    if not vals:
        raise KnobError(f"{name}=[] is empty: {name} lists the ADC bits a layer may take, each an integer in "
                        f"[{ADC_BITS_RANGE[0]}, {ADC_BITS_RANGE[1]}]")
    out = [check_int(f"{name}[{i}]", v, *ADC_BITS_RANGE, note="ADC resolution in bits") for i, v in enumerate(vals)]
    return tuple(sorted(set(out)))


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
    ``adc_choices``: switch on one ADC-bits gene per layer (module docstring); :meth:`with_adc`
    gives the same space with them.
    """

    gu_low = 0.5
    gu_high = 1.5

    def __init__(self, layer_names: Sequence[str], layer_block: Sequence[tuple[int, int] | None], n_stages: int,
                 depth_choices: Sequence[int], width_choices: Sequence[float], expand_choices: Sequence[float],
                 adc_choices: Sequence[int] | None = None):
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
        #: the ADC bits a layer may take (sorted), or None: no ADC genes
        self.adc_choices = None if adc_choices is None else check_adc_choices(adc_choices)
        self.n_var = self.n_arch + self.n_layers * (1 if self.adc_choices is None else 2)
        self.depth_slice = slice(0, S)
        self.width_slice = slice(S, 2 * S + 1)
        self.expand_slice = slice(2 * S + 1, self.n_arch)
        self.gu_slice = slice(self.n_arch, self.n_arch + self.n_layers)
        #: the ADC-bits genes (empty without ``adc_choices``)
        self.adc_slice = slice(self.n_arch + self.n_layers, self.n_var)
        stage = np.array([-1 if lb is None else lb[0] for lb in self.layer_block])
        block = np.array([-1 if lb is None else lb[1] for lb in self.layer_block])
        self._stage, self._block = stage, block

    @property
    def has_adc(self) -> bool:
        """Whether the states carry ADC-bits genes."""
        return self.adc_choices is not None

    def with_adc(self, adc_choices: Sequence[int] | None) -> "ArchSpace":
        """The same space with ADC-bits genes over ``adc_choices`` (None: without them)."""
        return ArchSpace(self._layer_names, self.layer_block, self.n_stages, self.depth_choices, self.width_choices,
                         self.expand_choices, adc_choices)

    @property
    def adc_default(self) -> int:
        """ADC bits of a layer a mutation adds (the finest choice, as ``g_u^d`` is the default scale)."""
        return max(self.adc_choices)

    def adc_bits(self, s) -> dict[str, int]:
        """ADC bits of each layer present in state ``s`` (empty without ADC genes)."""
        if not self.has_adc:
            return {}
        b = np.rint(np.asarray(s, dtype=float)[self.adc_slice]).astype(int)
        return {n: int(v) for n, v in zip(self._layer_names, b) if v > 0}

    # ----- names and bounds
    def layer_names(self) -> list[str]:
        """Supernet crossbar layers in the fixed order of the ``g_u`` part of a state."""
        return list(self._layer_names)

    @property
    def var_names(self) -> list[str]:
        adc = [f"adc_bits:{n}" for n in self._layer_names] if self.has_adc else []
        return self.arch_names + [f"g_u:{n}" for n in self._layer_names] + adc

    def state_coords(self) -> dict:
        """The :data:`STATE_DIM` coordinate of a Dataset of states."""
        return {STATE_DIM: (STATE_DIM, self.var_names, dict(STATE_ATTRS_ADC if self.has_adc else STATE_ATTRS))}

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
        if self.has_adc:
            hi[self.adc_slice] = max(self.adc_choices)
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

    def encode(self, arch: Arch, g_u=None, adc_bits=None) -> np.ndarray:
        """State vector of ``arch``; ``g_u`` (multiples of ``g_u^d``) defaults to 1 on kept layers (M1);
        ``adc_bits`` (with ADC genes; scalar or per layer) to :attr:`adc_default`."""
        s = np.zeros(self.n_var)
        s[self.depth_slice] = arch.depth
        s[self.width_slice] = [self.width_choices.index(float(v)) for v in arch.width]
        s[self.expand_slice] = [self.expand_choices.index(float(v)) for row in arch.expand for v in row]
        m = self.mask(np.asarray(arch.depth))
        s[self.gu_slice] = m * (1.0 if g_u is None else np.asarray(g_u, dtype=float))
        if self.has_adc:
            s[self.adc_slice] = m * (self.adc_default if adc_bits is None else np.asarray(adc_bits, dtype=float))
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
        return Arch((min(self.depth_choices),) * S, (self.width_choices[0],) * (S + 1),
                    ((self.expand_choices[0],) * B,) * S)

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
        """States with ``g_u = g_u^d`` (``r = 1``) on every kept layer (strategy M1), and the
        finest ADC (:attr:`adc_default`) with ADC genes."""
        A = np.atleast_2d(np.asarray(arch_part, dtype=float))[:, : self.n_arch]
        m = self.mask(np.rint(A[:, self.depth_slice]).astype(int))
        parts = [A, m.astype(float)] + ([m * float(self.adc_default)] if self.has_adc else [])
        return np.concatenate(parts, axis=1)

    def is_valid(self, states) -> np.ndarray:
        """Per state: integer choices in range, ``g_u ∈ [0.5, 1.5]`` where kept and exactly 0 elsewhere
        (and, with ADC genes, ADC bits one of :attr:`adc_choices` where kept, exactly 0 elsewhere)."""
        X = np.atleast_2d(np.asarray(states, dtype=float))
        if X.shape[1] != self.n_var:             # a state of another space (with or without ADC genes)
            return np.zeros(len(X), bool)
        A = X[:, : self.n_arch]
        in_range = (A >= self.xl[: self.n_arch]) & (A <= self.xu[: self.n_arch])
        ok = np.all(A == np.rint(A), axis=1) & np.all(in_range, axis=1)
        ok &= np.all(np.isin(np.rint(X[:, self.depth_slice]), self.depth_choices), axis=1)
        m = self.mask(np.rint(X[:, self.depth_slice]).astype(int))
        g = X[:, self.gu_slice]
        inside = (g >= self.gu_low) & (g <= self.gu_high)
        ok &= np.all(np.where(m, inside, g == 0), axis=1)
        if self.has_adc:
            b = X[:, self.adc_slice]
            ok &= np.all(np.where(m, np.isin(b, self.adc_choices), b == 0), axis=1)
        return ok

    def size(self) -> dict[str, int]:
        """Search-space size: encodings, distinct networks, crossbar layers, state length."""
        S = self.n_stages
        nw, ne = len(self.width_choices), len(self.expand_choices)
        encodings = len(self.depth_choices) ** S * nw ** (S + 1) * ne ** (S * self.max_depth)
        distinct = nw ** (S + 1) * sum(ne ** d for d in self.depth_choices) ** S
        out = {"architecture_encodings": int(encodings), "distinct_architectures": int(distinct),
               "crossbar_layers": self.n_layers, "state_length": self.n_var, "arch_length": self.n_arch}
        if self.has_adc:
            out["adc_choices"] = len(self.adc_choices)
        return out
