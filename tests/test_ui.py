"""The playground's state object and task runner, without a browser; every app file runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import param
import pytest

from workbench.experiments import Store
from workbench.ui import NoiseExplorer, TaskRunner
from workbench.ui.app import PAGES
from workbench.ui.base import BackgroundState
from workbench.ui.explorer import curve_knob
from workbench.ui.tasks import ComputeSlots

from helpers import wait_until

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ui_store(tmp_path_factory):
    """One store for the module (the shipped results in data/store stay readable)."""
    return Store(tmp_path_factory.mktemp("ui-store"))


@pytest.fixture
def explorer(ui_store):
    ex = NoiseExplorer(store=ui_store, device="cpu")
    ex.wait()
    yield ex
    ex.runner.shutdown()


def test_opens_with_a_result_and_a_curve(explorer):
    assert explorer.error == ""
    assert explorer.result is not None and explorer.curve is not None
    assert explorer.curve.attrs["knob"] == "p"
    assert 0.9 < explorer.result.attrs["clean_accuracy"] <= 1.0
    assert int(explorer.result.attrs["draws"]) == explorer.draws


def test_p_change_recomputes_and_lowers_energy(explorer):
    e0 = float(explorer.result.energy)
    explorer.p = 0.2
    explorer.wait()
    assert explorer.result.attrs["accuracy_mean"] < explorer.result.attrs["clean_accuracy"] - 0.2
    assert float(explorer.result.energy) < e0
    readout = explorer.energy_readout()
    assert readout["value"] == pytest.approx(sum(readout["per_layer"].values()))


def test_layer_override_enters_the_memory_map(explorer):
    layer = explorer.param.layer.objects[1]
    explorer.param.update(layer=layer, layer_value=0.5)
    mem = explorer.memory()
    assert mem["overrides"][layer]["p"] == 0.5 and mem["default"]["p"] == explorer.p
    explorer.wait(kinds=("eval",))
    assert explorer.result.attrs["accuracy_mean"] < 0.5          # first layer at p = 0.5 breaks the net


def test_memristor_reports_power_growing_with_g_u(explorer):
    explorer.param.update(technology="memristor", noise="additive", g_u=5.0)
    explorer.wait()
    low = explorer.energy_readout()["value"]
    explorer.g_u = 25.0
    explorer.wait(kinds=("eval",))
    assert explorer.curve.attrs["knob"] == "g_u"
    assert explorer.energy_readout()["value"] > low


def test_out_of_range_knob_is_refused_by_name(explorer):
    with pytest.raises(ValueError, match="p"):
        explorer.p = 0.7
    with pytest.raises(ValueError, match="g_u"):
        explorer.g_u = 40.0


def test_train_streams_progress_and_switches_network(explorer):
    explorer.param.update(p=0.01, epochs=3, draws=5)
    explorer.wait()
    seen = []
    explorer.param.watch(lambda e: seen.append(e.new), "progress")
    explorer.param.trigger("train")
    explorer.wait()
    explorer.wait()
    assert explorer.error == ""
    assert explorer.trained_with is not None and explorer.trained_with["default"]["p"] == 0.01
    assert len(explorer.history["loss"]) == 3 and seen[-1] == 100 and len(set(seen)) >= 3
    assert "trained with under-volted SRAM noise (p = 0.01)" in explorer.status
    assert explorer.trained_text() == "sram,p:0.01,epochs:3,seed:0"
    explorer.param.trigger("use_clean")
    explorer.wait()
    assert explorer.trained_with is None


def test_cancel_stops_training_and_keeps_network(explorer):
    before = explorer.result
    explorer.epochs = 200
    explorer.param.trigger("train")
    deadline = time.monotonic() + 60
    while not explorer.history.get("loss") and time.monotonic() < deadline:
        time.sleep(0.05)
    explorer.param.trigger("cancel")
    explorer.wait()
    assert not explorer.running
    assert explorer.trained_with is None
    assert "cancelled" in explorer.status
    assert explorer.result is before


def test_failed_job_shows_error_and_keeps_results(explorer, tmp_path):
    before_result, before_curve = explorer.result, explorer.curve
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store directory should be")
    explorer.store = Store(blocker, read_only=[])
    explorer.p = 0.05
    explorer.wait(kinds=("eval",))
    assert explorer.error and ("Error" in explorer.error or "directory" in explorer.error.lower())
    assert explorer.result is before_result and explorer.curve is before_curve
    assert "earlier results kept" in explorer.status


class _Jobs(BackgroundState):
    cancel_kind = "long"
    job_kinds = ("short", "long")
    out = param.Parameter(None)
    note = param.String("")


def test_launch_runs_the_one_job_sequence():
    """``into`` and ``on_done`` set results; the cancel kind drives running/progress and Cancel;
    a failure keeps earlier results."""
    st = _Jobs()
    st.launch("short", lambda cancel: 7, into="out")
    st.wait()
    assert st.out == 7 and not st.running
    started = threading.Event()

    def long(cancel):
        started.set()
        cancel.wait(10)
        return "late"
    st.launch("long", long, label="working…", on_done=lambda r: {"out": r}, cancelled="stopped",
              cancelling="stopping…", note="started")
    assert st.running and st.progress == 0 and st.status == "working…" and st.note == "started"
    assert started.wait(5)
    st.param.trigger("cancel")
    assert st.status == "stopping…"
    st.wait()
    assert not st.running and st.status == "stopped" and st.out == 7
    st.launch("long", lambda cancel: "done", on_done=lambda r: {"out": r})
    st.wait()
    assert st.out == "done" and st.progress == 100 and not st.running
    st.launch("short", lambda cancel: 1 / 0, into="out")
    st.wait()
    assert st.error.startswith("ZeroDivisionError") and st.out == "done" and "earlier results kept" in st.status
    st.runner.shutdown()


def test_curve_knob_is_the_noise_knob_except_g_u_for_additive_noise(ui_store):
    """The curve and a layer's own value sweep the memory's noise knob, but g_u under additive
    noise (σ fixed, g_u sets σ/g_u and the power); the trained network's label names σ."""
    assert [curve_knob(k) for k in ("p", "sigma_c", "sigma")] == ["p", "sigma_c", "g_u"]
    v = {"technology": "memristor", "p": 0.01, "noise": "additive", "sigma_c": 0.1, "sigma": 2.0, "g_u": 25.0,
         "layer": "features.0", "layer_value": 0.4}
    mem = NoiseExplorer.memory_for(v)
    assert mem["overrides"]["features.0"]["g_u"] == 10.0 and mem["overrides"]["features.0"]["sigma"] == 2.0
    assert NoiseExplorer.memory_for({**v, "noise": "multiplicative"})["overrides"]["features.0"]["sigma_c"] == 0.4
    ex = NoiseExplorer(store=ui_store, autorun=False, technology="memristor", noise="additive")
    assert ex.curve_knob == "g_u"
    ex.trained_with = mem
    assert "(σ = 2 µS, layer" not in ex.network_label() and "(σ = 2 µS)" in ex.network_label()
    ex.runner.shutdown()

