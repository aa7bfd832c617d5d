"""Analytic output MSE and power (MemSE approach, [159]) against closed forms and Monte Carlo.

Statistical comparisons follow STYLE §15: an analytic value is checked against the Student-t
95 % confidence interval of the Monte-Carlo mean (widened by 10 % where the analytic value is an
approximation).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats
from torch.func import functional_call, jacrev, vmap

from workbench.analysis.memse import mc_output_mse, memse, memse_fast, read_variance
from workbench.experiments.core import preset_config, train_model
from workbench.experiments.core import test_tensors as digits_test_tensors
from workbench.hardware import IdealMemory, InjectionMemory, KnobError, MemoryMap, MemristorMemory, make
from workbench.nn import NoisyLinear, build_model, noisy_layers, weights_as_given
from workbench.nn.deploy import default_g_u, deploy, g_u_memory_map

pytestmark = pytest.mark.usefixtures("single_thread")


def within_ci(value: float, mc, widen: float = 0.0, key: str = "mse") -> bool:
    lo, hi = mc.attrs[f"{key}_ci95_low"], mc.attrs[f"{key}_ci95_high"]
    return lo * (1 - widen) <= value <= hi * (1 + widen)


# ------------------------------------------------------------------------------------------
# one linear layer: exact


@pytest.fixture(scope="module")
def linear_layer():
    torch.manual_seed(0)
    net = deploy(nn.Sequential(NoisyLinear(12, 5)))
    x = torch.randn(40, 12)
    return net, x


@pytest.mark.parametrize("memory", [
    {"noise": "multiplicative", "sigma_c": 0.1},
    {"noise": "multiplicative", "sigma_c": 0.2, "g_min": 2.0},
    {"noise": "additive", "sigma": 0.8, "g_u": 10.0},
])
def test_single_linear_layer_is_exact(linear_layer, memory):
    net, x = linear_layer
    mem = make(MemristorMemory, **memory)
    matrix = net[0].weight.detach().double()                         # [W | b], (5, 13)
    x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()       # the bias row's input is 1
    gp, gm, k = mem.program(matrix)
    if mem.noise == "multiplicative":
        v = mem.sigma_c ** 2 * (gp ** 2 + gm ** 2) / k ** 2
    else:
        v = torch.full_like(matrix, 2 * mem.sigma ** 2 / float(k) ** 2)
    closed = float((x1 ** 2 @ v.T).mean())                          # mean_b,j Σ_i V_ji x_bi²
    for cov in ("full", "diagonal"):
        ds = memse(net, x, mem, covariance=cov, dtype=torch.float64)
        assert float(ds.mse) == pytest.approx(closed, rel=1e-9)
        assert float(ds.mse_bias2) == pytest.approx(0.0, abs=1e-20)
        assert np.allclose(ds["mean"].values, net(x).detach().numpy(), atol=1e-5)
    fast = memse_fast(net, x, mem)                                   # first order is exact for one layer
    assert float(fast.mse) == pytest.approx(closed, rel=1e-5)
    assert float(fast.power) == pytest.approx(float(ds.power), rel=1e-5)
    mc = mc_output_mse(net, x, mem, draws=2000, seed=0)
    assert within_ci(closed, mc), (closed, mc.attrs)
    assert within_ci(float(ds.power), mc, key="power"), (float(ds.power), mc.attrs)
    # expected power in closed form: x∘x on E|g̃|, x on g± (eq 3.41–3.44 in expectation)
    if mem.noise == "multiplicative" and mem.g_min == 0:
        s = mem.sigma_c
        e_abs = (1 - 2 * stats.norm.cdf(-1 / s) + 2 * s * stats.norm.pdf(1 / s))   # E|δ|, δ ~ N(1, s²)
        want = float(((x1 ** 2) @ ((gp + gm) * e_abs).T).sum() + (x1 @ (gp + gm).T).sum()) / len(x)
        assert float(ds.power) == pytest.approx(want, rel=1e-6)


def test_read_variance_matches_reads():
    torch.manual_seed(0)
    w = torch.randn(6, 7)
    gen = torch.Generator().manual_seed(0)
    for mem in (make(MemristorMemory, noise="multiplicative", sigma_c=0.2, normalise="column"),
                make(MemristorMemory, noise="additive", sigma=1.0, g_u=5.0, g_min=1.0),
                make(InjectionMemory, sigma_g=2.0)):
        reads = torch.stack([mem.read(w, gen).weight for _ in range(3000)])
        v = read_variance(mem, w)
        emp = reads.var(0)
        lo, hi = stats.chi2.ppf([0.00005, 0.99995], 2999) / 2999
        assert torch.all(emp >= v * lo) and torch.all(emp <= v * hi), mem
    assert torch.equal(read_variance(IdealMemory(), w), torch.zeros_like(w))


# ------------------------------------------------------------------------------------------
# a small trained CNN: analytic vs Monte Carlo


@pytest.fixture(scope="module")
def small_cnn():
    cfg = preset_config("digits-cnn", epochs=3, width=0.25)
    x, _ = digits_test_tensors(cfg)
    model = train_model(cfg).model
    return model, deploy(model), x[:48]


@pytest.mark.parametrize("noise", ["multiplicative", "additive"])
def test_small_cnn_mse_and_power_match_monte_carlo(small_cnn, noise):
    """Small noise (σ_c = 0.05, or additive σ with the per-layer g_u^d = ‖W‖∞ map): the analytic
    MSE is within 10 % of Monte Carlo at 95 % confidence, the expected power inside the CI."""
    _, net, x = small_cnn
    if noise == "multiplicative":
        mm = MemoryMap(make(MemristorMemory, noise="multiplicative", sigma_c=0.05))
    else:
        mm = g_u_memory_map(default_g_u(net), noise="additive", sigma=0.02)
    ds = memse(net, x, mm)
    assert ds.attrs["covariance"] == "full"
    mc = mc_output_mse(net, x, mm, draws=600, seed=1)
    assert within_ci(float(ds.mse), mc, widen=0.10), (float(ds.mse), mc.attrs)
    assert within_ci(float(ds.power), mc, key="power"), (float(ds.power), mc.attrs)
    per_layer = mc.layer_power.mean("draw")
    assert np.allclose(ds.layer_power.values, per_layer.values, rtol=0.01)
    # the predicted output mean is the Monte-Carlo mean within its noise
    sem = np.sqrt(ds["variance"].values / mc.attrs["draws"])
    assert np.mean(np.abs(ds["mean"].values - mc["output_mean"].values) <= 4 * sem + 1e-6) > 0.99


def test_diagonal_covariance_underestimates_unfold_repeat(small_cnn):
    """Dropping covariances ignores that one draw is shared by every patch: on a CNN the diagonal
    estimate is far below the full one (documented as a rough figure)."""
    _, net, x = small_cnn
    mem = make(MemristorMemory, noise="multiplicative", sigma_c=0.05)
    full = float(memse(net, x[:16], mem, covariance="full").mse)
    diag = memse(net, x[:16], mem, covariance="diagonal")
    assert diag.attrs["covariance"] == "diagonal"
    assert 0 < float(diag.mse) < 0.7 * full
    assert float(diag.power) == pytest.approx(float(memse(net, x[:16], mem, covariance="full").power), rel=0.01)


def test_unfolded_batchnorm_gives_the_same_mse(small_cnn):
    """Multiplicative noise is relative to each weight, so folding a batch norm (a per-channel
    scale of the weights) does not change the output error: the net with digital BN and bias
    gives the MSE of the folded one."""
    model, _, x = small_cnn
    mem = make(MemristorMemory, noise="multiplicative", sigma_c=0.05)
    folded = deploy(model, bias_in_crossbar=False)
    a = float(memse(model, x[:16], mem).mse)
    b = float(memse(folded, x[:16], mem).mse)
    assert a == pytest.approx(b, rel=1e-4)


def test_zero_noise_is_the_clean_network(small_cnn):
    _, net, x = small_cnn
    ds = memse(net, x[:8], IdealMemory())
    assert float(ds.mse) == 0.0 and float(ds.power) == 0.0
    with torch.no_grad():
        assert np.allclose(ds["clean"].values, net(x[:8]).numpy(), atol=1e-4)
    assert np.array_equal(ds["mean"].values, ds["clean"].values)


def test_errors_are_clear(small_cnn):
    _, net, x = small_cnn
    mem = make(MemristorMemory, sigma_c=0.05)
    with pytest.raises(KnobError, match="covariance"):
        memse(net, x, mem, covariance="dense")
    with pytest.raises(KeyError, match="does not have"):
        memse(net, x, MemoryMap(mem, {"nope": mem}))
    wrn = build_model("wrn", depth=10, k=1, in_channels=1, num_classes=10, image_size=8).eval()
    with pytest.raises(NotImplementedError, match="residual"):
        memse(wrn, x[:2], mem)
    with pytest.raises(NotImplementedError, match="ReLU6|hardtanh|not supported"):
        memse(nn.Sequential(NoisyLinear(4, 3), nn.ReLU6()), torch.randn(2, 4), mem)


# ------------------------------------------------------------------------------------------
# fast mode (first order in the weight noise)


def jacobian_reference(net, x, mem) -> np.ndarray:
    """``Σ_w V_w (∂y_o/∂w)²`` per layer from full per-sample Jacobians (torch.func), mean over samples and outputs."""
    layers = noisy_layers(net)
    params = {f"{n}.weight": layer.quantized_weight().detach() for n, layer in layers.items()}

    def f(p, xi):
        return functional_call(net, p, (xi[None],))[0]
    with weights_as_given():
        jac = vmap(jacrev(f), in_dims=(None, 0))(params, x)
    n_out = jac[next(iter(jac))].shape[1]
    return np.array([float((jac[k] ** 2 * read_variance(mem, params[k])).sum().detach()) / (len(x) * n_out)
                     for k in params])


@pytest.mark.parametrize("which", ["deployed", "digital batch norm, in-place ReLU", "residual"])
def test_fast_mode_is_the_first_order_variance(small_cnn, which):
    """Per layer, the fast mode's MSE is ``Σ_w V_w (∂y/∂w)²`` with per-sample gradients that sum
    the patches sharing a draw — checked against full Jacobians, also on a residual net, which
    the full-covariance mode refuses."""
    model, net, x = small_cnn
    if which == "residual":
        torch.manual_seed(0)
        net = build_model("wrn", depth=10, k=1, in_channels=1, num_classes=10, image_size=8).eval()
    elif which != "deployed":
        net = model.eval()
    mem = make(MemristorMemory, noise="multiplicative", sigma_c=0.05)
    fast = memse_fast(net, x[:8], mem)
    assert np.allclose(fast.layer_mse.values, jacobian_reference(net, x[:8], mem), rtol=1e-4, atol=1e-12)
    assert float(fast.mse) == pytest.approx(float(fast.layer_mse.sum()), rel=1e-5)
    assert float(fast.mse_bias2) == 0.0 and np.array_equal(fast["mean"].values, fast["clean"].values)


def test_fast_mode_matches_monte_carlo_on_digits(small_cnn):
    """σ_c = 0.05 on the deployed digits CNN: the fast MSE is within 10 % of the Monte-Carlo MSE
    at 95 % confidence (inside the CI widened by 10 %), and its power, which neglects the
    activations' variance, within 1 % of the Monte-Carlo mean."""
    _, net, x = small_cnn
    mem = make(MemristorMemory, noise="multiplicative", sigma_c=0.05)
    fast = memse_fast(net, x, mem)
    mc = mc_output_mse(net, x, mem, draws=600, seed=2)
    assert within_ci(float(fast.mse), mc, widen=0.10), (float(fast.mse), mc.attrs)
    assert float(fast.power) == pytest.approx(mc.attrs["power_mean"], rel=0.01)


