"""A searched network out: ``workbench nas --export DIR`` writes a point of the shipped crossbar
study's M2 front as a standalone network; it loads without the supernet, computes what the subnet
computes in the supernet after its batch-norm recalibration, and its Monte-Carlo power under its
exported per-layer g_u reproduces the study's."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.analysis.montecarlo import mc_evaluate
from workbench.cli import main
from workbench.datasets import as_tensors, load_dataset
from workbench.experiments.crossbar import load_supernet, nas_study
from workbench.experiments.store import Store
from workbench.experiments.sweep import CROSSBAR_SPEC, load_spec
from workbench.hardware import MemristorMemory, memory_map_from_dict
from workbench.knobs import KnobError
from workbench.nas.export import default_point, subnet_of
from workbench.nn.exported import load_exported
from workbench.nn.external import build_user_model, exported_memory_overrides, model_digest
from workbench.nn.layers import noisy_layers
from workbench.nn.models import to_noisy


def run_json(argv, capsys):
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The crossbar page's study and supernet, read from the shipped store (nothing computed); writes
    go to a temporary store."""
    params = load_spec(CROSSBAR_SPEC)["experiments"]["nas"]
    store = Store(tmp_path_factory.mktemp("store"))
    ds = nas_study(params["nas"], params["supernet"], store)
    assert ds.attrs["cache"] == "hit", "the shipped store lacks the crossbar study (workbench sweep " \
                                       "specs/crossbar_digits.json --cache-dir data/store)"
    return ds, load_supernet(params["supernet"], store).supernet, store


@pytest.fixture(scope="module")
def exported(shipped, tmp_path_factory):
    """``workbench nas --export DIR --json`` run in-process, and what it printed."""
    ds, _, store = shipped
    d = tmp_path_factory.mktemp("exported") / "net"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["nas", "--export", str(d), "--cache-dir", str(store.root), "--json"])
    assert rc == 0
    return d, json.loads(buf.getvalue())


def test_default_export_is_the_most_accurate_point_of_the_joint_front(shipped, exported, single_thread):
    ds, _, _ = shipped
    d, out = exported
    assert sorted(p.name for p in d.iterdir()) == ["architecture.json", "metadata.json", "weights.pt"]
    m2 = ds.sel(strategy="M2")
    front = m2.on_front.values
    assert out["strategy"] == "M2" and out["point"] == default_point(ds)
    assert front[out["point"]] and out["accuracy"] == pytest.approx(float(m2.accuracy.values[front].max()))
    meta = json.loads((d / "metadata.json").read_text())
    # re-measured with the study's draws and seed: the stored accuracy and power, to float rounding
    assert meta["accuracy"]["mean"] == pytest.approx(meta["stored"]["accuracy"], abs=1e-12)
    assert meta["power"]["mean"] == pytest.approx(meta["stored"]["power"], rel=1e-6)
    assert out["power"] == meta["power"]["mean"] and out["dir"] == str(d.resolve())
    lo, hi = meta["power"]["ci95"]
    assert lo < meta["power"]["mean"] < hi and meta["power"]["draws"] == 5
    assert meta["provenance"]["nas_key"] == ds.attrs["cache_key"] and "nas --export" in meta["provenance"]["command"]


def test_exported_network_computes_the_recalibrated_subnet_without_the_supernet(shipped, exported, single_thread):
    _, supernet, _ = shipped
    d, out = exported
    meta = json.loads((d / "metadata.json").read_text())
    net, g_u = load_exported(d)
    assert not any(isinstance(p, torch.nn.BatchNorm2d) for p in net.modules())        # folded
    assert set(g_u) == set(noisy_layers(to_noisy(load_exported(d)[0])))
    # the subnet in the supernet after its BN recalibration (BN not folded: the fold is the only difference)
    sub = subnet_of(supernet, meta["provenance"]["state_vector"], seed=0, fold_bn=False)
    x, y = as_tensors(load_dataset("digits").test)
    with torch.no_grad():
        a, b = sub(x), net(x)
    # equal to float tolerance (folding reorders float32 products); the predictions exactly
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    acc = (b.argmax(1) == y).double().mean().item()
    assert acc == (a.argmax(1) == y).double().mean().item() == meta["clean_accuracy"]
    # loading imports nothing of the NAS (a fresh interpreter)
    code = ("import sys; from workbench.nn.exported import load_exported; load_exported(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.startswith('workbench.nas')))")
    r = subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_power_under_the_exported_g_u_lies_in_the_measured_interval(exported, single_thread):
    d, _ = exported
    meta = json.loads((d / "metadata.json").read_text())
    spec = f"exported:{d}"
    net = build_user_model(spec)
    default = MemristorMemory(noise="additive", sigma=meta["noise"]["sigma"], g_min=0.0).knobs()
    mm = memory_map_from_dict({"default": default, "overrides": exported_memory_overrides(spec, default)})
    assert {n: mm[n].g_u for n in noisy_layers(net)} == meta["g_u"]
    x, y = as_tensors(load_dataset("digits").test)
    # the study's seed and draws: its power draw for draw (same layers, same order, same noise)
    same = mc_evaluate(net, x, y, mm, draws=5, seed=0, device="cpu", power_batch=len(y))
    assert float(same.power.mean()) == pytest.approx(meta["power"]["mean"], rel=1e-5)
    # fresh draws: their mean (20 draws, sd σ/√20) lies in the 5-draw t-interval of the study's
    # (the difference's sd is 0.5σ, the half-width 1.24σ: outside with probability ~1.3 %)
    fresh = mc_evaluate(net, x, y, mm, draws=20, seed=1, device="cpu", power_batch=len(y))
    lo, hi = meta["power"]["ci95"]
    assert lo <= float(fresh.power.mean()) <= hi
    # (accuracy is not compared so: the default point is the front's most accurate, picked on the
    # same 5 draws, so its stored accuracy is biased upward by the choice; fresh draws read lower)


