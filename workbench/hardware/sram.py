"""Under-volted (near-threshold) SRAM: bit errors, energy per bit and memory energy (thesis §3.3.1).

Encoding of ``ζ``-bit weights (``bits > 1``): symmetric per-tensor fixed point,
``s = max|W| / (2^(ζ-1) - 1)``, integer code ``q = round(w / s)``, stored either in **two's
complement** (default; flipping the most significant bit moves the code by ``±2^(ζ-1)``) or in
**sign-magnitude** (the top bit is the sign, flipping it negates the weight).  For ``bits == 1``
the stored value is the (already binarized) weight itself and a flip negates it — the binary
symmetric channel of eq 3.28–3.29.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Mapping, Sequence

import numpy as np
import param
import torch

from ..knobs import KnobError, check_choice, check_int, check_number, out_of_range, range_text
from .base import Memory, Read

#: the bit error rates a binary symmetric channel admits (eq 3.28–3.29)
BER_RANGE = range_text(0, 0.5)
#: energy-model constant of eq 3.27 (value used in §4.2, after [107])
DEFAULT_A = 12.8
#: above this BER the dense per-bit sampler is used: flips are then a sizeable share of the bits
DENSE_THRESHOLD = 0.02


def eta(p: float | np.ndarray | torch.Tensor, a: float = DEFAULT_A):
    """Energy per bit read at bit error rate ``p``: ``η(p) = -log(p)/a``, ``η(0) = 1`` (eq 3.27).

    Relative to the nominal (reliable) supply, so ``η(p) < 1`` once ``p > e^-a``.  Works on
    floats, numpy arrays and torch tensors (differentiable for ``p > 0``).  ``p`` is the BER of
    the binary symmetric channel, ``0 ≤ p ≤ 1/2`` (eq 3.28–3.29); anything else is refused.
    """
    check_number("a", a, 0, None, inclusive=(False, False), note="energy-model constant of eq 3.27")
    if isinstance(p, torch.Tensor):
        if bool(((p < 0) | (p > 0.5) | torch.isnan(p)).any()):
            raise out_of_range("p", p, f"in {BER_RANGE}", "bit error rate, eq 3.28–3.29")
        safe = torch.where(p > 0, p, torch.ones_like(p))
        return torch.where(p > 0, -torch.log(safe) / a, torch.ones_like(p))
    try:
        arr = np.asarray(p, dtype=float)
    except (TypeError, ValueError):
        raise KnobError(f"p={p!r} is not a number: p must be in {BER_RANGE} (bit error rate, eq 3.28–3.29)") from None
    if np.any((arr < 0) | (arr > 0.5)) or np.any(np.isnan(arr)):
        raise out_of_range("p", p, f"in {BER_RANGE}", "bit error rate, eq 3.28–3.29")
    with np.errstate(divide="ignore"):
        out = np.where(arr > 0, -np.log(np.where(arr > 0, arr, 1.0)) / a, 1.0)
    return float(out) if out.ndim == 0 else out


def memory_energy(p: Sequence[float] | np.ndarray | torch.Tensor, counts: Sequence[int], bits: int = 1,
                  a: float = DEFAULT_A):
    """Memory energy ``E(p) = ζ · Σ_l η(p_l) · count(W_l)`` (eq 3.30), in nominal bit-reads.

    ``p``: one BER per layer (shape ``(L,)``) or a scalar for all layers, each in ``[0, 1/2]``
    (eq 3.28–3.29, checked by :func:`eta`); ``counts``: number of weights of each layer;
    ``bits``: ``ζ``, bits per weight.
    """
    try:
        counts_arr = np.asarray(counts, dtype=float)
    except (TypeError, ValueError):
        raise KnobError(f"counts={counts!r} must be a list of weight counts, each in [0, inf)") from None
    if counts_arr.ndim != 1 or not np.all(np.isfinite(counts_arr) & (counts_arr >= 0)):
        raise KnobError(f"counts={counts!r} is out of range: counts must be a list of weight counts, each in [0, inf)")
    check_int("bits", bits, 1)
    p_shape = tuple(p.shape) if isinstance(p, torch.Tensor) else np.shape(p)
    if p_shape not in ((), (1,), counts_arr.shape):
        raise KnobError(f"p has shape {p_shape} but counts has {counts_arr.size} layers: give one p per layer or one p")
    if isinstance(p, torch.Tensor):
        pt = p if p.ndim else p.expand(len(counts_arr))
        return bits * (eta(pt, a) * torch.as_tensor(counts_arr, dtype=pt.dtype, device=pt.device)).sum()
    parr = np.broadcast_to(np.asarray(p, dtype=float), counts_arr.shape)
    return float(bits * np.sum(eta(parr, a) * counts_arr))


#: the references a memory energy is quoted against; every E shown names one of them
ENERGY_REFERENCES = {
    "same-network": "relative to the same network read from reliable memory",
    "fp16": "relative to the same network stored in 16 bits, read from reliable memory",
}


def normalised_energy(p, counts: Sequence[int], bits: int = 1, a: float = DEFAULT_A,
                      reference_counts: Iterable[int] | None = None, reference_bits: int = 16):
    """``E(p)`` (eq 3.30) ÷ ``reference_bits · Σ reference_counts`` nominal bit-reads (``η(0) = 1``).

    The arithmetic under :func:`relative_energy`, which picks the reference by name; ``reference_counts``
    defaults to ``counts``.
    """
    energy = memory_energy(p, counts, bits, a)       # validates p, counts, bits and a
    try:
        ref = float(np.sum(np.asarray(list(reference_counts) if reference_counts is not None else counts, dtype=float)))
    except (TypeError, ValueError):
        raise KnobError(f"reference_counts={reference_counts!r} must be a list of weight counts") from None
    if not 0 < ref < math.inf:
        raise KnobError(f"reference_counts sum to {ref!r}: the reference network needs a weight count in (0, inf)")
    check_int("reference_bits", reference_bits, 1)
    return energy / (reference_bits * ref)


def reference_bits_of(reference: str, bits: int) -> int:
    """Bits per weight of the reliable reference of a ``bits``-bit network: its own ``ζ`` for
    ``"same-network"``, 16 for ``"fp16"``."""
    check_choice("reference", reference, list(ENERGY_REFERENCES))
    return bits if reference == "same-network" else 16


def relative_energy(p, counts: Sequence[int], bits: int = 1, a: float = DEFAULT_A,
                    reference: str = "same-network"):
    """Memory energy ``E(p)`` (eq 3.30) relative to a reliable reference (the thesis' convention, §4.4).

    ``"same-network"`` (default, the thesis'): the same ``ζ``-bit network read at the nominal supply,
    so ``E = Σ_l η(p_l) n_l / Σ_l n_l``; a BinaryConnect net at a uniform ``p = 0.01`` has
    ``E = η(0.01) = 0.3598`` (the thesis' 36 %), at ``p = 1e-4`` ``E = 0.7196`` (28 % saved, §4.4.2),
    and a 16-bit network is compared with itself read reliably.  ``"fp16"``: the same weights at
    16 bits read reliably, so a BinaryConnect E is 16× smaller.
    """
    return normalised_energy(p, counts, bits, a, reference_bits=reference_bits_of(reference, bits))


def storage_bits(memory) -> int:
    """Bits per weight a memory stores: SRAM's ``ζ``; any other memory counts as reliable 16-bit storage."""
    return memory.bits if memory.technology == "sram" else 16


def memory_map_energy_terms(counts: Mapping[str, int], memory_map,
                            reference: str = "same-network") -> dict[str, float]:
    """Each layer's share of :func:`memory_map_energy` (the terms of eq 3.30 over the same reference)."""
    check_choice("reference", reference, list(ENERGY_REFERENCES))
    costs, ref = {}, 0.0
    for name, n in counts.items():
        mem = memory_map[name]
        bits = storage_bits(mem)
        costs[name] = bits * n * (eta(mem.p, mem.a) if mem.technology == "sram" else 1.0)
        ref += reference_bits_of(reference, bits) * n
    if not ref > 0:
        raise KnobError("counts sum to 0: the network needs at least one weight for a relative energy")
    return {name: c / ref for name, c in costs.items()}


def memory_map_energy(counts: Mapping[str, int], memory_map, reference: str = "same-network") -> float:
    """``E`` (eq 3.30) of a network whose layer ``l`` holds ``counts[l]`` weights in ``memory_map[l]``.

    SRAM layers cost ``ζ_l η(p_l) n_l``, other layers ``16 n_l`` (:func:`storage_bits`, read reliably).
    ``"same-network"``: ÷ ``Σ_l ζ_l n_l``, the same storage read reliably; ``"fp16"``: ÷ ``16 Σ_l n_l``.
    """
    return float(sum(memory_map_energy_terms(counts, memory_map, reference).values()))


# --------------------------------------------------------------------------------------------
# Exact sparse sampling of independent bit flips
# --------------------------------------------------------------------------------------------

def _numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    dev = generator.device if generator is not None else torch.device("cpu")   # a CUDA generator needs device=
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=dev).item())
    return np.random.default_rng(seed)


def check_ber(name: str, p) -> float:
    """``p`` as a float bit error rate in [0, 0.5], else a :class:`KnobError` naming ``name``."""
    try:
        val = float(p)                                   # also a numpy scalar or a 0-d tensor
    except (TypeError, ValueError):
        val = None
    if isinstance(p, bool) or val is None:
        raise KnobError(f"{name}={p!r} is not a number: {name} must be in {BER_RANGE} (bit error rate)") from None
    if math.isnan(val) or not 0.0 <= val <= 0.5:
        raise out_of_range(name, p, f"in {BER_RANGE}", "bit error rate")
    return val


def sample_flip_positions(n_bits: int, p: float, generator: torch.Generator | None = None,
                          device: torch.device | str = "cpu") -> torch.Tensor:
    """Sorted, distinct positions in ``[0, n_bits)`` of bits flipped by a BSC at rate ``p``.

    Exact for every ``0 ≤ p ≤ 1/2``: the number of flips is drawn from ``Binomial(n_bits, p)``
    in float64 (no float32 resolution floor at ~6e-8), then that many **distinct** positions are
    drawn uniformly (duplicates are redrawn, never allowed to cancel).  Cost is proportional to
    the number of flips, not of bits.  For ``p ≥ DENSE_THRESHOLD`` (where flips are a sizeable
    share of the bits anyway) a dense float64 Bernoulli draw is used.
    """
    p = check_ber("p", p)
    if isinstance(n_bits, bool) or not isinstance(n_bits, numbers.Integral) or not 0 <= n_bits < 2**63:
        raise out_of_range("n_bits", n_bits, "an integer in [0, 2^63)")
    n_bits = int(n_bits)
    device = torch.device(device)
    if p == 0.0 or n_bits == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    if p >= DENSE_THRESHOLD:
        return sample_flip_positions_dense(n_bits, p, generator, device)
    k = int(_numpy_rng(generator).binomial(n_bits, p))
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    pos = torch.randint(0, n_bits, (k,), generator=generator, device=gen_device).unique()
    while pos.numel() < k:
        more = torch.randint(0, n_bits, (k - pos.numel(),), generator=generator, device=gen_device)
        pos = torch.cat([pos, more]).unique()
    return pos.to(device)


def sample_flip_positions_dense(n_bits: int, p: float, generator: torch.Generator | None = None,
                                device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-bit Bernoulli reference sampler (float64 uniforms, one per bit); cost ∝ ``n_bits``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n_bits, dtype=torch.float64, generator=generator, device=gen_device)
    return torch.nonzero(u < p).flatten().to(device)


def flip_signs(weight: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Binary symmetric channel on binarized weights: negate the entries at ``positions`` (eq 3.28)."""
    out = weight.clone(memory_format=torch.contiguous_format)   # flat row-major view below
    flat = out.view(-1)
    flat[positions] = -flat[positions]
    return out


def fixed_point_scale(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-tensor scale of the symmetric ``bits``-bit fixed-point code: ``max|W| / (2^(bits-1)-1)``."""
    qmax = 2 ** (bits - 1) - 1
    m = weight.detach().abs().max()
    return torch.where(m > 0, m / qmax, torch.ones_like(m))


def encode_fixed_point(weight: torch.Tensor, bits: int, encoding: str = "twos_complement",
                       scale: torch.Tensor | None = None):
    """Encode to unsigned ``bits``-bit words (int64) and return ``(words, scale)``."""
    qmax = 2 ** (bits - 1) - 1
    scale = fixed_point_scale(weight, bits) if scale is None else scale
    q = torch.clamp(torch.round(weight.detach() / scale), -qmax, qmax).to(torch.int64)
    if encoding == "twos_complement":
        words = torch.remainder(q, 2**bits)
    elif encoding == "sign_magnitude":
        words = torch.where(q < 0, (-q) | (1 << (bits - 1)), q)
    else:
        check_choice("encoding", encoding, ("twos_complement", "sign_magnitude"))
    return words, scale


def decode_fixed_point(
    words: torch.Tensor, scale: torch.Tensor, bits: int, encoding: str = "twos_complement"
) -> torch.Tensor:
    """Inverse of :func:`encode_fixed_point`."""
    sign_bit = 1 << (bits - 1)
    if encoding == "twos_complement":
        q = torch.where(words >= sign_bit, words - (1 << bits), words)
    else:
        mag = words & (sign_bit - 1)
        q = torch.where((words & sign_bit) != 0, -mag, mag)
    return q.to(scale.dtype) * scale


def flip_fixed_point(weight: torch.Tensor, bits: int, positions: torch.Tensor,
                     encoding: str = "twos_complement") -> torch.Tensor:
    """Read ``weight`` stored as ``bits``-bit fixed point whose bits at ``positions`` flipped.

    Bit position ``j`` addresses weight ``j // bits`` (flattened), bit ``j % bits`` (0 = LSB).
    Only the words that received a flip are decoded again, so the cost beyond quantisation is
    proportional to the number of flips.
    """
    qmax = 2 ** (bits - 1) - 1
    scale = fixed_point_scale(weight, bits)
    out = torch.clamp(torch.round(weight.detach() / scale), -qmax, qmax) * scale   # float path, no int64 pass
    out = out.to(weight.dtype).contiguous()   # flat row-major view below (weight may be e.g. channels_last)
    if positions.numel() == 0:
        return out
    widx = positions // bits
    bit = positions % bits
    touched, inverse = torch.unique(widx, return_inverse=True)
    masks = torch.zeros(touched.numel(), dtype=torch.int64, device=weight.device)
    masks.index_add_(0, inverse, torch.ones_like(bit) << bit)   # positions are distinct: sum == xor
    words, _ = encode_fixed_point(weight.detach().reshape(-1)[touched], bits, encoding, scale=scale)
    out.view(-1)[touched] = decode_fixed_point(words ^ masks, scale, bits, encoding).to(weight.dtype)
    return out


class SRAMMemory(Memory):
    """Under-volted SRAM: every stored bit reads wrong independently with probability ``p``.

    ``bits == 1``: binarized weights through a BSC (eq 3.28–3.29).  ``bits > 1``: fixed-point
    words (module docstring) whose every bit may flip.  Energy per bit ``η(p)`` (eq 3.27).
    """

    technology = "sram"
    p = param.Number(1e-3, bounds=(0.0, 0.5), doc="bit error rate of the SRAM read")
    bits = param.Integer(1, bounds=(1, 32), doc="bits per stored weight ζ (1 = BinaryConnect)")
    a = param.Number(DEFAULT_A, bounds=(0.0, math.inf), inclusive_bounds=(False, False),   # finite: η(p) = 0 at a = inf
                     doc="energy-model constant a of η(p) = -log(p)/a (eq 3.27)")
    encoding = param.Selector(default="twos_complement", objects=["twos_complement", "sign_magnitude"],
                              doc="fixed-point code for bits > 1")

    @property
    def is_noisy(self) -> bool:
        return self.p > 0 or self.bits > 1

    @property
    def noise_knob(self) -> str:
        """The bit error rate ``p`` (eq 3.28–3.29)."""
        return "p"

    def eta(self) -> float:
        """η(p) of this memory (eq 3.27)."""
        return eta(self.p, self.a)

    def energy(self, n_weights: int) -> float:
        """Energy of storing ``n_weights`` weights, ``ζ·η(p)·n`` (one term of eq 3.30)."""
        return self.bits * self.eta() * n_weights

    def read(self, weight: torch.Tensor, generator: torch.Generator | None = None) -> Read:
        """One read: ``bits == 1`` needs binarized weights ``w_b ∈ {-1, +1}`` (the BSC of eq 3.28–3.29
        flips sign bits only); other weights are refused rather than silently sign-flipped.  The
        check looks at (at most) 64 entries spread over the tensor, so that it costs nothing next
        to the read; a noisy layer checks its own ``binary`` flag in full before reading."""
        if self.bits == 1 and not bool((_spread_sample(weight.detach()).abs() == 1).all()):
            raise KnobError("bits=1 stores sign bits only (BSC of eq 3.28–3.29): the layer must be BinaryConnect "
                            "(binary=True, weights in {-1, +1}) or use bits in [2, 32] (fixed point)")
        n = weight.numel() * self.bits
        pos = sample_flip_positions(n, self.p, generator, weight.device)
        if self.bits == 1:
            return Read(flip_signs(weight, pos), {"flips": pos})
        return Read(flip_fixed_point(weight, self.bits, pos, self.encoding), {"flips": pos})


def _spread_sample(t: torch.Tensor, k: int = 64) -> torch.Tensor:
    """At most ``k`` entries of ``t``, evenly strided over its elements (a view, no copy)."""
    flat = t.reshape(-1)
    return flat[::max(1, flat.numel() // k)][:k]


def layer_energy_table(p_by_layer: Mapping[str, float], counts: Mapping[str, int], bits: int = 1,
                       a: float = DEFAULT_A) -> dict[str, float]:
    """Per-layer terms ``ζ·η(p_l)·count(W_l)`` of eq 3.30 (same units as :func:`memory_energy`)."""
    return {name: bits * eta(p_by_layer[name], a) * counts[name] for name in counts}
