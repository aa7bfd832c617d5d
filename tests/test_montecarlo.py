"""Tests of the Monte-Carlo evaluator ``mc_evaluate`` (thesis §4.4): exactness at zero noise,
reproducibility, vectorised/loop equivalence, confidence intervals and early stopping, the
accuracy-vs-BER curve of a BinaryConnect net, crossbar power (eq 3.39–3.44) and memory energy
(eq 3.30).

One BinaryConnect SmallCNN is trained once per module (3 epochs on the embedded digits).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from scipy import stats

from workbench.analysis import clean_accuracy, mc_evaluate, memory_energy_of, summarize
from workbench.datasets import as_tensors, load_dataset
from workbench.hardware import IdealMemory, KnobError, MemoryMap, MemristorMemory, SRAMMemory, crossbar_power, make
from workbench.hardware.sram import eta
from workbench.nn import layer_param_counts, noisy_layers, set_memory
from workbench.training import Cancelled, TrainConfig, accuracy, train

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(data):
    return train(TrainConfig(epochs=3, binary=True, width=0.5, seed=0), data, device="cpu")


@pytest.fixture
def model(trained):
    """The trained net with an ideal memory (``mc_evaluate`` attaches its memory to the model)."""
    return set_memory(trained.model, None).eval()


@pytest.fixture(scope="module")
def test_xy(data):
    return as_tensors(data.test)


def mc(model, xy, memory, **kw):
    x, y = xy
    kw.setdefault("device", "cpu")
    return mc_evaluate(model, x, y, memory, **kw)


# ------------------------------------------------------------------------------------------
# zero noise, reproducibility, modes
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("memory", [IdealMemory(), MemoryMap(), make(SRAMMemory, p=0.0, bits=1),
                                    make(MemristorMemory, sigma_c=0.0)], ids=["ideal", "map", "sram_p0", "memristor_0"])
def test_zero_noise_equals_plain_evaluation(model, data, test_xy, trained, memory):
    plain = accuracy(model, data.test, CPU)
    assert plain == trained.test_accuracy
    assert plain > 0.5                                     # the fixture did learn something
    ds = mc(model, test_xy, memory, draws=5)
    assert ds.sizes["draw"] == 5
    assert np.all(ds.accuracy.values == plain)             # exactly, every draw
    assert ds.attrs["accuracy_mean"] == plain
    assert ds.attrs["accuracy_std"] == 0.0
    assert ds.attrs["ci95_low"] == ds.attrs["ci95_high"] == plain
    assert clean_accuracy(set_memory(model, None), *test_xy, device="cpu") == plain


def test_same_seed_same_dataset_different_seed_different_draws(model, test_xy):
    mem = make(SRAMMemory, p=0.02, bits=1)
    a = mc(model, test_xy, mem, draws=6, seed=5)
    b = mc(model, test_xy, mem, draws=6, seed=5)
    c = mc(model, test_xy, mem, draws=6, seed=6)
    assert a.identical(b)
    assert not np.array_equal(a.accuracy.values, c.accuracy.values)
    assert a.attrs["seed"] == 5 and c.attrs["seed"] == 6
    assert a.attrs["n_test"] == len(test_xy[1])
    # draw i depends only on the seed, not on how draws are chunked
    d = mc(model, test_xy, mem, draws=6, seed=5, chunk=4)
    assert np.array_equal(a.accuracy.values, d.accuracy.values)


@pytest.mark.parametrize("memory", [make(SRAMMemory, p=0.02, bits=1), make(MemristorMemory, sigma_c=0.3)],
                         ids=["sram", "memristor"])
def test_vectorised_and_loop_modes_agree(model, test_xy, memory):
    loop = mc(model, test_xy, memory, draws=6, chunk=3, seed=11, mode="loop", power_batch=16)
    vec = mc(model, test_xy, memory, draws=6, chunk=3, seed=11, mode="vectorised", power_batch=16)
    assert np.array_equal(loop.accuracy.values, vec.accuracy.values)
    assert np.ptp(loop.accuracy.values) > 0               # the draws are really noisy
    if "power" in loop:
        np.testing.assert_allclose(loop.power.values, vec.power.values, rtol=1e-6)


def test_bad_arguments_raise(model, test_xy):
    with pytest.raises(KnobError, match="draws"):
        mc(model, test_xy, IdealMemory(), draws=0)
    with pytest.raises(KnobError, match="target_ci_width"):
        mc(model, test_xy, IdealMemory(), target_ci_width=2.0)
    with pytest.raises(KnobError, match="mode"):
        mc(model, test_xy, IdealMemory(), mode="fast")


def test_progress_and_cancel(model, test_xy):
    seen = []
    mc(model, test_xy, make(SRAMMemory, p=0.01), draws=4, chunk=2, progress=seen.append)
    assert [s["draw"] for s in seen] == [2, 4] and all(s["draws"] == 4 for s in seen)
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        mc(model, test_xy, make(SRAMMemory, p=0.01), draws=4, cancel=ev)


# ------------------------------------------------------------------------------------------
# summary statistics and early stopping
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("confidence", [0.95, 0.99])
@pytest.mark.parametrize("n", [2, 7, 40])
def test_summarize_matches_student_t(n, confidence):
    acc = np.random.default_rng(n).uniform(0.6, 0.9, n)
    s = summarize(acc, confidence)
    lo, hi = stats.t.interval(confidence, n - 1, loc=acc.mean(), scale=stats.sem(acc))
    assert s["draws"] == n
    assert s["accuracy_mean"] == pytest.approx(acc.mean(), rel=1e-12)
    assert s["accuracy_std"] == pytest.approx(acc.std(ddof=1), rel=1e-12)
    assert s["ci95_low"] == pytest.approx(lo, rel=1e-10)
    assert s["ci95_high"] == pytest.approx(hi, rel=1e-10)


def test_summarize_degenerate_cases():
    s = summarize(np.array([0.7]))
    assert s["accuracy_mean"] == 0.7 and math.isinf(s["ci95_high"]) and math.isinf(-s["ci95_low"])
    s = summarize(np.full(5, 0.7))
    assert s["ci95_low"] == s["ci95_high"] == 0.7 and s["accuracy_std"] == 0.0


def _width(acc) -> float:
    s = summarize(acc)
    return s["ci95_high"] - s["ci95_low"]


def test_target_ci_width_stops_once_reached(model, test_xy):
    mem = make(SRAMMemory, p=0.02, bits=1)
    first = mc(model, test_xy, mem, draws=4, chunk=4, seed=1)
    target = _width(first.accuracy.values) / 3           # needs roughly 9× the minimum draws
    ds = mc(model, test_xy, mem, draws=4, chunk=4, seed=1, target_ci_width=target, max_draws=200)
    acc = ds.accuracy.values
    n = acc.size
    assert 4 < n < 200                                   # more than the minimum, less than the cap
    assert n % 4 == 0                                    # checked after every chunk
    assert _width(acc) <= target                         # stopped because the target was met
    assert _width(acc[: n - 4]) > target                 # ... and not later than needed
    assert ds.attrs["ci95_high"] - ds.attrs["ci95_low"] == pytest.approx(_width(acc))
    assert np.array_equal(acc[:4], first.accuracy.values)   # same seed: the same first draws


def test_target_ci_width_capped_by_max_draws(model, test_xy):
    ds = mc(model, test_xy, make(SRAMMemory, p=0.02, bits=1), draws=2, chunk=3, target_ci_width=1e-6, max_draws=7)
    assert ds.sizes["draw"] == 7


def test_target_ci_width_met_immediately_takes_minimum(model, test_xy):
    ds = mc(model, test_xy, make(SRAMMemory, p=1e-4, bits=1), draws=4, chunk=4, target_ci_width=1.0)
    assert ds.sizes["draw"] == 4


# ------------------------------------------------------------------------------------------
# the accuracy–BER curve of a BinaryConnect net
# ------------------------------------------------------------------------------------------

P_GRID = [0.0, 1e-3, 1e-2, 0.05, 0.2, 0.5]


@pytest.fixture(scope="module")
def ber_curve(trained, test_xy):
    model = set_memory(trained.model, None)
    out = [mc(model, test_xy, make(SRAMMemory, p=p, bits=1), draws=10, seed=2) for p in P_GRID]
    set_memory(model, None)
    return out


def test_accuracy_at_p_half_is_chance(ber_curve, test_xy):
    ds = ber_curve[-1]
    assert abs(ds.attrs["accuracy_mean"] - 0.1) < 0.05, ds.accuracy.values
    # a BSC at p = 1/2 erases every weight: the prediction carries no information about the label
    assert ds.attrs["ci95_high"] < 0.2


def test_accuracy_decreases_with_p(ber_curve):
    means = [d.attrs["accuracy_mean"] for d in ber_curve]
    lows = [d.attrs["ci95_low"] for d in ber_curve]
    highs = [d.attrs["ci95_high"] for d in ber_curve]
    for i in range(len(P_GRID) - 1):     # never significantly increasing
        assert lows[i + 1] <= highs[i], (P_GRID[i], P_GRID[i + 1], means)
    # and clearly decreasing where noise matters (non-overlapping intervals)
    assert highs[2] < lows[0] or highs[2] < means[0]      # 1e-2 below clean
    assert highs[3] < lows[2]                             # 0.05 below 1e-2
    assert highs[4] < lows[3]                             # 0.2 below 0.05
    assert means[0] - means[-1] > 0.4


def test_energy_on_the_curve(ber_curve, trained):
    counts = layer_param_counts(trained.model)
    for p, ds in zip(P_GRID, ber_curve):
        assert float(ds.energy) == pytest.approx(eta(p) / 16, rel=1e-12)   # ζ = 1, same network
    assert float(ber_curve[0].energy) == pytest.approx(1 / 16)
    assert len(counts) == 4


# ------------------------------------------------------------------------------------------
# memory energy
# ------------------------------------------------------------------------------------------

def test_energy_variable_equals_memory_energy_of(model, test_xy):
    counts = layer_param_counts(model)
    n_total = sum(counts.values())
    cls = counts["classifier"]
    mmap = MemoryMap(make(SRAMMemory, p=1e-2, bits=1), {"classifier": IdealMemory()})
    ds = mc(model, test_xy, mmap, draws=2)
    by_hand = (eta(1e-2) * (n_total - cls) + 16 * cls) / (16 * n_total)
    assert float(ds.energy) == pytest.approx(memory_energy_of(model, mmap), rel=1e-12)
    assert float(ds.energy) == pytest.approx(by_hand, rel=1e-12)
    # 4-bit SRAM on every layer at p = 1e-3
    mem = make(SRAMMemory, p=1e-3, bits=4)
    ds = mc(model, test_xy, mem, draws=2)
    assert float(ds.energy) == pytest.approx(memory_energy_of(model, MemoryMap(mem)), rel=1e-12)
    assert float(ds.energy) == pytest.approx(4 * eta(1e-3) / 16, rel=1e-12)
    # reliable storage everywhere: the 16-bit reference itself
    assert memory_energy_of(model, MemoryMap()) == pytest.approx(1.0)
    assert float(mc(model, test_xy, make(MemristorMemory, sigma_c=0.0), draws=1, power_batch=4).energy) == 1.0


# ------------------------------------------------------------------------------------------
# crossbar power
# ------------------------------------------------------------------------------------------

def test_memristor_power_present_and_grows_with_g_u(model, test_xy):
    res = {g_u: mc(model, test_xy, make(MemristorMemory, g_u=g_u, sigma_c=0.1), draws=3, seed=4, power_batch=16)
           for g_u in (2.0, 5.0, 25.0)}
    names = list(noisy_layers(model))
    powers = []
    for ds in res.values():
        assert "power" in ds and "layer_power" in ds
        assert ds.power.dims == ("draw",) and ds.layer_power.dims == ("draw", "layer")
        assert list(ds.layer.values) == names
        np.testing.assert_allclose(ds.power.values, ds.layer_power.sum("layer").values, rtol=1e-12)
        assert np.all(ds.power.values > 0)
        powers.append(float(ds.power.mean()))
    assert powers[0] < powers[1] < powers[2]
    # g_min = 0 and multiplicative noise: conductances ∝ g_u with the same δ, so power ∝ g_u and
    # the accuracy does not depend on g_u at all (eq 3.38)
    assert powers[2] / powers[0] == pytest.approx(25.0 / 2.0, rel=1e-4)
    assert np.array_equal(res[2.0].accuracy.values, res[25.0].accuracy.values)


def test_noise_free_power_matches_crossbar_power_by_layer(model, test_xy):
    """Power of a noise-free crossbar = Σ_l crossbar_power(f_l, x_l, g+, g-) / batch, with x_l the
    input each layer sees on the first ``power_batch`` test images."""
    x, _ = test_xy
    mem = make(MemristorMemory, g_u=10.0, g_min=0.5, sigma_c=0.0)
    mmap = MemoryMap(make(SRAMMemory, p=0.0, bits=1), {"features.3": mem, "classifier": mem})
    ds = mc(model, test_xy, mmap, draws=2, power_batch=8)
    set_memory(model, None)
    inputs, hooks = {}, []
    layers = noisy_layers(model)
    for name, layer in layers.items():
        hooks.append(layer.register_forward_pre_hook(lambda m, inp, name=name: inputs.__setitem__(name, inp[0])))
    with torch.no_grad():
        model(x[:8])
    for h in hooks:
        h.remove()
    expected = {}
    for name, layer in layers.items():
        if name in ("features.3", "classifier"):
            gp, gm, _ = mem.program(layer.quantized_weight().detach())
            expected[name] = float(crossbar_power(layer.crossbar_op(), inputs[name], gp, gm)) / 8
        else:
            expected[name] = 0.0                         # SRAM layers dissipate no crossbar power
    got = dict(zip(ds.layer.values, ds.layer_power.values[0]))
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-9)
    assert np.all(ds.power.values == ds.power.values[0])  # no conductance noise: every draw alike


def test_power_uses_each_draws_noisy_activations(model, test_xy):
    """Noise-free crossbars after a noisy SRAM layer: the crossbars' inputs carry that draw's
    noise (as on the hardware), so their power varies from draw to draw."""
    mem = make(MemristorMemory, g_u=10.0, sigma_c=0.0)
    mmap = MemoryMap(make(SRAMMemory, p=0.05, bits=1), {"features.3": mem, "classifier": mem})
    ds = mc(model, test_xy, mmap, draws=4, power_batch=8)
    set_memory(model, None)
    assert np.unique(ds.power.values).size > 1
