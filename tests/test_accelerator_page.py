"""The Accelerator page: its state object (the shipped default cell, per-layer overrides, the URL
keys, a failed job keeping the earlier result, the explanation computed from the result), its
stacked energy bars, and in a real headless Chromium: moving the ADC-bits slider changes the energy
and the accuracy with no console errors, a link opens its state, a bad link is refused by name,
and at 800 px nothing scrolls sideways."""

from __future__ import annotations

import re

import holoviews as hv
import numpy as np
import pytest

from workbench.experiments import Store
from workbench.hardware import COMPONENTS
from workbench.knobs import KnobError
from workbench.plots.accelerator import COMPONENT_WORDS, energy_bars, energy_unit
from workbench.ui.accelerator_explorer import (
    LAYER_KNOBS,
    AcceleratorExplorer,
    explain,
    format_layers,
    memory_knobs,
    parse_layers,
)
from workbench.ui.urlstate import PageURL, URLValueError

from helpers import assert_no_console_errors, wait_until, watch_console


@pytest.fixture
def explorer(tmp_path):
    """The page's state on a fresh writable store (the shipped store is read-only beside it)."""
    ex = AcceleratorExplorer(store=Store(tmp_path / "store"), device="cpu", autorun=False)
    ex.load()
    ex.wait(300)
    assert ex.error == "" and ex.result is not None
    return ex


def test_default_setting_is_a_shipped_cell_with_energy_latency_and_the_study(explorer):
    ds = explorer.result
    # the default is a cell of specs/accelerator_digits.json: read from data/store, never computed
    assert ds.attrs["cache"] == "hit"
    assert explorer.study is not None and 6 in explorer.study.adc_bits.values
    assert set(ds.component.values) == set(COMPONENTS)
    e = ds.layer_energy_j.mean("draw")
    np.testing.assert_allclose(float(e.sum()), float(ds.energy_j.mean()), rtol=1e-9)
    assert float(ds.latency_s) > 0
    # the page's default cell is the study's 6-bit cell: the same draws
    np.testing.assert_array_equal(ds.accuracy.values, explorer.study.accuracy.sel(adc_bits=6).values)


def test_the_study_needs_its_adc_list_and_validates_its_memory():
    from workbench.experiments.accelerator import accelerator_study, cell_memory
    from workbench.experiments.sweep import check_params
    with pytest.raises(KnobError, match="adc_bits"):
        check_params("accelerator", {"draws": 2})
    with pytest.raises(KnobError, match="at least one ADC resolution"):
        accelerator_study([], 2)
    with pytest.raises(KnobError, match="adc_bits"):
        cell_memory({"technology": "memristor"}, adc_bits=1)
    mem = cell_memory({"technology": "memristor"}, {"classifier": {"act_p": 0.1}}, adc_bits=4)
    assert mem["overrides"]["classifier"]["adc_bits"] == 4 and mem["overrides"]["classifier"]["act_p"] == 0.1
    assert "act_p" not in mem["default"]           # a knob at its "off" default stays out of the keys


def test_explanation_names_the_largest_component_and_layer_from_the_numbers(explorer):
    ds = explorer.result
    by_comp = ds.layer_energy_j.mean("draw").sum("layer")
    top = str(by_comp.component.values[int(np.argmax(by_comp.values))])
    by_layer = ds.layer_energy_j.mean("draw").sum("component")
    layer = str(by_layer.layer.values[int(np.argmax(by_layer.values))])
    text = explain(ds)
    share = 100 * float(by_comp.max()) / float(by_comp.sum())
    assert f"**{COMPONENT_WORDS[top]}**" in text and f"{share:.0f} %" in text and f"**{layer}**" in text
    # other numbers, other words: with free DACs and ADCs the converters no longer dominate
    explorer.hw.param.update(dac_fom_j=0.0, adc_fom_j=0.0)
    explorer.wait(300)
    assert explorer.error == ""
    shares = explorer.energy_by_component()
    assert shares["dac"] == 0 and shares["adc"] == 0
    assert "DACs**" not in explain(explorer.result) and "ADCs**" not in explain(explorer.result)


