"""Tests of the under-volted SRAM model (thesis §3.3.1): bit-flip sampling, fixed-point codes,
the binary symmetric channel and the energy model η(p), E(p) (eq 3.27–3.30).

Statistical tests use fixed seeds and 99.9 % intervals (binomial via ``scipy.stats.binom``,
chi-square goodness of fit with a 1e-3 significance level), so each is deterministic and a
correct sampler would fail any single one of them with probability ~1e-3 under a fresh seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from workbench.hardware import KnobError, SRAMMemory, make, memory_from_dict, memory_map_from_dict, set_knobs, sram
from workbench.hardware.sram import (
    DEFAULT_A,
    decode_fixed_point,
    encode_fixed_point,
    eta,
    fixed_point_scale,
    flip_fixed_point,
    flip_signs,
    memory_energy,
    normalised_energy,
    sample_flip_positions,
    sample_flip_positions_dense,
)

CONF = 0.999          # every statistical interval below is a 99.9 % interval
ALPHA = 1 - CONF      # significance level of the goodness-of-fit tests
N_BITS = 10_000_000   # ≥ 1e7 bits per configuration


pytestmark = pytest.mark.usefixtures("single_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_in_binom_interval(k: int, n: int, p: float, what: str = "") -> None:
    lo, hi = stats.binom.interval(CONF, n, p)
    assert lo <= k <= hi, f"{what}: {k} flips out of {n} bits at p={p}, outside the 99.9% interval [{lo}, {hi}]"


# ------------------------------------------------------------------------------------------
# helpers: count flipped bits end-to-end through SRAMMemory.read
# ------------------------------------------------------------------------------------------

def _words_after(read_weight: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement words of read-back weights.

    Uses ``encode_fixed_point`` with the stored tensor's scale; the one word it cannot
    represent (code ``-2^(bits-1)``, reachable by a flip of the MSB of code 0, but clamped by the
    symmetric encoder) is mapped by hand.
    """
    q = torch.round(read_weight / scale).to(torch.int64)
    words, _ = encode_fixed_point(read_weight, bits, "twos_complement", scale=scale)
    return torch.where(q == -(1 << (bits - 1)), torch.full_like(words, 1 << (bits - 1)), words)


def _flips_per_bit_position(mem: SRAMMemory, w: torch.Tensor, g: torch.Generator, reps: int = 1) -> np.ndarray:
    """Per bit position (0 = LSB) number of flipped bits in ``reps`` reads of ``w`` (8-bit, XOR)."""
    bits = mem.bits
    scale = fixed_point_scale(w, bits)
    before, _ = encode_fixed_point(w, bits, "twos_complement")
    counts = np.zeros(bits, dtype=np.int64)
    for _ in range(reps):
        after = _words_after(mem.read(w, g).weight, scale, bits)
        x = before ^ after
        x = x[x != 0]
        counts += np.array([int(((x >> b) & 1).sum()) for b in range(bits)])
    return counts


@pytest.fixture(scope="module")
def binary_weights() -> torch.Tensor:
    return torch.where(torch.rand(N_BITS, generator=gen(1)) < 0.5, -1.0, 1.0)


@pytest.fixture(scope="module")
def byte_weights() -> torch.Tensor:
    return torch.randn(N_BITS // 8, generator=gen(2))


# ------------------------------------------------------------------------------------------
# flip counts through SRAMMemory.read
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1e-7, 1e-4, 1e-2, 0.5])
def test_flip_count_binary_weights(binary_weights, p):
    mem = make(SRAMMemory, p=p, bits=1)
    reps = 10 if p < 1e-6 else 1          # p=1e-7: 1e8 bits in total, expectation 10
    g = gen(10)
    k = 0
    for _ in range(reps):
        out = mem.read(binary_weights, g).weight
        assert bool((out.abs() == 1).all())
        k += int((out != binary_weights).sum())
    assert_in_binom_interval(k, reps * N_BITS, p, "1-bit")


