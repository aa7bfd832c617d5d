"""The "Under-volted SRAM" page: its state object without a browser, then in headless Chromium."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from workbench.experiments import Store
from workbench.experiments.sram import energy_of
from workbench.ui.sram_explorer import SRAMExplorer

from helpers import assert_no_console_errors, wait_until, watch_console


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    ex = SRAMExplorer(store=Store(tmp_path_factory.mktemp("sram-ui")), device="cpu", autorun=False)
    yield ex
    ex.runner.shutdown()


def test_layer_editor_updates_energy_and_refuses_bad_values(explorer):
    layer = list(explorer.counts)[0]
    e0 = explorer.edited_energy()
    explorer.set_layer_p(layer, 0.3)
    assert explorer.edited_energy() < e0
    assert explorer.edited_energy() == pytest.approx(
        energy_of(explorer.layer_p, explorer.counts, 1, explorer.reference_weights)
    )
    with pytest.raises(ValueError, match="p"):
        explorer.set_layer_p(layer, 0.8)
    with pytest.raises(KeyError, match="nope"):
        explorer.set_layer_p("nope", 0.1)
    assert explorer.layer_p[layer] == 0.3          # a refused value leaves the edit intact


def test_lanmax_run_streams_p_then_cancel_keeps_state(explorer):
    explorer.param.update(alpha=1.0, epochs=3, seed=5)
    explorer.param.trigger("run_lanmax")
    explorer.wait(kinds=("lanmax",))
    assert explorer.error == "" and not explorer.running
    res = explorer.lanmax_result
    assert res is not None and set(res["p"]) == set(explorer.counts)
    assert all(len(v) == 3 for v in explorer.lanmax_p.values())            # one p per layer per epoch
    assert explorer.layer_p == res["p"]                                    # the learned p lands in the editor
    assert all(1e-4 <= v <= 0.5 for v in res["p"].values())
    before = dict(explorer.layer_p)
    explorer.param.update(epochs=300, seed=6)
    explorer.param.trigger("run_lanmax")
    deadline = time.monotonic() + 120
    while not explorer.lanmax_p and time.monotonic() < deadline:
        time.sleep(0.05)
    explorer.param.trigger("cancel")
    explorer.wait(kinds=("lanmax",))
    assert "cancelled" in explorer.status and explorer.layer_p == before


@pytest.mark.browser
def test_sram_page_edit_layer_and_start_cancel_lanmax(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1400, "height": 1200})
    page.goto(f"{served_app}/apps?page=sram")
    page.get_by_text("Per-layer p & LaNMax").click()
    energy = re.compile(r"^0\.\d{5}$")
    before = wait_until(
        lambda: page.get_by_text(energy).filter(visible=True).first.inner_text(), 90, message="energy readout"
    )
    box = page.get_by_label("p of blocks.2.conv2")      # the largest layer: a visible energy change
    box.click()
    box.fill("0.3")
    wait_until(
        lambda: page.get_by_text(energy).filter(visible=True).first.inner_text() != before,
        60,
        message="energy to follow the typed p",
    )
    assert float(page.get_by_text(energy).filter(visible=True).first.inner_text()) < float(before)
    epochs = page.get_by_label("epochs")              # long enough that only Cancel can end it
    epochs.fill("500")
    epochs.press("Enter")
    page.get_by_role("button", name="Run LaNMax").click()
    wait_until(lambda: page.get_by_text(re.compile("LaNMax run, α .*, 500 epochs")).count() > 0, 60,
               message="the 500-epoch run to start")
    page.mouse.move(5, 5)                 # let the help tooltip of a nearby input close
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Cancel").click()
    wait_until(lambda: page.get_by_text("LaNMax run cancelled").count() > 0, 120, message="the run to stop")
    assert_no_console_errors(console)


def test_clicking_a_point_shows_its_p_and_sensitivity():
    """The shipped energy–accuracy results: picking the LaNMax point nearest a click gives its
    per-layer BER and computes that network's sensitivity at its own BERs."""
    from workbench.ui.sram import SRAMPage
    ex = SRAMExplorer(device="cpu", autorun=False)     # default store: the shipped data/store is read
    ex.load()
    ex.wait(kinds=("energy_accuracy",))
    page = SRAMPage(explorer=ex)
    ds = ex.energy
    k = int(np.flatnonzero(ds.method.values == "lanmax")[0])
    page._pick(float(ds.energy[k]), float(ds.accuracy_mean[k]))
    assert ex.selected == k
    info = ex.point_details()
    assert info["method"] == "lanmax" and set(info["p"]) == set(ex.counts)
    assert info["p"] == pytest.approx(dict(zip(map(str, ds.layer.values), ds.p_layer.values[k])))
    ex.wait(kinds=("point",))
    sens = ex.point_sensitivity
    assert sens is not None and set(map(str, sens.layer.values)) == set(ex.counts)
    assert sens.attrs["base_p_kind"].startswith("per layer")
    ex.runner.shutdown()


