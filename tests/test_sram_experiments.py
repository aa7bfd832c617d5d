"""Chapter 4 experiments: energy bookkeeping, Pareto interpolation, the uniform-BER study, sweeps,
and the WRN-28-10 thesis preset for one tiny step on generated data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.datasets import DataBundle
from workbench.experiments import Store, preset_config
from workbench.experiments.sram import (
    bc_config,
    energy_of,
    energy_ratios,
    pareto_energy_at,
    sram_map,
    uniform_ber_study,
)
from workbench.experiments.sweep import load_spec, run_experiment
from workbench.hardware import KnobError
from workbench.hardware.sram import eta
from workbench.training import train

pytestmark = pytest.mark.usefixtures("single_thread")


def test_energy_of_matches_eq_3_30_by_hand():
    """Fig 4.4's axis: ÷ the full-width net read reliably at 1 bit per weight (thesis), or 16 (fp16)."""
    counts = {"a": 100, "b": 300}
    e = energy_of({"a": 1e-2, "b": 0.0}, counts, bits=1, reference_weights=400)
    assert e == pytest.approx((eta(1e-2) * 100 + 1.0 * 300) / 400)
    assert energy_of({"a": 1e-2, "b": 0.0}, counts, 1, 400, reference="fp16") == pytest.approx(e / 16)
    assert energy_of(0.0, counts, bits=16, reference_weights=400) == pytest.approx(16.0)   # FP16, ρ = 1
    assert energy_of(0.0, counts, bits=1, reference_weights=800) == pytest.approx(0.5)     # BC, ρ = 1/2
    # the thesis' numbers (§4.4.2): full-width BC at a uniform p = 0.01 is 36 %, p = 1e-4 saves 28 %
    assert energy_of(0.01, counts, 1, 400) == pytest.approx(0.3598, abs=5e-5)
    assert energy_of(1e-4, counts, 1, 400) == pytest.approx(0.7196, abs=5e-5)


def test_pareto_energy_interpolates_on_the_front():
    energy = np.array([1.0, 2.0, 3.0, 2.5])
    acc = np.array([0.5, 0.8, 0.9, 0.7])          # (2.5, 0.7) is dominated by (2.0, 0.8)
    assert pareto_energy_at(energy, acc, 0.65) == pytest.approx(1.0 + (0.65 - 0.5) / 0.3)
    assert pareto_energy_at(energy, acc, 0.9) == pytest.approx(3.0)
    assert np.isnan(pareto_energy_at(energy, acc, 0.95))


def test_energy_ratios_from_a_synthetic_comparison():
    import xarray as xr
    ds = xr.Dataset({"energy": ("point", [0.01, 0.02, 0.04, 0.08, 0.03, 0.06]),
                     "accuracy_mean": ("point", [0.90, 0.95, 0.90, 0.95, 0.90, 0.95])},
                    coords={"method": ("point", ["lanmax", "lanmax", "bc_uniform", "bc_uniform", "bc", "bc"])})
    r = energy_ratios(ds, target=0.95)
    assert r["ratio_vs_bc_uniform"] == pytest.approx(4.0) and r["ratio_vs_bc"] == pytest.approx(3.0)


def test_uniform_study_dims_and_cache(tmp_path):
    store = Store(tmp_path, read_only=[])
    ds = uniform_ber_study([0.0, 0.05], [0.0, 0.5], seeds=(0,), draws=3, store=store, device="cpu", epochs=2)
    assert ds.accuracy.dims == ("p_train", "p", "seed", "draw") and ds.accuracy.shape == (2, 2, 1, 3)
    for v in ds.data_vars.values():
        assert v.attrs["long_name"] and "units" in v.attrs
    assert np.all(ds.accuracy.sel(p=0.5).values < 0.35)           # p = 0.5 is chance level
    assert float(ds.accuracy_mean.sel(p_train=0.0, p=0.0)) > 0.5
    with pytest.raises(KnobError, match="p_test"):
        uniform_ber_study([0.0], [0.7], store=store)


def test_sweep_spec_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"experiments": {"nope": {}}}))
    with pytest.raises(KnobError, match="nope"):
        load_spec(bad)
    bad.write_text("{not json")
    with pytest.raises(KnobError, match="not valid JSON"):
        load_spec(bad)
    assert set(load_spec()["experiments"]) == {"uniform_ber", "sensitivity", "energy_accuracy", "spectra"}
    with pytest.raises(KnobError, match="experiment"):
        run_experiment("nope", {}, Store(tmp_path, read_only=[]))


def test_sram_map_shapes():
    m = sram_map({"features.0": 0.1})
    assert m["default"]["p"] == 0.0 and m["overrides"]["features.0"]["p"] == 0.1
    assert bc_config(0.01).train_memory["default"]["p"] == 0.01 and bc_config(0.0).train_memory is None


