"""The "Crossbar power & search" page and its experiments: state object on a tiny spec, the shipped
study, then the page in headless Chromium."""

from __future__ import annotations

import json
import re
import time

import holoviews as hv
import numpy as np
import pytest

from workbench.experiments import Store
from workbench.experiments.crossbar import evaluate_state, nas_study, select_study
from workbench.experiments.store import spec_key
from workbench.experiments.sweep import CROSSBAR_SPEC, load_spec
from workbench.hardware import KnobError
from workbench.ui.crossbar_explorer import CrossbarExplorer

from helpers import assert_no_console_errors, spec_explorer, wait_until, watch_console

pytestmark = pytest.mark.usefixtures("single_thread")

SUPERNET = {"epochs": 1}
NAS = {"k": 12, "k_g": 2, "pop_size": 12, "n_gen": 3, "max_resimulated": 4, "draws": 2, "estimator_epochs": 20}
SPEC = {"name": "tiny-ch6", "experiments": {
    "nas": {"supernet": SUPERNET, "nas": NAS},
    "nas_select": {"supernet": SUPERNET, "n_arch": 8, "deltas": [0.01, 0.05]}}}


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    ex = spec_explorer(CrossbarExplorer, SPEC, tmp_path_factory.mktemp("ch6-ui"), draws=3)
    yield ex
    ex.runner.shutdown()


def test_the_page_state_loads_the_study_and_programs_the_largest_subnet(explorer):
    assert explorer.error == ""
    ds = explorer.nas
    assert list(ds.strategy.values) == ["dataset", "M1", "M2", "M3"]
    assert np.isfinite(ds.hypervolume.values).all() and set(ds.target.values) == {"accuracy", "power"}
    assert ds.on_front.any("point").all()                       # every strategy has a front
    assert list(explorer.selection.delta.values) == [0.01, 0.05]
    cur = explorer.current
    assert cur is not None and float(cur.power[0]) > 0
    assert set(map(str, cur.layer.values)) == set(explorer.g_u) == set(explorer.space.layer_names())   # D = 3, 3, 3


def test_lowering_g_u_lowers_power_and_bad_values_are_refused(explorer):
    before = float(explorer.current.power[0])
    for name in list(explorer.g_u):
        explorer.g_u = {**explorer.g_u, name: 0.5}
    explorer.wait(kinds=("eval",))
    after = float(explorer.current.power[0])
    assert after < before                                      # smaller conductances draw less power
    layer = next(iter(explorer.g_u))
    with pytest.raises(KnobError, match=r"\[0\.5, 1\.5\]"):
        explorer.set_g_u(layer, 1.7)
    with pytest.raises(KnobError, match="not in the current subnet"):
        explorer.set_g_u("nope", 1.0)
    assert explorer.g_u[layer] == 0.5                          # a refused value changes nothing


def test_a_shallower_subnet_keeps_only_its_layers(explorer):
    explorer.depth = [1, 1, 1]
    explorer.wait(kinds=("eval",))
    keep = explorer.space.mask(np.array([1, 1, 1]))
    assert list(explorer.g_u) == [n for n, k in zip(explorer.space.layer_names(), keep) if k]
    assert set(map(str, explorer.current.layer.values)) == set(explorer.g_u)
    explorer.depth = [3, 3, 3]
    explorer.wait(kinds=("eval",))


def test_clicking_a_point_shows_its_network_and_edit_loads_it(explorer):
    ds = explorer.nas
    p, a = float(ds.power.sel(strategy="M2").isel(point=0)), float(ds.accuracy.sel(strategy="M2").isel(point=0))
    explorer.pick(p, a)
    assert explorer.selected == ("M2", 0)
    explorer.wait(kinds=("details",))
    d = explorer.details
    state = explorer.point_state("M2", 0)
    space = explorer.space
    rel = dict(zip(space.layer_names(), state[space.gu_slice]))
    assert np.allclose(d.g_u_rel.values, [rel[str(name)] for name in d.layer.values])
    assert d.layer_power.sum() > 0 and d.sizes["scale"] >= 3
    assert float(d.accuracy.sel(scale=8.0).mean()) <= float(d.accuracy.sel(scale=0.0).mean()) + 0.02
    explorer.use_point()
    explorer.wait(kinds=("eval",))
    assert explorer.depth == list(space.decode(state).depth)
    assert np.allclose([explorer.g_u[n] for n in explorer.present_layers()],
                       [rel[n] for n in explorer.present_layers()])