@pytest.mark.parametrize("p", [1e-7, 1e-4, 1e-2, 0.5])
def test_flip_count_8bit_weights(byte_weights, p):
    mem = make(SRAMMemory, p=p, bits=8)
    reps = 10 if p < 1e-6 else 1
    counts = _flips_per_bit_position(mem, byte_weights, gen(11), reps)
    assert_in_binom_interval(int(counts.sum()), reps * N_BITS, p, "8-bit")


@pytest.mark.parametrize("p", [1e-4, 1e-2, 0.5])
def test_every_bit_position_flips_at_the_same_rate(byte_weights, p):
    counts = _flips_per_bit_position(make(SRAMMemory, p=p, bits=8), byte_weights, gen(12))
    n_words = byte_weights.numel()
    # each position is Binomial(n_words, p) ...
    for b, c in enumerate(counts):
        assert_in_binom_interval(int(c), n_words, p, f"bit position {b}")
    # ... and the positions are exchangeable: chi-square test of uniformity over positions
    assert stats.chisquare(counts).pvalue > ALPHA, counts


def test_words_after_helper_inverts_decode():
    """The XOR counting helper is exact on every 8-bit two's-complement word."""
    words = torch.arange(256, dtype=torch.int64)
    scale = torch.tensor(0.37)
    w = decode_fixed_point(words, scale, 8, "twos_complement")
    assert torch.equal(_words_after(w, scale, 8), words)


def test_1bit_read_is_flip_signs_at_reported_positions(binary_weights):
    r = make(SRAMMemory, p=1e-3, bits=1).read(binary_weights[:100_000], gen(3))
    flips = r.extra["flips"]
    assert torch.equal(r.weight, flip_signs(binary_weights[:100_000], flips))
    changed = torch.nonzero(r.weight != binary_weights[:100_000]).flatten()
    assert torch.equal(changed, flips)


@pytest.mark.parametrize("p", [0.0, 1e-3, 0.5])
def test_1bit_read_refuses_non_binary_weights(p):
    """bits=1 stores sign bits (eq 3.28–3.29): a full-precision weight must not be silently negated."""
    mem = make(SRAMMemory, p=p, bits=1)
    for w in (torch.randn(100, generator=gen(60)), torch.tensor([1.0, -1.0, 0.0]), torch.tensor([1.0, 0.5])):
        with pytest.raises(KnobError, match=r"bits=1 stores sign bits only.*BinaryConnect.*bits in \[2, 32\]"):
            mem.read(w, gen(61))
    wb = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    assert bool((mem.read(wb, gen(62)).weight.abs() == 1).all())     # binarized weights are still read
    assert make(SRAMMemory, p=p, bits=2).read(torch.tensor([0.3, -0.7]), gen(63)).weight.shape == (2,)


def test_1bit_sram_on_layers_binaryconnect_works_full_precision_refused():
    from workbench.nn import NoisyLinear, SmallCNN, set_memory
    torch.manual_seed(0)
    x = torch.randn(2, 6)
    bc, fp = NoisyLinear(6, 3, binary=True), NoisyLinear(6, 3, binary=False)
    for layer in (bc, fp):
        layer.memory = make(SRAMMemory, p=0.1, bits=1)
    assert bc(x).shape == (2, 3)
    with pytest.raises(KnobError, match="bits=1"):
        fp(x)
    cnn = SmallCNN(width=0.25, binary=True).eval()          # the digits-bc network
    set_memory(cnn, make(SRAMMemory, p=0.05, bits=1))
    assert bool(torch.isfinite(cnn(torch.randn(2, 1, 8, 8))).all())


@pytest.mark.parametrize("encoding", ["twos_complement", "sign_magnitude"])
def test_8bit_read_is_flip_fixed_point_at_reported_positions(encoding):
    w = torch.randn(5000, generator=gen(4))
    r = make(SRAMMemory, p=1e-2, bits=8, encoding=encoding).read(w, gen(5))
    assert r.extra["flips"].numel() > 0
    assert torch.equal(r.weight, flip_fixed_point(w, 8, r.extra["flips"], encoding))