def test_adc_bits_change_energy_and_accuracy_and_a_layer_override(explorer):
    base = explorer.result
    explorer.adc_bits = 2                 # a shipped cell: read, not computed
    explorer.wait(300)
    low = explorer.result
    assert float(low.energy_j.mean()) < float(base.energy_j.mean())      # 2^b per conversion
    assert low.attrs["accuracy_mean"] < base.attrs["accuracy_mean"] - 0.3  # 2-bit ADCs: near chance
    explorer.set_layer("classifier", "adc_bits", 8)
    explorer.wait(300)
    assert explorer.memory()["overrides"]["classifier"]["adc_bits"] == 8
    assert explorer.memory()["overrides"]["classifier"]["dac_bits"] == explorer.dac_bits
    adc = explorer.result.layer_energy_j.mean("draw").sel(component="adc")
    assert float(adc.sel(layer="classifier")) == pytest.approx(
        float(low.layer_energy_j.mean("draw").sel(component="adc", layer="classifier")) * 2 ** 6)
    assert float(adc.sel(layer="features.0")) == pytest.approx(
        float(low.layer_energy_j.mean("draw").sel(component="adc", layer="features.0")))
    rows = {r["layer"]: r for r in explorer.layer_rows()}
    assert rows["classifier"]["adc_bits"] == 8 and rows["features.0"]["adc_bits"] is None
    explorer.set_layer("classifier", "adc_bits", None)
    assert explorer.overrides == {}


def test_bad_layer_values_are_refused_by_name_and_change_nothing(explorer):
    with pytest.raises(KnobError, match="classifier.*ADC resolution.*2 and 16"):
        explorer.set_layer("classifier", "adc_bits", 40)
    with pytest.raises(KnobError, match="layer must be one of"):
        explorer.set_layer("nope", "adc_bits", 4)
    with pytest.raises(KnobError, match="act_p"):
        explorer.set_layer("classifier", "g_u", 4)
    assert explorer.overrides == {}
    with pytest.raises(URLValueError, match="layers are features.0"):
        parse_layers("nope:adc_bits:4", explorer.layers)
    with pytest.raises(URLValueError, match="stuck"):
        parse_layers("classifier:stuck_at:2", explorer.layers)
    over = {"classifier": {"adc_bits": 8, "act_p": 0.01}, "features.0": {"stuck_at": 0.1}}
    assert parse_layers(format_layers(over), explorer.layers) == over
    assert memory_knobs({"stuck_at": 0.1}) == {"stuck_min": 0.05, "stuck_max": 0.05}
    assert set(LAYER_KNOBS) == {"adc_bits", "dac_bits", "stuck_at", "act_p"}


def test_url_round_trip_and_refusals(explorer, tmp_path):
    explorer.param.update(adc_bits=4, tile_rows=32)
    explorer.hw.adc_fom_j = 2e-15
    explorer.set_layer("features.3", "act_p", 0.01)
    explorer.wait(300)
    query = PageURL(explorer.url_knobs()).query()
    assert query["adc_bits"] == "4" and query["hw_adc_fom_j"] == "2e-15"
    assert query["layers"] == "features.3:act_p:0.01"
    other = AcceleratorExplorer(store=Store(tmp_path / "other"), device="cpu", autorun=False)
    assert PageURL(other.url_knobs()).apply(query) == []
    assert other.memory() == explorer.memory()
    assert other.hw.to_dict() == explorer.hw.to_dict()
    refused = PageURL(other.url_knobs()).apply({"adc_bits": "40", "layers": "x:y:1", "hw_read_time_s": "-1",
                                                "bogus": "1"})
    text = " ".join(refused)
    for key in ("adc_bits=40", "layers=x:y:1", "hw_read_time_s=-1", "bogus"):
        assert key in text
    assert other.adc_bits == 4                # refused values change nothing


