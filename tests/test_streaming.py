"""Monte-Carlo evaluation of a streamed test set (issue 14, item 2): a ``Dataset`` or
``DataLoader`` gives the same per-draw accuracies as the in-memory tensors for the same seed, and
is read batch by batch, once per chunk of draws, never copied whole."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader, Dataset, TensorDataset

from workbench.analysis import clean_accuracy, mc_evaluate
from workbench.datasets import as_tensors, load_dataset
from workbench.hardware import KnobError, MemristorMemory, SRAMMemory, make
from workbench.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def model(data):
    return train(TrainConfig(epochs=1, width=0.25, seed=0), data, device="cpu").model


class Counting(Dataset):
    """A test set that records every index read (each item is built on access, as a lazy
    dataset would)."""

    def __init__(self, x, y):
        self.x, self.y, self.reads = x, y, []

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.reads.append(int(i))
        return self.x[i].clone(), int(self.y[i])


@pytest.mark.parametrize("memory", [make(SRAMMemory, p=0.02, bits=8), make(MemristorMemory, sigma_c=0.2)],
                         ids=["sram", "memristor"])
def test_streamed_equals_in_memory(model, data, memory):
    x, y = as_tensors(data.test)
    kw = dict(draws=5, seed=3, device="cpu", chunk=2, batch_size=64, power_batch=32)
    ref = mc_evaluate(model, x, y, memory, **kw)
    for test in (TensorDataset(x, y), Counting(x, y), DataLoader(TensorDataset(x, y), batch_size=64)):
        got = mc_evaluate(model, test, None, memory, **kw)
        np.testing.assert_array_equal(got.accuracy.values, ref.accuracy.values)
        assert got.attrs["n_test"] == ref.attrs["n_test"] == len(y)
        if "power" in ref:
            np.testing.assert_array_equal(got.layer_power.values, ref.layer_power.values)
    assert np.ptp(ref.accuracy.values) > 0          # the draws differ: the equality is not vacuous


def test_streamed_equals_in_memory_with_ci_stop(model, data):
    x, y = as_tensors(data.test)
    kw = dict(draws=3, seed=1, device="cpu", chunk=2, batch_size=100, target_ci_width=1e-6, max_draws=7)
    mem = make(SRAMMemory, p=0.02, bits=8)
    ref = mc_evaluate(model, x, y, mem, **kw)
    got = mc_evaluate(model, Counting(x, y), None, mem, **kw)
    np.testing.assert_array_equal(got.accuracy.values, ref.accuracy.values)
    assert got.accuracy.size == 7


def test_read_batch_by_batch_once_per_chunk(model, data):
    x, y = as_tensors(data.test)
    test = Counting(x, y)
    draws, chunk, bs = 5, 2, 50
    mc_evaluate(model, test, None, make(SRAMMemory, p=0.02, bits=8), draws=draws, chunk=chunk, batch_size=bs,
                seed=0, device="cpu")
    n = len(y)
    passes = -(-draws // chunk)                      # chunks of 2, 2, 1 draws: the set is read 3 times
    assert len(test.reads) == passes * n
    # each pass reads the samples in order 0..n-1, so no pass ever held more than one batch ahead
    for k in range(passes):
        assert test.reads[k * n:(k + 1) * n] == list(range(n))


def test_ideal_memory_reads_once_and_clean_accuracy(model, data):
    x, y = as_tensors(data.test)
    test = Counting(x, y)
    assert clean_accuracy(model, test, None, device="cpu") == clean_accuracy(model, x, y, device="cpu")
    assert len(test.reads) == len(y)


def test_streamed_bad_input(model, data):
    x, y = as_tensors(data.test)
    with pytest.raises(KnobError, match="y=None"):
        mc_evaluate(model, TensorDataset(x, y), y, make(SRAMMemory, p=0.01), draws=2, device="cpu")
    with pytest.raises(ValueError, match="no sample"):
        mc_evaluate(model, TensorDataset(x[:0], y[:0]), None, make(SRAMMemory, p=0.01), draws=2, device="cpu")


FACTORY = '''
import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

READS = []


class Lazy(Dataset):
    """Test images made on access (NHWC, as an image library gives them), each read recorded."""

    def __init__(self, n, bad_label=False):
        self.n, self.bad_label = n, bad_label

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        READS.append(i)
        g = torch.Generator().manual_seed(1000 + i)
        x = torch.rand((8, 8, 3), generator=g) * 255
        return x.numpy(), 7 if (self.bad_label and i == self.n - 1) else i % 3


def train_x():
    g = torch.Generator().manual_seed(0)
    return torch.rand((30, 8, 8, 3), generator=g) * 255


def factory():
    return TensorDataset(train_x(), torch.arange(30) % 3), Lazy(20)


def bad():
    return TensorDataset(train_x(), torch.arange(30) % 3), Lazy(20, bad_label=True)


def stacked():
    """The same data as arrays, for the .npz path."""
    lazy = Lazy(20)
    x_te = np.stack([lazy[i][0] for i in range(20)])
    return train_x().numpy(), (torch.arange(30) % 3).numpy(), x_te, np.arange(20) % 3
'''


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "lazy_factory_mod.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import sys
    sys.modules.pop("lazy_factory_mod", None)
    return importlib.import_module("lazy_factory_mod")


def test_factory_test_split_streams(factory_module, tmp_path):
    from workbench.userdata import StreamedTestSet, load_user_data
    data = load_user_data("lazy_factory_mod:factory")
    assert isinstance(data.test, StreamedTestSet)
    assert factory_module.READS == list(range(20))          # one checking pass, item by item
    x_tr, y_tr, x_te, y_te = factory_module.stacked()
    np.savez(tmp_path / "same.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    ref = load_user_data(str(tmp_path / "same.npz"))
    assert data.normalization == ref.normalization
    xs, ys = as_tensors(data.test)
    xr_, yr = as_tensors(ref.test)
    np.testing.assert_allclose(xs.numpy(), xr_.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ys.numpy(), yr.numpy())


def test_factory_bad_test_label_refused_before_use(factory_module):
    from workbench.userdata import load_user_data
    with pytest.raises(KnobError, match="y_test item 19 has label 7"):
        load_user_data("lazy_factory_mod:bad")


def test_evaluate_streams_a_factory_test_split(factory_module, tmp_path):
    from workbench.experiments import Store, preset_config
    from workbench.experiments.core import evaluate, train_model
    from workbench.hardware import memory_map_from_dict
    from workbench.userdata import load_user_data
    cfg = preset_config("digits-cnn", epochs=1).replace(data="lazy_factory_mod:factory")
    memory = {"default": {"technology": "memristor", "sigma_c": 0.3}}
    store = Store(tmp_path / "store")
    ds = evaluate(cfg, memory, draws=4, seed=2, store=store, device="cpu")
    model = train_model(cfg, store, device="cpu").model
    x, y = as_tensors(load_user_data("lazy_factory_mod:factory").test)
    ref = mc_evaluate(model, x, y, memory_map_from_dict(memory), 4, seed=2, device="cpu")
    np.testing.assert_array_equal(ds.accuracy.values, ref.accuracy.values)
    np.testing.assert_array_equal(ds.power.values, ref.power.values)
    assert ds.attrs["n_test"] == 20