def test_a_search_streams_its_front_and_can_be_cancelled(explorer):
    explorer.param.update(strategy="M2", pop_size=8, n_gen=3)
    seen = []
    watcher = explorer.param.watch(lambda e: seen.append(e.new), "live")
    explorer.param.trigger("search")
    explorer.wait(kinds=("search",))
    explorer.param.unwatch(watcher)
    assert explorer.error == "" and "done" in explorer.search_status
    gens = [s["generation"] for s in seen if s]
    assert gens[:3] == [1, 2, 3]                               # one front per generation, then the final one
    assert len(explorer.live["accuracy"]) == len(explorer.live["power"]) > 0
    explorer.param.update(n_gen=2000)
    explorer.param.trigger("search")
    wait_until(lambda: explorer.live and explorer.live["generation"] >= 1 and explorer.running, 60, interval=0.02,
               message="the search to start")
    explorer.param.trigger("cancel")
    explorer.wait(kinds=("search",))
    assert "cancelled" in explorer.search_status and not explorer.running


def test_a_cancelled_search_stops_at_the_next_generation(explorer):
    """The cancel flag is read after every generation: set during generation k, no generation k + 1 is reported."""
    import threading

    from workbench.experiments.crossbar import load_estimator
    from workbench.nas.search import run_search
    from workbench.training.trainer import Cancelled
    est = load_estimator(explorer.nas_params.get("nas"), explorer.supernet_spec, explorer.store)
    cancel, seen = threading.Event(), []

    def progress(info):
        seen.append(info["generation"])
        if info["generation"] == 3:
            cancel.set()
    with pytest.raises(Cancelled, match="generation 4/2000"):
        run_search("M2", est, est.space, 8, 2000, progress=progress, cancel=cancel)
    assert seen == [1, 2, 3]


def test_links_are_checked_against_the_supernet_layout(explorer):
    from workbench.ui.crossbar import CrossbarPage
    hv.extension("bokeh")
    page = CrossbarPage(explorer=explorer)
    explorer.wait()
    explorer.param.update(depth=[3, 3, 3], width=[1.0] * 4, expand=[1.0] * 3)
    explorer.wait(kinds=("eval",))
    n = len(explorer.present_layers())
    refused = page.url.apply({"depth": "9,9,9", "width": "1,1", "expand": "0.3,1,1", "gu": "1,2",
                              "sigma": "-1", "strategy": "M9", "pop": "2", "gen": "5", "point": "M2",
                              "tab": "nope", "layer": "stem"})
    keys = sorted(r.split("=")[0].strip("`") for r in refused if "was not used" in r)
    assert keys == ["depth", "expand", "gu", "point", "pop", "sigma", "strategy", "tab", "width"], refused
    assert any("`layer` is not a setting" in r for r in refused)
    assert explorer.n_gen == 5 and explorer.depth == [3, 3, 3] and explorer.strategy == "M2"
    refused = page.url.apply({"gu": ",".join(["0.8"] * (n - 1) + ["1.7"])})
    assert "between 0.5 and 1.5" in refused[0] and set(explorer.g_u.values()) != {0.8}
    assert page.url.apply({"depth": "1,2,1", "gu": ",".join(["0.75"] * len(explorer.present_layers([1, 2, 1])))}) == []
    assert explorer.depth == [1, 2, 1] and set(explorer.g_u.values()) == {0.75}
    q = page.url.query()
    assert q["depth"] == "1,2,1" and q["gu"] == ",".join(["0.75"] * len(explorer.g_u))
    assert page._arch_select[("depth", 1)].value == 2                    # the editor follows the state
    explorer.param.update(depth=[3, 3, 3])
    explorer.wait(kinds=("eval",))


