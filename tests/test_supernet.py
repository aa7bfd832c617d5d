"""The weight-sharing supernet of ch. 6: slicing, masks, BN recalibration, folding, training."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from workbench.datasets import as_tensors, load_dataset
from workbench.hardware import KnobError, MemristorMemory, SRAMMemory
from workbench.nas.supernet import (
    Supernet,
    SupernetConfig,
    calibration_tensor,
    fold_batchnorm,
    recalibrate_bn,
    train_supernet,
)
from workbench.nn import noisy_layers, set_generator, set_memory
from workbench.training.trainer import Cancelled

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dict(stem_width=8, stage_widths=[8, 16, 16], epochs=3, batch_size=128, lr=0.1)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def randomized():
    """A default-size supernet with random (non-trivial) BN statistics and affine parameters."""
    torch.manual_seed(0)
    net = Supernet(SupernetConfig())
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture(scope="module")
def trained(data):
    return train_supernet(SupernetConfig(**TINY), data)


def test_search_space_size_is_documented():
    space = Supernet().space
    size = space.size()
    assert size == {"architecture_encodings": 27 * 81 * 2 ** 9, "distinct_architectures": 81 * 14 ** 3,
                    "crossbar_layers": 32, "state_length": 48, "arch_length": 16}
    assert (
        len(space.layer_names()) == 32 and space.layer_names()[0] == "stem.conv" and space.layer_names()[-1] == "head"
    )


def test_subnet_output_equals_supernet_forward(randomized):
    space = randomized.space
    rng = np.random.default_rng(0)
    x = torch.randn(16, 1, 8, 8)
    archs = [space.largest(), space.smallest()] + [space.random_arch(rng) for _ in range(6)]
    for arch in archs:
        sub = randomized.subnet(arch)
        with torch.no_grad():
            torch.testing.assert_close(sub(x), randomized(x, arch), rtol=1e-5, atol=1e-5)
        # the weights are the supernet's first channels
        for name, layer in noisy_layers(sub).items():
            big = dict(randomized.named_modules())[name].weight
            torch.testing.assert_close(layer.weight, big[: layer.weight.shape[0], : layer.weight.shape[1]])
    # the state-vector form gives the same subnet
    s = space.encode(archs[3])
    assert randomized.subnet(s).arch == archs[3]


def test_shared_layers_read_their_slice_through_the_noisy_layer_path(randomized):
    """A shared layer reads only the subnet's slice, through NoisyMixin.read_weight: the same noise
    draw as the exported subnet's layers, and the same memory checks."""
    mem = MemristorMemory(noise="additive", sigma=0.05, g_min=0.0, g_max=2.0, g_u=1.0)
    arch = randomized.space.smallest()
    sub = randomized.subnet(arch)
    x = torch.randn(8, 1, 8, 8)
    outs = []
    for net in (randomized, sub):
        set_memory(net, mem)
        set_generator(net, torch.Generator().manual_seed(7))
        with torch.no_grad():
            outs.append(net(x, arch) if net is randomized else net(x))
        set_memory(net, None)
        set_generator(net, None)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        clean = randomized(x, arch)
    assert not torch.allclose(outs[0], clean, atol=1e-3)   # the noise reached the output
    randomized.stem.conv.memory = SRAMMemory(p=0.01, bits=1)   # past set_memory's check
    try:
        with pytest.raises(KnobError, match="sign bits"):
            randomized(x, arch)
    finally:
        set_memory(randomized, None)


def test_mask_matches_the_layers_a_subnet_has(randomized):
    space = randomized.space
    names = np.array(space.layer_names())
    rng = np.random.default_rng(1)
    for _ in range(12):
        arch = space.random_arch(rng)
        sub = randomized.subnet(arch)
        assert set(noisy_layers(sub)) == set(names[space.mask(np.array(arch.depth))])


def test_encode_decode_roundtrip(randomized):
    space = randomized.space
    rng = np.random.default_rng(2)
    for _ in range(10):
        arch = space.random_arch(rng)
        s = space.encode(arch)
        assert space.decode(s) == arch and space.is_valid(s).all()


def test_bn_recalibration_changes_only_bn_buffers(randomized, data):
    sub = randomized.subnet(randomized.space.largest())
    before = {k: v.clone() for k, v in sub.state_dict().items()}
    recalibrate_bn(sub, calibration_tensor(data, 128))
    after = sub.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    bn_buffers = {k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert changed and changed <= bn_buffers
    assert any(k.endswith("running_mean") for k in changed)
    assert not sub.training                              # mode restored
    mom = [m.momentum for m in sub.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(v == 0.1 for v in mom)                    # momentum restored


def test_recalibrated_statistics_are_the_calibration_statistics(randomized, data):
    sub = randomized.subnet(randomized.space.smallest())
    x = calibration_tensor(data, 64)
    recalibrate_bn(sub, x, batch_size=64)                # one batch: the exact batch statistics
    with torch.no_grad():
        h = sub.stem.conv(x)
    torch.testing.assert_close(sub.stem.bn.running_mean, h.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_fold_batchnorm_keeps_the_function(randomized):
    rng = np.random.default_rng(3)
    sub = randomized.subnet(randomized.space.random_arch(rng))
    folded = fold_batchnorm(sub)
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), sub(x), rtol=1e-4, atol=1e-4)
    assert set(noisy_layers(folded)) == set(noisy_layers(sub))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in sub.modules())     # the original is untouched


def test_sandwich_training_beats_chance(trained, data):
    x, y = as_tensors(data.test)
    n = len(y)
    for acc in (trained.accuracy_largest, trained.accuracy_smallest):
        # far above chance (1/10): a one-sided binomial test at the 1e-6 level
        assert binomtest(round(acc * n), n, 0.1, alternative="greater").pvalue < 1e-6
    assert trained.accuracy_largest > 0.5
    assert trained.history["loss"][-1] < trained.history["loss"][0]
    assert len(trained.history["accuracy_largest"]) == TINY["epochs"]
    assert trained.cache_key == SupernetConfig(**TINY).cache_key()


def test_training_is_seeded(data):
    cfg = SupernetConfig(**{**TINY, "epochs": 1})
    a = train_supernet(cfg, data).supernet.state_dict()
    b = train_supernet(cfg, data).supernet.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    c = train_supernet(cfg.replace(seed=1), data).supernet.state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert cfg.cache_key() != cfg.replace(seed=1).cache_key()


def test_training_progress_and_cancel(data):
    cancel = threading.Event()
    seen = []

    def progress(d):
        seen.append(d)
        cancel.set()

    with pytest.raises(Cancelled):
        train_supernet(SupernetConfig(**TINY), data, progress=progress, cancel=cancel)
    assert (
        len(seen) == 1 and seen[0]["epoch"] == 1 and {"loss", "accuracy_largest", "accuracy_smallest"} <= set(seen[0])
    )


def test_config_checks():
    with pytest.raises(ValueError):
        SupernetConfig(stage_widths=[4, 8], strides=[1, 2, 2]).check()
    with pytest.raises(ValueError):
        SupernetConfig(depth_choices=[2, 1]).check()
