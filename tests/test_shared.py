"""A served workbench is the operator's: settings from the environment and ``--args``, shared mode
safe by default (listed Dask schedulers only, capped workers and knobs, a per-session quota, no
server paths from the browser), and Panel's login in front of it."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import param
import pytest

from workbench.experiments import Store
from workbench.knobs import KnobError
from workbench.ui import settings
from workbench.ui.base import BackgroundState
from workbench.ui.explorer import NoiseExplorer
from workbench.ui.settings import ServerSettings, SessionQuota, capped_values, path_keys
from workbench.ui.sweep_explorer import SweepExplorer

from helpers import serve_apps, wait_until


# ------------------------------------------------------------------ settings
def test_settings_come_from_the_environment_then_the_args_and_shared_mode_is_capped():
    personal = ServerSettings.load({})
    assert not personal.shared and personal.max_epochs is None and personal.max_trainings is None
    assert personal.schedulers == () and personal.sweeps

    shared = ServerSettings.load({"WORKBENCH_SHARED": "1"})
    assert shared.shared and shared.max_workers >= 1 and shared.max_epochs == 50 and shared.max_trainings == 1
    assert shared.schedulers == () and not shared.sweeps

    # a variable beats the shared default; a flag of ``--args`` beats the variable
    s = ServerSettings.load({"WORKBENCH_SHARED": "yes", "WORKBENCH_MAX_EPOCHS": "7",
                             "WORKBENCH_SCHEDULERS": "tcp://10.0.0.5:8786, tcp://10.0.0.6:8786"},
                            ["--max-epochs", "9", "--sweeps", "off"])
    assert (s.max_epochs, s.sweeps) == (9, False)
    assert s.schedulers == ("tcp://10.0.0.5:8786", "tcp://10.0.0.6:8786")
    assert ServerSettings.load({}, ["--shared"]).shared
    assert ServerSettings.load({"WORKBENCH_SHARED": "1", "WORKBENCH_MAX_DRAWS": "none"}).max_draws is None
    assert "WORKBENCH_MAX_EPOCHS=9" in s.describe()


@pytest.mark.parametrize("environ, argv, words", [
    ({"WORKBENCH_SHARED": "maybe"}, [], "WORKBENCH_SHARED='maybe' is not valid"),
    ({"WORKBENCH_MAX_EPOCHS": "ten"}, [], "WORKBENCH_MAX_EPOCHS='ten' is not a whole number"),
    ({"WORKBENCH_MAX_WORKERS": "0"}, [], "WORKBENCH_MAX_WORKERS=0 is out of range"),
    ({}, ["--max-wrokers", "2"], "--max-wrokers is not a workbench setting"),
])
def test_a_bad_setting_is_refused_by_name(environ, argv, words):
    with pytest.raises(KnobError, match=words):
        ServerSettings.load(environ, argv)


def test_the_readme_lists_every_operator_setting():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for f in settings.FIELDS:
        assert f"| `{f.env}` | `{f.flag}` |" in readme, f"README lacks {f.env}"


def test_spec_keys_naming_files_and_values_above_a_cap_are_found_wherever_they_are():
    spec = {"experiments": {"robustness": {"train": {"init_weights": "/etc/passwd", "epochs": 60}, "draws": 5},
                            "nas": {"supernet": [{"data_root": "/srv"}], "pop_size": 999}}}
    assert path_keys(spec) == ["experiments.robustness.train.init_weights", "experiments.nas.supernet[0].data_root"]
    over = capped_values(spec, ServerSettings.load({"WORKBENCH_SHARED": "1"}))
    assert [o.split(":")[0] for o in over] == ["experiments.robustness.train.epochs", "experiments.nas.pop_size"]
    assert "WORKBENCH_MAX_EPOCHS=50" in over[0] and "WORKBENCH_MAX_POPULATION=256" in over[1]
    assert capped_values(spec, ServerSettings.load({})) == []


class _Job:
    """A stand-in for a runner's Task: counted until ``future`` is done."""
    def __init__(self):
        import concurrent.futures as cf
        self.future = cf.Future()


