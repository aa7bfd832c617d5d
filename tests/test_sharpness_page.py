"""The "Sharpness & robustness" page: its state object on a small spec (no browser), the shipped
study it opens on, then the page in headless Chromium."""

from __future__ import annotations

import json
import re

import holoviews as hv
import numpy as np
import pytest
from conftest import assert_no_console_errors, settled_screenshot, spec_explorer, wait_until, watch_console

from workbench.experiments import Store
from workbench.experiments.sharpness import METHODS
from workbench.experiments.sweep import SHARPNESS_SPEC, load_spec
from workbench.ui.sharpness_explorer import SharpnessExplorer

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
    assert dict(rob.accuracy.sizes) == {"method": 3, "seed": 1, "adabs": 2, "level": 2, "draw": 3}
    # σ_c = 0 without AdaBS is the clean network, every draw
    clean = rob.accuracy.sel(level=0.0, adabs=False).values
    assert np.allclose(clean, rob.clean_accuracy.values[..., None])
    assert explorer.additive.attrs["noise"] == "additive" and explorer.additive.attrs["g_u"] == 25.0
    sh = explorer.sharpness
    assert dict(sh.sharpness.sizes) == {"method": 3, "seed": 1, "variant": 4}
    assert int(sh.n_points.sel(variant="samson2", group="all")) == 3
    assert np.isfinite(float(sh.pearson_r.sel(variant="samson2", group="all")))
    assert list(explorer.quantization.bits.values) == [4, 8]
    assert explorer.ood.wins.sum() >= explorer.ood.sizes["transform"]          # every transform has a winner (ties count twice)
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
    assert "sigma_c" in ex.error and "[0.0, 1.0]" in ex.error       # the knob and its range
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
    from workbench.plots.sharpness import (clean_accuracy_bars, drift_plot, ood_heatmap, perturbation_plot,
                                           quantization_plot, rho_plot, sharpness_scatter)
    ex = explorer
    figs = [plot, clean_accuracy_bars(ex.robustness), sharpness_scatter(ex.sharpness, "samson2", "all"),
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
    wait_until(lambda: "rho=0.5" in page.url, 30, message="ρ in the URL")

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