def test_every_view_renders(explorer):
    from workbench.plots.crossbar import (
        accuracy_histogram,
        g_u_bars,
        layer_power_bars,
        pareto_plot,
        robustness_curve,
        selection_plot,
    )
    from workbench.ui.crossbar import CrossbarPage
    hv.extension("bokeh")
    page = CrossbarPage(explorer=explorer)
    for view in (page._current, page._fronts, page._details, page._selection, page._live, page._status):
        assert view() is not None
    page.__panel__()
    figs = [
        pareto_plot(explorer.nas, ("M1", 0), {"accuracy": [0.9, 0.95], "power": [1.0, 2.0]}),
        layer_power_bars(explorer.current.layer_power),
        accuracy_histogram(explorer.current.accuracy.values.ravel()),
        selection_plot(explorer.selection),
    ]
    if explorer.details is not None:
        figs += [g_u_bars(explorer.details.g_u_rel), robustness_curve(explorer.details)]
    for f in figs:
        assert hv.render(f, backend="bokeh") is not None


def test_invalid_states_and_knobs_are_refused(explorer):
    bad = explorer.point_state("M1", 0).copy()
    bad[explorer.space.gu_slice] = 2.0
    with pytest.raises(KnobError, match="not valid"):
        evaluate_state(explorer.net, bad)
    with pytest.raises(KnobError, match="entries"):
        evaluate_state(explorer.net, bad[:5])
    with pytest.raises(KnobError, match="pop_size"):
        nas_study({**NAS, "pop_size": 1}, SUPERNET, Store(explorer.store.root))
    with pytest.raises(KnobError, match="epochs"):
        nas_study(NAS, {"epochs": 0}, Store(explorer.store.root))
    with pytest.raises(KnobError, match="deltas"):
        select_study(SUPERNET, explorer.store, deltas=[])


def test_the_shipped_study_is_complete():
    spec = load_spec(CROSSBAR_SPEC)
    store = Store()
    for name in ("nas", "nas_select"):
        params = spec["experiments"][name]
        assert store.load_dataset(f"sweep-{name}", spec_key(f"sweep-{name}", params)) is not None, \
            f"{name} is not shipped: run workbench sweep specs/crossbar_digits.json --cache-dir data/store"
    from workbench.experiments.sweep import run_experiment
    ds = run_experiment("nas", spec["experiments"]["nas"], store)
    assert ds.attrs["k"] * ds.attrs["k_g"] == ds.sizes["state"] and np.isfinite(ds.hypervolume.values).all()