# ---------------------------------------------------------------------------------------------- the page's link keys
def test_layer_p_link_text_round_trips_and_refuses_by_name():
    from workbench.ui.sram import format_layer_p, parse_layer_p
    layers = ["conv1", "blocks.0.conv1", "fc"]
    edited = {"conv1": 0.0, "blocks.0.conv1": 0.01, "fc": 0.054412345}
    text = format_layer_p(edited)
    assert text == "0,blocks.0.conv1:0.01,fc:0.05441" or text.startswith(("0.01,", "0.05441,")), text
    back = parse_layer_p(text, layers)
    assert back == pytest.approx({"conv1": 0.0, "blocks.0.conv1": 0.01, "fc": 0.05441})      # rounded as shown
    assert format_layer_p({k: 0.01 for k in layers}) == "0.01"
    assert parse_layer_p("0.02,fc:0.3", layers) == {"conv1": 0.02, "blocks.0.conv1": 0.02, "fc": 0.3}
    assert parse_layer_p("fc:0.3", layers) == {"conv1": 0.01, "blocks.0.conv1": 0.01, "fc": 0.3}   # unnamed: 0.01
    from workbench.ui.urlstate import URLValueError
    with pytest.raises(URLValueError, match="nope is not a layer"):
        parse_layer_p("nope:0.1", layers)
    with pytest.raises(URLValueError, match="fc .*between 0 and 0.5"):
        parse_layer_p("fc:0.9", layers)
    with pytest.raises(URLValueError, match="at most one"):
        parse_layer_p("0.1,0.2", layers)


def test_page_url_applies_good_keys_and_names_the_bad_ones():
    """A link with bad values: each bad key is refused with a sentence naming it, every other key applies;
    the selected network of the energy plot waits for its study and is then selected."""
    import holoviews as hv
    hv.extension("bokeh")
    from workbench.ui.sram import SRAMPage
    ex = SRAMExplorer(device="cpu", autorun=False)
    page = SRAMPage(explorer=ex)
    refused = page.url.apply({"p_t": "7", "alpha": "-1", "layer": "nope", "epochs": "0", "width": "0.5",
                              "p": "0.02", "layer_p": "0.02,fc:0.3", "tab": "spectra", "point": "lanmax:0.1",
                              "seed": "12"})
    assert [r.split("=")[0] for r in refused] == ["`p_t", "`alpha", "`epochs", "`layer"], refused
    assert (ex.width, ex.p, ex.seed, page.tab) == (0.5, 0.02, 12, "spectra")
    page.__panel__()
    assert page._tabs.active == 4
    page.tab = "energy"
    assert page._tabs.active == 3
    page._tabs.active = 4
    assert page.tab == "spectra"
    assert (ex.p_train, ex.alpha, ex.epochs, ex.spectra_layer) == (0.01, 0.01, 20, "conv1")   # kept
    assert ex.layer_p["fc"] == 0.3 and ex.layer_p["conv1"] == 0.02 and page._inputs["fc"].value == "0.3"
    assert page._width.value == 0.5 and page._p.value == 0.02
    q = page.url.query()
    assert q["point"] == "lanmax:0.1" and q["layer_p"] == "0.02,fc:0.3" and q["p"] == "0.02"
    refused = page.url.apply({"point": "lanmax:3", "p": "0.003", "tab": "nope"})
    assert [r.split("=")[0] for r in refused] == ["`tab", "`p", "`point"], refused
    assert "uniform, sensitivity, editor, energy, spectra" in refused[0] and "0.002, 0.005" in refused[1]
    assert "0.1, 0.05, 0.03, 0.02, 0.01, 0.001, 0" in refused[2]
    ex.load()
    ex.wait(kinds=("energy_accuracy",))
    k = int(np.flatnonzero((ex.energy.method.values == "lanmax") & (ex.energy.value.values == 0.1))[0])
    assert ex.selected == k and page.url.query()["point"] == "lanmax:0.1"
    page.url.apply({"point": "none"})
    assert ex.selected is None
    ex.runner.shutdown()


