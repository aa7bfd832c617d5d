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
