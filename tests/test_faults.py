"""Faults in background jobs, through the Sweeps page's state object (no browser): a worker
process killed in the middle of a training cell, cells that raise, a cancelled sweep — each
reported on the page, with every finished cell kept in the store and a later run recovering.

The clusters are real ``LocalCluster``s of worker processes (with nannies) on 127.0.0.1, no
dashboard; the failing cells fail for real (a dataset that is not on disk).
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from workbench.experiments import Store, spec_key
from workbench.experiments.cluster import warm_up
from workbench.knobs import KnobError
from workbench.ui.sweep_explorer import CUSTOM, SweepExplorer

from helpers import wait_until

pytestmark = pytest.mark.usefixtures("single_thread")

#: 2 networks long enough to kill a worker in the middle of one, 6 Monte-Carlo points
LONG = {"methods": ["sgd"], "seeds": [0, 1], "levels": [0.0, 0.2, 0.4], "adabs": [False], "draws": 3,
        "train": {"epochs": 12}}
SHORT = {"methods": ["sgd"], "seeds": [3], "levels": [0.0, 0.3], "adabs": [False], "draws": 2, "train": {"epochs": 2}}


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """Two single-threaded worker processes under nannies (a killed worker is restarted), with no
    dataset on disk but the embedded digits (``$WORKBENCH_DATA_ROOT`` is an empty folder)."""
    from distributed import Client, LocalCluster
    monkeypatch.setenv("WORKBENCH_DATA_ROOT", str(tmp_path / "no-datasets-here"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as lc, Client(lc, set_as_default=False) as client:
        warm_up(client)
        yield client


def explorer_for(spec: dict, store: Store, client) -> SweepExplorer:
    ex = SweepExplorer(store=store, device="cpu", autorun=False, spec_name=CUSTOM, spec_text=json.dumps(spec))
    ex.scheduler = client.scheduler.address
    ex.load()
    ex.wait()
    return ex


def valid_entries(store: Store) -> int:
    entries = store.verify(repair=False)
    assert all(e.ok for e in entries), [e.path.name for e in entries if not e.ok]
    return len(entries)


def test_killed_worker_is_reported_and_its_cell_rescheduled(cluster, tmp_path):
    store = Store(tmp_path / "store", read_only=[])
    ex = explorer_for({"name": "kill", "experiments": {"robustness": LONG}}, store, cluster)
    assert ex.counts() == {"missing": 9}
    pids = cluster.run(os.getpid)
    ex.param.trigger("run")

    def training_worker():             # the worker computing a training cell right now
        for addr, keys in cluster.processing().items():
            if any(str(k).startswith("weights-") for k in keys) and addr in pids:
                return addr
    victim = wait_until(training_worker, 120, 0.05, "a worker to start a training cell")
    os.kill(pids[victim], signal.SIGKILL)
    ex.wait(600)

    assert ex.error == "", ex.error
    assert ex.status.startswith("done"), ex.status
    # the page says what happened, naming the training cell the worker was running (the scheduler's event)
    assert any(victim in e and "lost" in e and "train " in e for e in ex.events), ex.events
    assert ex.counts() == {"done": 9}                   # the killed cell ran again elsewhere
    assert victim not in set(ex.cells.worker.values)    # no result came from the dead worker
    assert valid_entries(store) == 9
    acc = store.load_dataset("sweep-robustness", spec_key("sweep-robustness", LONG)).accuracy_mean
    assert acc.notnull().all() and float(acc.sel(sigma_c=0.0).min()) > 0.8


def test_failing_cells_are_named_and_a_later_run_recovers(cluster, tmp_path):
    store = Store(tmp_path / "store", read_only=[])
    bad = {**SHORT, "train": {"epochs": 2, "dataset": "mnist", "model": "small_cnn"}}
    spec = {"name": "faulty", "experiments": {"robustness": SHORT, "robustness_additive": bad}}
    ex = explorer_for(spec, store, cluster)
    ex.retries = 1
    ex.param.trigger("run")
    ex.wait(600)

    assert not ex.running
    assert "failed" in ex.status and "kept" in ex.status
    assert "train sgd seed=3" in ex.error and "FileNotFoundError" in ex.error and "mnist" in ex.error
    counts = ex.counts()
    assert counts["done"] == 4 and counts["failed"] == 1 and counts["blocked"] >= 2, counts
    assert set(ex.cells.state.values[ex.cells.experiment.values == "robustness"]) == {"done"}
    assert valid_entries(store) == 4                    # the good experiment's cells, nothing half-written

    # recovery: drop the experiment that cannot run; the good one is read back, nothing recomputed
    ex.spec_text = json.dumps({"name": "fixed", "experiments": {"robustness": SHORT}})
    ex.wait()
    assert ex.error == "" and ex.counts() == {"stored": 4}
    ex.param.trigger("run")
    ex.wait(600)
    assert ex.error == ""
    assert ex.status == "every cell was already in the store: nothing to compute"
    assert ex.report.submitted == 0


def test_cancelled_sweep_keeps_finished_cells_and_resumes(cluster, tmp_path):
    store = Store(tmp_path / "store", read_only=[])
    ex = explorer_for({"name": "cancel", "experiments": {"robustness": LONG}}, store, cluster)
    ex.param.trigger("run")
    wait_until(lambda: ex.cells is not None and (ex.cells.state.values == "done").sum() >= 1, 300, 0.05,
               "a first finished cell")
    ex.param.trigger("cancel")
    ex.wait(300)
    assert not ex.running and "cancelled" in ex.status, ex.status
    kept = valid_entries(store)
    assert 1 <= kept < 9, kept       # the training that was running stopped at its next minibatch

    # (a Monte-Carlo point already running when the sweep was cancelled may still finish: Dask
    # cannot stop a running task, it only forgets it; so "at least" what was kept)
    ex.param.trigger("check")                            # the store holds what the cancelled run finished
    ex.wait()
    assert ex.counts().get("stored", 0) >= kept
    ex.param.trigger("run")
    ex.wait(600)
    assert ex.error == "" and ex.status.startswith("done")
    assert ex.report.cached >= kept and ex.report.cached + ex.report.submitted == 9
    assert ex.report.submitted < 9                   # only the missing cells were computed
    assert valid_entries(store) == 9


def test_bad_spec_text_and_scheduler_are_refused_by_name(tmp_path):
    ex = SweepExplorer(store=Store(tmp_path / "s", read_only=[]), device="cpu", autorun=False)
    ex.load()
    ex.wait()
    good = ex.cells
    ex.spec_text = "{not json"
    assert "not valid JSON" in ex.error and ex.cells is good          # earlier cells kept
    ex.spec_text = json.dumps({"experiments": {"robustness": {**SHORT, "levels": [0.0, 7.0]}}})
    assert "sigma_c=7.0 is out of range" in ex.error and ex.cells is good
    ex.spec_text = json.dumps({"experiments": {"nonsense": {}}})
    assert "experiments must be among" in ex.error
    ex.spec_text = json.dumps({"name": "ok", "experiments": {"robustness": SHORT}})
    ex.wait()
    assert ex.error == "" and ex.counts() == {"missing": 4}
    with pytest.raises(KnobError, match="must be a Dask address"):
        ex.scheduler = "localhost:8786"
    assert "scheduler='localhost:8786'" in ex.error and ex.scheduler == "" and not ex.running
    with pytest.raises(ValueError, match="workers"):
        ex.workers = 0