def test_the_session_quota_counts_jobs_in_flight_by_class():
    quota = SessionQuota(ServerSettings.load({"WORKBENCH_SHARED": "1", "WORKBENCH_MAX_CURVES": "2"}))
    a, b, c = object(), object(), object()
    first = _Job()
    quota.track("training", a, "train", first)
    refusal = quota.admit("training", b, "train")
    assert "WORKBENCH_MAX_TRAININGS=1" in refusal and "1 training running or waiting" in refusal
    assert "already running" in quota.admit("training", a, "train")       # shared: no restart on a second click
    first.future.set_result(None)
    assert quota.admit("training", b, "train") is None
    # a curve that replaces the same page's curve does not add to the count
    quota.track("curve", a, "curve", _Job())
    quota.track("curve", b, "select", _Job())
    assert quota.admit("curve", a, "curve") is None
    assert "WORKBENCH_MAX_CURVES=2" in quota.admit("curve", c, "point")
    with pytest.raises(KnobError, match="job class"):
        quota.admit("trainings", a, "train")


# ------------------------------------------------------------------ in-process state objects
@contextlib.contextmanager
def operator(**environ):
    """These operator settings in force (the process's own restored afterwards)."""
    before = settings.current()
    try:
        yield settings.configure(environ=environ)
    finally:
        settings.configure(environ={}, **{f.name: getattr(before, f.name) for f in settings.FIELDS})


@pytest.fixture
def shared_mode():
    """Shared mode with sweeps allowed, for one test."""
    with operator(WORKBENCH_SHARED="1", WORKBENCH_SWEEPS="1") as s:
        yield s


