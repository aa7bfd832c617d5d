"""Post-training linear weight quantisation as a memory (Fig 5.6)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from workbench.analysis.montecarlo import mc_evaluate
from workbench.analysis.quantization import quantization_memory_map, quantization_sweep
from workbench.hardware import TECHNOLOGIES, IdealMemory, KnobError, QuantizedMemory, memory_from_dict
from workbench.nn import noisy_layers

pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------------------------
# the memory


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 12])
def test_read_levels_and_error(bits):
    w = torch.randn(4000, generator=torch.Generator().manual_seed(bits)) * 0.3
    r = QuantizedMemory(bits=bits).read(w).weight
    qmax = 2 ** (bits - 1) - 1
    scale = float(w.abs().max()) / qmax
    assert r.unique().numel() <= 2 ** bits - 1
    assert float((r - w).abs().max()) <= scale / 2 * (1 + 1e-5)
    codes = r / scale                      # integer codes in [-qmax, qmax]
    np.testing.assert_allclose(codes, codes.round(), atol=1e-3)
    assert float(codes.abs().max()) == pytest.approx(qmax, abs=1e-3)


def test_memory_is_deterministic_and_registered():
    mem = QuantizedMemory()
    assert mem.bits == 8 and mem.technology == "quantized" and mem.is_noisy
    w = torch.randn(50, 20)
    assert torch.equal(mem.read(w, torch.Generator().manual_seed(0)).weight, mem.read(w).weight)
    assert TECHNOLOGIES["quantized"] is QuantizedMemory
    m4 = memory_from_dict({"technology": "quantized", "bits": 4})
    assert isinstance(m4, QuantizedMemory) and m4.bits == 4
    assert m4.knobs() == {"bits": 4, "technology": "quantized"}
    for bad in (1, 17):
        with pytest.raises(KnobError, match=r"bits=.*\[2, 16\]"):
            memory_from_dict({"technology": "quantized", "bits": bad})


def test_monte_carlo_draws_are_all_equal(trained):
    model, x, y = trained
    ds = mc_evaluate(model, x, y, QuantizedMemory(bits=3), draws=3, device="cpu")
    assert np.ptp(ds.accuracy.values) == 0 and ds.attrs["accuracy_std"] == 0


# ----------------------------------------------------------------------------------------------
# the sweep


def test_sweep_on_trained_net(trained):
    model, x, y = trained
    ds = quantization_sweep(model, x, y, bits=(4, 5, 6, 7, 8, 16))
    clean = ds.attrs["clean_accuracy"]
    assert ds.accuracy.sel(bits=16).item() == clean
    assert abs(ds.accuracy.sel(bits=8).item() - clean) <= 0.02
    assert list(ds.bits.values) == [4, 5, 6, 7, 8, 16]
    assert ds.accuracy.attrs["units"] == "1" and ds.bits.attrs["units"] == "bit"
    assert ds.attrs["exclude_first"] == 1 and ds.attrs["excluded_layer"] == next(iter(noisy_layers(model)))
    assert ds.attrs["n_test"] == len(y)


def _capture_weights(model):
    """Forward hooks that record the weight each noisy layer computes with (the read-back weight:
    the Monte-Carlo evaluator swaps it in with ``functional_call``)."""
    seen, hooks = {}, []
    for name, layer in noisy_layers(model).items():
        hooks.append(layer.register_forward_hook(
            lambda m, inp, out, name=name: seen.__setitem__(name, m.weight.detach().clone())))
    return seen, hooks


@pytest.mark.parametrize("exclude_first", [True, False])
def test_first_layer_excluded(trained, exclude_first):
    model = copy.deepcopy(trained[0])
    x, y = trained[1][:64], trained[2][:64]
    names = list(noisy_layers(model))
    stored = {n: layer.weight.detach().clone() for n, layer in noisy_layers(model).items()}
    seen, hooks = _capture_weights(model)
    try:
        quantization_sweep(model, x, y, bits=(3,), exclude_first=exclude_first)   # the last pass is the 3-bit one
    finally:
        for h in hooks:
            h.remove()
    for n in names:
        untouched = torch.equal(seen[n], stored[n])
        if n == names[0] and exclude_first:
            assert untouched, n
        else:
            assert not untouched, n
            assert seen[n].unique().numel() <= 2 ** 3 - 1, n
    assert all(isinstance(layer.memory, IdealMemory) for layer in noisy_layers(model).values())  # restored


def test_memory_map_and_knob_errors(trained):
    model, x, y = trained
    mmap = quantization_memory_map(model, 5)
    first, second = list(noisy_layers(model))[:2]
    assert isinstance(mmap[first], IdealMemory) and mmap[second].bits == 5
    assert quantization_memory_map(model, 5, exclude_first=False).overrides == {}
    with pytest.raises(KnobError, match=r"bits=1 .*\[2, 16\]"):
        quantization_sweep(model, x, y, bits=(4, 1))
    with pytest.raises(KnobError, match="bits"):
        quantization_sweep(model, x, y, bits=())
