"""Your own network: a factory in a file, a module or a registered plug-in, weights from a state
dict read with weights_only=True; bad weights refused by name; a digest for provenance."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from workbench.knobs import KnobError
from workbench.nn import NoisyConv2d, noisy_layers
from workbench.nn.external import build_user_model, load_weights, model_digest
from workbench.plugins import registered

FACTORY = textwrap.dedent('''
    import torch.nn as nn

    def small_cnn(in_channels=1, num_classes=10, width=8):
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
''')


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "mynets.py"
    path.write_text(FACTORY)
    return path


def test_a_factory_in_a_file_is_built_with_the_data_shape_and_made_noisy(model_file):
    net = build_user_model(f"{model_file}:small_cnn", {"width": 4}, in_channels=3, num_classes=5, image_size=8)
    assert isinstance(net[0], NoisyConv2d) and net[0].in_channels == 3 and net[0].out_channels == 4
    assert list(noisy_layers(net)) == ["0", "5"] and net(torch.randn(2, 3, 8, 8)).shape == (2, 5)
    with pytest.raises(KnobError, match="does not take these arguments"):
        build_user_model(f"{model_file}:small_cnn", {"depth": 3})
    with pytest.raises(KnobError, match="has no callable 'nope'"):
        build_user_model(f"{model_file}:nope")
    with pytest.raises(KnobError, match="no such file"):
        build_user_model("missing.py:f")


def test_weights_load_strictly_and_a_pickle_payload_is_refused(model_file, tmp_path):
    net = build_user_model(f"{model_file}:small_cnn", in_channels=1, num_classes=10)
    good = tmp_path / "w.pt"
    torch.save(net.state_dict(), good)
    other = build_user_model(f"{model_file}:small_cnn", in_channels=1, num_classes=10)
    load_weights(other, good)
    torch.testing.assert_close(other.state_dict()["0.weight"], net.state_dict()["0.weight"])

    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(1), **{k: v for k, v in net.state_dict().items() if k != "5.bias"}}, wrong)
    with pytest.raises(KnobError, match=r"missing keys: 5\.bias; unexpected keys: conv\.weight"):
        load_weights(other, wrong)

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))
    evil = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, evil)
    with pytest.raises(KnobError, match="not a plain state dict of tensors"):
        load_weights(other, evil)
    whole = tmp_path / "model.pt"
    torch.save(net, whole)
    with pytest.raises(KnobError, match="weights_only=True"):
        load_weights(other, whole)


def test_a_registered_plugin_model_is_found_by_name(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    (pkg / "wbplugin").mkdir(parents=True)
    (pkg / "wbplugin" / "__init__.py").write_text(FACTORY)
    dist = pkg / "wbplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wbplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[workbench.models]\nplugin-cnn = wbplugin:small_cnn\n")
    monkeypatch.syspath_prepend(str(pkg))
    assert registered()["plugin-cnn"] == "wbplugin:small_cnn"
    net = build_user_model("plugin-cnn", in_channels=1, num_classes=3)
    assert net(torch.randn(1, 1, 8, 8)).shape == (1, 3)
    sys.modules.pop("wbplugin", None)


def test_the_digest_follows_the_file_and_the_weights(model_file, tmp_path):
    spec = f"{model_file}:small_cnn"
    d0 = model_digest(spec)
    w = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(2)}, w)
    d1 = model_digest(spec, w)
    model_file.write_text(FACTORY + "\n# changed\n")
    assert len({d0, d1, model_digest(spec), model_digest(spec, w)}) == 4
