"""The "Sharpness & robustness" page: its state object on a small spec (no browser), the shipped
study it opens on, then the page in headless Chromium."""

from __future__ import annotations

import json
import re

import holoviews as hv
import numpy as np
import pytest

from workbench.experiments import Store
from workbench.experiments.sharpness import METHODS, noise_dim
from workbench.experiments.sweep import SHARPNESS_SPEC, load_spec
from workbench.ui.sharpness_explorer import SharpnessExplorer

from helpers import assert_no_console_errors, settled_screenshot, spec_explorer, wait_until, watch_console

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = {"epochs": 2}
SPEC = {
    "name": "tiny-ch5",
    "experiments": {
        "robustness": {"methods": ["sgd", "sam", "samson2"], "seeds": [0], "levels": [0.0, 0.4], "adabs": [False, True],
                       "draws": 3, "train": TINY},
        "robustness_additive": {"methods": ["sgd", "samson2"], "seeds": [0], "levels": [0.0, 2.0], "adabs": [False],
                                "draws": 3, "train": TINY},
        "sharpness": {"methods": ["sgd", "sam", "samson2"], "seeds": [0], "m": 64, "train": TINY,
                      "robustness_levels": [0.0, 0.4], "robustness_draws": 3},
        "quantization": {"methods": ["sgd", "samson2"], "seeds": [0], "bits": [4, 8], "train": TINY},
        "ood": {"methods": ["sgd", "samson2"], "seeds": [0], "train": TINY},
        "pcm_drift": {"methods": ["sgd"], "seeds": [0], "times": [1.0, 31536000.0], "draws": 2, "train": TINY},
        "rho": {"methods": ["samson2"], "rhos": {"samson2": [0.2, 0.5]}, "seeds": [0], "levels": [0.0, 0.4], "draws": 3,
                "train": TINY},
    },
}


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    ex = spec_explorer(SharpnessExplorer, SPEC, tmp_path_factory.mktemp("ch5-ui"), epochs=2)
    yield ex
    ex.runner.shutdown()


def test_the_page_state_loads_every_study_of_its_spec(explorer):
    assert explorer.error == ""
    rob = explorer.robustness
    assert dict(rob.accuracy.sizes) == {"method": 3, "seed": 1, "adabs": 2, "sigma_c": 2, "draw": 3}
    # σ_c = 0 without AdaBS is the clean network, every draw
    clean = rob.accuracy.sel(sigma_c=0.0, adabs=False).values
    assert np.allclose(clean, rob.clean_accuracy.values[..., None])
    assert explorer.additive.attrs["noise"] == "additive" and explorer.additive.attrs["g_u"] == 25.0
    assert noise_dim(explorer.additive) == "sigma" and noise_dim(rob) == "sigma_c"    # dims named after the knob
    sh = explorer.sharpness
    assert dict(sh.sharpness.sizes) == {"method": 3, "seed": 1, "variant": 4}
    assert int(sh.n_points.sel(variant="samson2", group="all")) == 3
    assert np.isfinite(float(sh.pearson_r.sel(variant="samson2", group="all")))
    assert list(explorer.quantization.bits.values) == [4, 8]
    assert explorer.ood.wins.sum() >= explorer.ood.sizes["transform"]  # every transform has a winner (ties count twice)
    assert explorer.drift.sizes["t_inference"] == 2
    assert list(explorer.rho_sweep.rho.sel({"method": "samson2"}).values) == [0.2, 0.5]


def test_choosing_a_trained_configuration_shows_its_curve_at_once(explorer):
    explorer.param.update(method="samson2")
    assert explorer.rho == METHODS["samson2"]["rho"]          # switching method starts from its thesis ρ
    explorer.wait(kinds=("select",))
    ds = explorer.selected
    assert ds is not None and explorer.selected_label.startswith("SAMSON₂, ρ = 0.2")
    assert list(ds.method.values) == ["samson2"] and "accuracy" in explorer.status
    # the same cells as the study: identical numbers
    study = explorer.robustness.accuracy_mean.sel({"method": "samson2", "adabs": True})
    assert np.allclose(ds.accuracy_mean.isel(method=0, adabs=0).values, study.values)


