"""Tests for ``workbench.experiments``: noise curves, cells shared with ``evaluate``, evaluate's
spec and validation, and ``precompute`` (the shipped results) on a tiny grid.

Every store lives in ``tmp_path``; networks are trained for one or two epochs.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import xarray as xr

import workbench.experiments.core as core
import workbench.experiments.shipped as shipped
from workbench.cli import main
from workbench.experiments import (
    CURVE_GRIDS,
    PRESETS,
    Store,
    evaluate,
    noise_curve,
    preset_config,
    spec_key,
    train_model,
)
from workbench.hardware import KnobError

SRAM = {"default": {"technology": "sram", "p": 0.0, "bits": 1}, "overrides": {}}
XBAR = {"default": {"technology": "memristor", "noise": "multiplicative", "sigma_c": 0.0}, "overrides": {}}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """A store shared by this module (its trained networks are reused between tests)."""
    return Store(tmp_path_factory.mktemp("exp-store"), read_only=[])


@pytest.fixture
def mc_calls(monkeypatch):
    """Counts Monte-Carlo evaluations (i.e. cache misses of evaluate)."""
    calls = []
    real = core.mc_evaluate

    def counting(*a, **k):
        calls.append(a[3])
        return real(*a, **k)

    monkeypatch.setattr(core, "mc_evaluate", counting)
    return calls


def assert_described(ds: xr.Dataset):
    """Every variable and coordinate carries a ``long_name`` and ``units``."""
    for name, var in ds.variables.items():
        assert var.attrs.get("long_name"), f"{name} has no long_name"
        assert "units" in var.attrs and isinstance(var.attrs["units"], str), f"{name} has no units"


def test_noise_curve_sram_dims_coords_attrs(store):
    cfg = preset_config("digits-bc", epochs=2)
    values = [0.0, 0.05, 0.2]
    ds = noise_curve(cfg, SRAM, "p", values, draws=4, store=store)
    assert dict(ds.sizes) == {"p": 3, "draw": 4}
    assert ds.accuracy.dims == ("p", "draw")
    for name in ("accuracy_mean", "accuracy_std", "ci95_low", "ci95_high", "energy"):
        assert ds[name].dims == ("p",), name
    np.testing.assert_array_equal(ds.p.values, values)
    assert ds.p.dtype == float
    np.testing.assert_array_equal(ds.draw.values, np.arange(4))
    assert ds.p.attrs == {"long_name": "bit error rate p", "units": "1"}
    assert_described(ds)
    assert ds.attrs["knob"] == "p"
    trained = train_model(cfg, store)
    assert trained.cached and ds.attrs["clean_accuracy"] == trained.test_accuracy
    assert "cache_key" not in ds.attrs and "spec_json" not in ds.attrs   # cell bookkeeping is not the curve's
    # summaries agree with the draws; the noise-free cell is exact
    np.testing.assert_allclose(ds.accuracy_mean, ds.accuracy.mean("draw"), rtol=1e-12)
    np.testing.assert_allclose(ds.accuracy_std[1:], ds.accuracy.std("draw", ddof=1)[1:], rtol=1e-9)
    assert float(ds.accuracy_mean[0]) == trained.test_accuracy and float(ds.accuracy_std[0]) == 0.0
    assert (ds.ci95_low <= ds.accuracy_mean).all() and (ds.accuracy_mean <= ds.ci95_high).all()
    assert float(ds.accuracy_mean[2]) < float(ds.accuracy_mean[0])
    assert (np.diff(ds.energy.values) < 0).all()


def test_noise_curve_memristor_has_power_and_no_layer_dim(store):
    cfg = preset_config("digits-cnn", epochs=2)
    ds = noise_curve(cfg, XBAR, "sigma_c", [0.0, 0.2], draws=3, store=store)
    assert dict(ds.sizes) == {"sigma_c": 2, "draw": 3}
    assert "layer" not in ds.dims and "layer" not in ds.variables and "layer_power" not in ds
    assert ds.power.dims == ("sigma_c", "draw") and (ds.power > 0).all()
    assert ds.sigma_c.attrs["long_name"] == "multiplicative noise σ_c"
    assert_described(ds)
    # every draw of a noise-free crossbar is the same network
    assert float(ds.accuracy_std[0]) == 0.0


def test_curve_cells_are_evaluate_cells(store, mc_calls):
    cfg = preset_config("digits-bc", epochs=2)
    mem = {"default": {**SRAM["default"], "p": 0.1}, "overrides": {}}
    single = evaluate(cfg, mem, draws=5, seed=2, store=store)
    assert len(mc_calls) == 1
    curve = noise_curve(cfg, SRAM, "p", [0.1, 0.3], draws=5, seed=2, store=store)
    assert len(mc_calls) == 2                   # only the p = 0.3 cell was computed
    np.testing.assert_array_equal(curve.accuracy.sel(p=0.1).values, single.accuracy.values)
    assert float(curve.accuracy_mean.sel(p=0.1)) == single.attrs["accuracy_mean"]
    # ... and the other way round: evaluate after the curve is a hit
    again = evaluate(cfg, {"default": {**SRAM["default"], "p": 0.3}, "overrides": {}}, draws=5, seed=2, store=store)
    assert again.attrs["cache"] == "hit" and len(mc_calls) == 2
    np.testing.assert_array_equal(again.accuracy.values, curve.accuracy.sel(p=0.3).values)
    # a different seed or draw count is a different cell
    evaluate(cfg, mem, draws=5, seed=3, store=store)
    evaluate(cfg, mem, draws=6, seed=2, store=store)
    assert len(mc_calls) == 4


def test_noise_curve_rejects_bad_knobs_before_computing(store, mc_calls):
    cfg = preset_config("digits-bc", epochs=2)
    with pytest.raises(KnobError, match="knob='volts'"):
        noise_curve(cfg, SRAM, "volts", [0.1], store=store)
    with pytest.raises(KnobError, match=r"p must be in \[0, 0\.5\]"):
        noise_curve(cfg, SRAM, "p", [0.01, 0.6], draws=2, store=store)
    with pytest.raises(KnobError, match="sigma_c"):
        noise_curve(cfg, SRAM, "sigma_c", [0.1], draws=2, store=store)   # not an SRAM knob
    assert mc_calls == []


def test_evaluate_spec_and_validation(store, mc_calls):
    cfg = preset_config("digits-cnn", epochs=2)
    ideal = evaluate(cfg, {}, draws=3, store=store)
    assert ideal.accuracy.dims == ("draw",) and ideal.sizes["draw"] == 3
    assert float(ideal.energy) == 1.0 and ideal.attrs["accuracy_std"] == 0.0
    assert ideal.attrs["accuracy_mean"] == ideal.attrs["clean_accuracy"]
    spec = json.loads(ideal.attrs["spec_json"])
    assert spec["train"] == json.loads(json.dumps(cfg.to_dict()))
    assert spec["memory"]["default"]["technology"] == "ideal"
    assert (spec["draws"], spec["seed"], spec["target_ci_width"]) == (3, 0, None)
    assert ideal.attrs["cache_key"] == spec_key("evaluate", spec)
    assert ideal.attrs["weights_key"] == train_model(cfg, store).cache_key
    n = len(mc_calls)
    for bad in ({"default": {"technology": "sram", "p": 0.9}}, {"default": {"technology": "flash"}},
                {"default": {"technology": "memristor", "sigma_c": float("nan")}}):
        with pytest.raises(KnobError):
            evaluate(cfg, bad, draws=3, store=store)
    assert len(mc_calls) == n


def test_curve_grids_are_valid():
    assert set(CURVE_GRIDS) == set(core.KNOB_META)
    for knob, grid in CURVE_GRIDS.items():
        assert grid == sorted(grid) and len(set(grid)) == len(grid), knob
    assert CURVE_GRIDS["p"][0] == 0.0 and CURVE_GRIDS["p"][-1] == 0.5


def test_precompute_tiny_grid(tmp_path, monkeypatch, mc_calls):
    for name in ("digits-cnn", "digits-bc"):
        monkeypatch.setitem(PRESETS, name, {**PRESETS[name], "epochs": 1})
    tiny = {"p": [0.0, 0.1], "sigma_c": [0.0, 0.1], "sigma": [0.0, 2.0], "g_u": [10.0, 25.0]}
    monkeypatch.setattr(shipped, "CURVE_GRIDS", tiny)
    monkeypatch.setattr(shipped, "PLAYGROUND_DRAWS", 2)
    out = tmp_path / "shipped"
    progress = []
    res = shipped.precompute(Store(out, read_only=[]), progress=progress.append)
    assert res["store"] == str(out) and res["command"] == "workbench precompute"
    assert set(res["curves"]) == {"sram:p", "memristor:sigma_c", "memristor:sigma", "memristor:g_u"}
    for name, curve in res["curves"].items():
        assert len(curve["accuracy_mean"]) == 2, name
        assert 0 <= curve["clean_accuracy"] <= 1
    assert progress[-1] == {"cell": 4, "cells": 4}
    entries = Store(out, read_only=[]).entries()
    assert all(e.ok for e in entries)
    kinds = sorted(e.kind for e in entries)
    assert kinds == ["evaluate"] * 8 + ["weights"] * 2
    assert len(mc_calls) == 8

    # precomputing again computes nothing
    again = shipped.precompute(Store(out, read_only=[]))
    assert again["curves"] == res["curves"] and len(mc_calls) == 8

    # a user store reading it as its shipped root opens every curve without computing (the playground)
    user = Store(tmp_path / "user", read_only=[out])
    for tech, knob, base in shipped.PLAYGROUND_CURVES:
        cfg = preset_config(core.PRESET_FOR_TECHNOLOGY[tech])
        from workbench.hardware import memory_from_dict
        mem = {"default": memory_from_dict(base).knobs(), "overrides": {}}
        ds = noise_curve(cfg, mem, knob, tiny[knob], draws=2, store=user)
        assert ds.accuracy_mean.values.round(4).tolist() == res["curves"][f"{tech}:{knob}"]["accuracy_mean"]
    assert len(mc_calls) == 8
    assert user.entries() and all(e.shipped for e in user.entries())

    # the CLI form reads and writes where --out says (here: everything is already there)
    assert main(["precompute", "--out", str(out), "--json", "--quiet"]) == 0
    assert len(mc_calls) == 8 and len(Store(out, read_only=[]).entries()) == 10


def _no_training(*args, **kwargs):
    raise AssertionError("a bad argument must be refused before any training starts")


@pytest.mark.parametrize("kwargs, message", [
    ({"draws": 0}, "draws=0 is out of range"), ({"draws": -5}, "draws=-5 is out of range"),
    ({"draws": 2.5}, "draws=2.5 is not an integer"), ({"seed": -1.5}, "seed=-1.5 is out of range"),
    ({"target_ci_width": 0}, "target_ci_width=0 is out of range")])
def test_evaluate_refuses_bad_draw_arguments_before_training(kwargs, message, tmp_path, monkeypatch):
    import workbench.experiments.core as core
    monkeypatch.setattr(core, "train_model", _no_training)
    with pytest.raises(KnobError, match=re.escape(message)):
        core.evaluate(
            core.preset_config("digits-cnn"),
            {"default": {"technology": "ideal"}},
            store=Store(tmp_path, read_only=[]),
            **kwargs,
        )


@pytest.mark.parametrize("memory, values, kwargs, message", [
    ({"default": {"technology": "sram", "bits": 8}}, None, {"draws": 0}, "draws=0 is out of range"),
    (None, None, {}, "memory=None must be a dict"),
    ({"default": {"technology": "sram", "bits": 8}}, [], {}, "values=[] is empty"),
    ({"default": {"technology": "sram", "bits": 8}}, [0.0, 0.7], {}, "0.7")])
def test_noise_curve_refuses_bad_arguments_before_training(memory, values, kwargs, message, tmp_path, monkeypatch):
    import workbench.experiments.core as core
    monkeypatch.setattr(core, "train_model", _no_training)
    with pytest.raises(KnobError, match=re.escape(message)):
        core.noise_curve(core.preset_config("digits-cnn"), memory, "p", values, store=Store(tmp_path, read_only=[]),
                         **kwargs)


def test_evaluate_refuses_a_memory_map_that_does_not_fit_the_network_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(core, "train_model", _no_training)
    store = Store(tmp_path, read_only=[])
    cfg = core.preset_config("digits-cnn")                      # full precision
    with pytest.raises(KnobError, match=r"bits=1 stores sign bits only.*full precision.*digits-bc"):
        core.evaluate(cfg, {"default": {"technology": "sram", "p": 0.01, "bits": 1}}, store=store)
    with pytest.raises(KeyError, match="no_such_layer"):
        core.evaluate(cfg, {"default": {"technology": "sram", "p": 0.01, "bits": 8},
                            "overrides": {"no_such_layer": {"technology": "ideal"}}}, store=store)
