"""Tests of the memristor crossbar model (thesis §3.3.2): conductance mapping (eq 3.33–3.35),
read-back (eq 3.32), conductance noise (eq 3.36–3.38) and crossbar power (eq 3.41–3.44).

Statistical tests use fixed seeds and 99.9 % intervals (normal interval for a mean, chi-square
interval for a variance).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from workbench.hardware import KnobError, MemristorMemory, crossbar_power, make, memory_from_dict, to_conductances
from workbench.hardware.memristor import (
    G_U_MIN,
    additive_noise,
    conv_op,
    from_conductances,
    linear_op,
    multiplicative_noise,
    weight_inf_norm,
)

CONF = 0.999


pytestmark = pytest.mark.usefixtures("single_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mean_interval(sigma: float, n: int, mu: float) -> tuple[float, float]:
    """99.9 % interval of the sample mean of ``n`` i.i.d. draws of mean ``mu`` and std ``sigma``."""
    z = stats.norm.ppf(0.5 + CONF / 2)
    return mu - z * sigma / math.sqrt(n), mu + z * sigma / math.sqrt(n)


def std_interval(sigma: float, n: int) -> tuple[float, float]:
    """99.9 % interval of the sample std (ddof=1) of ``n`` Gaussian draws of std ``sigma``."""
    lo, hi = stats.chi2.interval(CONF, n - 1)
    return sigma * math.sqrt(lo / (n - 1)), sigma * math.sqrt(hi / (n - 1))


W_SMALL = torch.tensor([[0.5, -1.0, 0.0],
                        [0.25, 0.75, -0.5]], dtype=torch.float64)


# ------------------------------------------------------------------------------------------
# mapping (eq 3.33–3.35) and read-back
# ------------------------------------------------------------------------------------------

def test_mapping_by_hand_gmin_zero():
    gp, gm, k = to_conductances(W_SMALL, 10.0, 0.0)
    # ‖W‖∞ = 1 → k = 10
    assert float(k) == pytest.approx(10.0)
    assert torch.allclose(gp, torch.tensor([[5.0, 0.0, 0.0], [2.5, 7.5, 0.0]], dtype=torch.float64))
    assert torch.allclose(gm, torch.tensor([[0.0, 10.0, 0.0], [0.0, 0.0, 5.0]], dtype=torch.float64))


def test_mapping_by_hand_gmin_positive():
    w = 2 * W_SMALL                          # ‖W‖∞ = 2
    gp, gm, k = to_conductances(w, 21.0, 1.0)
    # k = (21 - 1) / 2 = 10; g± = max(0, ±w)·10 + 1
    assert float(k) == pytest.approx(10.0)
    assert torch.allclose(gp, torch.tensor([[11.0, 1.0, 1.0], [6.0, 16.0, 1.0]], dtype=torch.float64))
    assert torch.allclose(gm, torch.tensor([[1.0, 21.0, 1.0], [1.0, 1.0, 11.0]], dtype=torch.float64))
    # every conductance in [g_min, g_u], the extreme weight reaches g_u
    assert float(torch.cat([gp, gm]).min()) == pytest.approx(1.0)
    assert float(torch.cat([gp, gm]).max()) == pytest.approx(21.0)
    assert torch.allclose(from_conductances(gp, gm, k), w)


def test_memory_program_matches_mapping():
    mem = make(MemristorMemory, g_u=12.0, g_min=2.0, g_max=25.0)
    gp, gm, k = mem.program(W_SMALL)
    gp2, gm2, k2 = to_conductances(W_SMALL, 12.0, 2.0)
    assert torch.equal(gp, gp2) and torch.equal(gm, gm2) and float(k) == float(k2) == pytest.approx(10.0)


@pytest.mark.parametrize("g_min", [0.0, 3.0])
@pytest.mark.parametrize("noise", ["multiplicative", "additive"])
@pytest.mark.parametrize("normalise", ["layer", "column"])
def test_zero_noise_read_back_equals_weight(g_min, noise, normalise):
    w = torch.randn(5, 4, 3, 3, generator=gen(0))
    mem = make(MemristorMemory, g_u=20.0, g_min=g_min, noise=noise, sigma_c=0.0, sigma=0.0, normalise=normalise)
    assert not mem.is_noisy
    r = mem.read(w, gen(1))
    assert r.weight.dtype == w.dtype and r.weight.shape == w.shape
    assert torch.allclose(r.weight, w, atol=1e-6, rtol=1e-5)
    # noise-free conductances lie in [g_min, g_u]
    g = torch.cat([r.extra["g_plus"].flatten(), r.extra["g_minus"].flatten()])
    assert float(g.min()) >= g_min - 1e-5 and float(g.max()) <= 20.0 + 1e-4


def test_per_column_normalisation():
    w = torch.tensor([[0.5, -2.0],
                      [0.1, 0.05],
                      [0.0, 0.0]], dtype=torch.float64)
    gp, gm, k = to_conductances(w, 10.0, 0.0, per_column=True)
    # one gain per output column (row of the torch weight); an all-zero column uses norm 1
    assert k.shape == (3, 1)
    assert torch.allclose(k.flatten(), torch.tensor([10.0 / 2.0, 10.0 / 0.1, 10.0 / 1.0], dtype=torch.float64))
    assert torch.allclose(gp, torch.tensor([[2.5, 0.0], [10.0, 5.0], [0.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(gm, torch.tensor([[0.0, 10.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64))
    # every non-zero column reaches g_u
    assert torch.allclose((gp + gm).max(dim=1).values[:2], torch.tensor([10.0, 10.0], dtype=torch.float64))
    # conv-shaped weight: norms per output channel, broadcastable gain
    wc = torch.randn(4, 2, 3, 3, generator=gen(2))
    n = weight_inf_norm(wc, per_column=True)
    assert n.shape == (4, 1, 1, 1)
    assert torch.equal(n.flatten(), wc.abs().flatten(1).max(1).values)
    mem = make(MemristorMemory, g_u=8.0, normalise="column", sigma_c=0.0)
    gp, gm, k = mem.program(wc)
    assert torch.allclose((gp + gm).flatten(1).max(1).values, torch.full((4,), 8.0))


def test_per_column_g_u():
    w = torch.tensor([[1.0, -0.5], [0.2, -0.4]], dtype=torch.float64)
    mem = make(MemristorMemory, column_g_u=[10.0, 5.0], sigma_c=0.0)
    gp, gm, k = mem.program(w)
    # layer norm ‖W‖∞ = 1, per-column scale g_u = (10, 5)
    assert torch.allclose(gp, torch.tensor([[10.0, 0.0], [1.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(gm, torch.tensor([[0.0, 5.0], [0.0, 2.0]], dtype=torch.float64))
    assert torch.allclose(mem.read(w).weight, w)
    assert mem.knobs()["column_g_u"] == [10.0, 5.0]
    # per-column g_u combined with the per-column norm (0.4 for the second column)
    gp, gm, k = make(MemristorMemory, column_g_u=[10.0, 5.0], normalise="column").program(w)
    assert torch.allclose(gp, torch.tensor([[10.0, 0.0], [2.5, 0.0]], dtype=torch.float64))
    assert torch.allclose(gm, torch.tensor([[0.0, 5.0], [0.0, 5.0]], dtype=torch.float64))


@pytest.mark.parametrize("col", [[10.0, 30.0], [0.0, 5.0], [10.0, float("nan")]])
def test_per_column_g_u_out_of_range_raises(col):
    mem = make(MemristorMemory, column_g_u=col)
    with pytest.raises(KnobError, match="g_u"):
        mem.read(torch.ones(2, 2))


# ------------------------------------------------------------------------------------------
# noise models (eq 3.36–3.38)
# ------------------------------------------------------------------------------------------

def test_multiplicative_noise_is_w_times_delta():
    n, sigma_c = 200_000, 0.1
    w = torch.randn(n, generator=gen(3), dtype=torch.float64)
    w = torch.where(w.abs() < 1e-3, torch.full_like(w, 0.5), w)       # w~/w well defined
    mem = make(MemristorMemory, g_u=7.0, g_min=0.0, noise="multiplicative", sigma_c=sigma_c)
    ratio = (mem.read(w, gen(4)).weight / w).numpy()
    lo, hi = mean_interval(sigma_c, n, 1.0)
    assert lo <= ratio.mean() <= hi, ratio.mean()
    lo, hi = std_interval(sigma_c, n)
    assert lo <= ratio.std(ddof=1) <= hi, ratio.std(ddof=1)
    # Gaussian: skewness ≈ 0 (99.9 % large-sample interval ±z·sqrt(6/n))
    z = stats.norm.ppf(0.5 + CONF / 2)
    assert abs(stats.skew(ratio)) <= z * math.sqrt(6 / n)


def test_multiplicative_noise_independent_of_g_u():
    """Same seed, different g_u: with g_min = 0 the weight-domain draw is the same (eq 3.38)."""
    w = torch.randn(1000, generator=gen(5), dtype=torch.float64)
    a = make(MemristorMemory, g_u=3.0, sigma_c=0.2).read(w, gen(6)).weight
    b = make(MemristorMemory, g_u=25.0, sigma_c=0.2).read(w, gen(6)).weight
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(a, w)


@pytest.mark.parametrize("g_u", [5.0, 25.0])
def test_additive_noise_std(g_u):
    """g~ = g + ε on each device (eq 3.36): per-device std σ (µS); in the weight domain
    w~ - w = (ε+ - ε-)/k, i.e. std √2·σ/k because the positive and the negative crossbar each
    carry an independent device per weight (eq 3.34–3.35)."""
    n, sigma = 100_000, 0.5
    w = torch.randn(n, generator=gen(7), dtype=torch.float64)
    mem = make(MemristorMemory, g_u=g_u, g_min=0.0, noise="additive", sigma=sigma)
    r = mem.read(w, gen(8))
    gp, gm, k = mem.program(w)
    k = float(k)
    assert k == pytest.approx(g_u / float(w.abs().max()))
    eps_p = (r.extra["g_plus"] - gp).numpy()
    eps_m = (r.extra["g_minus"] - gm).numpy()
    lo, hi = std_interval(sigma, n)
    assert lo <= eps_p.std(ddof=1) <= hi and lo <= eps_m.std(ddof=1) <= hi
    assert abs(np.corrcoef(eps_p, eps_m)[0, 1]) < stats.norm.ppf(0.5 + CONF / 2) / math.sqrt(n)
    err = (r.weight - w).numpy()
    lo, hi = mean_interval(math.sqrt(2) * sigma / k, n, 0.0)
    assert lo <= err.mean() <= hi
    lo, hi = std_interval(math.sqrt(2) * sigma / k, n)
    assert lo <= err.std(ddof=1) <= hi, (err.std(ddof=1), sigma / k)


def test_additive_noise_relative_error_falls_with_g_u():
    """Additive noise has a fixed σ in µS: a larger g_u gives a proportionally smaller weight error."""
    w = torch.randn(1000, generator=gen(9), dtype=torch.float64)
    e5 = make(MemristorMemory, g_u=5.0, noise="additive", sigma=0.5).read(w, gen(10)).weight - w
    e25 = make(MemristorMemory, g_u=25.0, noise="additive", sigma=0.5).read(w, gen(10)).weight - w
    assert torch.allclose(e25, e5 / 5.0, rtol=1e-9, atol=1e-12)


def test_noise_reproducible_with_seed():
    w = torch.randn(50, generator=gen(11))
    mem = make(MemristorMemory, sigma_c=0.3)
    assert torch.equal(mem.read(w, gen(1)).weight, mem.read(w, gen(1)).weight)
    assert not torch.equal(mem.read(w, gen(1)).weight, mem.read(w, gen(2)).weight)


# ------------------------------------------------------------------------------------------
# knob validation
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("knobs", [dict(g_u=30.0), dict(g_u=2.0, g_min=2.0), dict(g_u=1.0, g_min=2.0),
                                   dict(g_u=20.0, g_max=10.0)])
def test_g_u_outside_gmin_gmax_raises(knobs):
    mem = make(MemristorMemory, **knobs)
    with pytest.raises(KnobError, match="g_u"):
        mem.read(torch.ones(2, 2))
    with pytest.raises(KnobError, match="g_u"):
        mem.program(torch.ones(2, 2))
    with pytest.raises(KnobError, match="g_u"):
        memory_from_dict({"technology": "memristor", **knobs})


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_g_u_rejected_by_knob_bounds(bad):
    with pytest.raises(KnobError, match="g_u"):
        make(MemristorMemory, g_u=bad)


@pytest.mark.parametrize("bad", [[10.0, -1.0], [10.0, float("nan")], [10.0, 0.0], [float("inf"), 5.0], [1e-13, 5.0]])
def test_to_conductances_refuses_a_bad_tensor_g_u(bad):
    """A tensor g_u is checked like a float one (eq 3.34–3.35 need g_min < g_u < inf): no negative,
    NaN or infinite conductance scale slips through into the crossbar."""
    w = torch.tensor([[1.0, -0.5], [0.2, -0.4]], dtype=torch.float64)
    for g in (torch.tensor(bad, dtype=torch.float64), torch.tensor(bad, dtype=torch.float64).view(2, 1)):
        with pytest.raises(KnobError, match=r"g_u=.* is out of range: g_u must be in \(0\.0, inf\)"):
            to_conductances(w, g, 0.0)
    with pytest.raises(KnobError, match=r"g_u=.*\(1\.0, inf\)"):
        to_conductances(w, torch.tensor([10.0, 1.0], dtype=torch.float64), 1.0)     # not above g_min
    with pytest.raises(KnobError, match="g_u is an empty tensor"):
        to_conductances(w, torch.tensor([], dtype=torch.float64), 0.0)
    gp, gm, k = to_conductances(w, torch.tensor([10.0, G_U_MIN], dtype=torch.float64), 0.0)
    assert torch.allclose(from_conductances(gp, gm, k), w)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_noise_functions_refuse_a_bad_std(bad):
    """σ (eq 3.36, µS) and σ_c (eq 3.37) are standard deviations in [0, inf)."""
    g = torch.ones(4, dtype=torch.float64)
    with pytest.raises(KnobError, match=r"sigma=.* is out of range: sigma must be in \[0, inf\) µS"):
        additive_noise(g, bad, gen(0))
    with pytest.raises(KnobError, match=r"sigma_c=.* is out of range: sigma_c must be in \[0, inf\)"):
        multiplicative_noise(g, bad, gen(0))
    assert torch.equal(additive_noise(g, 0.0), g) and torch.equal(multiplicative_noise(g, 0), g)


@pytest.mark.parametrize("col", [[[10.0, 5.0]], [[10.0], [5.0]], [[10.0, 5.0], [3.0, 2.0]], 10.0])
def test_column_g_u_must_be_one_dimensional(col):
    """A 2-D (or scalar) column_g_u is refused, not silently flattened into per-column values."""
    mem = make(MemristorMemory, column_g_u=col, sigma_c=0.0)
    with pytest.raises(KnobError, match=r"column_g_u has shape .* must be a 1-D list"):
        mem.read(torch.ones(2, 2))
    with pytest.raises(KnobError, match="column_g_u"):
        memory_from_dict({"technology": "memristor", "column_g_u": col})


def test_g_u_equal_g_max_is_allowed():
    mem = make(MemristorMemory, g_u=25.0, g_max=25.0, sigma_c=0.0)
    assert torch.allclose(mem.read(W_SMALL).weight, W_SMALL)


# ------------------------------------------------------------------------------------------
# crossbar power (eq 3.41–3.44)
# ------------------------------------------------------------------------------------------

def _loop_power_linear(x, gp, gm, bp=None, bm=None) -> float:
    """Eq 3.42–3.44 for a linear layer, one output element at a time."""
    B, n_in = x.shape
    n_out = gp.shape[0]
    p_mem = p_plus = p_minus = 0.0
    for b in range(B):
        for o in range(n_out):
            for i in range(n_in):
                xv = float(x[b, i])
                p_mem += xv * xv * (abs(float(gp[o, i])) + abs(float(gm[o, i])))
                p_plus += xv * float(gp[o, i])
                p_minus += xv * float(gm[o, i])
            if bp is not None:        # bias row driven by the constant input 1
                p_mem += abs(float(bp[o])) + abs(float(bm[o]))
                p_plus += float(bp[o])
                p_minus += float(bm[o])
    return p_mem + p_plus + p_minus


def _loop_power_conv(x, gp, gm, stride, padding) -> float:
    """Eq 3.42–3.44 for a 2-d convolution (Unfold-Repeat: one matrix for every patch), explicit
    over batch, output channel, output position, input channel and kernel offset."""
    B, C, H, W = x.shape
    n_out, _, KH, KW = gp.shape
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W + 2 * padding - KW) // stride + 1
    total = 0.0
    for b, o, oh, ow in itertools.product(range(B), range(n_out), range(OH), range(OW)):
        for c, kh, kw in itertools.product(range(C), range(KH), range(KW)):
            ih, iw = oh * stride - padding + kh, ow * stride - padding + kw
            if not (0 <= ih < H and 0 <= iw < W):
                continue                       # zero padding contributes nothing
            xv = float(x[b, c, ih, iw])
            a, m = float(gp[o, c, kh, kw]), float(gm[o, c, kh, kw])
            total += xv * xv * (abs(a) + abs(m)) + xv * a + xv * m
    return total


def _noisy_conductances(w, seed, **knobs):
    mem = make(MemristorMemory, **knobs)
    r = mem.read(w, gen(seed))
    return r.extra["g_plus"], r.extra["g_minus"]


@pytest.mark.parametrize("noise", ["multiplicative", "additive"])
def test_power_linear_matches_loop(noise):
    g = gen(20)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64)
    w = torch.randn(4, 5, generator=g, dtype=torch.float64)
    gp, gm = _noisy_conductances(w, 21, g_u=10.0, g_min=0.5, noise=noise, sigma_c=0.2, sigma=0.9)
    if noise == "additive":     # some noisy conductances are negative, so |g| of eq 3.42 matters
        assert bool((gp < 0).any() or (gm < 0).any())
    got = float(crossbar_power(linear_op, x, gp, gm))
    assert got == pytest.approx(_loop_power_linear(x, gp, gm), rel=1e-6)


@pytest.mark.parametrize("g_min", [0.0, 0.5, 2.0])
def test_power_counts_g_min_on_both_crossbars(g_min):
    """Kept choice (documented in crossbar_power): the memristor term is Σ f(x∘x, |g+| + |g-|), both
    crossbars' devices, which is eq 3.42 with eq 3.33's g plus exactly g_min · Σ f(x∘x, 1); equal at g_min = 0."""
    g = gen(23)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64)
    w = torch.randn(4, 5, generator=g, dtype=torch.float64)
    gp, gm, k = to_conductances(w, 10.0, g_min=g_min)
    g_eq_3_33 = w.abs() * k + g_min
    tia = float(linear_op(x, gp).sum() + linear_op(x, gm).sum())
    thesis = float(linear_op(x * x, g_eq_3_33).sum()) + tia
    extra = g_min * float(linear_op(x * x, torch.ones_like(w)).sum())
    assert float(crossbar_power(linear_op, x, gp, gm)) == pytest.approx(thesis + extra, rel=1e-12)
    if g_min == 0:
        assert float(crossbar_power(linear_op, x, gp, gm)) == pytest.approx(thesis, rel=1e-12)


def test_power_linear_with_folded_bias_matches_loop():
    g = gen(22)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64)
    gp, gm = torch.rand(4, 5, generator=g, dtype=torch.float64), torch.rand(4, 5, generator=g, dtype=torch.float64)
    bp, bm = torch.randn(4, generator=g, dtype=torch.float64), torch.rand(4, generator=g, dtype=torch.float64)
    got = float(crossbar_power(linear_op, x, gp, gm, bp, bm))
    assert got == pytest.approx(_loop_power_linear(x, gp, gm, bp, bm), rel=1e-6)


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1), (2, 2)])
def test_power_conv_matches_loop(stride, padding):
    g = gen(23 + stride + padding)
    x = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    gp, gm = _noisy_conductances(w, 24, g_u=10.0, g_min=0.5, noise="additive", sigma=0.9)
    got = float(crossbar_power(conv_op(stride=stride, padding=padding), x, gp, gm))
    assert got == pytest.approx(_loop_power_conv(x, gp, gm, stride, padding), rel=1e-6)


def test_power_conv_with_folded_bias_counts_every_output_position():
    g = gen(25)
    x = torch.randn(2, 2, 5, 5, generator=g, dtype=torch.float64)
    gp, gm = (
        torch.rand(3, 2, 3, 3, generator=g, dtype=torch.float64),
        torch.rand(3, 2, 3, 3, generator=g, dtype=torch.float64),
    )
    bp, bm = torch.rand(3, generator=g, dtype=torch.float64), torch.rand(3, generator=g, dtype=torch.float64)
    op = conv_op(stride=2, padding=1)
    extra = float(crossbar_power(op, x, gp, gm, bp, bm)) - float(crossbar_power(op, x, gp, gm))
    positions = 2 * 3 * 3            # batch × 3×3 output positions
    assert extra == pytest.approx(positions * float(2 * (bp + bm).sum()), rel=1e-9)


@pytest.mark.parametrize("g_min", [0.0, 0.5])
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_power_grows_with_g_u(g_min, layer):
    g = gen(26)
    if layer == "linear":
        x, w, op = torch.rand(4, 6, generator=g), torch.randn(3, 6, generator=g), linear_op
    else:
        x, w, op = torch.rand(2, 2, 6, 6, generator=g), torch.randn(4, 2, 3, 3, generator=g), conv_op(padding=1)
    powers = []
    for g_u in (1.0, 2.0, 5.0, 10.0, 25.0):
        gp, gm = _noisy_conductances(w, 27, g_u=g_u, g_min=g_min, sigma_c=0.1)
        powers.append(float(crossbar_power(op, x, gp, gm)))
    assert all(b > a for a, b in zip(powers, powers[1:])), powers
    if g_min == 0.0:          # same noise draw, all conductances ∝ g_u → power ∝ g_u
        assert powers[-1] / powers[0] == pytest.approx(25.0, rel=1e-5)