class Listener:
    """A plain TCP listener on a loopback port that records every connection it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            conn.close()                 # not a scheduler: the client's handshake fails at once

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_shared_mode_never_connects_to_a_scheduler_a_visitor_names(shared_mode, listener, tmp_path):
    ex = SweepExplorer(store=Store(tmp_path / "store"), device="cpu", autorun=False)
    ex.load()
    ex.wait(120)
    with pytest.raises(KnobError, match="WORKBENCH_SCHEDULERS"):
        ex.scheduler = listener.address                   # through the state object
    assert ex.scheduler == "" and "not one of this server's Dask schedulers" in ex.problem
    (refused,) = ex.url.apply({"scheduler": listener.address})          # through a link
    assert "a link can name only a Dask scheduler this server's operator lists" in refused
    # the run's own gate, whatever the setters let through
    with param.parameterized.discard_events(ex):
        ex.scheduler = listener.address
    ex.param.trigger("run")
    assert "WORKBENCH_SCHEDULERS" in ex.problem and not ex.running
    time.sleep(1.0)
    assert listener.accepted == 0
    ex.runner.shutdown()


def test_a_listed_scheduler_is_used(listener, tmp_path):
    with operator(WORKBENCH_SHARED="1", WORKBENCH_SWEEPS="1", WORKBENCH_SCHEDULERS=listener.address):
        ex = SweepExplorer(store=Store(tmp_path / "store"), device="cpu", autorun=False)
        ex.load()
        ex.wait(120)
        assert ex.url.apply({"scheduler": listener.address}) == []
        assert ex.scheduler == listener.address and ex.url.query()["scheduler"] == listener.address
        ex.param.trigger("run")
        wait_until(lambda: listener.accepted > 0, 60, message="the server to connect to the listed scheduler")
        ex.param.trigger("cancel")
        ex.wait(90)
        ex.runner.shutdown()


def test_shared_mode_refuses_workers_paths_and_caps_and_writes_nothing(shared_mode, tmp_path):
    store = Store(tmp_path / "store")
    ex = SweepExplorer(store=store, device="cpu", autorun=False)
    ex.load()
    ex.wait(120)
    before = snapshot(store.root)
    with pytest.raises(KnobError, match="WORKBENCH_MAX_WORKERS"):
        ex.workers = 64
    assert ex.workers <= shared_mode.max_workers and "workers=64 is above this server's cap" in ex.problem

    spec = json.loads(ex.spec_text)
    good = ex.cells
    for key, value in (("init_weights", "/etc/passwd"), ("data_root", "/srv/data"),
                       ("user_model", "/tmp/evil.py:run"), ("data", "/srv/private.npz")):
        bad = json.loads(json.dumps(spec))
        bad["experiments"]["robustness"]["train"][key] = value
        ex.spec_text = json.dumps(bad)
        ex.wait(60)
        assert f"experiments.robustness.train.{key} names a file on the server" in ex.problem
        assert "WORKBENCH_SHARED=1" in ex.problem and ex.cells is good
    many = json.loads(json.dumps(spec))
    many["experiments"]["robustness"]["train"]["epochs"] = 500
    ex.spec_text = json.dumps(many)
    ex.wait(60)
    ex.param.trigger("run")
    assert "epochs=500 is above this server's cap of 50 (operator setting WORKBENCH_MAX_EPOCHS=50)" in ex.problem
    assert not ex.running and snapshot(store.root) == before
    ex.runner.shutdown()


def test_shared_mode_runs_no_sweep_from_the_browser_unless_the_operator_allows(tmp_path):
    with operator(WORKBENCH_SHARED="1"):
        ex = SweepExplorer(store=Store(tmp_path / "store"), device="cpu", autorun=False)
        ex.load()
        ex.wait(120)
        ex.param.trigger("run")
        assert "WORKBENCH_SWEEPS=0" in ex.problem and not ex.running
        assert snapshot(tmp_path / "store") == {}
        ex.runner.shutdown()


class Knobs(BackgroundState):
    """A page state with every capped knob (the caps live in BackgroundState, for every page)."""
    epochs = param.Integer(20, bounds=(1, 1000))
    draws = param.Integer(10, bounds=(2, 1000))
    pop_size = param.Integer(64, bounds=(4, 4096))
    n_gen = param.Integer(40, bounds=(1, 2000))
    workers = param.Integer(2, bounds=(1, 64))


@pytest.mark.parametrize("knob", sorted(settings.KNOB_CAPS))
def test_every_capped_knob_is_refused_above_its_cap_and_kept_at_it(shared_mode, knob):
    state = Knobs()
    cap, name = shared_mode.cap(knob)
    setattr(state, knob, cap)                              # at the cap: used
    assert getattr(state, knob) == cap and state.error == ""
    with pytest.raises(KnobError, match=f"{settings.FIELDS[[f.name for f in settings.FIELDS].index(name)].env}="):
        setattr(state, knob, cap + 1)
    assert getattr(state, knob) == cap and f"{knob}={cap + 1} is above this server's cap of {cap}" in state.error
    state.runner.shutdown()


def test_a_default_above_the_cap_starts_at_the_cap():
    with operator(WORKBENCH_SHARED="1", WORKBENCH_MAX_POPULATION="16", WORKBENCH_MAX_EPOCHS="5"):
        state = Knobs()
        assert (state.pop_size, state.epochs, state.draws) == (16, 5, 10)
        state.runner.shutdown()


def test_a_session_gets_no_more_trainings_than_the_cap(shared_mode, tmp_path):
    store = Store(tmp_path / "store")
    quota = SessionQuota()                     # the pages of one session share it
    first = NoiseExplorer(store=store, device="cpu", autorun=False)
    second = NoiseExplorer(store=store, device="cpu", autorun=False)
    first.quota = second.quota = quota
    with pytest.raises(KnobError, match="WORKBENCH_MAX_EPOCHS=50"):
        first.epochs = 51
    assert "Refused: epochs=51" in first.error and first.epochs == 20
    first.param.update(epochs=50, seed=11)
    second.param.update(epochs=3, seed=12)
    first.param.trigger("train")
    wait_until(lambda: first.runner.running("train"), 30, message="the first training to start")
    second.param.trigger("train")
    assert "WORKBENCH_MAX_TRAININGS=1" in second.error
    first.param.trigger("train")                 # a second click does not restart it in shared mode
    assert "already running" in first.error
    first.param.trigger("cancel")
    first.wait(120)
    second.wait(120)
    weights = [p.name for p in store.root.rglob("*.pt")]
    assert weights == [], f"a cancelled or refused training wrote {weights}"
    for ex in (first, second):
        ex.runner.shutdown()


# ------------------------------------------------------------------ served
@pytest.mark.browser
def test_served_shared_mode_takes_schedulers_only_from_the_operator(browser, tmp_path):
    refused, listed = Listener(), Listener()
    try:
        with serve_apps(tmp_path / "cache", tmp_path / "panel.log",
                        env={"WORKBENCH_SHARED": "1", "WORKBENCH_SWEEPS": "1"},
                        app_args=["--schedulers", listed.address]) as (base, _):
            page = browser.new_page()
            page.goto(f"{base}/apps?page=sweep&scheduler={refused.address}")
            page.get_by_text("Some settings in this link were not used").wait_for(timeout=90_000)
            assert page.get_by_text("a link can name only a Dask scheduler").count()
            page.get_by_text("Shared server").first.wait_for(timeout=10_000)

            page.goto(f"{base}/apps?page=sweep&scheduler={listed.address}")
            page.get_by_text("cells:").first.wait_for(timeout=90_000)
            assert "scheduler=" in page.evaluate("location.href")
            page.get_by_role("button", name="Run the missing cells").click()
            wait_until(lambda: listed.accepted > 0, 60, message="the served page to connect to the listed scheduler")
            time.sleep(1.0)
            assert refused.accepted == 0
            page.close()
    finally:
        refused.close()
        listed.close()


@pytest.mark.browser
def test_basic_auth_refuses_without_credentials_and_names_who_is_signed_in(browser, tmp_path):
    creds = tmp_path / "users.json"
    creds.write_text(json.dumps({"alice": "wonderland-42", "bob": "builder-7"}))
    with serve_apps(tmp_path / "cache", tmp_path / "panel.log",
                    serve_args=["--basic-auth", str(creds), "--cookie-secret", "test-secret-0123456789"]) as (base, _):
        # no credentials: the app is not served, the login page is
        req = urllib.request.Request(f"{base}/apps")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert "/login" in r.url and "Workbench" not in r.read().decode()
        page = browser.new_page()
        page = login(browser, base, "alice", "not-her-password")
        assert page.locator("input[name=username]").count()            # wrong password: still the login page
        page.context.close()
        page = login(browser, base, "alice", "wonderland-42")
        page.get_by_text("Signed in as").first.wait_for(timeout=90_000)
        assert page.locator(".server-line p").first.inner_text().startswith("Signed in as alice")
        page.locator(".bk-tab", has_text="Noise playground").click()
        page.get_by_text("Monte-Carlo draws ·").first.wait_for(timeout=90_000)     # the page computed a readout
        page.get_by_role("button", name="Train with this noise").click()
        page.get_by_text("training").first.wait_for(timeout=30_000)
        # another user's session sees its own name and none of alice's work
        other = login(browser, base, "bob", "builder-7")
        other.locator(".bk-tab", has_text="Noise playground").click()
        other.get_by_text("Monte-Carlo draws ·").first.wait_for(timeout=90_000)
        assert other.locator(".server-line p").first.inner_text().startswith("Signed in as bob")
        assert "training" not in other.locator("p", has_text="Status:").first.inner_text()
        for p in (page, other):
            p.context.close()


def login(browser, base: str, user: str, password: str):
    """A new browser context that opened the SRAM page through Panel's login form."""
    page = browser.new_context().new_page()
    page.goto(f"{base}/apps?page=sram")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    if not page.locator("input[name=username]").count():
        page.goto(f"{base}/apps?page=sram")
    return page