def test_wrn28_10_thesis_preset_one_tiny_step():
    cfg = preset_config("wrn28-10-bc-cifar10", epochs=1, batch_size=4)
    assert (cfg.model, cfg.depth, cfg.k, cfg.binary, cfg.lr, cfg.schedule, cfg.step_every, cfg.augment) == \
        ("wrn", 28, 10.0, True, 0.1, "step", 60, True)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)
    data = DataBundle(
        "generated", torch.utils.data.TensorDataset(x, y), torch.utils.data.TensorDataset(x, y), 10, 3, 32
    )
    res = train(cfg, data, device="cpu")
    assert len(res.history["loss"]) == 1 and np.isfinite(res.history["loss"][0])
    convs = [m for m in res.model.modules() if hasattr(m, "binary")]
    assert len(convs) == 29 and all(m.binary for m in convs)
    assert all(float(m.weight.abs().max()) <= 1.0 for m in convs)      # BinaryConnect latent clipping


def test_cli_sweep_and_lanmax_json(tmp_path):
    import contextlib
    import io

    from workbench.cli import main
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({"name": "tiny", "experiments": {
        "uniform_ber": {"p_train": [0.0], "p_test": [0.0, 0.5], "seeds": [0], "draws": 2}}}))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["sweep", str(spec), "--cache-dir", str(tmp_path / "store"), "--json", "--device", "cpu"])
    assert rc == 0
    res = json.loads(out.getvalue())
    assert res["experiments"]["uniform_ber"]["dims"] == {"p_train": 1, "p": 2, "seed": 1, "draw": 2}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["lanmax", "--set", "epochs=2", "--set", "width=0.5", "--alpha", "1.0", "--draws", "2",
                   "--cache-dir", str(tmp_path / "store"), "--json", "--device", "cpu"])
    assert rc == 0
    res = json.loads(out.getvalue())
    assert set(res["p"]) and all(1e-4 <= v <= 0.5 for v in res["p"].values())
    assert 0.0 <= res["accuracy_mean"] <= 1.0 and res["energy"] > 0
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["lanmax", "--alpha", "20", "--cache-dir", str(tmp_path / "store")]) == 2


def test_restate_energy_converts_the_stored_fp16_energy():
    """An evaluation stores E relative to 16 bits; restated, it is E relative to the same storage read
    reliably — also when layers store different numbers of bits (the counts are then needed)."""
    import xarray as xr

    from workbench.experiments.core import restate_energy
    from workbench.hardware import ENERGY_REFERENCES, IdealMemory, MemoryMap, SRAMMemory, make, memory_map_energy
    counts = {"a": 100, "b": 2000, "c": 30}
    for mmap in (MemoryMap(make(SRAMMemory, p=1e-2), {"b": make(SRAMMemory, p=1e-3)}),
                 MemoryMap(make(SRAMMemory, p=1e-2, bits=4)),
                 MemoryMap(make(SRAMMemory, p=1e-2), {"c": IdealMemory()})):
        stored = xr.Dataset({"energy": ((), memory_map_energy(counts, mmap, "fp16"))})
        for ref in ("same-network", "fp16"):
            ds = restate_energy(stored.copy(), mmap, ref, lambda: counts)
            assert float(ds.energy) == pytest.approx(memory_map_energy(counts, mmap, ref), rel=1e-12)
            assert ds.attrs["energy_reference"] == ref
            assert ds.energy.attrs["long_name"].endswith(ENERGY_REFERENCES[ref])


def test_evaluate_lanmax_energy_is_relative_to_the_same_network(tmp_path):
    """A LaNMax network's E is Σ η(p_l) n_l / Σ n_l at its learned p (eq 3.30, thesis §4.4); fp16 is ÷ 16."""
    from workbench.experiments import param_counts
    from workbench.experiments.sram import evaluate_lanmax
    from workbench.hardware import relative_energy
    store = Store(tmp_path, read_only=[])
    cfg = bc_config(0.0, 0, epochs=1)
    ds = evaluate_lanmax(cfg, {"alpha": 0.01}, draws=2, store=store, device="cpu")
    counts = param_counts(cfg)
    p = dict(zip(ds.layer.values, ds.learned_p.values))
    expected = relative_energy([p[k] for k in counts], list(counts.values()))
    assert float(ds.energy) == pytest.approx(expected, rel=1e-9) and ds.attrs["energy_reference"] == "same-network"
    fp16 = evaluate_lanmax(cfg, {"alpha": 0.01}, draws=2, store=store, device="cpu", energy_reference="fp16")
    assert float(fp16.energy) == pytest.approx(expected / 16, rel=1e-9)
