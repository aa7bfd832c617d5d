"""Distributed sweeps on a Dask ``LocalCluster`` (issue 6): the same store entries and Datasets as
an in-process run, retries and failure reports, cancellation, the CLI end to end, and — with the
training loop replaced by an instant stand-in — that every experiment kind's cells are exactly
the cache entries its in-process run writes.

Nothing here reaches the network: clusters listen on 127.0.0.1 only, without a dashboard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest
import torch
import xarray as xr

from workbench.experiments import Store
from workbench.experiments import cells as catalogue
from workbench.experiments.cells import Cell, experiment_cells, spec_cells, training
from workbench.experiments.cluster import SweepError, run_cell, run_cells, run_spec_distributed, warm_up
from workbench.experiments.sharpness import method_config
from workbench.experiments.sweep import EXPERIMENTS, run_spec
from workbench.training import Cancelled

from helpers import wait_until

pytestmark = pytest.mark.usefixtures("single_thread")
ROOT = Path(__file__).resolve().parents[1]
# the test-only cell functions below travel to the workers by value (workers need not import this file)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: a small seeded chapter-5 sweep: 4 networks (2 epochs) and 8 Monte-Carlo points of 3 draws
ROBUSTNESS = {"methods": ["sgd", "sam"], "seeds": [0, 1], "levels": [0.0, 0.3], "adabs": [False], "draws": 3,
              "train": {"epochs": 2}}


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 single-threaded worker processes on loopback (not dask's default client)."""
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as c:
        warm_up(c)
        yield c


def entries(store: Store) -> set[tuple[str, str]]:
    return {(e.kind, e.key) for e in store.entries() if e.ok}


def comparable(ds: xr.Dataset) -> xr.Dataset:
    """What must agree between two runs: every value, coordinate and attribute except wall-clock
    training times (measured, not computed) and whether this call computed or read the result."""
    ds = ds.drop_vars([v for v in ("train_seconds",) if v in ds.variables])
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "cache"}
    return ds


def scheduler_tasks(client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))


# ------------------------------------------------------------------ acceptance: identical result
def test_local_cluster_sweep_is_identical_to_in_process(client, tmp_path):
    spec = {"name": "dist-test", "experiments": {"robustness": ROBUSTNESS}}
    a, b = Store(tmp_path / "a", read_only=[]), Store(tmp_path / "b", read_only=[])
    ra = run_spec(spec, a, device="cpu")
    events = []
    rb, report = run_spec_distributed(spec, b, scheduler=client, device="cpu", progress=events.append)

    assert set(rb) == set(ra) == {"robustness"}
    xr.testing.assert_identical(comparable(ra["robustness"]), comparable(rb["robustness"]))
    assert rb["robustness"].attrs["cache"] == "computed"
    # every cell file of the in-process run exists in B under the same key, and nothing else
    assert entries(a) == entries(b)
    cells = spec_cells(spec)
    assert {(c.kind, c.key) for c in cells} == entries(b)

    assert report.workers == 2 and report.threads == 2
    assert report.cells == report.submitted == len(cells) == 13 and report.cached == 0
    assert report.cell_seconds > 0 and report.wall_seconds > 0
    assert report.overhead == pytest.approx(report.wall_seconds / (report.cell_seconds / 2))
    assert report.total_seconds > report.wall_seconds
    # one progress event per finished cell; every evaluation after the training it needs
    assert [e["cell"] for e in events] == list(range(1, 14)) and {e["cells"] for e in events} == {13}
    order = [e["name"] for e in events]
    for c in cells:
        for d in c.depends:
            dep = next(x for x in cells if x.id == d)
            assert order.index(dep.name) < order.index(c.name)
    assert order[-1] == "assemble robustness"

    # a second run finds every cell in the store: nothing is submitted, the same Datasets come back
    rb2, r2 = run_spec_distributed(spec, b, scheduler=client, device="cpu")
    assert r2.submitted == 0 and r2.cached == 13 and r2.scheduler is None and r2.overhead is None
    xr.testing.assert_identical(comparable(rb2["robustness"]), comparable(rb["robustness"]))
    wait_until(lambda: scheduler_tasks(client) == 0, timeout=30, message="the scheduler to forget the sweep")


# ------------------------------------------------------------------ retries and failures
def flaky_cell(tmp: str, fail_times: int, *, store, device, cancel):
    """Test cell: fails the first ``fail_times`` attempts (each attempt appends to a file)."""
    log = Path(tmp) / "attempts.txt"
    with open(log, "a") as f:
        f.write(f"{fail_times}\n")
    n = sum(1 for line in log.read_text().splitlines() if line == str(fail_times))
    if n <= fail_times:
        raise ValueError(f"attempt {n} of a cell that fails {fail_times} times")