def test_a_network_of_the_study_is_read_from_it_and_matches_a_fresh_measurement(explorer):
    """The selected network's curve is the study's own cells when the study trained exactly that
    network: measuring it again gives the same numbers (same network, same draws and seeds)."""
    import threading
    explorer.param.update(method="samson2", rho=METHODS["samson2"]["rho"], seed=0, epochs=2, adabs=True,
                          noise="multiplicative")
    explorer.wait(kinds=("select",))
    study = explorer._from_study()
    assert study is not None and explorer.selected is not None
    assert np.array_equal(explorer.selected.accuracy.values, study.accuracy.values)
    fresh = explorer._curve(threading.Event())
    assert np.array_equal(fresh.accuracy.values, study.accuracy.values)
    assert np.array_equal(fresh.clean_accuracy.values, study.clean_accuracy.values)
    explorer.rho = 1.0                        # another ρ: not a network of the study
    assert explorer._from_study() is None
    explorer.param.update(rho=METHODS["samson2"]["rho"])
    explorer.wait(kinds=("select",))


def test_an_untrained_configuration_trains_in_the_background_then_cancel_keeps_it(explorer):
    explorer.param.update(method="samson2", rho=1.0)
    explorer.wait(kinds=("select",))
    assert explorer.selected is None and "not trained yet" in explorer.status
    explorer.param.trigger("train")
    explorer.wait(kinds=("train",))
    assert explorer.error == "" and not explorer.running
    assert len(explorer.history) == 2 and explorer.selected is not None
    assert explorer.selected_label.startswith("SAMSON₂, ρ = 1")
    curve_rho_1 = explorer.selected.accuracy_mean.values
    study = explorer.robustness
    explorer.param.update(rho=1.5, epochs=150)
    explorer.param.trigger("train")
    wait_until(lambda: explorer.history, 60, interval=0.02, message="the first epoch")
    explorer.param.trigger("cancel")
    explorer.wait(kinds=("train",))
    assert "cancelled" in explorer.status and not explorer.running and explorer.error == ""
    assert explorer.robustness is study and not explorer.is_trained()       # nothing half-trained was stored
    explorer.param.update(rho=1.0, epochs=2)                              # the finished run is in the store
    explorer.wait(kinds=("select",))
    assert np.array_equal(explorer.selected.accuracy_mean.values, curve_rho_1)