def test_spectra_text_tests_lambda_1_and_2_or_says_why_not():
    """The shipped spectra: λ_1 and λ_2 of every layer get a Welch test (the page passed a 0-based rank to a
    1-based function, which refused it as "out of range"); with one seed the reason is said in words."""
    from workbench.ui.sram import spectra_test_lines
    ex = SRAMExplorer(device="cpu", autorun=False)
    ex.load()
    ex.wait(kinds=("spectra",))
    ds = ex.spectra
    from workbench.analysis.spectra import spectra_ttest
    for layer in map(str, ds.layer.values):
        lines = spectra_test_lines(ds, layer)
        assert len(lines) == 2 and all("Welch t = " in line for line in lines), lines
        t = spectra_ttest(ds, layer, 1, float(ds.p_train[0]), float(ds.p_train[-1]))
        assert f"Welch t = {t['t']:.2f}" in lines[0]
    one_seed = ds.isel(seed=[0])
    lines = spectra_test_lines(one_seed, "fc")
    assert all("not enough networks for a t-test" in line and "needs at least 2" in line for line in lines), lines
    assert not any("rank" in line or "KnobError" in line or "range" in line for line in lines)
    ex.runner.shutdown()


# ---------------------------------------------------------------------------------------------- in the browser
SUBTABS = ["Uniform BER", "Layer sensitivity", "Per-layer p & LaNMax", "Energy vs accuracy", "Spectra"]


def _search(page) -> str:
    """The address bar's query, read from the page (``page.url`` is only refreshed when Playwright
    handles an event, which a polling loop that only reads it never gives it the chance to do)."""
    return page.evaluate("window.location.search")


def _notice(page) -> str:
    items = page.get_by_text("was not used")
    return " ".join(items.all_inner_texts())


def _slider_title(page, label: str) -> str:
    """The title line of a slider, "label: value" (a DiscreteSlider writes it in one clearfix div)."""
    return page.get_by_text(re.compile(f"^{re.escape(label)}.*: ")).filter(visible=True).first.inner_text().strip()


@pytest.mark.browser
def test_bad_link_is_refused_by_name_and_the_rest_applies(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 800, "height": 1000})
    page.goto(f"{served_app}/apps?page=sram&p_t=7&alpha=-1&layer=nope&epochs=0&width=0.5")
    wait_until(lambda: all(k in _notice(page) for k in ("p_t=7", "alpha=-1", "layer=nope", "epochs=0")), 90,
               message="the notice naming the four refused keys")
    assert "width=0.5" not in _notice(page)
    wait_until(
        lambda: "width=0.5" in _search(page) and "p_t=0.01" in _search(page),
        30,
        message="the URL with the applied width",
    )
    page.locator(".bk-tab", has_text="Per-layer p & LaNMax").click()
    wait_until(lambda: "0.5" in _slider_title(page, "width multiplier"), 60, message="width 0.5 in its slider")
    assert page.get_by_label("LaNMax epochs").input_value() == "20"
    # the top tabs still switch
    page.locator(".bk-tab", has_text="Sweeps").click()
    wait_until(lambda: "page=sweep" in _search(page), 120, message="the sweeps page to open")
    page.locator(".bk-tab", has_text="Under-volted SRAM").click()
    wait_until(
        lambda: "page=sram" in _search(page) and "width=0.5" in _search(page), 60, message="back on the SRAM page"
    )
    assert_no_console_errors(console)


