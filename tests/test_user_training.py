"""Your own network and data through the trainer: a factory file and a .npz train exactly as the
same network built and trained from Python, and the cache key follows the files' contents."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from workbench.datasets import as_tensors, load_dataset
from workbench.experiments.core import preset_config
from workbench.knobs import KnobError
from workbench.training import TrainConfig, train
from workbench.userdata import load_user_data

FACTORY = textwrap.dedent('''
    import torch.nn as nn

    def tiny(in_channels=1, num_classes=10, width=6):
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * width, num_classes))
''')


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "nets.py"
    model.write_text(FACTORY)
    d = load_dataset("digits")
    (x_tr, y_tr), (x_te, y_te) = as_tensors(d.train), as_tensors(d.test)
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_train=x_tr.numpy(), y_train=y_tr.numpy(), x_test=x_te.numpy(), y_test=y_te.numpy())
    return model, npz


def test_a_user_network_on_user_data_trains_as_from_python(files):
    model, npz = files
    cfg = preset_config("digits-cnn", epochs=2, seed=3).replace(user_model=f"{model}:tiny", data=str(npz),
                                                                model_args={"width": 5})
    assert set(cfg.sources) == {"model", "data"}
    res = train(cfg, device="cpu")

    # the same network and data built by hand, trained by the same trainer
    import importlib.util
    spec = importlib.util.spec_from_file_location("nets_by_hand", model)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from workbench.nn import to_noisy
    from workbench.rng import seeded
    from workbench.training.trainer import make_model
    data = load_user_data(str(npz))
    with seeded(3):            # background jobs of earlier tests may still be initialising networks
        by_hand = to_noisy(mod.tiny(in_channels=1, num_classes=10, width=5))
    with seeded(3):
        built = make_model(cfg, data)
    for (k, a), b in zip(by_hand.state_dict().items(), built.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    again = train(cfg, device="cpu")
    assert res.test_accuracy == again.test_accuracy and res.test_accuracy > 0.3     # chance is 0.1
    for a, b in zip(res.model.state_dict().values(), again.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_the_cache_key_follows_the_user_files_and_old_keys_stay(files):
    from workbench.keys import spec_key
    model, npz = files
    base = preset_config("digits-cnn", epochs=2)
    assert "user_model" not in base.to_dict() and "sources" not in base.to_dict()   # presets' keys unchanged
    cfg = base.replace(user_model=f"{model}:tiny", data=str(npz))
    k1 = spec_key("weights", cfg.to_dict())
    model.write_text(FACTORY + "\n# edited\n")
    k2 = spec_key("weights", TrainConfig.from_dict(cfg.to_dict() | {"sources": None}).to_dict())
    assert k1 != k2
    with pytest.raises(KnobError, match="model_args and digital apply to user_model"):
        base.replace(model_args={"width": 3})


def run_cli(capsys, *argv):
    import json

    from workbench.cli import main
    rc = main([*argv, "--json", "--quiet"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_the_cli_trains_and_evaluates_your_network_on_your_data(files, tmp_path, capsys):
    model, npz = files
    user = ["--model", f"{model}:tiny", "--model-arg", "width=5", "--data", str(npz), "--set", "epochs=2",
            "--cache-dir", str(tmp_path / "store"), "--device", "cpu"]
    trained = run_cli(capsys, "train", *user)
    first = run_cli(capsys, "evaluate", *user, "--memory", "memristor", "--sigma-c", "0.1", "--draws", "4")
    again = run_cli(capsys, "evaluate", *user, "--memory", "memristor", "--sigma-c", "0.1", "--draws", "4")
    assert again["cache"] == "hit" and again["cache_key"] == first["cache_key"]
    assert again["accuracy_mean"] == first["accuracy_mean"]
    # the same network trained from Python
    cfg = preset_config("digits-cnn", epochs=2).replace(user_model=f"{model}:tiny", data=str(npz),
                                                         model_args={"width": 5})
    assert trained["test_accuracy"] == pytest.approx(train(cfg, device="cpu").test_accuracy, abs=1e-12)
    # the result records how the user's inputs were normalised (the training split's statistics)
    from workbench.experiments import Store
    from workbench.experiments.core import evaluate
    ds = evaluate(cfg, {"default": {"technology": "memristor", "sigma_c": 0.1}}, draws=4,
                  store=Store(tmp_path / "store"))
    assert ds.attrs["cache"] == "hit"
    (mean,), (std,) = load_user_data(str(npz)).normalization
    # (netCDF reads a one-element attribute back as a scalar)
    assert np.atleast_1d(ds.attrs["normalization_mean"]).tolist() == pytest.approx([mean])
    assert np.atleast_1d(ds.attrs["normalization_std"]).tolist() == pytest.approx([std])


def test_the_cli_refuses_bad_user_files_and_writes_nothing(files, tmp_path, capsys):
    from workbench.cli import main
    model, npz = files
    store = tmp_path / "store"
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((4, 1, 8, 8)), y_train=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 1, 8, 8)),
             y_test=np.array([0, 5]))
    assert main(["train", "--model", f"{model}:tiny", "--data", str(bad), "--cache-dir", str(store)]) == 2
    assert "y_test has label 5 but y_train's labels are 0..1" in capsys.readouterr().err
    evil = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (print, ("never",))
    torch.save({"x": Payload()}, evil)
    assert main(["train", "--model", f"{model}:tiny", "--weights", str(evil), "--data", str(npz),
                 "--cache-dir", str(store)]) == 2
    assert "not a plain state dict" in capsys.readouterr().err
    assert main(["train", "--weights", str(evil), "--cache-dir", str(store)]) == 2
    assert "apply to --model" in capsys.readouterr().err
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*") if p.suffix in (".pt", ".nc"))


CONV1D = textwrap.dedent('''
    import torch.nn as nn

    def sensor(in_channels=2, num_classes=3):
        return nn.Sequential(nn.Conv1d(in_channels, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(),
                             nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, num_classes))
''')


def test_the_cli_takes_an_image_folder_and_a_conv1d_network_on_signals(tmp_path, capsys):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for k, name in enumerate(("dark", "light")):
            (tmp_path / "imgs" / split / name).mkdir(parents=True)
            for i in range(n):
                img = (rng.random((8, 8)) * 80 + 150 * k).astype(np.uint8)
                Image.fromarray(img, mode="L").save(tmp_path / "imgs" / split / name / f"{i}.png")
    model = tmp_path / "nets.py"
    model.write_text(FACTORY + CONV1D)
    store = ["--cache-dir", str(tmp_path / "store"), "--device", "cpu"]
    out = run_cli(capsys, "train", "--model", f"{model}:tiny", "--data", str(tmp_path / "imgs"), "--set", "epochs=3",
                  *store)
    assert out["test_accuracy"] >= 0.5
    t = np.linspace(0, 1, 40)
    def signals(n):
        y = np.arange(n) % 3
        x = np.stack([np.stack([np.sin(2 * np.pi * (c + 1) * t), np.cos(2 * np.pi * (c + 1) * t)]) for c in y])
        return x + 0.3 * rng.normal(size=x.shape), y
    (x_tr, y_tr), (x_te, y_te) = signals(60), signals(30)
    np.savez(tmp_path / "sig.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    user = ["--model", f"{model}:sensor", "--data", str(tmp_path / "sig.npz"), "--set", "epochs=5", *store]
    run_cli(capsys, "train", *user)
    ev = run_cli(capsys, "evaluate", *user, "--memory", "memristor", "--sigma-c", "0.1", "--draws", "3")
    assert 0 <= ev["accuracy_mean"] <= 1 and ev["power"] > 0