def test_a_failing_study_reports_its_error_and_keeps_other_results(tmp_path):
    bad = json.loads(json.dumps(SPEC))
    bad["experiments"] = {"robustness": {**SPEC["experiments"]["robustness"], "levels": [0.0, 2.0]},
                          "robustness_additive": SPEC["experiments"]["robustness_additive"]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    ex = SharpnessExplorer(store=Store(tmp_path / "store"), spec_path=path, device="cpu", autorun=False, epochs=2)
    ex.load()
    ex.wait()
    assert "sigma_c" in ex.error and "[0, 1]" in ex.error       # the knob and its range
    assert ex.robustness is None and ex.additive is not None
    assert ex.perturbation is not None
    ex.runner.shutdown()


def test_perturbation_explorer_follows_its_knobs(explorer):
    explorer.param.update(pert_rho=0.3, pert_c=0.2, pert_p=3.0)
    ds = explorer.perturbation
    assert ds.attrs["rho"] == 0.3 and ds.attrs["c"] == 0.2 and ds.attrs["samson_p"] == 3.0
    assert float(ds.w.max()) == pytest.approx(0.2)
    # SAM moves every weight by ρ/‖1‖: the same ε for all n weights
    sam = ds.epsilon.sel(optimizer="sam").values
    assert np.allclose(sam, 0.3 / np.sqrt(sam.size))


def test_every_view_of_the_page_renders(explorer):
    from workbench.ui.sharpness import SharpnessPage
    hv.extension("bokeh")
    page = SharpnessPage(explorer=explorer)
    explorer.shown = ["sgd", "sam", "samson2"]
    for view in (page._robustness, page._readout, page._loss, page._sharpness, page._rho_view, page._quantization,
                 page._ood, page._drift, page._perturbation, page._status):
        out = view()
        assert out is not None
    explorer.noise = "additive"
    assert page._robustness() is not None
    explorer.noise = "multiplicative"
    from workbench.plots.sharpness import robustness_plot
    plot = robustness_plot(explorer.robustness, ["sgd", "samson2"], adabs=True, highlight="samson2",
                           custom=explorer.selected)
    labels = {el.label for el in plot if isinstance(el, hv.Curve)}
    assert {"SGD", "SAMSON₂"} <= labels
    page.__panel__()
    from workbench.plots.sharpness import (
        clean_accuracy_points,
        drift_plot,
        ood_heatmap,
        perturbation_plot,
        quantization_plot,
        rho_plot,
        sharpness_scatter,
    )
    ex = explorer
    figs = [plot, clean_accuracy_points(ex.robustness), sharpness_scatter(ex.sharpness, "samson2", "all"),
            sharpness_scatter(ex.sharpness, "sam", "normal"), quantization_plot(ex.quantization), ood_heatmap(ex.ood),
            drift_plot(ex.drift), rho_plot(ex.rho_sweep, "samson2", highlight=0.5), perturbation_plot(ex.perturbation),
            robustness_plot(ex.additive, adabs=False)]
    for fig in figs:                          # every plot renders to a Bokeh model
        assert hv.render(fig, backend="bokeh") is not None


def test_the_shipped_study_is_complete():
    """What the page opens on: ≥ 3 seeds per method in every shipped ch.5 study (data/store)."""
    spec = load_spec(SHARPNESS_SPEC)
    from workbench.experiments.sweep import run_experiment
    store = Store()
    for name in ("robustness", "sharpness", "quantization", "ood", "pcm_drift"):
        key_params = spec["experiments"][name]
        from workbench.experiments.store import spec_key
        assert store.load_dataset(f"sweep-{name}", spec_key(f"sweep-{name}", key_params)) is not None, \
            f"{name} is not shipped: run workbench sweep specs/sharpness_digits.json --cache-dir data/store"
        ds = run_experiment(name, key_params, store)
        assert ds.sizes["seed"] >= 3 and set(ds.method.values) == set(METHODS), name


@pytest.mark.browser
def _address(page) -> str:
    """The address bar as the page set it (history.pushState); Playwright's ``page.url`` is not
    refreshed while a test waits in a polling loop."""
    return page.evaluate("location.href")


def test_sharpness_page_switches_optimizer_and_rho(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1500, "height": 1300})
    page.goto(f"{served_app}/apps?page=sharpness&method=sam")
    readout = re.compile(r"^SAM, ρ = 0\.1, seed 0")
    wait_until(lambda: page.get_by_text(readout).count() > 0, 120, message="the SAM curve readout")
    wait_until(lambda: page.locator(".bk-Figure").count() >= 2, 120, message="robustness plots")
    plot = page.locator(".bk-Figure").first
    before = settled_screenshot(plot, message="the SAM curves to settle")
    page.locator("select").first.select_option(label="SAMSON₂")
    wait_until(lambda: page.get_by_text(re.compile(r"^SAMSON₂, ρ = 0\.2, seed 0")).count() > 0, 120,
               message="the SAMSON₂ readout")
    wait_until(lambda: settled_screenshot(plot, 20) != before, 60, message="the curves to update")
    table_02 = wait_until(lambda: page.locator("table").first.inner_text(), 60, message="the accuracy table")
    # ρ slider (the first noUi slider of the page): one notch right of 0.2 is 0.5, in the shipped ρ grid
    handle = page.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")
    page.mouse.click(5, 5)
    wait_until(lambda: page.get_by_text(re.compile(r"^SAMSON₂, ρ = 0\.5, seed 0")).count() > 0, 120,
               message="the ρ = 0.5 readout")
    wait_until(lambda: page.locator("table").first.inner_text() != table_02, 60, message="its accuracies")
    wait_until(lambda: "rho=0.5" in _address(page), 30, message="ρ in the URL")

    page.get_by_text("Perturbation ε*(w)").click()
    wait_until(lambda: page.locator(".bk-Figure").filter(visible=True).count() > 0, 60, message="the ε*(w) plot")
    fig = page.locator(".bk-Figure").filter(visible=True).first
    shot = settled_screenshot(fig, message="the ε*(w) plot to settle")
    slider = page.locator(".noUi-handle").filter(visible=True).first
    slider.focus()
    for _ in range(10):
        slider.press("ArrowRight")
    page.mouse.click(5, 5)
    wait_until(lambda: settled_screenshot(fig, 20) != shot, 60, message="the perturbation plot to follow ρ")
    assert_no_console_errors(console)