def _test_cell(name: str, fn, kwargs: dict, depends=()) -> Cell:
    return Cell(name, fn, kwargs, "test-cell", name.replace(" ", "-"), "nc", tuple(depends))


def attempts(tmp: Path, fail_times: int) -> int:
    return sum(1 for line in (tmp / "attempts.txt").read_text().splitlines() if line == str(fail_times))


def test_failed_cell_is_retried_then_reported_and_the_others_are_kept(client, tmp_path):
    store = Store(tmp_path / "store", read_only=[])
    train = training(method_config("sgd", 0, epochs=1), "sgd seed=0")
    flaky = _test_cell("flaky", flaky_cell, {"tmp": str(tmp_path), "fail_times": 2})
    broken = _test_cell("broken", flaky_cell, {"tmp": str(tmp_path), "fail_times": 99})
    after = _test_cell("after broken", flaky_cell, {"tmp": str(tmp_path), "fail_times": 0}, [broken.id])
    run = run_cells([train, flaky, broken, after], store, client, device="cpu", retries=2)

    assert attempts(tmp_path, 2) == 3            # failed twice, succeeded on its second retry
    assert attempts(tmp_path, 99) == 3           # 1 attempt + 2 retries, then reported
    assert attempts(tmp_path, 0) == 0            # never ran: what it needs failed
    assert set(run.done) == {"train sgd seed=0", "flaky"}
    assert list(run.failed) == ["broken"] and "ValueError: attempt 3" in run.failed["broken"]
    assert run.blocked == {"after broken": "broken"}
    assert run.submitted == 4 and run.cached == 0 and not run.cancelled
    assert train.present(store)                  # the cell that worked is in the store


def test_sweep_with_a_failing_experiment_raises_naming_it_and_keeps_the_rest(client, tmp_path, monkeypatch):
    # an experiment whose (test-only) cell always fails, beside one that works
    broken = [_test_cell("broken", flaky_cell, {"tmp": str(tmp_path), "fail_times": 99})]
    monkeypatch.setitem(catalogue.CELLS, "ood", lambda params: broken)
    small = {"methods": ["sgd"], "seeds": [0], "levels": [0.1], "adabs": [False], "draws": 2, "train": {"epochs": 1}}
    spec = {"name": "fails", "experiments": {"robustness": small, "ood": {"methods": ["sgd"], "seeds": [0]}}}
    store = Store(tmp_path / "store", read_only=[])
    with pytest.raises(SweepError, match="broken: ValueError") as info:
        run_spec_distributed(spec, store, scheduler=client, device="cpu", retries=1)
    err = info.value
    assert list(err.failed) == ["broken"] and err.blocked == {"assemble ood": "broken"}
    # robustness: a training, one point, its assembly; ood: the broken cell, its (blocked) assembly
    assert err.report.submitted == 5 and err.report.workers == 2
    assert attempts(tmp_path, 99) == 2
    assert set(err.results) == {"robustness"}
    xr.testing.assert_identical(comparable(err.results["robustness"]),
                                comparable(run_spec(spec, store, only=["robustness"], device="cpu")["robustness"]))


# ------------------------------------------------------------------ cancellation
def sleeper_cell(tmp: str, i: int, *, store, device, cancel):
    """Test cell: 10 s of work in 50 ms steps, stopping when the sweep is cancelled."""
    from workbench.training import Cancelled as Stop
    (Path(tmp) / f"started-{i}").touch()
    for _ in range(200):
        if cancel is not None and cancel.is_set():
            (Path(tmp) / f"stopped-{i}").touch()
            raise Stop("cancelled")
        time.sleep(0.05)
    (Path(tmp) / f"finished-{i}").touch()