def test_task_runner_replaces_stale_jobs():
    runner = TaskRunner()
    done, started, was_cancelled = [], threading.Event(), []

    def slow(cancel):
        started.set()
        was_cancelled.append(cancel.wait(5))
        return "stale"

    stale = runner.submit("k", slow, done.append, done.append)
    assert started.wait(5)
    runner.submit("k", lambda cancel: "fresh", done.append, done.append)
    runner.wait("k", 10)
    stale.future.result(10)                     # the stale job has run to its end, callbacks included
    assert was_cancelled == [True]              # it was told to stop (not left to run out its 5 s)
    runner.shutdown()
    assert done == ["fresh"]


def test_task_runner_reports_errors():
    runner = TaskRunner()
    errors = []
    runner.submit("k", lambda cancel: 1 / 0, lambda r: None, errors.append)
    runner.wait("k", 10)
    assert errors and errors[0].startswith("ZeroDivisionError")
    runner.shutdown()


def test_compute_slots_bound_the_jobs_of_every_runner():
    """Three sessions' runners, six jobs, two slots: never more than two compute at once, and every
    job still completes."""
    slots = ComputeSlots(2)
    runners = [TaskRunner(slots=slots) for _ in range(3)]
    lock, now, peak, done = threading.Lock(), [0], [0], []

    def job(cancel):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.05)
        with lock:
            now[0] -= 1
        return 1
    for r in runners:
        for kind in ("a", "b"):
            r.submit(kind, job, done.append, done.append)
    for r in runners:
        r.wait("a", 10)
        r.wait("b", 10)
    time.sleep(0.1)
    assert done == [1] * 6
    assert peak[0] == 2 and slots.peak == 2 and slots.active == 0 and slots.waiting == 0
    for r in runners:
        r.shutdown()