def test_fast_mode_scales_with_sigma_squared(small_cnn):
    _, net, x = small_cnn
    a, b = (float(memse_fast(net, x[:8], make(MemristorMemory, sigma_c=s)).mse) for s in (0.02, 0.1))
    assert b / a == pytest.approx(25.0, rel=1e-4)
    with pytest.raises(KnobError, match="chunk"):
        memse_fast(net, x, make(MemristorMemory, sigma_c=0.1), chunk=0)


# ------------------------------------------------------------------------------------------
# workbench estimate


def run_cli(capsys, *args) -> tuple[int, str, str]:
    from workbench.cli import main
    rc = main(["estimate", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_estimate_command_reports_analytic_and_monte_carlo_fields(tmp_path, capsys):
    common = ["--preset", "digits-cnn", "--set", "epochs=3", "--set", "width=0.25", "--memory", "memristor",
              "--sigma-c", "0.05", "--cache-dir", str(tmp_path), "--device", "cpu", "--json"]
    rc, out, _ = run_cli(capsys, *common, "--check-ci", "0.15")
    assert rc == 0
    r = json.loads(out)
    assert r["mode"] == "fast" and r["inputs"] == 64 and r["memory"]["sigma_c"] == 0.05
    assert r["output_mse"] > 0 and r["power"] > 0 and r["estimate_seconds"] > 0 and r["mc_seconds"] > 0
    lo, hi, m = r["mc_ci95_low"], r["mc_ci95_high"], r["mc_output_mse"]
    assert lo < m < hi and (hi - lo) / 2 <= 0.15 * m * (1 + 1e-9) and r["mc_draws"] >= 2
    assert lo * 0.9 <= r["output_mse"] <= hi * 1.1                  # the stated 10 % bound, CI-aware
    assert r["relative_error"] == pytest.approx(r["output_mse"] / m - 1)
    assert r["mc_power"] == pytest.approx(r["power"], rel=0.01)
    rc, out, _ = run_cli(capsys, *common, "--mode", "full")
    full = json.loads(out)
    assert rc == 0 and full["mode"] == "full" and "mc_output_mse" not in full
    assert full["output_mse"] == pytest.approx(r["output_mse"], rel=0.05)


@pytest.mark.parametrize("args, knob", [
    (["--memory", "sram"], "memory"),
    (["--sigma-c", "2"], "sigma_c"),
    (["--sigma-c", "0.1", "--mode", "turbo"], "mode"),
    (["--sigma-c", "0.1", "--check-ci", "0"], "check_ci"),
    (["--sigma-c", "0.1", "--inputs", "1"], "inputs"),
])
def test_estimate_command_refuses_bad_knobs_by_name(tmp_path, capsys, args, knob):
    rc, out, err = run_cli(capsys, *args, "--cache-dir", str(tmp_path), "--json")
    assert rc == 2 and out == "" and knob in err
    assert not any(tmp_path.iterdir())                              # refused before any training