def test_cancel_stops_pending_and_running_cells(client, tmp_path, monkeypatch):
    sleepers = [_test_cell(f"sleep {i}", sleeper_cell, {"tmp": str(tmp_path), "i": i}) for i in range(6)]
    monkeypatch.setitem(catalogue.CELLS, "ood", lambda params: sleepers)
    spec = {"name": "cancel", "experiments": {"ood": {"methods": ["sgd"], "seeds": [0]}}}
    cancel = threading.Event()

    def cancel_when_both_workers_are_busy():
        wait_until(lambda: len(list(tmp_path.glob("started-*"))) >= 2, timeout=60, message="two running cells")
        cancel.set()

    t = threading.Thread(target=cancel_when_both_workers_are_busy, daemon=True)
    t.start()
    with pytest.raises(Cancelled, match="sweep cancelled: 0 of 7 cells finished"):
        run_spec_distributed(spec, Store(tmp_path / "store", read_only=[]), scheduler=client, cancel=cancel)
    t.join()
    started = {p.name.split("-")[1] for p in tmp_path.glob("started-*")}
    # the running cells saw the cancellation (within their 0.5 s poll) and stopped; no other cell started
    wait_until(lambda: {p.name.split("-")[1] for p in tmp_path.glob("stopped-*")} == started, timeout=10,
               message="the running cells to stop")
    assert len(started) == 2 and not list(tmp_path.glob("finished-*"))
    wait_until(lambda: scheduler_tasks(client) == 0, timeout=30, message="the scheduler to drop the cancelled cells")


# ------------------------------------------------------------------ every kind's cells = its cache entries
def _instant_train(cfg, data=None, *, device="auto", progress=None, cancel=None, data_root=None, evaluate_every=1):
    """Stand-in for the training loop: the untrained network of ``cfg`` (seeded), at once."""
    from workbench.datasets import load_dataset
    from workbench.training import make_model
    from workbench.training.trainer import TrainResult
    torch.manual_seed(cfg.seed)
    model = make_model(cfg, load_dataset(cfg.dataset, data_root)).eval()
    return TrainResult(model, {"loss": [1.0], "train_accuracy": [0.1], "test_accuracy": [0.1]}, 0.1, 0.0, "cpu")


#: one tiny experiment of every kind with cells (two sharpness variants: with and without its own
#: robustness grid; robustness with rho, AdaBS and a training memory)
KIND_SPECS = [
    {"robustness_additive": {"methods": ["sam"], "seeds": [0], "levels": [0.5], "adabs": [False, True], "draws": 1},
     "uniform_ber": {"p_train": [0.0, 0.01], "p_test": [0.0, 0.1], "seeds": [0], "draws": 1},
     "sensitivity": {"p_train": 0.01, "base_p": 0.01, "high_p": 0.5, "seeds": [0], "draws": 1},
     "spectra": {"p_train": [0.0, 0.01], "seeds": [0], "k": 3},
     "rho": {"methods": ["sam"], "rhos": {"sam": [0.05, 0.1]}, "seeds": [0], "levels": [0.2], "draws": 1},
     "sharpness": {"methods": ["sgd"], "seeds": [0], "variants": ["sam"], "m": 512, "adabs": False,
                   "robustness_levels": [0.0, 0.4], "robustness_draws": 1},
     "quantization": {"methods": ["sgd"], "seeds": [0], "bits": [4]},
     "ood": {"methods": ["sgd"], "seeds": [0]},
     "pcm_drift": {"methods": ["sgd"], "seeds": [0], "times": [1.0], "draws": 1}},
    {"sharpness": {"methods": ["sgd", "sam+clip"], "seeds": [1], "variants": ["sam"], "m": 512, "train": {"epochs": 1}},
     "robustness": {"methods": ["sgd+noise", "asam"], "seeds": [0], "levels": [0.1], "adabs": [True], "draws": 1,
                    "rho": 0.2, "train": {"epochs": 1}}},
]


@pytest.mark.parametrize("experiments", KIND_SPECS, ids=["chapter4+5", "defaults"])
def test_cells_are_exactly_the_entries_an_in_process_run_writes(experiments, tmp_path, monkeypatch):
    import workbench.experiments.core as core
    monkeypatch.setattr(core, "train", _instant_train)
    spec = {"name": "kinds", "experiments": experiments}
    inproc, cellwise = Store(tmp_path / "in", read_only=[]), Store(tmp_path / "cells", read_only=[])
    run_spec(spec, inproc, device="cpu")

    cells = spec_cells(spec)
    seen: set[str] = set()
    for c in cells:                              # dependency order, each cell once
        assert set(c.depends) <= seen, c.name
        assert c.id not in seen
        seen.add(c.id)
    parts = [c for c in cells if not c.kind.startswith("sweep-")]
    for c in parts:                              # the cells as a worker runs them, in this process
        run_cell(c.function, c.kwargs, str(cellwise.root), [], "cpu", None)
    assert entries(cellwise) == {(c.kind, c.key) for c in parts}
    before = entries(cellwise)
    for c in [c for c in cells if c.kind.startswith("sweep-")]:
        run_cell(c.function, c.kwargs, str(cellwise.root), [], "cpu", None)
    # assembling trained and evaluated nothing new: the cells covered every network and point ...
    new_kinds = {kind for kind, _ in entries(cellwise) - before}
    assert not new_kinds & {"weights", "evaluate"}, new_kinds
    # ... and the store holds exactly what the in-process run wrote
    assert entries(cellwise) == entries(inproc)


