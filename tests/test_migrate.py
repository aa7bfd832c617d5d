"""The store migration to knob-named dims (``workbench.experiments.migrate``) and the shipped
results it was run on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from workbench.experiments import SHIPPED_ROOT, Store, spec_key
from workbench.experiments.migrate import dim_renames, main, migrate_dims
from workbench.experiments.sharpness import noise_dim
from workbench.nas.space import STATE_ATTRS, STATE_DIM


def old_robustness(noise_knob: str | None) -> xr.Dataset:
    """A robustness Dataset as written before the rename: noise axis ``level``."""
    rng = np.random.default_rng(3)
    ds = xr.Dataset({"accuracy_mean": (("method", "level"), rng.random((2, 3)), {"long_name": "acc", "units": "1"})},
                    coords={"method": ["sgd", "sam"], "level": ("level", [0.0, 0.2, 0.4], {"long_name": "noise"})})
    return ds.assign_attrs(level_name=noise_knob) if noise_knob else ds


def old_nas() -> xr.Dataset:
    rng = np.random.default_rng(4)
    return xr.Dataset({"state_vector": (("state", "var"), rng.random((4, 2)), {"long_name": "s", "units": "1"})},
                      coords={"var": ("var", ["D_0", "g_u:stem"], {"long_name": "state entry", "units": ""})})


def put(store: Store, kind: str, spec: dict, ds: xr.Dataset, key: str | None = None) -> str:
    key = key or spec_key(kind, spec)
    store.save_dataset(kind, key, ds, spec)
    return key


def test_migration_renames_dims_keeps_keys_values_and_checksums(tmp_path):
    store = Store(tmp_path, read_only=[])
    olds = {("sweep-robustness", "sigma_c"): old_robustness("sigma_c"),
            ("sweep-robustness_additive", "sigma"): old_robustness("sigma"),
            ("sweep-rho", "sigma_c"): old_robustness(None),
            ("sweep-nas", STATE_DIM): old_nas()}
    keys = {kind: put(store, kind, {"n": i}, ds) for i, ((kind, _), ds) in enumerate(olds.items())}
    stale = put(store, "sweep-robustness", {"n": 99}, old_robustness("sigma"), key=spec_key("x", {}, "0.0.0"))
    untouched = store.path("sweep-robustness", stale, "nc").read_bytes()

    assert sorted(migrate_dims(store)) == sorted(f"{k}/{v}" for k, v in keys.items())
    for (kind, dim), old in olds.items():
        new = store.load_dataset(kind, keys[kind])
        assert store.find(kind, keys[kind], "nc") is not None            # checksum rewritten
        assert spec_key(kind, json.loads(new.attrs["spec_json"])) == keys[kind]   # same key, same spec
        assert dim in new.dims and "level" not in new.dims and "var" not in new.dims
        for v in old.data_vars:
            np.testing.assert_array_equal(new[v].values, old[v].values)
        if dim == STATE_DIM:
            assert new[STATE_DIM].attrs == STATE_ATTRS
        else:
            assert noise_dim(new) == dim
    assert store.path("sweep-robustness", stale, "nc").read_bytes() == untouched   # no current code reads it
    assert migrate_dims(store) == []                                               # idempotent


def test_migration_command_defaults_to_one_store(tmp_path, capsys):
    store = Store(tmp_path, read_only=[])
    key = put(store, "sweep-robustness", {"n": 1}, old_robustness("sigma_c"))
    main(["--cache-dir", str(tmp_path)])
    assert capsys.readouterr().out.split() == ["migrated", f"sweep-robustness/{key}"]


@pytest.mark.parametrize("kind, dim", [("sweep-robustness", "sigma_c"), ("sweep-robustness_additive", "sigma"),
                                       ("sweep-rho", "sigma_c"), ("sweep-nas", STATE_DIM), ("nas", STATE_DIM)])
def test_shipped_results_have_knob_named_dims(kind, dim):
    store = Store(SHIPPED_ROOT, read_only=[])
    entries = [e for e in store.entries() if e.kind == kind]
    assert entries
    for e in entries:
        ds = store.load_dataset(e.kind, e.key)
        assert e.ok and dim in ds.dims and dim_renames(ds) == {}
