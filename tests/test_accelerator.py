"""The accelerator around a crossbar: converters, tiles, stuck-at devices, activation buffers
(workbench.hardware.periphery) and energy/latency per inference (workbench.hardware.profile)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from workbench.analysis.montecarlo import mc_evaluate
from workbench.cli import main
from workbench.experiments.core import evaluate_spec, preset_config
from workbench.experiments.store import spec_key
from workbench.hardware import (
    COMPONENTS,
    IdealMemory,
    KnobError,
    MemoryMap,
    MemristorMemory,
    SRAMMemory,
    make,
    make_profile,
    memory_from_dict,
    memory_map_from_dict,
    profile_from_dict,
)
from workbench.hardware.periphery import PERIPHERY_DEFAULTS, stuck_at
from workbench.hardware.sram import eta
from workbench.nn import NoisyLinear, noisy_layers, set_memory
from workbench.nn.layers import calibrate_periphery

pytestmark = pytest.mark.usefixtures("single_thread")


def crossbar(**knobs) -> MemoryMap:
    return memory_map_from_dict({"default": {"technology": "memristor", **knobs}})


# ---------------------------------------------------------------- defaults: today's results and keys
def test_defaults_keep_cache_keys():
    cfg = preset_config("digits-cnn", epochs=3)
    mem = {"default": {"technology": "memristor", "sigma_c": 0.2}}
    # computed by the code before the periphery knobs existed
    assert spec_key("evaluate", evaluate_spec(cfg, mem, draws=4, seed=11)) == "774da9b4ea28ea9a6405ce06"
    explicit = {"default": {"technology": "memristor", "sigma_c": 0.2, **PERIPHERY_DEFAULTS}}
    assert spec_key("evaluate", evaluate_spec(cfg, explicit, draws=4, seed=11)) == "774da9b4ea28ea9a6405ce06"
    sram = {"default": {"technology": "sram", "p": 0.01, "bits": 8}}
    assert spec_key("evaluate", evaluate_spec(cfg, sram, draws=4, seed=11)) == "6aa9294fa29cdd3a51182ed4"
    assert not set(PERIPHERY_DEFAULTS) & set(memory_from_dict(explicit["default"]).knobs())
    # a knob off its default is in the key
    assert "adc_bits" in memory_from_dict({"technology": "memristor", "adc_bits": 6}).knobs()
    assert spec_key("evaluate", evaluate_spec(cfg, mem, draws=4, seed=11, profile=make_profile())) != \
        "774da9b4ea28ea9a6405ce06"


def test_defaults_bit_identical_to_the_plain_read_and_forward(trained):
    """Periphery off: each draw is the plain read of every layer (in order, from the seed's
    generator) followed by an ordinary forward pass, bit for bit, power included."""
    model, x, y = trained
    x, y = x[:200], y[:200]
    mem = crossbar(sigma_c=0.2)
    ds = mc_evaluate(model, x, y, mem, 3, seed=5, device="cpu")
    explicit = memory_map_from_dict({"default": {"technology": "memristor", "sigma_c": 0.2, **PERIPHERY_DEFAULTS}})
    ds2 = mc_evaluate(model, x, y, explicit, 3, seed=5, device="cpu")
    assert np.array_equal(ds.accuracy.values, ds2.accuracy.values)
    assert np.array_equal(ds.power.values, ds2.power.values)

    import copy
    ref = copy.deepcopy(model)
    set_memory(ref, IdealMemory())
    gen = torch.Generator().manual_seed(5)
    expected = []
    for _ in range(3):
        with torch.no_grad():
            for orig, layer in zip(noisy_layers(model).values(), noisy_layers(ref).values()):
                layer.weight.copy_(mem.default.read(orig.weight.detach(), gen).weight)
            expected.append((ref(x).argmax(1) == y).sum().item() / len(y))
    assert np.array_equal(ds.accuracy.values, np.array(expected, dtype=float))


# ---------------------------------------------------------------- converters, faults, buffers
@pytest.fixture(scope="module")
def small(trained):
    model, x, y = trained
    return model, x[:240], y[:240], x[-256:]      # calibration inputs: not the scored samples


def test_accuracy_rises_with_adc_bits(small):
    model, x, y, cal = small
    res = {b: mc_evaluate(model, x, y, crossbar(sigma_c=0.05, adc_bits=b), 6, seed=1, device="cpu",
                          calibration=cal).attrs for b in (2, 3, 4, 8)}
    means = [res[b]["accuracy_mean"] for b in (2, 3, 4, 8)]
    # 95 % CIs of the coarsest converters separated from the finest ones
    assert res[2]["ci95_high"] < res[3]["ci95_low"]
    assert res[3]["ci95_high"] < res[8]["ci95_low"]
    # monotone trend: every step up in bits loses no more than the CI half-width of the finer point
    for lo, hi in zip((2, 3, 4), (3, 4, 8)):
        assert res[hi]["accuracy_mean"] >= res[lo]["accuracy_mean"] - (res[hi]["ci95_high"] - res[hi]["ci95_low"])
    assert means[-1] > 0.9


def test_stuck_at_half_gives_chance(small):
    model, x, y, cal = small
    ds = mc_evaluate(model, x, y, crossbar(sigma_c=0.0, stuck_min=0.25, stuck_max=0.25), 8, seed=2, device="cpu")
    freq = np.bincount(y.numpy(), minlength=10) / len(y)
    # chance: a network guessing one class scores that class' frequency; the CI meets that range
    assert ds.attrs["ci95_low"] <= freq.max() and ds.attrs["ci95_high"] >= freq.min()
    assert ds.attrs["accuracy_mean"] < 0.3


def test_stuck_at_rates_and_per_draw_faults():
    g = torch.full((200, 300), 5.0)
    out = stuck_at(g, 0.1, 0.2, 0.0, 25.0, torch.Generator().manual_seed(3))
    n = g.numel()
    for value, rate in ((0.0, 0.1), (25.0, 0.2)):
        k = int((out == value).sum())
        assert abs(k - rate * n) < 4 * math.sqrt(n * rate * (1 - rate))     # binomial, 4 sigma
    again = stuck_at(g, 0.1, 0.2, 0.0, 25.0, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)          # the faults of a chip depend only on its draw's generator
    other = stuck_at(g, 0.1, 0.2, 0.0, 25.0, torch.Generator().manual_seed(4))
    assert not torch.equal(out, other)
    with pytest.raises(KnobError, match="stuck_min \\+ stuck_max"):
        memory_from_dict({"technology": "memristor", "stuck_min": 0.6, "stuck_max": 0.6})


def test_activation_ber_zero_equals_no_buffer_faults(small):
    model, x, y, cal = small
    base = mc_evaluate(model, x, y, crossbar(sigma_c=0.1), 4, seed=3, device="cpu")
    zero = mc_evaluate(model, x, y, crossbar(sigma_c=0.1, act_p=0.0, act_bits=4), 4, seed=3, device="cpu",
                       calibration=cal)
    assert np.array_equal(base.accuracy.values, zero.accuracy.values)
    faulty = mc_evaluate(model, x, y, crossbar(sigma_c=0.1, act_p=0.05), 4, seed=3, device="cpu", calibration=cal)
    assert faulty.attrs["ci95_high"] < base.attrs["ci95_low"]
    again = mc_evaluate(model, x, y, crossbar(sigma_c=0.1, act_p=0.05), 4, seed=3, device="cpu", calibration=cal)
    assert np.array_equal(faulty.accuracy.values, again.accuracy.values)     # forward noise seeded per draw


def test_tiles_equal_untiled_with_ideal_converters_and_differ_with_coarse_adcs(small):
    model, x, _, cal = small
    xb = x[:64]

    def outputs(**knobs):
        import copy
        m = set_memory(copy.deepcopy(model), crossbar(sigma_c=0.0, **knobs).default)
        calibrate_periphery(m, cal)
        with torch.no_grad():
            return m(xb)

    plain = outputs()
    for rows in (16, 18, 100):           # 18 splits at channel boundaries (3x3 kernels), 16 and 100 do not
        assert torch.allclose(outputs(tile_rows=rows, tile_cols=8), plain, atol=1e-4, rtol=1e-4)
    coarse, coarse_tiled = outputs(adc_bits=3), outputs(adc_bits=3, tile_rows=16)
    assert (coarse_tiled - coarse).abs().max() > 1e-2


# ---------------------------------------------------------------- energy and latency
def test_energy_components_element_by_element():
    torch.manual_seed(0)
    model = nn.Sequential(NoisyLinear(3, 2, bias=False), nn.ReLU(), NoisyLinear(2, 2, bias=False)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    xbar = make(MemristorMemory, sigma_c=0.0, adc_bits=4, dac_bits=3, tile_rows=2, tile_cols=1, act_p=0.01,
                act_bits=6)
    sram = make(SRAMMemory, p=0.01, bits=8)
    prof = make_profile(read_time_s=50e-9, read_voltage_v=0.3, dac_fom_j=2e-14, adc_fom_j=3e-15, adc_time_s=2e-9,
                        dac_time_s=1e-9, columns_per_adc=4, sram_bit_j=1e-13, add_j=5e-14, act_bits=7)
    ds = mc_evaluate(model, x, y, MemoryMap(xbar, {"2": sram}), 2, seed=0, device="cpu", profile=prof,
                     power_batch=4, calibration=x)
    e = ds.layer_energy_j.isel(draw=0)

    # layer "0": a 3 x 2 crossbar in row tiles of 2 (2 tiles) and column tiles of 1 (2 tiles)
    w = model[0].weight.detach()
    x_b = x.abs().max().item()
    k = 25.0 / w.abs().max().item()
    power = 0.0
    for s in range(4):
        for j in range(2):
            for i in range(3):
                v = x[s, i].item() / x_b * 0.3
                gp, gm = max(w[j, i].item(), 0) * k, max(-w[j, i].item(), 0) * k
                power += v * v * (gp + gm) + v * gp + v * gm
    expect0 = {"array": power / 4 * 1e-6 * 50e-9,
               "dac": 3 * 2 * 1 * 2e-14 * 2 ** 3,
               "adc": 2 * 2 * 1 * 3e-15 * 2 ** 4,
               "weight_buffer": 0.0,
               "activation_buffer": 2 * 3 * 6 * (-math.log(0.01) / 12.8) * 1e-13,
               "accumulation": 2 * 1 * (2 - 1) * 5e-14}
    # layer "2": weights in SRAM (8 bits at η(0.01)), inputs in a reliable 7-bit buffer
    expect2 = dict.fromkeys(COMPONENTS, 0.0)
    expect2["weight_buffer"] = 4 * 8 * eta(0.01) * 1e-13
    expect2["activation_buffer"] = 2 * 2 * 7 * 1.0 * 1e-13
    for layer, expect in (("0", expect0), ("2", expect2)):
        for c in COMPONENTS:
            assert float(e.sel(layer=layer, component=c)) == pytest.approx(expect[c], rel=1e-9, abs=1e-30), (layer, c)
    assert np.allclose(ds.energy_j.values, ds.layer_energy_j.sum(("layer", "component")).values, rtol=1e-12)
    assert float(ds.layer_latency_s.sel(layer="0")) == pytest.approx(1e-9 + 50e-9 + 2e-9 * 1)
    assert float(ds.latency_s) == pytest.approx(1e-9 + 50e-9 + 2e-9)
    assert json.loads(ds.attrs["hardware_profile"]) == prof.to_dict()


def test_profile_knobs_presets_and_round_trip():
    for name in ("isaac", "survey-frontier"):
        p = make_profile(name)
        assert profile_from_dict(json.loads(json.dumps(p.to_dict()))).to_dict() == p.to_dict()
    assert make_profile("survey-frontier").adc_fom_j < make_profile("isaac").adc_fom_j
    with pytest.raises(KnobError, match="read_time_s"):
        make_profile(read_time_s=-1.0)
    with pytest.raises(KnobError, match="profile"):
        make_profile("nope")
    with pytest.raises(KnobError, match="adc_bits"):
        memory_from_dict({"technology": "memristor", "adc_bits": 1})


def test_cli_evaluate_reports_energy_and_latency(tmp_path, capsys):
    rc = main(["evaluate", "--memory", "memristor", "--sigma-c", "0.1", "--adc-bits", "6", "--tile", "64,32",
               "--profile", "isaac", "--hw", "adc_fom_j=5e-15", "--draws", "2", "--set", "epochs=2",
               "--cache-dir", str(tmp_path), "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    res = json.loads(out)
    assert res["energy"] > 0 and res["latency"] > 0
    assert math.fsum(res["energy_breakdown"].values()) == pytest.approx(res["energy"], rel=1e-12)
    assert math.fsum(res["energy_per_layer"].values()) == pytest.approx(res["energy"], rel=1e-9)
    assert set(res["energy_breakdown"]) == set(COMPONENTS)
    assert res["profile"]["adc_fom_j"] == 5e-15
    assert res["memory"]["adc_bits"] == 6 and res["memory"]["tile_rows"] == 64
    rc = main(["evaluate", "--memory", "memristor", "--adc-bits", "1", "--cache-dir", str(tmp_path), "--json"])
    assert rc != 0 and "--adc-bits" in capsys.readouterr().err


@pytest.mark.parametrize("rows", [4, 9, 18, 10])
def test_each_tile_partial_sum_is_the_masked_crossbar(rows):
    """Every fast path (batched linear, grouped convolution, channel slices) gives each tile's own
    partial sum: the operator on the weights with every row outside the tile set to zero."""
    from workbench.hardware.memristor import conv_op, linear_op
    from workbench.hardware.periphery import row_tiles, tile_partials
    gen = torch.Generator().manual_seed(rows)
    cases = [(conv_op(2, 1), torch.randn(3, 8, 6, 6, generator=gen, dtype=torch.float64),
              torch.randn(5, 8, 3, 3, generator=gen, dtype=torch.float64)),
             (conv_op(1, 1, 1, 2), torch.randn(2, 8, 5, 5, generator=gen, dtype=torch.float64),
              torch.randn(6, 4, 3, 3, generator=gen, dtype=torch.float64)),
             (linear_op, torch.randn(3, 20, generator=gen, dtype=torch.float64),
              torch.randn(4, 20, generator=gen, dtype=torch.float64))]
    for op, x, w in cases:
        fan_in = w[0].numel()
        flat = w.reshape(w.shape[0], fan_in)
        expect = []
        for start, stop in row_tiles(fan_in, rows):
            mask = torch.zeros(fan_in, dtype=w.dtype)
            mask[start:stop] = 1
            expect.append(op(x, (flat * mask).reshape(w.shape)))
        for grouped in (False, True):
            got = tile_partials(op, x, w, rows, grouped=grouped)
            assert got.shape[0] == len(expect) == math.ceil(fan_in / rows)
            assert torch.allclose(got, torch.stack(expect), rtol=1e-12, atol=1e-12)


def test_per_layer_override_sets_one_layers_periphery(small):
    """A memory map's override gives one layer its own converters; the others keep the default's."""
    model, x, y, cal = small
    base = {"technology": "memristor", "sigma_c": 0.0}
    ds_all = mc_evaluate(model, x, y, memory_map_from_dict({"default": {**base, "adc_bits": 2}}), 1, device="cpu",
                         calibration=cal)
    ds_one = mc_evaluate(model, x, y, memory_map_from_dict(
        {"default": base, "overrides": {"classifier": {**base, "adc_bits": 2}}}), 1, device="cpu", calibration=cal)
    ds_none = mc_evaluate(model, x, y, memory_map_from_dict({"default": base}), 1, device="cpu")
    assert ds_all.attrs["accuracy_mean"] < ds_one.attrs["accuracy_mean"] <= ds_none.attrs["accuracy_mean"] + 0.02
    import copy
    m = set_memory(copy.deepcopy(model), memory_map_from_dict({"default": base, "overrides": {"classifier": {
        **base, "adc_bits": 2}}}))
    assert [getattr(layer.memory, "adc_bits", None) for layer in noisy_layers(m).values()] == [None, None, None, 2]
