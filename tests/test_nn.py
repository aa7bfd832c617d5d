"""Tests of the quantisers (BinaryConnect sign, k-bit linear), the noisy conv/linear layers
(hardware-aware forward, straight-through backward, eq 3.13–3.16) and the model zoo."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench.hardware import IdealMemory, MemoryMap, MemristorMemory, SRAMMemory, binarize, make, quantize_linear
from workbench.hardware.quant import binary_output_scale, clip_latent_
from workbench.hardware.sram import flip_signs
from workbench.nn import (
    MODELS,
    NoisyConv2d,
    NoisyLinear,
    SmallCNN,
    WideResNet,
    build_model,
    clip_weights_,
    layer_param_counts,
    noisy_layers,
    set_generator,
    set_memory,
    weights_as_given,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------
# quantisers
# ------------------------------------------------------------------------------------------

def test_binarize_forward_and_ste_gradient():
    w = torch.tensor([-2.0, -1.0, -0.5, -0.0, 0.0, 0.3, 1.0, 1.5], requires_grad=True)
    wb = binarize(w)
    assert torch.equal(wb, torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]))   # sign(0) = +1
    g = torch.arange(1.0, 9.0)
    wb.backward(g)
    assert torch.equal(w.grad, g * torch.tensor([0.0, 1, 1, 1, 1, 1, 1, 0]))            # 1_{|w| ≤ 1}


def test_binarize_random_tensor():
    w = torch.randn(1000, generator=gen(0)) * 2
    w.requires_grad_()
    wb = binarize(w)
    assert torch.equal(wb, torch.where(w >= 0, 1.0, -1.0))
    wb.sum().backward()
    assert torch.equal(w.grad, (w.abs() <= 1).float())


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_quantize_linear_levels_and_error(bits):
    w = torch.randn(10_000, generator=gen(bits))
    w = torch.cat([w, -w])                      # symmetric, so both extreme codes ±qmax occur
    q = quantize_linear(w, bits)
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().max() / qmax
    levels = q.unique()
    assert levels.numel() <= 2 ** bits - 1
    if bits <= 4:
        assert levels.numel() == 2 ** bits - 1          # every level used by 20 000 Gaussian draws
    codes = levels / scale
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert float(codes.abs().max()) <= qmax + 1e-4
    assert float((q - w).abs().max()) <= float(scale) / 2 * (1 + 1e-5)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantize_linear_ste_gradient_is_identity(bits):
    """Identity for every weight, including those quantised to the extreme codes ±qmax."""
    w = torch.randn(500, generator=gen(1), requires_grad=True)
    g = torch.randn(500, generator=gen(2))
    quantize_linear(w, bits).backward(g)
    assert torch.allclose(w.grad, g, rtol=1e-5, atol=1e-6)


def test_quantize_linear_rejects_one_bit():
    with pytest.raises(ValueError, match="bits"):
        quantize_linear(torch.ones(3), 1)


def test_clip_latent():
    w = torch.tensor([-3.0, -0.5, 0.2, 2.0])
    clip_latent_(w, 1.0)
    assert torch.equal(w, torch.tensor([-1.0, -0.5, 0.2, 1.0]))
    assert binary_output_scale(50) == pytest.approx(math.sqrt(2 / 50))


# ------------------------------------------------------------------------------------------
# noisy layers: ideal memory == torch
# ------------------------------------------------------------------------------------------

def test_noisy_linear_ideal_equals_torch_linear():
    torch.manual_seed(0)
    layer = NoisyLinear(7, 5)
    ref = nn.Linear(7, 5)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(4, 7)
    assert isinstance(layer.memory, IdealMemory)
    assert torch.allclose(layer(x), ref(x), atol=1e-6)
    no_bias = NoisyLinear(7, 5, bias=False)
    assert torch.allclose(no_bias(x), F.linear(x, no_bias.weight), atol=1e-6)


@pytest.mark.parametrize("kw", [dict(kernel_size=3), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=1, stride=2), dict(kernel_size=3, padding=1, groups=2)])
def test_noisy_conv_ideal_equals_torch_conv(kw):
    torch.manual_seed(1)
    layer = NoisyConv2d(4, 6, **kw)
    ref = nn.Conv2d(4, 6, **kw)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 7, 7)
    assert torch.allclose(layer(x), ref(x), atol=1e-5)


def test_binary_layer_uses_sign_and_output_scale():
    torch.manual_seed(2)
    layer = NoisyConv2d(3, 4, 3, padding=1, binary=True)
    x = torch.randn(2, 3, 5, 5)
    expected = (F.conv2d(x, torch.where(layer.weight >= 0, 1.0, -1.0), padding=1)
                + layer.bias.view(1, -1, 1, 1)) * math.sqrt(2 / 27)
    assert torch.allclose(layer(x), expected, atol=1e-5)


# ------------------------------------------------------------------------------------------
# noisy layers: fresh draw per forward, straight-through gradient
# ------------------------------------------------------------------------------------------

NOISY_MEMORIES = {
    "memristor": lambda: make(MemristorMemory, sigma_c=0.2),
    "memristor_additive": lambda: make(MemristorMemory, noise="additive", sigma=1.0, g_min=0.5),
    "sram8": lambda: make(SRAMMemory, p=0.05, bits=8),
}


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("mem", list(NOISY_MEMORIES))
def test_noisy_forward_differs_and_gradient_is_straight_through(kind, mem):
    torch.manual_seed(3)
    memory = NOISY_MEMORIES[mem]()
    if kind == "linear":
        layer, x = NoisyLinear(8, 5), torch.randn(3, 8)
        def clean(xx, w, b):
            return F.linear(xx, w, b)
    else:
        layer, x = NoisyConv2d(3, 4, 3, stride=2, padding=1), torch.randn(2, 3, 6, 6)
        def clean(xx, w, b):
            return F.conv2d(xx, w, b, stride=2, padding=1)
    layer.memory = memory
    layer.generator = gen(7)
    y1 = layer(x)
    y2 = layer(x)
    assert not torch.allclose(y1, y2)                       # a fresh draw at every forward
    assert not torch.allclose(y1, clean(x, layer.weight, layer.bias))

    # replay the first draw: same generator seed
    layer.generator = gen(7)
    gout = torch.randn_like(y1)
    layer.zero_grad()
    y = layer(x)
    y.backward(gout)
    w_noisy = memory.read(layer.weight.detach(), gen(7)).weight.clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    y_ref = clean(x, w_noisy, b)
    y_ref.backward(gout)
    assert torch.allclose(y, y_ref, atol=1e-5)
    assert torch.allclose(layer.weight.grad, w_noisy.grad, atol=1e-5)   # dW~/dW := 1
    assert torch.allclose(layer.bias.grad, b.grad, atol=1e-5)


def test_binary_sram_layer_gradient_is_straight_through():
    torch.manual_seed(4)
    layer = NoisyLinear(10, 6, binary=True)
    with torch.no_grad():
        layer.weight[0, :5] = torch.tensor([1.5, -2.0, 1.0, -1.0, 0.0])   # outside/on the STE window
    layer.memory = make(SRAMMemory, p=0.2, bits=1)
    x = torch.randn(4, 10)
    layer.generator = gen(11)
    y = layer(x)
    gout = torch.randn_like(y)
    y.backward(gout)
    wb = torch.where(layer.weight >= 0, 1.0, -1.0).detach()
    w_noisy = layer.memory.read(wb, gen(11)).weight.clone().requires_grad_()
    assert not torch.equal(w_noisy, wb)                    # some flips happened
    assert torch.equal(w_noisy.detach(), flip_signs(wb, layer.memory.read(wb, gen(11)).extra["flips"]))
    y_ref = (F.linear(x, w_noisy) + layer.bias) * math.sqrt(2 / 10)
    y_ref.backward(gout)
    assert torch.allclose(y, y_ref, atol=1e-5)
    mask = (layer.weight.detach().abs() <= 1).float()
    assert torch.allclose(layer.weight.grad, w_noisy.grad * mask, atol=1e-5)
    assert layer.weight.grad[0, 0] == 0 and layer.weight.grad[0, 1] == 0


def test_weights_as_given_bypasses_quantiser_and_memory():
    torch.manual_seed(5)
    layer = NoisyLinear(6, 3, binary=True)
    layer.memory = make(SRAMMemory, p=0.5, bits=1)
    x = torch.randn(2, 6)
    with weights_as_given():
        y = layer(x)
    assert torch.allclose(y, (F.linear(x, layer.weight) + layer.bias) * math.sqrt(2 / 6), atol=1e-6)
    # the context is left: the memory is used again
    layer.memory = IdealMemory()
    assert torch.allclose(layer(x), (F.linear(x, torch.where(layer.weight >= 0, 1.0, -1.0)) + layer.bias)
                          * math.sqrt(2 / 6), atol=1e-6)


def test_set_generator_makes_model_reproducible():
    torch.manual_seed(6)
    model = SmallCNN(width=0.25).eval()
    set_memory(model, make(MemristorMemory, sigma_c=0.3))
    x = torch.randn(2, 1, 8, 8)
    set_generator(model, gen(1))
    a = model(x)
    set_generator(model, gen(1))
    b = model(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, model(x))
    assert all(layer.generator is not None for layer in noisy_layers(model).values())


# ------------------------------------------------------------------------------------------
# memory maps, clipping, parameter counts
# ------------------------------------------------------------------------------------------

def test_set_memory_map_and_unknown_layer():
    model = SmallCNN(width=0.25)
    names = list(noisy_layers(model))
    assert names == ["features.0", "features.3", "features.7", "classifier"]
    sram = make(SRAMMemory, p=1e-2, bits=8)
    mmap = MemoryMap(IdealMemory(), {"classifier": sram})
    set_memory(model, mmap)
    layers = noisy_layers(model)
    assert layers["classifier"].memory is sram
    assert all(isinstance(layers[n].memory, IdealMemory) for n in names[:-1])
    set_memory(model, make(MemristorMemory))
    assert all(isinstance(layer.memory, MemristorMemory) for layer in layers.values())
    set_memory(model, None)
    assert all(isinstance(layer.memory, IdealMemory) for layer in layers.values())
    with pytest.raises(KeyError, match="no_such_layer"):
        set_memory(model, MemoryMap(IdealMemory(), {"no_such_layer": sram}))
    with pytest.raises(KeyError):
        set_memory(model, MemoryMap().with_override("features.1", sram))     # a BatchNorm, not a noisy layer


def test_clip_weights():
    torch.manual_seed(7)
    model = nn.Sequential(NoisyLinear(4, 4, binary=True), NoisyLinear(4, 4, binary=False), nn.BatchNorm1d(4))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0).add_(torch.linspace(-3, 3, p.numel()).view_as(p))
    model.requires_grad_(False)
    before = model[1].weight.clone()
    clip_weights_(model)
    assert float(model[0].weight.abs().max()) == 1.0                  # BinaryConnect latent clip
    assert torch.equal(model[1].weight, before)                        # full-precision untouched without c
    assert float(model[2].weight.abs().max()) == 3.0                   # batch-norm never clipped
    clip_weights_(model, 0.2)
    assert float(model[0].weight.abs().max()) == pytest.approx(0.2)
    assert float(model[1].weight.abs().max()) == pytest.approx(0.2)
    assert torch.equal(model[1].weight, before.clamp(-0.2, 0.2))
    assert float(model[0].bias.abs().max()) == 3.0                     # biases are not clipped


def test_layer_param_counts_small_cnn_by_hand():
    counts = layer_param_counts(SmallCNN(in_channels=1, width=1.0))
    assert counts == {"features.0": 1 * 32 * 9, "features.3": 32 * 64 * 9, "features.7": 64 * 64 * 9,
                      "classifier": 4 * 64 * 10}


def test_wrn_28_10_has_29_layers_and_36_5M_weights():
    with torch.device("meta"):             # no memory, no init cost
        model = WideResNet(depth=28, k=10)
    counts = layer_param_counts(model)
    assert len(counts) == 29               # 1 stem + 12 blocks × 2 convs + 3 shortcuts + 1 linear
    total = sum(counts.values())
    assert abs(total - 36.5e6) < 0.1e6, total        # thesis Fig 4.1: ≈ 36.5 M weights
    assert counts["conv1"] == 3 * 16 * 9 and counts["fc"] == 640 * 10
    assert sum(1 for n in counts if n.endswith("shortcut")) == 3


def test_wrn_depth_must_be_6n_plus_4():
    with pytest.raises(ValueError, match="depth"):
        WideResNet(depth=12, k=1)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 8, 8)])
def test_zoo_models_forward(name, shape):
    torch.manual_seed(8)
    _, c, h, _ = shape
    model = build_model(name, in_channels=c, num_classes=7, image_size=h, depth=10, k=1,
                        width=0.25 if name in ("vgg11", "vgg13", "vgg16", "resnet18") else 1.0)
    x = torch.randn(shape)
    model.train()
    y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.sum().backward()
    assert all(layer.weight.grad is not None for layer in noisy_layers(model).values())
    model.eval()
    set_memory(model, make(SRAMMemory, p=1e-2, bits=8))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()


def test_zoo_binary_model_forward():
    model = build_model("small_cnn", in_channels=1, num_classes=10, image_size=8, binary=True)
    assert all(layer.binary for layer in noisy_layers(model).values())
    set_memory(model, make(SRAMMemory, p=0.1, bits=1))
    assert model.eval()(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_build_model_unknown_name():
    with pytest.raises(ValueError, match="model"):
        build_model("lenet", in_channels=1, num_classes=10, image_size=8)