# ---------------------------------------------------------------------------------------------
# the page as a new user meets it (issue #11)

def _plot_titles(page) -> list[str]:
    """The titles of the Bokeh figures drawn so far, oldest first (a re-render adds new ones)."""
    return page.evaluate("""() => { const out = [];
        for (const d of Bokeh.documents) { for (const m of d._all_models.values()) {
            if (m.type === 'Title' && m.text) { out.push(m.text); } } }
        return out; }""")


def _latest(titles: list[str], start: str) -> str:
    return [t for t in titles if t.startswith(start)][-1]


def test_additive_mode_uses_and_says_the_adabs_setting_its_study_has(explorer):
    """The additive study of the spec was run without AdaBS only: with AdaBS ticked the additive
    curves, the title and the measured curve of the selected network are all without AdaBS; the
    user's choice comes back under multiplicative noise."""
    from workbench.ui.sharpness import SharpnessPage
    hv.extension("bokeh")
    page = SharpnessPage(explorer=explorer)
    explorer.param.update(method="samson2", rho=0.2, seed=0, epochs=2, adabs=True, noise="additive")
    explorer.wait(kinds=("select",))
    assert explorer.adabs is True and explorer.effective_adabs() is False
    assert page._adabs.disabled and page._adabs.value is False and page._adabs_note.visible
    assert "without AdaBS only" in page._adabs_note.object
    assert bool(explorer.selected.adabs.values[0]) is False and "without AdaBS" in explorer.status
    plot = page._robustness()[0].object
    assert "without AdaBS" in plot.opts.get().kwargs["title"] and "σ (µS)" in plot.opts.get().kwargs["title"]
    curves = [el for el in plot if isinstance(el, hv.Curve)]
    assert curves[0].kdims[0].label.startswith("additive noise σ (µS")
    explorer.noise = "multiplicative"
    explorer.wait(kinds=("select",))
    assert not page._adabs.disabled and page._adabs.value is True and not page._adabs_note.visible
    assert "with AdaBS" in page._robustness()[0].object.opts.get().kwargs["title"]
    assert bool(explorer.selected.adabs.values[0]) is True


def test_status_and_readout_name_which_accuracy_they_show(explorer):
    """The clean accuracy (the trained network as stored) and the zero-noise point of the AdaBS
    curve differ because AdaBS re-estimates batch-norm statistics even without noise; both texts
    say which number is which, and they agree with the study."""
    from workbench.ui.sharpness import SharpnessPage
    page = SharpnessPage(explorer=explorer)
    explorer.param.update(method="samson2", rho=0.2, seed=0, epochs=2, adabs=True, noise="multiplicative")
    explorer.wait(kinds=("select",))
    study = explorer.robustness
    clean = float(study.clean_accuracy.sel({"method": "samson2", "seed": 0}))
    zero = float(study.accuracy_mean.sel({"method": "samson2", "seed": 0, "adabs": True, "sigma_c": 0.0}))
    assert f"clean accuracy {clean:.3f} (no noise, no AdaBS)" in explorer.status
    assert f"with AdaBS, mean accuracy {zero:.3f} at σ_c = 0" in explorer.status
    text = page._readout().object
    assert f"clean accuracy {clean:.3f}" in text and "mean accuracy with AdaBS" in text and "σ_c" in text


def test_a_method_change_says_what_it_did_to_rho(explorer):
    explorer.param.update(method="samson2", rho=1.0)
    explorer.method = "asam"
    assert explorer.rho == 0.5 and explorer.rho_note.startswith("ρ set to 0.5, the thesis' value for ASAM (Table 5.7)")
    explorer.rho = 1.0                       # the user's own ρ afterwards: the note no longer holds
    assert explorer.rho_note == ""
    explorer.method = "sgd"
    assert "does not apply to SGD" in explorer.rho_note and explorer.rho == 1.0
    explorer.wait(kinds=("select",))