def test_cli_evaluates_an_exported_network_on_a_memristor_memory(exported, tmp_path, capsys, single_thread):
    d, _ = exported
    meta = json.loads((d / "metadata.json").read_text())
    acc = meta["accuracy"]
    argv = ["evaluate", "--model", f"exported:{d}", "--memory", "memristor", "--noise", "additive", "--sigma",
            str(meta["noise"]["sigma"]), "--draws", str(acc["draws"]), "--seed", str(acc["seed"]),
            "--cache-dir", str(tmp_path / "store"), "--json"]
    rc, out, err = run_json(argv, capsys)
    assert rc == 0, err
    # evaluated as exported (never retrained), each layer at its exported g_u: the study's own draws
    assert out["cache"] == "computed" and out["power"] > 0
    assert out["clean_accuracy"] == pytest.approx(meta["clean_accuracy"], abs=1e-12)
    assert out["accuracy_mean"] == pytest.approx(acc["mean"], abs=1e-12)
    rc, again, _ = run_json(argv, capsys)
    assert rc == 0 and again["cache"] == "hit" and again["cache_key"] == out["cache_key"]
    # the cache key carries the exported files: another export is another network
    other = tmp_path / "other"
    shutil.copytree(d, other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["g_u"] = {k: v * 1.1 for k, v in meta["g_u"].items()}
    (other / "metadata.json").write_text(json.dumps(meta))
    assert model_digest(f"exported:{other}") != model_digest(f"exported:{d}")


def test_bad_export_directories_are_refused_by_name(exported, tmp_path, capsys):
    d, _ = exported
    with pytest.raises(KnobError, match="no such directory"):
        load_exported(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    (bad / "weights.pt").unlink()
    with pytest.raises(KnobError, match="lacks weights.pt"):
        load_exported(bad)
    rc, _, err = run_json(["evaluate", "--model", f"exported:{bad}", "--cache-dir", str(tmp_path / "s"), "--json"],
                          capsys)
    assert rc == 2 and "lacks weights.pt" in err
    shutil.copy(d / "weights.pt", bad / "weights.pt")
    (bad / "architecture.json").write_text("{not json")
    with pytest.raises(KnobError, match="architecture.json is not valid JSON"):
        load_exported(bad)
    arch = json.loads((d / "architecture.json").read_text())
    arch["head"]["in"] += 1
    (bad / "architecture.json").write_text(json.dumps(arch))
    with pytest.raises(KnobError, match=r"head.in=\d+ does not match"):
        load_exported(bad)
    shutil.copy(d / "architecture.json", bad / "architecture.json")
    state = torch.load(d / "weights.pt", weights_only=True)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, bad / "weights.pt")
    with pytest.raises(KnobError, match="unexpected keys: extra.weight"):
        load_exported(bad)
    torch.save({k: v for k, v in state.items() if k != "extra.weight"}, bad / "weights.pt")
    meta = json.loads((d / "metadata.json").read_text())
    meta["g_u"].pop("head")
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(KnobError, match=r"lacks \['head'\]"):
        load_exported(bad)
    with pytest.raises(KnobError, match="takes in_channels=1, the data has 3"):
        build_user_model(f"exported:{d}", in_channels=3)


def test_export_refuses_a_point_that_was_not_simulated(shipped, exported, tmp_path, capsys):
    ds, _, store = shipped
    n = int(np.isfinite(ds.sel(strategy="M1").accuracy.values).sum())
    rc, _, err = run_json(["nas", "--export", str(tmp_path / "x"), "--strategy", "M1", "--point", str(n + 50),
                           "--cache-dir", str(store.root), "--json"], capsys)
    assert rc == 2 and "point=" in err and "out of range" in err and not (tmp_path / "x").exists()
    rc, _, err = run_json(["nas", "--point", "3", "--cache-dir", str(store.root), "--json"], capsys)
    assert rc == 2 and "add --export DIR" in err


def test_crossbar_page_exports_a_clicked_point_as_a_zip(shipped, tmp_path):
    import zipfile

    import holoviews as hv

    from workbench.ui.crossbar import CrossbarPage
    hv.extension("bokeh")
    from workbench.ui.crossbar_explorer import CrossbarExplorer
    ex = CrossbarExplorer(store=Store(tmp_path / "store"), device="cpu", autorun=False, draws=2)
    try:
        assert ex.export_point() is False and "click a point" in ex.export_status
        ex.load()
        ex.wait(kinds=("supernet", "nas"))
        page = CrossbarPage(explorer=ex)
        assert not page.export_download.visible
        ex.set_point("M2", default_point(ex.nas))
        assert ex.export_point() is True
        ex.wait(kinds=("export",))
        assert ex.export_zip and "M2 point" in ex.export_status and "exported" in ex.export_status, ex.export_status
        out = tmp_path / "unzipped"
        with zipfile.ZipFile(ex.export_zip) as z:
            z.extractall(out)
        (d,) = out.iterdir()
        meta = json.loads((d / "metadata.json").read_text())
        assert meta["provenance"]["page"] == "crossbar" and meta["provenance"]["point"] == ex.selected[1]
        net, g_u = load_exported(d)
        assert g_u == meta["g_u"]
        assert page.export_download.visible and page.export_download.filename == Path(ex.export_zip).name
        first = ex.export_zip
        ex.set_point("M1", default_point(ex.nas, "M1"))        # another point: the old download is withdrawn
        assert ex.export_zip is None and ex.export_status == "" and not page.export_download.visible and first
    finally:
        ex.runner.shutdown()
