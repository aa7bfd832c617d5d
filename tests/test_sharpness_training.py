"""Chapter-5 training: SAM-family optimizers through TrainConfig, the eq 5.4 noise-injection memory,
±α·std clipping, fine-tuning from a local file, and AdaBS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats

from workbench.analysis.adabs import adabs, batchnorm_layers
from workbench.datasets import as_tensors, load_dataset
from workbench.experiments.core import preset_config
from workbench.hardware import InjectionMemory, KnobError, MemoryMap, MemristorMemory, memory_from_dict
from workbench.nn import SmallCNN, clip_weights_, noisy_layers
from workbench.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("single_thread")


# ------------------------------------------------------------------------------ config


def test_config_sam_knobs_are_validated():
    cfg = TrainConfig.from_dict({"sam": "samson2", "rho": 0.5})
    assert cfg.sam == "samson2" and cfg.rho == 0.5
    with pytest.raises(KnobError, match=r"rho=.*sam"):
        TrainConfig.from_dict({"rho": 0.5})                 # ρ without a sharpness-aware optimizer
    with pytest.raises(KnobError, match=r"rho.*\(0, 10\]"):
        TrainConfig.from_dict({"sam": "sam", "rho": 0.0})
    with pytest.raises(KnobError, match="sam"):
        TrainConfig.from_dict({"sam": "sgdx"})
    with pytest.raises(KnobError, match="clip_std"):
        TrainConfig.from_dict({"clip_std": -1.0})
    # ρ is part of the cache key; None means the method's default
    assert TrainConfig.from_dict({"sam": "sam"}).to_dict()["rho"] is None


# ------------------------------------------------------------------------------ eq 5.4 noise injection


def test_injection_noise_std_is_eq_5_4_within_its_chi_square_interval():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(200, 500, generator=g, dtype=torch.float64) * 0.05
    mem = InjectionMemory(sigma_g=0.94, g_u=25.0)
    sigma_n = float(w.abs().max()) * 0.94 / 25.0
    assert float(mem.sigma_n(w)) == pytest.approx(sigma_n, rel=1e-12)
    eps = (mem.read(w, g).weight - w).flatten().numpy()
    n = eps.size
    # (n-1) s² / σ² ~ χ²(n-1): the sample variance must lie in its 99.9 % interval
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], n - 1) * sigma_n ** 2 / (n - 1)
    assert lo < eps.var(ddof=1) < hi
    assert abs(eps.mean()) < 3.3 * sigma_n / math.sqrt(n)
    assert memory_from_dict({"technology": "injection", "sigma_g": 0.0}).is_noisy is False
    with pytest.raises(KnobError, match="g_u"):
        memory_from_dict({"technology": "injection", "g_u": 0.0})


def test_clip_std_bounds_each_layer_by_alpha_times_its_std():
    torch.manual_seed(0)
    net = SmallCNN(width=0.5)
    before = {n: layer.weight.detach().clone() for n, layer in noisy_layers(net).items()}
    clip_weights_(net, alpha=1.5)
    for name, layer in noisy_layers(net).items():
        w0 = before[name]
        bound = 1.5 * float(w0.std())
        w = layer.weight.detach()
        assert float(w.abs().max()) <= bound + 1e-7
        inside = w0.abs() <= bound
        assert torch.equal(w[inside], w0[inside])          # weights inside the bound are untouched
        assert (~inside).any()       # uniform (Kaiming) init on ±b has std b/√3: 1.5 std < b


# ------------------------------------------------------------------------------ SAM in the trainer


def _digits():
    return load_dataset("digits")


def test_sam_step_with_rho_to_zero_trains_exactly_like_its_base_optimizer():
    data = _digits()
    base = preset_config("digits-cnn", epochs=1, width=0.25, schedule="constant")
    a = train(base, data, device="cpu").model
    b = train(base.replace(sam="sam", rho=1e-12), data, device="cpu").model
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb
        if pa.is_floating_point():
            assert torch.allclose(pa, pb, atol=1e-5), na
        else:
            assert torch.equal(pa, pb), na


def test_sam_training_updates_batchnorm_statistics_once_per_step():
    data = _digits()
    cfg = preset_config("digits-cnn", epochs=2, width=0.25, sam="samson2", rho=0.5, clip=0.2)
    net = train(cfg, data, device="cpu").model
    steps = 2 * math.ceil(len(data.train) / cfg.batch_size)
    for name, bn in batchnorm_layers(net).items():
        assert int(bn.num_batches_tracked) == steps, name
    for layer in noisy_layers(net).values():              # clipping c = 0.2 holds after every step
        assert float(layer.weight.detach().abs().max()) <= 0.2 + 1e-7


def test_sharpness_aware_and_baseline_training_reach_good_clean_accuracy():
    data = _digits()
    base = preset_config("digits-cnn", epochs=4, width=0.25)
    for over in (
        {"sam": "asam", "rho": 0.5},
        {"clip_std": 2.0, "train_memory": {"default": {"technology": "injection"}}},
    ):
        res = train(base.replace(**over), data, device="cpu")
        assert res.test_accuracy > 0.85, over


def test_init_weights_starts_from_a_local_file_and_refuses_a_bad_one(tmp_path):
    data = _digits()
    cfg = preset_config("digits-cnn", epochs=1, width=0.25)
    first = train(cfg, data, device="cpu").model
    path = tmp_path / "start.pt"
    torch.save(first.state_dict(), path)
    tuned = train(
        cfg.replace(init_weights=str(path), lr=1e-9, momentum=0.0, weight_decay=0.0), data, device="cpu"
    ).model
    for (n, p0), p1 in zip(first.state_dict().items(), tuned.state_dict().values()):
        if p0.is_floating_point() and "running" not in n:
            assert torch.allclose(p0, p1, atol=1e-6), n       # lr ≈ 0: still the loaded weights
    with pytest.raises(KnobError, match="init_weights .*no such file"):
        train(cfg.replace(init_weights=str(tmp_path / "missing.pt")), data, device="cpu")
    torch.save(preset_config("digits-cnn").to_dict(), tmp_path / "bad.pt")
    with pytest.raises(KnobError, match="init_weights .* not a state dict"):
        train(cfg.replace(init_weights=str(tmp_path / "bad.pt")), data, device="cpu")
    wide = SmallCNN(width=1.0)
    torch.save(wide.state_dict(), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match="does not fit"):
        train(cfg.replace(init_weights=str(tmp_path / "wide.pt")), data, device="cpu")


# ------------------------------------------------------------------------------ AdaBS


@pytest.fixture(scope="module")
def trained_small():
    return train(preset_config("digits-cnn", epochs=3, width=0.25), _digits(), device="cpu").model


def test_adabs_with_an_ideal_memory_gives_the_exact_calibration_statistics(trained_small):
    x, _ = as_tensors(_digits().train)
    net = adabs(trained_small, MemoryMap(), x, batch_size=len(x))       # one batch: plain batch statistics
    first_bn = batchnorm_layers(net)["features.1"]
    conv = net.features[0]
    with torch.no_grad():
        a = conv(x)
    assert torch.allclose(first_bn.running_mean, a.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(first_bn.running_var, a.var((0, 2, 3), unbiased=True), atol=1e-5)
    # the original is untouched, the copy is in eval mode with its original (ideal) memories
    assert not torch.equal(batchnorm_layers(trained_small)["features.1"].running_mean, first_bn.running_mean)
    assert not net.training and all(layer.memory.technology == "ideal" for layer in noisy_layers(net).values())


def test_adabs_under_noise_tracks_the_noisy_activation_statistics(trained_small):
    x, _ = as_tensors(_digits().train)
    mem = MemristorMemory(sigma_c=0.5)
    clean = adabs(trained_small, MemoryMap(), x)
    noisy = adabs(trained_small, mem, x, seed=1)
    again = adabs(trained_small, mem, x, seed=1)
    v_clean = batchnorm_layers(clean)["features.1"].running_var
    v_noisy = batchnorm_layers(noisy)["features.1"].running_var
    assert torch.equal(v_noisy, batchnorm_layers(again)["features.1"].running_var)     # seeded
    # multiplicative noise adds variance to the conv outputs: E[var] grows by σ_c²·E[Σ w²x²]
    assert float(v_noisy.mean()) > float(v_clean.mean())
    with pytest.raises(KnobError, match="batch_size"):
        adabs(trained_small, mem, x, batch_size=1)


def test_adabs_on_a_network_without_batchnorm_is_a_plain_copy():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    out = adabs(net, MemoryMap(), torch.randn(8, 1, 8, 8))
    assert out is not net and torch.equal(out[1].weight, net[1].weight)
    assert np.isfinite(out[1].weight.detach().numpy()).all()
