"""Tests for ``workbench.experiments.store``: keys, round trips, atomic writes, integrity,
management (verify/clear), read-only shipped roots and two processes computing one key.

Every store lives in ``tmp_path``; the user cache is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import workbench.experiments.core as core
import workbench.experiments.store as store_mod
import workbench.keys as keys_mod
from workbench.experiments import Store, evaluate, preset_config, spec_key, train_model
from workbench.experiments.store import CODE_VERSION, canonical

from helpers import release_together

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers

def seeded_dataset(seed: int = 7) -> xr.Dataset:
    """A small Dataset whose values depend only on ``seed``."""
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {"accuracy": ("draw", rng.random(50), {"long_name": "test accuracy", "units": "1"}),
         "grid": (("draw", "layer"), rng.normal(size=(50, 3)), {"long_name": "something", "units": "a.u."})},
        coords={"draw": ("draw", np.arange(50), {"long_name": "Monte-Carlo draw", "units": "1"}),
                "layer": ["a", "b", "c"]},
        attrs={"accuracy_mean": 0.5, "draws": 50, "label": "x"})


class Counter:
    """A compute function that counts its calls."""

    def __init__(self, seed: int = 7):
        self.calls = 0
        self.seed = seed

    def __call__(self) -> xr.Dataset:
        self.calls += 1
        return seeded_dataset(self.seed)


def data_only(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` without its Dataset attrs (which carry cache bookkeeping)."""
    out = ds.copy()
    out.attrs = {}
    return out


def truncate(path: Path) -> None:
    size = path.stat().st_size
    assert size > 20
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


TINY = dict(epochs=2)          # accuracy does not matter for the store: train as little as possible
SRAM = {"default": {"technology": "sram", "p": 0.05, "bits": 1}, "overrides": {}}


# --------------------------------------------------------------------------- keys