def test_the_documented_import_path_still_works():
    from workbench.experiments import distributed
    assert distributed.run_spec_distributed is run_spec_distributed and distributed.SweepError is SweepError


def test_kinds_without_cells_run_whole_and_bad_specs_fail_before_any_cluster(tmp_path):
    assert set(catalogue.CELLS) < set(EXPERIMENTS)
    for kind in set(EXPERIMENTS) - set(catalogue.CELLS):     # energy_accuracy, nas, nas_select: one task
        (cell,) = experiment_cells(kind, {"seeds": [0]})
        assert cell.name == f"assemble {kind}" and cell.depends == ()
    from workbench.hardware import KnobError
    bad = {"name": "bad", "experiments": {"robustness": {**ROBUSTNESS, "levels": [0.0, 7.0]}}}
    with pytest.raises(KnobError, match="sigma_c"):
        run_spec_distributed(bad, Store(tmp_path, read_only=[]))
    with pytest.raises(KnobError, match="experiments must be among"):
        run_spec_distributed({"experiments": {"nope": {}}}, Store(tmp_path, read_only=[]))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ the command line, end to end
def test_cli_sweep_on_a_local_cluster(tmp_path):
    small = {**ROBUSTNESS, "methods": ["sgd"], "train": {"epochs": 1}}
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"name": "cli-dist", "experiments": {"robustness": small}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "workbench", "sweep", str(spec_path), "--workers", "2", "--cache-dir",
                           str(tmp_path / "d"), "--json", "--device", "cpu"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    out = json.loads(lines[0])
    t = out["timings"]
    assert t["scheduler"] == "LocalCluster" and t["workers"] == 2 and t["submitted"] == 7 and t["cached"] == 0
    assert t["cell_seconds"] > 0 and t["overhead"] == pytest.approx(t["wall_seconds"] / (t["cell_seconds"] / 2))
    assert out["experiments"]["robustness"]["cache"] == "computed"
    assert out["experiments"]["robustness"]["dims"] == {"method": 1, "seed": 2, "adabs": 1, "sigma_c": 2, "draw": 3}
    # the same sweep in this process writes the same entries and Dataset
    d, e = Store(tmp_path / "d", read_only=[]), Store(tmp_path / "e", read_only=[])
    spec = json.loads(spec_path.read_text())
    ours = run_spec(spec, e, device="cpu")["robustness"]
    assert entries(d) == entries(e)
    assert ours.attrs["cache_key"] == out["experiments"]["robustness"]["cache_key"]
    xr.testing.assert_identical(comparable(ours), comparable(run_spec(spec, d)["robustness"]))


def test_cli_reports_failed_cells_and_refuses_bad_worker_counts(client, tmp_path, capsys, monkeypatch):
    from workbench.cli import main
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"name": "x", "experiments": {"robustness": ROBUSTNESS}}))
    assert main(["sweep", str(spec_path), "--workers", "0", "--cache-dir", str(tmp_path)]) == 2
    assert "workers=0 is out of range" in capsys.readouterr().err

    # a real sweep on the module's cluster (by its address), whose one test-only cell always fails
    broken = [_test_cell("broken", flaky_cell, {"tmp": str(tmp_path), "fail_times": 99})]
    monkeypatch.setitem(catalogue.CELLS, "ood", lambda params: broken)
    spec_path.write_text(json.dumps({"name": "x", "experiments": {"ood": {"methods": ["sgd"], "seeds": [0]}}}))
    with pytest.raises(SystemExit) as info:
        main(["sweep", str(spec_path), "--scheduler", client.scheduler.address, "--retries", "3", "--cache-dir",
              str(tmp_path / "cache"), "--json"])
    assert info.value.code == 1
    assert attempts(tmp_path, 99) == 4                  # --retries 3 reached the cluster: 1 attempt + 3 retries
    out, err = capsys.readouterr()
    assert "broken: ValueError: attempt 4 of a cell that fails 99 times" in err and "Traceback" not in err
    (line,) = [x for x in out.splitlines() if x.strip()]
    report = json.loads(line)
    assert list(report["failed"]) == ["broken"] and report["blocked"] == {"assemble ood": "broken"}
    t = report["timings"]
    assert t["cells"] == t["submitted"] == 2 and t["cached"] == 0 and t["scheduler"] == client.scheduler.address