def test_compute_slots_serve_priority_first_and_drop_cancelled_waiters():
    slots = ComputeSlots(1)
    runner = TaskRunner(max_workers=4, slots=slots)
    order, release, cancelled = [], threading.Event(), []
    runner.submit("hold", lambda c: release.wait(10), lambda r: None, order.append)
    wait_until(lambda: slots.active == 1, 10, 0.01, "the first job to hold the slot")
    runner.submit("curve", lambda c: order.append("curve"), lambda r: None, order.append, priority=1)
    runner.submit("dropped", lambda c: order.append("dropped"), lambda r: None, order.append,
                  lambda: cancelled.append("dropped"), priority=1)
    runner.submit("eval", lambda c: order.append("eval"), lambda r: None, order.append, priority=0)
    wait_until(lambda: slots.waiting == 3, 10, 0.01, "three jobs waiting")
    runner.cancel("dropped")
    wait_until(lambda: cancelled, 10, 0.01, "the cancelled waiter to give up")
    release.set()
    for kind in ("hold", "curve", "eval"):
        runner.wait(kind, 10)
    assert order == ["eval", "curve"]           # the slider's readout before the curve; the cancelled job never ran
    assert cancelled == ["dropped"]
    runner.shutdown()
    assert runner.submit("late", lambda c: 1, order.append, order.append) is None   # a gone session submits nothing


def test_apps_holds_one_app_file():
    assert [p.name for p in (ROOT / "apps").glob("*.py")] == ["main.py"]      # what `panel serve apps/` serves


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_page_is_built_by_the_served_app(served_app, page):
    """``GET /apps?page=...`` on the real server runs ``apps/main.py`` and builds that page for the
    new session (Bokeh renders the document before answering); when the script or the page raises,
    Bokeh still answers 200 but with its default document, which has no title of ours."""
    import urllib.request
    with urllib.request.urlopen(f"{served_app}/apps?page={page}", timeout=120) as r:
        assert r.status == 200
        html = r.read().decode()
    assert "<title>Unreliable-memory workbench</title>" in html


def test_slider_release_on_its_first_value_after_a_url_change_is_sent(ui_store):
    """The URL sets p after the page's slider was built at the default p; releasing the slider back
    on that default must still reach the state (it did not: ``value_throttled`` never changed)."""
    import param as _param

    from workbench.ui.playground import NoisePlayground
    ex = NoiseExplorer(store=ui_store, device="cpu", autorun=False)
    page = NoisePlayground(explorer=ex)
    slider = page._widgets["p"]
    start = ex.p
    ex.p = 0.005                                  # as the URL sync does
    assert slider.value == 0.005
    with _param.edit_constant(slider):            # as the browser does on release
        slider.value_throttled = start
    assert ex.p == start
    ex.runner.shutdown()


def _busy_job(stop: threading.Event, seen: list):
    """A job that, like a training loop, asks ``cancel.is_set()`` between steps."""
    def job(cancel):
        seen.append(cancel)
        while not stop.is_set():
            if cancel.is_set():
                return "cancelled"
            time.sleep(0.005)
        return "done"
    return job


def test_a_long_job_lends_its_slot_to_a_more_urgent_one_only():
    """One slot held by a training-like job: a slider's readout (priority 0) from another session
    runs between two of its steps; a job of the same priority (a curve) waits for the end."""
    slots = ComputeSlots(1)
    a, b = TaskRunner(slots=slots), TaskRunner(slots=slots)
    stop, seen, order, results = threading.Event(), [], [], []
    a.submit("train", _busy_job(stop, seen), results.append, results.append)
    wait_until(lambda: slots.active == 1 and seen, 10, 0.01, "the training to hold the slot")
    b.submit("curve", lambda c: order.append("curve"), lambda r: None, order.append, priority=1)
    b.submit("eval", lambda c: order.append("eval"), lambda r: None, order.append, priority=0)
    b.wait("eval", 10)
    assert order == ["eval"] and a.running("train")      # the readout ran while the training went on
    assert seen[0].lent == 1 and slots.peak == 1          # the slot was lent once, never shared
    wait_until(lambda: slots.active == 1 and slots.waiting == 1, 10, 0.01, "the training to take its slot back")
    assert order == ["eval"]                               # the curve does not overtake the training
    stop.set()
    a.wait("train", 10)
    b.wait("curve", 10)
    assert results == ["done"] and order == ["eval", "curve"] and seen[0].lent == 1
    wait_until(lambda: slots.active == 0 and slots.waiting == 0, 10, 0.01, "every slot back")
    a.shutdown()
    b.shutdown()