def test_the_page_url_refuses_bad_values_by_name_and_applies_the_rest(explorer):
    from workbench.ui.sharpness import SharpnessPage
    page = SharpnessPage(explorer=explorer)
    explorer.param.update(method="samson2", adabs=True, noise="multiplicative", seed=0)
    refused = page.url.apply({"rho": "-1", "method": "foo", "noise": "bar", "seed": "-2", "adabs": "false",
                              "tab": "ood", "pert_c": "0.25"})
    assert len(refused) == 4
    for key in ("`rho=-1`", "`method=foo`", "`noise=bar`", "`seed=-2`"):
        assert sum(key in line for line in refused) == 1, (key, refused)
    assert explorer.adabs is False and page.tab == "ood" and page._tabs.active == 4 and explorer.pert_c == 0.25
    assert explorer.method == "samson2" and explorer.noise == "multiplicative" and explorer.seed == 0
    q = page.url.query()
    assert q["tab"] == "ood" and q["adabs"] == "false" and q["pert_c"] == "0.25" and q["rho"] == "0.2"
    # the method applies before ρ (which a method change resets)
    assert page.url.apply({"method": "sam", "rho": "0.5"}) == [] and explorer.rho == 0.5
    explorer.param.update(adabs=True)
    explorer.wait(kinds=("select",))


