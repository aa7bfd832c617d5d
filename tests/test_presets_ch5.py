"""Chapter-5 thesis presets: torchvision models with noisy layers (MobileNetV2 for 32×32, ImageNet
ResNet-18), the ImageNet folder dataset, the §5.3 recipes and the best hyper-parameters of
Tables 5.7–5.9.  Everything runs on generated data; nothing is downloaded."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
from PIL import Image

from workbench.datasets import NORMALIZATION, DataBundle, load_dataset
from workbench.experiments.core import CH5_BEST, PRESETS, preset_config
from workbench.hardware import KnobError, memory_map_from_dict
from workbench.nn import build_model, noisy_layers
from workbench.nn.layers import NoisyConv2d, NoisyLinear, NoisyMixin
from workbench.nn.models import MODELS, mobilenet_v2, resnet18_imagenet, to_noisy
from workbench.training import TrainConfig, train
from workbench.training.trainer import load_initial_weights

pytestmark = pytest.mark.usefixtures("single_thread")

CH5_PRESETS = ("vgg13-cifar10", "mobilenetv2-cifar100", "resnet18-imagenet-finetune")
CH5_METHODS = {"sgd+noise", "sgd+clip", "sam", "sam+clip", "asam", "asam+clip", "samson2", "samson2+clip",
               "samsoninf", "samsoninf+clip"}


def _plain_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


# --------------------------------------------------------------------------- to_noisy


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_to_noisy_keeps_torchvision_outputs_and_hyper_parameters(arch):
    torch.manual_seed(0)
    tv = getattr(torchvision.models, arch)(weights=None, num_classes=10).eval()
    before = {n: (type(m), m.weight.shape, getattr(m, "stride", None), getattr(m, "padding", None),
                  getattr(m, "dilation", None), getattr(m, "groups", None), m.bias is None)
              for n, m in _plain_layers(tv).items()}
    noisy = to_noisy(copy.deepcopy(tv))
    layers = noisy_layers(noisy)
    # every conv/linear became noisy, under the same name, with the same hyper-parameters
    assert set(layers) == set(before) and len(layers) == (21 if arch == "resnet18" else 53)
    assert all(isinstance(m, NoisyMixin) for m in _plain_layers(noisy).values())
    for name, m in layers.items():
        kind, shape, stride, padding, dilation, groups, no_bias = before[name]
        assert isinstance(m, NoisyConv2d if kind is nn.Conv2d else NoisyLinear)
        assert m.weight.shape == shape and (m.bias is None) == no_bias
        if kind is nn.Conv2d:
            assert (m.stride, m.padding, m.dilation, m.groups) == (stride, padding, dilation, groups)
    if arch == "mobilenet_v2":       # the depthwise convolutions keep their groups
        depthwise = [m for m in layers.values() if isinstance(m, NoisyConv2d) and m.groups > 1]
        assert len(depthwise) == 17 and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert list(noisy.state_dict()) == list(tv.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(noisy.eval()(x), tv(x), atol=1e-5, rtol=1e-5)


def test_to_noisy_dilation_bias_groups_and_padding_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, groups=2, bias=True), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding="same", groups=8, bias=False), nn.Flatten(), nn.Linear(8 * 16, 5))
    ref = copy.deepcopy(net)
    noisy = to_noisy(net)
    assert noisy is net and [type(m) for m in noisy] == [NoisyConv2d, nn.ReLU, NoisyConv2d, nn.Flatten, NoisyLinear]
    assert noisy[0].dilation == (2, 2) and noisy[0].groups == 2 and noisy[0].bias is not None
    x = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(noisy(x), ref(x), atol=1e-6, rtol=1e-6)
    assert to_noisy(noisy)[0] is noisy[0]                       # already noisy: left alone
    with pytest.raises(ValueError, match="padding_mode"):
        to_noisy(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")))


# --------------------------------------------------------------------------- MobileNetV2 for 32×32


def test_mobilenet_v2_for_32x32_keeps_a_4x4_map():
    assert "mobilenet_v2" in MODELS and "resnet18_imagenet" in MODELS
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", in_channels=3, num_classes=100, image_size=32, width=0.25).eval()
    tv = torchvision.models.mobilenet_v2(weights=None, num_classes=100, width_mult=0.25)
    # exactly two strides changed (stem and second stage), everything else is torchvision's
    changed = {n for n, m in _plain_layers(tv).items()
               if isinstance(m, nn.Conv2d) and m.stride != dict(model.named_modules())[n].stride}
    assert changed == {"features.0.0", "features.2.conv.1.0"}
    assert {n: m.weight.shape for n, m in _plain_layers(tv).items()} == \
        {n: m.weight.shape for n, m in noisy_layers(model).items()}
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    assert feats.shape[-2:] == (4, 4) and tv.features(x).shape[-2:] == (1, 1)
    assert logits.shape == (5, 100) and torch.isfinite(logits).all()
    gray = mobilenet_v2(in_channels=1, num_classes=10, width=0.5)
    assert gray.features[0][0].in_channels == 1 and gray.features[0][0].out_channels == 16     # 32 × 0.5
    assert gray.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)


# --------------------------------------------------------------------------- ResNet-18 (ImageNet)


def _write_image_folder(root, classes=("ant", "bee"), per_class=(2, 1), sizes=((40, 30), (300, 260))):
    """A tiny ImageFolder tree ``<root>/imagenet/{train,val}/<class>/*.png`` of random images."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for c in classes:
            d = root / "imagenet" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                w, h = sizes[i % len(sizes)]
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"{i}.png")


def test_resnet18_imagenet_matches_torchvision_state_dict(tmp_path):
    model = resnet18_imagenet(num_classes=1000)
    torch.manual_seed(123)
    tv = torchvision.models.resnet18(weights=None)
    sd = tv.state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in sd.items()}
    assert len(noisy_layers(model)) == 21
    path = tmp_path / "resnet18.pth"
    torch.save(sd, path)
    load_initial_weights(model, str(path))                      # the init_weights code path
    tv.eval(), model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="width must be 1"):
        build_model("resnet18_imagenet", in_channels=3, num_classes=10, image_size=224, width=0.5)


def test_imagenet_folder_dataset(tmp_path):
    _write_image_folder(tmp_path)
    data = load_dataset("imagenet", root=tmp_path, augment=True)
    assert (data.name, data.num_classes, data.in_channels, data.image_size) == ("imagenet", 2, 3, 224)
    assert (len(data.train), len(data.test)) == (4, 2) and data.train.classes == ["ant", "bee"]
    x, y = data.train[0]
    assert x.shape == (3, 224, 224) and y == 0
    assert torch.equal(data.test[1][0], data.test[1][0])        # validation: Resize + CenterCrop
    names = [type(t).__name__ for t in data.train.transform.transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert [type(t).__name__ for t in data.test.transform.transforms] == [
        "Resize",
        "CenterCrop",
        "ToTensor",
        "Normalize",
    ]
    # ImageNet normalisation of a flat grey image
    Image.new("RGB", (50, 70), (128, 128, 128)).save(tmp_path / "imagenet" / "val" / "ant" / "0.png")
    mean, std = NORMALIZATION["imagenet"]
    xv = load_dataset("imagenet", root=tmp_path).test[0][0]
    want = (128 / 255 - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(xv[:, 100, 100], want)
    plain = load_dataset("imagenet", root=tmp_path)  # no augment: the validation transform
    assert [type(t).__name__ for t in plain.train.transform.transforms] == [
        "Resize",
        "CenterCrop",
        "ToTensor",
        "Normalize",
    ]


def test_imagenet_missing_or_mismatched_folders(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        load_dataset("imagenet", root=tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / "imagenet" / "train") in msg and str(tmp_path / "imagenet" / "val") in msg
    assert "class" in msg and not any(tmp_path.iterdir())       # nothing created, nothing downloaded
    _write_image_folder(tmp_path)
    (tmp_path / "imagenet" / "val" / "wasp").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imagenet" / "val" / "wasp" / "0.png")
    with pytest.raises(ValueError, match="wasp"):
        load_dataset("imagenet", root=tmp_path)


def test_finetune_preset_needs_init_weights():
    for kw in ({}, {"init_weights": None}, {"init_weights": ""}):
        with pytest.raises(KnobError, match=r"init_weights=PATH.*ResNet-18 state dict"):
            preset_config("resnet18-imagenet-finetune", **kw)
    cfg = preset_config("resnet18-imagenet-finetune", init_weights="/some/where.pth")
    assert (cfg.model, cfg.dataset, cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.schedule,
            cfg.augment, cfg.optimizer) == ("resnet18_imagenet", "imagenet", 10, 400, 0.001, 0.9, 1e-4, "constant",
                                            True, "sgd")


def test_finetune_preset_one_step_from_a_torchvision_checkpoint(tmp_path):
    _write_image_folder(tmp_path)
    torch.manual_seed(7)
    sd = torchvision.models.resnet18(weights=None, num_classes=2).state_dict()    # the user's checkpoint
    path = tmp_path / "r18.pth"
    torch.save(sd, path)
    cfg = preset_config("resnet18-imagenet-finetune", init_weights=str(path), epochs=1, batch_size=4)
    res = train(cfg, data_root=str(tmp_path), device="cpu")
    assert len(res.history["loss"]) == 1 and np.isfinite(res.history["loss"][0])
    w, w0 = res.model.layer4[1].conv2.weight.detach(), sd["layer4.1.conv2.weight"]
    assert not torch.equal(w, w0)                               # one step was taken ...
    assert torch.corrcoef(torch.stack([w.flatten(), w0.flatten()]))[0, 1] > 0.99   # ... from the checkpoint
    # a checkpoint of the wrong shape (1000 ImageNet classes, 2 class folders) is refused clearly
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(
        ValueError, match=r"fc\.weight: \(1000, 512\) in the file, \(2, 512\) in the model.*class folders"
    ):
        train(cfg, data_root=str(tmp_path), device="cpu")
    # a checkpoint of another architecture (the CIFAR ResNet-18: 3×3 stem, other key names)
    torch.save(build_model("resnet18", in_channels=3, num_classes=2, image_size=32).state_dict(), path)
    with pytest.raises(ValueError, match=r"not fit .*conv1\.weight"):
        train(cfg, data_root=str(tmp_path), device="cpu")


# --------------------------------------------------------------------------- CIFAR presets


def _random_bundle(n: int, classes: int, size: int = 32) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y)
    return DataBundle("generated", ds, ds, classes, 3, size)


def test_cifar_presets_follow_the_thesis_recipe():
    for name, dataset, model in (
        ("vgg13-cifar10", "cifar10", "vgg13"),
        ("mobilenetv2-cifar100", "cifar100", "mobilenet_v2"),
    ):
        cfg = preset_config(name)
        assert (cfg.dataset, cfg.model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size,
                cfg.epochs, cfg.schedule, cfg.step_every, cfg.gamma, cfg.augment, cfg.sam, cfg.clip) == \
            (dataset, model, "sgd", 0.1, 0.9, 5e-4, 128, 200, "step", 50, 0.1, True, "none", 0.0)
    assert list(PRESETS).index("vgg13-cifar10") == list(PRESETS).index("wrn28-10-bc-cifar10") + 1


@pytest.mark.parametrize("name, classes, method", [("vgg13-cifar10", 10, None), ("vgg13-cifar10", 10, "samson2+clip"),
                                                   ("mobilenetv2-cifar100", 100, None),
                                                   ("mobilenetv2-cifar100", 100, "sgd+noise")])
def test_cifar_preset_one_tiny_step(name, classes, method):
    over = CH5_BEST[name][method] if method else {}
    cfg = preset_config(name, epochs=1, batch_size=4, width=0.0625, **over)
    res = train(cfg, _random_bundle(4, classes), device="cpu")
    assert len(res.history["loss"]) == 1 and np.isfinite(res.history["loss"][0])
    assert res.model(torch.randn(2, 3, 32, 32)).shape == (2, classes)
    if cfg.clip:
        assert all(float(m.weight.detach().abs().max()) <= cfg.clip + 1e-7 for m in noisy_layers(res.model).values())


# --------------------------------------------------------------------------- Tables 5.7–5.9


def test_ch5_best_builds_valid_configs():
    assert set(CH5_BEST) == set(CH5_PRESETS)
    for name, methods in CH5_BEST.items():
        assert set(methods) == CH5_METHODS
        extra = {"init_weights": "/my/resnet18.pth"} if name == "resnet18-imagenet-finetune" else {}
        for method, over in methods.items():
            cfg = preset_config(name, **over, **extra)
            assert isinstance(cfg, TrainConfig) and cfg.model == PRESETS[name]["model"]
            assert cfg.sam == (method.split("+")[0] if method.split("+")[0] != "sgd" else "none")
            assert (cfg.clip > 0) == method.endswith("+clip")
            memory_map_from_dict(cfg.train_memory)              # validated memory map
    t7, t8, t9 = (CH5_BEST[n] for n in CH5_PRESETS)
    assert (t7["sgd+clip"]["clip"], t8["sgd+clip"]["clip"], t9["sgd+clip"]["clip"]) == (0.15, 0.2, 0.2)
    assert (t7["sgd+noise"]["clip_std"], t8["sgd+noise"]["clip_std"], t9["sgd+noise"]["clip_std"]) == (2.0, 2.0, 2.5)
    assert t9["sgd+noise"]["train_memory"]["default"] == {"technology": "injection", "sigma_g": 0.94, "g_u": 25.0}
    assert [t7[m]["rho"] for m in ("sam", "asam", "samson2", "samsoninf")] == [0.1, 0.5, 0.2, 1.0]
    assert [t8[m]["rho"] for m in ("sam", "asam", "samson2", "samsoninf")] == [0.2, 1.0, 1.0, 1.0]
    assert [t9[m]["rho"] for m in ("sam", "asam", "samson2", "samsoninf")] == [0.1, 1.0, 0.2, 0.5]
    assert [t9[m + "+clip"]["rho"] for m in ("sam", "asam", "samson2", "samsoninf")] == [0.1, 1.0, 0.5, 1.0]