@pytest.mark.browser
def test_link_sets_the_page_widgets_follow_and_back_restores(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=sram&tab=editor&p_t=0.03&p=0.02&layer_p=0.01,fc:0.2&layer=blocks.2.conv2")
    fc = page.get_by_label("p of fc")
    wait_until(lambda: fc.input_value() == "0.2", 90, message="the per-layer BER of fc from the link")
    assert page.get_by_label("p of conv1").input_value() == "0.01"
    wait_until(
        lambda: "tab=editor" in (q := _search(page)) and "layer_p=0.01,fc:0.2" in q, 30, message="the link in the URL"
    )
    assert _notice(page) == ""

    page.locator(".bk-tab", has_text="Uniform BER").click()
    wait_until(lambda: "tab=uniform" in _search(page), 30, message="the sub-tab in the URL")
    assert _slider_title(page, "training BER").endswith("0.03") and _slider_title(page, "test BER").endswith("0.02")
    handle = page.locator(".noUi-handle").filter(visible=True).first            # the p_t slider
    handle.focus()
    handle.press("ArrowRight")
    page.mouse.click(5, 5)
    wait_until(lambda: "p_t=0.1&" in _search(page), 30, message="the moved slider in the URL")
    page.go_back()
    wait_until(lambda: "p_t=0.03&" in _search(page) and _slider_title(page, "training BER").endswith("0.03"), 60,
               message="Back to p_t = 0.03")
    page.go_back()
    wait_until(
        lambda: "tab=editor" in _search(page) and page.get_by_label("p of fc").filter(visible=True).count() == 1,
        60,
        message="Back to the editor sub-tab",
    )

    # typing a BER writes it to the URL; the spectra layer of the link is selected
    fc = page.get_by_label("p of fc")
    fc.fill("0.05")
    wait_until(lambda: "fc:0.05" in _search(page), 30, message="the typed BER in the URL")
    page.locator(".bk-tab", has_text="Spectra").click()
    wait_until(lambda: page.locator("select").filter(visible=True).first.input_value() == "blocks.2.conv2", 60,
               message="the spectra layer from the link")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_invalid_number_field_says_so_and_keeps_the_last_good_value(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=sram&tab=editor&epochs=30")
    epochs = page.get_by_label("LaNMax epochs")
    wait_until(lambda: epochs.input_value() == "30", 90, message="epochs from the link")

    def shown(text):
        return page.get_by_text(text).filter(visible=True).count() > 0
    epochs.fill("1")
    epochs.press("Enter")
    wait_until(lambda: shown("LaNMax epochs must be between 2 and 500 — still using 30"), 30,
               message="the epochs field's message")
    assert "epochs=30" in _search(page)
    box = page.get_by_label("p of conv1")
    box.fill("0.9")
    wait_until(
        lambda: shown("p of conv1 must be a number between 0 (a reliable memory) and 0.5 — still using 0.01"),
        30,
        message="the per-layer BER message",
    )
    assert "layer_p=0.01&" in _search(page)
    epochs.fill("40")
    epochs.press("Enter")
    wait_until(lambda: "epochs=40" in _search(page), 30, message="a good value used")
    wait_until(lambda: not shown("still using 30"), 30, message="the message cleared")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_spectra_text_shows_tests_not_exceptions(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=sram&tab=spectra&layer=fc")
    text = wait_until(lambda: page.get_by_text(re.compile("Welch t = ")).first.inner_text(), 90, message="the t-tests")
    assert text.count("Welch t = ") == 2 and "λ_1" in text and "λ_2" in text, text
    for bad in ("out of range", "rank=", "no test (", "Error", "Traceback"):
        assert page.get_by_text(bad).count() == 0, bad
    assert_no_console_errors(console)


@pytest.mark.browser
def test_every_subtab_fits_800_px(served_app, page, tmp_path):
    console = watch_console(page)
    page.set_viewport_size({"width": 800, "height": 1000})
    page.goto(f"{served_app}/apps?page=sram")
    wait_until(lambda: page.locator(".bk-tab", has_text="Spectra").count() == 1, 90, message="the sub-tabs")
    for i, name in enumerate(SUBTABS):
        page.locator(".bk-tab", has_text=name).click()
        wait_until(lambda: page.locator("canvas").filter(visible=True).count() >= 1, 90, message=f"a plot on {name}")
        page.wait_for_timeout(500)         # the plots settle to the width
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        page.screenshot(path=str(tmp_path / f"sram-{i}.png"), full_page=True)
    assert_no_console_errors(console)


@pytest.mark.browser
def test_link_selects_a_network_of_the_energy_plot(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=sram&tab=energy&point=bc_uniform:0.03")
    wait_until(lambda: page.get_by_text("one BER p for all layers, BER p = 0.03: mean test accuracy").count() == 1, 90,
               message="the selected network's details")
    wait_until(lambda: "point=bc_uniform:0.03" in _search(page), 30, message="the selection kept in the URL")
    assert _notice(page) == ""
    assert_no_console_errors(console)