@pytest.mark.browser
def test_a_bad_link_is_refused_by_name_and_the_rest_applies(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=sharpness&rho=-1&method=foo&noise=bar&seed=-2&adabs=false")
    wait_until(lambda: page.get_by_text("Some settings in this link were not used").count() > 0, 90,
               message="the notice")
    for key in ("rho=-1", "method=foo", "noise=bar", "seed=-2"):
        wait_until(
            lambda key=key: page.get_by_text(key, exact=False).count() > 0, 90, message=f"{key} named in the notice"
        )
    box = page.locator("input[type=checkbox]")           # the AdaBS box, the page's only one
    wait_until(lambda: box.count() == 1 and not box.is_checked(), 120, message="adabs=false applied")
    assert (
        "adabs=false" in _address(page)
        and "method=samson2" in _address(page)
        and "noise=multiplicative" in _address(page)
    )
    active = page.locator(".bk-tab.bk-active")
    page.locator(".bk-tab", has_text="Sweeps").click()           # a light page: the server stays free
    wait_until(lambda: "Sweeps" in active.all_inner_texts(), 120, message="the top tabs still switching")
    page.locator(".bk-tab", has_text="Sharpness & robustness").click()
    wait_until(lambda: "Sharpness & robustness" in active.all_inner_texts(), 120, message="back on the page")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_url_round_trip_with_noise_and_sub_tab_and_back(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=sharpness&tab=drift&noise=additive&method=sam&rho=0.2&pert_rho=0.8")
    active = page.locator(".bk-tab.bk-active")
    wait_until(lambda: "PCM drift" in active.all_inner_texts(), 90, message="the PCM drift sub-tab from the link")
    wait_until(lambda: all(k in _address(page) for k in ("tab=drift", "noise=additive", "method=sam&", "rho=0.2",
                                                     "pert_rho=0.8")), 120, message="the link's state written back")
    wait_until(lambda: page.locator(".bk-Figure").filter(visible=True).count() > 0, 120, message="the drift plot")
    page.locator(".bk-tab", has_text=re.compile("^Robustness$")).click()
    wait_until(lambda: "tab=robustness" in _address(page), 120, message="the sub-tab in the URL")
    additive = page.get_by_role("button", name="additive")
    wait_until(lambda: "bk-active" in (additive.get_attribute("class") or ""), 120, message="additive noise shown")
    page.get_by_role("button", name="multiplicative").click()
    wait_until(lambda: "noise=multiplicative" in _address(page), 120, message="the noise toggle in the URL")
    wait_until(lambda: _latest(_plot_titles(page), "Accuracy vs").startswith("Accuracy vs σ_c"), 120,
               message="multiplicative curves")
    page.go_back()
    wait_until(lambda: "noise=additive" in _address(page), 120, message="Back to additive noise")
    wait_until(lambda: "bk-active" in (additive.get_attribute("class") or ""), 120, message="the toggle restored")
    wait_until(lambda: _latest(_plot_titles(page), "Accuracy vs").startswith("Accuracy vs σ (µS)"), 120,
               message="additive curves again")
    page.go_back()
    wait_until(lambda: "tab=drift" in _address(page) and "PCM drift" in active.all_inner_texts(), 120,
               message="Back to the PCM drift sub-tab")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_additive_noise_with_adabs_ticked_is_labelled_as_computed(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=sharpness&adabs=true&noise=additive")
    box = page.locator("input[type=checkbox]")           # the AdaBS box, the page's only one
    wait_until(lambda: page.locator(".bk-Figure").count() >= 2, 120, message="the robustness plots")
    wait_until(lambda: box.is_disabled() and not box.is_checked(), 120, message="the box showing what the curves use")
    wait_until(lambda: page.get_by_text("run without AdaBS only").count() > 0, 120, message="the reason beside it")
    titles = wait_until(lambda: _plot_titles(page), 120, message="plot titles")
    assert _latest(titles, "Accuracy vs") == "Accuracy vs σ (µS), without AdaBS (Fig 5.2)"
    assert _latest(titles, "Clean accuracy").startswith("Clean accuracy, no noise, no AdaBS")
    assert not any("σ_c" in t for t in titles)
    wait_until(lambda: page.get_by_text("mean accuracy without AdaBS").count() > 0, 90, message="the readout row")
    assert "adabs=true" in _address(page)                # the user's choice is kept for multiplicative noise
    page.get_by_role("button", name="multiplicative").click()
    wait_until(lambda: box.is_enabled() and box.is_checked(), 120, message="AdaBS back under multiplicative noise")
    wait_until(lambda: _latest(_plot_titles(page), "Accuracy vs") == "Accuracy vs σ_c, with AdaBS (Fig 5.2)", 120,
               message="the multiplicative title")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_changing_the_optimizer_says_what_happened_to_rho(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=sharpness&method=samson2&rho=1")
    wait_until(
        lambda: page.get_by_text(re.compile(r"^SAMSON₂, ρ = 1, seed 0")).count() > 0, 120, message="ρ = 1 from the link"
    )
    page.locator("select").first.select_option(label="ASAM")
    wait_until(lambda: page.get_by_text("ρ set to 0.5, the thesis' value for ASAM (Table 5.7)").count() > 0, 120,
               message="the ρ note")
    wait_until(
        lambda: "method=asam" in _address(page) and "rho=0.5" in _address(page), 120, message="the new ρ in the URL"
    )
    page.locator("select").first.select_option(label="SGD")
    wait_until(lambda: page.get_by_text("ρ does not apply to SGD").count() > 0, 120, message="the SGD note")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_an_invalid_number_field_says_so_and_keeps_the_last_good_value(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=sharpness&epochs=30")
    epochs = page.get_by_label("epochs")
    wait_until(lambda: epochs.input_value() == "30", 90, message="epochs from the link")
    messages = page.locator(".field-error p")
    epochs.fill("500")
    epochs.press("Enter")
    wait_until(lambda: "between 1 and 200 — still using 30" in " ".join(messages.all_inner_texts()), 120,
               message="the epochs field's message")
    assert "epochs=30" in _address(page)
    seed = page.get_by_label("seed")
    seed.fill("-2")
    seed.press("Enter")
    wait_until(lambda: "still using 0" in " ".join(messages.all_inner_texts()), 120, message="the seed field's message")
    assert "seed=0" in _address(page)
    epochs.fill("40")
    epochs.press("Enter")
    wait_until(lambda: "epochs=40" in _address(page), 120, message="a good value used")
    assert_no_console_errors(console)


@pytest.mark.browser
def test_at_800_px_no_sideways_scroll_and_a_tall_robustness_plot(served_app, page, tmp_path):
    console = watch_console(page)
    page.set_viewport_size({"width": 800, "height": 1000})
    page.goto(f"{served_app}/apps?page=sharpness")
    plot = page.locator(".bk-Figure.robustness-plot")
    wait_until(lambda: plot.count() == 1 and plot.bounding_box()["height"] >= 250, 120,
               message="a robustness plot at least 250 px tall")
    box = plot.bounding_box()
    assert box["width"] >= 600 and box["x"] + box["width"] <= 800
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(tmp_path / "sharpness-800.png"), full_page=True)
    for tab in ("Sharpness vs robustness", "Out of distribution", "Perturbation ε*(w)"):
        page.locator(".bk-tab", has_text=tab).click()
        wait_until(lambda: page.locator(".bk-Figure").filter(visible=True).count() > 0, 90, message=f"the {tab} plot")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), tab
    page.screenshot(path=str(tmp_path / "sharpness-800-perturbation.png"), full_page=True)
    assert_no_console_errors(console)