# ------------------------------------------------------------------------------------------
# sampler properties
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1e-4, 1e-2, 0.3, 0.5])
def test_positions_sorted_distinct_in_range(p):
    n = 200_003
    pos = sample_flip_positions(n, p, gen(6))
    assert pos.dtype == torch.long
    assert pos.numel() > 0
    assert int(pos.min()) >= 0 and int(pos.max()) < n
    assert pos.unique().numel() == pos.numel()
    assert torch.all(pos[1:] > pos[:-1])


def test_sparse_sampler_deduplicates_at_high_rate(monkeypatch):
    """Force the sparse sampler where collisions are frequent: duplicates must be redrawn, so the
    count stays Binomial(n, p) (a sampler that dropped them would fall far below)."""
    monkeypatch.setattr(sram, "DENSE_THRESHOLD", 1.01)
    n, p = 200_000, 0.4
    pos = sample_flip_positions(n, p, gen(7))
    assert pos.unique().numel() == pos.numel()
    assert int(pos.min()) >= 0 and int(pos.max()) < n
    assert_in_binom_interval(pos.numel(), n, p, "sparse at p=0.4")


def test_p_zero_flips_nothing():
    assert sample_flip_positions(10_000, 0.0, gen(0)).numel() == 0
    assert sample_flip_positions_dense(10_000, 0.0, gen(0)).numel() == 0
    w = torch.where(torch.rand(1000, generator=gen(1)) < 0.5, -1.0, 1.0)
    mem1 = make(SRAMMemory, p=0.0, bits=1)
    assert not mem1.is_noisy
    assert torch.equal(mem1.read(w, gen(2)).weight, w)
    x = torch.randn(1000, generator=gen(3))
    mem8 = make(SRAMMemory, p=0.0, bits=8)
    assert torch.equal(mem8.read(x, gen(2)).weight, flip_fixed_point(x, 8, torch.empty(0, dtype=torch.long)))


def test_empty_memory():
    assert sample_flip_positions(0, 0.3, gen(0)).numel() == 0