def test_a_job_cancelled_while_its_slot_is_lent_stops_without_it():
    slots = ComputeSlots(1)
    a, b = TaskRunner(slots=slots), TaskRunner(slots=slots)
    stop, seen, results, cancelled = threading.Event(), [], [], []
    release, started = threading.Event(), threading.Event()
    a.submit("train", _busy_job(stop, seen), results.append, results.append, lambda: cancelled.append("train"))
    wait_until(lambda: slots.active == 1 and seen, 10, 0.01, "the training to hold the slot")

    def readout(c):
        started.set()
        return release.wait(10)
    b.submit("eval", readout, results.append, results.append, priority=0)
    assert started.wait(10)                                 # the training lent its slot
    a.cancel("train")
    a.wait("train", 10)
    assert cancelled == ["train"] and results == [] and not seen[0].held
    release.set()
    b.wait("eval", 10)
    assert results == [True]
    wait_until(lambda: slots.active == 0 and slots.waiting == 0, 10, 0.01, "no slot held or awaited")
    a.shutdown()
    b.shutdown()


def test_curve_arrives_point_by_point_and_equals_the_whole_curve(ui_store):
    """The playground's curve grows point by point (its first point drawable at once) and, complete,
    is the curve ``noise_curve`` computes for the whole grid; the readout comes first."""
    from workbench.experiments import CURVE_GRIDS, noise_curve
    ex = NoiseExplorer(store=ui_store, device="cpu", autorun=False)
    ex.param.update(draws=4, seed=11)           # a setting no other test computed
    order, sizes, statuses = [], [], []
    ex.param.watch(lambda e: order.append("result"), "result")
    ex.param.watch(lambda e: (order.append("curve"), sizes.append(e.new.sizes["p"])), "curve")
    ex.param.watch(lambda e: statuses.append(e.new), "curve_status")
    ex.refresh()
    ex.wait()
    n = len(CURVE_GRIDS["p"])
    # the first point is drawn at once, later partial curves at most once a second, the whole at the end
    assert order[0] == "result" and sizes[0] == 1 and sizes[-1] == n
    assert all(a < b for a, b in zip(sizes, sizes[1:])), sizes
    assert f"computing the accuracy-vs-p curve: 1 of {n} points (4 draws each)" in statuses
    assert ex.curve_done == 0 and ex.curve_total == 0 and ex.curve_status == f"{n} points × 4 Monte-Carlo draws"
    whole = noise_curve(ex.train_config(), ex.memory(), "p", draws=4, seed=11, store=ui_store, device="cpu")
    assert whole.identical(ex.curve)
    ex.runner.shutdown()


def test_trained_network_link_round_trips_and_refuses_what_the_store_lacks(ui_store):
    from workbench.ui.playground import NoisePlayground
    from workbench.ui.urlstate import URLValueError
    ex = NoiseExplorer(store=ui_store, device="cpu", autorun=False)
    page = NoisePlayground(explorer=ex)
    ex.param.update(technology="memristor", noise="additive", sigma=2.0, epochs=2, draws=3)
    ex.param.trigger("train")
    ex.wait()
    text = page.url.query()["trained"]
    assert text == "memristor,noise:additive,sigma_c:0.1,sigma:2,g_u:25,epochs:2,seed:0"
    assert "(σ = 2 µS)" in ex.status
    ex.param.trigger("use_clean")
    ex.wait()
    assert page.url.query()["trained"] == "none" and ex.trained_with is None
    # the link brings the trained network back (its weights are in the store), then refusals by name
    assert page.url.apply({"trained": text}) == []
    ex.wait()
    assert ex.trained_knobs["sigma"] == 2.0 and "trained with memristor crossbar noise" in ex.status
    refused = page.url.apply({"trained": text.replace("epochs:2", "epochs:9")})
    assert len(refused) == 1 and "not in this server's results store" in refused[0] and "`trained=" in refused[0]
    assert ex.trained_knobs["epochs"] == 2                              # nothing retrained, nothing changed
    for bad in ("sram,p:0.01,epochs:2,seed:0", "memristor,noise:additive", "cnn", "memristor,sigma:-1,epochs:2,seed:0"):
        with pytest.raises(URLValueError):
            ex.set_trained(ex.parse_trained(bad))
    ex.runner.shutdown()
