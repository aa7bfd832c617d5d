"""Deployment onto memristor crossbars (thesis §3.3.2, ch. 6): batch-norm folding, the bias as an
extra crossbar row of input 1, Unfold-Repeat (one draw for every patch), the crossbar power of
eq 3.41–3.44 with the bias row, ``g_u^d = ‖W‖∞`` (eq 6.1), and ``mc_evaluate`` on a deployed net.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats
from torch.func import functional_call

from workbench.analysis.montecarlo import layer_power, mc_evaluate, read_weights
from workbench.hardware import MemoryMap, MemristorMemory, crossbar_power, make
from workbench.nn import (
    NoisyConv2d,
    NoisyLinear,
    SmallCNN,
    build_model,
    noisy_layers,
    set_generator,
    set_memory,
    weights_as_given,
)
from workbench.nn.deploy import (
    CrossbarConv2d,
    CrossbarLinear,
    crossbar_layers,
    default_g_u,
    deploy,
    fold_batchnorm,
    g_u_memory_map,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.25)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.5)
    return model.eval()


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return float((a - b).abs().max()) <= atol * max(1.0, float(b.abs().max()))


# ------------------------------------------------------------------------------------------
# folding and the bias row leave the clean function unchanged


def test_deploy_smallcnn_keeps_clean_outputs(trained):
    model, x, _ = trained
    ref = model.eval()(x)
    for fold, row in [(True, True), (True, False), (False, True), (False, False)]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")        # every BN of SmallCNN folds: no warning
            net = deploy(model, fold_bn=fold, bias_in_crossbar=row)
        with torch.no_grad():
            assert close(net(x), ref), (fold, row)
        assert not net.training
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        assert len(bns) == (0 if fold else 3)
    net = deploy(model)
    layers = crossbar_layers(net)
    assert list(layers) == list(noisy_layers(model))
    for layer in layers.values():
        assert layer.bias_row and layer.bias is None and layer.weight.dim() == 2
        assert layer.weight.shape == (layer.kernel.shape[0], layer.kernel[0].numel() + 1)
    # the original model is untouched
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3
    assert isinstance(model.features[0], NoisyConv2d) and not isinstance(model.features[0], CrossbarConv2d)


def test_fold_batchnorm_only_folds_and_copies(trained):
    model, x, _ = trained
    net = fold_batchnorm(model)
    assert [type(m).__name__ for m in net.features][:3] == ["NoisyConv2d", "Identity", "ReLU"]
    assert net.features[0].bias is not None and model.features[0].bias is None
    with torch.no_grad():
        assert close(net(x), model(x))


def test_wideresnet_fold_with_random_bn_statistics(trained):
    _, x, _ = trained
    torch.manual_seed(0)
    model = randomise_bn(build_model("wrn", depth=10, k=1, in_channels=1, num_classes=10, image_size=8))
    with pytest.warns(UserWarning, match="left unfolded"):
        net = deploy(model)
    with torch.no_grad():
        assert close(net(x), model(x))
    # conv1 → bn2 inside each pre-activation block folds; bn1 (after a residual sum) and the final
    # bn stay as digital affine ops
    for i in range(3):
        assert isinstance(net.blocks[i].bn2, nn.Identity)
        assert isinstance(net.blocks[i].bn1, nn.BatchNorm2d)
    assert isinstance(net.bn, nn.BatchNorm2d)
    with pytest.raises(ValueError, match="blocks.1.bn1"):
        fold_batchnorm(model, strict=True)


def test_resnet18_folds_every_batchnorm(trained):
    _, x, _ = trained
    torch.manual_seed(0)
    model = randomise_bn(build_model("resnet18", in_channels=1, num_classes=10, image_size=8, width=0.125))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = deploy(model, strict=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    with torch.no_grad():
        assert close(net(x), model(x))


def test_linear_batchnorm1d_and_untraceable_models():
    torch.manual_seed(0)
    mlp = nn.Sequential(NoisyLinear(6, 5, bias=False), nn.BatchNorm1d(5), nn.ReLU(), NoisyLinear(5, 3))
    with torch.no_grad():
        bn = mlp[1]
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.normal_(), bn.bias.normal_()
    mlp.eval()
    x = torch.randn(7, 6)
    net = deploy(mlp, strict=True)
    assert isinstance(net[1], nn.Identity) and net[0].weight.shape == (5, 7)
    with torch.no_grad():
        assert close(net(x), mlp(x))

    class Branchy(nn.Module):                     # data-dependent control flow: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(NoisyConv2d(1, 2, 3, padding=1, bias=False), nn.BatchNorm2d(2))
            self.conv = NoisyConv2d(2, 2, 1, bias=False)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.body(x)
            return self.bn(self.conv(y)) if float(y.sum()) > 0 else y

    model = randomise_bn(Branchy())
    with pytest.warns(UserWarning, match="not traceable"):
        net = fold_batchnorm(model)
    assert isinstance(net.body[1], nn.Identity) and isinstance(net.bn, nn.BatchNorm2d)
    xi = torch.randn(3, 1, 5, 5)
    with torch.no_grad():
        assert close(net(xi), model(xi))


def test_fold_after_deploy_folds_into_the_bias_row():
    torch.manual_seed(0)
    model = randomise_bn(nn.Sequential(NoisyConv2d(2, 3, 3, bias=True), nn.BatchNorm2d(3)))
    net = deploy(model, fold_bn=False)
    assert net[0].bias_row and isinstance(net[1], nn.BatchNorm2d)
    folded = fold_batchnorm(net, strict=True)
    assert isinstance(folded[1], nn.Identity) and folded[0].bias is None
    x = torch.randn(2, 2, 5, 5)
    with torch.no_grad():
        assert close(folded(x), model(x))


def test_binary_layers_are_refused():
    model = SmallCNN(width=0.25, binary=True).eval()
    with pytest.raises(ValueError, match="BinaryConnect"):
        fold_batchnorm(model)
    with pytest.raises(ValueError, match="BinaryConnect"):
        deploy(model, fold_bn=False)


# ------------------------------------------------------------------------------------------
# crossbar layers, g_u


def test_crossbar_layer_matrix_and_default_g_u():
    torch.manual_seed(0)
    lin = NoisyLinear(4, 3)
    with torch.no_grad():
        lin.bias.copy_(torch.tensor([0.1, -5.0, 0.2]))       # the bias dominates ‖[W | b]‖∞
    net = deploy(nn.Sequential(lin, nn.ReLU()))
    xb = net[0]
    assert isinstance(xb, CrossbarLinear)
    assert torch.equal(xb.weight[:, :4], lin.weight) and torch.equal(xb.weight[:, 4], lin.bias)
    assert torch.equal(xb.kernel, lin.weight) and torch.equal(xb.crossbar_bias, lin.bias)
    assert default_g_u(net) == {"0": pytest.approx(5.0)}
    assert default_g_u(nn.Sequential(lin)) == {"0": pytest.approx(float(lin.weight.detach().abs().max()))}
    digital = deploy(nn.Sequential(lin), bias_in_crossbar=False)[0]
    assert digital.weight.shape == (3, 4) and torch.equal(digital.bias, lin.bias)
    mm = g_u_memory_map({"0": 30.0, "1": 2.0}, noise="additive", sigma=0.01)
    assert mm["0"].g_u == 30.0 and mm["0"].g_max == 30.0 and mm["0"].g_min == 0.0
    assert mm["1"].g_u == 2.0 and mm["1"].g_max == 25.0 and mm["1"].sigma == 0.01
    mm["0"].check()
    assert g_u_memory_map({"0": 2.0}, scale=1.5)["0"].g_u == pytest.approx(3.0)


def test_conv_crossbar_layout_and_groups():
    torch.manual_seed(0)
    conv = NoisyConv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=True)
    net = deploy(nn.Sequential(conv))
    xb = net[0]
    assert isinstance(xb, CrossbarConv2d) and xb.weight.shape == (6, 2 * 9 + 1)
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        assert close(net(x), conv(x))


# ------------------------------------------------------------------------------------------
# the bias row is read through the memory: it gets noise


def test_bias_row_gets_the_column_noise():
    """Zero input: the output is the read bias.  Additive noise ε ~ N(0, σ²) on g+ and g- gives the
    bias a variance 2σ²/k² (k = g_u/‖[W|b]‖∞) with the bias row, none without."""
    torch.manual_seed(0)
    lin = NoisyLinear(5, 4)
    mem = make(MemristorMemory, noise="additive", sigma=0.5, g_u=10.0)
    gen = torch.Generator().manual_seed(1)
    z = torch.zeros(1, 5)
    outs = {}
    for row in (True, False):
        net = set_generator(set_memory(deploy(nn.Sequential(lin), bias_in_crossbar=row), mem), gen)
        with torch.no_grad():
            outs[row] = torch.stack([net(z)[0] for _ in range(400)])
    assert torch.equal(outs[False], lin.bias.detach().expand(400, 4))
    k = 10.0 / float(torch.cat([lin.weight.flatten(), lin.bias]).detach().abs().max())
    expected = 2 * 0.5 ** 2 / k ** 2
    var = outs[True].var(0, unbiased=True).numpy()
    n = 400
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], n - 1) / (n - 1)      # per-column 99.9 % interval
    assert np.all(var >= expected * lo) and np.all(var <= expected * hi), (var, expected)
    assert torch.allclose(outs[True].mean(0), lin.bias.detach(), atol=4 * (expected / n) ** 0.5)


def test_bias_row_adds_output_variance_in_a_network(trained):
    model, _, _ = trained
    z = torch.zeros(1, 1, 8, 8)
    var = {}
    for row in (True, False):
        net = deploy(model, bias_in_crossbar=row)
        mm = g_u_memory_map(default_g_u(net), noise="additive", sigma=0.2)
        set_generator(set_memory(net, mm), torch.Generator().manual_seed(0))
        with torch.no_grad():
            var[row] = float(torch.stack([net(z)[0] for _ in range(200)]).var(0).mean())
    assert var[True] > 1.5 * var[False] > 0


# ------------------------------------------------------------------------------------------
# Unfold-Repeat


def test_unfold_repeat_one_draw_for_every_patch():
    """A conv applied to an input made of two identical patches gives identical outputs under
    noise: every patch of one forward pass sees the same noisy matrix."""
    torch.manual_seed(0)
    net = deploy(nn.Sequential(NoisyConv2d(2, 3, 3, stride=3, bias=True)))
    patch = torch.randn(1, 2, 3, 3)
    x = torch.cat([patch, patch], dim=3)                       # two identical patches side by side
    with torch.no_grad():
        y0 = net(x)
        set_memory(net, make(MemristorMemory, noise="multiplicative", sigma_c=0.3))
        set_generator(net, torch.Generator().manual_seed(0))
        ys = [net(x) for _ in range(5)]
    for y in ys:
        assert y.shape == (1, 3, 1, 2)
        assert torch.equal(y[..., 0], y[..., 1])
        assert not torch.allclose(y, y0, atol=1e-4)            # noisy
    assert not torch.equal(ys[0], ys[1])                       # a fresh draw per pass


# ------------------------------------------------------------------------------------------
# power (eq 3.41–3.44) counts the bias row


def power_loop(x, gp, gm, stride, padding):
    """Eq 3.42–3.44 element by element for a conv crossbar ``[W | b]``: every output position
    drives the patch rows with ``x`` (zero padding) and the bias row with 1."""
    xp = torch.nn.functional.pad(x, (padding,) * 4)
    n, cin, h, w = xp.shape
    cout, cols = gp.shape
    k = int(round(((cols - 1) // cin) ** 0.5))
    total = 0.0
    for b in range(n):
        for o in range(cout):
            for i in range(0, h - k + 1, stride):
                for j in range(0, w - k + 1, stride):
                    inputs = [float(xp[b, c, i + u, j + v]) for c in range(cin) for u in range(k) for v in range(k)]
                    inputs.append(1.0)                          # the bias row
                    for r, xin in enumerate(inputs):
                        p, m = float(gp[o, r]), float(gm[o, r])
                        total += xin * xin * (abs(p) + abs(m))   # eq 3.42
                        total += xin * p + xin * m               # eq 3.43, 3.44
    return total


def test_power_includes_the_bias_row():
    torch.manual_seed(0)
    net = deploy(nn.Sequential(NoisyConv2d(2, 2, 2, stride=1, padding=1, bias=True)))
    mem = make(MemristorMemory, noise="additive", sigma=0.3, g_u=5.0)
    set_memory(net, mem)
    x = torch.randn(2, 2, 3, 3)
    reads = read_weights(net, torch.Generator().manual_seed(0))
    _, r = reads["0"]
    gp, gm = r.extra["g_plus"], r.extra["g_minus"]
    assert gp.shape == (2, 2 * 4 + 1)
    want = power_loop(x, gp, gm, stride=1, padding=1)
    got = layer_power(net, reads, {"0": x})["0"] * len(x)
    assert got == pytest.approx(want, rel=1e-5)
    assert float(crossbar_power(net[0].crossbar_op(), x, gp, gm)) == pytest.approx(want, rel=1e-5)
    # the bias row's share: 16 output positions per sample (3×3 input, k=2, padding 1)
    bias_share = 2 * 16 * float((gp[:, -1].abs() + gm[:, -1].abs() + gp[:, -1] + gm[:, -1]).sum())
    no_row = float(crossbar_power(lambda xx, g: torch.nn.functional.conv2d(xx, g[:, :-1].reshape(2, 2, 2, 2),
                                                                            padding=1), x, gp, gm))
    assert want - no_row == pytest.approx(bias_share, rel=1e-5)


# ------------------------------------------------------------------------------------------
# mc_evaluate on a deployed network


def test_mc_evaluate_on_deployed_net_with_default_g_u(trained):
    model, x, y = trained
    net = deploy(model)
    g_u = default_g_u(net)
    assert set(g_u) == set(crossbar_layers(net))
    mm = g_u_memory_map(g_u, noise="additive", sigma=0.001)        # ch. 6: g = |w|, σ = 0.001
    ds = mc_evaluate(net, x, y, mm, draws=4, device="cpu")
    dsv = mc_evaluate(net, x, y, mm, draws=4, device="cpu", mode="vectorised")
    clean = float((model(x).argmax(1) == y).float().mean())
    assert list(ds.layer.values) == list(g_u)
    assert np.array_equal(ds.accuracy.values, dsv.accuracy.values)
    assert np.allclose(ds.power.values, dsv.power.values)
    assert abs(float(ds.accuracy.mean()) - clean) < 0.02
    assert np.all(ds.layer_power.values > 0)
    # layers keep their own (ideal) memory after mc_evaluate
    assert all(layer.memory.technology == "ideal" for layer in crossbar_layers(net).values())


def test_mc_evaluate_replays_the_noisy_bias():
    """mc_evaluate reads ``layer.read_weight()`` and replays it with ``functional_call`` under
    ``weights_as_given()``: the read ``[W~ | b~]`` carries the bias noise."""
    torch.manual_seed(0)
    net = deploy(nn.Sequential(NoisyLinear(3, 2)))
    set_memory(net, make(MemristorMemory, noise="additive", sigma=0.5))
    reads = read_weights(net, torch.Generator().manual_seed(0))
    w, _ = reads["0"]
    with weights_as_given(), torch.no_grad():
        out = functional_call(net, {"0.weight": w}, (torch.zeros(1, 3),))
    assert torch.equal(out[0], w[:, -1])
    assert not torch.allclose(w[:, -1], net[0].crossbar_bias, atol=1e-3)
    assert MemoryMap(net[0].memory)["0"] is net[0].memory
