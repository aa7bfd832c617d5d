"""m-sharpness (eq 3.24 / 5.5), its Pearson correlation with robustness (Table 5.10) and the
robustness gap acc(σ_c = 0) − acc(σ_c = 0.4) (§5.4.4)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import stats
from torch.func import functional_call

from workbench.analysis.montecarlo import mc_evaluate
from workbench.analysis.sharpness import m_sharpness, robustness_gap, sharpness_robustness_correlation
from workbench.hardware import KnobError, MemoryMap, QuantizedMemory
from workbench.nn import noisy_layers

pytestmark = pytest.mark.usefixtures("single_thread")

VARIANTS = ("sam", "asam", "samson2", "samsoninf")


@pytest.fixture(scope="module")
def digits64():
    """The digits test set in float64, for the exact comparisons."""
    from workbench.experiments.core import preset_config, test_tensors
    x, y = test_tensors(preset_config("digits-cnn", epochs=3))
    return x.double(), y


def _batches(n: int, m: int, seed: int):
    """The documented split: one seeded ``torch.randperm``, ⌊n/m⌋ full batches."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return [order[b * m:(b + 1) * m] for b in range(n // m)]


# ----------------------------------------------------------------------------------------------
# the model is left exactly as it was


def test_weights_grads_mode_and_memories_are_restored(trained):
    model, x, y = trained
    model = copy.deepcopy(model).train()
    first = next(iter(noisy_layers(model)))
    mem = QuantizedMemory(bits=3)
    noisy_layers(model)[first].memory = mem
    for i, w in enumerate(model.parameters()):
        w.grad = torch.full_like(w, float(i)) if i % 2 else None
    grads = [w.grad for w in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}   # weights and batch-norm buffers
    for v in VARIANTS:
        m_sharpness(model, x, y, v, rho=0.5, m=64)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights or running stats changed"
    assert all(a is b for a, b in zip(grads, (w.grad for w in model.parameters())))
    assert model.training
    assert noisy_layers(model)[first].memory is mem


def test_attached_memory_does_not_change_the_value(trained):
    """Sharpness is measured on the stored weights: the layers read an ideal memory meanwhile."""
    model, x, y = trained
    ref = float(m_sharpness(model, x, y, "sam", rho=0.1, m=64).m_sharpness)
    noisy = copy.deepcopy(model)
    for layer in noisy_layers(noisy).values():
        layer.memory = QuantizedMemory(bits=2)
    assert float(m_sharpness(noisy, x, y, "sam", rho=0.1, m=64).m_sharpness) == ref


# ----------------------------------------------------------------------------------------------
# behaviour on a trained network


def test_increases_with_rho_on_trained_net(trained):
    model, x, y = trained
    for v in VARIANTS:
        vals = [float(m_sharpness(model, x, y, v, rho=r, m=64).m_sharpness) for r in (0.05, 0.1, 0.2, 0.5)]
        assert vals[0] > 0, (v, vals)
        assert all(b > a for a, b in zip(vals, vals[1:])), (v, vals)


def test_first_order_small_rho(trained, digits64):
    """For small ρ, L_S(W + ε*) − L_S(W) ≈ ρ ‖T_w ∇L_S‖ > 0: every batch is positive and the value
    is linear in ρ (float64 so that the tiny differences are resolved)."""
    model = copy.deepcopy(trained[0]).double()
    x, y = digits64
    for v in VARIANTS:
        a = m_sharpness(model, x, y, v, rho=1e-4, m=64)
        b = m_sharpness(model, x, y, v, rho=2e-4, m=64)
        assert (a.sharpness.values > 0).all(), v
        assert float(b.m_sharpness) / float(a.m_sharpness) == pytest.approx(2.0, rel=0.01), v
        np.testing.assert_allclose(a.loss.values, b.loss.values, rtol=0, atol=0)


def test_dataset_layout(trained):
    model, x, y = trained
    ds = m_sharpness(model, x, y, "samson2", rho=0.5, m=100, max_batches=2, seed=1)
    assert ds.sizes["batch"] == 2 and ds.attrs["n_batches"] == 2
    assert ds.attrs["variant"] == "samson2" and ds.attrs["p"] == 2.0 and ds.attrs["equation"] == "5.5"
    np.testing.assert_allclose(ds.sharpness, ds.perturbed_loss - ds.loss)
    assert float(ds.m_sharpness) == pytest.approx(float(ds.sharpness.mean()))
    for name in ("m_sharpness", "sharpness", "loss", "perturbed_loss", "epsilon_norm"):
        assert ds[name].attrs["long_name"] and ds[name].attrs["units"]
    full = m_sharpness(model, x, y, "samson2", rho=0.5, m=100, seed=1)
    assert full.sizes["batch"] == len(y) // 100     # the incomplete last batch is dropped
    np.testing.assert_array_equal(full.sharpness.values[:2], ds.sharpness.values)


# ----------------------------------------------------------------------------------------------
# against independent computations of ε*


def _loss(model, params, xb, yb):
    return F.cross_entropy(functional_call(model, params, (xb,)), yb)


def test_sam_matches_independent_computation(digits64):
    x, y = digits64
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).double().eval()
    rho, m, seed = 0.3, 50, 3
    expected = []
    for idx in _batches(len(y), m, seed):
        xb, yb = x[idx], y[idx]
        params = dict(model.named_parameters())
        loss = _loss(model, params, xb, yb)
        grads = torch.autograd.grad(loss, list(params.values()))
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
        shifted = {k: w.detach() + rho * g / norm for (k, w), g in zip(params.items(), grads)}   # eq 3.23
        expected.append(float(_loss(model, shifted, xb, yb).detach()) - float(loss.detach()))
    ds = m_sharpness(model, x, y, "sam", rho=rho, m=m, seed=seed)
    np.testing.assert_allclose(ds.sharpness.values, expected, rtol=0, atol=1e-9)
    assert float(ds.m_sharpness) == pytest.approx(np.mean(expected), abs=1e-9)
    assert ds.attrs["equation"] == "3.24"
    np.testing.assert_allclose(ds.epsilon_norm.values, rho, rtol=1e-12)