@pytest.mark.parametrize("p", [1e-5, 1e-2, 0.3])
def test_seeded_generator_is_reproducible(p):
    a = sample_flip_positions(1_000_000, p, gen(42))
    b = sample_flip_positions(1_000_000, p, gen(42))
    c = sample_flip_positions(1_000_000, p, gen(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    w = torch.randn(10_000, generator=gen(0))
    mem = make(SRAMMemory, p=p, bits=8)
    assert torch.equal(mem.read(w, gen(9)).weight, mem.read(w, gen(9)).weight)


@pytest.mark.parametrize("bad", [-0.1, 0.6, float("nan")])
def test_out_of_range_p_raises_knob_error(bad):
    with pytest.raises(KnobError, match=r"\bp\b"):
        sample_flip_positions(100, bad, gen(0))
    with pytest.raises(KnobError, match=r"\bp\b"):
        make(SRAMMemory, p=bad)


def test_dense_and_sparse_samplers_agree_in_distribution():
    """At p=1e-2 (sparse path) both samplers give Binomial counts and uniform positions."""
    n, p, draws = 10_000, 1e-2, 300
    g_s, g_d = gen(20), gen(21)
    sparse = [sample_flip_positions(n, p, g_s) for _ in range(draws)]
    dense = [sample_flip_positions_dense(n, p, g_d) for _ in range(draws)]
    ks = np.array([s.numel() for s in sparse])
    kd = np.array([d.numel() for d in dense])
    # totals within the 99.9 % binomial interval of draws·n bits
    assert_in_binom_interval(int(ks.sum()), draws * n, p, "sparse")
    assert_in_binom_interval(int(kd.sum()), draws * n, p, "dense")
    # per-draw count distributions agree (two-sample KS)
    assert stats.ks_2samp(ks, kd).pvalue > ALPHA
    # per-draw count variance matches n·p·(1-p) (99.9 % chi-square interval on the sample variance)
    lo, hi = stats.chi2.interval(CONF, draws - 1)
    var = n * p * (1 - p)
    for k in (ks, kd):
        assert lo <= (draws - 1) * k.var(ddof=1) / var <= hi
    # positions: same histogram over 20 bins (chi-square test of homogeneity) and uniform
    bins = np.linspace(0, n, 21)
    hs = np.histogram(torch.cat(sparse).numpy(), bins)[0]
    hd = np.histogram(torch.cat(dense).numpy(), bins)[0]
    assert stats.chi2_contingency(np.stack([hs, hd]))[1] > ALPHA
    assert stats.chisquare(hs).pvalue > ALPHA
    assert stats.chisquare(hd).pvalue > ALPHA


def test_dense_sampler_rate():
    pos = sample_flip_positions_dense(N_BITS // 10, 0.05, gen(8))
    assert_in_binom_interval(pos.numel(), N_BITS // 10, 0.05, "dense")
    assert torch.all(pos[1:] > pos[:-1])


# ------------------------------------------------------------------------------------------
# fixed-point codes
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["twos_complement", "sign_magnitude"])
@pytest.mark.parametrize("bits", [2, 4, 8, 12])
def test_fixed_point_round_trip(encoding, bits):
    w = torch.randn(10_000, generator=gen(bits))
    words, scale = encode_fixed_point(w, bits, encoding)
    assert torch.allclose(scale, w.abs().max() / (2 ** (bits - 1) - 1))
    assert int(words.min()) >= 0 and int(words.max()) < 2 ** bits
    back = decode_fixed_point(words, scale, bits, encoding)
    assert float((back - w).abs().max()) <= float(scale) / 2 * (1 + 1e-5)
    # the extreme weight is represented exactly (up to float rounding)
    i = int(w.abs().argmax())
    assert math.isclose(float(back[i]), float(w[i]), rel_tol=1e-6)


def test_sign_magnitude_sign_bit_flip_negates():
    bits = 8
    w = torch.randn(1000, generator=gen(30))
    quant = flip_fixed_point(w, bits, torch.empty(0, dtype=torch.long), "sign_magnitude")
    sign_bits = torch.arange(w.numel()) * bits + (bits - 1)
    flipped = flip_fixed_point(w, bits, sign_bits, "sign_magnitude")
    assert torch.equal(flipped, -quant)
    # and in the word domain: only the top bit changes
    words, scale = encode_fixed_point(w, bits, "sign_magnitude")
    q = torch.round(w / scale)
    assert torch.equal(words >> (bits - 1), (q < 0).to(torch.int64))
    assert torch.equal(encode_fixed_point(-w, bits, "sign_magnitude")[0] ^ words,
                       torch.where(q != 0, 1 << (bits - 1), 0))


def test_twos_complement_msb_flip_shifts_code():
    bits = 8
    w = torch.randn(1000, generator=gen(31))
    words, scale = encode_fixed_point(w, bits, "twos_complement")
    msb = torch.arange(w.numel()) * bits + (bits - 1)
    flipped = flip_fixed_point(w, bits, msb, "twos_complement")
    q0 = torch.round(decode_fixed_point(words, scale, bits) / scale)
    q1 = torch.round(flipped / scale)
    assert torch.equal((q1 - q0).abs(), torch.full_like(q0, 2.0 ** (bits - 1)))
    # sign of the shift: non-negative codes go down, negative codes go up
    assert torch.all((q1 - q0)[q0 >= 0] < 0) and torch.all((q1 - q0)[q0 < 0] > 0)


def _reference_flip(w: torch.Tensor, bits: int, positions: list[int], encoding: str) -> torch.Tensor:
    """Slow pure-Python reference of storing ``w`` as fixed point and flipping bits."""
    vals = [float(v) for v in w.flatten()]
    qmax = 2 ** (bits - 1) - 1
    m = max(abs(v) for v in vals)
    scale = torch.tensor(m, dtype=w.dtype) / qmax          # same float32 arithmetic as the code
    out = []
    for v in vals:
        q = int(torch.round(torch.tensor(v, dtype=w.dtype) / scale))
        q = max(-qmax, min(qmax, q))
        if encoding == "twos_complement":
            word = q % (2 ** bits)
        else:
            word = (abs(q) | (1 << (bits - 1))) if q < 0 else q
        out.append(word)
    for j in positions:
        out[j // bits] ^= 1 << (j % bits)
    res = []
    for word in out:
        if encoding == "twos_complement":
            q = word - 2 ** bits if word >= 2 ** (bits - 1) else word
        else:
            mag = word & ((1 << (bits - 1)) - 1)
            q = -mag if word >> (bits - 1) else mag
        res.append(float(torch.tensor(float(q), dtype=w.dtype) * scale))
    return torch.tensor(res, dtype=w.dtype).view_as(w)


@pytest.mark.parametrize("encoding", ["twos_complement", "sign_magnitude"])
@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_flip_fixed_point_matches_reference(encoding, bits):
    g = gen(100 + bits)
    w = torch.randn(4, 6, generator=g)
    n_bits = w.numel() * bits
    positions = torch.randperm(n_bits, generator=g)[: n_bits // 3].sort().values
    got = flip_fixed_point(w, bits, positions, encoding)
    ref = _reference_flip(w, bits, positions.tolist(), encoding)
    assert got.shape == w.shape
    assert torch.equal(got, ref)
    assert not torch.equal(got, flip_fixed_point(w, bits, positions[:0], encoding))


def test_unknown_encoding_raises():
    with pytest.raises(KnobError, match="encoding"):
        encode_fixed_point(torch.ones(3), 4, "gray")
    with pytest.raises(KnobError, match="encoding"):
        make(SRAMMemory, encoding="gray")


def test_flip_signs():
    w = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0])
    assert torch.equal(flip_signs(w, torch.tensor([0, 1, 4])), torch.tensor([-1.0, 1.0, 1.0, 1.0, 1.0]))
    assert torch.equal(w, torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0]))   # input untouched


# ------------------------------------------------------------------------------------------
# energy model (eq 3.27, 3.30)
# ------------------------------------------------------------------------------------------

def test_eta_values():
    assert eta(0.0) == 1.0
    for p in (1e-9, 1e-6, 1e-3, 0.1, 0.5):
        assert math.isclose(eta(p), -math.log(p) / DEFAULT_A, rel_tol=1e-12)
        assert math.isclose(eta(p, a=5.0), -math.log(p) / 5.0, rel_tol=1e-12)
    arr = eta(np.array([0.0, 1e-3, 0.5]))
    np.testing.assert_allclose(arr, [1.0, -math.log(1e-3) / DEFAULT_A, -math.log(0.5) / DEFAULT_A], rtol=1e-12)
    t = eta(torch.tensor([0.0, 1e-3, 0.5], dtype=torch.float64))
    np.testing.assert_allclose(t.numpy(), arr, rtol=1e-12)
    assert DEFAULT_A == 12.8


def test_eta_below_one_iff_p_above_threshold():
    thr = math.exp(-DEFAULT_A)
    assert eta(thr * 1.01) < 1.0
    assert eta(thr * 0.99) > 1.0
    assert math.isclose(eta(thr), 1.0, rel_tol=1e-12)
    assert make(SRAMMemory, p=1e-3).eta() < 1.0


def test_eta_gradient_torch():
    p = torch.tensor(1e-2, dtype=torch.float64, requires_grad=True)
    eta(p).backward()
    assert math.isclose(float(p.grad), -1.0 / (DEFAULT_A * 1e-2), rel_tol=1e-12)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_eta_rejects_bad_p(bad):
    with pytest.raises(KnobError, match=r"\bp\b"):
        eta(bad)


@pytest.mark.parametrize("bad", [0.6, 1.0])
def test_eta_and_memory_energy_refuse_p_above_one_half(bad):
    """The BSC has 0 ≤ p ≤ 1/2 (eq 3.28–3.29), as check_ber: p in (0.5, 1] is refused in every container."""
    for arg in (bad, [0.1, bad], np.array([0.1, bad]), torch.tensor([0.1, bad], dtype=torch.float64)):
        with pytest.raises(KnobError, match=r"p=.* is out of range: p must be in \[0, 0\.5\]"):
            eta(arg)
    with pytest.raises(KnobError, match=r"p=.*\[0, 0\.5\]"):
        memory_energy([0.1, bad], [10, 20])
    with pytest.raises(KnobError, match=r"p=.*\[0, 0\.5\]"):
        memory_energy(torch.tensor(bad, dtype=torch.float64), [10, 20])
    with pytest.raises(KnobError, match=r"p=.*\[0, 0\.5\]"):
        normalised_energy(bad, [10])
    assert eta(0.5) == pytest.approx(math.log(2) / DEFAULT_A)      # the closed upper end is accepted


@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_sram_energy_constant_a_must_be_finite(bad):
    """η(p) = -log(p)/a (eq 3.27) needs a finite a > 0: a = inf (η ≡ 0) is refused when set, not at use."""
    with pytest.raises(KnobError, match=r"a=-?inf is out of range: a must be in \(0, inf\)"):
        make(SRAMMemory, a=bad)
    with pytest.raises(KnobError, match=r"\ba=-?inf\b"):
        memory_from_dict({"technology": "sram", "a": bad})
    mem = make(SRAMMemory, p=1e-3)
    with pytest.raises(KnobError, match=r"\ba=-?inf\b"):
        set_knobs(mem, a=bad)
    assert mem.a == DEFAULT_A
    with pytest.raises(ValueError, match=r"\ba\b"):
        SRAMMemory(a=bad)
    assert make(SRAMMemory, a=1e6).eta() > 0


def test_memory_map_from_dict_refuses_non_mappings():
    """A list as the map or as its overrides is refused with a KnobError, as memory_from_dict does."""
    for bad in ([{"technology": "sram"}], ("default",), "sram"):
        with pytest.raises(KnobError, match="memory map must be a mapping"):
            memory_map_from_dict(bad)
    for bad in ([{"technology": "sram", "p": 0.1}], "features.0", 3):
        with pytest.raises(KnobError, match=r"overrides=.* must be a mapping"):
            memory_map_from_dict({"default": {"technology": "sram", "p": 0.0}, "overrides": bad})
    mmap = memory_map_from_dict(
        {"default": {"technology": "sram", "p": 0.0}, "overrides": {"fc": {"technology": "sram"}}}
    )
    assert isinstance(mmap["fc"], SRAMMemory) and mmap.default.p == 0.0
    assert memory_map_from_dict(mmap.to_dict()).to_dict() == mmap.to_dict()


def test_memory_energy_by_hand_three_layers():
    counts = [100, 2000, 30]
    ps = [0.0, 1e-3, 1e-1]
    a = DEFAULT_A
    by_hand_1bit = 1 * (1.0 * 100 + (-math.log(1e-3) / a) * 2000 + (-math.log(1e-1) / a) * 30)
    assert math.isclose(memory_energy(ps, counts, bits=1), by_hand_1bit, rel_tol=1e-12)
    assert math.isclose(memory_energy(ps, counts, bits=8), 8 * by_hand_1bit, rel_tol=1e-12)
    assert math.isclose(normalised_energy(ps, counts, bits=1), by_hand_1bit / (16 * 2130), rel_tol=1e-12)
    assert math.isclose(normalised_energy(ps, counts, bits=4), 4 * by_hand_1bit / (16 * 2130), rel_tol=1e-12)
    # against a different reference network
    assert math.isclose(normalised_energy(ps, counts, bits=1, reference_counts=[5000]),
                        by_hand_1bit / (16 * 5000), rel_tol=1e-12)
    # scalar p for every layer, and the differentiable torch path
    assert math.isclose(memory_energy(1e-3, counts), (-math.log(1e-3) / a) * 2130, rel_tol=1e-12)
    t = memory_energy(torch.tensor(ps, dtype=torch.float64), counts, bits=1)
    assert math.isclose(float(t), by_hand_1bit, rel_tol=1e-12)
    # per-layer table and the SRAMMemory term agree with the same terms
    table = sram.layer_energy_table({"a": 0.0, "b": 1e-3, "c": 1e-1}, {"a": 100, "b": 2000, "c": 30})
    assert math.isclose(sum(table.values()), by_hand_1bit, rel_tol=1e-12)
    assert math.isclose(make(SRAMMemory, p=1e-3, bits=1).energy(2000), table["b"], rel_tol=1e-12)


@pytest.mark.parametrize("p, expected", [(0.01, 0.3598), (1e-4, 0.7196)])
def test_relative_energy_is_the_thesis_convention(p, expected):
    """§4.4.2: a full-width BinaryConnect net at a uniform p has E = η(p) relative to the same network
    read reliably (36 % at 0.01; 28 % saved at 1e-4); fp16 is the named 16× smaller alternative."""
    counts = [100, 2000, 30]
    assert sram.relative_energy(p, counts) == pytest.approx(expected, abs=5e-5)
    assert sram.relative_energy(p, counts) == pytest.approx(eta(p), rel=1e-12)
    assert sram.relative_energy(p, counts, reference="fp16") == pytest.approx(eta(p) / 16, rel=1e-12)
    assert sram.relative_energy(p, counts, bits=16) == pytest.approx(eta(p), rel=1e-12)   # 16-bit vs itself
    assert sram.relative_energy(p, counts, bits=8, reference="fp16") == pytest.approx(eta(p) / 2, rel=1e-12)
    with pytest.raises(KnobError, match="reference"):
        sram.relative_energy(p, counts, reference="fp32")


def test_memory_map_energy_by_hand():
    """Mixed storage: 1-bit SRAM layers and a layer in ideal memory (reliable 16-bit storage)."""
    from workbench.hardware import IdealMemory, MemoryMap
    mmap = MemoryMap(make(SRAMMemory, p=1e-2), {"c": IdealMemory(), "b": make(SRAMMemory, p=1e-3)})
    counts = {"a": 100, "b": 2000, "c": 30}
    total = eta(1e-2) * 100 + eta(1e-3) * 2000 + 16 * 30
    assert sram.memory_map_energy(counts, mmap) == pytest.approx(total / (100 + 2000 + 16 * 30), rel=1e-12)
    assert sram.memory_map_energy(counts, mmap, "fp16") == pytest.approx(total / (16 * 2130), rel=1e-12)
    assert sram.memory_map_energy(counts, MemoryMap()) == 1.0


def test_binaryconnect_at_p0_is_one_sixteenth():
    from workbench.nn import SmallCNN, layer_param_counts
    counts = list(layer_param_counts(SmallCNN(binary=True)).values())
    assert len(counts) == 4
    assert math.isclose(normalised_energy(0.0, counts, bits=1), 1 / 16, rel_tol=1e-12)
    assert math.isclose(normalised_energy([0.0] * 4, counts, bits=1), 1 / 16, rel_tol=1e-12)


# ------------------------------------------------------------------------------------------
# memory layouts and devices
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 8])
def test_read_of_non_contiguous_weight(bits):
    """Bit j addresses the j-th weight in logical (row-major) order, whatever the memory layout."""
    w = torch.randn(6, 4, 3, 3, generator=gen(50))
    if bits == 1:
        w = torch.where(w >= 0, 1.0, -1.0)
    mem = make(SRAMMemory, p=0.2, bits=bits)
    ref = mem.read(w, gen(51)).weight
    cl = w.to(memory_format=torch.channels_last)
    assert not cl.is_contiguous()
    assert torch.equal(mem.read(cl, gen(51)).weight, ref)
    wt = w.flatten(1).t().contiguous().t()                 # same values, transposed strides
    assert not wt.is_contiguous()
    assert torch.equal(mem.read(wt, gen(51)).weight.view_as(w), ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("p", [1e-3, 0.1])
def test_sampler_with_cuda_generator(p):
    g = torch.Generator(device="cuda").manual_seed(0)
    pos = sample_flip_positions(1_000_000, p, g, device="cuda")
    assert pos.device.type == "cuda"
    assert_in_binom_interval(pos.numel(), 1_000_000, p, "cuda")
    w = torch.randn(1000, device="cuda")
    out = make(SRAMMemory, p=p, bits=8).read(w, torch.Generator(device="cuda").manual_seed(1)).weight
    assert out.device.type == "cuda" and out.shape == w.shape