def test_a_failed_job_shows_its_error_and_keeps_the_earlier_result(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be")
    ex = AcceleratorExplorer(store=Store(blocked), device="cpu", autorun=False)
    ex.load()
    ex.wait(300)
    first = ex.result
    assert first is not None and ex.error == ""           # the shipped cell is read, nothing written
    ex.adc_bits = 7                                         # not shipped: computed, and its write fails
    ex.wait(300)
    assert ex.error and ex.result is first and "failed" in ex.status


def test_cancel_stops_the_evaluation_and_keeps_the_earlier_result(explorer):
    first = explorer.result
    explorer.param.update(adc_bits=7, draws=400)       # not stored: a long computation
    wait_until(lambda: explorer.running, 30, message="the evaluation to start")
    explorer.cancel = True
    explorer.wait(300)
    assert not explorer.running and not explorer.evaluating and explorer.result is first
    assert "cancelled" in explorer.status and explorer.error == ""


def test_energy_bars_stack_every_layer_and_component_in_one_unit(explorer):
    hv.extension("bokeh")
    ds = explorer.result
    bars = energy_bars(ds)
    assert isinstance(bars, hv.Bars)
    factor, unit = energy_unit(float(ds.layer_energy_j.mean("draw").sum("component").max()))
    assert bars.vdims[0].label == f"energy per inference ({unit})"
    values = bars.dimension_values("energy")
    assert values.size == ds.sizes["layer"] * ds.sizes["component"]
    np.testing.assert_allclose(values.sum() * factor, float(ds.energy_j.mean()), rtol=1e-9)


# ---------------------------------------------------------------------------------- in a browser
DONE = re.compile(r"done: \d+ draws")


def _status(page) -> str:
    return " ".join(page.locator(".accelerator-status p").all_inner_texts())


def _energy(page) -> str:
    loc = page.locator(".energy-total")
    return loc.first.inner_text() if loc.count() else ""


def _accuracy(page) -> str:
    loc = page.locator(".accuracy-mean")
    return loc.first.inner_text() if loc.count() else ""


def _url(page) -> str:
    return page.evaluate("window.location.href")


def _notice(page) -> str:
    return " ".join(page.get_by_text(re.compile("was not used|is not a setting of this page")).all_inner_texts())


@pytest.mark.browser
def test_moving_adc_bits_changes_the_energy_bar_and_the_accuracy(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=accelerator")
    wait_until(lambda: DONE.search(_status(page)) and _energy(page) and _accuracy(page), 180,
               message="the default setting evaluated")
    energy, accuracy = _energy(page), _accuracy(page)
    bars = page.locator(".energy-bars")
    wait_until(lambda: bars.count() and bars.first.locator("canvas").count(), 60, message="the energy bars drawn")
    before = bars.first.screenshot()
    handle = page.locator(".adc-bits .noUi-handle").first
    handle.focus()
    for _ in range(4):                     # 6 -> 2 bits, a shipped cell
        handle.press("ArrowLeft")
    wait_until(lambda: "adc_bits=2" in _url(page), 60, message="ADC bits 2 in the URL")
    wait_until(lambda: _energy(page) not in ("", energy) and _accuracy(page) not in ("", accuracy), 180,
               message="the energy and the accuracy at 2 ADC bits")
    assert float(_accuracy(page)) < float(accuracy) - 0.3
    wait_until(lambda: bars.count() and bars.first.locator("canvas").count(), 60, message="the energy bars redrawn")
    wait_until(lambda: bars.first.screenshot() != before, 60, message="the energy bars to change")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_a_link_opens_its_state_and_a_bad_link_is_refused_by_name(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=accelerator&adc_bits=4&draws=5&layers=classifier:adc_bits:8")
    wait_until(lambda: DONE.search(_status(page)) and "5 draws" in _status(page), 240, message="the linked setting")
    assert page.get_by_text(re.compile(r"^ADC bits.*: 4$")).filter(visible=True).count() >= 1
    assert page.get_by_label("Monte-Carlo draws").input_value() == "5"
    table = page.locator(".layer-table")
    wait_until(lambda: "8" in table.locator(".tabulator-row", has_text="classifier").first.inner_text(), 60,
               message="the classifier's 8 ADC bits in the table")
    assert "layers=classifier:adc_bits:8" in _url(page) and _notice(page) == ""
    page.goto(f"{served_app}/apps?page=accelerator&adc_bits=40&layers=nope:adc_bits:4&hw_read_time_s=-1&seed=3")
    wait_until(lambda: all(k in _notice(page) for k in ("adc_bits=40", "layers=nope:adc_bits:4", "hw_read_time_s=-1")),
               90, message="the notice naming adc_bits, layers and hw_read_time_s")
    assert "seed=3" not in _notice(page)
    wait_until(lambda: page.get_by_label("seed").input_value() == "3", 60, message="seed 3 from the link")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_usable_at_800_px(served_app, page):
    page.set_viewport_size({"width": 800, "height": 1000})
    page.goto(f"{served_app}/apps?page=accelerator")
    wait_until(lambda: DONE.search(_status(page)) and page.locator(".bk-Figure").count() >= 2, 180,
               message="the plots")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
