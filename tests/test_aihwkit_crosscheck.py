"""The crossbar periphery of the workbench against IBM's aihwkit 1.1.0 (workbench.analysis.aihwkit_check):
converter resolution (inp_res/out_res) and input/output noise on the digits network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.analysis.aihwkit_check import aihwkit_model, crosscheck, mean_ci
from workbench.hardware import KnobError, memory_map_from_dict
from workbench.nn import noisy_layers, set_memory

pytestmark = pytest.mark.usefixtures("single_thread")


def crossbar(**knobs):
    return memory_map_from_dict({"default": {"technology": "memristor", "sigma_c": 0.0, **knobs}})


@pytest.fixture(scope="module")
def digits(trained):
    model, x, y = trained
    return model, x[:200], y[:200], x[-256:]       # calibration inputs: not the scored samples


@pytest.mark.parametrize("bits", [3, 4, 6])
def test_converters_alone_give_the_same_outputs(digits, bits):
    """Without noise both are deterministic: the same quantisation grid, range and rounding give
    the same logits (to float rounding of the matmul order) and the same predictions."""
    import copy
    model, x, y, cal = digits
    mem = crossbar(adc_bits=bits, dac_bits=bits)
    ours = copy.deepcopy(model).eval()
    set_memory(ours, mem.default)
    from workbench.nn.layers import calibrate_periphery, weights_as_given
    calibrate_periphery(ours, cal)
    with torch.no_grad(), weights_as_given():
        a = ours(x)
        b = aihwkit_model(model, mem, cal)(x)
    assert noisy_layers(ours)                              # the network has crossbar layers
    assert torch.equal(a.argmax(1), b.argmax(1))
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    # a coarser grid really changes the outputs (the comparison is not of two ideal networks)
    with torch.no_grad():
        ideal = aihwkit_model(model, crossbar(), cal)(x)
    assert not torch.allclose(a, ideal, rtol=1e-3, atol=1e-3)


def test_noisy_accuracy_distributions_agree(digits):
    """Output and input noise on top of 4-bit converters: 20 independent draws each; the Welch
    95 % interval of the difference of mean accuracies contains 0 and the two means' intervals
    overlap."""
    model, x, y, cal = digits
    res = crosscheck(model, x, y, crossbar(adc_bits=4, dac_bits=4, out_noise=0.5, inp_noise=0.05), cal,
                     draws=20, seed=3)
    assert res["workbench"].std() > 0 and res["aihwkit"].std() > 0       # the noise is really drawn
    assert res["workbench_mean"] < 0.97                                  # and it really costs accuracy
    (lo1, hi1), (lo2, hi2) = res["workbench_ci"], res["aihwkit_ci"]
    assert lo1 <= hi2 and lo2 <= hi1
    assert res["agree"], res
    assert res["p_value"] > 0.01


def test_the_comparison_detects_a_different_setting(digits):
    """Control: aihwkit given twice the output noise is told apart (the test above can fail)."""
    model, x, y, cal = digits
    res = crosscheck(model, x, y, crossbar(adc_bits=4, dac_bits=4, out_noise=0.5), cal, draws=20, seed=3,
                     reference_map=crossbar(adc_bits=4, dac_bits=4, out_noise=1.0))
    assert not res["agree"]
    assert res["difference_ci"][0] > 0                 # the workbench (less noise) is more accurate
    assert res["p_value"] < 1e-3


@pytest.mark.parametrize("knobs, match", [
    ({"sigma_c": 0.1}, "sigma_c"),
    ({"tile_rows": 64}, "tile_rows"),
    ({"stuck_min": 0.01}, "stuck_min"),
    ({"act_p": 0.01}, "act_p"),
])
def test_settings_without_a_counterpart_are_refused(digits, knobs, match):
    model, x, y, cal = digits
    with pytest.raises(KnobError, match=match):
        aihwkit_model(model, crossbar(**knobs), cal)


def test_a_digital_memory_is_refused(digits):
    model, x, y, cal = digits
    with pytest.raises(KnobError, match="memristor"):
        aihwkit_model(model, memory_map_from_dict({"default": {"technology": "sram", "p": 0.01}}), cal)


def test_mean_ci_covers_the_mean_at_its_rate():
    """Student-t interval: over 2 000 samples of 10 normal draws, the 95 % interval covers the
    true mean in 95 % ± 1.5 % of them."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        _, lo, hi = mean_ci(rng.normal(1.0, 2.0, 10))
        hits += lo <= 1.0 <= hi
    assert abs(hits / 2000 - 0.95) < 0.015
