"""Tests of the PCM drift evaluation through IBM aihwkit (thesis §5.4.5, Fig 5.5).

Runs on the CPU on a 3-epoch digits network; the statistical check is a one-sided paired
t-test at the 0.1 % level.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats

from workbench.analysis.drift import DEFAULT_TIMES, pcm_drift, time_label, to_torch_model
from workbench.datasets import load_dataset
from workbench.experiments import core
from workbench.experiments.core import preset_config, train_model
from workbench.hardware import KnobError
from workbench.nn import NoisyConv2d, NoisyLinear
from workbench.training import make_model
from workbench.training.trainer import Cancelled

pytestmark = pytest.mark.usefixtures("single_thread")

DRAWS = 10


@pytest.fixture(scope="module")
def trained(single_thread):
    cfg = preset_config("digits-cnn", epochs=3)
    x, y = core.test_tensors(cfg)
    return train_model(cfg), x, y


@pytest.fixture(scope="module")
def drift(trained):
    t, x, y = trained
    return pcm_drift(t.model, x, y, draws=DRAWS, seed=0)


@pytest.mark.parametrize("preset", ["digits-cnn", "digits-bc"])
def test_to_torch_model_matches_noisy_model(preset):
    cfg = preset_config(preset)
    model = make_model(cfg, load_dataset(cfg.dataset)).eval()
    torch.manual_seed(1)
    with torch.no_grad():   # non-trivial batch-norm statistics, so every layer matters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    x, _ = core.test_tensors(cfg)
    plain = to_torch_model(model)
    assert not any(isinstance(m, (NoisyConv2d, NoisyLinear)) for m in plain.modules())
    assert any(isinstance(m, (NoisyConv2d, NoisyLinear)) for m in model.modules())   # the original is untouched
    n_conv = sum(isinstance(m, NoisyConv2d) for m in model.modules())
    assert sum(isinstance(m, nn.Conv2d) for m in plain.modules()) == n_conv
    assert not plain.training
    with torch.no_grad():
        ref, out = model(x[:128]), plain(x[:128])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_time_labels():
    assert [time_label(t) for t in DEFAULT_TIMES] == ["1 s", "1 h", "1 day", "1 year"]
    assert time_label(0.5) == "0.5 s" and time_label(7200) == "2 h" and time_label(2 * 31536000) == "2 years"


def test_dataset_layout(drift):
    ds = drift
    assert ds.accuracy.dims == ("t_inference", "draw")
    assert ds.accuracy.shape == (len(DEFAULT_TIMES), DRAWS)
    np.testing.assert_array_equal(ds.t_inference.values, DEFAULT_TIMES)
    assert list(ds.label.values) == ["1 s", "1 h", "1 day", "1 year"]
    assert ds.t_inference.attrs["units"] == "s"
    for name in ("accuracy", "accuracy_mean", "accuracy_std"):
        assert {"long_name", "units"} <= set(ds[name].attrs)
    np.testing.assert_allclose(ds.accuracy_mean.values, ds.accuracy.values.mean(1))
    np.testing.assert_allclose(ds.accuracy_std.values, ds.accuracy.values.std(1, ddof=1))
    assert ds.attrs["g_max"] == 25.0 and ds.attrs["drift_compensation"] == "GlobalDriftCompensation"
    assert ds.attrs["aihwkit_version"] == "1.1.0"
    assert ((ds.accuracy >= 0) & (ds.accuracy <= 1)).all()


def test_accuracy_one_second_after_programming(trained, drift):
    t, _, _ = trained
    acc_1s = drift.accuracy.sel(t_inference=1.0).values
    assert drift.attrs["clean_accuracy"] == pytest.approx(t.test_accuracy, abs=1e-9)
    assert acc_1s.min() > 0.5                                    # chance is 0.1
    assert abs(acc_1s.mean() - t.test_accuracy) < 0.05


def test_drift_does_not_improve_accuracy(drift):
    """One-sided paired t-test, H0: mean(acc(1 year) - acc(1 s)) ≤ 0, rejected at the 0.1 % level
    if a year of drift made the network *better* (same programming per draw, so differences pair)."""
    diff = drift.accuracy.sel(t_inference=31536000.0).values - drift.accuracy.sel(t_inference=1.0).values
    if np.ptp(diff) == 0:
        assert diff[0] <= 0
        return
    p = stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue
    assert p > 1e-3, f"accuracy after one year exceeds that at 1 s: diffs {diff}, p = {p:.2g}"


def test_seeded_reproducibility(trained):
    t, x, y = trained
    kw = dict(times=[1.0, 31536000.0], draws=2)
    a = pcm_drift(t.model, x[:120], y[:120], seed=3, **kw)
    b = pcm_drift(t.model, x[:120], y[:120], seed=3, **kw)
    c = pcm_drift(t.model, x[:120], y[:120], seed=4, **kw)
    np.testing.assert_array_equal(a.accuracy.values, b.accuracy.values)
    assert not np.array_equal(a.accuracy.values, c.accuracy.values)
    # draw i depends only on seed + i: the second draw of seed 3 is the first of seed 4
    np.testing.assert_array_equal(a.accuracy.values[:, 1], c.accuracy.values[:, 0])


def test_rng_state_is_untouched(trained):
    t, x, y = trained
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pcm_drift(t.model, x[:50], y[:50], times=[1.0], draws=1)
    torch.testing.assert_close(torch.rand(3), expected)


def test_progress_and_cancel(trained):
    t, x, y = trained
    seen = []
    pcm_drift(t.model, x[:50], y[:50], times=[1.0], draws=2, progress=seen.append)
    assert seen == [{"draw": 1, "draws": 2}, {"draw": 2, "draws": 2}]
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        pcm_drift(t.model, x[:50], y[:50], times=[1.0], draws=2, cancel=ev)


@pytest.mark.parametrize("kw, knob", [
    (dict(times=[0.0]), "times"), (dict(times=[-1.0]), "times"), (dict(times=[float("nan")]), "times"),
    (dict(times=[float("inf")]), "times"), (dict(times=[]), "times"),
    (dict(draws=0), "draws"), (dict(draws=1001), "draws"), (dict(draws=2.5), "draws"),
    (dict(g_max=float("nan")), "g_max"), (dict(g_max=0.0), "g_max"), (dict(batch_size=0), "batch_size"),
])
def test_knob_errors(kw, knob):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(KnobError, match=knob):
        pcm_drift(model, torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), **kw)
