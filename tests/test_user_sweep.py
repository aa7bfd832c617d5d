"""A sweep spec's top-level ``model`` and ``data``: every experiment that trains from a recipe
trains the user's network on the user's data, as the same study called from Python does, and the
result's key follows the files' contents."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from workbench.datasets import as_tensors, load_dataset
from workbench.experiments import Store
from workbench.experiments.cells import spec_cells
from workbench.experiments.sharpness import robustness_study
from workbench.experiments.sweep import load_spec, parse_spec, run_spec
from workbench.knobs import KnobError

FACTORY = textwrap.dedent('''
    import torch.nn as nn

    def tiny(in_channels=1, num_classes=10, width=6):
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * width, num_classes))
''')
ROBUSTNESS = {"methods": ["sgd"], "seeds": [0], "levels": [0.0, 0.2], "adabs": [False], "draws": 3,
              "train": {"epochs": 2}}


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "nets.py"
    model.write_text(FACTORY)
    d = load_dataset("digits")
    (x_tr, y_tr), (x_te, y_te) = as_tensors(d.train), as_tensors(d.test)
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_train=x_tr.numpy(), y_train=y_tr.numpy(), x_test=x_te.numpy(), y_test=y_te.numpy())
    return model, npz


def write_spec(tmp_path, **top):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", **top, "experiments": {"robustness": ROBUSTNESS}}))
    return path


def test_a_spec_model_and_data_run_like_the_study_from_python(files, tmp_path, capsys):
    from workbench.cli import main
    model, npz = files
    path = write_spec(tmp_path, model=f"{model}:tiny", model_args={"width": 5}, data=str(npz))
    store = tmp_path / "store"
    assert main(["sweep", str(path), "--cache-dir", str(store), "--json", "--quiet", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)["experiments"]["robustness"]
    spec = load_spec(path)
    ds = run_spec(spec, Store(store))["robustness"]
    assert ds.attrs["cache"] == "hit" and ds.attrs["cache_key"] == out["cache_key"]
    # every network of the study is the user's (the cells a Dask run would compute say so too)
    trains = [c for c in spec_cells(spec) if c.kind == "weights"]
    assert trains and all(c.kwargs["config"]["user_model"] == f"{model}:tiny" for c in trains)
    assert all(c.kwargs["config"]["data"] == str(npz) for c in trains)
    # the same study from Python, into another store: the same accuracies
    direct = robustness_study(store=Store(tmp_path / "direct"), device="cpu",
                              **{**ROBUSTNESS, "train": {**ROBUSTNESS["train"], "user_model": f"{model}:tiny",
                                                         "model_args": {"width": 5}, "data": str(npz)}})
    np.testing.assert_array_equal(ds.accuracy.values, direct.accuracy.values)
    assert float(ds.accuracy.sel(sigma_c=0.0).mean()) > 0.3          # trained: chance is 0.1
    # an edited model file is another study (its digest is in the key)
    model.write_text(FACTORY + "\n# edited\n")
    assert run_spec(load_spec(path), Store(store))["robustness"].attrs["cache_key"] != out["cache_key"]


def test_a_spec_without_a_model_keeps_its_keys_and_bad_model_keys_are_refused(files, tmp_path):
    model, _ = files
    plain = {"name": "p", "experiments": {"robustness": ROBUSTNESS}}
    assert parse_spec(json.dumps(plain)) == plain
    with pytest.raises(KnobError, match="nas is built around its own architecture"):
        parse_spec(json.dumps({"model": f"{model}:tiny", "experiments": {"nas": {}}}))
    with pytest.raises(KnobError, match='"model_args" must be a JSON object, got list'):
        parse_spec(json.dumps({"model": f"{model}:tiny", "model_args": [1], "experiments": {"robustness": ROBUSTNESS}}))
    with pytest.raises(KnobError, match="apply to a top-level \"model\""):
        parse_spec(json.dumps({"weights": "w.pt", "experiments": {"robustness": ROBUSTNESS}}))
    with pytest.raises(KnobError, match="missing.npz"):
        parse_spec(json.dumps({"data": str(tmp_path / "missing.npz"), "experiments": {"robustness": ROBUSTNESS}}))