def _other_value(name, value):
    """A different, valid value of TrainConfig knob ``name``."""
    special = {"dataset": "mnist", "model": "vgg11", "optimizer": "adam", "schedule": "step", "sam": "samson2",
               "rho": 0.5, "init_weights": "start.pt",
               "train_memory": {"default": {"technology": "sram", "p": 0.01}, "overrides": {}}}
    if name in special:
        return special[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value > 0 else 0.25
    raise AssertionError(f"no alternative value for {name}={value!r}")


def test_key_depends_on_every_spec_field():
    spec = preset_config().to_dict()
    assert len(spec) >= 15
    base = spec_key("weights", spec)
    keys = {base}
    for name, value in spec.items():
        changed = {**spec, name: _other_value(name, value)}
        # the changed value is itself a valid config (so the key is of a reachable spec; ρ needs a
        # sharpness-aware optimizer to be valid)
        preset_config().replace(**{name: changed[name]}, **({"sam": "sam"} if name == "rho" else {}))
        k = spec_key("weights", changed)
        assert k != base, f"key ignores {name}"
        keys.add(k)
    assert len(keys) == len(spec) + 1
    # nested specs (evaluate: train config + memory + draws + seed)
    ev = {"train": spec, "memory": SRAM, "draws": 30, "seed": 0, "target_ci_width": None}
    ev_keys = {spec_key("evaluate", ev)}
    for change in ({"draws": 31}, {"seed": 1}, {"target_ci_width": 0.01},
                   {"memory": {"default": {**SRAM["default"], "p": 0.06}, "overrides": {}}},
                   {"memory": {**SRAM, "overrides": {"classifier": {"technology": "ideal"}}}}):
        ev_keys.add(spec_key("evaluate", {**ev, **change}))
    assert len(ev_keys) == 6
    # the kind is part of the key; key order in the spec is not
    assert spec_key("evaluate", spec) != base
    assert spec_key("weights", dict(reversed(list(spec.items())))) == base
    assert len(base) == 24 and all(c in "0123456789abcdef" for c in base)


def test_key_depends_on_code_version(tmp_path, monkeypatch):
    spec = {"a": 1}
    k = spec_key("thing", spec)
    assert k == spec_key("thing", spec, CODE_VERSION)
    assert spec_key("thing", spec, CODE_VERSION + ".next") != k
    # bumping CODE_VERSION (as a release that changes results does) invalidates the cache
    store = Store(tmp_path, read_only=[])
    compute = Counter()
    store.get_or_compute("thing", spec, compute)
    store.get_or_compute("thing", spec, compute)
    assert compute.calls == 1
    for mod in (keys_mod, store_mod):          # the key (workbench.keys) and the stored attrs (the store)
        monkeypatch.setattr(mod, "CODE_VERSION", CODE_VERSION + ".next")
    assert spec_key("thing", spec) != k
    ds = store.get_or_compute("thing", spec, compute)
    assert compute.calls == 2
    assert ds.attrs["code_version"] == CODE_VERSION + ".next"


# --------------------------------------------------------------------------- round trips

def test_dataset_round_trip(tmp_path):
    store = Store(tmp_path, read_only=[])
    spec = {"train": {"lr": 0.05, "train_memory": None, "binary": True}, "draws": 50, "values": [1, 2.5]}
    ds = seeded_dataset()
    ds.attrs.update(flag=True, nested={"a": [1, 2]}, nothing=None)
    key = spec_key("evaluate", spec)
    path = store.save_dataset("evaluate", key, ds, spec)
    assert path == tmp_path / "evaluate" / f"{key}.nc"          # the spec is never in the file name
    assert path.with_name(path.name + ".sha256").read_text().strip() == store_mod._sha256(path)
    back = store.load_dataset("evaluate", key)
    xr.testing.assert_identical(data_only(back), data_only(ds))
    for name in ("accuracy", "grid", "draw"):
        assert back[name].attrs == ds[name].attrs
    assert json.loads(back.attrs["spec_json"]) == spec
    assert back.attrs["spec_json"] == canonical(spec)
    assert back.attrs["kind"] == "evaluate"
    assert back.attrs["code_version"] == CODE_VERSION
    assert back.attrs["accuracy_mean"] == 0.5 and back.attrs["draws"] == 50 and back.attrs["label"] == "x"
    # attrs netCDF cannot hold are stored as JSON
    assert json.loads(back.attrs["nested"]) == {"a": [1, 2]}
    assert json.loads(back.attrs["flag"]) is True
    assert json.loads(back.attrs["nothing"]) is None
    assert "spec_json" not in ds.attrs                          # the caller's Dataset is not modified


def test_object_round_trip(tmp_path):
    store = Store(tmp_path, read_only=[])
    spec = preset_config(**TINY).to_dict()
    torch.manual_seed(0)
    obj = {"state_dict": {"w": torch.randn(4, 3), "b": torch.arange(3)}, "history": {"loss": [1.0, 0.5]},
           "test_accuracy": 0.9, "device": "cpu"}
    key = spec_key("weights", spec)
    path = store.save_object("weights", key, obj, spec)
    assert path == tmp_path / "weights" / f"{key}.pt"
    back = store.load_object("weights", key)
    assert torch.equal(back["state_dict"]["w"], obj["state_dict"]["w"])
    assert torch.equal(back["state_dict"]["b"], obj["state_dict"]["b"])
    assert back["history"] == obj["history"] and back["test_accuracy"] == 0.9 and back["device"] == "cpu"
    assert back["spec"] == spec and back["code_version"] == CODE_VERSION
    assert store.load_object("weights", "0" * 24) is None


# --------------------------------------------------------------------------- atomic writes

def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    store = Store(tmp_path, read_only=[])
    spec = {"a": 1}
    key = spec_key("thing", spec)
    target = store.path("thing", key, "nc")
    store.save_dataset("thing", key, seeded_dataset(1), spec)      # an old, complete entry
    real_fsync = os.fsync
    seen = []

    def spy(fd):
        # while the new bytes are being written, the target still holds the OLD complete file and a
        # reader gets exactly that (never a prefix of the new one); the bytes go to a temporary
        # file in the same directory (so os.replace is an atomic rename)
        written = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if written.suffix == ".tmp":
            assert written.parent == target.parent and written != target
            old = store.load_dataset("thing", key)
            assert old is not None
            xr.testing.assert_identical(data_only(old), data_only(seeded_dataset(1)))
            seen.append(written)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    store.save_dataset("thing", key, seeded_dataset(2), spec)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert seen, "the data was not written through a temporary file"
    new = store.load_dataset("thing", key)
    xr.testing.assert_identical(data_only(new), data_only(seeded_dataset(2)))
    assert tmp_files(tmp_path) == []


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    store = Store(tmp_path, read_only=[])
    spec = {"a": 2}
    key = spec_key("thing", spec)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.save_dataset("thing", key, seeded_dataset(), spec)
    monkeypatch.undo()
    assert tmp_files(tmp_path) == []
    assert not store.path("thing", key, "nc").exists()
    assert store.load_dataset("thing", key) is None
    # and a failing compute leaves no entry either
    def failing():
        raise RuntimeError("compute failed")
    with pytest.raises(RuntimeError, match="compute failed"):
        store.get_or_compute("thing", spec, failing)
    assert [e for e in store.entries()] == []


def test_get_or_compute_caches_and_reports_hits(tmp_path):
    store = Store(tmp_path, read_only=[])
    compute = Counter()
    first = store.get_or_compute("thing", {"a": 3}, compute)
    second = store.get_or_compute("thing", {"a": 3}, compute)
    assert compute.calls == 1
    assert first.attrs["cache"] == "computed" and second.attrs["cache"] == "hit"
    key = spec_key("thing", {"a": 3})
    assert first.attrs["cache_key"] == key and second.attrs["cache_key"] == key
    xr.testing.assert_identical(data_only(first), data_only(second))
    store.get_or_compute("thing", {"a": 4}, compute)
    assert compute.calls == 2
    assert tmp_files(tmp_path) == []


# --------------------------------------------------------------------------- integrity

def test_truncated_nc_is_recomputed_with_same_result(tmp_path):
    store = Store(tmp_path, read_only=[])
    compute = Counter(seed=11)
    first = store.get_or_compute("thing", {"a": 5}, compute)
    path = store.path("thing", first.attrs["cache_key"], "nc")
    truncate(path)
    assert not store._valid(path)
    again = store.get_or_compute("thing", {"a": 5}, compute)
    assert compute.calls == 2 and again.attrs["cache"] == "computed"
    xr.testing.assert_identical(data_only(again), data_only(first))
    assert store._valid(path)


def test_missing_sidecar_counts_as_incomplete(tmp_path):
    store = Store(tmp_path, read_only=[])
    compute = Counter()
    first = store.get_or_compute("thing", {"a": 6}, compute)
    path = store.path("thing", first.attrs["cache_key"], "nc")
    side = path.with_name(path.name + ".sha256")
    side.unlink()
    assert [e.ok for e in store.entries()] == [False]
    # an unlocked reader neither trusts nor deletes it: it may be an entry being written right now
    assert store.load_dataset("thing", first.attrs["cache_key"]) is None
    assert path.exists()
    again = store.get_or_compute("thing", {"a": 6}, compute)
    assert compute.calls == 2 and again.attrs["cache"] == "computed"
    assert side.is_file() and store._valid(path)
    xr.testing.assert_identical(data_only(again), data_only(first))


def test_corrupt_sidecar_or_flipped_byte_is_detected(tmp_path):
    store = Store(tmp_path, read_only=[])
    compute = Counter()
    first = store.get_or_compute("thing", {"a": 7}, compute)
    path = store.path("thing", first.attrs["cache_key"], "nc")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert store.find("thing", first.attrs["cache_key"], "nc") is None      # present but not valid
    assert path.is_file()                                                     # and kept: no repair asked
    again = store.get_or_compute("thing", {"a": 7}, compute)
    assert store.find("thing", first.attrs["cache_key"], "nc") == path
    assert compute.calls == 2
    xr.testing.assert_identical(data_only(again), data_only(first))


def test_truncated_pt_is_retrained_with_same_weights(tmp_path):
    store = Store(tmp_path, read_only=[])
    cfg = preset_config(**TINY)
    first = train_model(cfg, store)
    assert not first.cached
    path = store.path("weights", first.cache_key, "pt")
    truncate(path)
    again = train_model(cfg, store)
    assert not again.cached                      # retrained, not loaded
    assert again.cache_key == first.cache_key
    assert again.test_accuracy == first.test_accuracy
    for (n1, t1), (n2, t2) in zip(first.model.state_dict().items(), again.model.state_dict().items()):
        assert n1 == n2 and torch.equal(t1, t2), n1
    assert store._valid(path)
    assert train_model(cfg, store).cached


def test_truncated_evaluate_files_recompute_the_same_seeded_result(tmp_path, monkeypatch):
    """Acceptance: truncating cached .nc / .pt files makes evaluate recompute the same result."""
    store = Store(tmp_path, read_only=[])
    cfg = preset_config("digits-bc", **TINY)
    calls = {"train": 0, "mc": 0}
    real_train, real_mc = core.train, core.mc_evaluate

    def counting_train(*a, **k):
        calls["train"] += 1
        return real_train(*a, **k)

    def counting_mc(*a, **k):
        calls["mc"] += 1
        return real_mc(*a, **k)

    monkeypatch.setattr(core, "train", counting_train)
    monkeypatch.setattr(core, "mc_evaluate", counting_mc)
    first = evaluate(cfg, SRAM, draws=6, seed=3, store=store)
    assert first.attrs["cache"] == "computed" and calls == {"train": 1, "mc": 1}
    assert np.ptp(first.accuracy.values) > 0            # a noisy result: equality below is meaningful
    nc = store.path("evaluate", first.attrs["cache_key"], "nc")
    pt = store.path("weights", first.attrs["weights_key"], "pt")
    assert nc.is_file() and pt.is_file()

    assert evaluate(cfg, SRAM, draws=6, seed=3, store=store).attrs["cache"] == "hit"
    assert calls == {"train": 1, "mc": 1}

    truncate(nc)
    second = evaluate(cfg, SRAM, draws=6, seed=3, store=store)
    assert second.attrs["cache"] == "computed" and calls == {"train": 1, "mc": 2}
    np.testing.assert_array_equal(second.accuracy.values, first.accuracy.values)

    truncate(nc)
    truncate(pt)
    third = evaluate(cfg, SRAM, draws=6, seed=3, store=store)
    assert third.attrs["cache"] == "computed" and calls == {"train": 2, "mc": 3}
    np.testing.assert_array_equal(third.accuracy.values, first.accuracy.values)
    for name in ("accuracy_mean", "accuracy_std", "ci95_low", "ci95_high", "clean_accuracy", "weights_key"):
        assert third.attrs[name] == first.attrs[name], name
    assert store._valid(nc) and store._valid(pt)


# --------------------------------------------------------------------------- management

def test_verify_reports_and_removes_bad_entries(tmp_path):
    store = Store(tmp_path, read_only=[])
    good = store.get_or_compute("thing", {"a": 1}, Counter())
    bad_trunc = store.get_or_compute("thing", {"a": 2}, Counter())
    bad_side = store.get_or_compute("thing", {"a": 3}, Counter())
    store.save_object("weights", "f" * 24, {"x": torch.ones(3)}, {"s": 1})
    truncate(store.path("thing", bad_trunc.attrs["cache_key"], "nc"))
    store.path("thing", bad_side.attrs["cache_key"], "nc.sha256").unlink()

    report = store.verify(repair=False)
    status = {e.key: e.ok for e in report}
    assert status == {good.attrs["cache_key"]: True, bad_trunc.attrs["cache_key"]: False,
                      bad_side.attrs["cache_key"]: False, "f" * 24: True}
    assert all(e.path.exists() for e in report)                  # repair=False removes nothing
    assert {e.kind for e in report} == {"thing", "weights"} and not any(e.shipped for e in report)

    report = store.verify()
    assert sum(not e.ok for e in report) == 2
    for e in report:
        assert e.path.exists() == e.ok
        assert e.path.with_name(e.path.name + ".sha256").exists() == e.ok
    after = store.verify()
    assert len(after) == 2 and all(e.ok for e in after)


def test_verify_does_not_remove_an_entry_being_written(tmp_path):
    """A data file whose sidecar is not written yet belongs to a writer holding the entry's lock."""
    import threading

    store = Store(tmp_path, read_only=[])
    spec = {"a": 9}
    key = spec_key("thing", spec)
    path = store.save_dataset("thing", key, seeded_dataset(), spec)
    side = path.with_name(path.name + ".sha256")
    digest = side.read_text()
    reports = []
    asked = threading.Event()
    real_lock = store.lock

    def spy_lock(kind, k):                         # the real lock; tells the test when verify asks for it
        if threading.current_thread() is worker and (kind, k) == ("thing", key):
            asked.set()
        return real_lock(kind, k)
    store.lock = spy_lock
    with real_lock("thing", key):               # a writer: data replaced, sidecar not yet written
        side.unlink()
        worker = threading.Thread(target=lambda: reports.append(store.verify()))
        worker.start()
        assert asked.wait(30), "verify never asked for the entry's lock"
        assert worker.is_alive()                  # ... and waits for it (flock is per open file, also between threads)
        assert store.load_dataset("thing", key) is None and path.exists()
        side.write_text(digest)                   # the writer finishes
    worker.join(30)
    assert not worker.is_alive()
    assert path.exists() and store._valid(path)
    assert store.load_dataset("thing", key) is not None


def test_clear_removes_entries_only(tmp_path):
    root = tmp_path / "cache"
    store = Store(root, read_only=[])
    compute = Counter()
    store.get_or_compute("thing", {"a": 1}, compute)
    store.get_or_compute("other", {"a": 1}, compute)
    # --cache-dir may name a directory holding other things: those are not the store's to delete
    (root / "notes.txt").write_text("mine")
    (root / "mine").mkdir()
    (root / "mine" / "keep.txt").write_text("mine")
    assert store.clear() == 2
    assert store.entries() == []
    assert (root / "notes.txt").read_text() == "mine" and (root / "mine" / "keep.txt").read_text() == "mine"
    assert not (root / "thing").exists() and not (root / "other").exists()
    store.get_or_compute("thing", {"a": 1}, compute)
    assert compute.calls == 3
    empty = Store(tmp_path / "never-used", read_only=[])
    assert empty.clear() == 0


def test_shipped_roots_are_consulted_and_never_deleted(tmp_path):
    shipped_root = tmp_path / "shipped"
    shipper = Store(shipped_root, read_only=[])
    shipped_ds = shipper.get_or_compute("thing", {"a": 1}, Counter(seed=1))
    shipper.get_or_compute("thing", {"a": 2}, Counter(seed=2))
    bad_key = spec_key("thing", {"a": 2})
    truncate(shipper.path("thing", bad_key, "nc"))               # a damaged shipped file
    before = {p: p.read_bytes() for p in shipped_root.rglob("*") if p.is_file()}

    store = Store(tmp_path / "user", read_only=[shipped_root])
    compute = Counter(seed=1)
    hit = store.get_or_compute("thing", {"a": 1}, compute)
    assert compute.calls == 0 and hit.attrs["cache"] == "hit"
    xr.testing.assert_identical(data_only(hit), data_only(shipped_ds))
    assert not store.path("thing", spec_key("thing", {"a": 1}), "nc").exists()   # served, not copied
    good_key = spec_key("thing", {"a": 1})
    assert store.find("thing", good_key, "nc") == shipper.path("thing", good_key, "nc")      # the read-only root's
    assert store.find("thing", bad_key, "nc") is None and store.find("thing", bad_key, "pt") is None
    # the damaged shipped entry is skipped and recomputed into the writable root
    recomputed = store.get_or_compute("thing", {"a": 2}, Counter(seed=2))
    assert recomputed.attrs["cache"] == "computed"
    assert store.path("thing", bad_key, "nc").is_file()

    entries = store.verify()
    shipped = [e for e in entries if e.shipped]
    assert {(e.key, e.ok) for e in shipped} == {(spec_key("thing", {"a": 1}), True), (bad_key, False)}
    assert store.clear() == 1
    after = {p: p.read_bytes() for p in shipped_root.rglob("*") if p.is_file()}
    assert after == before                                       # verify/clear left the shipped root alone
    assert store.get_or_compute("thing", {"a": 1}, compute).attrs["cache"] == "hit"
    # a store whose own root is the shipped root does not list it twice
    assert len(Store(shipped_root, read_only=[shipped_root]).entries()) == 2
    assert Store(tmp_path / "x").read_only == [store_mod.SHIPPED_ROOT]


# --------------------------------------------------------------------------- two processes

CHILD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import numpy as np
    import xarray as xr
    from workbench.experiments.store import Store

    root, marker, tag = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    sync = Path(root).parent

    def compute():
        with open(marker, "a") as f:
            f.write(f"{tag} {os.getpid()}\\n")
        time.sleep(1.0)                      # long enough for the other process to ask meanwhile
        rng = np.random.default_rng(1234)
        return xr.Dataset({"x": ("i", rng.normal(size=2000), {"long_name": "x", "units": "1"})})

    (sync / f"ready-{tag}").touch()
    deadline = time.time() + 60
    while not (sync / "go").exists():
        if time.time() > deadline:
            sys.exit("no go signal")
        time.sleep(0.005)
    ds = Store(root, read_only=[]).get_or_compute("race", {"spec": 1}, compute)
    print(json.dumps({"x": ds.x.values.tolist(), "cache": ds.attrs["cache"], "key": ds.attrs["cache_key"]}))
""")


def test_two_processes_compute_once(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    root = tmp_path / "store"
    marker = tmp_path / "marker.txt"
    env = {**os.environ, "WORKBENCH_CACHE": str(tmp_path / "env-cache")}
    runs = release_together([[sys.executable, str(script), str(root), str(marker), tag] for tag in ("a", "b")],
                            tmp_path, ["a", "b"], env, timeout=120)
    outs = [(out, err) for _, out, err in runs]
    for rc, _, err in runs:
        assert rc == 0, err
        assert "Traceback" not in err
    results = [json.loads(out) for out, _ in outs]
    assert len(marker.read_text().splitlines()) == 1            # computed exactly once
    assert sorted(r["cache"] for r in results) == ["computed", "hit"]
    assert results[0]["key"] == results[1]["key"]
    assert results[0]["x"] == results[1]["x"]
    assert len(results[0]["x"]) == 2000
    store = Store(root, read_only=[])
    assert [e.ok for e in store.entries()] == [True]
    assert tmp_files(root) == []


# --------------------------------------------------------------------------- first use on threads

FIRST_USE = textwrap.dedent("""
    import json, sys, tempfile, threading
    import numpy as np, xarray as xr
    from workbench.experiments.store import Store
    before = set(sys.modules)
    store = Store(tempfile.mkdtemp(), read_only=[])

    def first_use():
        store.save_dataset("k", "a", xr.Dataset({"x": ("i", np.arange(3.0))}), {})
        store.load_dataset("k", "a")
    t = threading.Thread(target=first_use)
    t.start()
    t.join()
    print(json.dumps(sorted(m for m in set(sys.modules) - before if m.split(".")[0] in ("dask", "distributed"))))
""")


def test_first_store_use_on_a_thread_imports_no_dask(tmp_path):
    """The first netCDF write/read on a worker thread must not import dask or distributed lazily:
    two sessions of a served page doing that at once raced in those imports (one failed with
    "module 'dask' has no attribute 'utils'"); the store imports them up front."""
    script = tmp_path / "first_use.py"
    script.write_text(FIRST_USE)
    out = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "WORKBENCH_CACHE": str(tmp_path / "c")})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