def _t_w(name: str, w: torch.Tensor, variant: str, eta: float) -> torch.Tensor:
    """T_w written out: |W| + η (ASAM, eq 3.26), (|W| + η)/‖W‖_p (SAMSON, eq 5.1) on tensors named
    'weight' (Annex A), 1 elsewhere."""
    if "weight" not in name:
        return torch.ones_like(w)
    t = w.abs() + eta
    if variant == "samson2":
        t = t / torch.sqrt((w ** 2).sum())
    elif variant == "samsoninf":
        t = t / w.abs().max()
    return t


@pytest.mark.parametrize("variant", ["asam", "samson2", "samsoninf"])
def test_adaptive_variants_match_written_out_t_w(digits64, variant):
    x, y = digits64
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10)).double()
    with torch.no_grad():            # a batch norm with non-trivial statistics and affine parameters
        bn = model[2]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    model.eval()
    rho, eta, m, seed = 0.5, 0.01, 60, 7
    expected = []
    for idx in _batches(len(y), m, seed):
        xb, yb = x[idx], y[idx]
        params = dict(model.named_parameters())
        loss = _loss(model, params, xb, yb)
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        t = {k: _t_w(k, w.detach(), variant, eta) for k, w in params.items()}
        norm = torch.sqrt(sum(((t[k] * grads[k]) ** 2).sum() for k in params))
        shifted = {k: w.detach() + rho * t[k] ** 2 * grads[k] / norm for k, w in params.items()}   # eq 3.26 / 5.3
        expected.append(float(_loss(model, shifted, xb, yb).detach()) - float(loss.detach()))
    ds = m_sharpness(model, x, y, variant, rho=rho, m=m, eta=eta, seed=seed)
    np.testing.assert_allclose(ds.sharpness.values, expected, rtol=0, atol=1e-9)
    assert ds.attrs["equation"] == "5.5"


def test_p_overrides_the_samson_norm(trained):
    model, x, y = trained
    a = m_sharpness(model, x, y, "samson2", rho=0.2, m=64, p="inf")
    b = m_sharpness(model, x, y, "samsoninf", rho=0.2, m=64)
    np.testing.assert_array_equal(a.sharpness.values, b.sharpness.values)


# ----------------------------------------------------------------------------------------------
# knob validation


@pytest.mark.parametrize("kwargs, knob", [
    ({"rho": 0.0}, "rho"), ({"rho": -1.0}, "rho"), ({"rho": math.inf}, "rho"), ({"rho": math.nan}, "rho"),
    ({"rho": "big"}, "rho"), ({"m": 0}, "m"), ({"m": 10_000}, "m"), ({"m": 2.5}, "m"),
    ({"variant": "sgd"}, "variant"), ({"eta": 0.0}, "eta"), ({"max_batches": 0}, "max_batches"),
    ({"variant": "samson2", "p": 0.5}, "p"), ({"variant": "sam", "p": 2}, "p"), ({"seed": -1}, "seed"),
])
def test_knob_errors_name_the_knob_and_range(trained, kwargs, knob):
    model, x, y = trained
    with pytest.raises(KnobError, match=rf"^{knob}=") as info:
        m_sharpness(model, x, y, **kwargs)
    assert any(t in str(info.value) for t in ("[", "(", "one of", "only applies")), str(info.value)


# ----------------------------------------------------------------------------------------------
# Pearson correlation (Table 5.10)


def test_pearson_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=12)
    b = 0.7 * a + rng.normal(scale=0.5, size=12)
    res = sharpness_robustness_correlation(a, b)
    ref = stats.pearsonr(a, b)
    assert res["n"] == 12
    assert res["r"] == pytest.approx(ref.statistic, abs=1e-12)
    assert res["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert sharpness_robustness_correlation(list(a), list(-b))["r"] == pytest.approx(-ref.statistic, abs=1e-12)


@pytest.mark.parametrize("a, b, match", [
    ([1.0, 2.0], [3.0, 1.0], "at least 3"),
    ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], "sharpness is constant"),
    ([1.0, 2.0, 3.0], [0.5, 0.5, 0.5], "robustness is constant"),
    ([1.0, 2.0, 3.0], [1.0, 2.0], "one pair per network"),
    ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], "finite"),
])
def test_pearson_refuses_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        sharpness_robustness_correlation(a, b)


# ----------------------------------------------------------------------------------------------
# robustness gap (§5.4.4)


def test_robustness_gap(trained):
    model, x, y = trained
    r = robustness_gap(model, x, y, sigma_c=0.4, draws=10, seed=0)
    clean = float(mc_evaluate(model, x, y, MemoryMap(), draws=1, device="cpu").accuracy.values[0])
    assert r["clean_accuracy"] == clean and r["draws"] == 10
    assert r["gap"] == pytest.approx(clean - r["noisy_accuracy"])
    # σ_c = 0.4 costs accuracy: the one-sided 99 % lower confidence bound of the mean drop is > 0
    lower = r["gap"] - stats.t.ppf(0.99, 9) * r["gap_std"] / math.sqrt(10)
    assert lower > 0, r
    with pytest.raises(KnobError, match="sigma_c"):
        robustness_gap(model, x, y, sigma_c=0.0)
