"""Sparse vs per-bit Bernoulli sampling of SRAM bit flips (the binary symmetric channel).

Cases, all on 1e7 weights at p = 1e-4, timed interleaved, median of repeats:

* sparse:    ``SRAMMemory(p, bits).read(w)`` = ``sample_flip_positions`` (Binomial count, then
             distinct uniform positions; cost ∝ flips) + the flip (``flip_signs`` for 1 bit,
             ``flip_fixed_point`` for ζ > 1);
* Bernoulli: ``sample_flip_positions_dense`` (one float64 uniform per stored bit) + the same flip;
* copy:      ``w.clone()``, the floor of any read that returns a new tensor (and, for reference,
             ``buf.copy_(w)`` into a preallocated buffer: no fresh pages to fault in).

Acceptance (1 bit): the sparse sampler ≥ 10× faster than per-bit Bernoulli, and a whole sparse
read ≤ 2× a plain copy.  The whole-read ratio (both include the copy) is printed too.

    python benchmarks/bench_bsc.py [--device cuda] [--repeats N]
"""

from __future__ import annotations

import torch

from workbench.hardware.sram import (
    SRAMMemory,
    flip_fixed_point,
    flip_signs,
    sample_flip_positions,
    sample_flip_positions_dense,
)

from _common import interleaved_medians, main_for

N_WEIGHTS = 10**7
P = 1e-4
BITS = (1, 8, 16)
DEFAULT_REPEATS = {1: 9, 8: 5, 16: 3}


def measure(bits: int, gen: torch.Generator, device: torch.device, repeats: int) -> tuple[dict, int, int]:
    """Median times of every case for ``bits``-bit weights, and both samplers' flip counts; the
    weights and the buffer are freed on return, before the next width allocates its own."""
    w = torch.randn(N_WEIGHTS, device=device, generator=gen)
    if bits == 1:
        w = torch.where(w >= 0, 1.0, -1.0)        # BinaryConnect weights: the stored value is the sign
    mem = SRAMMemory(p=P, bits=bits)
    n_bits = N_WEIGHTS * bits

    def sparse():
        return mem.read(w, gen).weight

    def dense():
        pos = sample_flip_positions_dense(n_bits, P, gen, device)
        return flip_signs(w, pos) if bits == 1 else flip_fixed_point(w, bits, pos, mem.encoding)

    buf = torch.empty_like(w)
    cases = {"sparse": sparse, "dense": dense, "copy": w.clone, "copy_into": lambda: buf.copy_(w)}
    if bits == 1:
        cases["sparse_positions"] = lambda: sample_flip_positions(n_bits, P, gen, device)
        cases["dense_positions"] = lambda: sample_flip_positions_dense(n_bits, P, gen, device)
    t = interleaved_medians(cases, repeats, device)
    # sanity: both samplers flip about n·p bits
    k_sparse = sample_flip_positions(n_bits, P, gen, device).numel()
    k_dense = sample_flip_positions_dense(n_bits, P, gen, device).numel()
    return t, k_sparse, k_dense


def run(device: torch.device, repeats: int | None = None) -> dict:
    gen = torch.Generator(device=device).manual_seed(0)
    rows, checks, notes = [], [], []
    one_bit = {}
    for bits in BITS:
        t, k_sparse, k_dense = measure(bits, gen, device, repeats or DEFAULT_REPEATS[bits])
        rows.append([bits, t["sparse"] * 1e3, t["dense"] * 1e3, t["copy"] * 1e3, t["copy_into"] * 1e3,
                     t["dense"] / t["sparse"], t["sparse"] / t["copy"], f"{k_sparse}/{k_dense}"])
        if bits == 1:
            one_bit = t
    r_dense = one_bit["dense"] / one_bit["sparse"]
    r_sampler = one_bit["dense_positions"] / one_bit["sparse_positions"]
    r_copy = one_bit["sparse"] / one_bit["copy"]
    checks.append((f"sparse sampler draws 1e7 bits' flips {r_sampler:.0f}x faster than per-bit Bernoulli "
                   f"(need >= 10x)", r_sampler >= 10))
    checks.append((f"1-bit sparse read costs {r_copy:.2f}x a plain weight.clone() (need <= 2x)", r_copy <= 2))
    notes.append(f"whole 1-bit read (sampler + the copy both reads return): per-bit Bernoulli / sparse = "
                 f"{r_dense:.1f}x; the sparse read is almost entirely the copy "
                 f"(sampler {one_bit['sparse_positions'] * 1e3:.3f} ms of {one_bit['sparse'] * 1e3:.2f} ms)")
    notes.append(f"expected flips per read n*p = {N_WEIGHTS * P:.0f} x bits")
    notes.append(f"clone = weight.clone() (a fresh allocation: on CPU glibc maps fresh pages for blocks this large "
                 f"and each read page-faults them in); copy_ = copy into a preallocated buffer, "
                 f"{one_bit['copy'] / one_bit['copy_into']:.1f}x cheaper here")
    return {"title": f"bench_bsc: SRAM bit flips, {N_WEIGHTS:.0e} weights, p = {P:g}",
            "columns": ["bits", "sparse ms", "Bernoulli ms", "clone ms", "copy_ ms", "Bernoulli / sparse",
                        "sparse / clone", "flips sparse/Bernoulli"],
            "rows": rows, "checks": checks, "notes": notes,
            "summary": [("bsc", "sampler: per-bit Bernoulli / sparse (>= 10)", r_sampler, r_sampler >= 10),
                        ("bsc", "1-bit read: sparse / clone (<= 2)", r_copy, r_copy <= 2),
                        ("bsc", "1-bit read: Bernoulli / sparse", r_dense, None),
                        *[("bsc", f"{r[0]}-bit Bernoulli / sparse", r[5], None) for r in rows[1:]]]}


if __name__ == "__main__":
    main_for(run, __doc__.split("\n")[0])