@pytest.mark.browser
def test_crossbar_page_g_u_changes_power_and_a_point_shows_details(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1500, "height": 1300})
    page.goto(f"{served_app}/apps?page=crossbar")

    def power_text():
        box = page.get_by_text("crossbar power per inference (arbitrary units)").first
        return box.locator("xpath=..").inner_text()

    def power():
        return float(re.search(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?\s*$", power_text().strip()).group(0))

    wait_until(power_text, 180, message="the power readout")
    last = []

    def settled_power():              # the same reading twice, a second apart
        last.append(power())
        time.sleep(1.0)
        return len(last) >= 2 and last[-1] == last[-2] and last[-1]

    before = wait_until(settled_power, 120, message="the power readout to settle")
    slider = page.locator(".noUi-handle").nth(1)          # every layer's g_u (after the noise slider)
    slider.focus()
    for _ in range(6):
        slider.press("ArrowLeft")
    page.mouse.click(5, 5)
    wait_until(lambda: power() != before, 120, message="power to follow g_u")
    assert power() < before, "a lower g_u (smaller conductances) must draw less crossbar power (eq 3.39–3.44)"
    page.get_by_text("Pareto fronts").first.click()
    wait_until(lambda: page.locator(".bk-Figure").filter(visible=True).count() > 0, 120, message="the fronts")
    fig = page.locator(".bk-Figure").filter(visible=True).first

    def click_a_point():              # the fronts pane may redraw between finding it and the click: retry both
        box = fig.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.4)
        return page.get_by_text(re.compile(r"blocks per stage D")).count() > 0
    wait_until(click_a_point, 120, interval=2.0, message="the point's details")
    assert_no_console_errors(console)


def test_nas_command_reports_r2_hypervolumes_and_fronts(tmp_path, capsys):
    from workbench.cli import main
    sets = [a for k, v in NAS.items() for a in ("--set", f"{k}={v}")]
    assert main(["nas", *sets, "--supernet", "epochs=1", "--json", "--quiet", "--cache-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out["hypervolume"]) == {"dataset", "M1", "M2", "M3"} and set(out["r2"]) == {"accuracy", "power"}
    assert all(len(f["accuracy"]) == len(f["power"]) > 0 for f in out["fronts"].values())
    assert main(["nas", "--set", "n_gen=0", "--quiet", "--cache-dir", str(tmp_path)]) == 2
    assert "n_gen" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the page's state in the URL (browser)
def notice_items(page) -> list[str]:
    """The lines of the "settings not used" notice at the top of the app."""
    return [t.strip() for t in page.locator("li", has_text="was not used").all_inner_texts()]


def loc(page) -> str:
    """The address bar as the page itself reads it (history.pushState included)."""
    return page.evaluate("window.location.href")


def status(page) -> str:
    return page.locator("p", has_text="Status:").first.inner_text()


def search_status(page) -> str:
    return page.locator("p", has_text="Search:").first.inner_text()


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def shipped_point(strategy: str = "M2"):
    """A re-simulated point of the shipped fronts whose subnet is not the default one, with the
    depth, width, expand and per-layer g_u that *Edit this network* must load."""
    from workbench.experiments.crossbar import supernet_config
    from workbench.experiments.sweep import run_experiment
    from workbench.nas.supernet import Supernet
    nas = load_spec(CROSSBAR_SPEC)["experiments"]["nas"]
    ds = run_experiment("nas", nas, Store())
    space = Supernet(supernet_config(nas.get("supernet"))).space
    sub = ds.sel(strategy=strategy)
    for i in range(sub.sizes["point"]):
        if not np.isfinite(float(sub.power.isel(point=i))):
            continue
        s = sub.state_vector.isel(point=i).values
        arch = space.decode(s)
        if list(arch.depth) != [3, 3, 3]:
            keep = space.mask(np.asarray(arch.depth))
            g = [float(v) for v, k in zip(s[space.gu_slice], keep) if k]
            return (
                i,
                [int(d) for d in arch.depth],
                [float(w) for w in arch.width],
                [float(e[0]) for e in arch.expand],
                g,
            )
    raise AssertionError("no shipped point with a smaller subnet")


def _num(v: float) -> str:
    return f"{v:g}"


@pytest.mark.browser
def test_a_bad_crossbar_link_is_refused_by_name_and_the_rest_applies(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=crossbar&tab=search&strategy=M9&sigma=-1&pop=2&gen=5&depth=9,9,9&gu=1,2")
    wait_until(lambda: len(notice_items(page)) == 5, 90, message="five refusals in the notice")
    items = notice_items(page)
    for key, why in (("strategy=M9", "M1, M2, M3"), ("sigma=-1", "between 0 and 1"), ("pop=2", "between 4 and 4096"),
                     ("depth=9,9,9", "one of 1, 2, 3"), ("gu=1,2", "32 layers")):
        assert any(i.startswith(f"{key} was not used") and why in i for i in items), (key, items)
    # the valid setting and the sub-tab applied, the refused ones kept their values
    wait_until(lambda: "gen=5" in loc(page) and "tab=search" in loc(page), 60, message="the applied link written back")
    assert (
        "strategy=M2" in loc(page)
        and "sigma=0.015" in loc(page)
        and "pop=64" in loc(page)
        and "depth=3,3,3" in loc(page)
    )
    wait_until(
        lambda: page.get_by_label("generations").input_value() == "5", 60, message="generations = 5 in its field"
    )
    assert page.get_by_label("population").input_value() == "64"
    # a point the fronts do not have is refused once they have loaded, on the page itself
    page.goto(f"{served_app}/apps?page=crossbar&tab=fronts&point=M2:99&gen=7")
    wait_until(lambda: page.get_by_text(re.compile(r"point was not used: M2 has re-simulated points")).count() > 0,
               120, message="the late refusal of point=M2:99")
    wait_until(lambda: "gen=7" in loc(page) and "point=none" in loc(page), 60, message="the rest of the link applied")
    # the page still works: the top tabs switch both ways
    page.locator(".bk-tab", has_text="Noise playground").click()
    wait_until(lambda: page.get_by_text("Train with this noise").filter(visible=True).count() > 0, 120,
               message="the playground shown")
    page.locator(".bk-tab", has_text="Crossbar power & search").click()
    wait_until(lambda: page.get_by_text("Hypervolume").filter(visible=True).count() > 0, 60,
               message="back on the crossbar page's fronts")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_edit_this_network_loads_the_clicked_subnet_into_the_editor(served_app, page):
    console = watch_console(page)
    i, depth, width, expand, g = shipped_point("M2")
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=crossbar&tab=fronts&point=M2:{i}")
    button = page.get_by_role("button", name="Edit this network")
    wait_until(lambda: button.count() > 0 and button.first.is_visible(), 180, message="the point's details")
    button.first.click()
    want = f"depth={','.join(map(str, depth))}&width={','.join(map(_num, width))}&expand={','.join(map(_num, expand))}"
    wait_until(lambda: want in loc(page) and "tab=subnet" in loc(page), 60, message=f"{want} in the URL")
    gu = re.search(r"gu=([^&]*)", loc(page)).group(1).split(",")
    assert np.allclose([float(v) for v in gu], g, atol=0.0051), (gu, g)        # written to 2 decimals
    assert len(set(gu)) > 1                                                    # not the default g_u = g_u^d
    # the editor's widgets show that subnet
    wait_until(lambda: page.get_by_label("stage 1: blocks D").input_value() == str(depth[0]), 60,
               message="the editor's depth")
    for s in range(3):
        assert page.get_by_label(f"stage {s + 1}: blocks D").input_value() == str(depth[s])
        assert float(page.get_by_label("width", exact=True).nth(s).input_value()) == width[s + 1]
        assert float(page.get_by_label("expand", exact=True).nth(s).input_value()) == expand[s]
    assert float(page.get_by_label("stem width").input_value()) == width[0]
    cells = page.locator(".tabulator-cell[tabulator-field='g_u / g_u^d']")
    wait_until(lambda: cells.count() > 0 and float(cells.first.inner_text()) == round(g[0], 2), 60,
               message="the g_u table")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_cancel_stops_the_search_within_a_generation(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=crossbar&tab=search&strategy=M2&pop=64&gen=2000")
    run = page.get_by_role("button", name="Run NSGA-II")
    wait_until(lambda: run.count() > 0 and run.first.is_enabled(), 120, message="the Run button")
    run.first.click()
    gen = re.compile(r"generation (\d+) of 2000")
    wait_until(
        lambda: (m := gen.search(search_status(page))) and int(m.group(1)) >= 3, 120, message="the search running"
    )
    page.mouse.move(5, 5)
    page.get_by_role("button", name="Cancel").first.click()
    done = re.compile(r"cancelled after (\d+) generations")
    wait_until(lambda: done.search(search_status(page)), 30, message="the search reported cancelled")
    stopped = int(done.search(search_status(page)).group(1))
    assert 3 <= stopped < 2000
    # nothing runs on: over a few seconds (a hundred generations' time) no later generation is shown
    end = time.monotonic() + 4
    while time.monotonic() < end:
        assert done.search(search_status(page)) and int(done.search(search_status(page)).group(1)) == stopped
        time.sleep(0.5)
    assert page.get_by_role("button", name="Run NSGA-II").first.is_enabled()
    assert_no_console_errors(console)


@pytest.mark.browser
def test_crossbar_state_round_trips_through_the_url_and_back(served_app, page):
    from workbench.experiments.crossbar import supernet_config
    from workbench.nas.supernet import Supernet
    console = watch_console(page)
    space = Supernet(supernet_config({})).space
    n = int(space.mask(np.array([2, 3, 1])).sum())
    gu = ",".join(["0.8", "1.2"] * (n // 2) + ["0.8"] * (n % 2))
    link = (f"page=crossbar&tab=subnet&depth=2,3,1&width=1,0.75,1,0.5&expand=0.5,1,1&gu={gu}&sigma=0.02&draws=10"
            f"&strategy=M1&pop=32&gen=10&point=none")
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?{link}")
    wait_until(lambda: loc(page).endswith("?" + link), 60, message="the link written back unchanged")
    assert notice_items(page) == []
    assert page.get_by_label("stage 1: blocks D").input_value() == "2"
    assert page.get_by_label("stage 3: blocks D").input_value() == "1"
    assert float(page.get_by_label("width", exact=True).nth(0).input_value()) == 0.75
    wait_until(lambda: "D = [2, 3, 1]" in status(page) and "arbitrary units" in status(page), 180,
               message="the linked subnet evaluated")
    # a change is written to the URL; the g_u list follows the subnet's layers
    page.get_by_label("stage 2: blocks D").select_option("1")
    wait_until(lambda: "depth=2,1,1" in loc(page), 60, message="depth=2,1,1 in the URL")
    m = int(space.mask(np.array([2, 1, 1])).sum())
    assert len(re.search(r"gu=([^&]*)", loc(page)).group(1).split(",")) == m
    page.locator(".bk-tab", has_text="Pareto fronts").click()
    wait_until(lambda: "tab=fronts" in loc(page), 60, message="the sub-tab in the URL")
    # Back restores each earlier state
    page.go_back()
    wait_until(lambda: "tab=subnet" in loc(page) and "depth=2,1,1" in loc(page), 60, message="Back to the subnet tab")
    page.go_back()
    wait_until(lambda: loc(page).endswith("?" + link), 60, message="Back to the linked state")
    wait_until(lambda: page.get_by_label("stage 2: blocks D").input_value() == "3", 60, message="the editor restored")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_crossbar_fields_refuse_invalid_values_beside_them_and_fit_800px(served_app, page, tmp_path):
    console = watch_console(page)
    page.set_viewport_size({"width": 800, "height": 1100})
    page.goto(f"{served_app}/apps?page=crossbar&tab=subnet")
    wait_until(lambda: "arbitrary units" in status(page), 180, message="the subnet evaluated")
    # a g_u out of [0.5, 1.5] typed in the table is refused beside it, the last good value kept
    cell = page.locator(".tabulator-cell[tabulator-field='g_u / g_u^d']").first
    cell.click()
    editor = cell.locator("input")
    wait_until(lambda: editor.count() > 0, 30, message="the cell's editor")
    editor.fill("3")
    editor.press("Enter")
    wait_until(lambda: page.get_by_text("must be between 0.5 and 1.5 (eq 6.2) — still using 1").count() > 0, 60,
               message="the g_u table's message")
    assert cell.inner_text() == "1.00"
    assert re.search(r"gu=1,", loc(page)), loc(page)
    cell.click()
    wait_until(lambda: editor.count() > 0, 30, message="the cell's editor")
    editor.fill("0.7")
    editor.press("Enter")
    wait_until(lambda: re.search(r"gu=0\.7,", loc(page)), 60, message="g_u 0.7 used")
    # number fields: population and generations of the search
    page.locator(".bk-tab").filter(has_text=re.compile(r"^Search$")).click()
    pop = page.get_by_label("population")
    wait_until(lambda: pop.count() > 0, 60, message="the search tab")
    pop.fill("2")
    pop.press("Enter")
    wait_until(lambda: page.get_by_text("between 4 and 4096 — still using 64").count() > 0, 60,
               message="the population field's message")
    gen = page.get_by_label("generations")
    gen.fill("0")
    gen.press("Enter")
    wait_until(lambda: page.get_by_text("between 1 and 2000 — still using 40").count() > 0, 60,
               message="the generations field's message")
    assert "pop=64" in loc(page) and "gen=40" in loc(page), loc(page)
    pop.fill("16")
    pop.press("Enter")
    wait_until(lambda: "pop=16" in loc(page), 30, message="population 16 used")
    # at 800 px no sub-tab scrolls sideways
    for tab, shown in (
        ("Search", "Run a search"),
        ("Pareto fronts", "Hypervolume"),
        ("Your subnet", "crossbar power per inference"),
    ):
        page.locator(".bk-tab").filter(has_text=re.compile(f"^{tab}$")).click()
        wait_until(
            lambda shown=shown: page.get_by_text(shown).filter(visible=True).count() > 0, 120, message=f"the {tab} tab"
        )
        wait_until(lambda: no_sideways_scroll(page), 30, message=f"no sideways scroll on {tab}")
        page.screenshot(path=tmp_path / f"crossbar-800-{tab.replace(' ', '-').lower()}.png", full_page=True)
    assert_no_console_errors(console)


# ---------------------------------------------------------------------------- accelerator study: Pareto axes (issue 15)
ACCEL = {**NAS, "adc_bits": [3, 8], "objectives": ["accuracy", "energy", "latency"]}


def _fronts_view(page):
    """The fronts tab's plot as Bokeh draws it (its axis labels) and the text below it."""
    col = page._fronts()
    fig = hv.render(col[0].object, backend="bokeh")
    return fig.xaxis[0].axis_label, fig.yaxis[0].axis_label, col[2].object


def test_the_axis_control_changes_the_fronts_axes_and_their_hypervolumes(explorer):
    from workbench.experiments.crossbar import pair_hypervolumes
    from workbench.plots.crossbar import pareto_axes
    from workbench.ui.crossbar import CrossbarPage
    hv.extension("bokeh")
    explorer.wait()
    default = explorer.nas
    page = CrossbarPage(explorer=explorer)
    x, y, text = _fronts_view(page)
    assert (x, y) == ("crossbar power per inference (arbitrary units)", "test accuracy")   # Fig 6.2, as before
    assert list(page._axis_select["x"].options.values()) == ["accuracy", "power"]
    # the hypervolumes of the default pair are the study's own
    hvs = pair_hypervolumes(default, "power", "accuracy")
    assert list(hvs.values()) == [float(v) for v in default.hypervolume.values]
    assert ", ".join(f"{s} {v:.3f}" for s, v in hvs.items()) in text and "one power scale" in text
    # accuracy on x: the other axis takes power (the two never show one quantity)
    page._axis_select["x"].value = "accuracy"
    assert (explorer.front_x, explorer.front_y) == ("accuracy", "power")
    assert _fronts_view(page)[:2] == ("test accuracy", "crossbar power per inference (arbitrary units)")
    assert page._axis_select["y"].value == "power" and page.url.query()["xaxis"] == "accuracy"
    explorer.param.update(front_x="power", front_y="accuracy")
    assert "xaxis" not in page.url.query() and "yaxis" not in page.url.query()     # the default stays out of links

    # a study searched with ADC bits against energy and latency
    acc_ds = nas_study(ACCEL, SUPERNET, explorer.store)
    try:
        explorer.nas = acc_ds
        assert list(page._axis_select["x"].options.values()) == ["accuracy", "power", "energy_j", "latency_s"]
        page._axis_select["x"].value = "energy_j"
        x, y, text = _fronts_view(page)
        assert re.fullmatch(r"energy per inference \((pJ|nJ|µJ)\)", x) and y == "test accuracy"
        hv_e = pair_hypervolumes(acc_ds, "energy_j", "accuracy")
        assert all(v > 0 for v in hv_e.values()) and f"M2 {hv_e['M2']:.3f}" in text and "one energy scale" in text
        page._axis_select["y"].value = "latency_s"
        x, y, text = _fronts_view(page)
        assert re.fullmatch(r"energy per inference \(\w?J\)", x)
        assert re.fullmatch(r"latency per inference \((ns|µs|ms)\)", y)
        hv_t = pair_hypervolumes(acc_ds, "energy_j", "latency_s")
        assert f"M1 {hv_t['M1']:.3f}" in text and page.url.query()["yaxis"] == "latency_s"
        # a click in the plot's units selects the point there
        _, fx, _, fy = pareto_axes(acc_ds, "energy_j", "latency_s")
        pt = acc_ds.sel(strategy="M2").isel(point=0)
        explorer.pick(float(pt.energy_j), float(pt.latency_s))
        chosen = acc_ds.sel(strategy=explorer.selected[0]).isel(point=explorer.selected[1])
        assert float(chosen.energy_j) * fx == pytest.approx(float(pt.energy_j) * fx)
        # the clicked network is re-simulated with its ADC bits and the study's hardware profile
        explorer.set_point("M2", 0)
        explorer.wait(kinds=("details",))
        d = explorer.details
        bits = explorer.space.with_adc([3, 8]).adc_bits(explorer.point_state("M2", 0))
        assert [int(b) for b in d.adc_bits.values] == [bits[str(n)] for n in d.layer.values]
        assert float(d.energy_j.sel(scale=1.0)) == pytest.approx(float(pt.energy_j), rel=0.05)
        assert float(d.latency_s) == pytest.approx(float(pt.latency_s), rel=1e-12)
        head = page._details()[0].object
        assert "energy" in head and "latency" in head
    finally:
        explorer.param.update(front_x="power", front_y="accuracy", selected=None)
        explorer.nas = default
    assert _fronts_view(page)[:2] == ("crossbar power per inference (arbitrary units)", "test accuracy")


def test_nas_command_searches_adc_bits_against_energy_and_latency(explorer, capsys):
    from workbench.cli import main
    sets = [a for k, v in NAS.items() for a in ("--set", f"{k}={v}")]
    root = str(explorer.store.root)
    assert main(["nas", *sets, "--supernet", "epochs=1", "--adc-bits", "3,8", "--objectives",
                 "accuracy,energy,latency", "--json", "--quiet", "--cache-dir", root]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["objectives"] == ["accuracy", "energy", "latency"] and out["adc_bits"] == [3, 8]
    assert out["profile"] == "isaac" and set(out["r2"]) == {"accuracy", "power", "array_energy_j"}
    assert set(out["hypervolume_pairs"]) == {"accuracy-power", "accuracy-energy_j", "accuracy-latency_s"}
    assert all(v > 0 for v in out["hypervolume_pairs"]["accuracy-energy_j"].values())
    for f in out["fronts"].values():
        assert len(f["accuracy"]) == len(f["energy_j"]) == len(f["latency_s"]) > 0
    for args, words in ((["--adc-bits", "3,x"], "--adc-bits"), (["--adc-bits", "3,20"], r"\[2, 16\]"),
                        (["--objectives", "accuracy,joules"], "--objectives.*power, energy, latency"),
                        (["--objectives", "accuracy,energy", "--profile", "tpu"], "--profile.*isaac"),
                        (["--profile", "isaac"], "--profile.*--objectives accuracy,energy")):
        assert main(["nas", *args, "--quiet", "--cache-dir", root]) == 2
        assert re.search(words, capsys.readouterr().err), args
