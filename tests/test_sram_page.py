"""The "Under-volted SRAM" page: its state object without a browser, then in headless Chromium."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from conftest import assert_no_console_errors, wait_until, watch_console

from workbench.experiments import Store
from workbench.experiments.sram import energy_of
from workbench.ui.sram_explorer import SRAMExplorer


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
    assert explorer.edited_energy() == pytest.approx(energy_of(explorer.layer_p, explorer.counts, 1, explorer.reference_weights))
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
    before = wait_until(lambda: page.get_by_text(energy).filter(visible=True).first.inner_text(), 90, message="energy readout")
    box = page.get_by_label("p of blocks.2.conv2")      # the largest layer: a visible energy change
    box.click()
    box.fill("0.3")
    wait_until(lambda: page.get_by_text(energy).filter(visible=True).first.inner_text() != before, 60, message="energy to follow the typed p")
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
